//! The shell around the engine: the event loop, one `poll` per turn with
//! an absolute monotonic deadline. It turns the world into the engine's
//! events — the time, a signal (signalfd), a finished probe, a process
//! death (pidfd), a repair command's output or exit, the device's answer
//! to a keepalive — and carries out the engine's commands. Every decision
//! is the engine's (`crate::engine`); what is here is only I/O.
//! Everything the steady state needs is allocated when the configuration is
//! loaded: a turn of a healthy or failing host allocates nothing. Actions
//! (running a repair, rebooting) may allocate; they are not the steady state.

use crate::atomic::Writer;
use crate::config::{self, DurationText};
use crate::device::Devices;
use crate::engine::{self, Command, Engine, Event, Now, RuleId};
use crate::health::Health;
use crate::notify::Notifier;
use crate::probe::{Finding, Prober};
use crate::process::Lookup;
use crate::reboot::{self, RebootState};
use crate::repair::{self, Running};
use crate::text::{FixedBuf, wall_now};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

mod checks;
mod children;
mod events;
mod lifecycle;
mod names;
mod watches;

#[cfg(feature = "test-hooks")]
pub(crate) use watches::test_watch_limit;
use watches::{Note, WATCH_TICKET, Watches};

pub use lifecycle::DaemonError;
use lifecycle::{install_crash_handler, lock_memory};

pub use crate::engine::Options;

/// What the loop should do after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// What the shell holds for one rule: the descriptors the engine's
/// decisions are about.
#[derive(Default)]
struct Slot {
    /// The watched process's pidfd.
    pidfd: Option<OwnedFd>,
    /// Boxed: most rules never run one, and a slot is kept for each.
    repair: Option<Box<Running>>,
    /// A command rule's check runs (`checks`).
    check: Option<Box<checks::Checker>>,
}

/// Who a slot of the poll set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Signals,
    Prober,
    Inotify,
    Process(RuleId),
    RepairExit(RuleId),
    RepairOutput(RuleId),
    CheckExit(RuleId),
    CheckOutput(RuleId),
}

/// The running daemon.
pub struct Daemon {
    engine: Engine,
    devices: Devices,
    notifier: Notifier,
    prober: Prober,
    signals: SignalFd,
    slots: HashMap<RuleId, Slot>,
    /// Rule identities, reused by turns that visit every slot.
    scratch: Vec<RuleId>,
    /// The rules whose slot holds a running repair, so that a turn looks
    /// at those and not at every slot.
    running: Vec<RuleId>,
    /// The rules whose command check is running.
    checking: Vec<RuleId>,
    pollfds: Vec<libc::pollfd>,
    owners: Vec<Owner>,
    poll_dirty: bool,
    /// Killed repairs to reap, leftover processes of finished ones.
    cleanup: repair::Cleanup,
    status_file: Writer,
    reboot_state: Option<RebootState>,
    history_file: Option<crate::history::HistoryFile>,
    /// The reboot reason's write being waited for.
    pending_save: Option<u64>,
    /// The orderly reboot command, while it runs.
    orderly: Option<Running>,
    /// The pidfd of the answer the engine is judging (`Command::Track`).
    offered: Option<OwnedFd>,
    /// `heartwatch.prom`, with `[Metrics] TextfileDirectory=`.
    metrics: Option<crate::metrics::Metrics>,
    /// The inotify watches of heartbeat directories.
    watches: Watches,
    /// What the watches have to tell the engine, reused.
    notes: Vec<Note>,
    /// The inotify descriptor's place in the poll set.
    events_slot: Option<usize>,
    /// Until when the inotify descriptor is left out of the poll set
    /// after a read (`EVENT_BATCH`).
    events_resume: Option<Instant>,
}

