//! heartwatch: a watchdog daemon for Linux hosts.
//!
//! The module list is the architecture: configuration (`config`),
//! the hardware watchdog (`device`), the checks (`health`, `heartbeat`,
//! `process`, `probe`), the escalation state machine (`ladder`), repair
//! commands (`repair`), the reboot path and its budget (`reboot`), the
//! crash report and memory test (`crash`, `memtest`), systemd notification
//! (`notify`), the daemon's status as data (`status`) and its identity in
//! it (`identity`), atomic files (`atomic`) and the runtime directory's
//! (`rundir`), text without allocation (`text`), logging (`logger`), the
//! decisions without I/O (`engine`), the event loop that carries them out
//! (`daemon`), the command line (`cli`) and what its commands say
//! (`report`), and every raw system call (`sys`, a leaf that imports
//! nothing from the rest of the crate; among them opening only regular
//! files, `sys::regular`).
//!
//! `Cargo.toml` denies `unsafe_code` in the whole crate; only `sys`, the
//! crash handler and the memory test allow it (each says so at its top),
//! and there every such block says why it is sound (clippy's
//! `undocumented_unsafe_blocks`).

mod atomic;
pub mod cli;
pub(crate) mod command;
pub mod config;
mod crash;
pub mod daemon;
mod device;
pub mod engine;
pub mod health;
mod heartbeat;
pub mod history;
mod identity;
mod interface;
mod ladder;
pub mod logger;
mod memtest;
mod metrics;
pub mod notify;
mod probe;
mod process;
mod reboot;
mod repair;
mod report;
mod rundir;
pub mod status;
mod sys;
mod system;
mod text;

/// `crate::regular` is the same module as `crate::sys::regular`.
use sys::regular;

/// The parsers of what the kernel writes, for the fuzz targets
/// (`fuzz/fuzz_targets/proc.rs`).
pub mod parsers {
    pub use crate::crash::{Mapping, parse_maps_line};
    pub use crate::sys::proc::{parse_pid, parse_stat};
}
