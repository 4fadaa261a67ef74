//! The shell around the engine: the event loop, one `poll` per turn with
//! an absolute monotonic deadline. It turns the world into the engine's
//! events — the time, a signal (signalfd), a finished probe, a process
//! death (pidfd), a repair command's output or exit, the device's answer
//! to a keepalive — and carries out the engine's commands. Every decision
//! is the engine's (`crate::engine`); what is here is only I/O.
//! Everything the steady state needs is allocated when the configuration is
//! loaded: a turn of a healthy or failing host allocates nothing. Actions
//! (running a repair, rebooting) may allocate; they are not the steady state.

use crate::atomic::{DirError, Writer};
use crate::config::{self, Config, ConfigError, DurationText};
use crate::device::{self, Device, DeviceError, Devices};
use crate::engine::{self, Command, Engine, Event, Now, RuleId, World};
use crate::health::Health;
use crate::notify::Notifier;
use crate::probe::{Finding, Prober};
use crate::process::{self, Lookup};
use crate::reboot::{self, RebootState};
use crate::repair::{self, Running};
use crate::rundir::{self, NextStop};
use crate::text::{Count, FixedBuf, wall_now};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::engine::Options;

/// Why the daemon could not start or go on.
#[derive(Debug)]
pub enum DaemonError {
    Config(Vec<ConfigError>),
    Device(DeviceError),
    Io(&'static str, std::io::Error),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Config(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            DaemonError::Device(e) => write!(f, "{e}"),
            DaemonError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

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
    repair: Option<Running>,
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

/// Keeps the daemon in RAM under memory pressure: every page it uses is
/// locked as soon as it is first touched (`MCL_ONFAULT`), so the steady
/// state never waits on a page-in. Pages never touched — most of libc, say —
/// are not pulled in just to be locked, which keeps the footprint small;
/// code used for the first time (the reboot path) may be read from disk.
/// One malloc arena instead of one per thread: the stat workers allocate
/// nothing, and each arena would reserve 64 MiB of locked address space.
fn lock_memory() {
    #[cfg(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc64"
    ))]
    const MCL_ONFAULT: libc::c_int = 0x8000;
    #[cfg(not(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc64"
    )))]
    const MCL_ONFAULT: libc::c_int = 4;
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes two integers; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only. Kernels before 4.4 refuse
    // MCL_ONFAULT with EINVAL: then everything is locked at once.
    let rc = unsafe {
        if libc::mlockall(flags | MCL_ONFAULT) == 0 {
            0
        } else {
            libc::mlockall(flags)
        }
    };
    if rc != 0 {
        log::warn!(
            "cannot lock memory ({}); heartwatch may be paged out under memory pressure",
            Errno::last()
        );
    }
}

impl Daemon {
    /// Opens the devices, feeds them once, starts the checks and tells
    /// systemd it is ready.
    pub fn start(
        config: Config,
        options: Options,
        notifier: Notifier,
    ) -> Result<Daemon, DaemonError> {
        let mask = handled_signals();
        // Blocked before any thread starts, so every thread inherits it and
        // the signals arrive only through the signalfd.
        mask.thread_block()
            .map_err(|e| DaemonError::Io("blocking signals", e.into()))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| DaemonError::Io("signalfd", e.into()))?;
        let prober = Prober::new(config.rules.len().max(16))
            .map_err(|e| DaemonError::Io("starting probe workers", e))?;
        let status_file = rundir::open_status_file(&config.daemon.runtime_dir, DIR_BOUND)
            .map_err(|e| DaemonError::Io("runtime directory", e))?;

        if config.daemon.dry_run || options.dry_run {
            log::info!("dry run: actions are logged, not taken");
        }
        let use_pidfd = process::have_pidfd();
        if !use_pidfd {
            log::warn!(
                "this kernel has no pidfd_open (Linux 5.3+): process deaths are found by periodic checks, not at once"
            );
        }
        let reboot_state = open_reboot_state(&config)?;

