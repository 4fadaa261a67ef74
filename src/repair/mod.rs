//! Repair commands: an argv run with `execve` in a clean environment
//! (`PATH` fixed, nothing else), stdin from `/dev/null`, stdout and stderr
//! into the log under the rule's name, in a process group of its own, with
//! an empty signal mask and default signal dispositions. At its timeout the
//! group gets SIGTERM, then SIGKILL. The event loop learns of the exit
//! through a pidfd and of output through a pipe; it never waits.
//!
//! Output is bounded, so that a chatty repair never holds the loop or
//! floods the journal: one turn reads at most [`READ_PER_TURN`] bytes of
//! it, and then leaves it for [`OUTPUT_PAUSE`]; a line is cut at
//! [`LINE_MAX`] bytes; one run logs at most [`LOG_LINES`] lines. What is
//! not logged is counted, and the count logged when the run ends. A
//! repair is judged when it exits, not when its output ends: a grandchild
//! may hold the pipe for ever.
//!
//! What a repair leaves behind when it exits: processes still in its
//! process group are leaked workers and get SIGTERM, then SIGKILL after
//! [`KILL_GRACE`] ([`Cleanup`]). A process that left the group on purpose
//! (`setsid`, a daemon) is left alone.

mod cleanup;
mod output;

pub use cleanup::Cleanup;
use output::OutputLog;

use crate::command::FirstLine;
use crate::config::{Argv, COMMAND_PATH, DurationText};
use crate::sys::proc::pidfd_open;
use crate::sys::signal::pidfd_send_signal;
use crate::sys::spawn::{Prepared, spawn};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL for a command past its timeout, and
/// for the processes a repair leaves in its group.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// The most bytes of one repair's output read in one turn of the loop
/// (the default capacity of a pipe): a flood is read over many turns, and
/// every turn still feeds, pings and judges.
pub const READ_PER_TURN: usize = 64 * 1024;

/// The longest line logged, in bytes; the rest of a longer line is
/// dropped and counted.
pub const LINE_MAX: usize = 400;

/// How many lines of one run are logged; further lines are counted.
pub const LOG_LINES: u32 = 100;

/// After a turn read [`READ_PER_TURN`] bytes of a repair's output, the
/// loop leaves it alone this long: a flood is read at 6.4 MB/s at most,
/// the full pipe slows the writer down, and the loop does not spin a CPU
/// on it.
pub const OUTPUT_PAUSE: Duration = Duration::from_millis(10);

/// How often the loop looks at repairs it killed but has not reaped, and
/// at the groups of finished repairs that still had processes in them.
const CLEANUP_LOOK: Duration = Duration::from_millis(100);

/// A repair command that is running, or a command check's run (which is
/// started again and again in the same `Running`, see [`Running::idle`]).
#[derive(Debug)]
pub struct Running {
    /// Also its process group's ID.
    pid: Pid,
    pub pidfd: Option<OwnedFd>,
    pub output: Option<OwnedFd>,
    stage: Stage,
    log: OutputLog,
    /// The output is not read before this (see [`OUTPUT_PAUSE`]).
    paused_until: Option<Instant>,
    /// The rule's name, for what `Drop` logs.
    rule: String,
    /// What runs, for messages: "repair" or "check".
    what: &'static str,
    /// The first line of its output (what a failing check's cause quotes).
    first: FirstLine,
    /// Where a run started by `rerun` says why its exec failed
    /// (`sys::spawn::exec_error`), read once it has exited.
    exec_errors: Option<OwnedFd>,
}

/// Where a running command stands with its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Within its timeout.
    Running,
    /// Past its timeout: SIGTERM sent.
    Terminated,
    /// SIGKILL sent.
    Killed,
    /// Reaped (or lost): nothing left to signal through its PID.
    Ended,
}

