//! What the engine publishes: the status file, the one-line summary for
//! systemd and for the crash report.

use super::{Engine, RebootState};
use crate::config::DurationText;
use crate::health::Health;
use crate::ladder;
use crate::reboot::Reason;
use crate::text::{Count, UtcTime};
use std::fmt;
use std::io::Write;

/// How many rules are starting, healthy, failing; the first failing one.
pub struct Tally<'a> {
    pub starting: usize,
    pub healthy: usize,
    pub failing: usize,
    pub first_failing: Option<&'a str>,
}

impl Engine {
    pub fn tally(&self) -> Tally<'_> {
        let mut t = Tally {
            starting: 0,
            healthy: 0,
            failing: 0,
            first_failing: None,
        };
        for w in &self.rules {
            match w.health {
                Health::Starting => t.starting += 1,
                Health::Healthy => t.healthy += 1,
                Health::Failing(_) => {
                    t.failing += 1;
                    t.first_failing.get_or_insert(&w.rule.name);
                }
            }
        }
        t
    }

    /// The reason of the reboot under way, if one is.
    pub fn rebooting_reason(&self) -> Option<&Reason> {
        if !self.path.decided() {
            return None;
        }
        self.reboot_reason.as_ref()
    }

    /// The text a reboot refused by the budget (or by dry run) left.
    pub fn suppressed(&self) -> Option<&str> {
        self.suppressed.as_deref()
    }

    /// The one line systemd shows (`STATUS=`).
    pub fn systemd_status(&self) -> impl fmt::Display + '_ {
        SystemdStatus(self)
    }

    /// The one line the crash report shows.
    pub fn summary(&self) -> impl fmt::Display + '_ {
        Summary(self)
    }

    /// Writes the status file's text at wall-clock time `wall`.
    pub fn render_status(&self, out: &mut Vec<u8>, wall: i64) -> std::io::Result<()> {
        let c = &self.config;
        let Tally {
            starting,
            healthy,
            failing,
            ..
        } = self.tally();
        let version = env!("CARGO_PKG_VERSION");
        let pid = self.world.pid;
        match self.stopped_wall {
            None => writeln!(
                out,
                "heartwatch {version} pid {pid} running since {}, updated {}",
                UtcTime(self.started_wall),
                UtcTime(wall)
            )?,
            Some(stopped) => writeln!(
                out,
                "heartwatch {version} pid {pid} stopped at {} (an orderly stop), ran since {}",
                UtcTime(stopped),
                UtcTime(self.started_wall)
            )?,
        }
        writeln!(out, "{}", self.world.identity)?;
        writeln!(
            out,
            "configuration {}{}",
            c.root.display(),
            if self.dry_run() {
                " (dry run: no action is taken)"
            } else {
                ""
            }
        )?;
        if self.world.devices.is_empty() {
            writeln!(out, "watchdog: none (Device=none)")?;
        }
        for d in &self.world.devices {
            writeln!(
                out,
                "watchdog {} \"{}\": timeout {}, fed every {}{}",
                d.path.display(),
                d.identity,
                DurationText(d.timeout),
                DurationText(c.watchdog.feed_interval),
                match (self.path.state(), self.feeding_ok) {
                    (RebootState::FeedStopped, _) => ", FEEDING STOPPED for the reboot",
                    (_, false) => ", FEEDING FAILS",
                    _ => "",
                }
            )?;
        }
        if !self.world.boot_status.is_empty() {
            writeln!(out, "boot: {}", self.world.boot_status)?;
        }
        match &self.previous_reboot {
            Some(r) => writeln!(out, "last reboot by heartwatch: {r}")?,
            None => writeln!(out, "last reboot by heartwatch: none recorded")?,
        }
        writeln!(
            out,
            "reboot budget: {} of {} used (starts again after {} healthy)",
            self.reboot_count(),
            c.reboot.budget,
            DurationText(c.reboot.healthy_uptime)
        )?;
        if let Some(reason) = self.rebooting_reason() {
            writeln!(out, "REBOOTING: {reason}")?;
        }
        if let Some(text) = &self.suppressed {
            writeln!(out, "REBOOT SUPPRESSED: {text}")?;
        }
        writeln!(
            out,
            "rules: {} ({healthy} healthy, {failing} failing, {starting} starting)",
            self.rules.len()
        )?;
        let width = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(4);
        for w in &self.rules {
            write!(
                out,
                "  {:<width$}  {:<8}  since {}",
                w.rule.name,
                w.health,
                UtcTime(w.since_wall),
            )?;
            if let Health::Failing(cause) = w.health {
                write!(out, "  {cause}")?;
            }
            if w.ladder.state() != ladder::State::Idle {
                write!(out, "; ladder: {}", w.ladder)?;
            }
            if let Some(r) = &w.last_repair {
                write!(out, "; last repair: {r} at {}", UtcTime(r.ended_wall))?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// A buffer large enough for the status of the rules installed.
    pub fn status_capacity(&self) -> usize {
        let longest_name = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(0);
        8192 + self.rules.len() * (300 + longest_name)
    }
}

struct SystemdStatus<'a>(&'a Engine);

impl fmt::Display for SystemdStatus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if let Some(reason) = e.rebooting_reason() {
            return write!(f, "rebooting: {reason}");
        }
        if let Some(text) = &e.suppressed {
            return write!(f, "REBOOT SUPPRESSED: {text}");
        }
        let t = e.tally();
        let n = Count::of(e.rules.len(), "rule");
        let (healthy, failing, starting) = (t.healthy, t.failing, t.starting);
        match t.first_failing {
            Some(name) => write!(
                f,
                "{n}: {healthy} healthy, {failing} failing ({name}…), {starting} starting"
            ),
            None => write!(
                f,
                "{n}: {healthy} healthy, {failing} failing, {starting} starting"
            ),
        }
    }
}

struct Summary<'a>(&'a Engine);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let t = e.tally();
        let n = Count::of(e.rules.len(), "rule");
        write!(
            f,
            "{n}: {} healthy, {} failing, {} starting",
            t.healthy, t.failing, t.starting
        )?;
        if let Some(name) = t.first_failing {
            write!(f, "; first failing: {name}")?;
        }
        Ok(())
    }
}
