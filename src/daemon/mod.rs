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

mod children;
mod lifecycle;

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
}

/// Who a slot of the poll set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Signals,
    Prober,
    Process(RuleId),
    RepairExit(RuleId),
    RepairOutput(RuleId),
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
    pollfds: Vec<libc::pollfd>,
    owners: Vec<Owner>,
    poll_dirty: bool,
    /// Killed repairs to reap, leftover processes of finished ones.
    cleanup: repair::Cleanup,
    status_file: Writer,
    status_buf: Vec<u8>,
    reboot_state: Option<RebootState>,
    /// The reboot reason's write being waited for.
    pending_save: Option<u64>,
    /// The orderly reboot command, while it runs.
    orderly: Option<Running>,
    /// The pidfd of the answer the engine is judging (`Command::Track`).
    offered: Option<OwnedFd>,
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
        let mut control = Control::Continue;
        for slot in 0..self.pollfds.len() {
            if n == 0 || self.pollfds[slot].revents == 0 {
                continue;
            }
            self.pollfds[slot].revents = 0;
            match self.owners[slot] {
                Owner::Signals => control = self.take_signals(now),
                Owner::Prober => self.take_answers(now),
                Owner::Process(id) => self.tell(Event::ProcessDied(id), now),
                Owner::RepairOutput(id) => self.repair_output(id, now),
                Owner::RepairExit(id) => self.repair_exited(id, now),
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
        }
        Ok(control)
    }

    /// Health of each rule by name, for tests.
    pub fn rule_health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.engine.rule_health()
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
        for r in repairs.filter_map(|s| s.repair.as_ref()) {
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
                Command::StartCheck(id, subject) => self.prober.submit(id, subject),
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
                    if let Some(running) = self.take_repair(id) {
                        running.abandon(&mut self.cleanup);
                    }
                }
                Command::DiscardRepair(id) => {
                    if let Some(running) = self.take_repair(id) {
                        let rule = running.rule().to_string();
                        self.cleanup.adopt(running, &rule);
                    }
                }
                Command::SaveRecord { wait } => {
                    if let (Some(state), Some(record)) = (&self.reboot_state, self.engine.record())
                    {
                        let n = state.save(record); // the writer logs a failure
                        if wait {
                            self.pending_save = Some(n);
                        }
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
    }

    /// After a start or a reload: a slot for every rule, none for rules
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
            if let Some(running) = self.slots.remove(&id).and_then(|s| s.repair) {
                let rule = running.rule().to_string();
                self.cleanup.adopt(*running, &rule);
            }
        }
        self.running.retain(|id| ids.contains(id));
        for &id in &ids {
            self.slots.entry(id).or_default();
        }
        let n = ids.len();
        self.scratch = Vec::with_capacity(n);
        self.running.reserve(n.saturating_sub(self.running.len()));
        self.prober.reserve(n);
        let slots = 2 + n * 3;
        self.pollfds = Vec::with_capacity(slots);
        self.owners = Vec::with_capacity(slots);
        self.poll_dirty = true;
        self.status_buf = Vec::with_capacity(self.engine.status_capacity());
        self.status_file.reserve(self.status_buf.capacity());
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
            // The old configuration is freed: its pages go back.
            crate::sys::memory::release_free_memory();
            self.notifier.ready();
        }
        control
    }

    fn take_answers(&mut self, now: Now) {
        while let Some(answer) = self.prober.next_answer() {
            let mut finding = answer.finding;
            if let Finding::Process(Lookup::Alive(found)) = &mut finding {
                // The engine judges the look-up; the shell keeps the pidfd
                // if the engine says to watch this process.
                self.offered = found.pidfd.take();
            }
            self.tell(Event::Answered(answer.ticket, finding), now);
            self.offered = None;
        }
    }

    /// What the shell looks after itself each turn: the cleanup, paused
    /// output, repairs without a pidfd, the reason being written, the
    /// orderly reboot command.
    fn tend(&mut self, now: Now) {
        self.cleanup.tend(now.mono);
        self.tend_repairs(now);
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
        self.status_buf.clear();
        status.write_record(&mut self.status_buf);
        self.status_file.offer(&self.status_buf); // the writer logs a failure
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
