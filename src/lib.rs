//! heartwatch: a watchdog daemon for Linux hosts.
//!
//! The module list is the architecture: configuration (`ini`, `config`),
//! the hardware watchdog (`device`), the checks (`heartbeat`, `probe`),
//! systemd notification (`notify`), the status file (`status`), logging
//! (`logger`), the event loop (`daemon`) and the command line (`cli`).

pub mod cli;
pub mod crash;
pub mod memtest;
