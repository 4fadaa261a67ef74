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
            history: Default::default(),
            watchdog_reset: None,
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
    let last = *b.engine.rules[0].last_repair.clone().unwrap();
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

fn agent(b: &mut Bench) -> (crate::status::Answer, String) {
    let a = b
        .engine
        .status(0)
        .agent
        .clone()
        .expect("the engine always answers");
    (a.answer, a.reason)
}

#[test]
fn a_drained_reboot_says_drain_then_records_and_reboots_after_the_drain() {
    use crate::status::Answer;
    let conf = "[Daemon]\nStartupGrace=0s\n[Reboot]\nDrain=30s\nCommand=/bin/true\n";
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    assert_eq!(agent(&mut b), (Answer::Up, String::new()));
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.engine.rebooting());
    assert!(
        !b.engine.reboot_committed(),
        "during the drain a stop cancels the reboot"
    );
    assert!(matches!(
        b.engine.reboot_state(),
        RebootState::Draining { .. }
    ));
    let (answer, reason) = agent(&mut b);
    assert_eq!(answer, Answer::Drain);
    assert!(reason.starts_with("reboot for rule r: "), "{reason}");
    assert!(
        b.engine.status(0).rebooting.is_some(),
        "the status says REBOOTING"
    );
    assert!(!b.took(|c| matches!(c, Command::SaveRecord { .. })));
    assert_eq!(
        b.engine.record().unwrap().count,
        0,
        "nothing counts before the drain ends"
    );
    // It stays failing: the drain ends and the reboot goes on.
    b.run_to(30 * S);
    assert!(!b.took(|c| matches!(c, Command::SaveRecord { .. })));
    b.run_to(31 * S);
    assert!(b.took(|c| matches!(c, Command::SaveRecord { wait: true })));
    assert_eq!(b.engine.record().unwrap().count, 1);
    assert_eq!(b.engine.record().unwrap().last.as_ref().unwrap().rule, "r");
    assert_eq!(agent(&mut b).0, Answer::Down, "past the drain: down");
    assert!(b.engine.reboot_committed(), "past the drain it goes on");
    b.tell(Event::ReasonWritten);
    assert!(b.took(|c| matches!(c, Command::StartOrderlyReboot)));
    // A recovery now changes nothing.
    b.answer(found(1));
    assert!(matches!(
        b.engine.reboot_state(),
        RebootState::Orderly { .. }
    ));
}

#[test]
fn a_rule_that_recovers_during_the_drain_cancels_the_reboot() {
    use crate::status::Answer;
    let conf = "[Daemon]\nStartupGrace=0s\n[Reboot]\nDrain=30s\nCommand=/bin/true\n";
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(matches!(
        b.engine.reboot_state(),
        RebootState::Draining { .. }
    ));
    b.run_to(5 * S);
    b.answer(found(1));
    b.beating = true;
    assert_eq!(b.engine.reboot_state(), RebootState::Up);
    assert!(!b.engine.rebooting());
    assert!(b.engine.status(0).rebooting.is_none());
    assert_eq!(agent(&mut b), (Answer::Up, String::new()));
    b.run_to(60 * S);
    assert!(!b.took(|c| matches!(c, Command::SaveRecord { .. } | Command::StartOrderlyReboot)));
    assert_eq!(b.engine.record().unwrap().count, 0, "no budget used");
    // It fails again: a new decision, a new drain.
    b.beating = false;
    b.run_to(61 * S);
    b.answer(Outcome::Missing);
    assert!(matches!(
        b.engine.reboot_state(),
        RebootState::Draining { .. }
    ));
}

#[test]
fn a_failing_rule_with_drain_yes_makes_the_agent_say_drain_until_it_recovers() {
    use crate::status::Answer;
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", "[Escalate]\nDrain=yes\n");
    b.run_to(S);
    b.answer(Outcome::Missing);
    let (answer, reason) = agent(&mut b);
    assert_eq!(answer, Answer::Drain);
    assert!(reason.starts_with("rule r: "), "{reason}");
    b.run_to(2 * S);
    b.answer(found(1));
    assert_eq!(b.health(), Health::Healthy);
    assert_eq!(agent(&mut b), (Answer::Up, String::new()));
    // Without Drain=yes a failing rule leaves the answer up.
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", "");
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert_eq!(agent(&mut b).0, Answer::Up);
}

#[test]
fn a_suppressed_or_dry_run_reboot_does_not_drain() {
    use crate::status::Answer;
    for conf in [
        "[Daemon]\nStartupGrace=0s\n[Reboot]\nDrain=30s\nBudget=0\n",
        "[Daemon]\nStartupGrace=0s\nDryRun=yes\n[Reboot]\nDrain=30s\n",
    ] {
        let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
        b.run_to(S);
        b.answer(Outcome::Missing);
        assert!(b.engine.suppressed().is_some(), "{conf}");
        assert_eq!(b.engine.reboot_state(), RebootState::Up, "{conf}");
        assert_eq!(agent(&mut b).0, Answer::Up, "{conf}");
    }
}

