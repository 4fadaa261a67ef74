//! The event loop: one `poll` per turn with an absolute monotonic deadline.
//! A turn feeds the watchdog when due, starts the rule checks that are due,
//! publishes state changes, pings systemd, and waits for the next deadline,
//! a signal (signalfd) or a finished check. Everything a turn needs is
//! allocated when the configuration is loaded: a turn allocates nothing.

use crate::atomic::AtomicFile;
use crate::config::{self, Config, ConfigError, DurationText, Rule, Watch};
use crate::device::{self, Device, DeviceError};
use crate::health::{Cause, Health};
use crate::heartbeat::Heartbeat;
use crate::notify::Notifier;
use crate::probe::{Outcome, Prober};
use crate::text::{UtcTime, wall_now};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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
    path: Arc<CString>,
    check: Check,
    health: Health,
    since: Instant,
    since_wall: i64,
    /// Failures are not reported before this (start-up grace).
    grace_end: Instant,
    /// Identifies the rule's one valid entry in the wakeup heap.
    seq: u32,
    next_at: Instant,
    in_flight: bool,
    /// The request in flight has outlived `CheckTimeout=`.
    late: bool,
}

enum Check {
    Heartbeat(Heartbeat),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wakeup {
    at: Instant,
    rule: u32,
    seq: u32,
}

/// The running daemon.
pub struct Daemon {
    config: Config,
    devices: Vec<Device>,
    feeding_ok: bool,
    notifier: Notifier,
    prober: Prober,
    signals: SignalFd,
    rules: Vec<Watched>,
    ids: HashMap<u64, usize>,
    next_id: u64,
    wakeups: BinaryHeap<Reverse<Wakeup>>,
    pollfds: Vec<libc::pollfd>,
    status_file: AtomicFile,
    status_buf: Vec<u8>,
    status_dirty: bool,
    started_wall: i64,
    next_feed: Instant,
    next_ping: Option<Instant>,
    boot_status: String,
    /// Changes of any rule's health since start.
    changes: u64,
}

/// Options from the command line that override the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub dry_run: bool,
}

/// Loads the configuration, starts the daemon and runs it until stopped.
pub fn run(root: &Path, options: Options) -> Result<(), DaemonError> {
    let mut config = config::load(root).map_err(DaemonError::Config)?;
    config.daemon.dry_run |= options.dry_run;
    lock_memory();
    let mut daemon = Daemon::start(config, Notifier::from_env())?;
    while daemon.turn()? == Control::Continue {}
    daemon.stop();
    Ok(())
}

/// Keeps the daemon in RAM under memory pressure.
fn lock_memory() {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        log::warn!("cannot lock memory ({e}); heartwatch may be paged out under memory pressure");
    }
}

