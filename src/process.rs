//! Process rules: a process that must be alive, named by a pidfile or by
//! its executable. Death is seen at once through a pidfd in the event loop;
//! a PID is trusted only together with its start time, so a reused PID is
//! never taken for the process; a zombie is dead.
//!
//! The looking-up (pidfile, `/proc`) runs in the stat workers like any
//! other read that might block; it uses fixed buffers and raw system calls,
//! so it allocates nothing.

use crate::health::Cause;
use crate::probe::Stamp;
use crate::regular::{self, FdPath, NotOpened, Symlink};
use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What a process rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    PidFile(CString),
    Executable(Vec<u8>),
}

/// A live process found by a probe.
#[derive(Debug)]
pub struct Found {
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start: u64,
    /// A pidfd, or `None` where the kernel has no `pidfd_open`.
    pub pidfd: Option<OwnedFd>,
    /// The pidfile's identity when the PID came from one.
    pub pidfile: Option<Stamp>,
}

/// What probing a process rule found.
#[derive(Debug)]
pub enum Lookup {
    Alive(Found),
    Dead(Cause),
}

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
    let digits = crate::text::decimal(u64::from(pid.unsigned_abs()), &mut digits);
    let parts: [&[u8]; 4] = [b"/proc/", digits, b"/", name];
    let mut len = 0;
    for part in parts {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    buf[len] = 0;
    &buf[..=len]
}

/// Reads a small file into `buf`; returns the bytes read.
fn read_small(path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `path` is NUL-terminated (built by `proc_path`, `FdPath`
    // or a CString).
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: writes at most `buf.len() - len` bytes into `buf[len..]`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[len..].as_mut_ptr().cast(),
                buf.len() - len,
            )
        };
        match n {
            0 => break,
            n if n > 0 => len += n as usize,
            _ if Errno::last() == Errno::EINTR => {}
            _ => return Err(Errno::last()),
        }
    }
    Ok(len)
}

/// The state letter and start time of `pid`, or `None` if it is gone.
fn stat_of(pid: i32) -> Option<(u8, u64)> {
    let mut path = [0u8; 64];
    let path = proc_path(&mut path, pid, b"stat");
    let mut buf = [0u8; 1024];
    let n = read_small(path, &mut buf).ok()?;
    parse_stat(&buf[..n])
}

/// The start time of `pid` in clock ticks after boot, or `None` if it is
/// gone.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_of(pid).map(|(_, start)| start)
}

/// `pidfd_open(2)`; `Err(ENOSYS)` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether this kernel has pidfds (tried once at start).
pub fn have_pidfd() -> bool {
    pidfd_open(std::process::id() as i32).is_ok()
}

/// Probes one process target. Runs in a stat worker.
pub fn lookup(target: &Target, use_pidfd: bool) -> Lookup {
    match target {
        Target::PidFile(path) => lookup_pidfile(path, use_pidfd),
        Target::Executable(exe) => lookup_executable(exe, use_pidfd),
    }
}

fn lookup_pidfile(path: &CString, use_pidfd: bool) -> Lookup {
    let (pid, stamp) = match read_pidfile(path) {
        Ok(found) => found,
        Err(cause) => return Lookup::Dead(cause),
    };
    if let Some(process) = thread_group(pid)
        && process != pid
    {
        return Lookup::Dead(Cause::PidFileNamesThread { tid: pid, process });
    }
    match attach(pid, use_pidfd) {
        Lookup::Alive(mut found) => {
            found.pidfile = Some(stamp);
            Lookup::Alive(found)
        }
        dead => dead,
    }
}

