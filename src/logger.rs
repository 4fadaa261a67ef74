//! Logging for the `log` facade without allocation: each record is
//! formatted into a buffer on the stack and written with one `write(2)`.
//! Under systemd (`JOURNAL_STREAM` set) lines carry the `<N>` syslog
//! priority prefix that the journal understands; `--syslog` also sends each
//! line to `/dev/log` for hosts without a journal. The `syslog` crate was
//! not used because it allocates for every message.

use crate::text::FixedBuf;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

/// The target that marks a record as critical (syslog priority 2), for the
/// few messages that must wake someone: a reboot decided or suppressed.
pub const CRITICAL: &str = "critical";

/// Logs at critical priority.
#[macro_export]
macro_rules! critical {
    ($($arg:tt)+) => { log::error!(target: $crate::logger::CRITICAL, $($arg)+) };
}

struct Logger {
    journal: bool,
    syslog: Option<UnixDatagram>,
    pid: u32,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger once; later calls change nothing.
pub fn init(verbose: bool, syslog: bool) {
    let logger = LOGGER.get_or_init(|| Logger {
        journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        syslog: if syslog { open_syslog() } else { None },
        pid: std::process::id(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

fn open_syslog() -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    match socket.connect("/dev/log") {
        Ok(()) => Some(socket),
        Err(e) => {
            eprintln!("heartwatch: warning: cannot reach syslog at /dev/log: {e}");
            None
        }
    }
}

/// The syslog priority of a record.
fn priority(record: &Record) -> u8 {
    if record.target() == CRITICAL {
        return 2;
    }
    match record.level() {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn word(priority: u8) -> &'static str {
    match priority {
        2 => "critical: ",
        3 => "error: ",
        4 => "warning: ",
        _ => "",
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prio = priority(record);
        let mut line = FixedBuf::<2048>::new();
        if self.journal {
            let _ = write!(line, "<{prio}>{}", record.args());
        } else {
            let _ = write!(line, "heartwatch: {}{}", word(prio), record.args());
        }
        let _ = line.write_str("\n");
        crate::sys::fs::write_all(std::io::stderr().as_fd(), line.as_bytes());
        if let Some(socket) = &self.syslog {
            let mut msg = FixedBuf::<2048>::new();
            // Facility daemon (3).
            let _ = write!(
                msg,
                "<{}>heartwatch[{}]: {}",
                24 + prio,
                self.pid,
                record.args()
            );
            let _ = socket.send(msg.as_bytes());
        }
    }

    fn flush(&self) {}
}
