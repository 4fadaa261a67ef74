//! Processes through `/proc` and pidfds: a process's state and start time
//! (`/proc/PID/stat`), its thread group (`/proc/PID/status`), its
//! executable, every PID (`getdents64` on `/proc`), `pidfd_open(2)`, and
//! reading pidfiles, in a forked child for `heartwatch check`.
//!
//! Fixed buffers and raw system calls: nothing here allocates (but the
//! parent's side of [`look_at_pidfiles`]), so the readers run in the stat
//! workers and in a child forked from a process with threads.

use super::Errno;
use super::regular::{self, FdPath, NotOpened, Symlink};
use super::stat::Stamp;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Parses `/proc/PID/stat`: the state letter and the start time. The
/// command name may hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<(u8, u64)> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = text.get(close + 1..)?;
    let mut fields = rest.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Field 3 was the state; the start time is field 22.
    let start = fields.nth(18)?;
    let start = parse_u64(start.strip_suffix(b"\n").unwrap_or(start))?;
    Some((state, start))
}

/// Parses a pidfile's content: a positive PID, optionally followed by
/// white space and a newline.
pub fn parse_pid(text: &[u8]) -> Option<i32> {
    let trimmed = text.trim_ascii();
    let pid = parse_u64(trimmed)?;
    if pid == 0 || pid > i32::MAX as u64 {
        return None;
    }
    Some(pid as i32)
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// Writes `/proc/PID/NAME` NUL-terminated into `buf` and returns it.
fn proc_path<'a>(buf: &'a mut [u8; 64], pid: i32, name: &[u8]) -> &'a [u8] {
    let mut digits = [0u8; 20];
    let digits = super::decimal(u64::from(pid.unsigned_abs()), &mut digits);
    let parts: [&[u8]; 4] = [b"/proc/", digits, b"/", name];
    let mut len = 0;
    for part in parts {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    buf[len] = 0;
    &buf[..=len]
}

/// The state letter and start time of `pid`, or `None` if it is gone.
pub fn stat_of(pid: i32) -> Option<(u8, u64)> {
    let mut path = [0u8; 64];
    let path = proc_path(&mut path, pid, b"stat");
    let mut buf = [0u8; 1024];
    let n = super::fs::read_small(path, &mut buf).ok()?;
    parse_stat(&buf[..n])
}

/// The start time of `pid` in clock ticks after boot, or `None` if it is
/// gone.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_of(pid).map(|(_, start)| start)
}

/// The process (thread group) that the task `pid` belongs to, from the
/// `Tgid:` line of `/proc/PID/status`; it differs from `pid` when `pid`
/// names a thread. `None` when no such task exists.
pub fn thread_group(pid: i32) -> Option<i32> {
    let mut path = [0u8; 64];
    let path = proc_path(&mut path, pid, b"status");
    // The Tgid: line comes fourth, after a name of at most 64 bytes.
    let mut buf = [0u8; 512];
    let n = super::fs::read_small(path, &mut buf).ok()?;
    buf[..n]
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"Tgid:"))
        .and_then(parse_pid)
}

/// The executable of `pid` (`/proc/PID/exe`) in `buf`; `None` when there
/// is none to read (a kernel thread, a process gone, no permission).
pub fn executable(pid: i32, buf: &mut [u8; 4096]) -> Option<&[u8]> {
    let mut path = [0u8; 64];
    let path = proc_path(&mut path, pid, b"exe");
    super::fs::readlink(path, buf)
        .ok()
        .filter(|link| !link.is_empty())
}

/// `pidfd_open(2)`; `Err(ENOSYS)` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    super::fs::owned(libc::c_int::try_from(fd).unwrap_or(-1))
}

/// Whether this kernel has pidfds (tried once at start).
pub fn have_pidfd() -> bool {
    pidfd_open(std::process::id() as i32).is_ok()
}

/// Calls `f` with every PID in `/proc`, reading the directory with
/// `getdents64` into a buffer on the stack.
pub fn for_each_pid(mut f: impl FnMut(i32)) -> Result<(), Errno> {
    let fd = super::fs::open(
        c"/proc",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(Errno::last());
        }
        if n == 0 {
            return Ok(());
        }
        let mut offset = 0usize;
        while offset + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let reclen = u16::from_ne_bytes([buf[offset + 16], buf[offset + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[offset + 19..offset + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if let Some(pid) = parse_pid(name) {
                f(pid);
            }
            offset += reclen;
        }
    }
}

/// Why a pidfile gave no PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFileError {
    /// No such file (or a directory on the way is missing).
    Missing,
    /// Something other than a regular file is there (never opened).
    NotRegular,
    Unreadable(Errno),
    /// The content is not one positive PID.
    Garbage,
}

/// Reads the PID in a pidfile, with the pidfile's identity. Only a regular
/// file is opened: opening a device can act (opening a watchdog arms it)
/// and a FIFO could stall the read, so the path is first opened with
/// `O_PATH` (which opens nothing), looked at, and only then opened for
/// reading through `/proc/self/fd`, which reaches the inode looked at, not
/// whatever the name points to by then. A symlink to a regular file is
/// followed (heartwatch.rules(5)).
pub fn read_pidfile(path: &CStr) -> Result<(i32, Stamp), PidFileError> {
    let (fd, st) = regular::open(path, Symlink::Follow).map_err(|e| match e {
        NotOpened::Os(Errno::ENOENT | Errno::ENOTDIR) => PidFileError::Missing,
        NotOpened::Os(other) => PidFileError::Unreadable(other),
        NotOpened::NotRegular(_) => PidFileError::NotRegular,
    })?;
    let stamp = Stamp::of(&st);
    let mut buf = [0u8; 64];
    let n = super::fs::read_small(FdPath::of(&fd).as_bytes_with_nul(), &mut buf)
        .map_err(PidFileError::Unreadable)?;
    match (n < buf.len()).then(|| parse_pid(&buf[..n])).flatten() {
        Some(pid) => Ok((pid, stamp)),
        None => Err(PidFileError::Garbage),
    }
}

/// What a pidfile names, as `heartwatch check` looks at it: the PID and
/// the process (thread group) of that task if it exists, or why not. A
/// pidfile that cannot be read is [`PidFileError::Garbage`] here.
pub type PidFileLook = Result<(i32, Option<i32>), PidFileError>;

/// Why [`look_at_pidfiles`] has no answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderError {
    Pipe(Errno),
    Fork(Errno),
    Poll(Errno),
    /// Reading the child's answers failed.
    Read(Errno),
    /// No answer within the bound (a hung mount?).
    TimedOut,
    Wait(Errno),
    /// The child ended before answering for every pidfile.
    Short,
}

