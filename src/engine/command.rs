//! Command checks in the engine: when a rule's check program runs, when a
//! run is past its `Timeout=` and is stopped (SIGTERM, SIGKILL after the
//! kill grace, given up on after another), and the verdict on each run.
//! One run at a time per rule: the next is due `Interval=` after the last
//! one ended. The shell runs the program like a repair and says how it
//! ended (`Event::CommandExited`); the run is on the rule's check
//! schedule (`Probe`), so its deadlines are in the check heap.

use super::rules::{Check, Probe};
use super::{Command, Engine, KILL_GRACE, Now};
use crate::command::{self, Failure, FirstLine};
use crate::config::CommandSpec;
use crate::health::Cause;
use crate::ladder::Event;
use crate::repair::Ending;
use std::time::Duration;

/// A `[Command]` rule's check.
#[derive(Debug)]
pub(super) struct CommandCheck {
    interval: Duration,
    timeout: Duration,
    stage: Stage,
}

/// Where the rule's run stands. While one runs (any stage but `Idle`),
/// the rule's `Probe` is `InFlight` until the stage's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No run: the next is due (`Probe::Due`).
    Idle,
    /// Within its timeout.
    Running,
    /// Past it, judged timed out: SIGTERM sent, SIGKILL at the deadline.
    Terminated,
    /// SIGKILL sent; given up on at the deadline.
    Killed,
}

impl CommandCheck {
    pub(super) fn new(spec: &CommandSpec) -> CommandCheck {
        CommandCheck {
            interval: spec.interval,
            timeout: spec.timeout,
            stage: Stage::Idle,
        }
    }
}

impl Engine {
    /// The rule's check entry came due: a run starts, or the one under way
    /// is past its deadline.
    pub(super) fn command_due(&mut self, index: usize, now: Now) {
        let w = &mut self.rules[index];
        let Check::Command(c) = &mut w.check else {
            return;
        };
        let (id, timeout, interval) = (w.id, c.timeout, c.interval);
        let (until, timer_waits) = match w.probe {
            Probe::Due(_) => {
                c.stage = Stage::Running;
                self.commands.push_back(Command::StartCommandCheck(id));
                self.in_flight(index, now.mono + timeout, false);
                return;
            }
            Probe::InFlight { until, timer_waits } => (until, timer_waits),
            Probe::Late => return,
        };
        match c.stage {
            Stage::Idle => {}
            Stage::Running => {
                c.stage = Stage::Terminated;
                self.commands.push_back(Command::TerminateCommandCheck(id));
                self.in_flight(index, until + KILL_GRACE, false);
                let cause = Cause::Command(Failure::TimedOut(timeout));
                self.judge(index, Err(cause), now);
                if timer_waits {
                    // The timeout is the fresh look the ladder waited for.
                    self.step_ladder(index, Event::TimerFired, now);
                }
            }
            Stage::Terminated => {
                c.stage = Stage::Killed;
                self.commands.push_back(Command::KillCommandCheck(id));
                self.in_flight(index, until + KILL_GRACE, timer_waits);
            }
            Stage::Killed => {
                c.stage = Stage::Idle;
                self.commands.push_back(Command::AbandonCommandCheck(id));
                self.schedule_check(index, now.mono + interval);
                if timer_waits {
                    self.step_ladder(index, Event::TimerFired, now);
                }
            }
        }
    }

    fn in_flight(&mut self, index: usize, until: std::time::Instant, timer_waits: bool) {
        self.rules[index].probe = Probe::InFlight { until, timer_waits };
        self.push_check(index, until);
    }

    /// The rule's run ended (or never started): judged, unless it was
    /// already judged timed out; the next is due an interval from now.
    pub(super) fn command_exited(
        &mut self,
        index: usize,
        ending: Ending,
        first: FirstLine,
        now: Now,
    ) {
        let w = &mut self.rules[index];
        let (Check::Command(c), Probe::InFlight { timer_waits, .. }) = (&mut w.check, w.probe)
        else {
            return;
        };
        let was = std::mem::replace(&mut c.stage, Stage::Idle);
        let interval = c.interval;
        match was {
            Stage::Idle => return,
            Stage::Running => {}
            Stage::Terminated | Stage::Killed => {
                log::info!("rule {}: its timed-out command check ended", w.rule.name);
            }
        }
        self.schedule_check(index, now.mono + interval);
        if was == Stage::Running {
            let verdict = command::judge(ending, first).map_err(Cause::Command);
            self.judge(index, verdict, now);
        }
        if timer_waits {
            self.step_ladder(index, Event::TimerFired, now);
        }
    }
}
