//! `poll(2)` on the event loop's own array of `struct pollfd`, which is
//! built once and reused, so a turn allocates nothing.

use super::Errno;

/// Waits at most `timeout_ms` (-1: for ever) for an event on `fds`; the
/// number of entries with `revents` set. EINTR is returned as an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd
    // structures for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    usize::try_from(n).map_err(|_| Errno::last())
}
