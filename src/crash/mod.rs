//! What heartwatch does when it crashes: a handler for SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE and SIGABRT that writes a crash report to stderr (the
//! journal) and `/dev/kmsg` (which survives into pstore/ramoops), tests the
//! process's own anonymous writable memory while preserving it, and then
//! re-raises the signal with the default action so that the crash stays a
//! crash: systemd restarts the daemon and a core dump stays possible.
//!
//! The handler is async-signal-safe: it runs on its own alternate stack
//! (`install` gives the calling thread one, `prepare_thread` any other),
//! calls only raw system calls (`writev`, `read`, `ioctl`, `mincore`,
//! `tgkill`, `clock_gettime`, ...), allocates nothing, takes no lock and
//! formats its numbers itself. Everything it needs — file descriptors, the
//! memory test's backup area, the `/proc/self/maps` buffer, the rules'
//! summary — is prepared by `install` and `publish_summary` beforehand.
//!
//! It replaces the Rust runtime's SIGSEGV/SIGBUS handler, so it reports
//! stack overflows itself: a fault next to the interrupted stack pointer.
//!
//! The parts: `install` prepares all of that and installs the handlers
//! (the only part that maps memory, opens files or can fail); `handler` is
//! what runs on a crash; `report` formats and writes the report's lines
//! and keeps the rules' summary; `park` stops the other threads; `memory`
//! runs the memory test (`crate::memtest`) over the process's own memory.
//! The ways to make the binary crash on purpose are in `test_hooks`,
//! compiled only with the `test-hooks` feature.

// A signal handler, alternate stacks and raw memory: Cargo.toml denies
// unsafe_code elsewhere (sys and the memory test apart).
#![allow(unsafe_code)]

mod handler;
mod install;
mod memory;
mod park;
mod report;
#[cfg(feature = "test-hooks")]
mod test_hooks;

pub use install::{Setup, install, prepare_thread, stop_feeding};
pub use memory::{Mapping, parse_maps_line};
pub use report::publish_summary;
#[cfg(feature = "test-hooks")]
pub use test_hooks::{crash_test_command, trigger_for_tests};

const PAGE: usize = 4096;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
