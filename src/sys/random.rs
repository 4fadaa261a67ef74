//! `getrandom(2)`: a seed from the kernel's random pool.

/// Eight bytes from the kernel's random pool, or `None` when it has none
/// to give without blocking (early at boot) or no `getrandom`.
pub fn random_u64() -> Option<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into an 8-byte buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, libc::GRND_NONBLOCK) };
    (n == 8).then(|| u64::from_ne_bytes(bytes))
}
