//! heartwatch: a watchdog daemon for Linux hosts.
//!
//! The module list is the architecture: configuration (`ini`, `config`),
//! the hardware watchdog (`device`), the checks (`health`, `heartbeat`,
//! `probe`), systemd notification (`notify`), atomic files (`atomic`), text
//! without allocation (`text`), logging (`logger`), the event loop
//! (`daemon`) and the command line (`cli`).

pub mod atomic;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod device;
pub mod health;
pub mod heartbeat;
pub mod ini;
pub mod logger;
pub mod notify;
pub mod probe;
pub mod text;
