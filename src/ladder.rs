//! The escalation ladder of one rule, as an explicit state machine: an enum
//! of states, an enum of events, and one `match` that is the whole
//! machine. A failing rule climbs: repair attempts with backoff between
//! them, then the final step (`log` or `reboot`). A rule that stays healthy
//! for its recovery period starts again at the bottom.

use crate::config::{DurationText, Finally, LadderSpec};
use crate::text::Count;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Healthy, at the bottom of the ladder.
    Idle,
    /// Repair attempt `n` (from 1) is running.
    Repairing(u32),
    /// Repair attempt `n` finished; waiting (backoff) before judging again.
    Waiting(u32),
    /// Healthy again after `n` attempts; back to `Idle` after the recovery
    /// period, or on up the ladder if the rule fails again first.
    Recovering(u32),
    /// Every step was taken and the final step happened.
    Exhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The rule's health became failing.
    Failed,
    /// The rule's health became healthy.
    Healthy,
    /// The running repair command ended (whatever its exit status).
    RepairEnded,
    /// The timer the machine asked for expired.
    TimerFired,
    /// The final reboot was refused by the reboot budget.
    RebootSuppressed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Run the repair command; this is attempt `n`.
    Repair(u32),
    /// Fire `TimerFired` after this long.
    Wait(Duration),
    /// The last step: log that nothing more will be done, or reboot.
    Final(Finally),
    /// The rule stayed healthy; the ladder starts again at the bottom.
    Reset,
}

/// One rule's ladder: its settings, where it stands, and a random source
/// for the jitter.
#[derive(Debug, Clone)]
pub struct Ladder {
    spec: Arc<LadderSpec>,
    state: State,
    random: XorShift,
}

impl Ladder {
    pub fn new(spec: Arc<LadderSpec>, seed: u64) -> Ladder {
        Ladder {
            spec,
            state: State::Idle,
            random: XorShift::new(seed),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Keeps the position of an earlier ladder with the same steps;
    /// false when the steps changed (this ladder stays at the bottom).
    pub fn carry_over(&mut self, old: &Ladder) -> bool {
        if old.spec == self.spec {
            self.state = old.state;
        }
        old.spec == self.spec
    }

    /// A new ladder for a rule whose repair still runs (a reload changed
    /// the steps): that repair is this ladder's attempt 1, when it has
    /// repairs at all. False when it has none: the repair is not wanted.
    pub fn goes_on_with_running_repair(&mut self) -> bool {
        if self.attempts() == 0 {
            return false;
        }
        self.state = State::Repairing(1);
        true
    }

    fn attempts(&self) -> u32 {
        self.spec.repair.as_ref().map_or(0, |r| r.attempts)
    }

    /// The next step up from having made `done` repair attempts.
    fn climb(&self, done: u32) -> (State, Action) {
        if done < self.attempts() {
            (State::Repairing(done + 1), Action::Repair(done + 1))
        } else {
            (State::Exhausted, Action::Final(self.spec.finally))
        }
    }

    /// The whole machine.
    pub fn on(&mut self, event: Event) -> Action {
        use Event::*;
        use State::*;
        let (next, action) = match (self.state, event) {
            (Idle, Failed) => self.climb(0),
            (Idle, _) => (Idle, Action::Nothing),

            (Repairing(n), RepairEnded) => (Waiting(n), Action::Wait(self.backoff(n))),
            (Repairing(n), _) => (Repairing(n), Action::Nothing),

            (Waiting(n), TimerFired) => self.climb(n),
            (Waiting(n), Healthy) => (Recovering(n), Action::Wait(self.spec.recovery)),
            (Waiting(n), _) => (Waiting(n), Action::Nothing),

            (Recovering(n), Failed) => self.climb(n),
            (Recovering(_), TimerFired) => (Idle, Action::Reset),
            (Recovering(n), _) => (Recovering(n), Action::Nothing),

            // A refused reboot does not end the repairs: start them over
            // after the longest backoff.
            (Exhausted, RebootSuppressed) => match &self.spec.repair {
                Some(r) => (Waiting(0), Action::Wait(r.backoff_max)),
                None => (Exhausted, Action::Nothing),
            },
            // Without repairs there is nothing to start over.
            (Exhausted, Healthy) if self.spec.repair.is_none() => (Idle, Action::Nothing),
            (Exhausted, Healthy) => (
                Recovering(self.attempts()),
                Action::Wait(self.spec.recovery),
            ),
            (Exhausted, _) => (Exhausted, Action::Nothing),
        };
        self.state = next;
        action
    }

    /// The wait after attempt `n`: full jitter, uniform in
    /// `[0, min(cap, base * 2^(n-1))]`.
    fn backoff(&mut self, n: u32) -> Duration {
        let Some(repair) = &self.spec.repair else {
            return Duration::ZERO;
        };
        let bound = backoff_bound(repair.backoff, repair.backoff_max, n);
        let fraction = self.random.next_f64();
        bound.mul_f64(fraction)
    }
}

/// The upper bound of the wait after attempt `n`: `base * 2^(n-1)`, capped.
pub fn backoff_bound(base: Duration, cap: Duration, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(cap)
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Idle => f.write_str("idle"),
            State::Repairing(n) => write!(f, "repair attempt {n} running"),
            State::Waiting(0) => f.write_str("waiting to repair again"),
            State::Waiting(n) => write!(f, "waiting after repair attempt {n}"),
            State::Recovering(_) => f.write_str("recovering"),
            State::Exhausted => f.write_str("every step taken"),
        }
    }
}