/// How a finished repair ended, for the log and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signalled(i32),
    /// Killed at its timeout.
    TimedOut,
    /// Could not be started at all (fork or exec failed).
    NotStarted(i32),
    /// Its end could not be learned (`waitpid` failed with this errno).
    Lost(i32),
    /// Dry run: not started on purpose.
    DryRun,
    /// Still running this many seconds after SIGKILL (in D state on a hung
    /// device, say): given up on, its PID left to [`Cleanup`] to reap.
    Unkillable(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub attempt: u32,
    pub ending: Ending,
    pub duration: Duration,
    /// Wall-clock seconds when it ended (display only).
    pub ended_wall: i64,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(0) => f.write_str("succeeded (exit 0)"),
            Ending::Exited(code) => write!(f, "failed (exit {code})"),
            Ending::Signalled(sig) => write!(f, "failed (killed by signal {sig})"),
            Ending::TimedOut => f.write_str("timed out and was killed"),
            Ending::NotStarted(errno) => {
                write!(f, "could not be started ({})", Errno::from_raw(*errno))
            }
            Ending::Lost(errno) => write!(
                f,
                "failed (how it ended is unknown: {})",
                Errno::from_raw(*errno)
            ),
            Ending::DryRun => f.write_str("not run (dry run)"),
            Ending::Unkillable(secs) => write!(
                f,
                "could not be stopped: still running {secs} s after SIGKILL; left to the reaper"
            ),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} {} after {}",
            self.attempt,
            self.ending,
            DurationText(Duration::from_millis(self.duration.as_millis() as u64))
        )
    }
}

/// Starts `argv`. A failure to start is returned as an `Ending`, so the
/// ladder treats it as a failed attempt.
pub fn start(argv: &Argv, rule: &str) -> Result<Running, Ending> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Ending::NotStarted(e as i32))?;
    nix::fcntl::fcntl(
        reader.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| Ending::NotStarted(e as i32))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| Ending::NotStarted(e.raw_os_error().unwrap_or(0)))?;
    let mut command = Command::new(&argv.program);
    command
        .args(&argv.args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    crate::sys::signal::reset_before_exec(&mut command);
    // The handle is dropped at once (it holds no descriptor here): the
    // loop waits for the PID itself, as for a check (`Running::rerun`).
    let child = command
        .spawn()
        .map_err(|e| Ending::NotStarted(e.raw_os_error().unwrap_or(0)))?;
    let pid = Pid::from_raw(child.id() as i32);
    let mut running = Running::idle(rule, "repair");
    running.began(pid, reader);
    Ok(running)
}

/// What a command check's runs need, made once at load: the argv as the
/// kernel takes it, with the environment a repair gets.
pub fn prepare(argv: &Argv) -> Option<Prepared> {
    let args: Vec<&[u8]> = argv.args.iter().map(|a| a.as_bytes()).collect();
    let path = format!("PATH={COMMAND_PATH}");
    Prepared::new(
        argv.program.as_os_str().as_bytes(),
        &args,
        &[path.as_bytes()],
    )
}

impl Running {
    /// A `Running` with nothing running yet, for a command check to start
    /// runs in (`rerun`): what a run needs is allocated here, once.
    pub fn idle(rule: &str, what: &'static str) -> Running {
        Running {
            pid: Pid::from_raw(0),
            pidfd: None,
            output: None,
            stage: Stage::Ended,
            log: OutputLog::new(what),
            paused_until: None,
            rule: rule.to_string(),
            what,
            first: FirstLine::default(),
            exec_errors: None,
        }
    }

