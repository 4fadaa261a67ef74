//! heartwatch: a watchdog daemon for Linux hosts.
//!
//! The module list is the architecture: configuration (`ini`, `config`),
//! the hardware watchdog (`device`), the checks (`health`, `heartbeat`,
//! `process`, `probe`), the escalation state machine (`ladder`), repair
//! commands (`repair`), the reboot path and its budget (`reboot`), the
//! crash report and memory test (`crash`, `memtest`), systemd notification
//! (`notify`), the daemon's status as data (`status`) and its identity in
//! it (`identity`), atomic files (`atomic`) and the runtime directory's
//! (`rundir`), opening only regular files (`regular`), text without
//! allocation (`text`), logging (`logger`), the event loop (`daemon`), the
//! command line (`cli`) and what its commands say (`report`).

pub mod atomic;
pub mod cli;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod device;
pub mod health;
pub mod heartbeat;
pub mod identity;
pub mod ini;
pub mod ladder;
pub mod logger;
pub mod memtest;
pub mod notify;
pub mod probe;
pub mod process;
pub mod reboot;
pub mod regular;
pub mod repair;
pub mod report;
pub mod rundir;
pub mod status;
pub mod text;
