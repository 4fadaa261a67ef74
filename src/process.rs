//! Process rules: a process that must be alive, named by a pidfile or by
//! its executable. Death is seen at once through a pidfd in the event loop;
//! a PID is trusted only together with its start time, so a reused PID is
//! never taken for the process; a zombie is dead.
//!
//! The looking-up (pidfile, `/proc`) runs in the stat workers like any
//! other read that might block; its readers ([`crate::sys::proc`]) use
//! fixed buffers and raw system calls, so it allocates nothing.

use crate::health::Cause;
use crate::sys::proc::{self as procfs, PidFileError, ReaderError, stat_of};
use crate::sys::stat::Stamp;
use crate::text::DurationText;
use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub use crate::sys::proc::{have_pidfd, start_time, thread_group};

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

/// Reads the PID in a pidfile, with the pidfile's identity (see
/// [`procfs::read_pidfile`]: only a regular file is opened).
pub fn read_pidfile(path: &CStr) -> Result<(i32, Stamp), Cause> {
    procfs::read_pidfile(path).map_err(cause)
}

fn cause(e: PidFileError) -> Cause {
    match e {
        PidFileError::Missing => Cause::PidFileMissing,
        PidFileError::NotRegular => Cause::PidFileNotRegular,
        PidFileError::Unreadable(errno) => Cause::Unreadable(errno),
        PidFileError::Garbage => Cause::PidFileGarbage,
    }
}

/// What a pidfile names, as `heartwatch check` looks at it: the PID and
/// the process (thread group) of that task if it exists, or why not.
pub type PidFileLook = Result<(i32, Option<i32>), Cause>;

/// Reads `pidfiles` for `heartwatch check` in a child process and waits at
/// most `bound` for the answers (see [`procfs::look_at_pidfiles`]: a read
/// stuck on a hung mount is left behind in that process).
pub fn look_at_pidfiles(pidfiles: &[CString], bound: Duration) -> Result<Vec<PidFileLook>, String> {
    match procfs::look_at_pidfiles(pidfiles, bound) {
        Ok(looks) => Ok(looks.into_iter().map(|look| look.map_err(cause)).collect()),
        Err(ReaderError::Pipe(e)) => Err(format!("pipe: {e}")),
        Err(ReaderError::Fork(e)) => Err(format!("fork: {e}")),
        Err(ReaderError::Read(e)) => Err(format!("reading the answers: {e}")),
        Err(ReaderError::Poll(e)) => Err(format!("poll: {e}")),
        Err(ReaderError::TimedOut) => Err(format!(
            "reading them did not answer within {} (a hung mount?)",
            DurationText(bound)
        )),
        Err(ReaderError::Wait(e)) => Err(format!("waitpid: {e}")),
        Err(ReaderError::Short) => {
            Err("the reader ended before answering for every pidfile".into())
        }
    }
}

/// Opens a pidfd on `pid` and only then reads its state and start time, so
/// the start time belongs to the process the pidfd refers to (if that one
/// dies at once, the pidfd says so at the next poll).
fn attach(pid: i32, use_pidfd: bool) -> Lookup {
    let pidfd = if use_pidfd {
        match procfs::pidfd_open(pid) {
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
    let scanned = procfs::for_each_pid(|pid| {
        let mut link = [0u8; 4096];
        let Some(link) = procfs::executable(pid, &mut link) else {
            return;
        };
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

pub use crate::sys::signal::default_sigchld;

#[cfg(test)]
mod tests {
    use super::*;

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