    /// Starts a new run of `command` in this `Running`, whose last run
    /// has ended. Allocates nothing (see `sys::spawn`).
    pub fn rerun(&mut self, command: &Prepared) -> Result<(), Ending> {
        debug_assert_eq!(self.stage, Stage::Ended);
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Ending::NotStarted(e as i32))?;
        nix::fcntl::fcntl(
            reader.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| Ending::NotStarted(e as i32))?;
        let (pid, exec_errors) =
            spawn(command, writer.as_fd()).map_err(|e| Ending::NotStarted(e as i32))?;
        self.log.reset();
        self.first = FirstLine::default();
        self.exec_errors = Some(exec_errors);
        self.began(pid, reader);
        Ok(())
    }

    /// The command `pid` started, its output on `reader`.
    fn began(&mut self, pid: Pid, reader: OwnedFd) {
        self.pid = pid;
        self.pidfd = match pidfd_open(pid.as_raw()) {
            Ok(fd) => Some(fd),
            // Before Linux 5.3 (said once at start): looked for every 100 ms.
            Err(Errno::ENOSYS) => None,
            Err(e) => {
                log::warn!(
                    "rule {}: no pidfd for its {} (pid {pid}): {e}; its exit is looked for every 100 ms",
                    self.rule,
                    self.what
                );
                None
            }
        };
        self.output = Some(reader);
        self.stage = Stage::Running;
        self.paused_until = None;
    }

    /// The first line of the last run's output.
    pub fn first_line(&self) -> FirstLine {
        self.first
    }

    /// Whether a run is under way (not yet reaped or given up on).
    pub fn is_running(&self) -> bool {
        self.stage != Stage::Ended
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// The command's PID, which is also its process group's ID.
    fn leader(&self) -> Pid {
        self.pid
    }

    /// When `resume_output` must next be called, if the output is paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// The rule the command repairs, for messages.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The output descriptor, when the loop should poll it: open, and not
    /// paused after a full turn's read.
    pub fn output_to_poll(&self) -> Option<&OwnedFd> {
        self.output.as_ref().filter(|_| self.paused_until.is_none())
    }

    /// Ends a pause of the output once it is over; true when it did (the
    /// descriptor goes back into the poll set).
    pub fn resume_output(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(at) if now >= at => {
                self.paused_until = None;
                true
            }
            _ => false,
        }
    }

    /// The command ran past its timeout: SIGTERM to its group. The
    /// command itself is signalled too, in case it left its group.
    pub fn terminate(&mut self) {
        log::warn!(
            "rule {}: {} (pid {}) ran past its timeout; sending SIGTERM to its process group",
            self.rule,
            self.what,
            self.pid
        );
        self.signal(Signal::SIGTERM, &self.rule);
        self.stage = Stage::Terminated;
    }

    /// The command outlived SIGTERM by [`KILL_GRACE`]: SIGKILL.
    pub fn kill(&mut self) {
        log::warn!(
            "rule {}: {} still running; sending SIGKILL to its process group",
            self.rule,
            self.what
        );
        self.signal(Signal::SIGKILL, &self.rule);
        self.stage = Stage::Killed;
    }

    /// Gives up on a command that SIGKILL did not end: its PID goes to
    /// `cleanup`, which reaps it if it ever dies.
    pub fn abandon(&mut self, cleanup: &mut Cleanup) {
        log::error!(
            "rule {}: its {} (pid {}) is still running {} after SIGKILL (in D state? a hung device or mount); giving up on it, the rule goes on",
            self.rule,
            self.what,
            self.pid,
            DurationText(KILL_GRACE)
        );
        self.stage = Stage::Ended;
        self.output = None;
        self.log.finish(&self.rule);
        cleanup.unreaped.push((self.leader(), self.rule.clone()));
    }

    /// Sends `signal` to the command's group and to the command itself
    /// (through its pidfd where there is one, so never to a reused PID).
    fn signal(&self, signal: Signal, rule: &str) {
        signal_group(self.leader(), signal, rule);
        if self.stage == Stage::Ended {
            return;
        }
        let result = match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd.as_fd(), signal),
            None => kill(self.leader(), signal),
        };
        match result {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => log::error!(
                "rule {rule}: cannot send {signal} to its {} (pid {}): {e}",
                self.what,
                self.pid
            ),
        }
    }

    /// Reads what the command printed, at most [`READ_PER_TURN`] bytes,
    /// and logs it line by line within the run's budget. When there may be
    /// more, the output pauses for [`OUTPUT_PAUSE`].
    pub fn drain_output(&mut self, now: Instant) {
        let rule = self.rule.as_str();
        let Some(fd) = self.output.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut read = 0;
        while read < READ_PER_TURN {
            let n = match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    self.output = None;
                    self.log.end_line(rule);
                    return;
                }
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    log::error!("rule {rule}: cannot read its {}'s output: {e}", self.what);
                    self.output = None;
                    return;
                }
            };
            read += n;
            self.first.take(&buf[..n]);
            self.log.take(&buf[..n], rule);
        }
        self.paused_until = Some(now + OUTPUT_PAUSE);
    }

    /// Whether the command has exited; if so, how it ended. The output is
    /// read once more (within the bound) and then no longer: whatever is
    /// still in its group is handed to `cleanup` to be stopped.
    pub fn try_finish(&mut self, now: Instant, cleanup: &mut Cleanup) -> Option<Ending> {
        if self.stage == Stage::Ended {
            // Reaped or given up on: its PID may be another process's now.
            return None;
        }
        if test_hook("HEARTWATCH_TEST_UNKILLABLE_REPAIRS") {
            // Its exit is never seen; no pidfd to wake the loop for nothing.
            self.pidfd = None;
            return None;
        }
        let waited = if test_hook("HEARTWATCH_TEST_LOSE_REPAIRS") {
            Err(Errno::ECHILD)
        } else {
            waitpid(self.pid, Some(WaitPidFlag::WNOHANG))
        };
        // A run of `rerun` whose exec failed exits at once, having said why.
        let exec_failed = match waited {
            Ok(WaitStatus::Exited(..)) => self
                .exec_errors
                .take()
                .and_then(|fd| crate::sys::spawn::exec_error(fd.as_fd())),
            _ => None,
        };
        let status: Result<Ending, Errno> = match waited {
            Ok(WaitStatus::Exited(..)) if let Some(errno) = exec_failed => {
                Ok(Ending::NotStarted(errno as i32))
            }
            Ok(WaitStatus::Exited(_, code)) => Ok(Ending::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Ending::Signalled(sig as i32)),
            Ok(_) => return None,
            Err(errno) => {
                log::error!(
                    "rule {}: cannot learn how its {} (pid {}) ended: {errno}; it counts as failed",
                    self.rule,
                    self.what,
                    self.pid
                );
                Err(errno)
            }
        };
        let timed_out = self.stage != Stage::Running;
        self.stage = Stage::Ended;
        self.drain_output(now);
        if self.output.take().is_some() {
            // A process it left still holds the pipe (or it was a flood):
            // what is still in it is not read.
            self.log.unread = true;
        }
        self.log.finish(&self.rule);
        cleanup.after_exit(self.leader(), timed_out, &self.rule, self.what, now);
        Some(match status {
            Err(errno) => Ending::Lost(errno as i32),
            Ok(_) if timed_out => Ending::TimedOut,
            Ok(ending) => ending,
        })
    }

    /// Kills the command and its group at once, without waiting. Returns
    /// its PID when it still has to be reaped.
    fn kill_now(&mut self) -> Option<Pid> {
        if self.stage == Stage::Ended {
            return None;
        }
        self.signal(Signal::SIGKILL, &self.rule);
        self.stage = Stage::Ended;
        self.log.finish(&self.rule);
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => Some(self.leader()),
            _ => None,
        }
    }
}

