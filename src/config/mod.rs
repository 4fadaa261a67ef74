//! The configuration, parsed once at the edge into typed values: the daemon
//! file `heartwatch.conf` and one rule per `rules.d/NAME.rule`. Nothing
//! downstream sees a raw string. Every error is `path:line: what is wrong`.
//!
//! From the disk inwards: `trusted` reads only files root could have
//! written, `ini` splits their text into sections and keys, `schema` says
//! which keys exist and what they default to, reading each through `keys`
//! with a parser from `values`, into the `types` the daemon uses.

mod command;
mod ini;
mod interface;
mod keys;
mod schema;
mod system;
mod trusted;
mod types;
mod values;

pub use ini::{Entry, LineError, Section, comment_start, parse as parse_ini};
pub use schema::{parse_rule, parse_settings};
pub use system::{
    Amount, FilesystemLimits, LoadWindow, Measure, PressureAverage, PressureLine, PressureResource,
    SystemSpec,
};
pub use trusted::{assemble, distrust, load};
pub use types::{
    Argv, CommandSpec, Config, ConfigError, DEFAULT_ROOT, DaemonSettings, DurationText, Finally,
    HeartbeatSpec, InterfaceSpec, LadderSpec, ProcessSpec, ProcessTarget, RebootSettings,
    RepairSpec, Rule, Watch, WatchdogSettings,
};
pub use values::{COMMAND_PATH, parse_duration};
