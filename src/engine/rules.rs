//! The rules being watched: their check state, when each check is due, and
//! the verdicts. What a reload keeps is decided here too.

use super::{Command, Engine, Now, RuleId};
use crate::config::{self, DurationText, Finally, Rule, Watch};
use crate::health::{Cause, Health};
use crate::heartbeat::Heartbeat;
use crate::interface::{self, InterfaceWatch};
use crate::ladder::{Event, Ladder};
use crate::probe::{Finding, Subject};
use crate::process::{ProcessWatch, Target};
use crate::repair;
use crate::system::{self, SystemWatch};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod inotify;
mod looks;
#[cfg(test)]
pub(super) use looks::MAX_LOOKS;
#[cfg(feature = "test-hooks")]
pub use looks::set_look_limit_for_tests;

/// A rule being watched, with its runtime state.
pub(super) struct Watched {
    pub id: RuleId,
    pub rule: Rule,
    subject: SubjectRef,
    pub(super) check: Check,
    pub health: Health,
    pub since: Instant,
    pub since_wall: i64,
    /// Failures are not reported before this (start-up grace).
    grace_end: Instant,
    pub probe: Probe,
    /// Identifies the rule's one valid entry in the check heap.
    seq: u32,
    pub ladder: Ladder,
    /// Identifies the ladder's one valid timer in the timer heap.
    pub ladder_seq: u32,
    pub ladder_at: Option<Instant>,
    /// Boxed, like `last_repair`.
    pub repair: Option<Box<super::escalation::RepairRun>>,
    /// Boxed: most rules never run a repair.
    pub last_repair: Option<Box<repair::Outcome>>,
    /// Failures and repairs in this daemon run, for the metrics.
    pub counts: crate::status::RuleCounts,
}

/// Where a rule's check stands: one state, never a set of flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// The next look is due at this time.
    Due(Instant),
    /// A look is under way and times out at `until`. `timer_waits`: the
    /// ladder's timer fired meanwhile, and the ladder judges again on the
    /// fresh answer.
    InFlight { until: Instant, timer_waits: bool },
    /// The look outlived `CheckTimeout=`: no new one until it answers, so
    /// that a hung mount does not take one worker per check interval.
    Late,
}

enum SubjectRef {
    File(FilePath),
    Process(Arc<Target>),
    Interface(Arc<interface::Paths>),
    System(Arc<system::Source>),
    /// A command check: the shell runs it (`Command::StartCommandCheck`).
    Program,
}

/// A heartbeat file's path: the reference counts and the bytes in one
/// allocation (an `Arc<CString>` takes two).
struct FilePath(Arc<CStr>);

impl FilePath {
    fn as_c_str(&self) -> &CStr {
        &self.0
    }
}

/// The larger watches are boxed, so that a rule is as large as a
/// heartbeat's state (most rules are heartbeats), not as the largest.
pub(super) enum Check {
    Heartbeat(Heartbeat),
    Process(Box<ProcessWatch>),
    Interface(InterfaceWatch),
    System(Box<SystemWatch>),
    Command(super::command::CommandCheck),
}

/// 16 bytes: the time as nanoseconds from the heap's epoch (the
/// engine's start), not as an `Instant` (16 bytes of its own); a heap
/// holds up to three per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wakeup {
    at: u64,
    rule: u32,
    seq: u32,
}

/// Wakeups by time; entries whose sequence number is outdated are skipped.
/// Its capacity is reserved at install: it never grows in the steady state.
pub(super) struct Heap {
    epoch: Instant,
    wakeups: BinaryHeap<Reverse<Wakeup>>,
}

impl Heap {
    pub fn next(&self) -> Option<Instant> {
        self.wakeups
            .peek()
            .map(|Reverse(w)| self.epoch + Duration::from_nanos(w.at))
    }

