//! The daemon's status as plain data, and what people are shown of it:
//! [`Status::render`] for `heartwatch status`, [`Status::systemd_line`] for
//! systemd's `STATUS=`, [`Status::crash_summary`] for the crash report. The
//! daemon writes it to its status file as a record for programs
//! (`record`: [`Status::write_record`], [`parse`]). One struct, so the views
//! cannot disagree, and `heartwatch status` reads fields, not prose.

mod json;
mod record;
mod words;

pub use json::{DaemonState, SCHEMA as JSON_SCHEMA, write_unavailable};
pub use record::{MAX_RECORD, parse};
pub(crate) use record::{escape, unescape};
pub use words::{LadderStep, RepairEnd, RuleHealth, RuleKind};

use crate::config::DurationText;
use crate::history::Entry;
use crate::reboot::Reason;
use crate::text::{Count, UtcTime};
use std::fmt::{self, Write as _};
use std::time::Duration;

/// Everything the status says, as the daemon had it when it wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The writer's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub identity: Identity,
    /// Wall-clock seconds (display only) when the daemon started.
    pub started: i64,
    /// When this status was written.
    pub updated: i64,
    /// When the orderly stop ended, if the daemon has stopped.
    pub stopped: Option<i64>,
    /// The configuration root, as shown.
    pub root: String,
    pub dry_run: bool,
    pub devices: Vec<DeviceStatus>,
    /// What the drivers said of the last reset; empty with no device.
    pub boot_status: String,
    /// The reboot heartwatch started before this boot, if any.
    pub last_reboot: Option<Reason>,
    pub budget: Budget,
    /// The reboot under way, if one is and its reason is known.
    pub rebooting: Option<Reason>,
    /// Why a reboot was not taken (past the budget, or dry run).
    pub suppressed: Option<String>,
    /// What `heartwatch agent` answers the load balancer; `None` in a
    /// record that has no `agent` line.
    pub agent: Option<Agent>,
    pub rules: Vec<RuleStatus>,
    /// The reboot history, oldest first (`crate::history`).
    pub history: Vec<Entry>,
    /// What the daemon counted since it started (not in the record).
    pub counts: Counts,
}

/// Counters of this daemon run: they start at 0 when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Reboots decided (within the budget).
    pub reboots_decided: u64,
    /// Reboots a ladder reached but that were not taken: past the budget,
    /// or in dry run.
    pub reboots_suppressed: u64,
    /// Changes of any rule's health.
    pub health_changes: u64,
}

/// What a rule went through in this daemon run (kept across reloads by
/// the rule's name). 32-bit counters, added to without wrapping: every
/// rule holds them twice (its state and its status), and a rule that
/// failed once a second would take 136 years to reach the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleCounts {
    /// Times it went from starting or healthy to failing.
    pub failures: u32,
    /// Repairs that ended, by [`RepairTally`] (its `as usize`).
    pub repairs: [u32; RepairTally::ALL.len()],
}

/// How a repair ended, in the words the metrics count it by (an
/// unkillable repair counts as timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairTally {
    /// Exit status 0.
    Succeeded,
    /// Another exit status, or a signal.
    Failed,
    /// Killed at its timeout, or given up on after SIGKILL.
    TimedOut,
    /// It could not be started.
    NotStarted,
    /// Its end could not be learned.
    Lost,
    /// Dry run: not started on purpose.
    DryRun,
}

impl RepairTally {
    pub const ALL: [RepairTally; 6] = [
        RepairTally::Succeeded,
        RepairTally::Failed,
        RepairTally::TimedOut,
        RepairTally::NotStarted,
        RepairTally::Lost,
        RepairTally::DryRun,
    ];

