//! Keeping the daemon in memory: `mlockall(2)` and glibc's `mallopt`.

use super::Errno;

/// One malloc arena instead of one per thread: the stat workers allocate
/// nothing, and each arena would reserve 64 MiB of locked address space.
/// Call before any thread starts. Nothing to do where the C library is
/// not glibc.
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes two integers; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Locks the process's pages, present and future, in memory: each as it
/// is first touched (`MCL_ONFAULT`), or everything at once on kernels
/// before 4.4, which refuse `MCL_ONFAULT` with EINVAL.
pub fn lock_all() -> Result<(), Errno> {
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
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(flags | MCL_ONFAULT) } == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::mlockall(flags) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}
