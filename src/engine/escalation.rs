//! What a failing rule sets in motion: its ladder's steps, the repairs and
//! their timeouts, and the reboot — within the budget — with its path.

use super::reboot_path::{self, Action as PathAction, Bounds};
use super::{Command, Engine, KILL_GRACE, Now, RECORD_BOUND};
use crate::config::{DurationText, Finally};
use crate::health::Health;
use crate::history::Kind;
use crate::ladder::{Action, Event};
use crate::reboot::Reason;
use crate::repair::{Ending, Outcome};
use crate::text::Count;
use std::time::Instant;

/// A repair command that is running, as far as its timeout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RepairRun {
    pub attempt: u32,
    pub started: Instant,
    /// `RepairTimeout=` after the start.
    pub deadline: Instant,
    pub stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Within its timeout.
    Running,
    /// Past it: SIGTERM sent, SIGKILL at `deadline + KILL_GRACE`.
    Terminated,
    /// SIGKILL sent; given up on at `deadline + 2 * KILL_GRACE`.
    Killed,
}

impl RepairRun {
    pub fn next_deadline(&self) -> Instant {
        match self.stage {
            Stage::Running => self.deadline,
            Stage::Terminated => self.deadline + KILL_GRACE,
            Stage::Killed => self.deadline + 2 * KILL_GRACE,
        }
    }
}

impl Engine {
    /// Feeds an event to a rule's ladder and carries out what it says.
    pub(super) fn step_ladder(&mut self, index: usize, event: Event, now: Now) {
        let before = self.rules[index].ladder.state();
        let action = self.rules[index].ladder.on(event);
        if self.rules[index].ladder.state() != before {
            self.dirty = true;
            // Whatever timer the old state had is void.
            if !matches!(action, Action::Wait(_)) {
                self.schedule_timer(index, None);
            }
        }
        let name = &self.rules[index].rule.name;
        match action {
            Action::Nothing => {}
            Action::Wait(delay) => {
                log::debug!("rule {name}: ladder waits {}", DurationText(delay));
                self.schedule_timer(index, Some(now.mono + delay));
            }
            Action::Repair(attempt) => self.start_repair(index, attempt, now),
            Action::Reset => log::info!("rule {name}: stayed healthy; its ladder starts over"),
            Action::Final(Finally::Log) if self.rules[index].rule.ladder.repair.is_some() => {
                log::error!("rule {name}: every repair was tried; nothing more will be done")
            }
            Action::Final(Finally::Log) => {}
            Action::Final(Finally::Reboot) => self.decide_reboot(index, now),
        }
    }

    fn start_repair(&mut self, index: usize, attempt: u32, now: Now) {
        let w = &self.rules[index];
        let Some(spec) = &w.rule.ladder.repair else {
            return;
        };
        let (name, of) = (&w.rule.name, spec.attempts);
        if self.dry_run() {
            log::warn!(
                "rule {name}: dry run: would run `{}` (repair attempt {attempt} of {of})",
                spec.command.text
            );
            self.finish_repair(index, attempt, Ending::DryRun, now.mono, now);
            return;
        }
        log::warn!(
            "rule {name}: running `{}` (repair attempt {attempt} of {of})",
            spec.command.text
        );
        let deadline = now.mono + spec.timeout;
        let id = w.id;
        self.rules[index].repair = Some(Box::new(RepairRun {
            attempt,
            started: now.mono,
            deadline,
            stage: Stage::Running,
        }));
        self.repairing.push(index);
        self.commands.push_back(Command::StartRepair(id));
        self.dirty = true;
    }

    /// The repair exited (or never started): the ladder goes on.
    pub(super) fn repair_exited(&mut self, index: usize, ending: Ending, now: Now) {
        let Some(run) = self.rules[index].repair.take() else {
            return;
        };
        self.repairing.retain(|&i| i != index);
        let ending = match ending {
            Ending::Exited(_) | Ending::Signalled(_) if run.stage != Stage::Running => {
                Ending::TimedOut
            }
            ending => ending,
        };
        self.finish_repair(index, run.attempt, ending, run.started, now);
    }

