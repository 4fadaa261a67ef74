//! The reboot path once a reboot is decided, as an explicit state machine
//! like the ladder: an enum of states, an enum of events, one `match`.
//! With `[Reboot] Drain=`, the host first reports `drain` to the load
//! balancer's agent for that long (`Draining`); if every rule that can
//! reboot is healthy again meanwhile, the reboot is cancelled. Then the
//! reason is recorded (bounded: a state directory that does not
//! answer does not hold the reboot up), then the orderly reboot is asked
//! for (bounded by `OrderlyTimeout=`), then `reboot(2)`, then feeding
//! stops so that the hardware resets the host.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No reboot decided.
    Up,
    /// The agent answers `drain` until `until`; then the reason is
    /// recorded (`recorded`: there is a state directory) or the orderly
    /// reboot begins. Nothing is recorded yet: a cancelled reboot uses no
    /// budget.
    Draining { until: Instant, recorded: bool },
    /// The reason is being written; the orderly reboot begins when it is,
    /// or at `until`.
    Recording { until: Instant },
    /// The orderly reboot was asked for; `reboot(2)` at `deadline`.
    Orderly { deadline: Instant },
    /// Feeding has stopped: the hardware watchdog resets the host.
    FeedStopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A ladder's final step was allowed by the budget; `recorded`: there
    /// is a state directory to write the reason to.
    Decided { recorded: bool },
    /// The writer answered for the reason (written or failed).
    ReasonWritten,
    /// The orderly reboot command could not be started.
    OrderlyNotStarted,
    /// Every rule whose ladder can reboot is healthy again.
    Recovered,
    /// Time passed.
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Report `drain` and wait.
    Drain,
    /// The drain ended in a recovery: no reboot after all.
    Cancel,
    /// Write the reason and wait for the writer's answer.
    Record,
    /// The writer did not answer in time: say so, go on.
    RecordTimedOut,
    /// Ask for the orderly reboot (`Command=`, when there is one).
    BeginOrderly,
    /// The orderly reboot did not happen in time: `reboot(2)` when
    /// `Forced=yes`, then stop feeding.
    GiveUp,
}

/// The bounds of each step.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `[Reboot] Drain=`; zero: no drain.
    pub drain: Duration,
    pub record: Duration,
    /// `None`: there is no orderly reboot command, so `reboot(2)` at once.
    pub orderly: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct RebootPath {
    state: State,
}

impl Default for RebootPath {
    fn default() -> Self {
        RebootPath { state: State::Up }
    }
}

impl RebootPath {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn decided(&self) -> bool {
        self.state != State::Up
    }

    /// Whether the reboot is past its drain: it goes on whatever happens.
    pub fn committed(&self) -> bool {
        !matches!(self.state, State::Up | State::Draining { .. })
    }

