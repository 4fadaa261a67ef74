//! Every system call heartwatch makes through `unsafe`, and the safe
//! wrappers around them: the rest of the crate denies `unsafe_code` (the
//! crash handler and the memory test apart) and calls these instead. A
//! leaf: nothing here imports from the rest of the crate, so the types the
//! calls answer with (`Errno`, [`stat::Stamp`], [`stat::Outcome`]) live
//! here and the others import them.
//!
//! One file per subject. Where a wrapper may run in a child forked from a
//! process with threads (the pidfile reader, a repair before its exec), it
//! allocates nothing and takes no lock, and says so.
//!
//! One unsafe operation per `unsafe` block, each with its own `SAFETY:`
//! comment, so that every reason given is the reason for one call.

// The one module of raw system calls: Cargo.toml denies unsafe_code
// everywhere else but the crash handler and the memory test.
#![allow(unsafe_code)]
#![deny(clippy::multiple_unsafe_ops_per_block)]

pub mod eventfd;
pub mod fs;
pub mod inotify;
pub mod memory;
pub mod poll;
pub mod proc;
pub mod random;
pub mod regular;
pub mod signal;
pub mod spawn;
pub mod stat;
pub mod watchdog;

pub use nix::errno::Errno;

/// Writes `n` in decimal into the end of `buf` and returns the digits.
/// Plain arithmetic on a caller's buffer: safe in a signal handler and in
/// a forked child (the `/proc` paths of [`proc`] and [`regular`]).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1234, &mut buf), b"1234");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