    /// Enforces repair timeouts: SIGTERM at the timeout, SIGKILL after the
    /// kill grace, and after another, the attempt is given up on.
    pub(super) fn tend_repairs(&mut self, now: Now) {
        let mut k = 0;
        while k < self.repairing.len() {
            let index = self.repairing[k];
            let w = &mut self.rules[index];
            let Some(run) = &mut w.repair else {
                k += 1;
                continue;
            };
            if now.mono >= run.next_deadline() {
                match run.stage {
                    Stage::Running => {
                        run.stage = Stage::Terminated;
                        self.commands.push_back(Command::TerminateRepair(w.id));
                    }
                    Stage::Terminated => {
                        run.stage = Stage::Killed;
                        self.commands.push_back(Command::KillRepair(w.id));
                    }
                    Stage::Killed => {
                        let (attempt, started) = (run.attempt, run.started);
                        w.repair = None;
                        self.commands.push_back(Command::AbandonRepair(w.id));
                        self.repairing.remove(k);
                        let ending = Ending::Unkillable(KILL_GRACE.as_secs());
                        self.finish_repair(index, attempt, ending, started, now);
                        continue;
                    }
                }
            }
            k += 1;
        }
    }

    fn finish_repair(
        &mut self,
        index: usize,
        attempt: u32,
        ending: Ending,
        started: Instant,
        now: Now,
    ) {
        let w = &mut self.rules[index];
        let outcome = Outcome {
            attempt,
            ending,
            duration: now.mono.saturating_duration_since(started),
            ended_wall: now.wall,
        };
        match ending {
            Ending::Exited(0) | Ending::DryRun => {
                log::info!("rule {}: repair {outcome}", w.rule.name)
            }
            _ => log::warn!("rule {}: repair {outcome}", w.rule.name),
        }
        match &mut w.last_repair {
            Some(last) => **last = outcome,
            None => w.last_repair = Some(Box::new(outcome)),
        }
        let tally = &mut w.counts.repairs[crate::status::RepairTally::of(ending) as usize];
        *tally = tally.saturating_add(1);
        self.dirty = true;
        // Judge the repair on a fresh look, not on what was seen before it.
        if matches!(self.rules[index].probe, super::rules::Probe::Due(_)) {
            self.schedule_check(index, now.mono);
        }
        self.step_ladder(index, Event::RepairEnded, now);
        // A rule that became healthy while its repair ran raised its event
        // then, when the ladder was not listening: tell it now.
        if self.rules[index].health == Health::Healthy {
            self.step_ladder(index, Event::Healthy, now);
        }
    }

    /// A ladder reached `reboot`: within the budget, record why and begin;
    /// past it, refuse loudly and go on feeding and repairing.
    fn decide_reboot(&mut self, index: usize, now: Now) {
        let w = &self.rules[index];
        let cause = match w.health {
            Health::Failing(cause) => cause.to_string(),
            _ => "failing".to_string(),
        };
        let step = match &w.rule.ladder.repair {
            Some(r) => format!("after {}", Count(r.attempts.into(), "repair attempt")),
            None => "no repair configured".to_string(),
        };
        let name = w.rule.name.clone();
        if self.path.decided() {
            log::warn!("rule {name}: reboot wanted too; one is already under way");
            return;
        }
        let budget = self.config.reboot.budget;
        let count = self.reboot_count();
        let reason = Reason {
            rule: name.clone(),
            cause: cause.clone(),
            step,
            uptime: self.uptime(now),
            wall: now.wall,
            boot_id: self.world.boot_id.clone(),
        };
        if count >= budget {
            let text = format!(
                "rule {name}: {cause}: reboot suppressed: {} without a healthy period (Budget={budget}); staying up, feeding, repairing",
                Count(count.into(), "reboot")
            );
            crate::critical!("{text}");
            self.remember(Kind::Suppressed, &reason);
            self.suppressed = Some(text);
            self.counts.reboots_suppressed += 1;
            self.dirty = true;
            self.step_ladder(index, Event::RebootSuppressed, now);
            return;
        }
        crate::critical!("rebooting: {reason}");
        if self.dry_run() {
            log::warn!(
                "dry run: would record the reason, reboot in order, then call reboot(2), then stop feeding the watchdog"
            );
            self.suppressed = Some(format!("dry run: would reboot for rule {name}: {cause}"));
            self.counts.reboots_suppressed += 1;
            self.dirty = true;
            self.step_ladder(index, Event::RebootSuppressed, now);
            return;
        }
        if self.record.is_none() {
            log::error!("no state directory: the reboot reason is only in this log");
        }
        // The reason goes to the record, and the reboot counts against the
        // budget, when the path records it: after the drain, if there is
        // one, so that a reboot cancelled during its drain uses none.
        self.reboot_reason = Some(reason);
        self.counts.reboots_decided += 1;
        self.suppressed = None;
        self.dirty = true;
        let recorded = self.record.is_some();
        self.step_reboot(reboot_path::Event::Decided { recorded }, now);
    }

