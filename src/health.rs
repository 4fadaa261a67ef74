//! A rule's health and the causes of failure, shared by every kind of check.

use crate::config::DurationText;
use crate::interface::{Carrier, OperState};
use nix::errno::Errno;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Within the start-up grace, or not yet looked at.
    Starting,
    Healthy,
    Failing(Cause),
}

/// Why a rule is failing. Each cause is distinct in logs and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The heartbeat file was not modified for this long.
    Stale {
        unchanged: Duration,
        max_age: Duration,
    },
    /// The heartbeat file does not exist.
    Missing,
    /// The mount under the heartbeat file is gone or broken.
    Unreachable(Errno),
    /// The heartbeat file or the pidfile could not be examined.
    Unreadable(Errno),
    /// Examining the file took longer than `CheckTimeout=`.
    CheckTimedOut(Duration),
    /// The watched process exited (or was never found alive).
    ProcessDead,
    /// The pidfile does not exist.
    PidFileMissing,
    /// The pidfile does not hold a process ID.
    PidFileGarbage,
    /// The pidfile is a FIFO, a device, a directory: it is not opened.
    PidFileNotRegular,
    /// The pidfile names a thread of a process, not a process.
    PidFileNamesThread { tid: i32, process: i32 },
    /// The pidfile names a PID that now belongs to another process.
    PidReused,
    /// The watched process is a zombie.
    Zombie,
    /// No process runs the watched executable.
    NoSuchProcess,
    /// The network interface does not exist.
    InterfaceMissing,
    /// The network interface is not up.
    InterfaceDown {
        operstate: OperState,
        carrier: Carrier,
    },
    /// The interface's receive counter did not move for this long.
    NoPacket {
        unchanged: Duration,
        within: Duration,
    },
    /// A `[System]` threshold held, or its source could not be read.
    System(crate::system::SystemCause),
    /// The `[Command]` check failed.
    Command(crate::command::Failure),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Stale { unchanged, max_age } => write!(
                f,
                "stale: not modified for {} (max age {})",
                DurationText(*unchanged),
                DurationText(*max_age)
            ),
            Cause::Missing => f.write_str("missing: the heartbeat file does not exist"),
            Cause::Unreachable(e) => write!(f, "unreachable: the file's mount failed ({e})"),
            Cause::Unreadable(e) => write!(f, "unreadable: {e}"),
            Cause::CheckTimedOut(t) => write!(
                f,
                "check timed out: stat did not answer within {} (hung mount?)",
                DurationText(*t)
            ),
            Cause::ProcessDead => f.write_str("dead: the process exited"),
            Cause::PidFileMissing => f.write_str("pidfile missing"),
            Cause::PidFileGarbage => f.write_str("pidfile garbage: it holds no process ID"),
            Cause::PidFileNotRegular => {
                f.write_str("pidfile refused: it is not a regular file, so it is not opened")
            }
            Cause::PidFileNamesThread { tid, process } => write!(
                f,
                "pidfile names a thread: {tid} is a thread of process {process}, not a process"
            ),
            Cause::PidReused => {
                f.write_str("dead: the PID now belongs to another process (start time differs)")
            }
            Cause::Zombie => f.write_str("dead: the process is a zombie"),
            Cause::NoSuchProcess => f.write_str("dead: no process runs the executable"),
            Cause::InterfaceMissing => f.write_str("missing: no such network interface"),
            Cause::InterfaceDown { operstate, carrier } => {
                write!(f, "down: operstate {}, {carrier}", operstate.word())
            }
            Cause::NoPacket { unchanged, within } => write!(
                f,
                "no packet received for {} (within {})",
                DurationText(*unchanged),
                DurationText(*within)
            ),
            Cause::System(cause) => cause.fmt(f),
            Cause::Command(failure) => write!(f, "command check failed: {failure}"),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Starting => f.write_str("starting"),
            Health::Healthy => f.write_str("healthy"),
            Health::Failing(_) => f.write_str("failing"),
        }
    }
}

impl Health {
    /// Same kind of health, ignoring how long a stale file (or a silent
    /// interface) has been so.
    pub fn same_kind(&self, other: &Health) -> bool {
        match (self, other) {
            (Health::Failing(Cause::Stale { .. }), Health::Failing(Cause::Stale { .. })) => true,
            (Health::Failing(Cause::NoPacket { .. }), Health::Failing(Cause::NoPacket { .. })) => {
                true
            }
            (Health::Failing(Cause::System(a)), Health::Failing(Cause::System(b))) => {
                a.same_kind(b)
            }
            // A check that keeps failing with the same exit code is one
            // failure, whatever its first line says each run (a time, a
            // count): not a new warning, count and `since` every run.
            (
                Health::Failing(Cause::Command(crate::command::Failure::Exit(a, _))),
                Health::Failing(Cause::Command(crate::command::Failure::Exit(b, _))),
            ) => a == b,
            _ => self == other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Failure, FirstLine};

    fn exit(code: i32, text: &str) -> Health {
        let mut line = FirstLine::default();
        line.take(text.as_bytes());
        Health::Failing(Cause::Command(Failure::Exit(code, line)))
    }

    #[test]
    fn a_check_failing_with_the_same_code_and_another_first_line_is_the_same_failure() {
        assert!(exit(2, "took 1.3s\n").same_kind(&exit(2, "took 1.9s\n")));
        assert!(!exit(2, "x\n").same_kind(&exit(3, "x\n")));
        assert!(!exit(2, "x\n").same_kind(&Health::Healthy));
    }
}
