//! Parking the other threads before the memory test: each is sent
//! `SIGRTMAX`, whose handler waits forever, so that none writes to memory
//! under test. If one does not stop within 100 ms (say, a stat stuck on a
//! dead NFS mount), the test is skipped rather than racing it. A thread
//! that crashes while another is handling a crash parks too.

use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::c_int;

use super::memory::parse_dec;
use super::monotonic_ns;

/// How long the handler waits for the other threads to park.
const PARK_WAIT_MS: u64 = 100;

/// `/proc/self/task`, opened by `install` (-1: none).
pub(super) static TASKS_FD: AtomicI32 = AtomicI32::new(-1);

/// The thread handling a crash (0: none). A second thread that crashes
/// meanwhile parks; the process dies with the first.
pub(super) static HANDLING: AtomicI32 = AtomicI32::new(0);
/// Threads that have parked for the memory test.
static PARKED: AtomicUsize = AtomicUsize::new(0);

pub(super) extern "C" fn on_park_signal(_: c_int) {
    if HANDLING.load(Ordering::Acquire) == 0 {
        return;
    }
    park_forever();
}

/// Counts this thread as parked and waits for the process to end.
pub(super) fn park_forever() -> ! {
    PARKED.fetch_add(1, Ordering::AcqRel);
    loop {
        // SAFETY: pause is async-signal-safe; every signal is blocked in
        // the handler that called this, so it only returns on SIGKILL's way.
        unsafe { libc::pause() };
    }
}

/// Stops every other thread of the process; false when one did not stop
/// within the wait, in which case the memory test must not run.
pub(super) fn park_other_threads(dirents: &mut [u8], me: i32) -> (bool, usize) {
    let fd = TASKS_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return (false, 0);
    }
    let mut others = 0;
    // SAFETY: lseek and getdents64 on our own directory descriptor, into
    // `dirents`, which this call borrows exclusively.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    loop {
        // SAFETY: see above.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd,
                dirents.as_mut_ptr(),
                dirents.len(),
            )
        };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at + 19 < n as usize {
            let entry = &dirents[at..n as usize];
            let reclen = u16::from_ne_bytes([entry[16], entry[17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &entry[19..reclen.min(entry.len())];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_dec(name)
                && tid as i32 != me
            {
                // SAFETY: tgkill sends the parking signal to a thread of
                // this process; ESRCH (it just exited) is not counted.
                if unsafe { libc::tgkill(libc::getpid(), tid as i32, libc::SIGRTMAX()) } == 0 {
                    others += 1;
                }
            }
            at += reclen;
        }
    }
    let deadline = monotonic_ns() + PARK_WAIT_MS * 1_000_000;
    while PARKED.load(Ordering::Acquire) < others {
        if monotonic_ns() > deadline {
            return (false, others);
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: nanosleep is async-signal-safe; ts is valid.
        unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
    }
    (true, others)
}