    /// While a reboot drains, every rule that can reboot became healthy
    /// again (or went in a reload): the reboot is cancelled.
    pub(super) fn tend_drain(&mut self, now: Now) {
        if self.failing_rebooters == 0
            && matches!(self.path.state(), super::RebootState::Draining { .. })
        {
            self.step_reboot(reboot_path::Event::Recovered, now);
        }
    }

    /// Moves a decided reboot on with time.
    pub(super) fn tend_reboot(&mut self, now: Now) {
        if self.path.deadline().is_some_and(|at| now.mono >= at) {
            self.step_reboot(reboot_path::Event::Tick, now);
        }
    }

    /// Feeds the reboot path an event and carries out what it says.
    pub(super) fn step_reboot(&mut self, event: reboot_path::Event, now: Now) {
        let c = &self.config.reboot;
        let bounds = Bounds {
            drain: c.drain,
            record: RECORD_BOUND,
            orderly: c.command.as_ref().map(|_| c.orderly_timeout),
        };
        let before = self.path.state();
        let action = self.path.on(event, now.mono, bounds);
        if self.path.state() != before {
            self.dirty = true;
        }
        match action {
            PathAction::Nothing => {}
            PathAction::Drain => log::warn!(
                "draining for {} before the reboot: heartwatch agent answers drain",
                DurationText(self.config.reboot.drain)
            ),
            PathAction::Cancel => {
                log::warn!(
                    "every rule that can reboot is healthy again during the drain: the reboot is cancelled"
                );
                self.reboot_reason = None;
            }
            PathAction::Record => {
                // The history first: the reboot waits for the reason only.
                if let Some(reason) = self.reboot_reason.clone() {
                    self.remember(Kind::Reboot, &reason);
                }
                if let (Some(record), Some(reason)) = (&mut self.record, &self.reboot_reason) {
                    record.count += 1;
                    record.last = Some(reason.clone());
                }
                self.commands.push_back(Command::SaveRecord { wait: true });
            }
            PathAction::RecordTimedOut => {
                crate::critical!(
                    "cannot record the reboot reason in {}: no answer within {}; rebooting anyway, the reason is only in this log",
                    self.config.daemon.state_dir.join("reboot").display(),
                    DurationText(RECORD_BOUND)
                );
                self.begin_orderly_reboot();
            }
            PathAction::BeginOrderly => self.begin_orderly_reboot(),
            PathAction::GiveUp => self.give_up_on_orderly_reboot(),
        }
    }

    fn begin_orderly_reboot(&mut self) {
        if let Some(argv) = &self.config.reboot.command {
            log::warn!("orderly reboot: running `{}`", argv.text);
            self.commands.push_back(Command::StartOrderlyReboot);
        }
    }

    /// The orderly reboot has not happened by its deadline: `reboot(2)`;
    /// if that fails too, feeding stops.
    fn give_up_on_orderly_reboot(&mut self) {
        if self.config.reboot.forced {
            crate::critical!("the orderly reboot did not happen in time; calling reboot(2)");
            self.commands.push_back(Command::ForceReboot);
        } else {
            log::warn!(
                "the orderly reboot did not happen in time; Forced=no: not calling reboot(2)"
            );
        }
        // The shell says what stopping the feeding means once it has (a
        // reboot(2) that works never comes back to it).
        self.commands.push_back(Command::StopFeeding);
    }
}