    /// Room for `n` wakeups at or after `epoch` (one before it counts as
    /// at it: due at once either way).
    pub(super) fn with_capacity(epoch: Instant, n: usize) -> Heap {
        Heap {
            epoch,
            wakeups: BinaryHeap::with_capacity(n),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        // u64 nanoseconds last 584 years.
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Adds a wakeup; when full, drops the outdated entries first.
    fn push(&mut self, at: Instant, rule: usize, seq: u32, valid: impl Fn(u32, u32) -> bool) {
        if self.wakeups.len() == self.wakeups.capacity() {
            self.wakeups.retain(|Reverse(w)| valid(w.rule, w.seq));
        }
        let at = self.nanos(at);
        self.wakeups.push(Reverse(Wakeup {
            at,
            rule: rule as u32,
            seq,
        }));
    }

    /// The next entry due at `now`, valid or not.
    fn pop_due(&mut self, now: Instant) -> Option<(usize, u32)> {
        let Reverse(w) = *self.wakeups.peek()?;
        if w.at > self.nanos(now) {
            return None;
        }
        self.wakeups.pop();
        Some((w.rule as usize, w.seq))
    }
}

impl Engine {
    /// Builds the runtime state for `rules`, carrying over what `old` knew
    /// of rules that did not change. Allocation is fine here: this runs at
    /// start and on reload, not in the steady state.
    pub(super) fn install_rules(&mut self, rules: Vec<Rule>, old: Vec<Watched>, now: Now) {
        let mut old_by_name: HashMap<String, Watched> =
            old.into_iter().map(|w| (w.rule.name.clone(), w)).collect();
        let grace_end = now.mono + self.config.daemon.startup_grace;
        let mut watched = Vec::with_capacity(rules.len());
        // Kept failing rules whose new ladder must hear that they fail.
        let mut tell_failing = Vec::new();
        for rule in rules {
            // A rule's counters go on across reloads, whatever changed.
            let mut counts = Default::default();
            let kept = match old_by_name.remove(&rule.name) {
                Some(w) if w.rule.watch == rule.watch => Some(w),
                Some(changed) => {
                    counts = changed.counts;
                    self.retire(changed);
                    None
                }
                None => None,
            };
            let entry = match kept {
                Some(mut w) => {
                    let mut ladder = Ladder::new(rule.ladder.clone(), self.random.next_u64());
                    if !ladder.carry_over(&w.ladder) {
                        // A new ladder (heartwatch.rules(5), RELOADING).
                        w.ladder_at = None;
                        if let Some(run) = &mut w.repair {
                            if ladder.goes_on_with_running_repair() {
                                // The new ladder's attempt 1.
                                run.attempt = 1;
                            } else {
                                w.repair = None;
                                self.commands.push_back(Command::DiscardRepair(w.id));
                            }
                        }
                        if w.repair.is_none() && matches!(w.health, Health::Failing(_)) {
                            tell_failing.push(watched.len());
                        }
                    }
                    w.ladder = ladder;
                    // The running copy of what did not change (the name,
                    // the watch) stays, and the new one is freed: it was
                    // allocated last, at the top of the heap, where freeing
                    // gives it back; the old copy, freed, would leave holes
                    // in the middle that each reload would add to.
                    let Rule { source, ladder, .. } = rule;
                    w.rule.ladder = ladder;
                    if w.rule.source != source {
                        w.rule.source = source;
                    }
                    w
                }
                None => Watched {
                    counts,
                    ..self.new_watched(rule, now, grace_end)
                },
            };
            watched.push(entry);
        }
        for (_, gone) in old_by_name {
            self.retire(gone);
        }
        self.rules = watched;
        self.ids = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id, i))
            .collect();
        self.checks = Heap::with_capacity(self.started, self.rules.len() * 3 + 16);
        self.timers = Heap::with_capacity(self.started, self.rules.len() * 3 + 16);
        self.repairing = Vec::with_capacity(self.rules.len());
        // At most a check and its timeout per rule come due at once.
        self.commands.reserve(self.rules.len() * 2 + 16);
        self.count_looks();
        for (i, w) in self.rules.iter().enumerate() {
            let at = match w.probe {
                Probe::Due(at) | Probe::InFlight { until: at, .. } => Some(at),
                Probe::Late => None,
            };
            if let Some(at) = at {
                self.checks.push(at, i, w.seq, |_, _| true);
            }
            if let Some(at) = w.ladder_at {
                self.timers.push(at, i, w.ladder_seq, |_, _| true);
            }
            if w.repair.is_some() {
                self.repairing.push(i);
            }
        }
        self.dirty = true;
        self.failing_rebooters = self
            .rules
            .iter()
            .filter(|w| fails_and_can_reboot(w))
            .count();
        self.update_healthy_since(now);
        for index in tell_failing {
            self.step_ladder(index, Event::Failed, now);
        }
    }

