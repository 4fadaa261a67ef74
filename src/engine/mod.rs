//! The daemon's decisions, without I/O. The engine owns every rule's check
//! state, its ladder and grace, the reboot decision and its budget, the
//! feeding gate and what the status says. It never reads a clock, opens a
//! file or makes a system call: the shell (`daemon`) hands it events with
//! the time they happened and carries out the commands it queues. The
//! simulator in `tests/simulate/` drives it the same way, in simulated
//! time.
//!
//! Messages go to the `log` facade: that is the one effect the engine has
//! itself (the shell's logger writes them; the simulator's counts them).
//!
//! Everything the steady state needs is allocated when the configuration
//! is installed: a turn of a healthy or failing host allocates nothing.

mod command;
mod escalation;
mod history;
mod ids;
mod reboot_path;
mod rules;
#[cfg(feature = "test-hooks")]
pub use rules::set_look_limit_for_tests;
mod status;

pub use reboot_path::State as RebootState;

// The types the engine's events, commands and views are made of.
pub use crate::command::FirstLine;
pub use crate::health::{Cause, Health};
pub use crate::heartbeat::{Fallback, Mode as HeartbeatMode};
pub use crate::interface::{Carrier, OperState, Reading as InterfaceReading};
pub use crate::ladder::State as LadderState;
pub use crate::probe::{Finding, Subject};
pub use crate::process::{Found, Lookup, Target};
pub use crate::reboot::{Reason, Record};
pub use crate::repair::{Ending, Outcome as RepairOutcome};
pub use crate::sys::stat::{Outcome as FileOutcome, Stamp};

use crate::config::{Config, ConfigError, DurationText, RepairSpec};
use crate::ladder::XorShift;
use crate::status::{Identity, Status};
use crate::text::Count;
use reboot_path::RebootPath;
use rules::{Heap, Watched};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A rule's identity for as long as its watch does not change: answers
/// and commands name rules by it, never by position.
pub type RuleId = u64;

/// When something happened: the monotonic time decisions are made on, and
/// the wall clock, for what the status and the reboot record display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: i64,
}

/// Options from the command line that override the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
}

/// A watchdog device as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub identity: String,
    pub timeout: Duration,
    /// `WDIOC_GETBOOTSTATUS`'s bits; `None` when the driver does not say.
    pub boot_status: Option<u32>,
}

/// What the shell learned while starting, before the engine exists.
#[derive(Debug, Clone)]
pub struct World {
    pub devices: Vec<DeviceInfo>,
    /// What the drivers say caused the last reset, for the status.
    pub boot_status: String,
    /// What the state directory holds; `None` when there is no usable one
    /// (reboots then go on without a record).
    pub record: Option<Record>,
    /// This boot's `boot_id`, to tell a recorded reboot that happened.
    pub boot_id: String,
    /// Host uptime (CLOCK_BOOTTIME) at the engine's start.
    pub uptime: Duration,
    /// Whether look-ups may open pidfds.
    pub use_pidfd: bool,
    /// How often systemd wants a ping, if it does.
    pub ping_interval: Option<Duration>,
    /// Who writes the status: the daemon's pid, its start time, the boot.
    pub identity: Identity,
    /// Seeds the ladders' jitter.
    pub seed: u64,
    /// The reboot history the state directory holds (empty without one).
    pub history: crate::history::History,
    /// What a device said when its boot status says the watchdog reset
    /// the host; `None` when none did.
    pub watchdog_reset: Option<String>,
}

/// A read-only view of one rule's runtime state (`Engine::rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleView<'a> {
    pub id: RuleId,
    pub name: &'a str,
    pub health: Health,
    /// When its health last changed kind.
    pub since: Instant,
    pub ladder: crate::ladder::State,
    /// Whether its repair command is running (the engine's view).
    pub repair_running: bool,
    /// Whether its last check outlived `CheckTimeout=` and has not answered.
    pub check_late: bool,
}