impl Daemon {
    /// Opens the devices, feeds them once, starts the checks and tells
    /// systemd it is ready.
    pub fn start(config: Config, notifier: Notifier) -> Result<Daemon, DaemonError> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        // Blocked before any thread starts, so every thread inherits it and
        // the signals arrive only through the signalfd.
        mask.thread_block()
            .map_err(|e| DaemonError::Io("blocking signals", e.into()))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| DaemonError::Io("signalfd", e.into()))?;
        let prober = Prober::new(config.rules.len().max(16))
            .map_err(|e| DaemonError::Io("starting stat workers", e))?;
        let status_file = AtomicFile::new(&config.daemon.runtime_dir, "status")
            .map_err(|e| DaemonError::Io("runtime directory", e))?;

        if config.daemon.dry_run {
            log::info!("dry run: actions are logged, not taken");
        }
        let mut devices = Vec::with_capacity(config.watchdog.devices.len());
        let mut boot_status = String::new();
        for path in &config.watchdog.devices {
            let device =
                Device::open(path, config.watchdog.timeout).map_err(DaemonError::Device)?;
            describe(&device, config.watchdog.feed_interval);
            device
                .check_feed_interval(config.watchdog.feed_interval)
                .map_err(DaemonError::Device)?;
            let sentence = device::describe_boot_status(device.boot_status());
            log::info!("watchdog {}: {sentence}", path.display());
            if !boot_status.is_empty() {
                boot_status.push_str("; ");
            }
            boot_status.push_str(&sentence);
            devices.push(device);
        }
        if devices.is_empty() {
            log::info!("no watchdog device (Device=none): running the checks only");
        }

        let now = Instant::now();
        let mut daemon = Daemon {
            devices,
            feeding_ok: true,
            notifier,
            prober,
            signals,
            rules: Vec::new(),
            ids: HashMap::new(),
            next_id: 1,
            wakeups: BinaryHeap::new(),
            pollfds: Vec::new(),
            status_file,
            status_buf: Vec::new(),
            status_dirty: true,
            started_wall: wall_now(),
            next_feed: now,
            next_ping: None,
            boot_status,
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
        daemon.publish(now);
        daemon.notifier.ready();
        log::info!("ready: {} rules", daemon.rules.len());
        Ok(daemon)
    }

    /// One turn of the loop: wait for the next deadline or event, then do
    /// what is due.
    pub fn turn(&mut self) -> Result<Control, DaemonError> {
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
        let mut control = Control::Continue;
        if self.pollfds[0].revents != 0 {
            control = self.take_signals();
        }
        let now = Instant::now();
        if self.pollfds[1].revents != 0 {
            self.take_answers(now);
        }
        if now >= self.next_feed {
            self.feed(now);
        }
        self.run_due_rules(now);
        if self.status_dirty {
            self.publish(now);
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
    pub fn stop(self) {
        self.notifier.stopping();
        for device in self.devices {
            let path = device.path().display().to_string();
            if self.config.watchdog.keep_armed_on_stop {
                log::info!("watchdog {path}: left armed (KeepArmedOnStop=yes)");
                drop(device);
            } else if !device.has_magic_close() {
                log::warn!(
                    "watchdog {path}: the driver has no magic close; closing it may not disarm it"
                );
                let _ = device.disarm();
            } else {
                match device.disarm() {
                    Ok(()) => log::info!("watchdog {path}: disarmed (magic close)"),
                    Err(e) => log::error!("watchdog {path}: magic close failed: {e}"),
                }
            }
        }
        log::info!("stopped");
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = if self.devices.is_empty() {
            now + Duration::from_secs(3600)
        } else {
            self.next_feed
        };
        if let Some(ping) = self.next_ping {
            deadline = deadline.min(ping);
        }
        if let Some(Reverse(w)) = self.wakeups.peek() {
            deadline = deadline.min(w.at);
        }
        deadline
    }

    fn feed(&mut self, now: Instant) {
        let mut ok = true;
        for device in &mut self.devices {
            if let Err(e) = device.feed() {
                ok = false;
                log::error!("watchdog {}: feeding failed: {e}", device.path().display());
            }
        }
        if ok != self.feeding_ok {
            self.status_dirty = true;
        }
        self.feeding_ok = ok;
        self.next_feed = now + self.config.watchdog.feed_interval;
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
                    "reload refused: {} errors; the running configuration stays",
                    errors.len()
                );
            }
            Ok(mut new) => {
                new.daemon.dry_run |= self.config.daemon.dry_run;
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
                self.install_rules(rules, old, now);
                log::info!("reloaded: {} rules", self.rules.len());
            }
        }
        self.status_dirty = true;
        self.notifier.ready();
    }

    /// Builds the runtime state for `rules`, carrying over what `old` knew
    /// of rules that did not change. Allocation is fine here: this runs at
    /// start and on reload, not in the steady state.
    fn install_rules(&mut self, rules: Vec<Rule>, old: Vec<Watched>, now: Instant) {
        let mut old_by_name: HashMap<String, Watched> =
            old.into_iter().map(|w| (w.rule.name.clone(), w)).collect();
        let grace_end = now + self.config.daemon.startup_grace;
        let mut watched = Vec::with_capacity(rules.len());
        for rule in rules {
            let kept = old_by_name
                .remove(&rule.name)
                .filter(|w| w.rule.watch == rule.watch);
            let entry = match kept {
                Some(mut w) => {
                    w.rule = rule;
                    w
                }
                None => self.new_watched(rule, now, grace_end),
            };
            watched.push(entry);
        }
        for (_, gone) in old_by_name {
            if gone.late {
                // Its worker may answer one day; nobody will claim that answer.
                self.prober.late_answer();
            }
        }
        self.rules = watched;
        self.ids = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id, i))
            .collect();
        self.prober.reserve(self.rules.len());
        self.wakeups = BinaryHeap::with_capacity(self.rules.len() * 3 + 16);
        for (i, w) in self.rules.iter().enumerate() {
            if !w.late {
                self.wakeups.push(Reverse(Wakeup {
                    at: w.next_at,
                    rule: i as u32,
                    seq: w.seq,
                }));
            }
        }
        self.pollfds = vec![
            libc::pollfd {
                fd: self.signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.prober.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let longest_name = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(0);
        let per_rule = 200 + longest_name;
        self.status_buf = Vec::with_capacity(4096 + self.rules.len() * per_rule);
        self.status_dirty = true;
    }

    fn new_watched(&mut self, rule: Rule, now: Instant, grace_end: Instant) -> Watched {
        let id = self.next_id;
        self.next_id += 1;
        let (check, path) = match &rule.watch {
            Watch::Heartbeat(spec) => (Check::Heartbeat(Heartbeat::new(spec, now)), &spec.file),
            Watch::Process(_) => unreachable!("process rules are not watched yet"),
        };
        let path = Arc::new(CString::new(path.as_os_str().as_bytes()).expect("paths have no NUL"));
        Watched {
            id,
            rule,
            path,
            check,
            health: Health::Starting,
            since: now,
            since_wall: wall_now(),
            grace_end,
            seq: 0,
            next_at: now,
            in_flight: false,
            late: false,
        }
    }

    fn schedule(&mut self, index: usize, at: Instant) {
        let w = &mut self.rules[index];
        w.seq = w.seq.wrapping_add(1);
        w.next_at = at;
        let wakeup = Wakeup {
            at,
            rule: index as u32,
            seq: w.seq,
        };
        if self.wakeups.len() == self.wakeups.capacity() {
            // Drop outdated entries in place rather than grow the heap.
            let rules = &self.rules;
            self.wakeups
                .retain(|Reverse(w)| rules[w.rule as usize].seq == w.seq);
        }
        self.wakeups.push(Reverse(wakeup));
    }

    fn run_due_rules(&mut self, now: Instant) {
        while let Some(Reverse(w)) = self.wakeups.peek().copied() {
            if w.at > now {
                break;
            }
            self.wakeups.pop();
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
        self.prober.submit(w.id, &w.path);
        let timeout = self.config.daemon.check_timeout;
        self.schedule(index, now + timeout);
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
            self.on_answer(index, answer.outcome, now);
        }
    }

    fn on_answer(&mut self, index: usize, outcome: Outcome, now: Instant) {
        let w = &mut self.rules[index];
        if !w.in_flight {
            return;
        }
        w.in_flight = false;
        if w.late {
            w.late = false;
            self.prober.late_answer();
        }
        let (verdict, next) = match &mut self.rules[index].check {
            Check::Heartbeat(hb) => hb.observe(outcome, now),
        };
        self.judge(index, verdict, now);
        self.schedule(index, next);
    }

    /// Records a check's verdict; logs and publishes a change of health.
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
        match health {
            Health::Failing(cause) => log::warn!("rule {name}: failing: {cause}"),
            Health::Healthy if matches!(was, Health::Failing(_)) => log::info!(
                "rule {name}: healthy again after {}",
                DurationText(Duration::from_millis(
                    now.saturating_duration_since(w.since).as_millis() as u64
                ))
            ),
            Health::Healthy => log::info!("rule {name}: healthy"),
            Health::Starting => {}
        }
        w.health = health;
        w.since = now;
        w.since_wall = wall_now();
        self.status_dirty = true;
        self.changes += 1;
    }

    /// Rewrites the status file and tells systemd the one-line summary.
    fn publish(&mut self, now: Instant) {
        self.status_dirty = false;
        let mut counts = [0usize; 3];
        let mut first_failing: Option<&str> = None;
        for w in &self.rules {
            match w.health {
                Health::Starting => counts[0] += 1,
                Health::Healthy => counts[1] += 1,
                Health::Failing(_) => {
                    counts[2] += 1;
                    first_failing.get_or_insert(&w.rule.name);
                }
            }
        }
        let [starting, healthy, failing] = counts;
        match first_failing {
            Some(name) => self.notifier.status(format_args!(
                "{} rules: {healthy} healthy, {failing} failing ({name}…), {starting} starting",
                self.rules.len()
            )),
            None => self.notifier.status(format_args!(
                "{} rules: {healthy} healthy, {failing} failing, {starting} starting",
                self.rules.len()
            )),
        }
        let mut buf = std::mem::take(&mut self.status_buf);
        buf.clear();
        let _ = self.render_status(&mut buf, counts, now);
        if let Err(e) = self.status_file.write(&buf) {
            log::error!("cannot write {}: {e}", self.status_file.path().display());
        }
        self.status_buf = buf;
    }

    fn render_status(
        &self,
        out: &mut Vec<u8>,
        [starting, healthy, failing]: [usize; 3],
        _now: Instant,
    ) -> std::io::Result<()> {
        let c = &self.config;
        writeln!(
            out,
            "heartwatch {} pid {} running since {}, updated {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            UtcTime(self.started_wall),
            UtcTime(wall_now())
        )?;
        writeln!(
            out,
            "configuration {}{}",
            c.root.display(),
            if c.daemon.dry_run {
                " (dry run: no action is taken)"
            } else {
                ""
            }
        )?;
        if self.devices.is_empty() {
            writeln!(out, "watchdog: none (Device=none)")?;
        }
        for d in &self.devices {
            writeln!(
                out,
                "watchdog {} \"{}\": timeout {}, fed every {}{}",
                d.path().display(),
                d.identity(),
                DurationText(d.timeout()),
                DurationText(c.watchdog.feed_interval),
                if self.feeding_ok {
                    ""
                } else {
                    ", FEEDING FAILS"
                }
            )?;
        }
        if !self.boot_status.is_empty() {
            writeln!(out, "boot: {}", self.boot_status)?;
        }
        writeln!(
            out,
            "rules: {} ({healthy} healthy, {failing} failing, {starting} starting)",
            self.rules.len()
        )?;
        let width = self
            .rules
            .iter()
            .map(|w| w.rule.name.len())
            .max()
            .unwrap_or(4);
        for w in &self.rules {
            write!(
                out,
                "  {:<width$}  {:<8}  since {}",
                w.rule.name,
                w.health,
                UtcTime(w.since_wall),
            )?;
            if let Health::Failing(cause) = w.health {
                write!(out, "  {cause}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// Health of each rule by name, for tests and `status`.
    pub fn rule_health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.rules.iter().map(|w| (w.rule.name.as_str(), w.health))
    }

    /// How many times any rule's health changed since start.
    pub fn health_changes(&self) -> u64 {
        self.changes
    }

    pub fn status_path(&self) -> PathBuf {
        self.status_file.path().to_path_buf()
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
