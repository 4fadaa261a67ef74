//! What the engine publishes: its status (`crate::status`), which the
//! shell writes as a record, tells systemd and hands the crash report.

use super::{Engine, RebootState};
use crate::health::Health;
use crate::ladder;
use crate::reboot::Reason;
use crate::status::{self, Agent, Answer, DeviceStatus, Feeding, LastRepair, RuleStatus, Status};

impl Engine {
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

    /// The status as of wall-clock time `wall`, brought up to date in
    /// place: a turn that changes health reuses its texts' allocations.
    pub fn status(&mut self, wall: i64) -> &Status {
        let mut status = std::mem::take(&mut self.status);
        self.fill_status(&mut status, wall);
        self.status = status;
        &self.status
    }

    /// The status as `heartwatch status` shows it to people, at `wall`.
    pub fn render_status(&mut self, out: &mut Vec<u8>, wall: i64) -> std::fmt::Result {
        let mut text = String::new();
        self.status(wall).render(&mut text)?;
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn fill_status(&self, status: &mut Status, wall: i64) {
        let c = &self.config;
        status.version.clear();
        status.version.push_str(env!("CARGO_PKG_VERSION"));
        status.identity.pid = self.world.identity.pid;
        status.identity.start_time = self.world.identity.start_time;
        status
            .identity
            .boot_id
            .clone_from(&self.world.identity.boot_id);
        status.started = self.started_wall;
        status.updated = wall;
        status.stopped = self.stopped_wall;
        status::set_text(&mut status.root, c.root.display());
        status.dry_run = self.dry_run();
        status
            .devices
            .resize_with(self.world.devices.len(), DeviceStatus::default);
        for (to, d) in status.devices.iter_mut().zip(&self.world.devices) {
            status::set_text(&mut to.path, d.path.display());
            to.identity.clone_from(&d.identity);
            to.timeout = d.timeout;
            to.feed_interval = c.watchdog.feed_interval;
            to.feeding = match (self.path.state(), self.feeding_ok) {
                (RebootState::FeedStopped, _) => Feeding::Stopped,
                (_, false) => Feeding::Fails,
                _ => Feeding::Fed,
            };
            to.boot_status = d.boot_status;
        }
        status.boot_status.clone_from(&self.world.boot_status);
        status::set_reason(&mut status.last_reboot, self.previous_reboot.as_ref());
        status.budget = status::Budget {
            used: self.reboot_count(),
            of: c.reboot.budget,
            healthy_uptime: c.reboot.healthy_uptime,
            healthy_since: self.healthy_since_wall,
        };
        status::set_reason(&mut status.rebooting, self.rebooting_reason());
        status.suppressed.clone_from(&self.suppressed);
        status.counts = crate::status::Counts {
            health_changes: self.changes,
            ..self.counts
        };
        // Room for any reason (a rule's name, at most a file name, and a
        // bounded cause), so that a turn never grows it.
        self.fill_agent(status.agent.get_or_insert_with(|| Agent {
            answer: Answer::Up,
            reason: String::with_capacity(1024),
        }));
        status
            .rules
            .resize_with(self.rules.len(), RuleStatus::default);
        for (to, w) in status.rules.iter_mut().zip(&self.rules) {
            to.name.clone_from(&w.rule.name);
            to.kind = w.rule.watch.kind();
            to.counts = w.counts;
            to.health = w.health.into();
            to.since = w.since_wall;
            match w.health {
                Health::Failing(cause) => status::set_text(&mut to.cause, cause),
                _ => to.cause.clear(),
            }
            let state = w.ladder.state();
            to.step = state.into();
            if state == ladder::State::Idle {
                to.ladder.clear();
            } else {
                status::set_text(&mut to.ladder, &w.ladder);
            }
            to.repair_attempts = match state {
                ladder::State::Idle => 0,
                ladder::State::Repairing(n)
                | ladder::State::Waiting(n)
                | ladder::State::Recovering(n) => n,
                ladder::State::Exhausted => w.rule.ladder.repair.as_ref().map_or(0, |r| r.attempts),
            };
            match (&mut to.last_repair, &w.last_repair) {
                (Some(to), Some(r)) => {
                    status::set_text(&mut to.text, r);
                    to.end = r.ending.into();
                    to.at = r.ended_wall;
                }
                (to, r) => {
                    *to = r.as_deref().map(|r| {
                        Box::new(LastRepair {
                            text: r.to_string(),
                            end: r.ending.into(),
                            at: r.ended_wall,
                        })
                    })
                }
            }
        }
        // Copied in place: an unchanged history costs no allocation.
        status.history.truncate(self.history.len());
        let kept = status.history.len();
        for (to, from) in status.history.iter_mut().zip(self.history.iter()) {
            to.copy_from(from);
        }
        status
            .history
            .extend(self.history.iter().skip(kept).cloned());
    }

    /// What `heartwatch agent` answers: `down` once the reboot is past its
    /// drain (or the daemon stopped), `drain` during the drain or while a
    /// rule with `[Escalate] Drain=yes` fails (the first in configuration
    /// order names the reason), `up` otherwise. Updated in place.
    fn fill_agent(&self, agent: &mut Agent) {
        let reason = self.reboot_reason.as_ref();
        let draining = || {
            self.rules.iter().find_map(|w| match w.health {
                Health::Failing(cause) if w.rule.ladder.drain => Some((&w.rule.name, cause)),
                _ => None,
            })
        };
        agent.answer = if self.stopped_wall.is_some() {
            status::set_text(&mut agent.reason, "heartwatch stopped");
            Answer::Down
        } else if self.path.committed() {
            match reason {
                Some(r) => status::set_text(
                    &mut agent.reason,
                    format_args!("rebooting for rule {}: {}", r.rule, r.cause),
                ),
                None => status::set_text(&mut agent.reason, "rebooting"),
            }
            Answer::Down
        } else if let (true, Some(r)) = (self.path.decided(), reason) {
            status::set_text(
                &mut agent.reason,
                format_args!("reboot for rule {}: {}", r.rule, r.cause),
            );
            Answer::Drain
        } else if let Some((name, cause)) = draining() {
            status::set_text(&mut agent.reason, format_args!("rule {name}: {cause}"));
            Answer::Drain
        } else {
            agent.reason.clear();
            Answer::Up
        };
    }

    /// A buffer large enough for the status of the rules installed.
    pub fn status_capacity(&self) -> usize {
        let longest_name = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(0);
        8192 + self.rules.len() * (300 + longest_name) + self.history.len() * 1024
    }
}
