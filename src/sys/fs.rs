//! Files by raw system call: `open`, `openat`, `unlinkat`, `read`,
//! `write`, `readlink`. Each takes a NUL-terminated name and caller-owned
//! buffers and allocates nothing, so a child forked from a process with
//! threads may use them.

use super::Errno;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `open(2)` with `flags` (no mode: nothing is created).
pub fn open(path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let raw = unsafe { libc::open(path.as_ptr(), flags) };
    owned(raw)
}

/// [`open`] for a name built in a caller's buffer: `path` must end with
/// its NUL (it is `EINVAL` otherwise).
pub fn open_bytes(path: &[u8], flags: libc::c_int) -> Result<OwnedFd, Errno> {
    let path = CStr::from_bytes_with_nul(path).map_err(|_| Errno::EINVAL)?;
    open(path, flags)
}

/// `openat(2)` of `name` in the directory `dir`, with `flags` and the
/// `mode` a created file gets.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, Errno> {
    // SAFETY: `dir` is an open descriptor and `name` is NUL-terminated;
    // both outlive the call.
    let raw = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            libc::c_uint::from(mode),
        )
    };
    owned(raw)
}

/// `unlinkat(2)`: `flags` 0 removes a file, `AT_REMOVEDIR` an empty
/// directory.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `dir` is an open descriptor and `name` is NUL-terminated.
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// One `read(2)` into `buf`; the bytes read.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// One `write(2)` from `buf`; the bytes written.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// Writes all of `bytes`, again after EINTR; stops at the first error or
/// at a write that takes nothing.
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Reads a small file into `buf`, again after EINTR, until `buf` is full
/// or the file ends; returns the bytes read. `path` ends with its NUL.
/// Opened non-blocking and without becoming a controlling terminal.
pub fn read_small(path: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = open_bytes(
        path,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
    )?;
    let mut len = 0;
    while len < buf.len() {
        match read(fd.as_fd(), &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// `readlink(2)` of `path` (ending with its NUL) into `buf`: the target's
/// bytes, cut at `buf.len()`.
pub fn readlink<'a>(path: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], Errno> {
    let path = CStr::from_bytes_with_nul(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `path` is NUL-terminated and `buf` is writable for its length.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| Errno::last())?;
    Ok(&buf[..n])
}

/// Takes ownership of what a call that returns a new descriptor returned.
pub(super) fn owned(raw: libc::c_int) -> Result<OwnedFd, Errno> {
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