        device::wait_for_nodes(&config.watchdog.devices, device::NODE_WAIT, signals.as_fd());
        // From the first open on, every return with an error disarms the
        // devices opened so far (`Devices` does, when dropped), until the
        // start is complete.
        let mut devices = Devices::with_capacity(config.watchdog.devices.len());
        let mut boot_status = String::new();
        for path in &config.watchdog.devices {
            let opened =
                Device::open(path, config.watchdog.timeout).map_err(DaemonError::Device)?;
            let device = devices.hold(opened);
            describe(device, config.watchdog.feed_interval);
            device
                .check_feed_interval(config.watchdog.feed_interval)
                .map_err(DaemonError::Device)?;
            let sentence = device::describe_boot_status(device.boot_status());
            log::info!("watchdog {}: {sentence}", path.display());
            if !boot_status.is_empty() {
                boot_status.push_str("; ");
            }
            boot_status.push_str(&sentence);
        }
        if devices.is_empty() {
            log::info!("no watchdog device (Device=none): running the checks only");
        }
        install_crash_handler(&config, &devices);
        if !feed(&mut devices) {
            return Err(DaemonError::Io(
                "first feed of the watchdog",
                std::io::Error::other("the device refused the keepalive"),
            ));
        }
        let world = World {
            devices: devices
                .iter()
                .map(|d| engine::DeviceInfo {
                    path: d.path().to_path_buf(),
                    identity: d.identity().to_string(),
                    timeout: d.timeout(),
                })
                .collect(),
            boot_status,
            record: reboot_state.as_ref().map(|s| s.record.clone()),
            boot_id: reboot::boot_id(),
            uptime: reboot::uptime(),
            use_pidfd,
            ping_interval: notifier.ping_interval(),
            pid: std::process::id(),
            identity: crate::identity::line(),
            seed: crate::ladder::seed(),
        };
        let engine = Engine::new(config, options, world, now());
        let mut daemon = Daemon {
            engine,
            devices,
            notifier,
            prober,
            signals,
            slots: HashMap::new(),
            scratch: Vec::new(),
            pollfds: Vec::new(),
            owners: Vec::new(),
            poll_dirty: true,
            cleanup: repair::Cleanup::default(),
            status_file,
            status_buf: Vec::new(),
            reboot_state,
            pending_save: None,
            orderly: None,
            offered: None,
        };
        daemon.installed();
        daemon.publish();
        daemon.devices.take_over_feeding();
        daemon.notifier.ready();
        log::info!("ready: {}", Count::of(daemon.engine.rule_count(), "rule"));
        Ok(daemon)
    }

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
        // SAFETY: `pollfds` is a valid array of `len` pollfd structures.
        let n = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if n < 0 && Errno::last() != Errno::EINTR {
            return Err(DaemonError::Io("poll", std::io::Error::last_os_error()));
        }
        let now = now();
        self.engine.feed_due(now);
        self.perform(now);
        let mut control = Control::Continue;
        for slot in 0..self.pollfds.len() {
            if n <= 0 || self.pollfds[slot].revents == 0 {
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

    /// The orderly stop: tell systemd, disarm unless told to stay armed.
    pub fn stop(mut self) {
        self.notifier.stopping();
        let keep_armed_on_stop = self.engine.config().watchdog.keep_armed_on_stop;
        let next_stop = rundir::read_next_stop(&self.status_file, STOP_BOUND, keep_armed_on_stop);
        let keep_armed = if self.engine.rebooting() {
            Some("a reboot is under way")
        } else if next_stop == Some(NextStop::KeepArmed) {
            Some("next-stop: keep-armed")
        } else if next_stop == Some(NextStop::Disarm) {
            None
        } else if keep_armed_on_stop {
            Some("KeepArmedOnStop=yes")
        } else {
            None
        };
        // Running repairs are killed, not waited for (see `Running`'s Drop).
        for slot in self.slots.values_mut() {
            slot.repair = None;
        }
        self.cleanup.stop();
        for device in std::mem::take(&mut self.devices).into_orderly_stop() {
            let path = device.path().display().to_string();
            if let Some(why) = keep_armed {
                log::info!("watchdog {path}: left armed ({why})");
                drop(device);
            } else {
                let magic = device.has_magic_close();
                if !magic {
                    log::warn!(
                        "watchdog {path}: the driver has no magic close; closing it may not disarm it"
                    );
                }
                match device.disarm() {
                    Ok(()) if magic => log::info!("watchdog {path}: disarmed (magic close)"),
                    Ok(()) => log::info!("watchdog {path}: closed"),
                    Err(e) => log::error!(
                        "watchdog {path}: magic close failed: {e}; the hardware may still reset this host"
                    ),
                }
            }
        }
        // The status file's first line says so, for `heartwatch status`.
        self.engine.stopped(now());
        self.publish();
        if !self.status_file.flush(STOP_BOUND) {
            log::error!(
                "{}: the last status was not written within {}",
                self.status_file.path().display(),
                DurationText(STOP_BOUND)
            );
        }
        log::info!("stopped");
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
        for r in self.slots.values().filter_map(|s| s.repair.as_ref()) {
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
                Command::StopFeeding => crate::crash::stop_feeding(),
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

    fn start_repair(&mut self, id: RuleId, now: Now) {
        let Some((name, spec)) = self.engine.repair_spec(id) else {
            return;
        };
        match repair::start(&spec.command, name) {
            Ok(running) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.repair = Some(running);
                    self.poll_dirty = true;
                }
            }
            Err(ending) => self.tell(Event::RepairExited(id, ending), now),
        }
    }

    fn with_repair(&mut self, id: RuleId, f: impl FnOnce(&mut Running)) {
        if let Some(running) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) {
            f(running);
        }
    }

    fn take_repair(&mut self, id: RuleId) -> Option<Running> {
        self.poll_dirty = true;
        self.slots.get_mut(&id)?.repair.take()
    }

    fn start_orderly_reboot(&mut self, now: Now) {
        let Some(argv) = &self.engine.config().reboot.command else {
            return;
        };
        match repair::start(argv, "reboot") {
            Ok(running) => self.orderly = Some(running),
            Err(ending) => {
                log::error!("orderly reboot: `{}` {ending}", argv.text);
                self.tell(Event::OrderlyNotStarted, now);
            }
        }
    }

    /// After a start or a reload: a slot for every rule, none for rules
    /// gone (their repairs are killed and reaped later), room for what the
    /// steady state needs.
    fn installed(&mut self) {
        let ids: Vec<RuleId> = self.engine.rule_ids().collect();
        let gone: Vec<RuleId> = self
            .slots
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(running) = self.slots.remove(&id).and_then(|s| s.repair) {
                let rule = running.rule().to_string();
                self.cleanup.adopt(running, &rule);
            }
        }
        for &id in &ids {
            self.slots.entry(id).or_default();
        }
        let n = ids.len();
        self.scratch = Vec::with_capacity(n);
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

    fn repair_output(&mut self, id: RuleId, now: Now) {
        if let Some(r) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) {
            r.drain_output(now.mono);
            if r.output_to_poll().is_none() {
                self.poll_dirty = true;
            }
        }
    }

    fn repair_exited(&mut self, id: RuleId, now: Now) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(r) = &mut slot.repair else { return };
        let had_pidfd = r.pidfd.is_some();
        if let Some(ending) = r.try_finish(now.mono, &mut self.cleanup) {
            slot.repair = None;
            self.poll_dirty = true;
            self.tell(Event::RepairExited(id, ending), now);
        } else if had_pidfd && r.pidfd.is_none() {
            self.poll_dirty = true;
        }
    }

    /// What the shell looks after itself each turn: the cleanup, paused
    /// output, repairs without a pidfd, the reason being written, the
    /// orderly reboot command.
    fn tend(&mut self, now: Now) {
        self.cleanup.tend(now.mono);
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(
            self.slots
                .iter()
                .filter(|(_, s)| s.repair.is_some())
                .map(|(&id, _)| id),
        );
        for &id in &ids {
            let Some(r) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) else {
                continue;
            };
            if r.resume_output(now.mono) {
                self.poll_dirty = true;
            }
            if r.pidfd.is_none() {
                self.repair_exited(id, now);
            }
        }
        self.scratch = ids;
        if let Some(n) = self.pending_save {
            self.record_answered(n, now);
        }
        if let Some(running) = &mut self.orderly {
            running.drain_output(now.mono);
            if let Some(ending) = running.try_finish(now.mono, &mut self.cleanup) {
                log::info!("orderly reboot command {ending}");
                self.orderly = None;
            }
        }
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
        self.notifier
            .status(format_args!("{}", self.engine.systemd_status()));
        let mut summary = FixedBuf::<256>::new();
        let _ = write!(summary, "{}", self.engine.summary());
        crate::crash::publish_summary(summary.as_str());
        let mut buf = std::mem::take(&mut self.status_buf);
        buf.clear();
        let _ = self.engine.render_status(&mut buf, wall_now());
        self.status_file.offer(&buf); // the writer logs a failure
        self.status_buf = buf;
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