    pub fn of(ending: crate::repair::Ending) -> RepairTally {
        use crate::repair::Ending;
        match ending {
            Ending::Exited(0) => RepairTally::Succeeded,
            Ending::Exited(_) | Ending::Signalled(_) => RepairTally::Failed,
            Ending::TimedOut | Ending::Unkillable(_) => RepairTally::TimedOut,
            Ending::NotStarted(_) => RepairTally::NotStarted,
            Ending::Lost(_) => RepairTally::Lost,
            Ending::DryRun => RepairTally::DryRun,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            RepairTally::Succeeded => "succeeded",
            RepairTally::Failed => "failed",
            RepairTally::TimedOut => "timed_out",
            RepairTally::NotStarted => "not_started",
            RepairTally::Lost => "lost",
            RepairTally::DryRun => "dry_run",
        }
    }
}

/// The answer for HAProxy's agent check, as the engine decided it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agent {
    pub answer: Answer,
    /// Why, in a few words; empty when there is nothing to say.
    pub reason: String,
}

/// `up`, `drain` or `down`: what the agent tells the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    #[default]
    Up,
    Drain,
    Down,
}

impl Answer {
    pub fn word(self) -> &'static str {
        match self {
            Answer::Up => "up",
            Answer::Drain => "drain",
            Answer::Down => "down",
        }
    }

    pub fn from_word(word: &str) -> Option<Answer> {
        [Answer::Up, Answer::Drain, Answer::Down]
            .into_iter()
            .find(|a| a.word() == word)
    }
}

/// Which process wrote the status: its PID, that PID's start time (clock
/// ticks after boot, as in `/proc/PID/stat`) and the boot's ID, so that a
/// PID another process took since is not taken for the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub pid: u32,
    /// `None` when the daemon could not read it.
    pub start_time: Option<u64>,
    /// `None` when the daemon could not read it.
    pub boot_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceStatus {
    pub path: String,
    /// The driver's identity string.
    pub identity: String,
    /// The timeout the driver set.
    pub timeout: Duration,
    pub feed_interval: Duration,
    pub feeding: Feeding,
    /// `WDIOC_GETBOOTSTATUS`'s `WDIOF_*` bits; `None` when the driver
    /// does not say.
    pub boot_status: Option<u32>,
}

/// How feeding a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Feeding {
    #[default]
    Fed,
    /// The last keepalive was refused.
    Fails,
    /// Stopped on purpose: a reboot was decided and its orderly paths ran
    /// out of time.
    Stopped,
}