/// What happened, for the engine to judge.
#[derive(Debug)]
pub enum Event {
    /// The devices were fed (`Command::Feed`); `ok`: every one took it.
    Fed { ok: bool },
    /// A check of the rule answered (`Command::StartCheck`).
    Answered(RuleId, Finding),
    /// The watched process of the rule exited (its pidfd became readable).
    ProcessDied(RuleId),
    /// How the heartbeat rule's changes are seen (the shell's inotify
    /// watch on its directory, or why it falls back to the periodic stat).
    HeartbeatMode(RuleId, HeartbeatMode),
    /// An inotify event for the heartbeat rule's file; `beat`: a touch, a
    /// write, a rename over it, a create; else (a delete) a stat is wanted.
    /// `at`: where the rule was when the shell asked
    /// (`Engine::heartbeat_places`), checked before it is used, so that a
    /// beat costs no look-up of the identity.
    FileChanged { rule: RuleId, at: usize, beat: bool },
    /// The inotify queue overflowed: events were lost.
    Rescan,
    /// The rule's repair ended, or could not start.
    RepairExited(RuleId, Ending),
    /// The rule's command check ended, or could not start
    /// (`Command::StartCommandCheck`), with the first line it printed.
    CommandExited(RuleId, Ending, FirstLine),
    /// The reboot reason's write answered (`Command::SaveRecord { wait }`).
    ReasonWritten,
    /// The orderly reboot command could not be started.
    OrderlyNotStarted,
    /// SIGHUP: the configuration read anew, whole or refused.
    Reload(Result<Box<Config>, Vec<ConfigError>>),
}

/// What the shell is to do.
#[derive(Debug)]
pub enum Command {
    /// Feed every device; answer with `Event::Fed`.
    Feed,
    /// Stop feeding for good: the hardware resets the host.
    StopFeeding,
    /// Tell systemd's watchdog that all is well.
    Ping,
    /// Look at a rule's subject; answer with `Event::Answered`.
    StartCheck(RuleId, Subject),
    /// A check outlived `CheckTimeout=`: its worker may be stuck.
    CheckOverdue,
    /// An overdue check answered, or its rule went: its worker is free.
    OverdueSettled,
    /// Watch the process the rule's last answer found (its pidfd).
    Track(RuleId),
    /// Stop watching the rule's process.
    Untrack(RuleId),
    /// Run the rule's repair (`Engine::repair_spec`); answer with
    /// `Event::RepairExited`.
    StartRepair(RuleId),
    /// The repair is past its timeout: SIGTERM to its process group.
    TerminateRepair(RuleId),
    /// The repair outlived SIGTERM by the kill grace: SIGKILL.
    KillRepair(RuleId),
    /// The repair outlived SIGKILL: give up on it, reap it if it dies.
    AbandonRepair(RuleId),
    /// The rule's new ladder does not want its running repair: kill it,
    /// reap it later.
    DiscardRepair(RuleId),
    /// Run the rule's command check (`Engine::command_argv`) once; answer
    /// with `Event::CommandExited`.
    StartCommandCheck(RuleId),
    /// The command check is past its `Timeout=`: SIGTERM to its group.
    TerminateCommandCheck(RuleId),
    /// It outlived SIGTERM by the kill grace: SIGKILL.
    KillCommandCheck(RuleId),
    /// It outlived SIGKILL by the kill grace: give up on it, reap it if
    /// it dies; the next run may start.
    AbandonCommandCheck(RuleId),
    /// Write `Engine::record`; `wait`: answer with `Event::ReasonWritten`.
    SaveRecord { wait: bool },
    /// Write `Engine::history` (no answer is waited for).
    SaveHistory,
    /// Run the orderly reboot command (`Config.reboot.command`).
    StartOrderlyReboot,
    /// Call `reboot(2)`.
    ForceReboot,
    /// The configuration was replaced (the crash handler's settings).
    Reconfigured,
}

/// The kill grace between SIGTERM and SIGKILL, and between SIGKILL and
/// giving up on a repair.
pub const KILL_GRACE: Duration = crate::repair::KILL_GRACE;
/// How long a decided reboot waits for its reason to be written.
pub const RECORD_BOUND: Duration = Duration::from_secs(5);

pub struct Engine {
    config: Config,
    options: Options,
    world: World,
    started: Instant,
    started_wall: i64,
    rules: Vec<Watched>,
    ids: HashMap<RuleId, usize, ids::BuildIdHasher>,
    next_id: RuleId,
    checks: Heap,
    timers: Heap,
    /// Rules with a repair command running.
    repairing: Vec<usize>,
    feeding_ok: bool,
    next_feed: Instant,
    next_ping: Option<Instant>,
    record: Option<Record>,
    /// The reboot heartwatch started before this boot, if any.
    previous_reboot: Option<Reason>,
    path: RebootPath,
    /// Why the reboot under way was decided. Kept apart from `record`,
    /// which is `None` without a usable state directory: the status says
    /// REBOOTING either way.
    reboot_reason: Option<Reason>,
    suppressed: Option<String>,
    /// Since when no rule whose ladder can reboot has been failing.
    healthy_since: Option<Instant>,
    /// The same, on the wall clock (for the status).
    healthy_since_wall: Option<i64>,
    history: crate::history::History,
    /// How many rules whose ladder ends in `reboot` are failing.
    failing_rebooters: usize,
    changes: u64,
    /// Reboots decided and suppressed in this run, for the metrics.
    counts: crate::status::Counts,
    dirty: bool,
    stopped_wall: Option<i64>,
    random: XorShift,
    commands: VecDeque<Command>,
    /// Looks in flight, and the rules due waiting for room (`rules/looks.rs`).
    looks: usize,
    waiting: VecDeque<(u32, u32)>,
    /// What `status` last published, kept to be updated in place.
    status: Status,
}

