//! Keeping the daemon in memory: `mlockall(2)` and glibc's `mallopt`.
//!
//! A reload builds the new configuration while the old one still runs,
//! then frees the old one. Two things would keep that memory resident for
//! good (at 10 000 rules RSS tripled over the first reloads, 18 → 50 MiB):
//! glibc's dynamic mmap threshold, which rises to the size of any large
//! block freed, so that the next configuration's large vectors come from
//! the heap instead of their own mappings; and freed heap pages below the
//! top, which glibc gives back only on `malloc_trim`, and which the kernel
//! refuses to drop while they are locked. [`malloc_settings`] fixes the
//! first, [`release_free_memory`] (after each reload) the second.

use super::Errno;
use std::sync::atomic::{AtomicU8, Ordering};

/// Blocks at least this large get their own mapping, unmapped when freed.
/// Setting it turns glibc's dynamic threshold off.
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;
/// Free memory at the top of the heap beyond this goes back at once.
const TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// How memory is locked: not (0), each page as it is touched (1), or all
/// of it, present and future (2).
static LOCKED: AtomicU8 = AtomicU8::new(0);
const ON_FAULT: u8 = 1;
const EVERYTHING: u8 = 2;

/// One malloc arena instead of one per thread (the stat workers allocate
/// nothing, and each arena would reserve 64 MiB of locked address space),
/// a fixed mmap threshold and a trim threshold. Call before anything
/// large is allocated and before any thread starts. Nothing to do where
/// the C library is not glibc.
pub fn malloc_settings() {
    #[cfg(target_env = "gnu")]
    for (param, value) in [
        (libc::M_ARENA_MAX, 1),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, 0),
    ] {
        // SAFETY: mallopt takes two integers; called before any thread starts.
        unsafe { libc::mallopt(param, value) };
    }
}

#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
))]
const MCL_ONFAULT: libc::c_int = 0x8000;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
)))]
const MCL_ONFAULT: libc::c_int = 4;

/// Locks the process's pages, present and future, in memory: each as it
/// is first touched (`MCL_ONFAULT`), or everything at once on kernels
/// before 4.4, which refuse `MCL_ONFAULT` with EINVAL.
pub fn lock_all() -> Result<(), Errno> {
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(flags | MCL_ONFAULT) } == 0 {
        LOCKED.store(ON_FAULT, Ordering::Relaxed);
        return Ok(());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::mlockall(flags) };
    if rc == 0 {
        LOCKED.store(EVERYTHING, Ordering::Relaxed);
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Gives the free pages inside the heap back to the kernel (after a
/// reload freed the old configuration). The kernel drops no locked page,
/// so locked memory is unlocked for the trim and locked again, each page
/// as it is touched: the pages given back stay out. Where everything had
/// to be locked at once (no `MCL_ONFAULT`), locking again would bring them
/// all back: nothing is done there.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    {
        let locked = LOCKED.load(Ordering::Relaxed);
        if locked == EVERYTHING {
            return;
        }
        if locked == ON_FAULT {
            // SAFETY: munlockall takes no argument.
            unsafe { libc::munlockall() };
        }
        // SAFETY: malloc_trim takes a size; glibc's malloc is thread-safe.
        unsafe { libc::malloc_trim(0) };
        if locked == ON_FAULT {
            let flags = libc::MCL_CURRENT | libc::MCL_FUTURE | MCL_ONFAULT;
            // SAFETY: mlockall takes flags only.
            if unsafe { libc::mlockall(flags) } != 0 {
                LOCKED.store(0, Ordering::Relaxed);
                log::warn!(
                    "cannot lock memory again after a reload ({}); heartwatch may be paged out",
                    Errno::last()
                );
            }
        }
    }
}

/// Starts an empty queue again at the front of its buffer. A `VecDeque`
/// that is only ever pushed at the back and popped at the front walks
/// round its whole capacity, touching every page of it in time, however
/// few entries it holds at once: at 10 000 rules the probe's queues alone
/// grew by 1.2 MiB of resident memory that way. Rewound whenever it is
/// empty, it touches only as much as it ever held at once.
pub fn rewind<T>(queue: &mut std::collections::VecDeque<T>) {
    if queue.is_empty() {
        queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::rewind;
    use std::collections::VecDeque;

    #[test]
    fn a_rewound_queue_stays_at_the_front_of_its_buffer() {
        let mut queue = VecDeque::with_capacity(64);
        queue.push_back(0u64);
        let front = queue.as_slices().0.as_ptr();
        queue.clear();
        for i in 0..40 {
            queue.push_back(i);
            queue.pop_front();
            rewind(&mut queue);
        }
        queue.push_back(1);
        assert_eq!(queue.as_slices().0.as_ptr(), front);
        queue.push_back(2);
        rewind(&mut queue);
        assert_eq!(queue.len(), 2, "a queue with entries is left alone");
    }
}