/// The reboot budget: `used` reboots of `of` decided without a healthy
/// period; the count starts again after `healthy_uptime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub used: u32,
    pub of: u32,
    pub healthy_uptime: Duration,
    /// Since when (wall-clock seconds) no rule that can reboot has been
    /// failing; `None` while one is.
    pub healthy_since: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleStatus {
    pub name: String,
    /// What it watches: `heartbeat`, `process`, `system`.
    pub kind: RuleKind,
    pub health: RuleHealth,
    /// When the rule's health last changed (wall-clock seconds).
    pub since: i64,
    /// Why it fails; empty unless failing.
    pub cause: String,
    pub step: LadderStep,
    /// Where its ladder stands; empty while the ladder is idle.
    pub ladder: String,
    /// Repair attempts made since the ladder last started at the bottom.
    pub repair_attempts: u32,
    /// Boxed: most rules never ran a repair (32 bytes a rule fewer).
    pub last_repair: Option<Box<LastRepair>>,
    /// Not in the record.
    pub counts: RuleCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastRepair {
    /// The attempt and how it ended (`attempt 1 succeeded (exit 0) after 5ms`).
    pub text: String,
    pub end: RepairEnd,
    /// When it ended (wall-clock seconds).
    pub at: i64,
}

/// How many history entries `heartwatch status` shows, newest first.
const HISTORY_SHOWN: usize = 8;

/// Replaces `text` with `value`, keeping its allocation.
pub fn set_text(text: &mut String, value: impl fmt::Display) {
    text.clear();
    let _ = write!(text, "{value}");
}

/// Copies `from` into `to`, keeping the allocations of a reason already
/// there (a derived `clone_from` would allocate anew).
pub fn set_reason(to: &mut Option<Reason>, from: Option<&Reason>) {
    match (to.as_mut(), from) {
        (Some(to), Some(from)) => {
            to.rule.clone_from(&from.rule);
            to.cause.clone_from(&from.cause);
            to.step.clone_from(&from.step);
            to.uptime = from.uptime;
            to.wall = from.wall;
            to.boot_id.clone_from(&from.boot_id);
        }
        (_, from) => *to = from.cloned(),
    }
}

impl Status {
    /// How many rules are starting, healthy, failing.
    fn counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for rule in &self.rules {
            let slot = match rule.health {
                RuleHealth::Starting => 0,
                RuleHealth::Healthy => 1,
                RuleHealth::Failing => 2,
            };
            counts[slot] += 1;
        }
        counts
    }

    fn first_failing(&self) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.health == RuleHealth::Failing)
            .map(|r| r.name.as_str())
    }

    /// The status for people: what `heartwatch status` prints.
    pub fn render(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let version = &self.version;
        let pid = self.identity.pid;
        match self.stopped {
            None => writeln!(
                out,
                "heartwatch {version} pid {pid} running since {}, updated {}",
                UtcTime(self.started),
                UtcTime(self.updated)
            )?,
            Some(stopped) => writeln!(
                out,
                "heartwatch {version} pid {pid} stopped at {} (an orderly stop), ran since {}",
                UtcTime(stopped),
                UtcTime(self.started)
            )?,
        }
        write!(out, "identity: pid {pid} start ")?;
        match self.identity.start_time {
            Some(start) => write!(out, "{start}")?,
            None => out.write_str("unknown")?,
        }
        writeln!(
            out,
            " boot {}",
            self.identity.boot_id.as_deref().unwrap_or("unknown")
        )?;
        writeln!(
            out,
            "configuration {}{}",
            self.root,
            if self.dry_run {
                " (dry run: no action is taken)"
            } else {
                ""
            }
        )?;
        if self.devices.is_empty() {
            writeln!(out, "watchdog: none (Device=none)")?;
        }
        for d in &self.devices {
            writeln!(
                out,
                "watchdog {} \"{}\": timeout {}, fed every {}{}",
                d.path,
                d.identity,
                DurationText(d.timeout),
                DurationText(d.feed_interval),
                match d.feeding {
                    Feeding::Stopped => ", FEEDING STOPPED for the reboot",
                    Feeding::Fails => ", FEEDING FAILS",
                    Feeding::Fed => "",
                }
            )?;
        }
        if !self.boot_status.is_empty() {
            writeln!(out, "boot: {}", self.boot_status)?;
        }
        match &self.last_reboot {
            Some(r) => writeln!(out, "last reboot by heartwatch: {r}")?,
            None => writeln!(out, "last reboot by heartwatch: none recorded")?,
        }
        writeln!(
            out,
            "reboot budget: {} of {} used (starts again after {} healthy)",
            self.budget.used,
            self.budget.of,
            DurationText(self.budget.healthy_uptime)
        )?;
        if let Some(reason) = &self.rebooting {
            writeln!(out, "REBOOTING: {reason}")?;
        }
        if let Some(text) = &self.suppressed {
            writeln!(out, "REBOOT SUPPRESSED: {text}")?;
        }
        if let Some(agent) = self.agent.as_ref().filter(|a| a.answer != Answer::Up) {
            writeln!(
                out,
                "load balancer agent: {}: {}",
                agent.answer.word(),
                agent.reason
            )?;
        }
        let [starting, healthy, failing] = self.counts();
        writeln!(
            out,
            "rules: {} ({healthy} healthy, {failing} failing, {starting} starting)",
            self.rules.len()
        )?;
        let width = self.rules.iter().map(|r| r.name.len()).max().unwrap_or(4);
        let kinds = self
            .rules
            .iter()
            .map(|r| r.kind.word().len())
            .max()
            .unwrap_or(4);
        for r in &self.rules {
            write!(
                out,
                "  {:<width$}  {:<8}  {:<kinds$}  since {}",
                r.name,
                r.health.word(),
                r.kind.word(),
                UtcTime(r.since),
            )?;
            if r.health == RuleHealth::Failing {
                write!(out, "  {}", r.cause)?;
            }
            if !r.ladder.is_empty() {
                write!(out, "; ladder: {}", r.ladder)?;
            }
            if let Some(repair) = &r.last_repair {
                write!(
                    out,
                    "; last repair: {} at {}",
                    repair.text,
                    UtcTime(repair.at)
                )?;
            }
            writeln!(out)?;
        }
        if !self.history.is_empty() {
            writeln!(out, "reboot history, newest first:")?;
            for e in self.history.iter().rev().take(HISTORY_SHOWN) {
                writeln!(out, "  {e}")?;
            }
            if let Some(older) = self.history.len().checked_sub(HISTORY_SHOWN)
                && older > 0
            {
                writeln!(
                    out,
                    "  ... and {older} older (heartwatch status --json shows every entry)"
                )?;
            }
        }
        Ok(())
    }

    /// systemd's one-line `STATUS=`.
    pub fn systemd_line(&self) -> impl fmt::Display + '_ {
        SystemdLine(self)
    }

    /// The line the crash report quotes of the rules.
    pub fn crash_summary(&self) -> impl fmt::Display + '_ {
        CrashSummary(self)
    }
}