    /// A rule that went away or changed its watch: the shell kills its
    /// repair and forgets its process; a late check's answer is left
    /// unclaimed.
    fn retire(&mut self, gone: Watched) {
        if gone.probe == Probe::Late {
            // Its worker may answer one day; nobody will claim that answer.
            self.commands.push_back(Command::OverdueSettled);
        }
    }

    fn new_watched(&mut self, rule: Rule, now: Now, grace_end: Instant) -> Watched {
        let id = self.next_id;
        self.next_id += 1;
        let cstring = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL");
        let (check, subject) = match &rule.watch {
            Watch::Heartbeat(spec) => (
                Check::Heartbeat(Heartbeat::new(spec, now.mono)),
                SubjectRef::File(FilePath(Arc::from(cstring(&spec.file)))),
            ),
            Watch::Process(spec) => {
                let target = match &spec.target {
                    config::ProcessTarget::PidFile(p) => Target::PidFile(cstring(p)),
                    config::ProcessTarget::Executable(p) => {
                        Target::Executable(p.as_os_str().as_bytes().to_vec())
                    }
                };
                (
                    Check::Process(Box::new(ProcessWatch::new(spec.check_interval))),
                    SubjectRef::Process(Arc::new(target)),
                )
            }
            Watch::Interface(spec) => (
                Check::Interface(InterfaceWatch::new(spec, now.mono)),
                SubjectRef::Interface(Arc::new(interface::Paths::of(&spec.name))),
            ),
            Watch::System(spec) => (
                Check::System(Box::new(SystemWatch::new(spec))),
                SubjectRef::System(Arc::new(system_source(&spec.measure))),
            ),
            Watch::Command(spec) => (
                Check::Command(super::command::CommandCheck::new(spec)),
                SubjectRef::Program,
            ),
        };
        let ladder = Ladder::new(rule.ladder.clone(), self.random.next_u64());
        Watched {
            id,
            rule,
            subject,
            check,
            health: Health::Starting,
            since: now.mono,
            since_wall: now.wall,
            grace_end,
            probe: Probe::Due(now.mono),
            seq: 0,
            ladder,
            ladder_seq: 0,
            ladder_at: None,
            repair: None,
            last_repair: None,
            counts: Default::default(),
        }
    }

    /// The rule's next look is due at `at`.
    pub(super) fn schedule_check(&mut self, index: usize, at: Instant) {
        self.rules[index].probe = Probe::Due(at);
        self.push_check(index, at);
    }

    pub(super) fn push_check(&mut self, index: usize, at: Instant) {
        let w = &mut self.rules[index];
        w.seq = w.seq.wrapping_add(1);
        let rules = &self.rules;
        self.checks.push(at, index, rules[index].seq, |r, s| {
            rules[r as usize].seq == s
        });
    }

    /// Sets (or with `None` voids) the ladder's timer.
    pub(super) fn schedule_timer(&mut self, index: usize, at: Option<Instant>) {
        let w = &mut self.rules[index];
        w.ladder_seq = w.ladder_seq.wrapping_add(1);
        w.ladder_at = at;
        let Some(at) = at else { return };
        let rules = &self.rules;
        self.timers
            .push(at, index, rules[index].ladder_seq, |r, s| {
                rules[r as usize].ladder_seq == s
            });
    }

