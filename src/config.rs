//! The configuration, parsed once at the edge into typed values: the daemon
//! file `heartwatch.conf` and one rule per `rules.d/NAME.rule`. Nothing
//! downstream sees a raw string. Every error is `path:line: what is wrong`.

#![deny(unsafe_code)]

use crate::ini::{self, Entry, LineError, Section};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the configuration lives unless `--config` says otherwise.
pub const DEFAULT_ROOT: &str = "/etc/heartwatch";
/// Largest configuration or rule file accepted.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The `PATH` repair commands are looked up in and run with.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
}

/// One rule: the file's name, what it watches and how it escalates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub source: PathBuf,
    pub watch: Watch,
    pub ladder: LadderSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    Heartbeat(HeartbeatSpec),
    Process(ProcessSpec),
}

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
    fn at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }

    fn file(path: &Path, message: impl Into<String>) -> Self {
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

/// Reads and validates the configuration under `root`. Returns every error
/// found, not just the first.
pub fn load(root: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    // Whoever can write the root can swap heartwatch.conf or rules.d.
    if let Err(e) = check_trust(root, &fs::metadata(root).map_err(|e| e.to_string())) {
        errors.push(e);
    }
    let conf_path = root.join("heartwatch.conf");
    let settings = match read_trusted(&conf_path) {
        Ok(text) => parse_settings(&conf_path, &text),
        Err(e) => Err(vec![e]),
    };
    let rules_dir = root.join("rules.d");
    let rules = load_rules(&rules_dir, &mut errors);
    match settings {
        Ok((watchdog, daemon, reboot)) if errors.is_empty() => Ok(Config {
            root: root.to_path_buf(),
            watchdog,
            daemon,
            reboot,
            rules,
        }),
        Ok(_) => Err(errors),
        Err(mut e) => {
            e.append(&mut errors);
            Err(e)
        }
    }
}

fn load_rules(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<Rule> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(ConfigError::file(
                dir,
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    if let Err(e) = check_trust(dir, &fs::metadata(dir).map_err(|e| e.to_string())) {
        errors.push(e);
        return Vec::new();
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".rule") && !name.starts_with('.') {
                    paths.push(path);
                }
            }
            Err(e) => errors.push(ConfigError::file(dir, format!("cannot list: {e}"))),
        }
    }
    paths.sort();
    let mut rules = Vec::with_capacity(paths.len());
    for path in paths {
        let parsed = read_trusted(&path).map_err(|e| vec![e]).and_then(|text| {
            let name = rule_name(&path).map_err(|m| vec![ConfigError::file(&path, m)])?;
            parse_rule(&path, &name, &text)
        });
        match parsed {
            Ok(rule) => rules.push(rule),
            // Removed since the directory was listed (a package upgrade,
            // an admin): it is simply not a rule any more. A dangling
            // symlink is still there, and still an error.
            Err(_)
                if fs::symlink_metadata(&path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    rules
}

/// A rule's name is its file name without `.rule`.
fn rule_name(path: &Path) -> Result<String, String> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".rule"))
        .ok_or("the file name is not UTF-8")?;
    let ok = !stem.is_empty()
        && stem.len() <= 64
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if ok {
        Ok(stem.to_string())
    } else {
        Err(format!(
            "rule name {stem:?} must be 1 to 64 characters of letters, digits and -_.@:"
        ))
    }
}

/// Reads a file that may make heartwatch run commands as root: it must be a
/// regular file owned by root (or by whoever runs heartwatch) and writable
/// by nobody else, in a directory that is just as safe, and small.
fn read_trusted(path: &Path) -> Result<String, ConfigError> {
    // Look before opening: opening a device can act (opening a watchdog
    // arms it), and a FIFO could stall the read.
    let meta =
        fs::metadata(path).map_err(|e| ConfigError::file(path, format!("cannot open: {e}")))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    // O_NONBLOCK so that a FIFO swapped in since the look cannot stall us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ConfigError::file(path, format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| e.to_string());
    check_trust(path, &meta)?;
    let meta = meta.expect("checked by check_trust");
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    check_symlink_target(path)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::file(
            path,
            format!(
                "is {} bytes; the largest accepted is {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError::at(path, line, "is not UTF-8 text")
    })
}

fn not_regular(path: &Path, meta: &fs::Metadata) -> ConfigError {
    use std::os::unix::fs::MetadataExt;
    let kind = crate::regular::kind(meta.mode());
    ConfigError::file(path, format!("is not a regular file ({kind})"))
}

