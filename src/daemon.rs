//! The event loop: one `poll` per turn with an absolute monotonic deadline.
//! A turn feeds the watchdog when due, starts the rule checks that are due,
//! moves the escalation ladders, publishes state changes, pings systemd,
//! and waits for the next deadline, a signal (signalfd), a finished probe,
//! a process death (pidfd) or a repair command's output or exit.
//! Everything the steady state needs is allocated when the configuration is
//! loaded: a turn of a healthy or failing host allocates nothing. Actions
//! (running a repair, rebooting) may allocate; they are not the steady state.

use crate::atomic::{DirError, Writer};
use crate::config::{self, Config, ConfigError, DurationText, Finally, Rule, Watch};
use crate::device::{self, Device, DeviceError, Devices};
use crate::health::{Cause, Health};
use crate::heartbeat::Heartbeat;
use crate::ladder::{self, Action, Event, Ladder};
use crate::notify::Notifier;
use crate::probe::{Finding, Prober, Subject};
use crate::process::{self, ProcessWatch, Target};
use crate::reboot::{self, Reason, RebootState};
use crate::repair::{self, Ending, Running};
use crate::rundir::{self, NextStop};
use crate::status::{self, DeviceStatus, Feeding, Identity, LastRepair, RuleStatus, Status};
use crate::text::{Count, FixedBuf, wall_now};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A rule being watched, with its runtime state.
struct Watched {
    id: u64,
    rule: Rule,
    subject: SubjectRef,
    check: Check,
    health: Health,
    since: Instant,
    since_wall: i64,
    /// Failures are not reported before this (start-up grace).
    grace_end: Instant,
    /// Identifies the rule's one valid entry in the check heap.
    seq: u32,
    next_at: Instant,
    in_flight: bool,
    /// The probe in flight has outlived `CheckTimeout=`.
    late: bool,
    ladder: Ladder,
    /// Identifies the ladder's one valid timer in the timer heap.
    ladder_seq: u32,
    ladder_at: Option<Instant>,
    /// The ladder's timer fired while a check was in flight: the ladder
    /// judges again once that fresh answer is in.
    timer_waits_for_check: bool,
    repair: Option<Running>,
    last_repair: Option<repair::Outcome>,
}

enum SubjectRef {
    File(Arc<CString>),
    Process(Arc<Target>),
}

enum Check {
    Heartbeat(Heartbeat),
    Process(ProcessWatch),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wakeup {
    at: Instant,
    rule: u32,
    seq: u32,
}

/// Who a slot of the poll set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Signals,
    Prober,
    Process(usize),
    RepairExit(usize),
    RepairOutput(usize),
}

/// Where a reboot stands once decided.
#[derive(Debug)]
enum Rebooting {
    /// The reason is being written (save number `save`); the orderly reboot
    /// begins when it is, or at `until` if the state directory does not
    /// answer.
    Recording { save: u64, until: Instant },
    /// The orderly reboot was asked for; `reboot(2)` follows at the deadline.
    Orderly {
        deadline: Instant,
        command: Option<Running>,
    },
    /// Feeding has stopped: the hardware watchdog will reset the host.
    FeedStopped,
}

/// The running daemon.
pub struct Daemon {
    config: Config,
    options: Options,
    devices: Devices,
    feeding_ok: bool,
    notifier: Notifier,
    prober: Prober,
    use_pidfd: bool,
    signals: SignalFd,
    rules: Vec<Watched>,
    ids: HashMap<u64, usize>,
    next_id: u64,
    checks: BinaryHeap<Reverse<Wakeup>>,
    timers: BinaryHeap<Reverse<Wakeup>>,
    pollfds: Vec<libc::pollfd>,
    owners: Vec<Owner>,
    poll_dirty: bool,
    /// Rules with a repair command running.
    repairing: Vec<usize>,
    /// Killed repairs to reap, leftover processes of finished ones.
    cleanup: repair::Cleanup,
    status_file: Writer,
    status_buf: Vec<u8>,
    status_dirty: bool,
    /// What the status file says, kept to be filled in place.
    status: Status,
    /// Who writes the status (`identity::this_process`).
    identity: Identity,
    /// When the orderly stop ended, for the status file's last word.
    stopped_wall: Option<i64>,
    started_wall: i64,
    next_feed: Instant,
    next_ping: Option<Instant>,
    boot_status: String,
    reboot_state: Option<RebootState>,
    /// The reboot heartwatch started before this boot, if any.
    previous_reboot: Option<Reason>,
    rebooting: Option<Rebooting>,
    suppressed: Option<String>,
    /// Since when no rule whose ladder can reboot has been failing.
    healthy_since: Option<Instant>,
    /// How many rules whose ladder ends in `reboot` are failing.
    failing_rebooters: usize,
    changes: u64,
}