    /// When a `Tick` may next move the machine.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Draining { until, .. } | State::Recording { until } => Some(until),
            State::Orderly { deadline } => Some(deadline),
            State::Up | State::FeedStopped => None,
        }
    }

    /// The whole machine.
    pub fn on(&mut self, event: Event, now: Instant, bounds: Bounds) -> Action {
        use Event::*;
        use State::*;
        let orderly = || Orderly {
            deadline: bounds.orderly.map_or(now, |d| now + d),
        };
        let record = || Recording {
            until: now + bounds.record,
        };
        let (next, action) = match (self.state, event) {
            (Up, Decided { recorded }) if !bounds.drain.is_zero() => (
                Draining {
                    until: now + bounds.drain,
                    recorded,
                },
                Action::Drain,
            ),
            (Draining { .. }, Recovered) => (Up, Action::Cancel),
            (Draining { until, recorded }, Tick) if now >= until => match recorded {
                true => (record(), Action::Record),
                false => (orderly(), Action::BeginOrderly),
            },
            (Up, Decided { recorded: true }) => (
                Recording {
                    until: now + bounds.record,
                },
                Action::Record,
            ),
            (Up, Decided { recorded: false }) => (orderly(), Action::BeginOrderly),
            (Recording { .. }, ReasonWritten) => (orderly(), Action::BeginOrderly),
            (Recording { until }, Tick) if now >= until => (orderly(), Action::RecordTimedOut),
            (Orderly { .. }, OrderlyNotStarted) => (Orderly { deadline: now }, Action::Nothing),
            (Orderly { deadline }, Tick) if now >= deadline => (FeedStopped, Action::GiveUp),
            (state, _) => (state, Action::Nothing),
        };
        self.state = next;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        drain: Duration::ZERO,
        record: Duration::from_secs(5),
        orderly: Some(Duration::from_secs(60)),
    };

    #[test]
    fn a_recorded_reboot_waits_for_its_reason_then_for_the_orderly_reboot() {
        let t0 = Instant::now();
        let mut p = RebootPath::default();
        let s = Duration::from_secs;
        assert_eq!(p.on(Event::Tick, t0, BOUNDS), Action::Nothing);
        assert_eq!(
            p.on(Event::Decided { recorded: true }, t0, BOUNDS),
            Action::Record
        );
        assert_eq!(p.deadline(), Some(t0 + s(5)));
        assert_eq!(p.on(Event::Tick, t0 + s(1), BOUNDS), Action::Nothing);
        assert_eq!(
            p.on(Event::ReasonWritten, t0 + s(2), BOUNDS),
            Action::BeginOrderly
        );
        assert_eq!(p.deadline(), Some(t0 + s(62)));
        assert_eq!(
            p.on(Event::ReasonWritten, t0 + s(3), BOUNDS),
            Action::Nothing
        );
        assert_eq!(p.on(Event::Tick, t0 + s(61), BOUNDS), Action::Nothing);
        assert_eq!(p.on(Event::Tick, t0 + s(62), BOUNDS), Action::GiveUp);
        assert_eq!(p.state(), State::FeedStopped);
        assert_eq!(p.deadline(), None);
        assert_eq!(
            p.on(Event::Decided { recorded: true }, t0 + s(63), BOUNDS),
            Action::Nothing,
            "a second decision changes nothing"
        );
    }

    #[test]
    fn a_state_directory_that_does_not_answer_holds_the_reboot_up_by_its_bound_only() {
        let t0 = Instant::now();
        let mut p = RebootPath::default();
        p.on(Event::Decided { recorded: true }, t0, BOUNDS);
        assert_eq!(
            p.on(Event::Tick, t0 + Duration::from_secs(5), BOUNDS),
            Action::RecordTimedOut
        );
        assert!(matches!(p.state(), State::Orderly { .. }));
    }

    #[test]
    fn without_a_record_or_a_command_the_reboot_is_forced_at_once() {
        let t0 = Instant::now();
        let mut p = RebootPath::default();
        let bounds = Bounds {
            orderly: None,
            ..BOUNDS
        };
        assert_eq!(
            p.on(Event::Decided { recorded: false }, t0, bounds),
            Action::BeginOrderly
        );
        assert_eq!(p.on(Event::Tick, t0, bounds), Action::GiveUp);
    }

    #[test]
    fn an_orderly_command_that_cannot_start_forces_the_reboot_at_once() {
        let t0 = Instant::now();
        let mut p = RebootPath::default();
        p.on(Event::Decided { recorded: false }, t0, BOUNDS);
        p.on(Event::OrderlyNotStarted, t0, BOUNDS);
        assert_eq!(p.on(Event::Tick, t0, BOUNDS), Action::GiveUp);
    }

    const DRAIN: Bounds = Bounds {
        drain: Duration::from_secs(30),
        ..BOUNDS
    };

    #[test]
    fn a_drained_reboot_reports_drain_then_goes_on_as_without_one() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for recorded in [true, false] {
            let mut p = RebootPath::default();
            assert_eq!(p.on(Event::Decided { recorded }, t0, DRAIN), Action::Drain);
            assert_eq!(
                p.state(),
                State::Draining {
                    until: t0 + s(30),
                    recorded
                }
            );
            assert!(p.decided() && !p.committed());
            assert_eq!(p.deadline(), Some(t0 + s(30)));
            assert_eq!(p.on(Event::Tick, t0 + s(29), DRAIN), Action::Nothing);
            assert_eq!(
                p.on(Event::ReasonWritten, t0 + s(29), DRAIN),
                Action::Nothing,
                "nothing is written while draining"
            );
            assert_eq!(
                p.on(Event::Decided { recorded }, t0 + s(29), DRAIN),
                Action::Nothing
            );
            let (action, state) = match recorded {
                true => (Action::Record, State::Recording { until: t0 + s(35) }),
                false => (
                    Action::BeginOrderly,
                    State::Orderly {
                        deadline: t0 + s(90),
                    },
                ),
            };
            assert_eq!(p.on(Event::Tick, t0 + s(30), DRAIN), action);
            assert_eq!(p.state(), state);
            assert!(p.committed());
            assert_eq!(
                p.on(Event::Recovered, t0 + s(31), DRAIN),
                Action::Nothing,
                "past the drain a recovery no longer cancels the reboot"
            );
            assert_eq!(p.state(), state);
        }
    }

    #[test]
    fn a_recovery_during_the_drain_cancels_the_reboot() {
        let t0 = Instant::now();
        let mut p = RebootPath::default();
        assert_eq!(
            p.on(Event::Recovered, t0, DRAIN),
            Action::Nothing,
            "nothing to cancel"
        );
        p.on(Event::Decided { recorded: true }, t0, DRAIN);
        assert_eq!(
            p.on(Event::Recovered, t0 + Duration::from_secs(1), DRAIN),
            Action::Cancel
        );
        assert_eq!(p.state(), State::Up);
        assert!(!p.decided());
        assert_eq!(p.deadline(), None);
        // A later decision drains again.
        assert_eq!(
            p.on(
                Event::Decided { recorded: true },
                t0 + Duration::from_secs(2),
                DRAIN
            ),
            Action::Drain
        );
    }
}