/// Reads the PID in a pidfile, with the pidfile's identity. Only a regular
/// file is opened: opening a device can act (opening a watchdog arms it)
/// and a FIFO could stall the read, so the path is first opened with
/// `O_PATH` (which opens nothing), looked at, and only then opened for
/// reading through `/proc/self/fd`, which reaches the inode looked at, not
/// whatever the name points to by then. A symlink to a regular file is
/// followed (heartwatch.rules(5)).
pub fn read_pidfile(path: &CStr) -> Result<(i32, Stamp), Cause> {
    let (fd, st) = regular::open(path, Symlink::Follow).map_err(|e| match e {
        NotOpened::Os(Errno::ENOENT | Errno::ENOTDIR) => Cause::PidFileMissing,
        NotOpened::Os(other) => Cause::Unreadable(other),
        NotOpened::NotRegular(_) => Cause::PidFileNotRegular,
    })?;
    let stamp = Stamp {
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        inode: st.st_ino,
        device: st.st_dev,
    };
    let mut buf = [0u8; 64];
    let n = read_small(FdPath::of(&fd).as_bytes_with_nul(), &mut buf).map_err(Cause::Unreadable)?;
    match (n < buf.len()).then(|| parse_pid(&buf[..n])).flatten() {
        Some(pid) => Ok((pid, stamp)),
        None => Err(Cause::PidFileGarbage),
    }
}

/// What a pidfile names, as `heartwatch check` looks at it: the PID and
/// the process (thread group) of that task if it exists, or why not.
pub type PidFileLook = Result<(i32, Option<i32>), Cause>;

/// Reads `pidfiles` for `heartwatch check` in a child process and waits at
/// most `bound` for the answers. A read stuck on a hung mount cannot be
/// left behind in a thread (the process could not exit until the mount
/// answers, and `check` is the unit's `ExecStartPre=`), so the reading
/// runs in a process of its own that is left behind instead. Each answer
/// comes back through a pipe as a fixed record: a tag byte, the PID, the
/// thread group.
pub fn look_at_pidfiles(pidfiles: &[CString], bound: Duration) -> Result<Vec<PidFileLook>, String> {
    const RECORD: usize = 9;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only makes system calls (open, fstat, read, write,
    // _exit) on memory prepared before the fork, allocates nothing and
    // takes no lock, which is what is safe after forking a process that
    // may have threads.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            for path in pidfiles {
                let (tag, pid, group) = match read_pidfile(path) {
                    Ok((pid, _)) => (0u8, pid, thread_group(pid).unwrap_or(0)),
                    Err(Cause::PidFileMissing) => (1, 0, 0),
                    Err(Cause::PidFileNotRegular) => (3, 0, 0),
                    Err(_) => (2, 0, 0),
                };
                let mut record = [0u8; RECORD];
                record[0] = tag;
                record[1..5].copy_from_slice(&pid.to_ne_bytes());
                record[5..9].copy_from_slice(&group.to_ne_bytes());
                // A pipe write of at most PIPE_BUF bytes is whole or fails.
                // SAFETY: writes `RECORD` bytes from `record`.
                let n =
                    unsafe { libc::write(write_end.as_raw_fd(), record.as_ptr().cast(), RECORD) };
                if n != RECORD as isize {
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
            std::os::fd::AsFd::as_fd(&read_end),
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
                Err(e) => return Err(format!("reading the answers: {e}")),
            },
            Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
    };
    if !ended {
        return Err(format!(
            "reading them did not answer within {} (a hung mount?)",
            crate::config::DurationText(bound)
        ));
    }
    // The child closed its end on its way out: it is reaped at once.
    nix::sys::wait::waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
    if answers.len() != pidfiles.len() * RECORD {
        return Err("the reader ended before answering for every pidfile".into());
    }
    Ok(answers
        .chunks_exact(RECORD)
        .map(|r| {
            let pid = i32::from_ne_bytes([r[1], r[2], r[3], r[4]]);
            let group = i32::from_ne_bytes([r[5], r[6], r[7], r[8]]);
            match r[0] {
                0 => Ok((pid, (group > 0).then_some(group))),
                1 => Err(Cause::PidFileMissing),
                3 => Err(Cause::PidFileNotRegular),
                _ => Err(Cause::PidFileGarbage),
            }
        })
        .collect())
}