/// A rule may be a symlink, but the directory it really lives in must be
/// as safe as rules.d: whoever can write there can swap the rule.
fn check_symlink_target(path: &Path) -> Result<(), ConfigError> {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    let target = fs::canonicalize(path)
        .map_err(|e| ConfigError::file(path, format!("cannot resolve the symlink: {e}")))?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    check_trust(dir, &fs::metadata(dir).map_err(|e| e.to_string())).map_err(|e| {
        ConfigError::file(
            path,
            format!(
                "is a symlink to {}, and its directory {e}",
                target.display()
            ),
        )
    })
}

fn check_trust(path: &Path, meta: &Result<fs::Metadata, String>) -> Result<(), ConfigError> {
    let meta = meta
        .as_ref()
        .map_err(|e| ConfigError::file(path, format!("cannot stat: {e}")))?;
    match distrust(path, meta.uid(), meta.mode(), "rules run commands as root") {
        Some(why) => Err(ConfigError::file(path, why)),
        None => Ok(()),
    }
}

/// Why a file or directory with this owner and mode is not safe for a
/// daemon running as root (`stake` says what is at stake), with the fix;
/// None when it is: owned by root or the running user, and not writable by
/// group or others.
pub fn distrust(path: &Path, uid: u32, mode: u32, stake: &str) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if uid != 0 && uid != me {
        return Some(format!(
            "refused: owned by uid {uid}, not root; {stake} (fix: chown root: {})",
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "refused: mode {:04o} lets group or others write it; {stake} (fix: chmod go-w {})",
            mode & 0o7777,
            path.display()
        ));
    }
    None
}

/// Typed access to one section; remembers which keys were read so that the
/// rest can be reported as unknown.
struct Keys<'a> {
    path: &'a Path,
    section: &'a Section,
    used: Vec<bool>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Keys<'a> {
    fn new(path: &'a Path, section: &'a Section, errors: &'a mut Vec<ConfigError>) -> Self {
        Keys {
            path,
            section,
            used: vec![false; section.entries.len()],
            errors,
        }
    }

    fn entry(&mut self, key: &str) -> Option<&'a Entry> {
        let index = self.section.entries.iter().position(|e| e.key == key)?;
        self.used[index] = true;
        Some(&self.section.entries[index])
    }

    /// Reads `key` with `parse`; on a bad value records the error and
    /// returns `None`, as for a missing key.
    fn get<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let entry = self.entry(key)?;
        match parse(&entry.value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.push(ConfigError::at(
                    self.path,
                    entry.line,
                    format!("{key}=: {message}"),
                ));
                None
            }
        }
    }

    fn line_of(&self, key: &str) -> usize {
        self.section
            .entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.section.line, |e| e.line)
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ConfigError::at(self.path, line, message));
    }

    fn finish(self) {
        for (entry, used) in self.section.entries.iter().zip(&self.used) {
            if !used {
                self.errors.push(ConfigError::at(
                    self.path,
                    entry.line,
                    format!("unknown key {}= in [{}]", entry.key, self.section.name),
                ));
            }
        }
    }
}

fn line_errors(path: &Path, errors: Vec<LineError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError::at(path, e.line, e.message))
        .collect()
}