/// Hands the crash handler what it needs: the devices to feed once and
/// leave armed, and the memory test's bound (a quarter of the hardware
/// timeout, so the test ends well before the device would fire).
fn install_crash_handler(config: &Config, devices: &Devices) {
    let budget = if devices.is_empty() {
        Duration::from_secs(2)
    } else {
        devices
            .iter()
            .map(|d| d.timeout() / 4)
            .min()
            .unwrap_or(Duration::from_secs(2))
    };
    let setup = crate::crash::Setup {
        watchdog_fds: devices.iter().map(Device::raw_fd).collect(),
        memtest: config.daemon.crash_memtest,
        memtest_budget: budget,
    };
    if let Err(e) = crate::crash::install(setup) {
        log::error!("cannot install the crash handler: {e}");
    }
}

/// How long start waits for the runtime or the state directory to answer.
const DIR_BOUND: Duration = Duration::from_secs(5);
/// How long an orderly stop waits on the runtime directory: to read
/// `next-stop`, to write the last status.
const STOP_BOUND: Duration = Duration::from_secs(1);

/// Opens the reboot record. A state directory that cannot be used does
/// not stop the daemon: reboots then go on without a record. One that
/// others can write in is refused.
fn open_reboot_state(config: &Config) -> Result<Option<RebootState>, DaemonError> {
    let dir = &config.daemon.state_dir;
    match RebootState::open(dir, DIR_BOUND) {
        Ok(state) => Ok(Some(state)),
        Err(DirError::Refused(why)) => Err(DaemonError::Io(
            "state directory",
            std::io::Error::other(format!("{}: {why}", dir.display())),
        )),
        Err(e) => {
            log::error!(
                "state directory {}: {e}; reboot reasons and the reboot budget will not be kept",
                dir.display()
            );
            Ok(None)
        }
    }
}

fn describe(device: &Device, feed: Duration) {
    let path = device.path().display();
    log::info!(
        "watchdog {path}: identity \"{}\", firmware {}, options {}",
        device.identity(),
        device.firmware_version(),
        device.options()
    );
    log::info!(
        "watchdog {path}: timeout {} (asked {}), feeding every {}",
        DurationText(device.timeout()),
        DurationText(device.asked_timeout()),
        DurationText(feed)
    );
    if !device.has_magic_close() {
        log::warn!(
            "watchdog {path}: the driver lacks magic close, so it may disarm whenever heartwatch exits, even by a crash"
        );
    }
}