/// The process (thread group) that the task `pid` belongs to, from the
/// `Tgid:` line of `/proc/PID/status`; it differs from `pid` when `pid`
/// names a thread. `None` when no such task exists.
pub fn thread_group(pid: i32) -> Option<i32> {
    let mut path = [0u8; 64];
    let path = proc_path(&mut path, pid, b"status");
    // The Tgid: line comes fourth, after a name of at most 64 bytes.
    let mut buf = [0u8; 512];
    let n = read_small(path, &mut buf).ok()?;
    buf[..n]
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"Tgid:"))
        .and_then(parse_pid)
}

/// Opens a pidfd on `pid` and only then reads its state and start time, so
/// the start time belongs to the process the pidfd refers to (if that one
/// dies at once, the pidfd says so at the next poll).
fn attach(pid: i32, use_pidfd: bool) -> Lookup {
    let pidfd = if use_pidfd {
        match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(_) => return Lookup::Dead(Cause::ProcessDead),
        }
    } else {
        None
    };
    match stat_of(pid) {
        None => Lookup::Dead(Cause::ProcessDead),
        Some((b'Z' | b'X' | b'x', _)) => Lookup::Dead(Cause::Zombie),
        Some((_, start)) => Lookup::Alive(Found {
            pid,
            start,
            pidfd,
            pidfile: None,
        }),
    }
}

/// Finds the oldest process whose executable is `exe` (a binary replaced on
/// disk shows as `exe (deleted)` and still counts).
fn lookup_executable(exe: &[u8], use_pidfd: bool) -> Lookup {
    let mut oldest: Option<(u64, i32)> = None;
    let scanned = for_each_pid(|pid| {
        let mut path = [0u8; 64];
        let path = proc_path(&mut path, pid, b"exe");
        let mut link = [0u8; 4096];
        // SAFETY: `path` is NUL-terminated and `link` is writable for its length.
        let n =
            unsafe { libc::readlink(path.as_ptr().cast(), link.as_mut_ptr().cast(), link.len()) };
        if n <= 0 {
            return;
        }
        let link = &link[..n as usize];
        let matches = link == exe
            || link
                .strip_prefix(exe)
                .is_some_and(|rest| rest == b" (deleted)");
        if !matches {
            return;
        }
        if let Some((state, start)) = stat_of(pid) {
            if state == b'Z' {
                return;
            }
            if oldest.is_none_or(|(s, _)| start < s) {
                oldest = Some((start, pid));
            }
        }
    });
    if scanned.is_err() {
        return Lookup::Dead(Cause::NoSuchProcess);
    }
    match oldest {
        Some((_, pid)) => attach(pid, use_pidfd),
        None => Lookup::Dead(Cause::NoSuchProcess),
    }
}

