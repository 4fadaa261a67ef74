//! The engine's decisions, one scenario each, in simulated time: events
//! in, commands out, no clock and no file. `tests/simulate.rs` drives the
//! same engine through a random world for a million simulated hours.

use super::*;
use crate::config::{Watch, parse_rule, parse_settings};
use crate::health::Cause;
use crate::heartbeat::found;
use crate::ladder::State;
use crate::sys::stat::Outcome;
use std::path::Path;

const S: Duration = Duration::from_secs(1);

/// An engine over one heartbeat rule `r` (its `[Escalate]` section given),
/// the settings `conf`, with no device and a state directory.
struct Bench {
    engine: Engine,
    t0: Instant,
    at: Duration,
    out: Vec<Command>,
    /// Every check asked for while time runs answers at once: a fresh
    /// heartbeat (`true`) or none.
    beating: bool,
}

impl Bench {
    fn new(conf: &str, escalate: &str) -> Bench {
        let path = Path::new("/etc/heartwatch/heartwatch.conf");
        let (watchdog, daemon, reboot) =
            parse_settings(path, &format!("[Watchdog]\nDevice=none\n{conf}")).unwrap();
        let rule_text =
            format!("[Heartbeat]\nFile=/run/beat\nMaxAge=10s\nCheckInterval=1s\n{escalate}");
        let rule = parse_rule(Path::new("/etc/heartwatch/rules.d/r.rule"), "r", &rule_text)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(matches!(rule.watch, Watch::Heartbeat(_)));
        let config = Config {
            root: "/etc/heartwatch".into(),
            watchdog,
            daemon,
            reboot,
            rules: vec![rule],
        };
        let world = World {
            devices: Vec::new(),
            boot_status: String::new(),
            record: Some(Record::default()),
            boot_id: "boot-1".into(),
            uptime: Duration::from_secs(100),
            use_pidfd: true,
            ping_interval: None,
            identity: crate::status::Identity {
                pid: 1234,
                start_time: Some(5),
                boot_id: Some("boot-1".into()),
            },
            seed: 7,
        };
        let t0 = Instant::now();
        let now = Now { mono: t0, wall: 0 };
        let mut b = Bench {
            engine: Engine::new(config, Options::default(), world, now),
            t0,
            at: Duration::ZERO,
            out: Vec::new(),
            beating: false,
        };
        b.drain();
        b
    }

    fn now(&self) -> Now {
        Now {
            mono: self.t0 + self.at,
            wall: self.at.as_secs() as i64,
        }
    }

    fn drain(&mut self) {
        while let Some(c) = self.engine.next_command() {
            self.out.push(c);
        }
    }

    /// Moves time to `at` after the start, ticking at every deadline on
    /// the way; answers nothing.
    fn run_to(&mut self, at: Duration) {
        loop {
            let next = self.engine.next_deadline(self.now().mono);
            let next = next.saturating_duration_since(self.t0);
            if next > at {
                break;
            }
            self.at = next.max(self.at);
            self.engine.tick(self.now());
            self.drain();
            if self.beating && self.take_checks() > 0 {
                self.answer(found(self.at.as_millis() as i64));
            }
        }
        self.at = at;
        self.engine.tick(self.now());
        self.drain();
    }

    fn tell(&mut self, event: Event) {
        self.engine.handle(event, self.now());
        self.drain();
    }

    /// The checks asked for since the last call.
    fn take_checks(&mut self) -> usize {
        let n = self
            .out
            .iter()
            .filter(|c| matches!(c, Command::StartCheck(..)))
            .count();
        self.out.retain(|c| !matches!(c, Command::StartCheck(..)));
        n
    }

    fn took(&mut self, f: impl Fn(&Command) -> bool) -> bool {
        let found = self.out.iter().any(&f);
        self.out.retain(|c| !f(c));
        found
    }

    fn answer(&mut self, outcome: Outcome) {
        self.tell(Event::Answered(1, Finding::File(outcome)));
    }

    fn ladder(&self) -> State {
        self.engine.rules[0].ladder.state()
    }

    fn health(&self) -> Health {
        self.engine.rules[0].health
    }
}

const REPAIR: &str = "[Escalate]\nRepair=/bin/true\nRepairAttempts=2\nRepairTimeout=10s\nRepairBackoff=1s\nRecoveryPeriod=30s\n";

#[test]
fn a_failure_inside_the_grace_is_not_reported() {
    let mut b = Bench::new("[Daemon]\nStartupGrace=5s\n", "");
    b.run_to(S);
    assert!(b.take_checks() >= 1);
    b.answer(Outcome::Missing);
    assert_eq!(b.health(), Health::Starting);
    b.run_to(6 * S);
    b.answer(Outcome::Missing);
    assert_eq!(b.health(), Health::Failing(Cause::Missing));
}

