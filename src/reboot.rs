//! The reboot path and its budget. The reason is written atomically to the
//! state directory before anything is done, so the next boot can say why.
//! The budget counts consecutive reboots heartwatch started that were not
//! followed by a healthy period; past it, heartwatch does not reboot: a
//! broken rule cannot put a host into a reboot loop.

use crate::atomic::{Dir, DirError, Writer};
use crate::config::DurationText;
use crate::text::UtcTime;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Why heartwatch rebooted (or wanted to).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reason {
    pub rule: String,
    pub cause: String,
    pub step: String,
    /// Host uptime (CLOCK_BOOTTIME) when the reboot was decided.
    pub uptime: Duration,
    /// Wall-clock seconds then (display only).
    pub wall: i64,
    /// `/proc/sys/kernel/random/boot_id` of the boot that decided it.
    pub boot_id: String,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule {}: {} ({}), decided at {} after {:.0} s of uptime",
            self.rule,
            self.cause,
            self.step,
            UtcTime(self.wall),
            self.uptime.as_secs_f64()
        )
    }
}

/// What the state directory remembers across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Consecutive reboots decided without a healthy period since.
    pub count: u32,
    pub last: Option<Reason>,
}

/// The state file `reboot` in the state directory, written by a thread of
/// its own (see [`Writer`]) so that a state directory that does not answer
/// never holds up the loop. `record` is what it held at start.
pub struct RebootState {
    file: Writer,
    pub record: Record,
}

impl RebootState {
    /// Opens the state directory and reads what an earlier run left there,
    /// waiting at most `bound`. A damaged file, or anything but a regular
    /// file at its name, is logged and taken as empty: a reboot must never
    /// be blocked by the file that records it, and the budget then errs on
    /// the side of rebooting at most `Budget` more times. A directory that
    /// does not answer within `bound` is taken the same way, and logged at
    /// critical priority; what is written later reaches it if it answers.
    pub fn open(dir: &Path, bound: Duration) -> Result<RebootState, DirError> {
        let (file, opened) = Writer::start(dir, NAME, read_record).map_err(DirError::Io)?;
        let record = match opened.recv_timeout(bound) {
            Ok(read) => read?,
            Err(_) => {
                crate::critical!(
                    "state directory {}: no answer within {}; the reboot count starts at 0 and reboot reasons are recorded only if it answers",
                    dir.display(),
                    DurationText(bound)
                );
                Record::default()
            }
        };
        Ok(RebootState { file, record })
    }

    /// Hands the record to the writer; the number tells [`RebootState::outcome`]
    /// which write to look for. Errors are logged by the writer.
    pub fn save(&self, record: &Record) -> u64 {
        self.file.offer(render(record).as_bytes())
    }

    /// Whether save number `n` has been written, and how it went.
    pub fn outcome(&self, n: u64) -> Option<Result<(), nix::errno::Errno>> {
        self.file.outcome(n)
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

const NAME: &str = "reboot";

/// Reads the record on the writer's thread, where a slow disk can wait.
fn read_record(dir: &Dir) -> Record {
    let path = dir.path().join(NAME);
    let mut buf = Vec::new();
    let text = match dir.read(c"reboot", &mut buf) {
        Ok(Some(())) => String::from_utf8_lossy(&buf),
        Ok(None) => return Record::default(),
        Err(e) => {
            log::error!("{}: {e}; starting the reboot count afresh", path.display());
            return Record::default();
        }
    };
    parse(&text).unwrap_or_else(|e| {
        log::error!("{}: {e}; starting the reboot count afresh", path.display());
        Record::default()
    })
}

pub fn render(record: &Record) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "count={}", record.count);
    if let Some(r) = &record.last {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        let _ = writeln!(out, "rule={}", clean(&r.rule));
        let _ = writeln!(out, "cause={}", clean(&r.cause));
        let _ = writeln!(out, "step={}", clean(&r.step));
        let _ = writeln!(out, "uptime_ms={}", r.uptime.as_millis());
        let _ = writeln!(out, "wall={}", r.wall);
        let _ = writeln!(out, "boot_id={}", clean(&r.boot_id));
    }
    out
}

pub fn parse(text: &str) -> Result<Record, String> {
    let mut record = Record::default();
    let mut reason = Reason::default();
    let mut has_reason = false;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not key=value", i + 1))?;
        let bad = || format!("line {}: bad value for {key}", i + 1);
        match key {
            "count" => record.count = value.parse().map_err(|_| bad())?,
            "rule" => reason.rule = value.to_string(),
            "cause" => reason.cause = value.to_string(),
            "step" => reason.step = value.to_string(),
            "uptime_ms" => reason.uptime = Duration::from_millis(value.parse().map_err(|_| bad())?),
            "wall" => reason.wall = value.parse().map_err(|_| bad())?,
            "boot_id" => reason.boot_id = value.to_string(),
            _ => return Err(format!("line {}: unknown key {key}", i + 1)),
        }
        has_reason |= key != "count";
    }
    if has_reason {
        record.last = Some(reason);
    }
    Ok(record)
}

/// This boot's identity, to tell whether a recorded reboot has happened.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Host uptime, including time suspended (CLOCK_BOOTTIME).
pub fn uptime() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

/// The last resort: flush the disks and reset the machine.
pub fn force() -> nix::errno::Errno {
    nix::unistd::sync();
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip() {
        let record = Record {
            count: 2,
            last: Some(Reason {
                rule: "nginx".into(),
                cause: "dead: the process exited\nsecond line".into(),
                step: "after 3 repair attempts".into(),
                uptime: Duration::from_millis(123_456),
                wall: 1_795_000_000,
                boot_id: "abc".into(),
            }),
        };
        let back = parse(&render(&record)).unwrap();
        assert_eq!(back.count, 2);
        let reason = back.last.unwrap();
        assert_eq!(reason.cause, "dead: the process exited second line");
        assert_eq!(reason.uptime, Duration::from_millis(123_456));
        assert!(parse("count=x\n").is_err());
        assert!(parse("junk\n").is_err());
        assert_eq!(parse("").unwrap(), Record::default());
    }
}