/// Where a ladder stands, for the status: the state, said as what is
/// true of this rule (a rule that only logs has no steps to take).
impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, &self.spec.repair, self.spec.finally) {
            (State::Exhausted, None, Finally::Log) => f.write_str("logged (no repair configured)"),
            (state, ..) => write!(f, "{state}"),
        }
    }
}

/// The ladder in words, for `heartwatch check`.
pub fn explain(spec: &LadderSpec) -> String {
    let mut words = String::new();
    if let Some(r) = &spec.repair {
        let bounds: Vec<String> = (1..=r.attempts.min(4))
            .map(|n| DurationText(backoff_bound(r.backoff, r.backoff_max, n)).to_string())
            .collect();
        let more = if r.attempts > 4 { ", …" } else { "" };
        words.push_str(&format!(
            "run `{}` up to {} (each killed after {}; waiting a random time up to {}{} after each, full jitter), then ",
            r.command.text,
            Count(r.attempts.into(), "time"),
            DurationText(r.timeout),
            bounds.join(", "),
            more
        ));
    }
    match spec.finally {
        Finally::Log => words.push_str("log and do nothing more"),
        Finally::Reboot => words.push_str("reboot (within the reboot budget)"),
    }
    if spec.repair.is_some() {
        words.push_str(&format!(
            "; the ladder starts over after {} healthy",
            DurationText(spec.recovery)
        ));
    }
    if spec.drain {
        words.push_str("; heartwatch agent answers drain while it fails");
    }
    words
}