    pub(super) fn run_due_checks(&mut self, now: Now) {
        while let Some((index, seq)) = self.checks.pop_due(now.mono) {
            if self.rules[index].seq != seq {
                continue;
            }
            if let Check::Command(_) = self.rules[index].check {
                self.command_due(index, now);
                continue;
            }
            match self.rules[index].probe {
                Probe::Due(_) => match self.postponed(index, now) {
                    Some(at) => self.schedule_check(index, at),
                    None => self.look_or_wait(index, seq, now),
                },
                Probe::InFlight { timer_waits, .. } => {
                    self.check_timed_out(index, timer_waits, now)
                }
                Probe::Late => {}
            }
        }
        self.start_waiting(now);
    }

    pub(super) fn run_due_timers(&mut self, now: Now) {
        while let Some((index, seq)) = self.timers.pop_due(now.mono) {
            if self.rules[index].ladder_seq != seq {
                continue;
            }
            self.rules[index].ladder_at = None;
            match &mut self.rules[index].probe {
                Probe::InFlight { timer_waits, .. } => *timer_waits = true,
                Probe::Due(_) | Probe::Late => self.step_ladder(index, Event::TimerFired, now),
            }
        }
    }

    fn start_check(&mut self, index: usize, now: Now) {
        let w = &self.rules[index];
        let subject = match &w.subject {
            SubjectRef::File(path) => Subject::File(Arc::clone(&path.0)),
            SubjectRef::Process(target) => {
                Subject::Process(Arc::clone(target), self.world.use_pidfd)
            }
            SubjectRef::Interface(paths) => Subject::Interface(Arc::clone(paths)),
            SubjectRef::System(source) => Subject::System(Arc::clone(source)),
            SubjectRef::Program => return,
        };
        self.commands.push_back(Command::StartCheck(w.id, subject));
        self.looks += 1;
        let until = now.mono + self.config.daemon.check_timeout;
        self.rules[index].probe = Probe::InFlight {
            until,
            timer_waits: false,
        };
        self.push_check(index, until);
    }

    fn check_timed_out(&mut self, index: usize, timer_waits: bool, now: Now) {
        self.rules[index].probe = Probe::Late;
        self.look_done();
        self.commands.push_back(Command::CheckOverdue);
        let timeout = self.config.daemon.check_timeout;
        self.judge(index, Err(Cause::CheckTimedOut(timeout)), now);
        if timer_waits {
            // The timeout is the fresh look the ladder waited for: a check
            // that never answers must not hold the ladder up.
            self.step_ladder(index, Event::TimerFired, now);
        }
    }

    pub(super) fn on_answer(&mut self, index: usize, finding: Finding, now: Now) {
        let w = &mut self.rules[index];
        let late = w.probe == Probe::Late;
        let timer_waits = match w.probe {
            Probe::Due(_) => return,
            Probe::InFlight { timer_waits, .. } => timer_waits,
            Probe::Late => {
                self.commands.push_back(Command::OverdueSettled);
                false
            }
        };
        let (verdict, next) = match (&mut w.check, finding) {
            (Check::Heartbeat(hb), Finding::File(outcome)) => {
                let (verdict, next) = hb.observe(outcome, now.mono);
                // An event asked for another look while this one ran.
                (verdict, if hb.take_look() { now.mono } else { next })
            }
            (Check::Interface(i), Finding::Interface(reading)) => i.observe(reading, now.mono),
            (Check::Process(p), Finding::Process(lookup)) => {
                let before = p.tracked();
                let result = p.observe(lookup, now.mono);
                match p.tracked() {
                    same if same == before => {}
                    Some(_) => self.commands.push_back(Command::Track(w.id)),
                    None => self.commands.push_back(Command::Untrack(w.id)),
                }
                result
            }
            (Check::System(s), Finding::System(reading)) => s.observe(reading, now.mono),
            _ => return,
        };
        if !late {
            self.look_done();
        }
        self.judge(index, verdict, now);
        self.schedule_check(index, next);
        if timer_waits {
            self.step_ladder(index, Event::TimerFired, now);
        }
    }