impl Drop for Running {
    /// The last resort for a command still running when its `Running` is
    /// dropped (the loop hands it to [`Cleanup::adopt`] when a rule goes
    /// or changes, so this is the daemon stopping): it is killed, never
    /// waited for (a wait on the loop thread could block for as long as
    /// the command wants), and its PID is left to the next
    /// [`Cleanup::tend`] to reap, so it never stays a zombie. When the
    /// daemon exits instead, init reaps it.
    fn drop(&mut self) {
        if self.stage != Stage::Ended {
            log::warn!(
                "rule {}: killing its {} (pid {}) on the way out",
                self.rule,
                self.what,
                self.pid
            );
        }
        if let Some(pid) = self.kill_now() {
            let rule = std::mem::take(&mut self.rule);
            orphans().push((pid, rule));
        }
    }
}

/// Killed commands whose `Running` was dropped, for [`Cleanup::tend`] to
/// reap (see `Running`'s Drop).
static ORPHANS: Mutex<Vec<(Pid, String)>> = Mutex::new(Vec::new());

fn orphans() -> std::sync::MutexGuard<'static, Vec<(Pid, String)>> {
    // Only the loop thread takes it, and nothing panics while holding it.
    ORPHANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tests only (feature `test-hooks`): whether the fault injection `name`
/// is set in the environment. `HEARTWATCH_TEST_LOSE_REPAIRS`: waiting for
/// a repair fails with ECHILD, as if something else had reaped it.
/// `HEARTWATCH_TEST_UNKILLABLE_REPAIRS`: a repair's exit is never seen,
/// as if SIGKILL could not end it.
fn test_hook(name: &str) -> bool {
    #[cfg(feature = "test-hooks")]
    {
        std::env::var_os(name).is_some()
    }
    #[cfg(not(feature = "test-hooks"))]
    {
        let _ = name;
        false
    }
}

/// Sends `signal` to process group `group`. Returns whether anyone was
/// there; a group that is gone (ESRCH) is the normal case, anything else
/// is logged.
fn signal_group(group: Pid, signal: Signal, rule: &str) -> bool {
    match killpg(group, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            log::error!("rule {rule}: cannot send {signal} to process group {group}: {e}");
            false
        }
    }
}