/// Calls `f` with every PID in `/proc`, reading the directory with
/// `getdents64` into a buffer on the stack.
fn for_each_pid(mut f: impl FnMut(i32)) -> Result<(), Errno> {
    // SAFETY: a constant NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
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

/// The runtime state of one process rule.
#[derive(Debug)]
pub struct ProcessWatch {
    interval: Duration,
    tracked: Option<Found>,
    /// The last process trusted: PID, start time and the pidfile's identity
    /// then. Kept after the process dies, to recognise its PID reused.
    binding: Option<(i32, u64, Option<Stamp>)>,
    /// The last process seen to die: a look-up made before its death and
    /// answered after it must not bring it back to life.
    died: Option<(i32, u64)>,
}

impl ProcessWatch {
    pub fn new(interval: Duration) -> ProcessWatch {
        ProcessWatch {
            interval,
            tracked: None,
            binding: None,
            died: None,
        }
    }

    /// The process being watched, if any, by PID and start time. The
    /// shell holds its pidfd (the engine's copy of `Found` has none).
    pub fn tracked(&self) -> Option<(i32, u64)> {
        self.tracked.as_ref().map(|t| (t.pid, t.start))
    }

    pub fn pid(&self) -> Option<i32> {
        self.tracked.as_ref().map(|t| t.pid)
    }

    /// Takes over what an earlier instance of the rule knew (on reload).
    pub fn carry_over(&mut self, old: &mut ProcessWatch) {
        self.tracked = old.tracked.take();
        self.binding = old.binding;
        self.died = old.died;
    }

    /// Judges a lookup made at `now`. Returns the verdict and when to look
    /// again.
    pub fn observe(&mut self, lookup: Lookup, now: Instant) -> (Result<(), Cause>, Instant) {
        let verdict = match lookup {
            Lookup::Dead(cause) => {
                self.tracked = None;
                Err(cause)
            }
            Lookup::Alive(found) => self.accept(found),
        };
        (verdict, now + self.interval)
    }

    fn accept(&mut self, found: Found) -> Result<(), Cause> {
        if self.died == Some((found.pid, found.start)) {
            return Err(Cause::ProcessDead);
        }
        if let Some((pid, start, pidfile)) = self.binding
            && pid == found.pid
            && start != found.start
            && pidfile.is_some()
            && pidfile == found.pidfile
        {
            // The pidfile was not rewritten, yet its PID now has another
            // start time: the PID was reused by another process.
            self.tracked = None;
            return Err(Cause::PidReused);
        }
        let same = self
            .tracked
            .as_ref()
            .is_some_and(|t| t.pid == found.pid && t.start == found.start);
        self.binding = Some((found.pid, found.start, found.pidfile));
        if same {
            // The process watched already: the shell keeps its pidfd.
            if let Some(t) = &mut self.tracked {
                t.pidfile = found.pidfile;
            }
        } else {
            self.tracked = Some(found);
        }
        Ok(())
    }

    /// The pidfd became readable: the process exited.
    pub fn died(&mut self) -> Cause {
        if let Some(t) = self.tracked.take() {
            self.died = Some((t.pid, t.start));
        }
        Cause::ProcessDead
    }
}

/// Sets SIGCHLD to its default disposition, whatever the parent left:
/// with SIGCHLD ignored the kernel reaps every child itself, and waiting
/// for a repair or for `check`'s pidfile reader fails with ECHILD. The
/// first thing every command does.
pub fn default_sigchld() -> Result<(), Errno> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler: no code runs on the signal.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
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
    fn this_process_is_found_alive() {
        let me = std::process::id() as i32;
        let (state, start) = stat_of(me).unwrap();
        assert_ne!(state, b'Z');
        assert!(start > 0);
        match attach(me, have_pidfd()) {
            Lookup::Alive(found) => assert_eq!(found.start, start),
            other => panic!("{other:?}"),
        }
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        use std::os::unix::ffi::OsStrExt;
        match lookup_executable(exe.as_os_str().as_bytes(), false) {
            Lookup::Alive(found) => assert!(found.pid > 0),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup_executable(b"/no/such/exe", false),
            Lookup::Dead(Cause::NoSuchProcess)
        ));
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
    fn a_reused_pid_is_not_the_process() {
        let now = Instant::now();
        let stamp = Stamp {
            mtime_sec: 1,
            mtime_nsec: 0,
            inode: 1,
            device: 1,
        };
        let found_in = |start, pidfile| {
            Lookup::Alive(Found {
                pid: 100,
                start,
                pidfd: None,
                pidfile: Some(pidfile),
            })
        };
        let found = |start| found_in(start, stamp);
        let rewritten_stamp = Stamp {
            mtime_sec: 2,
            ..stamp
        };
        let mut w = ProcessWatch::new(Duration::from_secs(1));
        assert_eq!(w.observe(found(500), now).0, Ok(()));
        assert_eq!(w.observe(found(500), now).0, Ok(()));
        assert_eq!(w.observe(found(900), now).0, Err(Cause::PidReused));
        assert_eq!(w.observe(found(900), now).0, Err(Cause::PidReused));
        // A rewritten pidfile is trusted afresh.
        assert_eq!(w.observe(found_in(900, rewritten_stamp), now).0, Ok(()));
        // A look-up answered after the death it raced with stays dead.
        assert_eq!(w.died(), Cause::ProcessDead);
        assert_eq!(
            w.observe(found_in(900, rewritten_stamp), now).0,
            Err(Cause::ProcessDead)
        );
    }
}