impl Engine {
    /// The engine at start, the devices fed once at `now`. The rules are
    /// the configuration's; the first checks are due at once.
    pub fn new(mut config: Config, options: Options, world: World, now: Now) -> Engine {
        let previous_reboot = world
            .record
            .as_ref()
            .and_then(|r| r.last.clone())
            .filter(|r| r.boot_id != world.boot_id);
        if let Some(r) = &previous_reboot {
            log::warn!("the previous boot ended in a reboot by heartwatch: {r}");
        }
        let rules = std::mem::take(&mut config.rules);
        let mut engine = Engine {
            next_feed: now.mono + config.watchdog.feed_interval,
            next_ping: world.ping_interval.map(|_| now.mono),
            record: world.record.clone(),
            history: world.history.clone(),
            random: XorShift::new(world.seed),
            config,
            options,
            world,
            started: now.mono,
            started_wall: now.wall,
            rules: Vec::new(),
            ids: HashMap::default(),
            next_id: 1,
            checks: Heap::with_capacity(now.mono, 0),
            timers: Heap::with_capacity(now.mono, 0),
            repairing: Vec::new(),
            feeding_ok: true,
            previous_reboot,
            path: RebootPath::default(),
            reboot_reason: None,
            suppressed: None,
            healthy_since: Some(now.mono),
            healthy_since_wall: Some(now.wall),
            failing_rebooters: 0,
            changes: 0,
            counts: crate::status::Counts::default(),
            dirty: true,
            stopped_wall: None,
            commands: VecDeque::new(),
            looks: 0,
            waiting: VecDeque::new(),
            status: Status::default(),
        };
        engine.note_watchdog_reset(now.wall);
        engine.install_rules(rules, Vec::new(), now);
        engine
    }

    /// The next command to carry out, oldest first.
    pub fn next_command(&mut self) -> Option<Command> {
        let command = self.commands.pop_front();
        crate::sys::memory::rewind(&mut self.commands);
        command
    }

