//! The configuration's types: what `load` returns and the rest of the
//! daemon reads. Every value is already validated; none is a raw string.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_ROOT: &str = "/etc/heartwatch";

/// The whole configuration: daemon settings and every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub root: PathBuf,
    pub watchdog: WatchdogSettings,
    pub daemon: DaemonSettings,
    pub reboot: RebootSettings,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogSettings {
    /// Devices to feed; empty for `Device=none`.
    pub devices: Vec<PathBuf>,
    /// Asked of the driver, in whole seconds.
    pub timeout: Duration,
    pub feed_interval: Duration,
    pub keep_armed_on_stop: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub startup_grace: Duration,
    pub check_timeout: Duration,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub dry_run: bool,
    pub crash_memtest: bool,
    /// `[Metrics] TextfileDirectory=`: where `heartwatch.prom` is written
    /// for the node exporter's textfile collector; `None`: no metrics.
    pub textfile_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RebootSettings {
    /// Consecutive daemon-initiated reboots allowed without a healthy period.
    pub budget: u32,
    /// Uptime without a reboot decision after which the count starts again.
    pub healthy_uptime: Duration,
    /// How long the orderly reboot may take before `reboot(2)` is called.
    pub orderly_timeout: Duration,
    /// The orderly reboot; `None` when no `systemctl` exists and none is set.
    pub command: Option<Argv>,
    /// Call `reboot(2)` when the orderly reboot has not happened in time.
    pub forced: bool,
    /// How long a decided reboot reports `drain` to the load balancer's
    /// agent (`heartwatch agent`) before it goes on; zero: not at all.
    pub drain: Duration,
}

/// One rule: the file's name, what it watches and how it escalates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub source: PathBuf,
    pub watch: Watch,
    /// Shared with the rule's running ladder (one copy of the settings).
    pub ladder: std::sync::Arc<LadderSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    Heartbeat(HeartbeatSpec),
    Process(ProcessSpec),
    Interface(InterfaceSpec),
    /// Boxed, like `Command`: the larger specs, kept out of line so that
    /// every rule (most are heartbeats) is not as large as they are.
    System(Box<SystemSpec>),
    Command(Box<CommandSpec>),
}

/// A `[Command]` check: a program run every `interval` (from the end of
/// one run to the start of the next), killed at `timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub run: Argv,
    pub interval: Duration,
    /// At most `interval`.
    pub timeout: Duration,
}

impl Watch {
    /// The rule's kind (status, JSON `kind`, metrics label).
    pub fn kind(&self) -> crate::status::RuleKind {
        use crate::status::RuleKind;
        match self {
            Watch::Heartbeat(_) => RuleKind::Heartbeat,
            Watch::Process(_) => RuleKind::Process,
            Watch::Interface(_) => RuleKind::Interface,
            Watch::System(_) => RuleKind::System,
            Watch::Command(_) => RuleKind::Command,
        }
    }
}

pub use super::system::SystemSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatSpec {
    pub file: PathBuf,
    pub max_age: Duration,
    pub check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    pub target: ProcessTarget,
    /// How often the pidfile or the process table is looked at again.
    pub check_interval: Duration,
}

/// A network interface that must be up and receive packets.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceSpec {
    /// A name the kernel accepts (1 to 15 bytes, no `/`, `:` or space).
    pub name: String,
    /// Its receive counter (`statistics/rx_packets`) must move this often.
    pub within: Duration,
    pub check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProcessTarget {
    PidFile(PathBuf),
    Executable(PathBuf),
}

/// What a failing rule does, step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderSpec {
    pub repair: Option<RepairSpec>,
    pub finally: Finally,
    pub recovery: Duration,
    /// `Drain=yes`: while the rule fails, the agent answers `drain`.
    pub drain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RepairSpec {
    pub command: Argv,
    pub attempts: u32,
    pub timeout: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finally {
    Log,
    Reboot,
}

/// A command to `execve`: the program resolved to an absolute path at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The command as written, for messages.
    pub text: String,
}

/// A configuration problem, with the file and, where known, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(super) fn at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }

    pub(super) fn file(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

pub use crate::text::DurationText;