#[test]
fn reboots_decided_and_refused_go_into_the_history() {
    use crate::history::Kind;
    let conf = "[Daemon]\nStartupGrace=0s\n[Reboot]\nBudget=1\nHealthyUptime=1h\nCommand=/bin/true\nForced=no\n";
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    b.run_to(S);
    b.answer(Outcome::Missing);
    // The history is handed over before the reason the reboot waits for.
    let history_at = b.out.iter().position(|c| matches!(c, Command::SaveHistory));
    let record_at = b
        .out
        .iter()
        .position(|c| matches!(c, Command::SaveRecord { wait: true }));
    assert!(history_at.unwrap() < record_at.unwrap(), "{:?}", b.out);
    let newest = b.engine.history().newest().unwrap().clone();
    assert_eq!(newest.kind, Kind::Reboot);
    assert_eq!(
        (newest.rule.as_str(), newest.boot_id.as_str()),
        ("r", "boot-1")
    );
    assert!(newest.cause.starts_with("missing"), "{newest:?}");
    assert_eq!(b.engine.status(5).history, vec![newest.clone()]);

    // Over budget: refused, and said once however often the ladder climbs.
    let record = b.engine.record().cloned();
    let history = b.engine.history().clone();
    let mut b = Bench::new(conf, "[Escalate]\nFinally=reboot\n");
    b.engine.record = record;
    b.engine.history = history;
    b.run_to(S);
    b.answer(Outcome::Missing);
    assert!(b.engine.suppressed().is_some());
    assert!(b.took(|c| matches!(c, Command::SaveHistory)));
    let kinds: Vec<Kind> = b.engine.history().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Reboot, Kind::Suppressed]);
    let reason = b.engine.history().newest().unwrap();
    let again = crate::reboot::Reason {
        rule: reason.rule.clone(),
        boot_id: reason.boot_id.clone(),
        ..Default::default()
    };
    b.engine.remember(Kind::Suppressed, &again);
    assert_eq!(b.engine.history().len(), 2);
}

#[test]
fn a_watchdog_reset_is_added_once_per_boot() {
    use crate::history::{Entry, History, Kind};
    let mut b = Bench::new("[Daemon]\nStartupGrace=0s\n", "");
    assert!(b.engine.history().is_empty(), "no reset: no entry");
    b.engine.world.watchdog_reset = Some("watchdog /dev/watchdog0: reset".into());
    // An earlier boot's reset does not stand for this one's.
    b.engine.history = History::new([Entry {
        kind: Kind::WatchdogReset,
        boot_id: "boot-0".into(),
        ..Entry::default()
    }]);
    b.out.clear();
    b.engine.note_watchdog_reset(42);
    b.drain();
    assert!(b.took(|c| matches!(c, Command::SaveHistory)));
    let newest = b.engine.history().newest().unwrap();
    assert_eq!(
        (
            newest.kind,
            newest.wall,
            newest.boot_id.as_str(),
            newest.cause.as_str()
        ),
        (
            Kind::WatchdogReset,
            42,
            "boot-1",
            "watchdog /dev/watchdog0: reset"
        )
    );
    // The daemon restarted in the same boot: not again.
    b.out.clear();
    b.engine.note_watchdog_reset(43);
    b.drain();
    assert_eq!(b.engine.history().len(), 2);
    assert!(!b.took(|c| matches!(c, Command::SaveHistory)));
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
        watched <= 768,
        "a Watched is {watched} bytes (712 with the five rule kinds and their counters)"
    );
}

/// Issue 14: at most `MAX_LOOKS` looks are handed to the probe at once
/// (the queues never fill to one entry a rule); the rest follow as
/// answers come back, each rule looked at once.
#[test]
fn looks_due_together_are_handed_over_a_bounded_number_at_a_time() {
    use super::rules::MAX_LOOKS;
    const N: usize = 1000;
    let mut b = Bench::new("", "");
    b.run_to(S / 2);
    let mut config = b.engine.config.clone();
    let text = "[Heartbeat]\nFile=/run/beat\nMaxAge=1h\n";
    config.rules = (0..N)
        .map(|i| {
            let name = format!("r{i}");
            let path = format!("/etc/heartwatch/rules.d/{name}.rule");
            parse_rule(Path::new(&path), &name, text).unwrap()
        })
        .collect();
    b.out.clear();
    b.tell(Event::Reload(Ok(Box::new(config))));
    let mut looked = std::collections::HashSet::new();
    let mut in_flight = Vec::new();
    loop {
        b.engine.tick(b.now());
        b.drain();
        for c in b.out.drain(..) {
            if let Command::StartCheck(id, _) = c {
                assert!(looked.insert(id), "rule {id} looked at twice");
                in_flight.push(id);
            }
        }
        assert!(
            in_flight.len() <= MAX_LOOKS,
            "{} looks at once",
            in_flight.len()
        );
        if in_flight.is_empty() {
            break;
        }
        // Half of them answer; the loop hands over as many more.
        let half = in_flight.len().div_ceil(2);
        for id in in_flight.drain(..half) {
            b.engine
                .handle(Event::Answered(id, Finding::File(found(0))), b.now());
        }
    }
    assert_eq!(looked.len(), N, "every rule was looked at");
}