/// Loads the configuration, starts the daemon and runs it until stopped.
pub fn run(root: &Path, options: Options) -> Result<(), DaemonError> {
    // SIGHUP's default action ends the process: block the signals before
    // the configuration is read, so that one sent during a long load waits
    // for the signalfd instead of killing the daemon.
    handled_signals()
        .thread_block()
        .map_err(|e| DaemonError::Io("blocking signals", e.into()))?;
    crate::sys::memory::malloc_settings();
    let config = config::load(root).map_err(DaemonError::Config)?;
    lock_memory();
    let mut daemon = Daemon::start(config, options, Notifier::from_env())?;
    while daemon.turn()? == Control::Continue {}
    daemon.stop();
    Ok(())
}

/// The signals the loop takes through its signalfd.
fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask
}

impl Daemon {
    /// One turn of the loop: wait for the next deadline or event, then do
    /// what is due.
    pub fn turn(&mut self) -> Result<Control, DaemonError> {
        #[cfg(feature = "test-hooks")]
        crate::crash::trigger_for_tests();
        if self.poll_dirty {
            self.rebuild_poll_set();
        }
        let before = Instant::now();
        let deadline = self.next_deadline(before);
        let timeout = deadline.saturating_duration_since(before);
        let timeout_ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let n = match crate::sys::poll::poll(&mut self.pollfds, timeout_ms) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(DaemonError::Io("poll", e.into())),
        };
        let now = now();
        self.engine.feed_due(now);
        self.perform(now);
        if let Some(at) = self.events_resume
            && now.mono >= at
        {
            // What came during the pause, at once.
            self.events_resume = None;
            self.set_events_fd(self.watches.fd());
            self.read_events(now);
        }
        let mut control = Control::Continue;
        for slot in 0..self.pollfds.len() {
            if n == 0 || self.pollfds[slot].revents == 0 {
                continue;
            }
            self.pollfds[slot].revents = 0;
            match self.owners[slot] {
                Owner::Signals => control = self.take_signals(now),
                Owner::Prober => self.take_answers(now),
                Owner::Inotify => self.read_events(now),
                Owner::Process(id) => self.tell(Event::ProcessDied(id), now),
                Owner::RepairOutput(id) => self.repair_output(id, now),
                Owner::RepairExit(id) => self.repair_exited(id, now),
                Owner::CheckOutput(id) => self.check_output(id, now),
                Owner::CheckExit(id) => self.check_exited(id, now),
            }
            if control == Control::Stop || self.poll_dirty {
                // A reload or a changed poll set invalidates the slots.
                break;
            }
        }
        if control == Control::Stop {
            return Ok(control);
        }
        self.tend(now);
        self.engine.tick(now);
        self.perform(now);
        if self.engine.take_dirty() {
            self.publish();
        } else if let Some(metrics) = &mut self.metrics
            && now.mono >= metrics.due()
        {
            // Nothing changed, but the time gauges have moved on.
            metrics.publish(self.engine.status(now.wall), now.mono);
        }
        Ok(control)
    }

    /// Health of each rule by name, for tests.
    pub fn rule_health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.engine.rule_health()
    }

    /// How many heartbeat rules are seen by inotify events, for tests.
    pub fn event_driven_heartbeats(&self) -> usize {
        self.engine
            .heartbeat_files()
            .filter(|(_, _, mode)| *mode == engine::HeartbeatMode::Events)
            .count()
    }

    /// How many times any rule's health changed since start.
    pub fn health_changes(&self) -> u64 {
        self.engine.health_changes()
    }

    /// The engine's deadline, and the shell's own: repairs without a pidfd
    /// to say they exited, output pauses, the cleanup, a reason being
    /// written.
    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = self.engine.next_deadline(now);
        if let Some(at) = self.cleanup.next_deadline(now) {
            deadline = deadline.min(at);
        }
        let repairs = self.running.iter().filter_map(|id| self.slots.get(id));
        let checks = self.checking.iter().filter_map(|id| self.slots.get(id));
        let checks = checks.filter_map(|s| s.check.as_ref()).map(|c| &c.running);
        for r in repairs.filter_map(|s| s.repair.as_deref()).chain(checks) {
            if let Some(at) = r.paused_until() {
                deadline = deadline.min(at);
            }
            if r.pidfd.is_none() {
                // No pidfd to say it exited: look again soon.
                deadline = deadline.min(now + Duration::from_millis(100));
            }
        }
        if self.pending_save.is_some() {
            // The writer says nothing when done: look again soon.
            deadline = deadline.min(now + Duration::from_millis(10));
        }
        if let Some(metrics) = &self.metrics {
            deadline = deadline.min(metrics.due());
        }
        if let Some(at) = self.events_resume {
            deadline = deadline.min(at);
        }
        deadline
    }

    /// Hands the engine an event and carries out what it decides.
    fn tell(&mut self, event: Event, now: Now) {
        self.engine.handle(event, now);
        self.perform(now);
    }

    /// Carries out the engine's commands, in order.
    fn perform(&mut self, now: Now) {
        while let Some(command) = self.engine.next_command() {
            match command {
                Command::Feed => {
                    let ok = feed(&mut self.devices);
                    if let (true, Some(metrics)) = (ok, &mut self.metrics) {
                        metrics.fed(now.wall);
                    }
                    self.engine.handle(Event::Fed { ok }, now);
                }
                Command::StopFeeding => {
                    if self.devices.is_empty() {
                        crate::critical!("no hardware watchdog to fall back on; the host stays up");
                    } else {
                        crate::critical!(
                            "stopped feeding the watchdog: the hardware resets the host within {}",
                            DurationText(self.engine.config().watchdog.timeout)
                        );
                    }
                    crate::crash::stop_feeding();
                }
                Command::Ping => self.notifier.ping(),
                Command::StartCheck(id, subject) => self.prober.queue(id, subject),
                Command::CheckOverdue => self.prober.request_timed_out(),
                Command::OverdueSettled => self.prober.late_answer(),
                Command::Track(id) => {
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.pidfd = self.offered.take();
                        self.poll_dirty = true;
                    }
                }
                Command::Untrack(id) => {
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.pidfd = None;
                        self.poll_dirty = true;
                    }
                }
                Command::StartRepair(id) => self.start_repair(id, now),
                Command::TerminateRepair(id) => self.with_repair(id, Running::terminate),
                Command::KillRepair(id) => self.with_repair(id, Running::kill),
                Command::AbandonRepair(id) => {
                    if let Some(mut running) = self.take_repair(id) {
                        running.abandon(&mut self.cleanup);
                    }
                }
                Command::DiscardRepair(id) => {
                    if let Some(running) = self.take_repair(id) {
                        let rule = running.rule().to_string();
                        self.cleanup.adopt(running, &rule);
                    }
                }
                Command::StartCommandCheck(id) => self.start_command_check(id, now),
                Command::TerminateCommandCheck(id) => self.with_check(id, Running::terminate),
                Command::KillCommandCheck(id) => self.with_check(id, Running::kill),
                Command::AbandonCommandCheck(id) => self.abandon_command_check(id),
                Command::SaveRecord { wait } => {
                    if let (Some(state), Some(record)) = (&self.reboot_state, self.engine.record())
                    {
                        let n = state.save(record); // the writer logs a failure
                        if wait {
                            self.pending_save = Some(n);
                        }
                    }
                }
                Command::SaveHistory => {
                    if let Some(file) = &self.history_file {
                        file.save(self.engine.history()); // the writer logs a failure
                    }
                }
                Command::StartOrderlyReboot => self.start_orderly_reboot(now),
                Command::ForceReboot => {
                    let errno = reboot::force();
                    log::error!("reboot(2) failed: {errno}");
                }
                Command::Reconfigured => install_crash_handler(self.engine.config(), &self.devices),
            }
        }
        // This turn's looks go to the workers together.
        self.prober.flush();
    }

    /// After a start or a reload: a slot for every rule that can own a
    /// process or a descriptor (`Engine::rules_with_children`), none for rules
    /// gone (their repairs are killed and reaped later), room for what the
    /// steady state needs.
    fn installed(&mut self) {
        let ids: HashSet<RuleId> = self.engine.rule_ids().collect();
        let gone: Vec<RuleId> = self
            .slots
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            let Some(slot) = self.slots.remove(&id) else {
                continue;
            };
            if let Some(running) = slot.repair {
                let rule = running.rule().to_string();
                self.cleanup.adopt(*running, &rule);
            }
            if let Some(checker) = slot.check
                && checker.running.is_running()
            {
                let rule = checker.running.rule().to_string();
                self.cleanup.adopt(checker.running, &rule);
            }
        }
        self.checking.retain(|id| ids.contains(id));
        self.running.retain(|id| ids.contains(id));
        for id in self.engine.rules_with_children() {
            self.slots.entry(id).or_default();
        }
        self.install_checkers();
        let n = ids.len();
        self.scratch = Vec::with_capacity(n);
        self.running.reserve(n.saturating_sub(self.running.len()));
        self.checking.reserve(n.saturating_sub(self.checking.len()));
        self.watches.install(
            self.engine.heartbeat_places(),
            &mut self.prober,
            &mut self.notes,
        );
        // A look per rule and a watch request per directory.
        self.prober.reserve(n + self.watches.dir_count());
        self.prober.flush();
        let slots = 3 + n * 5;
        self.pollfds = Vec::with_capacity(slots);
        self.owners = Vec::with_capacity(slots);
        self.poll_dirty = true;
        self.status_file.reserve(self.engine.status_capacity());
        if let Some(metrics) = &mut self.metrics {
            let longest = self.engine.rules().map(|r| r.name.len()).max();
            metrics.reserve(n, longest.unwrap_or(0));
        }
    }

    fn take_signals(&mut self, now: Now) -> Control {
        let mut control = Control::Continue;
        let mut reload = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => control = Control::Stop,
                Ok(Signal::SIGHUP) => reload = true,
                _ => {}
            }
        }
        if control == Control::Stop {
            log::info!("stopping on signal");
        } else if reload {
            // SIGHUP: the new configuration is validated whole; if it is
            // not valid, the running one stays.
            self.notifier.reloading();
            let loaded = config::load(&self.engine.config().root).map(Box::new);
            self.tell(Event::Reload(loaded), now);
            self.installed();
            self.tell_notes(now);
            // The old configuration is freed, and the parser's code is
            // done with: their pages go back.
            crate::sys::memory::release_unused_memory();
            self.notifier.ready();
        }
        control
    }

    fn take_answers(&mut self, now: Now) {
        // In helpings, each taken under one lock.
        let mut chunk: [Option<crate::probe::Answer>; 32] = Default::default();
        loop {
            let n = self.prober.take_answers(&mut chunk);
            for answer in chunk.iter_mut().take(n).filter_map(Option::take) {
                if answer.ticket & WATCH_TICKET != 0 {
                    self.watches
                        .answered(answer.ticket, answer.finding, &mut self.notes);
                    continue;
                }
                self.watches
                    .stat_answered(answer.ticket, &answer.finding, &mut self.prober);
                let mut finding = answer.finding;
                if let Finding::Process(Lookup::Alive(found)) = &mut finding {
                    // The engine judges the look-up; the shell keeps the pidfd
                    // if the engine says to watch this process.
                    self.offered = found.pidfd.take();
                }
                self.tell(Event::Answered(answer.ticket, finding), now);
                self.offered = None;
            }
            if n < chunk.len() {
                break;
            }
        }
        self.tell_notes(now);
    }

    /// What the shell looks after itself each turn: the cleanup, paused
    /// output, repairs without a pidfd, the reason being written, the
    /// orderly reboot command.
    fn tend(&mut self, now: Now) {
        self.cleanup.tend(now.mono);
        self.tend_repairs(now);
        self.tend_checks(now);
        if let Some(n) = self.pending_save {
            self.record_answered(n, now);
        }
        self.tend_orderly_reboot(now);
    }

    /// Whether the reason's write `n` has answered; if so, the reboot goes on.
    fn record_answered(&mut self, n: u64, now: Now) {
        let Some(state) = &self.reboot_state else {
            return;
        };
        if !matches!(
            self.engine.reboot_state(),
            engine::RebootState::Recording { .. }
        ) {
            // The engine stopped waiting (the state directory's bound).
            self.pending_save = None;
            return;
        }
        match state.outcome(n) {
            Some(Ok(())) => log::info!("reboot reason recorded in {}", state.path().display()),
            Some(Err(e)) => log::error!(
                "cannot record the reboot reason in {}: {e}; rebooting anyway",
                state.path().display()
            ),
            None => return,
        }
        self.pending_save = None;
        self.tell(Event::ReasonWritten, now);
    }

    /// Lays out the poll set anew: signals, answers, and only the
    /// descriptors in use. Within the capacity reserved at load, so no
    /// allocation.
    fn rebuild_poll_set(&mut self) {
        self.poll_dirty = false;
        self.pollfds.clear();
        self.owners.clear();
        let mut add = |fd: i32, owner: Owner, pollfds: &mut Vec<libc::pollfd>| {
            pollfds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            self.owners.push(owner);
        };
        add(self.signals.as_raw_fd(), Owner::Signals, &mut self.pollfds);
        add(self.prober.fd(), Owner::Prober, &mut self.pollfds);
        self.events_slot = None;
        if let Some(fd) = self.watches.fd() {
            self.events_slot = Some(self.pollfds.len());
            let fd = if self.events_resume.is_some() { -1 } else { fd };
            add(fd, Owner::Inotify, &mut self.pollfds);
        }
        for (&id, slot) in &self.slots {
            if let Some(fd) = &slot.pidfd {
                add(fd.as_raw_fd(), Owner::Process(id), &mut self.pollfds);
            }
            if let Some(r) = &slot.repair {
                if let Some(fd) = &r.pidfd {
                    add(fd.as_raw_fd(), Owner::RepairExit(id), &mut self.pollfds);
                }
                if let Some(fd) = r.output_to_poll() {
                    add(fd.as_raw_fd(), Owner::RepairOutput(id), &mut self.pollfds);
                }
            }
            if let Some(c) = slot.check.as_ref().map(|c| &c.running)
                && c.is_running()
            {
                if let Some(fd) = &c.pidfd {
                    add(fd.as_raw_fd(), Owner::CheckExit(id), &mut self.pollfds);
                }
                if let Some(fd) = c.output_to_poll() {
                    add(fd.as_raw_fd(), Owner::CheckOutput(id), &mut self.pollfds);
                }
            }
        }
    }

    /// Rewrites the status file and tells systemd the one-line summary.
    fn publish(&mut self) {
        let status = self.engine.status(wall_now());
        self.notifier
            .status(format_args!("{}", status.systemd_line()));
        let mut summary = FixedBuf::<256>::new();
        let _ = write!(summary, "{}", status.crash_summary());
        crate::crash::publish_summary(summary.as_str());
        // The writer logs a failure.
        self.status_file.offer_with(|out| status.write_record(out));
        if let Some(metrics) = &mut self.metrics {
            metrics.publish(status, Instant::now());
        }
    }
}

/// The time, both clocks.
fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: wall_now(),
    }
}

/// Feeds every device; false when one refused.
fn feed(devices: &mut Devices) -> bool {
    let mut ok = true;
    for device in devices.iter_mut() {
        if let Err(e) = device.feed() {
            ok = false;
            log::error!("watchdog {}: feeding failed: {e}", device.path().display());
        }
    }
    ok
}

/// How long start waits for the runtime or the state directory to answer.
const DIR_BOUND: Duration = Duration::from_secs(5);
/// How long an orderly stop waits on the runtime directory: to read
/// `next-stop`, to write the last status.
const STOP_BOUND: Duration = Duration::from_secs(1);