struct SystemdLine<'a>(&'a Status);

impl fmt::Display for SystemdLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0;
        let [starting, healthy, failing] = status.counts();
        let n = Count::of(status.rules.len(), "rule");
        if let Some(reason) = &status.rebooting {
            write!(f, "rebooting: {reason}")
        } else if let Some(text) = &status.suppressed {
            write!(f, "REBOOT SUPPRESSED: {text}")
        } else if let Some(name) = status.first_failing() {
            write!(
                f,
                "{n}: {healthy} healthy, {failing} failing ({name}…), {starting} starting"
            )
        } else {
            write!(
                f,
                "{n}: {healthy} healthy, {failing} failing, {starting} starting"
            )
        }
    }
}

struct CrashSummary<'a>(&'a Status);

impl fmt::Display for CrashSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0;
        let [starting, healthy, failing] = status.counts();
        let n = Count::of(status.rules.len(), "rule");
        write!(
            f,
            "{n}: {healthy} healthy, {failing} failing, {starting} starting"
        )?;
        if let Some(name) = status.first_failing() {
            write!(f, "; first failing: {name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn reason(rule: &str) -> Reason {
        Reason {
            rule: rule.into(),
            cause: "stale: not modified for 2s (max age 1s)".into(),
            step: "after 3 repair attempts".into(),
            uptime: Duration::new(1234, 567_891_234),
            wall: 1_795_000_000,
            boot_id: "0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11".into(),
        }
    }

    /// A status with every field set, none of them empty.
    pub(crate) fn full() -> Status {
        Status {
            version: "0.2.0".into(),
            identity: Identity {
                pid: 4321,
                start_time: Some(987_654),
                boot_id: Some("0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11".into()),
            },
            started: 1_795_000_000,
            updated: 1_795_000_100,
            stopped: None,
            root: "/etc/heartwatch".into(),
            dry_run: true,
            devices: vec![
                DeviceStatus {
                    path: "/dev/watchdog0".into(),
                    identity: "i6300ESB timer".into(),
                    timeout: Duration::from_secs(30),
                    feed_interval: Duration::from_millis(2500),
                    feeding: Feeding::Fed,
                    boot_status: Some(0x20),
                },
                DeviceStatus {
                    path: "/dev/watchdog1".into(),
                    identity: "Software Watchdog".into(),
                    timeout: Duration::from_secs(60),
                    feed_interval: Duration::from_millis(2500),
                    feeding: Feeding::Fails,
                    boot_status: None,
                },
            ],
            boot_status: "the last reset was not caused by the watchdog".into(),
            last_reboot: Some(reason("backup")),
            budget: Budget {
                used: 1,
                of: 3,
                healthy_uptime: Duration::from_secs(3600),
                healthy_since: Some(1_795_000_040),
            },
            rebooting: Some(reason("nginx")),
            suppressed: Some("dry run: would reboot for rule nginx: dead".into()),
            agent: Some(Agent {
                answer: Answer::Drain,
                reason: "rule nginx: dead: the process exited".into(),
            }),
            rules: vec![
                RuleStatus {
                    name: "backup".into(),
                    kind: RuleKind::Heartbeat,
                    health: RuleHealth::Healthy,
                    since: 1_795_000_010,
                    cause: String::new(),
                    step: LadderStep::Idle,
                    ladder: String::new(),
                    repair_attempts: 0,
                    last_repair: Some(Box::new(LastRepair {
                        text: "attempt 1 succeeded (exit 0) after 5ms".into(),
                        end: RepairEnd::Succeeded,
                        at: 1_795_000_020,
                    })),
                    ..RuleStatus::default()
                },
                RuleStatus {
                    name: "nginx".into(),
                    kind: RuleKind::Process,
                    health: RuleHealth::Failing,
                    since: 1_795_000_030,
                    cause: "dead: the process exited".into(),
                    step: LadderStep::Waiting,
                    ladder: "waiting after repair attempt 1".into(),
                    repair_attempts: 1,
                    last_repair: None,
                    ..RuleStatus::default()
                },
                RuleStatus {
                    name: "late".into(),
                    kind: RuleKind::Command,
                    health: RuleHealth::Starting,
                    since: 1_795_000_000,
                    ..RuleStatus::default()
                },
            ],
            counts: Counts::default(),
            history: vec![
                Entry {
                    wall: 1_794_990_000,
                    boot_id: "an-earlier-boot".into(),
                    kind: crate::history::Kind::Reboot,
                    rule: "backup".into(),
                    cause: "stale: not modified for 2s (max age 1s)".into(),
                    step: "after 3 repair attempts".into(),
                },
                Entry {
                    wall: 1_794_990_100,
                    boot_id: "0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11".into(),
                    kind: crate::history::Kind::WatchdogReset,
                    cause: "last reset was caused by the watchdog (boot status cardreset)".into(),
                    ..Entry::default()
                },
                Entry {
                    wall: 1_795_000_050,
                    boot_id: "0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11".into(),
                    kind: crate::history::Kind::Suppressed,
                    rule: "nginx".into(),
                    cause: "dead: the process exited".into(),
                    step: "after 1 repair attempt".into(),
                },
            ],
        }
    }

    fn rendered(status: &Status) -> String {
        let mut out = String::new();
        status.render(&mut out).unwrap();
        out
    }

    #[test]
    fn people_see_the_status_as_lines_of_words() {
        assert_eq!(
            rendered(&full()),
            "\
heartwatch 0.2.0 pid 4321 running since 2026-11-18 11:06:40 UTC, updated 2026-11-18 11:08:20 UTC
identity: pid 4321 start 987654 boot 0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11
configuration /etc/heartwatch (dry run: no action is taken)
watchdog /dev/watchdog0 \"i6300ESB timer\": timeout 30s, fed every 2s500ms
watchdog /dev/watchdog1 \"Software Watchdog\": timeout 1min, fed every 2s500ms, FEEDING FAILS
boot: the last reset was not caused by the watchdog
last reboot by heartwatch: rule backup: stale: not modified for 2s (max age 1s) (after 3 repair attempts), decided at 2026-11-18 11:06:40 UTC after 1235 s of uptime
reboot budget: 1 of 3 used (starts again after 1h healthy)
REBOOTING: rule nginx: stale: not modified for 2s (max age 1s) (after 3 repair attempts), decided at 2026-11-18 11:06:40 UTC after 1235 s of uptime
REBOOT SUPPRESSED: dry run: would reboot for rule nginx: dead
load balancer agent: drain: rule nginx: dead: the process exited
rules: 3 (1 healthy, 1 failing, 1 starting)
  backup  healthy   heartbeat  since 2026-11-18 11:06:50 UTC; last repair: attempt 1 succeeded (exit 0) after 5ms at 2026-11-18 11:07:00 UTC
  nginx   failing   process    since 2026-11-18 11:07:10 UTC  dead: the process exited; ladder: waiting after repair attempt 1
  late    starting  command    since 2026-11-18 11:06:40 UTC
reboot history, newest first:
  2026-11-18 11:07:30 UTC  suppressed  rule nginx: dead: the process exited (after 1 repair attempt): past the budget, no reboot
  2026-11-18 08:21:40 UTC  watchdog    last reset was caused by the watchdog (boot status cardreset)
  2026-11-18 08:20:00 UTC  reboot      rule backup: stale: not modified for 2s (max age 1s) (after 3 repair attempts)
"
        );
        let mut stopped = full();
        stopped.stopped = Some(1_795_000_200);
        stopped.identity.start_time = None;
        stopped.identity.boot_id = None;
        stopped.devices.clear();
        stopped.devices.clear();
        stopped.boot_status.clear();
        stopped.last_reboot = None;
        stopped.rebooting = None;
        stopped.suppressed = None;
        stopped.agent = None;
        stopped.dry_run = false;
        stopped.rules.clear();
        stopped.history.clear();
        assert_eq!(
            rendered(&stopped),
            "\
heartwatch 0.2.0 pid 4321 stopped at 2026-11-18 11:10:00 UTC (an orderly stop), ran since 2026-11-18 11:06:40 UTC
identity: pid 4321 start unknown boot unknown
configuration /etc/heartwatch
watchdog: none (Device=none)
last reboot by heartwatch: none recorded
reboot budget: 1 of 3 used (starts again after 1h healthy)
rules: 0 (0 healthy, 0 failing, 0 starting)
"
        );
    }

    #[test]
    fn systemd_and_the_crash_report_get_one_line_each() {
        let mut status = full();
        assert!(
            status
                .systemd_line()
                .to_string()
                .starts_with("rebooting: rule nginx: stale")
        );
        status.rebooting = None;
        assert_eq!(
            status.systemd_line().to_string(),
            "REBOOT SUPPRESSED: dry run: would reboot for rule nginx: dead"
        );
        status.suppressed = None;
        assert_eq!(
            status.systemd_line().to_string(),
            "3 rules: 1 healthy, 1 failing (nginx…), 1 starting"
        );
        assert_eq!(
            status.crash_summary().to_string(),
            "3 rules: 1 healthy, 1 failing, 1 starting; first failing: nginx"
        );
        status.rules.truncate(1);
        assert_eq!(
            status.systemd_line().to_string(),
            "1 rule: 1 healthy, 0 failing, 0 starting"
        );
        assert_eq!(
            status.crash_summary().to_string(),
            "1 rule: 1 healthy, 0 failing, 0 starting"
        );
    }

    #[test]
    fn copies_keep_their_allocations() {
        let mut to = Some(reason("a"));
        let from = reason("b");
        let before = to.as_ref().unwrap().cause.as_ptr();
        set_reason(&mut to, Some(&from));
        assert_eq!(to.as_ref(), Some(&from));
        assert_eq!(to.as_ref().unwrap().cause.as_ptr(), before);
        set_reason(&mut to, None);
        assert_eq!(to, None);
        let mut text = String::with_capacity(64);
        let before = text.as_ptr();
        set_text(&mut text, format_args!("{} {}", 1, "two"));
        assert_eq!((text.as_str(), text.as_ptr()), ("1 two", before));
    }
}