/// Parses the text of `heartwatch.conf` (public for the fuzz target).
pub fn parse_settings(
    path: &Path,
    text: &str,
) -> Result<(WatchdogSettings, DaemonSettings, RebootSettings), Vec<ConfigError>> {
    let sections = ini::parse(text).map_err(|e| line_errors(path, e))?;
    let mut errors = Vec::new();
    let empty = |name: &str| Section {
        name: name.to_string(),
        line: 1,
        entries: Vec::new(),
    };
    for s in &sections {
        if !["Watchdog", "Daemon", "Reboot"].contains(&s.name.as_str()) {
            errors.push(ConfigError::at(
                path,
                s.line,
                format!(
                    "unknown section [{}]; expected [Watchdog], [Daemon] or [Reboot]",
                    s.name
                ),
            ));
        }
    }
    let find = |name: &str| sections.iter().find(|s| s.name == name).cloned();
    let watchdog_section = find("Watchdog").unwrap_or_else(|| empty("Watchdog"));
    let daemon_section = find("Daemon").unwrap_or_else(|| empty("Daemon"));
    let reboot_section = find("Reboot").unwrap_or_else(|| empty("Reboot"));

    let mut keys = Keys::new(path, &watchdog_section, &mut errors);
    let devices = keys
        .get("Device", parse_devices)
        .unwrap_or_else(|| vec![PathBuf::from("/dev/watchdog0")]);
    let timeout = keys
        .get("Timeout", |v| {
            let d = parse_duration(v)?;
            if d.subsec_nanos() != 0 || d < Duration::from_secs(2) || d > Duration::from_secs(3600)
            {
                return Err("must be whole seconds from 2s to 1h (drivers count seconds)".into());
            }
            Ok(d)
        })
        .unwrap_or(Duration::from_secs(30));
    let feed_line = keys.line_of("FeedInterval");
    let feed_interval = keys
        .get("FeedInterval", parse_positive_duration)
        .unwrap_or(timeout / 6);
    if feed_interval > timeout / 2 {
        keys.error(
            feed_line,
            format!(
                "FeedInterval={} is more than half of Timeout={}; feed at most every {}",
                DurationText(feed_interval),
                DurationText(timeout),
                DurationText(timeout / 2)
            ),
        );
    }
    let keep_armed_on_stop = keys.get("KeepArmedOnStop", parse_bool).unwrap_or(false);
    keys.finish();

    let mut keys = Keys::new(path, &daemon_section, &mut errors);
    let startup_grace = keys
        .get("StartupGrace", parse_duration)
        .unwrap_or(Duration::from_secs(60));
    let check_timeout = keys
        .get("CheckTimeout", parse_positive_duration)
        .unwrap_or(Duration::from_secs(2));
    let state_dir = keys
        .get("StateDirectory", parse_absolute_path)
        .unwrap_or_else(|| PathBuf::from("/var/lib/heartwatch"));
    let runtime_dir = keys
        .get("RuntimeDirectory", parse_absolute_path)
        .unwrap_or_else(|| PathBuf::from("/run/heartwatch"));
    let dry_run = keys.get("DryRun", parse_bool).unwrap_or(false);
    let crash_memtest = keys.get("CrashMemtest", parse_bool).unwrap_or(true);
    keys.finish();

    let mut keys = Keys::new(path, &reboot_section, &mut errors);
    let budget = keys.get("Budget", |v| parse_count(v, 0, 100)).unwrap_or(3);
    let healthy_uptime = keys
        .get("HealthyUptime", parse_positive_duration)
        .unwrap_or(Duration::from_secs(3600));
    let orderly_timeout = keys
        .get("OrderlyTimeout", parse_positive_duration)
        .unwrap_or(Duration::from_secs(120));
    let command = match keys.entry("Command") {
        Some(entry) => match parse_argv(&entry.value) {
            Ok(argv) => Some(argv),
            Err(message) => {
                let line = entry.line;
                keys.error(line, format!("Command=: {message}"));
                None
            }
        },
        None => parse_argv("systemctl reboot").ok(),
    };
    let forced = keys.get("Forced", parse_bool).unwrap_or(true);
    keys.finish();

    if errors.is_empty() {
        Ok((
            WatchdogSettings {
                devices,
                timeout,
                feed_interval,
                keep_armed_on_stop,
            },
            DaemonSettings {
                startup_grace,
                check_timeout,
                state_dir,
                runtime_dir,
                dry_run,
                crash_memtest,
            },
            RebootSettings {
                budget,
                healthy_uptime,
                orderly_timeout,
                command,
                forced,
            },
        ))
    } else {
        Err(errors)
    }
}