/// Reads `pidfiles` in a child process and waits at most `bound` for the
/// answers. A read stuck on a hung mount cannot be left behind in a
/// thread (the process could not exit until the mount answers, and
/// `check` is the unit's `ExecStartPre=`), so the reading runs in a
/// process of its own that is left behind instead. Each answer comes back
/// through a pipe as a fixed record: a tag byte, the PID, the thread
/// group.
pub fn look_at_pidfiles(
    pidfiles: &[CString],
    bound: Duration,
) -> Result<Vec<PidFileLook>, ReaderError> {
    const RECORD: usize = 9;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ReaderError::Pipe)?;
    // SAFETY: the child only makes system calls (open, fstat, read, write,
    // _exit) on memory prepared before the fork, allocates nothing and
    // takes no lock, which is what is safe after forking a process that
    // may have threads.
    let child = match unsafe { nix::unistd::fork() }.map_err(ReaderError::Fork)? {
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            for path in pidfiles {
                let (tag, pid, group) = match read_pidfile(path) {
                    Ok((pid, _)) => (0u8, pid, thread_group(pid).unwrap_or(0)),
                    Err(PidFileError::Missing) => (1, 0, 0),
                    Err(PidFileError::NotRegular) => (3, 0, 0),
                    Err(_) => (2, 0, 0),
                };
                let mut record = [0u8; RECORD];
                record[0] = tag;
                record[1..5].copy_from_slice(&pid.to_ne_bytes());
                record[5..9].copy_from_slice(&group.to_ne_bytes());
                // A pipe write of at most PIPE_BUF bytes is whole or fails.
                if super::fs::write(write_end.as_fd(), &record) != Ok(RECORD) {
                    break;
                }
            }
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(write_end);
    let deadline = Instant::now() + bound;
    let mut answers = Vec::with_capacity(pidfiles.len() * RECORD);
    let mut chunk = [0u8; 4096];
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [nix::poll::PollFd::new(
            read_end.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(left.as_millis().min(60_000) as i32)
            .unwrap_or(nix::poll::PollTimeout::ZERO);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => break false,
            Ok(_) => match nix::unistd::read(read_end.as_raw_fd(), &mut chunk) {
                Ok(0) => break true,
                Ok(n) => answers.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(ReaderError::Read(e)),
            },
            Err(Errno::EINTR) => {}
            Err(e) => return Err(ReaderError::Poll(e)),
        }
    };
    if !ended {
        return Err(ReaderError::TimedOut);
    }
    // The child closed its end on its way out: it is reaped at once.
    nix::sys::wait::waitpid(child, None).map_err(ReaderError::Wait)?;
    if answers.len() != pidfiles.len() * RECORD {
        return Err(ReaderError::Short);
    }
    Ok(answers
        .chunks_exact(RECORD)
        .map(|r| {
            let pid = i32::from_ne_bytes([r[1], r[2], r[3], r[4]]);
            let group = i32::from_ne_bytes([r[5], r[6], r[7], r[8]]);
            match r[0] {
                0 => Ok((pid, (group > 0).then_some(group))),
                1 => Err(PidFileError::Missing),
                3 => Err(PidFileError::NotRegular),
                _ => Err(PidFileError::Garbage),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 100\n";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
        assert_eq!(parse_stat(b"1 (init) Z 0"), None);
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn pidfiles_hold_one_positive_number() {
        assert_eq!(parse_pid(b"123\n"), Some(123));
        assert_eq!(parse_pid(b"  42  "), Some(42));
        assert_eq!(parse_pid(b"0"), None);
        assert_eq!(parse_pid(b"-5"), None);
        assert_eq!(parse_pid(b"12abc"), None);
        assert_eq!(parse_pid(b"99999999999"), None);
        assert_eq!(parse_pid(b""), None);
    }

    #[test]
    fn a_thread_is_known_by_its_thread_group() {
        let me = std::process::id() as i32;
        assert_eq!(thread_group(me), Some(me));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = parked.recv();
        });
        let tid = rx.recv().unwrap();
        assert_eq!(thread_group(tid), Some(me));
        drop(stop);
        thread.join().unwrap();
    }

    #[test]
    fn this_process_has_a_start_time_and_an_executable() {
        let me = std::process::id() as i32;
        let (state, start) = stat_of(me).unwrap();
        assert_ne!(state, b'Z');
        assert!(start > 0);
        assert_eq!(start_time(me), Some(start));
        let mut buf = [0u8; 4096];
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(executable(me, &mut buf), Some(exe.as_os_str().as_bytes()));
        let mut seen = false;
        for_each_pid(|pid| seen |= pid == me).unwrap();
        assert!(seen);
    }
}