    /// A watched process exited.
    pub(super) fn process_died(&mut self, index: usize, now: Now) {
        let w = &mut self.rules[index];
        let Check::Process(p) = &mut w.check else {
            return;
        };
        let pid = p.pid().unwrap_or(0);
        let cause = p.died();
        self.commands.push_back(Command::Untrack(w.id));
        log::debug!("rule {}: process {pid} exited", w.rule.name);
        self.judge(index, Err(cause), now);
        // Look again at once: a restarted service rewrites its pidfile.
        if matches!(self.rules[index].probe, Probe::Due(_)) {
            self.schedule_check(index, now.mono);
        }
    }

    /// Records a check's verdict; logs and publishes a change of health and
    /// moves the ladder.
    pub(super) fn judge(&mut self, index: usize, verdict: Result<(), Cause>, now: Now) {
        let w = &mut self.rules[index];
        let health = match verdict {
            Ok(()) => Health::Healthy,
            Err(_) if now.mono < w.grace_end => Health::Starting,
            Err(cause) => Health::Failing(cause),
        };
        if health.same_kind(&w.health) {
            w.health = health;
            return;
        }
        let was = w.health;
        let name = &w.rule.name;
        let event = match health {
            Health::Failing(cause) => {
                log::warn!("rule {name}: failing: {cause}");
                // A failure that changes its cause is still one failure.
                let new = !matches!(was, Health::Failing(_));
                w.counts.failures = w.counts.failures.saturating_add(u32::from(new));
                new.then_some(Event::Failed)
            }
            Health::Healthy if matches!(was, Health::Failing(_)) => {
                log::info!(
                    "rule {name}: healthy again after {}",
                    DurationText(Duration::from_millis(
                        now.mono.saturating_duration_since(w.since).as_millis() as u64
                    ))
                );
                Some(Event::Healthy)
            }
            Health::Healthy => {
                log::info!("rule {name}: healthy");
                Some(Event::Healthy)
            }
            Health::Starting => None,
        };
        let was_counted = fails_and_can_reboot(w);
        w.health = health;
        w.since = now.mono;
        w.since_wall = now.wall;
        let counted = fails_and_can_reboot(w);
        self.failing_rebooters = (self.failing_rebooters + usize::from(counted))
            .saturating_sub(usize::from(was_counted));
        self.dirty = true;
        self.changes += 1;
        if let Some(event) = event {
            self.step_ladder(index, event, now);
        }
        self.update_healthy_since(now);
    }
}

/// What a system rule reads: its measure's source.
fn system_source(measure: &config::Measure) -> system::Source {
    let cstring = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL");
    match measure {
        config::Measure::Load { per_cpu, .. } => system::Source::Load { per_cpu: *per_cpu },
        config::Measure::MemoryAvailable { .. } | config::Measure::SwapUsed { .. } => {
            system::Source::Memory
        }
        config::Measure::FileHandles { .. } => system::Source::FileHandles,
        config::Measure::Filesystem { mount, .. } => system::Source::Filesystem(cstring(mount)),
        config::Measure::Temperature { sensor, .. } => system::Source::Sensor(cstring(sensor)),
        config::Measure::Pressure { resource, .. } => system::Source::Pressure(*resource),
    }
}

/// Whether a rule is failing and its ladder ends in `reboot`: while any
/// is, the host is not in a healthy period for the reboot budget.
pub(super) fn fails_and_can_reboot(w: &Watched) -> bool {
    w.rule.ladder.finally == Finally::Reboot && matches!(w.health, Health::Failing(_))
}