/// Parses one rule file; `name` comes from the file name.
pub fn parse_rule(path: &Path, name: &str, text: &str) -> Result<Rule, Vec<ConfigError>> {
    let sections = ini::parse(text).map_err(|e| line_errors(path, e))?;
    let mut errors = Vec::new();
    let mut watch = None;
    let mut ladder = None;
    for section in &sections {
        match section.name.as_str() {
            "Heartbeat" | "Process" => {
                if watch.is_some() {
                    errors.push(ConfigError::at(
                        path,
                        section.line,
                        "a rule watches one thing: it has both [Heartbeat] and [Process]",
                    ));
                    continue;
                }
                let mut keys = Keys::new(path, section, &mut errors);
                watch = Some(if section.name == "Heartbeat" {
                    parse_heartbeat(&mut keys)
                } else {
                    parse_process(&mut keys)
                });
                keys.finish();
            }
            "Escalate" => {
                let mut keys = Keys::new(path, section, &mut errors);
                ladder = Some(parse_ladder(&mut keys));
                keys.finish();
            }
            other => errors.push(ConfigError::at(
                path,
                section.line,
                format!("unknown section [{other}]; expected [Heartbeat], [Process] or [Escalate]"),
            )),
        }
    }
    let watch = match watch {
        Some(Some(w)) => Some(w),
        Some(None) => None,
        None => {
            errors.push(ConfigError::at(
                path,
                1,
                "the rule watches nothing: add a [Heartbeat] or [Process] section",
            ));
            None
        }
    };
    let ladder = match ladder {
        Some(l) => l,
        None => Some(LadderSpec {
            repair: None,
            finally: Finally::Log,
            recovery: Duration::from_secs(60),
        }),
    };
    match (watch, ladder) {
        (Some(watch), Some(ladder)) if errors.is_empty() => Ok(Rule {
            name: name.to_string(),
            source: path.to_path_buf(),
            watch,
            ladder,
        }),
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError::file(path, "the rule is incomplete"));
            }
            Err(errors)
        }
    }
}

impl Keys<'_> {
    /// Like `get`, but a missing key is an error too.
    fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.section.entries.iter().any(|e| e.key == key) {
            self.get(key, parse)
        } else {
            let line = self.section.line;
            let name = self.section.name.clone();
            self.error(line, format!("[{name}] needs {key}="));
            None
        }
    }
}

fn parse_heartbeat(keys: &mut Keys) -> Option<Watch> {
    let file = keys.required("File", parse_absolute_path);
    let max_age = keys.required("MaxAge", parse_positive_duration);
    let interval_line = keys.line_of("CheckInterval");
    let interval = keys.get("CheckInterval", parse_positive_duration);
    let max_age = max_age?;
    let check_interval = match interval {
        Some(i) if i > max_age => {
            keys.error(
                interval_line,
                format!(
                    "CheckInterval={} is longer than MaxAge={}; the rule would be checked too rarely to fire on time",
                    DurationText(i),
                    DurationText(max_age)
                ),
            );
            return None;
        }
        Some(i) => i,
        None => default_check_interval(max_age),
    };
    Some(Watch::Heartbeat(HeartbeatSpec {
        file: file?,
        max_age,
        check_interval,
    }))
}

