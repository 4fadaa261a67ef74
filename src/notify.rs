//! systemd notification (`sd_notify` protocol): `READY=1`, `WATCHDOG=1`,
//! `STATUS=`, `RELOADING=1`, `STOPPING=1`. The socket is connected once at
//! start, so a ping is a single `send` with no allocation. Without
//! `NOTIFY_SOCKET` nothing is sent and nothing fails.
//!
//! The socket does not block: a reader that stops reading (a hung service
//! manager) would otherwise stop the loop in `send` once its queue is
//! full, and the feeding with it. What cannot be sent is dropped, and said
//! once until a message goes through again; systemd, if it is the one not
//! reading, judges the missed pings itself.

use crate::text::FixedBuf;
use std::cell::Cell;
use std::fmt::{self, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<UnixDatagram>,
    watchdog: Option<Duration>,
    /// The last send failed (and was logged): the next failures are not.
    failing: Cell<bool>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and
    /// connects. A socket that cannot be reached is logged, not fatal.
    pub fn from_env() -> Notifier {
        let watchdog_for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && watchdog_for_us)
            .map(Duration::from_micros);
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref(), watchdog)
    }

    /// Connects to `socket` (a path, or `@name` for the abstract namespace);
    /// `watchdog` is systemd's `WatchdogSec=`.
    pub fn new(socket: Option<&std::ffi::OsStr>, watchdog: Option<Duration>) -> Notifier {
        let socket = socket.and_then(|path| {
            let connected = connect(path.as_bytes());
            if let Err(e) = &connected {
                log::warn!("systemd notify socket {path:?}: {e}; not notifying");
            }
            connected.ok()
        });
        let watchdog = watchdog.filter(|_| socket.is_some());
        Notifier {
            socket,
            watchdog,
            failing: Cell::new(false),
        }
    }

    /// A notifier that sends nothing.
    pub fn none() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
            failing: Cell::new(false),
        }
    }

    /// How often to send `WATCHDOG=1`: half of systemd's `WatchdogSec=`.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn ready(&self) {
        self.send_str("READY=1");
    }

    pub fn ping(&self) {
        self.send_str("WATCHDOG=1");
    }

    pub fn reloading(&self) {
        self.send_str("RELOADING=1");
    }

    pub fn stopping(&self) {
        self.send_str("STOPPING=1");
    }

    /// `STATUS=` followed by `args`, cut to one short line.
    pub fn status(&self, args: fmt::Arguments) {
        if self.socket.is_none() {
            return;
        }
        let mut line = FixedBuf::<512>::new();
        let _ = line.write_str("STATUS=");
        let _ = line.write_fmt(args);
        self.send(line.as_bytes());
    }

    fn send_str(&self, message: &str) {
        self.send(message.as_bytes());
    }

    fn send(&self, message: &[u8]) {
        let Some(socket) = &self.socket else { return };
        match socket.send(message) {
            Ok(_) => {
                if self.failing.replace(false) {
                    log::info!("systemd notify: messages go through again");
                }
            }
            Err(e) => {
                if !self.failing.replace(true) {
                    log::warn!(
                        "systemd notify: {e}; this message and the next ones that cannot be sent are dropped"
                    );
                }
            }
        }
    }
}

fn connect(path: &[u8]) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    let addr = match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?,
    };
    socket.connect_addr(&addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
