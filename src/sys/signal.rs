//! Signals: the default dispositions a child gets before it runs a
//! command, `pidfd_send_signal(2)`, and SIGCHLD's default.

use super::Errno;
use nix::sys::signal::Signal;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command` start with an empty signal mask and the default
/// disposition for every signal, whatever the daemon blocked or inherited.
/// std does not clear the signal mask: a command spawned from the loop
/// thread would start with SIGHUP, SIGINT and SIGTERM blocked (they go
/// to the signalfd), and with whatever the daemon's parent ignored.
pub fn reset_before_exec(command: &mut Command) {
    // SAFETY: `reset_signals` runs in the child between fork and exec. It
    // calls pthread_sigmask (through nix's `thread_set_mask`) and the raw
    // rt_sigaction system call (`default_disposition`), both
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(reset_signals);
    }
}

/// In the child before exec: an empty signal mask and the default
/// disposition for every signal, whatever the daemon blocked or inherited.
pub(super) fn reset_signals() -> std::io::Result<()> {
    nix::sys::signal::SigSet::empty().thread_set_mask()?;
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            default_disposition(sig);
        }
    }
    Ok(())
}

/// The kernel's signal set size, `_NSIG / 8`: 128 signals on MIPS, 64 on
/// every other Linux architecture.
const KERNEL_SIGSET_BYTES: usize = if cfg!(any(
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6"
)) {
    16
} else {
    8
};

/// Sets signal `sig` to its default disposition with the raw
/// `rt_sigaction(2)` system call. Raw because glibc's `sigaction` refuses
/// signals 32 and 33, which it keeps for itself, yet a parent may have
/// left them ignored. The kernel's `struct sigaction` differs between
/// architectures (MIPS puts `sa_flags` first; x86, Arm, PowerPC, s390 and
/// SPARC have `sa_restorer`, RISC-V and LoongArch do not), but the action
/// wanted here, SIG_DFL (0 on Linux) with no flags, no restorer and an
/// empty mask, is all zeros in every one of those layouts, and the buffer
/// is larger than any of them (at most 32 bytes). SPARC's system call
/// takes a restorer argument before the set size. Async-signal-safe: one
/// system call, no allocation.
fn default_disposition(sig: libc::c_int) {
    let action = [0u64; 8];
    let none = std::ptr::null_mut::<u64>();
    // SAFETY: `action` is a readable, all-zero kernel `struct sigaction`
    // (see above) that outlives the call; no old action is asked for (a
    // null pointer); the size is the kernel's signal set size.
    unsafe {
        #[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            action.as_ptr(),
            none,
            KERNEL_SIGSET_BYTES,
        );
        #[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            action.as_ptr(),
            none,
            none,
            KERNEL_SIGSET_BYTES,
        );
    }
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(fd: BorrowedFd<'_>, signal: Signal) -> Result<(), Errno> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Sets SIGCHLD to its default disposition, whatever the parent left:
/// with SIGCHLD ignored the kernel reaps every child itself, and waiting
/// for a repair or for `check`'s pidfile reader fails with ECHILD. The
/// first thing every command does.
pub fn default_sigchld() -> Result<(), Errno> {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: SIG_DFL installs no handler: no code runs on the signal.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map(drop)
}
