//! Starting and stopping: the devices opened, fed once and described,
//! the state directory read, the crash handler installed; at the end, the
//! devices disarmed (or left armed) and the last status written.

use super::{DIR_BOUND, Daemon, STOP_BOUND, feed, handled_signals, now, watches};
use crate::atomic::DirError;
use crate::config::{Config, ConfigError, DurationText};
use crate::device::DeviceError;
use crate::device::{self, Device, Devices};
use crate::engine::{self, Engine, Options, World};
use crate::history::{self, History, HistoryFile};
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::process;
use crate::reboot::{self, RebootState};
use crate::repair;
use crate::rundir::{self, NextStop};
use crate::text::Count;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::HashMap;
use std::fmt;
use std::os::fd::AsFd;
use std::time::Duration;

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
        // The history's read and the reboot record's wait together, within
        // one bound.
        let history_deadline = std::time::Instant::now() + DIR_BOUND;
        let history_opening = HistoryFile::start(&config.daemon.state_dir);
        let reboot_state = open_reboot_state(&config)?;
        let (history_file, history) = open_history(&config, history_opening, history_deadline)?;

        device::wait_for_nodes(&config.watchdog.devices, device::NODE_WAIT, signals.as_fd());
        // From the first open on, every return with an error disarms the
        // devices opened so far (`Devices` does, when dropped), until the
        // start is complete.
        let mut devices = Devices::with_capacity(config.watchdog.devices.len());
        let mut boot_status = String::new();
        let mut watchdog_reset = None;
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
            if watchdog_reset.is_none()
                && device
                    .boot_status()
                    .is_some_and(|s| s & device::WDIOF_CARDRESET != 0)
            {
                watchdog_reset = Some(format!("watchdog {}: {sentence}", path.display()));
            }
            if !boot_status.is_empty() {
                boot_status.push_str("; ");
            }
            boot_status.push_str(&sentence);
        }
        if devices.is_empty() {
            log::info!("no watchdog device (Device=none): running the checks only");
        }
        install_crash_handler(&config, &devices);
        let mut metrics = match &config.daemon.textfile_dir {
            Some(dir) => Some(
                crate::metrics::Metrics::start(dir, &devices, std::time::Instant::now())
                    .map_err(|e| DaemonError::Io("starting the metrics writer", e))?,
            ),
            None => None,
        };
        if !feed(&mut devices) {
            return Err(DaemonError::Io(
                "first feed of the watchdog",
                std::io::Error::other("the device refused the keepalive"),
            ));
        }
        if let (false, Some(metrics)) = (devices.is_empty(), &mut metrics) {
            metrics.fed(crate::text::wall_now());
        }
        let world = World {
            devices: devices
                .iter()
                .map(|d| engine::DeviceInfo {
                    path: d.path().to_path_buf(),
                    identity: d.identity().to_string(),
                    timeout: d.timeout(),
                    boot_status: d.boot_status(),
                })
                .collect(),
            boot_status,
            record: reboot_state.as_ref().map(|s| s.record.clone()),
            boot_id: reboot::boot_id(),
            uptime: reboot::uptime(),
            use_pidfd,
            ping_interval: notifier.ping_interval(),
            identity: crate::identity::this_process(),
            seed: crate::ladder::seed(),
            history,
            watchdog_reset,
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
            running: Vec::new(),
            checking: Vec::new(),
            pollfds: Vec::new(),
            owners: Vec::new(),
            poll_dirty: true,
            cleanup: repair::Cleanup::default(),
            status_file,
            reboot_state,
            history_file,
            pending_save: None,
            orderly: None,
            offered: None,
            metrics,
            watches: watches::Watches::new(),
            notes: Vec::new(),
            events_slot: None,
            events_resume: None,
        };
        daemon.installed();
        daemon.tell_notes(now());
        daemon.publish();
        daemon.devices.take_over_feeding();
        daemon.notifier.ready();
        log::info!("ready: {}", Count::of(daemon.engine.rule_count(), "rule"));
        // What loading touched and the loop does not use goes back.
        crate::sys::memory::release_unused_memory();
        Ok(daemon)
    }

    /// The orderly stop: tell systemd, disarm unless told to stay armed.
    pub fn stop(mut self) {
        self.notifier.stopping();
        let keep_armed_on_stop = self.engine.config().watchdog.keep_armed_on_stop;
        let next_stop = rundir::read_next_stop(&self.status_file, STOP_BOUND, keep_armed_on_stop);
        if self.engine.rebooting() && !self.engine.reboot_committed() {
            // Nothing is recorded before the drain ends: a device left
            // armed here would reset the host with no reason written and
            // no budget counted. Stopping cancels the reboot instead.
            log::warn!(
                "stopping during the drain before a reboot: the reboot is cancelled (nothing recorded, no budget used)"
            );
        }
        let keep_armed = if self.engine.reboot_committed() {
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
            slot.check = None;
        }
        self.running.clear();
        self.checking.clear();
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
        if let Some(metrics) = &self.metrics
            && !metrics.flush(STOP_BOUND)
        {
            log::warn!(
                "the last metrics were not written within {}",
                DurationText(STOP_BOUND)
            );
        }
        if let Some(history) = &self.history_file
            && !history.flush(std::time::Instant::now() + STOP_BOUND)
        {
            log::error!(
                "{}: the reboot history was not written within {}",
                history.path().display(),
                DurationText(STOP_BOUND)
            );
        }
        if !self.status_file.flush(STOP_BOUND) {
            log::error!(
                "{}: the last status was not written within {}",
                self.status_file.path().display(),
                DurationText(STOP_BOUND)
            );
        }
        log::info!("stopped");
    }
}

/// Keeps the daemon in RAM under memory pressure: every page it uses is
/// locked as soon as it is first touched (`MCL_ONFAULT`), so the steady
/// state never waits on a page-in. Pages never touched — most of libc, say —
/// are not pulled in just to be locked, which keeps the footprint small;
/// code used for the first time (the reboot path) may be read from disk.
/// One malloc arena instead of one per thread: the stat workers allocate
/// nothing, and each arena would reserve 64 MiB of locked address space.
pub(super) fn lock_memory() {
    if let Err(e) = crate::sys::memory::lock_all() {
        log::warn!("cannot lock memory ({e}); heartwatch may be paged out under memory pressure");
    }
}

/// Hands the crash handler what it needs: the devices to feed once and
/// leave armed, and the memory test's bound (a quarter of the hardware
/// timeout, so the test ends well before the device would fire).
pub(super) fn install_crash_handler(config: &Config, devices: &Devices) {
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

/// Opens the reboot history. Like the reboot record, a state directory
/// that cannot be used does not stop the daemon (the history is then not
/// kept); one that others can write in is refused.
fn open_history(
    config: &Config,
    opening: std::io::Result<history::Opening>,
    deadline: std::time::Instant,
) -> Result<(Option<HistoryFile>, History), DaemonError> {
    let dir = &config.daemon.state_dir;
    let opened = opening
        .map_err(DirError::Io)
        .and_then(|o| o.opened(deadline));
    match opened {
        Ok((file, history)) => Ok((Some(file), history)),
        Err(DirError::Refused(why)) => Err(DaemonError::Io(
            "state directory",
            std::io::Error::other(format!("{}: {why}", dir.display())),
        )),
        Err(e) => {
            log::error!(
                "state directory {}: {e}; the reboot history will not be kept",
                dir.display()
            );
            Ok((None, History::default()))
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
