//! Starting a command without allocating: its argv and environment are
//! turned into C strings and pointer arrays once ([`Prepared`], at load),
//! and each start is `fork` and, in the child, only system calls on that
//! memory before `execve`. What `std::process::Command` does for a repair,
//! but a command check runs again and again in the steady state, where the
//! loop must not allocate (std builds its argv on every spawn).
//!
//! The child gets what a repair gets: stdin from `/dev/null`, stdout and
//! stderr into the given pipe, a process group of its own, `/` as its
//! directory, an empty signal mask and default signal dispositions. An
//! `execve` that fails comes back as its errno through a close-on-exec
//! pipe, as std does it; but std waits on that pipe until the exec is
//! done, and an exec of a program on a hung mount never is: here the
//! caller gets the pipe, non-blocking, and reads it once the child has
//! exited ([`exec_error`]), so that the loop never waits on an exec.

use super::Errno;
use nix::unistd::Pid;
use std::ffi::{CString, c_char};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A command ready to start: the program, argv and envp as the kernel
/// takes them. The pointers point into the strings' own heap buffers,
/// which never move while the strings live (they are never changed).
pub struct Prepared {
    program: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into `_strings`, owned by the same value
// and never changed; moving `Prepared` to another thread moves them along.
unsafe impl Send for Prepared {}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepared({:?})", self.program)
    }
}

impl Prepared {
    /// `None` when a word holds a NUL byte (configuration words cannot).
    pub fn new(program: &[u8], args: &[&[u8]], env: &[&[u8]]) -> Option<Prepared> {
        let program = CString::new(program).ok()?;
        let mut strings = Vec::with_capacity(1 + args.len() + env.len());
        strings.push(program.clone());
        for a in args.iter().chain(env) {
            strings.push(CString::new(*a).ok()?);
        }
        let pointers = |s: &[CString]| -> Vec<*const c_char> {
            s.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let argv = pointers(&strings[..1 + args.len()]);
        let envp = pointers(&strings[1 + args.len()..]);
        Some(Prepared {
            program,
            _strings: strings,
            argv,
            envp,
        })
    }
}

/// Starts `command` with stdout and stderr on `output`, without waiting
/// for its exec. Allocates nothing. Returns the child's PID (its process
/// group's ID) and the pipe [`exec_error`] reads once it has exited.
pub fn spawn(command: &Prepared, output: BorrowedFd<'_>) -> Result<(Pid, OwnedFd), Errno> {
    let (errors_read, errors_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // SAFETY: the child makes only async-signal-safe system calls (dup2,
    // open, setpgid, chdir, sigprocmask, rt_sigaction, execve, write,
    // _exit) on memory prepared before the fork; it allocates nothing and
    // takes no lock, which is what is safe after forking a process that
    // has threads.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let errno = child(command, output.as_raw_fd());
            let bytes = (errno as i32).to_ne_bytes();
            let _ = super::fs::write(errors_write.as_fd(), &bytes);
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(127) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok((child, errors_read)),
    }
}

/// After the child of [`spawn`] exited: the errno its `execve` failed
/// with, if it failed (the child wrote it before exiting); `None` when the
/// exec succeeded (the pipe closed on it, empty).
pub fn exec_error(errors: BorrowedFd<'_>) -> Option<Errno> {
    let mut bytes = [0u8; 4];
    match super::fs::read(errors, &mut bytes) {
        Ok(4) => Some(Errno::from_raw(i32::from_ne_bytes(bytes))),
        _ => None,
    }
}

/// In the child: the descriptors, the group, the directory, the signals,
/// then `execve`. Returns the errno of what failed.
fn child(command: &Prepared, output: i32) -> Errno {
    // SAFETY: a NUL-terminated literal path; flags only.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    if null < 0 {
        return Errno::last();
    }
    for (from, to) in [(null, 0), (output, 1), (output, 2)] {
        // SAFETY: plain descriptor numbers; dup2 clears close-on-exec.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Errno::last();
        }
    }
    if null > 2 {
        // SAFETY: our own descriptor, now copied to 0: the program gets
        // stdin, not a second /dev/null.
        unsafe { libc::close(null) };
    }
    // Every other descriptor the daemon has (or inherited from whoever
    // started it) closes at the exec; the exec-error pipe is close-on-exec
    // already. Kernels before 5.11 refuse the flag: nothing to do there
    // beyond the daemon's own close-on-exec descriptors.
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: a raw system call on descriptor numbers; it changes flags
    // only, and its failure is ignored on purpose.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: 0, 0: this process becomes the leader of a new group.
    if unsafe { libc::setpgid(0, 0) } < 0 {
        return Errno::last();
    }
    // SAFETY: a NUL-terminated literal path.
    if unsafe { libc::chdir(c"/".as_ptr()) } < 0 {
        return Errno::last();
    }
    if let Err(e) = super::signal::reset_signals() {
        return Errno::from_raw(e.raw_os_error().unwrap_or(0));
    }
    // SAFETY: the program, argv and envp are NUL-terminated strings and
    // NULL-terminated pointer arrays that live in `command` (see
    // `Prepared`); execve only returns on failure.
    unsafe {
        libc::execve(
            command.program.as_ptr(),
            command.argv.as_ptr(),
            command.envp.as_ptr(),
        )
    };
    Errno::last()
}