/// A tenth of the maximum age, between 100 ms and one minute: a stale
/// heartbeat is reported at most that long after its deadline.
pub fn default_check_interval(max_age: Duration) -> Duration {
    (max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

fn parse_process(keys: &mut Keys) -> Option<Watch> {
    let line = keys.section.line;
    let pid_file = keys.get("PidFile", parse_absolute_path);
    let executable = keys.get("Executable", parse_absolute_path);
    let check_interval = keys
        .get("CheckInterval", parse_positive_duration)
        .unwrap_or(Duration::from_secs(5));
    let target = match (pid_file, executable) {
        (Some(p), None) => ProcessTarget::PidFile(p),
        (None, Some(e)) => ProcessTarget::Executable(e),
        (Some(_), Some(_)) => {
            keys.error(line, "[Process] takes PidFile= or Executable=, not both");
            return None;
        }
        (None, None) => {
            keys.error(line, "[Process] needs PidFile= or Executable=");
            return None;
        }
    };
    Some(Watch::Process(ProcessSpec {
        target,
        check_interval,
    }))
}

fn parse_ladder(keys: &mut Keys) -> Option<LadderSpec> {
    let section_line = keys.section.line;
    let command = keys.get("Repair", parse_argv);
    let attempts_line = keys.line_of("RepairAttempts");
    let attempts = keys.get("RepairAttempts", |v| parse_count(v, 1, 1000));
    let timeout = keys.get("RepairTimeout", parse_positive_duration);
    let backoff = keys.get("RepairBackoff", parse_positive_duration);
    let backoff_max_line = keys.line_of("RepairBackoffMax");
    let backoff_max = keys.get("RepairBackoffMax", parse_positive_duration);
    let finally = keys
        .get("Finally", |v| match v {
            "log" => Ok(Finally::Log),
            "reboot" => Ok(Finally::Reboot),
            _ => Err(format!("{v:?} is not `log` or `reboot`")),
        })
        .unwrap_or(Finally::Log);
    let recovery_line = keys.line_of("RecoveryPeriod");
    let recovery = keys.get("RecoveryPeriod", parse_positive_duration);
    let has_repair_keys = attempts.is_some()
        || timeout.is_some()
        || backoff.is_some()
        || backoff_max.is_some()
        || keys.section.entries.iter().any(|e| e.key == "Repair");
    let repair = match command {
        Some(command) => {
            let backoff = backoff.unwrap_or(Duration::from_secs(10));
            let backoff_max = backoff_max.unwrap_or(Duration::from_secs(300).max(backoff));
            if backoff_max < backoff {
                keys.error(
                    backoff_max_line,
                    "RepairBackoffMax= is shorter than RepairBackoff=",
                );
                return None;
            }
            Some(RepairSpec {
                command,
                attempts: attempts.unwrap_or(3),
                timeout: timeout.unwrap_or(Duration::from_secs(30)),
                backoff,
                backoff_max,
            })
        }
        None if has_repair_keys => {
            if !keys.section.entries.iter().any(|e| e.key == "Repair") {
                keys.error(
                    attempts_line.max(section_line),
                    "Repair* settings without Repair=: say which command repairs",
                );
            }
            return None;
        }
        None => None,
    };
    if repair.is_none() && recovery.is_some() {
        // Without repairs the ladder is one step, taken at each failure.
        keys.error(
            recovery_line,
            "RecoveryPeriod= has no effect without Repair=: a rule that repairs nothing has no ladder to start over",
        );
        return None;
    }
    Some(LadderSpec {
        repair,
        finally,
        recovery: recovery.unwrap_or(Duration::from_secs(60)),
    })
}

fn parse_devices(value: &str) -> Result<Vec<PathBuf>, String> {
    if value == "none" {
        return Ok(Vec::new());
    }
    let mut devices: Vec<PathBuf> = Vec::new();
    for word in value.split_whitespace() {
        if word == "none" {
            return Err("`none` cannot be combined with devices".into());
        }
        let path = parse_absolute_path(word)?;
        if devices.contains(&path) {
            return Err(format!("{word} is listed twice"));
        }
        devices.push(path);
    }
    Ok(devices)
}

/// A duration: one or more `<integer><unit>` with units ms, s, min, h, d,
/// e.g. `500ms`, `10s`, `1min30s`. A bare number is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration (examples: 500ms, 10s, 5min, 2h, 1d)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "{text:?} has no unit; write e.g. {number}s or {number}min"
                ));
            }
            "m" => return Err(format!("{text:?}: `m` is ambiguous; write `min` or `ms`")),
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (ms, s, min, h, d)"
                ));
            }
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .filter(|m| *m <= 365 * 86_400_000)
            .ok_or_else(|| format!("{text:?} is longer than a year"))?;
        total += Duration::from_millis(millis);
    }
    if total > Duration::from_secs(365 * 86_400) {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(total)
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not yes or no")),
    }
}

fn parse_count(text: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

fn parse_absolute_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not an absolute path"));
    }
    if text.split('/').any(|part| part == "..") {
        return Err(format!("{text:?} contains `..`"));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("{text:?} contains white space"));
    }
    Ok(PathBuf::from(text))
}

