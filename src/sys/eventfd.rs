//! `eventfd(2)`: how a worker thread wakes the event loop's `poll`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A non-blocking eventfd used as a flag: raised by [`EventFd::raise`],
/// readable until [`EventFd::clear`].
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> std::io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is checked by `owned`.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        Ok(EventFd(super::fs::owned(raw)?))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes the descriptor readable: adds one to the counter. Allocates
    /// nothing; a counter already high is left so (EAGAIN).
    pub fn raise(&self) {
        let one: u64 = 1;
        let _ = super::fs::write(self.0.as_fd(), &one.to_ne_bytes()); // readable either way
    }

    /// Makes the descriptor unreadable: reads the counter back to zero. A
    /// counter already zero fails with EAGAIN, which is fine.
    pub fn clear(&self) {
        let mut counter = [0u8; 8];
        let _ = super::fs::read(self.0.as_fd(), &mut counter); // EAGAIN: already clear
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
