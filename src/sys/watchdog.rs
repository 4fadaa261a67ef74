//! The kernel's watchdog ioctls (`linux/watchdog.h`), each a safe call on
//! an open descriptor. What the answers mean is the device module's.

use super::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct watchdog_info` from `linux/watchdog.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchdogInfo {
    pub options: u32,
    pub firmware_version: u32,
    pub identity: [u8; 32],
}

// The ioctl numbers come from the generic encoding (`_IOR`/`_IOWR`), so they
// are right on every architecture.
nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

/// `WDIOC_GETSUPPORT`: the driver's identity and options, into `info`.
pub fn get_support(fd: BorrowedFd<'_>, info: &mut WatchdogInfo) -> Result<(), Errno> {
    // SAFETY: `fd` is an open descriptor and `info` a valid
    // `struct watchdog_info` the kernel fills in.
    unsafe { wdioc_getsupport(fd.as_raw_fd(), info) }.map(drop)
}

/// `WDIOC_GETBOOTSTATUS`: the `WDIOF_*` bits of the last reset.
pub fn get_boot_status(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid int for the kernel to write.
    unsafe { wdioc_getbootstatus(fd.as_raw_fd(), &mut status) }?;
    Ok(status)
}

/// `WDIOC_KEEPALIVE`: one feed.
pub fn keepalive(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut dummy: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor; the argument is unused.
    unsafe { wdioc_keepalive(fd.as_raw_fd(), &mut dummy) }.map(drop)
}

/// `WDIOC_SETTIMEOUT`: asks for `seconds`; the timeout the driver chose.
pub fn set_timeout(fd: BorrowedFd<'_>, seconds: libc::c_int) -> Result<libc::c_int, Errno> {
    let mut seconds = seconds;
    // SAFETY: `seconds` is a valid int; the driver reads it and writes back
    // the timeout it chose.
    unsafe { wdioc_settimeout(fd.as_raw_fd(), &mut seconds) }?;
    Ok(seconds)
}

/// `WDIOC_GETTIMEOUT`: the timeout the driver set, in seconds.
pub fn get_timeout(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    let mut current: libc::c_int = 0;
    // SAFETY: `fd` is an open descriptor and `current` a valid int for the
    // kernel to write.
    unsafe { wdioc_gettimeout(fd.as_raw_fd(), &mut current) }?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // From linux/watchdog.h on x86_64, as printed by a C program.
        assert_eq!(wdioc_getsupport_number(), 0x8028_5700);
        assert_eq!(wdioc_settimeout_number(), 0xc004_5706);
        assert_eq!(wdioc_keepalive_number(), 0x8004_5705);
    }

    fn wdioc_getsupport_number() -> u64 {
        nix::request_code_read!(b'W', 0, std::mem::size_of::<WatchdogInfo>()) as u64
    }
    fn wdioc_settimeout_number() -> u64 {
        nix::request_code_readwrite!(b'W', 6, std::mem::size_of::<libc::c_int>()) as u64
    }
    fn wdioc_keepalive_number() -> u64 {
        nix::request_code_read!(b'W', 5, std::mem::size_of::<libc::c_int>()) as u64
    }
}
