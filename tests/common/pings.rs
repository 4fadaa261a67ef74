//! systemd's side of the notify socket, for tests that must show that the
//! loop kept its rhythm: every `WATCHDOG=1` is timed on a thread while the
//! test does its worst, and the longest gap is what systemd would judge.
//! Included by several test crates, each using part of it.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Pings {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Pings {
    /// Binds the socket at `path`; give the daemon `NOTIFY_SOCKET=path`.
    pub fn listen(path: &Path) -> Pings {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        log.lock().unwrap().push((Instant::now(), msg));
                    }
                }
            })
        };
        Pings {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// Times of the `WATCHDOG=1` pings received after `since`.
    pub fn watchdog_since(&self, since: Instant) -> Vec<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, m)| *t >= since && m.starts_with("WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    }

    /// How long each reload took, from `RELOADING=1` to the `READY=1`
    /// that follows it.
    pub fn reload_durations(&self) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        let mut out = Vec::new();
        let mut began = None;
        for (t, m) in log.iter() {
            if m.starts_with("RELOADING=1") {
                began = Some(*t);
            } else if m.starts_with("READY=1")
                && let Some(b) = began.take()
            {
                out.push(*t - b);
            }
        }
        out
    }

    /// The number of pings after `since`, and the longest silence from
    /// `since` to `until` (leading and trailing silences included).
    pub fn rhythm(&self, since: Instant, until: Instant) -> (usize, Duration) {
        let times = self.watchdog_since(since);
        let times: Vec<Instant> = times.into_iter().filter(|t| *t <= until).collect();
        let mut last = since;
        let mut worst = Duration::ZERO;
        for &t in &times {
            worst = worst.max(t - last);
            last = t;
        }
        worst = worst.max(until - last);
        (times.len(), worst)
    }
}

impl Drop for Pings {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// systemd's WatchdogSec= for these tests: heartwatch pings at half of it,
/// and a silence this long would have systemd kill and restart it.
pub const WATCHDOG: Duration = Duration::from_secs(2);

/// `heartwatch run` with systemd's notify socket at `pings` and
/// [`WATCHDOG`].
pub fn heartwatch_with_pings(conf: &Path, pings: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(crate::common::BIN);
    c.args(["run", "--config"])
        .arg(conf)
        .env("NOTIFY_SOCKET", pings)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    c
}

/// Systemd heard at least two pings since `since`, and never went
/// [`WATCHDOG`] without one (it would have killed heartwatch).
pub fn assert_rhythm(pings: &Pings, since: Instant, what: &str) {
    let (count, worst) = pings.rhythm(since, Instant::now());
    eprintln!(
        "{what}: {count} pings over {:?}, longest silence {worst:?}",
        since.elapsed()
    );
    assert!(count >= 2, "{what}: systemd heard {count} pings");
    assert!(
        worst < WATCHDOG,
        "{what}: no ping for {worst:?}; systemd would have killed heartwatch"
    );
}

/// The loop went on pinging since `since`: at least two pings, and no
/// silence as long as the whole stretch (a frozen loop gives none at all).
/// The longest silence is reported, not held to systemd's bound, for
/// stretches where a loaded machine and a debug build can stall a test
/// for a second or two without the daemon being at fault.
pub fn assert_pinged(pings: &Pings, since: Instant, what: &str) {
    let until = Instant::now();
    let (count, worst) = pings.rhythm(since, until);
    let stretch = until - since;
    eprintln!("{what}: {count} pings over {stretch:?}, longest silence {worst:?} (measured)");
    assert!(count >= 2, "{what}: systemd heard {count} pings");
    assert!(
        worst < stretch.mul_f64(0.75),
        "{what}: no ping for {worst:?} of {stretch:?}"
    );
}