    /// Whether the status changed since the last call: the shell then
    /// publishes it.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// When the engine must next be told the time (`tick`).
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + Duration::from_secs(3600);
        if !self.world.devices.is_empty() && self.path.state() != RebootState::FeedStopped {
            deadline = deadline.min(self.next_feed);
        }
        // No ping goes out while feeding fails (`tick`): a ping that is
        // due then must not hold the deadline in the past, or the shell's
        // loop spins until the device takes a keepalive again.
        let ping = self.next_ping.filter(|_| self.feeding_ok);
        for at in [
            ping,
            self.checks.next(),
            self.timers.next(),
            self.path.deadline(),
        ]
        .into_iter()
        .flatten()
        {
            deadline = deadline.min(at);
        }
        if self.looks_waiting() {
            deadline = now;
        }
        for &i in &self.repairing {
            if let Some(r) = &self.rules[i].repair {
                deadline = deadline.min(r.next_deadline());
            }
        }
        // While a reboot is decided the count does not start again
        // (`tend_budget`): its deadline would stay in the past, and the
        // shell's loop would spin on a host that stays up.
        if let Some(since) = self.healthy_since
            && self.reboot_count() > 0
            && !self.path.decided()
        {
            deadline = deadline.min(since + self.config.reboot.healthy_uptime);
        }
        deadline
    }

    /// Feeds the devices if that is due. The shell calls this first thing
    /// in a turn, before anything that might take time.
    pub fn feed_due(&mut self, now: Now) {
        if now.mono < self.next_feed {
            return;
        }
        self.next_feed = now.mono + self.config.watchdog.feed_interval;
        if self.path.state() == RebootState::FeedStopped || self.world.devices.is_empty() {
            return;
        }
        self.commands.push_back(Command::Feed);
    }

    /// Time passed: everything due at `now` is done.
    pub fn tick(&mut self, now: Now) {
        self.feed_due(now);
        self.run_due_checks(now);
        self.run_due_timers(now);
        self.tend_repairs(now);
        self.tend_reboot(now);
        self.tend_budget(now);
        if let (Some(at), Some(interval)) = (self.next_ping, self.world.ping_interval)
            && now.mono >= at
            && self.feeding_ok
        {
            self.commands.push_back(Command::Ping);
            self.next_ping = Some(now.mono + interval);
        }
    }

    /// Something happened.
    pub fn handle(&mut self, event: Event, now: Now) {
        match event {
            Event::Fed { ok } => {
                if ok != self.feeding_ok {
                    self.dirty = true;
                }
                self.feeding_ok = ok;
            }
            Event::Answered(id, finding) => {
                if let Some(&index) = self.ids.get(&id) {
                    self.on_answer(index, finding, now);
                }
            }
            Event::ProcessDied(id) => {
                if let Some(&index) = self.ids.get(&id) {
                    self.process_died(index, now);
                }
            }
            Event::HeartbeatMode(id, mode) => {
                if let Some(&index) = self.ids.get(&id) {
                    self.heartbeat_mode(index, mode, now);
                }
            }
            Event::FileChanged { rule, at, beat } => {
                if let Some(index) = self.place(rule, at) {
                    self.file_changed(index, beat, now);
                }
            }
            Event::Rescan => {
                let n = self.rescan(now);
                log::warn!(
                    "inotify queue overflowed: events were lost; {} looked at again",
                    Count::of(n, "event-driven heartbeat")
                );
            }
            Event::RepairExited(id, ending) => {
                if let Some(&index) = self.ids.get(&id) {
                    self.repair_exited(index, ending, now);
                }
            }
            Event::CommandExited(id, ending, first) => {
                if let Some(&index) = self.ids.get(&id) {
                    self.command_exited(index, ending, first, now);
                }
            }
            Event::ReasonWritten => self.step_reboot(reboot_path::Event::ReasonWritten, now),
            Event::OrderlyNotStarted => {
                self.step_reboot(reboot_path::Event::OrderlyNotStarted, now)
            }
            Event::Reload(result) => self.reload(result, now),
        }
    }

    /// The orderly stop is done: the status says so.
    pub fn stopped(&mut self, now: Now) {
        self.stopped_wall = Some(now.wall);
        self.dirty = true;
    }

    /// SIGHUP: a valid configuration replaces the running one, keeping the
    /// state of the rules that did not change; an invalid one changes
    /// nothing.
    fn reload(&mut self, result: Result<Box<Config>, Vec<ConfigError>>, now: Now) {
        self.dirty = true;
        let mut new = match result {
            Err(errors) => {
                for e in &errors {
                    log::error!("{e}");
                }
                log::error!(
                    "reload refused: {}; the running configuration stays",
                    Count::of(errors.len(), "error")
                );
                return;
            }
            Ok(new) => new,
        };
        if let Some(change) = dry_run_change(
            self.config.daemon.dry_run,
            new.daemon.dry_run,
            self.options.dry_run,
        ) {
            log::warn!("reload: {change}");
        }
        if new.watchdog != self.config.watchdog {
            log::warn!(
                "reload: [Watchdog] settings changed; they take effect when heartwatch restarts"
            );
            new.watchdog = self.config.watchdog.clone();
        }
        if new.daemon.runtime_dir != self.config.daemon.runtime_dir
            || new.daemon.state_dir != self.config.daemon.state_dir
            || new.daemon.textfile_dir != self.config.daemon.textfile_dir
        {
            log::warn!(
                "reload: directory settings changed; they take effect when heartwatch restarts"
            );
            new.daemon.runtime_dir = self.config.daemon.runtime_dir.clone();
            new.daemon.state_dir = self.config.daemon.state_dir.clone();
            new.daemon.textfile_dir = self.config.daemon.textfile_dir.clone();
        }
        let rules = std::mem::take(&mut new.rules);
        let old = std::mem::take(&mut self.rules);
        self.config = *new;
        self.commands.push_back(Command::Reconfigured);
        self.install_rules(rules, old, now);
        log::info!("reloaded: {}", Count::of(self.rules.len(), "rule"));
    }

    /// Dry run: `DryRun=yes` in the file or `--dry-run` on the command line.
    pub fn dry_run(&self) -> bool {
        self.config.daemon.dry_run || self.options.dry_run
    }

    /// The running configuration (its rules are the engine's).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The repair a `Command::StartRepair` names.
    pub fn repair_spec(&self, id: RuleId) -> Option<(&str, &RepairSpec)> {
        let w = &self.rules[*self.ids.get(&id)?];
        Some((&w.rule.name, w.rule.ladder.repair.as_ref()?))
    }

    /// The program a `Command::StartCommandCheck` names; the shell also
    /// prepares its runs from it when a command rule is installed.
    pub fn command_argv(&self, id: RuleId) -> Option<(&str, &crate::config::Argv)> {
        let w = &self.rules[*self.ids.get(&id)?];
        match &w.rule.watch {
            crate::config::Watch::Command(spec) => Some((&w.rule.name, &spec.run)),
            _ => None,
        }
    }

    /// The rule a command names, for messages.
    pub fn rule_name(&self, id: RuleId) -> Option<&str> {
        Some(&self.rules[*self.ids.get(&id)?].rule.name)
    }

    /// The rules by identity, in configuration order.
    pub fn rule_ids(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.rules.iter().map(|w| w.id)
    }

    /// The rules that can own something in the shell: a process rule's
    /// pidfd, a repair command, a command check. The others (most
    /// heartbeats) need no slot there.
    pub fn rules_with_children(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.rules
            .iter()
            .filter(|w| {
                w.rule.ladder.repair.is_some()
                    || matches!(
                        w.rule.watch,
                        crate::config::Watch::Process(_) | crate::config::Watch::Command(_)
                    )
            })
            .map(|w| w.id)
    }

    /// What the state directory is to hold (`Command::SaveRecord`).
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// Whether a reboot was decided (the orderly stop then leaves the
    /// devices armed).
    pub fn rebooting(&self) -> bool {
        self.path.decided()
    }

    /// Whether a decided reboot is past its drain: it goes on whatever
    /// happens, and a stop leaves the devices armed for it.
    pub fn reboot_committed(&self) -> bool {
        self.path.committed()
    }

    pub fn reboot_state(&self) -> RebootState {
        self.path.state()
    }

    pub fn feeding_ok(&self) -> bool {
        self.feeding_ok
    }

    /// Health of each rule by name.
    pub fn rule_health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.rules.iter().map(|w| (w.rule.name.as_str(), w.health))
    }

    /// Each rule as the engine holds it, in configuration order: what a
    /// test or the simulator checks the status and the ladders against.
    pub fn rules(&self) -> impl Iterator<Item = RuleView<'_>> {
        self.rules.iter().map(|w| RuleView {
            id: w.id,
            name: &w.rule.name,
            health: w.health,
            since: w.since,
            ladder: w.ladder.state(),
            repair_running: w.repair.is_some(),
            check_late: w.probe == rules::Probe::Late,
        })
    }

    /// How many times any rule's health changed since start.
    pub fn health_changes(&self) -> u64 {
        self.changes
    }

    /// How many rules there are.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    fn reboot_count(&self) -> u32 {
        self.record.as_ref().map_or(0, |r| r.count)
    }

    /// Host uptime at `now`, for the reboot reason.
    fn uptime(&self, now: Now) -> Duration {
        self.world.uptime + now.mono.saturating_duration_since(self.started)
    }

    /// After a healthy period, the reboot count starts again.
    fn tend_budget(&mut self, now: Now) {
        let Some(since) = self.healthy_since else {
            return;
        };
        if now.mono.saturating_duration_since(since) < self.config.reboot.healthy_uptime
            || self.path.decided()
        {
            return;
        }
        if let Some(record) = &mut self.record
            && record.count > 0
        {
            let count = std::mem::take(&mut record.count);
            self.commands.push_back(Command::SaveRecord { wait: false });
            log::info!(
                "healthy for {}: the reboot count ({count}) starts again",
                DurationText(self.config.reboot.healthy_uptime),
            );
            self.suppressed = None;
            self.dirty = true;
        }
    }

    /// Tracks since when no rule that can reboot has been failing.
    fn update_healthy_since(&mut self, now: Now) {
        match (self.failing_rebooters > 0, self.healthy_since) {
            (true, Some(_)) => {
                self.healthy_since = None;
                self.healthy_since_wall = None;
            }
            (false, None) => {
                self.healthy_since = Some(now.mono);
                self.healthy_since_wall = Some(now.wall);
            }
            _ => {}
        }
        self.tend_drain(now);
    }
}

/// What a reload that changes `DryRun=` from `was` to `now` does to the
/// mode, said for the log; `None` when the mode stays what it was without
/// anyone having asked otherwise. `--dry-run` (`flag`) outlasts reloads.
fn dry_run_change(was: bool, now: bool, flag: bool) -> Option<&'static str> {
    match (was, now, flag) {
        (true, false, true) => Some(
            "DryRun=no, but --dry-run stays in force: repairs and reboots are still logged, not taken",
        ),
        (true, false, false) => {
            Some("dry run ends (DryRun=no): repairs and reboots are taken from now on")
        }
        (false, true, false) => {
            Some("dry run begins (DryRun=yes): repairs and reboots are logged, not taken")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