/// Options from the command line that override the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
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
        let (reboot_state, previous_reboot) = open_reboot_state(&config)?;

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

        let now = Instant::now();
        let mut daemon = Daemon {
            options,
            devices,
            feeding_ok: true,
            notifier,
            prober,
            use_pidfd,
            signals,
            rules: Vec::new(),
            ids: HashMap::new(),
            next_id: 1,
            checks: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            pollfds: Vec::new(),
            owners: Vec::new(),
            poll_dirty: true,
            repairing: Vec::new(),
            cleanup: repair::Cleanup::default(),
            status_file,
            status_buf: Vec::new(),
            status_dirty: true,
            status: Status::default(),
            identity: crate::identity::this_process(),
            stopped_wall: None,
            started_wall: wall_now(),
            next_feed: now,
            next_ping: None,
            boot_status,
            reboot_state,
            previous_reboot,
            rebooting: None,
            suppressed: None,
            healthy_since: Some(now),
            failing_rebooters: 0,
            changes: 0,
            config,
        };
        daemon.feed(now);
        if !daemon.feeding_ok {
            return Err(DaemonError::Io(
                "first feed of the watchdog",
                std::io::Error::other("the device refused the keepalive"),
            ));
        }
        let rules = std::mem::take(&mut daemon.config.rules);
        daemon.install_rules(rules, Vec::new(), now);
        daemon.next_ping = daemon.notifier.ping_interval().map(|_| now);
        daemon.publish();
        daemon.devices.take_over_feeding();
        daemon.notifier.ready();
        log::info!("ready: {}", Count::of(daemon.rules.len(), "rule"));
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
        let now = Instant::now();
        let deadline = self.next_deadline(now);
        let timeout = deadline.saturating_duration_since(now);
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
        let now = Instant::now();
        if now >= self.next_feed {
            self.feed(now);
        }
        let mut control = Control::Continue;
        for slot in 0..self.pollfds.len() {
            if n <= 0 || self.pollfds[slot].revents == 0 {
                continue;
            }
            self.pollfds[slot].revents = 0;
            match self.owners[slot] {
                Owner::Signals => control = self.take_signals(),
                Owner::Prober => self.take_answers(now),
                Owner::Process(i) => self.process_died(i, now),
                Owner::RepairOutput(i) => self.repair_output(i, now),
                Owner::RepairExit(i) => self.repair_exited(i, now),
            }
            if control == Control::Stop || self.poll_dirty {
                // A reload or a changed poll set invalidates the slots.
                break;
            }
        }
        if control == Control::Stop {
            return Ok(control);
        }
        self.run_due_checks(now);
        self.run_due_timers(now);
        self.tend_repairs(now);
        self.tend_reboot(now);
        self.tend_budget(now);
        if self.status_dirty {
            self.publish();
        }
        if let (Some(at), Some(interval)) = (self.next_ping, self.notifier.ping_interval())
            && now >= at
            && self.feeding_ok
        {
            self.notifier.ping();
            self.next_ping = Some(now + interval);
        }
        Ok(control)
    }

    /// The orderly stop: tell systemd, disarm unless told to stay armed.
    pub fn stop(mut self) {
        self.notifier.stopping();
        let next_stop = rundir::read_next_stop(
            &self.status_file,
            STOP_BOUND,
            self.config.watchdog.keep_armed_on_stop,
        );
        let keep_armed = if self.rebooting.is_some() {
            Some("a reboot is under way")
        } else if next_stop == Some(NextStop::KeepArmed) {
            Some("next-stop: keep-armed")
        } else if next_stop == Some(NextStop::Disarm) {
            None
        } else if self.config.watchdog.keep_armed_on_stop {
            Some("KeepArmedOnStop=yes")
        } else {
            None
        };
        // Running repairs are killed, not waited for (see `Running`'s Drop).
        for rule in &mut self.rules {
            rule.repair = None;
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
        // The status says so (its `stopped` line), for `heartwatch status`.
        self.stopped_wall = Some(wall_now());
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

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + Duration::from_secs(3600);
        if !self.devices.is_empty() && !matches!(self.rebooting, Some(Rebooting::FeedStopped)) {
            deadline = deadline.min(self.next_feed);
        }
        if let Some(ping) = self.next_ping {
            deadline = deadline.min(ping);
        }
        if let Some(Reverse(w)) = self.checks.peek() {
            deadline = deadline.min(w.at);
        }
        if let Some(Reverse(w)) = self.timers.peek() {
            deadline = deadline.min(w.at);
        }
        if let Some(at) = self.cleanup.next_deadline(now) {
            deadline = deadline.min(at);
        }
        for &i in &self.repairing {
            if let Some(r) = &self.rules[i].repair {
                deadline = deadline.min(r.next_deadline());
                if r.pidfd.is_none() {
                    // No pidfd to say it exited: look again soon.
                    deadline = deadline.min(now + Duration::from_millis(100));
                }
            }
        }
        match &self.rebooting {
            Some(Rebooting::Orderly { deadline: d, .. }) => deadline = deadline.min(*d),
            // The writer says nothing when done: look again soon.
            Some(Rebooting::Recording { until, .. }) => {
                deadline = deadline.min(*until).min(now + Duration::from_millis(10))
            }
            _ => {}
        }
        if let Some(since) = self.healthy_since
            && self.reboot_count() > 0
        {
            deadline = deadline.min(since + self.config.reboot.healthy_uptime);
        }
        deadline
    }

    fn feed(&mut self, now: Instant) {
        self.next_feed = now + self.config.watchdog.feed_interval;
        if matches!(self.rebooting, Some(Rebooting::FeedStopped)) {
            return;
        }
        let mut ok = true;
        for device in self.devices.iter_mut() {
            if let Err(e) = device.feed() {
                ok = false;
                log::error!("watchdog {}: feeding failed: {e}", device.path().display());
            }
        }
        if ok != self.feeding_ok {
            self.status_dirty = true;
        }
        self.feeding_ok = ok;
    }

    fn take_signals(&mut self) -> Control {
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
            self.reload();
        }
        control
    }

    /// SIGHUP: the new configuration is validated whole; if it is not
    /// valid, the running one stays.
    fn reload(&mut self) {
        self.notifier.reloading();
        let now = Instant::now();
        match config::load(&self.config.root) {
            Err(errors) => {
                for e in &errors {
                    log::error!("{e}");
                }
                log::error!(
                    "reload refused: {}; the running configuration stays",
                    Count::of(errors.len(), "error")
                );
            }
            Ok(mut new) => {
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
                {
                    log::warn!(
                        "reload: directory settings changed; they take effect when heartwatch restarts"
                    );
                    new.daemon.runtime_dir = self.config.daemon.runtime_dir.clone();
                    new.daemon.state_dir = self.config.daemon.state_dir.clone();
                }
                let rules = std::mem::take(&mut new.rules);
                let old = std::mem::take(&mut self.rules);
                self.config = new;
                install_crash_handler(&self.config, &self.devices);
                self.install_rules(rules, old, now);
                log::info!("reloaded: {}", Count::of(self.rules.len(), "rule"));
            }
        }
        self.status_dirty = true;
        self.notifier.ready();
    }

    /// Dry run: `DryRun=yes` in the file or `--dry-run` on the command line.
    fn dry_run(&self) -> bool {
        self.config.daemon.dry_run || self.options.dry_run
    }

    /// Builds the runtime state for `rules`, carrying over what `old` knew
    /// of rules that did not change. Allocation is fine here: this runs at
    /// start and on reload, not in the steady state.
    fn install_rules(&mut self, rules: Vec<Rule>, old: Vec<Watched>, now: Instant) {
        let mut old_by_name: HashMap<String, Watched> =
            old.into_iter().map(|w| (w.rule.name.clone(), w)).collect();
        let grace_end = now + self.config.daemon.startup_grace;
        let mut watched = Vec::with_capacity(rules.len());
        // Kept failing rules whose new ladder must hear that they fail.
        let mut tell_failing = Vec::new();
        for rule in rules {
            let kept = match old_by_name.remove(&rule.name) {
                Some(w) if w.rule.watch == rule.watch => Some(w),
                Some(changed) => {
                    self.retire(changed);
                    None
                }
                None => None,
            };
            let entry = match kept {
                Some(mut w) => {
                    let mut ladder = Ladder::new(rule.ladder.clone(), ladder::seed());
                    if !ladder.carry_over(&w.ladder) {
                        // A new ladder (heartwatch.rules(5), RELOADING).
                        w.ladder_at = None;
                        if let Some(running) = w.repair.take() {
                            if ladder.goes_on_with_running_repair() {
                                w.repair = Some(running);
                            } else {
                                self.cleanup.adopt(running, &w.rule.name);
                            }
                        }
                        if w.repair.is_none() && matches!(w.health, Health::Failing(_)) {
                            tell_failing.push(watched.len());
                        }
                    }
                    w.ladder = ladder;
                    w.rule = rule;
                    w
                }
                None => self.new_watched(rule, now, grace_end),
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
        self.prober.reserve(self.rules.len());
        self.checks = BinaryHeap::with_capacity(self.rules.len() * 3 + 16);
        self.timers = BinaryHeap::with_capacity(self.rules.len() * 3 + 16);
        self.repairing = Vec::with_capacity(self.rules.len());
        for (i, w) in self.rules.iter().enumerate() {
            if !w.late {
                self.checks.push(Reverse(Wakeup {
                    at: w.next_at,
                    rule: i as u32,
                    seq: w.seq,
                }));
            }
            if let Some(at) = w.ladder_at {
                self.timers.push(Reverse(Wakeup {
                    at,
                    rule: i as u32,
                    seq: w.ladder_seq,
                }));
            }
            if w.repair.is_some() {
                self.repairing.push(i);
            }
        }
        let slots = 2 + self.rules.len() * 3;
        self.pollfds = Vec::with_capacity(slots);
        self.owners = Vec::with_capacity(slots);
        self.poll_dirty = true;
        let longest_name = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(0);
        let per_rule = 300 + longest_name;
        self.status_buf = Vec::with_capacity(8192 + self.rules.len() * per_rule);
        self.status_file.reserve(self.status_buf.capacity());
        self.status_dirty = true;
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

    /// A rule that went away or changed its watch: its repair is killed
    /// and reaped later, a late check's answer is left unclaimed.
    fn retire(&mut self, gone: Watched) {
        if let Some(running) = gone.repair {
            self.cleanup.adopt(running, &gone.rule.name);
        }
        if gone.late {
            // Its worker may answer one day; nobody will claim that answer.
            self.prober.late_answer();
        }
    }

    fn new_watched(&mut self, rule: Rule, now: Instant, grace_end: Instant) -> Watched {
        let id = self.next_id;
        self.next_id += 1;
        let cstring = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL");
        let (check, subject) = match &rule.watch {
            Watch::Heartbeat(spec) => (
                Check::Heartbeat(Heartbeat::new(spec, now)),
                SubjectRef::File(Arc::new(cstring(&spec.file))),
            ),
            Watch::Process(spec) => {
                let target = match &spec.target {
                    config::ProcessTarget::PidFile(p) => Target::PidFile(cstring(p)),
                    config::ProcessTarget::Executable(p) => {
                        Target::Executable(p.as_os_str().as_bytes().to_vec())
                    }
                };
                (
                    Check::Process(ProcessWatch::new(spec.check_interval)),
                    SubjectRef::Process(Arc::new(target)),
                )
            }
        };
        let ladder = Ladder::new(rule.ladder.clone(), ladder::seed() ^ id);
        Watched {
            id,
            rule,
            subject,
            check,
            health: Health::Starting,
            since: now,
            since_wall: wall_now(),
            grace_end,
            seq: 0,
            next_at: now,
            in_flight: false,
            late: false,
            ladder,
            ladder_seq: 0,
            ladder_at: None,
            timer_waits_for_check: false,
            repair: None,
            last_repair: None,
        }
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
        for (i, w) in self.rules.iter().enumerate() {
            if let Check::Process(p) = &w.check
                && let Some(fd) = p.pidfd()
            {
                add(fd.as_raw_fd(), Owner::Process(i), &mut self.pollfds);
            }
            if let Some(r) = &w.repair {
                if let Some(fd) = &r.pidfd {
                    add(fd.as_raw_fd(), Owner::RepairExit(i), &mut self.pollfds);
                }
                if let Some(fd) = r.output_to_poll() {
                    add(fd.as_raw_fd(), Owner::RepairOutput(i), &mut self.pollfds);
                }
            }
        }
    }

    fn schedule_check(&mut self, index: usize, at: Instant) {
        let w = &mut self.rules[index];
        w.seq = w.seq.wrapping_add(1);
        w.next_at = at;
        let wakeup = Wakeup {
            at,
            rule: index as u32,
            seq: w.seq,
        };
        if self.checks.len() == self.checks.capacity() {
            // Drop outdated entries in place rather than grow the heap.
            let rules = &self.rules;
            self.checks
                .retain(|Reverse(w)| rules[w.rule as usize].seq == w.seq);
        }
        self.checks.push(Reverse(wakeup));
    }

    fn schedule_timer(&mut self, index: usize, at: Option<Instant>) {
        let w = &mut self.rules[index];
        w.ladder_seq = w.ladder_seq.wrapping_add(1);
        w.ladder_at = at;
        let Some(at) = at else { return };
        let wakeup = Wakeup {
            at,
            rule: index as u32,
            seq: w.ladder_seq,
        };
        if self.timers.len() == self.timers.capacity() {
            let rules = &self.rules;
            self.timers
                .retain(|Reverse(w)| rules[w.rule as usize].ladder_seq == w.seq);
        }
        self.timers.push(Reverse(wakeup));
    }

    fn run_due_checks(&mut self, now: Instant) {
        while let Some(Reverse(w)) = self.checks.peek().copied() {
            if w.at > now {
                break;
            }
            self.checks.pop();
            let index = w.rule as usize;
            if self.rules[index].seq != w.seq {
                continue;
            }
            if self.rules[index].in_flight {
                self.check_timed_out(index, now);
            } else {
                self.start_check(index, now);
            }
        }
    }

    fn start_check(&mut self, index: usize, now: Instant) {
        let w = &mut self.rules[index];
        w.in_flight = true;
        let subject = match &w.subject {
            SubjectRef::File(path) => Subject::File(Arc::clone(path)),
            SubjectRef::Process(target) => Subject::Process(Arc::clone(target), self.use_pidfd),
        };
        self.prober.submit(w.id, subject);
        let timeout = self.config.daemon.check_timeout;
        self.schedule_check(index, now + timeout);
    }

    fn check_timed_out(&mut self, index: usize, now: Instant) {
        self.rules[index].late = true;
        self.prober.request_timed_out();
        let timeout = self.config.daemon.check_timeout;
        self.judge(index, Err(Cause::CheckTimedOut(timeout)), now);
        // No new check until the stuck one answers: a hung mount must not
        // take one worker per check interval.
    }

    fn take_answers(&mut self, now: Instant) {
        while let Some(answer) = self.prober.next_answer() {
            let Some(&index) = self.ids.get(&answer.ticket) else {
                continue;
            };
            self.on_answer(index, answer.finding, now);
        }
    }

    fn on_answer(&mut self, index: usize, finding: Finding, now: Instant) {
        let w = &mut self.rules[index];
        if !w.in_flight {
            return;
        }
        w.in_flight = false;
        if w.late {
            w.late = false;
            self.prober.late_answer();
        }
        let (verdict, next) = match (&mut w.check, finding) {
            (Check::Heartbeat(hb), Finding::File(outcome)) => hb.observe(outcome, now),
            (Check::Process(p), Finding::Process(lookup)) => {
                let before = p.pidfd().map(|fd| fd.as_raw_fd());
                let result = p.observe(lookup, now);
                if p.pidfd().map(|fd| fd.as_raw_fd()) != before {
                    self.poll_dirty = true;
                }
                result
            }
            _ => return,
        };
        self.judge(index, verdict, now);
        self.schedule_check(index, next);
        if std::mem::take(&mut self.rules[index].timer_waits_for_check) {
            self.step_ladder(index, Event::TimerFired, now);
        }
    }

    /// A watched process's pidfd became readable: it exited.
    fn process_died(&mut self, index: usize, now: Instant) {
        let w = &mut self.rules[index];
        let Check::Process(p) = &mut w.check else {
            return;
        };
        let pid = p.pid().unwrap_or(0);
        let cause = p.died();
        self.poll_dirty = true;
        log::debug!("rule {}: process {pid} exited", w.rule.name);
        self.judge(index, Err(cause), now);
        // Look again at once: a restarted service rewrites its pidfile.
        if !self.rules[index].in_flight {
            self.schedule_check(index, now);
        }
    }

    /// Records a check's verdict; logs and publishes a change of health and
    /// moves the ladder.
    fn judge(&mut self, index: usize, verdict: Result<(), Cause>, now: Instant) {
        let w = &mut self.rules[index];
        let health = match verdict {
            Ok(()) => Health::Healthy,
            Err(_) if now < w.grace_end => Health::Starting,
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
                (!matches!(was, Health::Failing(_))).then_some(Event::Failed)
            }
            Health::Healthy if matches!(was, Health::Failing(_)) => {
                log::info!(
                    "rule {name}: healthy again after {}",
                    DurationText(Duration::from_millis(
                        now.saturating_duration_since(w.since).as_millis() as u64
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
        w.since = now;
        w.since_wall = wall_now();
        let counted = fails_and_can_reboot(w);
        self.failing_rebooters = (self.failing_rebooters + usize::from(counted))
            .saturating_sub(usize::from(was_counted));
        self.status_dirty = true;
        self.changes += 1;
        if let Some(event) = event {
            self.step_ladder(index, event, now);
        }
        self.update_healthy_since(now);
    }

    /// Feeds an event to a rule's ladder and carries out what it says.
    fn step_ladder(&mut self, index: usize, event: Event, now: Instant) {
        let before = self.rules[index].ladder.state();
        let action = self.rules[index].ladder.on(event);
        if self.rules[index].ladder.state() != before {
            self.status_dirty = true;
            // Whatever timer the old state had is void.
            if !matches!(action, Action::Wait(_)) {
                self.schedule_timer(index, None);
            }
        }
        let name = &self.rules[index].rule.name;
        match action {
            Action::Nothing => {}
            Action::Wait(delay) => {
                log::debug!("rule {name}: ladder waits {}", DurationText(delay));
                self.schedule_timer(index, Some(now + delay));
            }
            Action::Repair(attempt) => self.start_repair(index, attempt, now),
            Action::Reset => log::info!("rule {name}: stayed healthy; its ladder starts over"),
            Action::Final(Finally::Log) if self.rules[index].rule.ladder.repair.is_some() => {
                log::error!("rule {name}: every repair was tried; nothing more will be done")
            }
            Action::Final(Finally::Log) => {}
            Action::Final(Finally::Reboot) => self.decide_reboot(index, now),
        }
    }

    fn run_due_timers(&mut self, now: Instant) {
        while let Some(Reverse(w)) = self.timers.peek().copied() {
            if w.at > now {
                break;
            }
            self.timers.pop();
            let index = w.rule as usize;
            if self.rules[index].ladder_seq != w.seq {
                continue;
            }
            self.rules[index].ladder_at = None;
            if self.rules[index].in_flight && !self.rules[index].late {
                self.rules[index].timer_waits_for_check = true;
            } else {
                self.step_ladder(index, Event::TimerFired, now);
            }
        }
    }

    fn start_repair(&mut self, index: usize, attempt: u32, now: Instant) {
        let w = &mut self.rules[index];
        let Some(spec) = w.rule.ladder.repair.clone() else {
            return;
        };
        let name = w.rule.name.clone();
        let of = spec.attempts;
        if self.dry_run() {
            log::warn!(
                "rule {name}: dry run: would run `{}` (repair attempt {attempt} of {of})",
                spec.command.text
            );
            self.finish_repair(index, attempt, Ending::DryRun, Duration::ZERO, now);
            return;
        }
        log::warn!(
            "rule {name}: running `{}` (repair attempt {attempt} of {of})",
            spec.command.text
        );
        match repair::start(&spec.command, &name, spec.timeout, now) {
            Ok(running) => {
                self.rules[index].repair = Some(running);
                self.repairing.push(index);
                self.poll_dirty = true;
                self.status_dirty = true;
            }
            Err(ending) => {
                self.finish_repair(index, attempt, ending, Duration::ZERO, now);
            }
        }
    }

    fn repair_output(&mut self, index: usize, now: Instant) {
        let w = &mut self.rules[index];
        if let Some(r) = &mut w.repair {
            r.drain_output(&w.rule.name, now);
            if r.output_to_poll().is_none() {
                self.poll_dirty = true;
            }
        }
    }

    fn repair_exited(&mut self, index: usize, now: Instant) {
        let attempt = match self.rules[index].ladder.state() {
            ladder::State::Repairing(n) => n,
            _ => 0,
        };
        let w = &mut self.rules[index];
        let Some(r) = &mut w.repair else { return };
        let had_pidfd = r.pidfd.is_some();
        if let Some(outcome) = r.try_finish(now, attempt, &w.rule.name, &mut self.cleanup) {
            w.repair = None;
            self.poll_dirty = true;
            self.repairing.retain(|&i| i != index);
            self.finish_repair(index, attempt, outcome.ending, outcome.duration, now);
        } else if had_pidfd && r.pidfd.is_none() {
            self.poll_dirty = true;
        }
    }

    /// A repair that outlived SIGKILL: a failed attempt, left to the reaper.
    fn repair_abandoned(&mut self, index: usize, now: Instant) {
        let attempt = match self.rules[index].ladder.state() {
            ladder::State::Repairing(n) => n,
            _ => 0,
        };
        let Some(running) = self.rules[index].repair.take() else {
            return;
        };
        let outcome = running.abandon(now, attempt, &mut self.cleanup);
        self.poll_dirty = true;
        self.repairing.retain(|&i| i != index);
        self.finish_repair(index, attempt, outcome.ending, outcome.duration, now);
    }

    /// Enforces repair timeouts, and finds exits where there is no pidfd.
    fn tend_repairs(&mut self, now: Instant) {
        self.cleanup.tend(now);
        let mut k = 0;
        while k < self.repairing.len() {
            let index = self.repairing[k];
            let w = &mut self.rules[index];
            if let Some(r) = &mut w.repair {
                if r.tick(now, &w.rule.name) {
                    self.repair_abandoned(index, now);
                    continue;
                }
                if r.resume_output(now) {
                    self.poll_dirty = true;
                }
                if r.pidfd.is_none() {
                    let before = self.repairing.len();
                    self.repair_exited(index, now);
                    if self.repairing.len() < before {
                        continue;
                    }
                }
            }
            k += 1;
        }
    }

    fn finish_repair(
        &mut self,
        index: usize,
        attempt: u32,
        ending: Ending,
        duration: Duration,
        now: Instant,
    ) {
        let w = &mut self.rules[index];
        let outcome = repair::Outcome {
            attempt,
            ending,
            duration,
            ended_wall: wall_now(),
        };
        match ending {
            Ending::Exited(0) | Ending::DryRun => {
                log::info!("rule {}: repair {outcome}", w.rule.name)
            }
            _ => log::warn!("rule {}: repair {outcome}", w.rule.name),
        }
        w.last_repair = Some(outcome);
        self.status_dirty = true;
        // Judge the repair on a fresh look, not on what was seen before it.
        if !self.rules[index].in_flight {
            self.schedule_check(index, now);
        }
        self.step_ladder(index, Event::RepairEnded, now);
        // A rule that became healthy while its repair ran raised its event
        // then, when the ladder was not listening: tell it now.
        if self.rules[index].health == Health::Healthy {
            self.step_ladder(index, Event::Healthy, now);
        }
    }

    fn reboot_count(&self) -> u32 {
        self.reboot_state.as_ref().map_or(0, |s| s.record.count)
    }

    /// A ladder reached `reboot`: within the budget, record why and begin;
    /// past it, refuse loudly and go on feeding and repairing.
    fn decide_reboot(&mut self, index: usize, now: Instant) {
        let w = &self.rules[index];
        let cause = match w.health {
            Health::Failing(cause) => cause.to_string(),
            _ => "failing".to_string(),
        };
        let step = match &w.rule.ladder.repair {
            Some(r) => format!("after {}", Count(r.attempts.into(), "repair attempt")),
            None => "no repair configured".to_string(),
        };
        let name = w.rule.name.clone();
        if self.rebooting.is_some() {
            log::warn!("rule {name}: reboot wanted too; one is already under way");
            return;
        }
        let budget = self.config.reboot.budget;
        let count = self.reboot_count();
        if count >= budget {
            let text = format!(
                "rule {name}: {cause}: reboot suppressed: {} without a healthy period (Budget={budget}); staying up, feeding, repairing",
                Count(count.into(), "reboot")
            );
            crate::critical!("{text}");
            self.suppressed = Some(text);
            self.status_dirty = true;
            self.step_ladder(index, Event::RebootSuppressed, now);
            return;
        }
        let reason = Reason {
            rule: name.clone(),
            cause: cause.clone(),
            step,
            uptime: reboot::uptime(),
            wall: wall_now(),
            boot_id: reboot::boot_id(),
        };
        crate::critical!("rebooting: {reason}");
        let dry_run = self.dry_run();
        if dry_run {
            log::warn!(
                "dry run: would record the reason, reboot in order, then call reboot(2), then stop feeding the watchdog"
            );
            self.suppressed = Some(format!("dry run: would reboot for rule {name}: {cause}"));
            self.status_dirty = true;
            self.step_ladder(index, Event::RebootSuppressed, now);
            return;
        }
        match &mut self.reboot_state {
            Some(state) => {
                state.record.count += 1;
                state.record.last = Some(reason.clone());
                let save = state.save();
                self.rebooting = Some(Rebooting::Recording {
                    save,
                    until: now + RECORD_BOUND,
                });
                self.suppressed = None;
                self.status_dirty = true;
            }
            None => {
                log::error!("no state directory: the reboot reason is only in this log");
                self.begin_orderly_reboot(now);
            }
        }
    }

    /// Whether the reason of the reboot under way has been written, or
    /// has had its time: either way, the reboot goes on.
    fn reason_recorded(&self, save: u64, until: Instant, now: Instant) -> bool {
        let Some(state) = &self.reboot_state else {
            return true;
        };
        match state.outcome(save) {
            Some(Ok(())) => log::info!("reboot reason recorded in {}", state.path().display()),
            Some(Err(e)) => log::error!(
                "cannot record the reboot reason in {}: {e}; rebooting anyway",
                state.path().display()
            ),
            None if now < until => return false,
            None => crate::critical!(
                "cannot record the reboot reason in {}: no answer within {}; rebooting anyway, the reason is only in this log",
                state.path().display(),
                DurationText(RECORD_BOUND)
            ),
        }
        true
    }

    /// Starts the orderly reboot (the `Command=`, with its deadline).
    fn begin_orderly_reboot(&mut self, now: Instant) {
        let command = match &self.config.reboot.command {
            Some(argv) => {
                log::warn!("orderly reboot: running `{}`", argv.text);
                match repair::start(argv, "reboot", self.config.reboot.orderly_timeout, now) {
                    Ok(running) => Some(running),
                    Err(ending) => {
                        log::error!("orderly reboot: `{}` {ending}", argv.text);
                        None
                    }
                }
            }
            None => None,
        };
        let deadline = if command.is_some() {
            now + self.config.reboot.orderly_timeout
        } else {
            now
        };
        self.rebooting = Some(Rebooting::Orderly { deadline, command });
        self.suppressed = None;
        self.status_dirty = true;
    }

    /// Moves a decided reboot on: when the orderly reboot has not happened
    /// by its deadline, `reboot(2)`; if that fails too, stop feeding.
    fn tend_reboot(&mut self, now: Instant) {
        if let Some(Rebooting::Recording { save, until }) = self.rebooting {
            if !self.reason_recorded(save, until, now) {
                return;
            }
            self.begin_orderly_reboot(now);
        }
        let Some(Rebooting::Orderly { deadline, command }) = &mut self.rebooting else {
            return;
        };
        if let Some(running) = command {
            running.drain_output("reboot", now);
            if let Some(outcome) = running.try_finish(now, 1, "reboot", &mut self.cleanup) {
                log::info!("orderly reboot command {}", outcome.ending);
                *command = None;
            }
        }
        if now < *deadline {
            return;
        }
        if self.config.reboot.forced {
            crate::critical!("the orderly reboot did not happen in time; calling reboot(2)");
            let errno = reboot::force();
            log::error!("reboot(2) failed: {errno}");
        } else {
            log::warn!(
                "the orderly reboot did not happen in time; Forced=no: not calling reboot(2)"
            );
        }
        if self.devices.is_empty() {
            crate::critical!("no hardware watchdog to fall back on; the host stays up");
        } else {
            crate::critical!(
                "stopped feeding the watchdog: the hardware resets the host within {}",
                DurationText(self.config.watchdog.timeout)
            );
        }
        crate::crash::stop_feeding();
        self.rebooting = Some(Rebooting::FeedStopped);
        self.status_dirty = true;
    }

    /// Tracks since when no rule that can reboot has been failing.
    fn update_healthy_since(&mut self, now: Instant) {
        match (self.failing_rebooters > 0, self.healthy_since) {
            (true, Some(_)) => self.healthy_since = None,
            (false, None) => self.healthy_since = Some(now),
            _ => {}
        }
    }

    /// After a healthy period, the reboot count starts again.
    fn tend_budget(&mut self, now: Instant) {
        let Some(since) = self.healthy_since else {
            return;
        };
        if now.saturating_duration_since(since) < self.config.reboot.healthy_uptime
            || self.rebooting.is_some()
        {
            return;
        }
        if let Some(state) = &mut self.reboot_state
            && state.record.count > 0
        {
            let count = std::mem::take(&mut state.record.count);
            state.save(); // the writer logs a failure
            log::info!(
                "healthy for {}: the reboot count ({count}) starts again",
                DurationText(self.config.reboot.healthy_uptime),
            );
            self.suppressed = None;
            self.status_dirty = true;
        }
    }

    /// Rewrites the status file and tells systemd the one-line summary.
    fn publish(&mut self) {
        self.status_dirty = false;
        let mut status = std::mem::take(&mut self.status);
        self.fill_status(&mut status);
        self.notifier
            .status(format_args!("{}", status.systemd_line()));
        let mut summary = FixedBuf::<256>::new();
        let _ = write!(summary, "{}", status.crash_summary());
        crate::crash::publish_summary(summary.as_str());
        let mut buf = std::mem::take(&mut self.status_buf);
        buf.clear();
        status.write_record(&mut buf);
        self.status_file.offer(&buf); // the writer logs a failure
        self.status_buf = buf;
        self.status = status;
    }

    fn rebooting_reason(&self) -> Option<&Reason> {
        self.rebooting.as_ref()?;
        self.reboot_state.as_ref()?.record.last.as_ref()
    }

    /// Brings `status` up to date, in place: a turn that changes health
    /// reuses its texts' allocations.
    fn fill_status(&self, status: &mut Status) {
        let c = &self.config;
        status.version.clear();
        status.version.push_str(env!("CARGO_PKG_VERSION"));
        status.identity.pid = self.identity.pid;
        status.identity.start_time = self.identity.start_time;
        status.identity.boot_id.clone_from(&self.identity.boot_id);
        status.started = self.started_wall;
        status.updated = wall_now();
        status.stopped = self.stopped_wall;
        status::set_text(&mut status.root, c.root.display());
        status.dry_run = self.dry_run();
        status
            .devices
            .resize_with(self.devices.len(), DeviceStatus::default);
        for (to, d) in status.devices.iter_mut().zip(self.devices.iter()) {
            status::set_text(&mut to.path, d.path().display());
            to.identity.clear();
            to.identity.push_str(d.identity());
            to.timeout = d.timeout();
            to.feed_interval = c.watchdog.feed_interval;
            to.feeding = match (&self.rebooting, self.feeding_ok) {
                (Some(Rebooting::FeedStopped), _) => Feeding::Stopped,
                (_, false) => Feeding::Fails,
                _ => Feeding::Fed,
            };
        }
        status.boot_status.clone_from(&self.boot_status);
        status::set_reason(&mut status.last_reboot, self.previous_reboot.as_ref());
        status.budget = status::Budget {
            used: self.reboot_count(),
            of: c.reboot.budget,
            healthy_uptime: c.reboot.healthy_uptime,
        };
        status::set_reason(&mut status.rebooting, self.rebooting_reason());
        status.suppressed.clone_from(&self.suppressed);
        status
            .rules
            .resize_with(self.rules.len(), RuleStatus::with_room);
        for (to, w) in status.rules.iter_mut().zip(&self.rules) {
            to.name.clone_from(&w.rule.name);
            to.health = w.health.into();
            to.since = w.since_wall;
            match w.health {
                Health::Failing(cause) => status::set_text(&mut to.cause, cause),
                _ => to.cause.clear(),
            }
            if w.ladder.state() == ladder::State::Idle {
                to.ladder.clear();
            } else {
                status::set_text(&mut to.ladder, &w.ladder);
            }
            match (&mut to.last_repair, &w.last_repair) {
                (Some(to), Some(r)) => {
                    status::set_text(&mut to.text, r);
                    to.at = r.ended_wall;
                }
                (to, r) => {
                    *to = r.map(|r| LastRepair {
                        text: r.to_string(),
                        at: r.ended_wall,
                    })
                }
            }
        }
    }

    /// Health of each rule by name, for tests.
    pub fn rule_health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.rules.iter().map(|w| (w.rule.name.as_str(), w.health))
    }

    /// How many times any rule's health changed since start.
    pub fn health_changes(&self) -> u64 {
        self.changes
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

/// Whether a rule is failing and its ladder ends in `reboot`: while any
/// is, the host is not in a healthy period for the reboot budget.
fn fails_and_can_reboot(w: &Watched) -> bool {
    w.rule.ladder.finally == Finally::Reboot && matches!(w.health, Health::Failing(_))
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
/// How long a decided reboot waits for its reason to be written.
const RECORD_BOUND: Duration = Duration::from_secs(5);
/// How long an orderly stop waits on the runtime directory: to read
/// `next-stop`, to write the last status.
const STOP_BOUND: Duration = Duration::from_secs(1);

/// Opens the reboot record and reports the reboot heartwatch started before
/// this boot, if there was one. A state directory that cannot be used does
/// not stop the daemon: reboots then go on without a record. One that
/// others can write in is refused.
fn open_reboot_state(
    config: &Config,
) -> Result<(Option<RebootState>, Option<Reason>), DaemonError> {
    let dir = &config.daemon.state_dir;
    let state = match RebootState::open(dir, DIR_BOUND) {
        Ok(state) => state,
        Err(DirError::Refused(why)) => {
            return Err(DaemonError::Io(
                "state directory",
                std::io::Error::other(format!("{}: {why}", dir.display())),
            ));
        }
        Err(e) => {
            log::error!(
                "state directory {}: {e}; reboot reasons and the reboot budget will not be kept",
                dir.display()
            );
            return Ok((None, None));
        }
    };
    let previous = state
        .record
        .last
        .clone()
        .filter(|r| r.boot_id != reboot::boot_id());
    if let Some(r) = &previous {
        log::warn!("the previous boot ended in a reboot by heartwatch: {r}");
    }
    Ok((Some(state), previous))
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