/// xorshift64*: enough randomness for jitter, no allocation, no locks.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed from the kernel's random pool, falling back to the clock.
pub fn seed() -> u64 {
    crate::sys::random::random_u64().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Argv, RepairSpec};
    use Action::*;
    use Event::*;
    use State::*;

    fn spec(attempts: u32, finally: Finally) -> LadderSpec {
        LadderSpec {
            repair: (attempts > 0).then(|| RepairSpec {
                command: Argv {
                    program: "/bin/true".into(),
                    args: vec![],
                    text: "true".into(),
                },
                attempts,
                timeout: Duration::from_secs(30),
                backoff: Duration::from_secs(10),
                backoff_max: Duration::from_secs(300),
            }),
            finally,
            recovery: Duration::from_secs(60),
            drain: false,
        }
    }

    fn at(state: State, attempts: u32, finally: Finally) -> Ladder {
        let mut l = Ladder::new(Arc::new(spec(attempts, finally)), 7);
        l.state = state;
        l
    }

    /// Every (state, event) pair, with the state and action it must give.
    #[test]
    fn every_transition() {
        let r = Finally::Reboot;
        let recovery = Wait(Duration::from_secs(60));
        let cases: Vec<(State, Event, u32, State, Option<Action>)> = vec![
            (Idle, Failed, 3, Repairing(1), Some(Repair(1))),
            (Idle, Failed, 0, Exhausted, Some(Final(r))),
            (Idle, Healthy, 3, Idle, Some(Nothing)),
            (Idle, RepairEnded, 3, Idle, Some(Nothing)),
            (Idle, TimerFired, 3, Idle, Some(Nothing)),
            (Idle, RebootSuppressed, 3, Idle, Some(Nothing)),
            (Repairing(1), RepairEnded, 3, Waiting(1), None),
            (Repairing(1), Failed, 3, Repairing(1), Some(Nothing)),
            (Repairing(1), Healthy, 3, Repairing(1), Some(Nothing)),
            (Repairing(1), TimerFired, 3, Repairing(1), Some(Nothing)),
            (
                Repairing(1),
                RebootSuppressed,
                3,
                Repairing(1),
                Some(Nothing),
            ),
            (Waiting(1), TimerFired, 3, Repairing(2), Some(Repair(2))),
            (Waiting(3), TimerFired, 3, Exhausted, Some(Final(r))),
            (Waiting(2), Healthy, 3, Recovering(2), Some(recovery)),
            (Waiting(2), Failed, 3, Waiting(2), Some(Nothing)),
            (Waiting(2), RepairEnded, 3, Waiting(2), Some(Nothing)),
            (Waiting(2), RebootSuppressed, 3, Waiting(2), Some(Nothing)),
            (Recovering(2), Failed, 3, Repairing(3), Some(Repair(3))),
            (Recovering(3), Failed, 3, Exhausted, Some(Final(r))),
            (Recovering(2), TimerFired, 3, Idle, Some(Reset)),
            (Recovering(2), Healthy, 3, Recovering(2), Some(Nothing)),
            (Recovering(2), RepairEnded, 3, Recovering(2), Some(Nothing)),
            (
                Recovering(2),
                RebootSuppressed,
                3,
                Recovering(2),
                Some(Nothing),
            ),
            (
                Exhausted,
                RebootSuppressed,
                3,
                Waiting(0),
                Some(Wait(Duration::from_secs(300))),
            ),
            (Exhausted, RebootSuppressed, 0, Exhausted, Some(Nothing)),
            (Exhausted, Healthy, 3, Recovering(3), Some(recovery)),
            (Exhausted, Healthy, 0, Idle, Some(Nothing)),
            (Exhausted, Failed, 3, Exhausted, Some(Nothing)),
            (Exhausted, TimerFired, 3, Exhausted, Some(Nothing)),
            (Exhausted, RepairEnded, 3, Exhausted, Some(Nothing)),
            (Waiting(0), TimerFired, 3, Repairing(1), Some(Repair(1))),
        ];
        for (from, event, attempts, to, action) in cases {
            let mut l = at(from, attempts, r);
            let got = l.on(event);
            assert_eq!(l.state(), to, "{from:?} + {event:?}");
            match action {
                Some(a) => assert_eq!(got, a, "{from:?} + {event:?}"),
                None => assert!(matches!(got, Wait(d) if d <= Duration::from_secs(10))),
            }
        }
    }

    #[test]
    fn a_whole_climb_ends_in_the_final_step() {
        let mut l = Ladder::new(Arc::new(spec(2, Finally::Log)), 1);
        assert_eq!(l.on(Failed), Repair(1));
        assert!(matches!(l.on(RepairEnded), Wait(_)));
        assert_eq!(l.on(TimerFired), Repair(2));
        assert!(matches!(l.on(RepairEnded), Wait(_)));
        assert_eq!(l.on(TimerFired), Final(Finally::Log));
        assert_eq!(l.state(), Exhausted);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let s = Duration::from_secs;
        assert_eq!(backoff_bound(s(10), s(300), 1), s(10));
        assert_eq!(backoff_bound(s(10), s(300), 2), s(20));
        assert_eq!(backoff_bound(s(10), s(300), 3), s(40));
        assert_eq!(backoff_bound(s(10), s(300), 6), s(300));
        assert_eq!(backoff_bound(s(10), s(300), 60), s(300));
        // Uniform over [0, bound]: all within, mean near half, spread wide.
        let mut l = Ladder::new(Arc::new(spec(3, Finally::Log)), 12345);
        for n in 1..=6u32 {
            let bound = backoff_bound(s(10), s(300), n).as_secs_f64();
            let samples: Vec<f64> = (0..20_000).map(|_| l.backoff(n).as_secs_f64()).collect();
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let below_tenth = samples.iter().filter(|d| **d < bound / 10.0).count();
            assert!(samples.iter().all(|d| *d >= 0.0 && *d <= bound));
            assert!(
                (mean / bound - 0.5).abs() < 0.02,
                "n={n} mean {mean} bound {bound}"
            );
            // A tenth of the samples should fall in the lowest tenth.
            assert!(
                (1_600..2_400).contains(&below_tenth),
                "n={n}: {below_tenth}"
            );
        }
    }

    #[test]
    fn ladders_read_as_words() {
        let words = explain(&spec(3, Finally::Reboot));
        assert_eq!(
            words,
            "run `true` up to 3 times (each killed after 30s; waiting a random time up to 10s, 20s, 40s after each, full jitter), then reboot (within the reboot budget); the ladder starts over after 1min healthy"
        );
        assert_eq!(explain(&spec(0, Finally::Log)), "log and do nothing more");
        assert_eq!(
            explain(&spec(0, Finally::Reboot)),
            "reboot (within the reboot budget)"
        );
        let drains = LadderSpec {
            drain: true,
            ..spec(0, Finally::Log)
        };
        assert_eq!(
            explain(&drains),
            "log and do nothing more; heartwatch agent answers drain while it fails"
        );
    }
}