/// Splits a command line into words the way a shell would for plain words,
/// 'single' and "double" quotes and backslashes, with no expansion at all,
/// and resolves the program in [`COMMAND_PATH`].
pub fn parse_argv(text: &str) -> Result<Argv, String> {
    let words = split_words(text)?;
    let (first, args) = words.split_first().ok_or("empty command")?;
    let program = if first.contains('/') {
        let path = parse_absolute_path(first)?;
        if !is_executable(&path) {
            return Err(format!("{first} is not an executable file"));
        }
        path
    } else {
        COMMAND_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(first))
            .find(|p| is_executable(p))
            .ok_or_else(|| format!("command {first:?} not found in {COMMAND_PATH}"))?
    };
    Ok(Argv {
        program,
        args: args.to_vec(),
        text: text.to_string(),
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("trailing backslash")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

pub use crate::text::DurationText;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1min30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("5m").unwrap_err().contains("ambiguous"));
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(
            parse_duration("5parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("400d").unwrap_err().contains("year"));
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn durations_print_as_written() {
        for text in ["500ms", "10s", "1min30s", "2h", "1d", "1h1min1s1ms", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(DurationText(d).to_string(), text);
        }
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_words(r#"sh -c 'echo "$HOME" | wc' "a b" c\ d"#).unwrap(),
            vec!["sh", "-c", r#"echo "$HOME" | wc"#, "a b", "c d"]
        );
        assert!(split_words("echo 'oops").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn commands_resolve_in_the_fixed_path() {
        let argv = parse_argv("sh -c 'exit 3'").unwrap();
        assert!(argv.program.is_absolute());
        assert_eq!(argv.args, vec!["-c", "exit 3"]);
        assert!(parse_argv("no-such-command-here").is_err());
        assert!(parse_argv("./relative").is_err());
        assert!(parse_argv("").is_err());
    }

    fn rule(text: &str) -> Result<Rule, Vec<String>> {
        parse_rule(Path::new("/r/x.rule"), "x", text)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn heartbeat_rule_with_defaults() {
        let r = rule("[Heartbeat]\nFile=/run/a\nMaxAge=10s\n").unwrap();
        let Watch::Heartbeat(h) = r.watch else {
            panic!("not a heartbeat")
        };
        assert_eq!(h.file, PathBuf::from("/run/a"));
        assert_eq!(h.max_age, Duration::from_secs(10));
        assert_eq!(h.check_interval, Duration::from_secs(1));
        assert_eq!(r.ladder.finally, Finally::Log);
        assert!(r.ladder.repair.is_none());
    }

    #[test]
    fn ladder_rule() {
        let r = rule(
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nRepair=sh -c true\nRepairAttempts=2\nFinally=reboot\n",
        )
        .unwrap();
        assert_eq!(r.ladder.finally, Finally::Reboot);
        let repair = r.ladder.repair.unwrap();
        assert_eq!(repair.attempts, 2);
        assert_eq!(repair.backoff, Duration::from_secs(10));
    }

    #[test]
    fn rule_errors_name_their_line() {
        let cases: &[(&str, &str)] = &[
            ("", "/r/x.rule:1: the rule watches nothing"),
            (
                "[Heartbeat]\nFile=/a\n",
                "/r/x.rule:1: [Heartbeat] needs MaxAge=",
            ),
            (
                "[Heartbeat]\nFile=a\nMaxAge=1s\n",
                "/r/x.rule:2: File=: \"a\" is not an absolute path",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=10\n",
                "/r/x.rule:3: MaxAge=: \"10\" has no unit",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\nColour=red\n",
                "/r/x.rule:4: unknown key Colour= in [Heartbeat]",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\nCheckInterval=2s\n",
                "/r/x.rule:4: CheckInterval=2s is longer than MaxAge=1s",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Process]\nPidFile=/p\n",
                "/r/x.rule:4: a rule watches one thing",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nFinally=explode\n",
                "/r/x.rule:5: Finally=: \"explode\" is not `log` or `reboot`",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepairAttempts=0\nRepair=true\n",
                "/r/x.rule:5: RepairAttempts=: 0 is out of range 1..=1000",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepairAttempts=2\n",
                "/r/x.rule:5: Repair* settings without Repair=",
            ),
            (
                "[Process]\nPidFile=/a\nExecutable=/b\n",
                "/r/x.rule:1: [Process] takes PidFile= or Executable=, not both",
            ),
            ("[Nonsense]\n", "/r/x.rule:1: unknown section [Nonsense]"),
        ];
        for (text, want) in cases {
            let errors = rule(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "for {text:?} wanted {want:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn settings_defaults_and_limits() {
        let p = Path::new("/c/heartwatch.conf");
        let (w, d, r) = parse_settings(p, "").unwrap();
        assert_eq!(w.devices, vec![PathBuf::from("/dev/watchdog0")]);
        assert_eq!(w.timeout, Duration::from_secs(30));
        assert_eq!(w.feed_interval, Duration::from_secs(5));
        assert!(!d.dry_run);
        assert!(d.crash_memtest);
        assert_eq!(r.budget, 3);
        let (w, ..) = parse_settings(p, "[Watchdog]\nDevice=none\n").unwrap();
        assert!(w.devices.is_empty());
        let errors: Vec<String> = parse_settings(
            p,
            "[Watchdog]\nTimeout=10s\nFeedInterval=6s\nDevice=/dev/a /dev/a\n[Daemon]\nStateDirectory=var\n[Reboot]\nBudget=1000\n[Extra]\n",
        )
        .unwrap_err()
        .into_iter()
        .map(|e| e.to_string())
        .collect();
        let lines: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap())
            .collect();
        assert!(lines.contains(&"/c/heartwatch.conf:3"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:4"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:6"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:8"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:9"), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("more than half of Timeout=10s"))
        );
    }
}