#[test]
fn a_rule_that_heals_while_its_repair_runs_recovers_when_the_repair_ends() {
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", REPAIR);
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.took(|c| matches!(c, Command::StartRepair(1))));
    assert_eq!(b.ladder(), State::Repairing(1));
    b.run_to(2 * S);
    b.answer(found(1));
    b.beating = true;
    assert_eq!(b.health(), Health::Healthy);
    assert_eq!(
        b.ladder(),
        State::Repairing(1),
        "the ladder waits for the end"
    );
    b.tell(Event::RepairExited(1, crate::repair::Ending::Exited(0)));
    assert_eq!(b.ladder(), State::Recovering(1));
    b.run_to(40 * S);
    // Fresh answers keep it healthy; the recovery period ends the ladder.
    assert_eq!(b.ladder(), State::Idle);
}

#[test]
fn a_repair_past_its_timeout_is_terminated_killed_then_given_up() {
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", REPAIR);
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.took(|c| matches!(c, Command::StartRepair(1))));
    b.run_to(11 * S - Duration::from_millis(1));
    assert!(!b.took(|c| matches!(c, Command::TerminateRepair(1))));
    b.run_to(11 * S);
    assert!(b.took(|c| matches!(c, Command::TerminateRepair(1))));
    b.run_to(14 * S);
    assert!(b.took(|c| matches!(c, Command::KillRepair(1))));
    b.run_to(17 * S);
    assert!(b.took(|c| matches!(c, Command::AbandonRepair(1))));
    assert_eq!(b.ladder(), State::Waiting(1));
    let last = b.engine.rules[0].last_repair.unwrap();
    assert_eq!(last.ending, crate::repair::Ending::Unkillable(3));
    assert_eq!(last.duration, 16 * S);
}

#[test]
fn a_ladder_timer_that_fires_during_a_check_waits_for_its_answer_or_its_timeout() {
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\nCheckTimeout=2s\n", REPAIR);
    b.run_to(S);
    b.answer(Outcome::Missing);
    b.tell(Event::RepairExited(1, crate::repair::Ending::Exited(1)));
    assert_eq!(b.ladder(), State::Waiting(1));
    // The fresh look after the repair is in flight and never answers; the
    // backoff (at most 1 s) ends meanwhile.
    assert!(b.take_checks() >= 1);
    b.run_to(S + Duration::from_millis(1500));
    assert_eq!(
        b.ladder(),
        State::Waiting(1),
        "the timer waits for the look"
    );
    b.run_to(3 * S);
    assert!(b.took(|c| matches!(c, Command::CheckOverdue)));
    assert_eq!(
        b.ladder(),
        State::Repairing(2),
        "the check's timeout is the look the ladder waited for"
    );
}

#[test]
fn a_refused_reload_changes_nothing() {
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", REPAIR);
    b.run_to(S);
    b.answer(Outcome::Missing);
    let before = b.engine.status(5).clone();
    let deadline = b.engine.next_deadline(b.now().mono);
    b.out.clear();
    let error = ConfigError {
        path: "/etc/heartwatch/rules.d/x.rule".into(),
        line: Some(1),
        message: "bad".into(),
    };
    b.tell(Event::Reload(Err(vec![error])));
    assert_eq!(&before, b.engine.status(5));
    assert_eq!(b.engine.next_deadline(b.now().mono), deadline);
    assert!(b.out.is_empty(), "{:?}", b.out);
}

#[test]
fn reboots_past_the_budget_are_refused_until_a_healthy_period() {
    let conf = "[Daemon]\nStartupGrace=0s\n[Reboot]\nBudget=1\nHealthyUptime=1h\nCommand=/bin/true\nForced=no\n";
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.took(|c| matches!(c, Command::SaveRecord { wait: true })));
    assert_eq!(b.engine.record().unwrap().count, 1);
    b.tell(Event::ReasonWritten);
    assert!(b.took(|c| matches!(c, Command::StartOrderlyReboot)));
    b.run_to(200 * S);
    assert!(b.took(|c| matches!(c, Command::StopFeeding)));
    assert!(!b.took(|c| matches!(c, Command::ForceReboot)), "Forced=no");

    // The next daemon, on the next boot, with the record: over budget.
    let record = b.engine.record().cloned();
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    b.engine.record = record;
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.engine.suppressed().is_some());
    assert!(!b.engine.rebooting());
    // Healthy for HealthyUptime: the count starts again.
    b.beating = true;
    b.run_to(3700 * S);
    assert_eq!(b.engine.record().unwrap().count, 0);
    assert!(b.took(|c| matches!(c, Command::SaveRecord { wait: false })));
}

/// One copy of each rule (issue 14): a rule's ladder shares its settings
/// with the rule instead of holding a copy (it was 168 bytes, the whole
/// LadderSpec inline; a Watched was 824 bytes), and the per-rule runtime
/// state stays small and fixed-size.
#[test]
fn per_rule_state_is_small_and_shares_its_settings() {
    use std::mem::size_of;
    let watched = size_of::<super::rules::Watched>();
    let ladder = size_of::<crate::ladder::Ladder>();
    eprintln!(
        "size_of: Watched {watched}, Ladder {ladder}, Rule {}",
        size_of::<crate::config::Rule>()
    );
    assert!(
        ladder <= 32,
        "a Ladder is {ladder} bytes: does it copy its LadderSpec again?"
    );
    assert!(
        watched <= 640,
        "a Watched is {watched} bytes (536 with three rule kinds)"
    );
}
