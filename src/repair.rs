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

use crate::config::{Argv, COMMAND_PATH, DurationText};
use crate::sys::proc::pidfd_open;
use crate::sys::signal::pidfd_send_signal;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// A repair command that is running.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pub pidfd: Option<OwnedFd>,
    pub output: Option<OwnedFd>,
    stage: Stage,
    log: OutputLog,
    /// The output is not read before this (see [`OUTPUT_PAUSE`]).
    paused_until: Option<Instant>,
    /// The rule's name, for what `Drop` logs.
    rule: String,
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
    let child = command
        .spawn()
        .map_err(|e| Ending::NotStarted(e.raw_os_error().unwrap_or(0)))?;
    let pidfd = match pidfd_open(child.id() as i32) {
        Ok(fd) => Some(fd),
        // Before Linux 5.3 (said once at start): looked for every 100 ms.
        Err(Errno::ENOSYS) => None,
        Err(e) => {
            log::warn!(
                "rule {rule}: no pidfd for its repair (pid {}): {e}; its exit is looked for every 100 ms",
                child.id()
            );
            None
        }
    };
    Ok(Running {
        child,
        pidfd,
        output: Some(reader),
        stage: Stage::Running,
        log: OutputLog::new(),
        paused_until: None,
        rule: rule.to_string(),
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command's PID, which is also its process group's ID.
    fn leader(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
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
            "rule {}: repair (pid {}) ran past its timeout; sending SIGTERM to its process group",
            self.rule,
            self.child.id()
        );
        self.signal(Signal::SIGTERM, &self.rule);
        self.stage = Stage::Terminated;
    }

    /// The command outlived SIGTERM by [`KILL_GRACE`]: SIGKILL.
    pub fn kill(&mut self) {
        log::warn!(
            "rule {}: repair still running; sending SIGKILL to its process group",
            self.rule
        );
        self.signal(Signal::SIGKILL, &self.rule);
        self.stage = Stage::Killed;
    }

    /// Gives up on a command that SIGKILL did not end: its PID goes to
    /// `cleanup`, which reaps it if it ever dies.
    pub fn abandon(mut self, cleanup: &mut Cleanup) {
        log::error!(
            "rule {}: its repair (pid {}) is still running {} after SIGKILL (in D state? a hung device or mount); giving up on it, the ladder goes on",
            self.rule,
            self.child.id(),
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
                "rule {rule}: cannot send {signal} to its repair (pid {}): {e}",
                self.child.id()
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
                    log::error!("rule {rule}: cannot read its repair's output: {e}");
                    self.output = None;
                    return;
                }
            };
            read += n;
            self.log.take(&buf[..n], rule);
        }
        self.paused_until = Some(now + OUTPUT_PAUSE);
    }

    /// Whether the command has exited; if so, how it ended. The output is
    /// read once more (within the bound) and then no longer: whatever is
    /// still in its group is handed to `cleanup` to be stopped.
    pub fn try_finish(&mut self, now: Instant, cleanup: &mut Cleanup) -> Option<Ending> {
        if test_hook("HEARTWATCH_TEST_UNKILLABLE_REPAIRS") {
            // Its exit is never seen; no pidfd to wake the loop for nothing.
            self.pidfd = None;
            return None;
        }
        let waited = if test_hook("HEARTWATCH_TEST_LOSE_REPAIRS") {
            Err(std::io::Error::from_raw_os_error(libc::ECHILD))
        } else {
            self.child.try_wait()
        };
        let status: Result<ExitStatus, Errno> = match waited {
            Ok(None) => return None,
            Ok(Some(status)) => Ok(status),
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                log::error!(
                    "rule {}: cannot learn how its repair (pid {}) ended: {errno}; the attempt counts as failed",
                    self.rule,
                    self.child.id()
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
        cleanup.after_exit(self.leader(), timed_out, &self.rule, now);
        Some(match status {
            Err(errno) => Ending::Lost(errno as i32),
            Ok(_) if timed_out => Ending::TimedOut,
            Ok(status) => match status.code() {
                Some(code) => Ending::Exited(code),
                None => Ending::Signalled(status.signal().unwrap_or(0)),
            },
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
        match self.child.try_wait() {
            Ok(None) => Some(self.leader()),
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
                "rule {}: killing its repair (pid {}) on the way out",
                self.rule,
                self.child.id()
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

/// The log of one run's output: the line being assembled (its buffer is
/// allocated once, at start, and never grows) and what was not logged.
#[derive(Debug)]
struct OutputLog {
    line: Vec<u8>,
    /// Bytes of the current line, including those cut off.
    line_bytes: u64,
    logged: u32,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The output had not ended when the run did: the rest was not read.
    unread: bool,
}

impl OutputLog {
    fn new() -> OutputLog {
        OutputLog {
            line: Vec::with_capacity(LINE_MAX),
            line_bytes: 0,
            logged: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
            unread: false,
        }
    }

    fn take(&mut self, mut bytes: &[u8], rule: &str) {
        while self.logged < LOG_LINES {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.append(&bytes[..end]);
                    self.end_line(rule);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.append(bytes);
                    return;
                }
            }
        }
        // The budget is spent: count what comes, as fast as it comes.
        self.dropped_bytes += bytes.len() as u64;
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.dropped_lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                self.line_bytes = (bytes.len() - last - 1) as u64;
            }
            None => self.line_bytes += bytes.len() as u64,
        }
    }

    fn append(&mut self, part: &[u8]) {
        let room = LINE_MAX - self.line.len();
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.line_bytes += part.len() as u64;
    }

    /// Ends the line assembled so far: logs it (empty lines are skipped),
    /// or counts it once the budget is spent.
    fn end_line(&mut self, rule: &str) {
        if self.line_bytes == 0 {
            return;
        }
        if self.logged >= LOG_LINES {
            // Its bytes were counted as they came.
            self.dropped_lines += 1;
            self.line_bytes = 0;
            return;
        }
        let cut = self.line_bytes - self.line.len() as u64;
        if cut == 0 {
            log::info!("rule {rule}: repair output: {}", Printable(&self.line));
        } else {
            log::info!(
                "rule {rule}: repair output: {}… (line cut at {LINE_MAX} bytes)",
                Printable(&self.line)
            );
        }
        self.logged += 1;
        self.dropped_bytes += cut;
        self.line.clear();
        self.line_bytes = 0;
    }

    /// The last partial line, then what was not logged, if anything.
    fn finish(&mut self, rule: &str) {
        self.end_line(rule);
        let unread = if self.unread {
            "; the output had not ended when the repair exited, the rest was not read"
        } else {
            ""
        };
        if self.dropped_lines > 0 || self.dropped_bytes > 0 || self.unread {
            log::info!(
                "rule {rule}: repair output: {} more lines not logged, {} bytes dropped in all (at most {LOG_LINES} lines of {LINE_MAX} bytes are logged per run){unread}",
                self.dropped_lines,
                self.dropped_bytes
            );
        }
    }
}

/// Output bytes as text for the log: UTF-8 as it is, control characters
/// (but tab) and bytes that are not UTF-8 as `\xNN`. No allocation.
struct Printable<'a>(&'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let text = chunk.valid();
            let mut from = 0;
            for (i, c) in text.char_indices() {
                if c.is_control() && c != '\t' {
                    f.write_str(&text[from..i])?;
                    let mut bytes = [0u8; 4];
                    for b in c.encode_utf8(&mut bytes).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                    from = i + c.len_utf8();
                }
            }
            f.write_str(&text[from..])?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What finished or abandoned repairs leave for the loop to finish: the
/// commands killed when their rule went away, to be reaped without
/// waiting, and the process groups of finished repairs that still had
/// processes in them, to be killed after their grace.
#[derive(Debug, Default)]
pub struct Cleanup {
    unreaped: Vec<(Pid, String)>,
    groups: Vec<Leftover>,
}

#[derive(Debug)]
struct Leftover {
    group: Pid,
    rule: String,
    kill_at: Instant,
}

impl Cleanup {
    /// A repair whose rule went away (reload): killed now, reaped later.
    pub fn adopt(&mut self, mut running: Running, rule: &str) {
        log::warn!(
            "rule {rule}: the rule changed or was removed while its repair (pid {}) ran; killing it",
            running.pid()
        );
        if let Some(pid) = running.kill_now() {
            self.unreaped.push((pid, rule.to_string()));
        }
    }

    /// A repair exited: processes still in its group are leaked workers.
    /// They get SIGTERM now and SIGKILL after [`KILL_GRACE`] — or SIGKILL
    /// at once when the repair was killed at its timeout (they had their
    /// SIGTERM then). A process that left the group (`setsid`) is not
    /// reached: that is how a repair starts a daemon.
    fn after_exit(&mut self, group: Pid, timed_out: bool, rule: &str, now: Instant) {
        if timed_out {
            if signal_group(group, Signal::SIGKILL, rule) {
                log::warn!("rule {rule}: killed what was left of its repair's process group");
            }
            return;
        }
        if signal_group(group, Signal::SIGTERM, rule) {
            log::warn!(
                "rule {rule}: its repair left processes in its process group {group}; sending them SIGTERM, SIGKILL in {} (a process meant to outlive the repair must leave the group: setsid, or better systemd-run)",
                DurationText(KILL_GRACE)
            );
            self.groups.push(Leftover {
                group,
                rule: rule.to_string(),
                kill_at: now + KILL_GRACE,
            });
        }
    }

    /// When the loop must next call [`Cleanup::tend`].
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let orphans = !orphans().is_empty();
        if self.unreaped.is_empty() && self.groups.is_empty() && !orphans {
            None
        } else {
            Some(now + CLEANUP_LOOK)
        }
    }

    /// Reaps killed commands that have died, kills leftover groups whose
    /// grace is over, forgets groups that emptied.
    pub fn tend(&mut self, now: Instant) {
        self.unreaped.append(&mut orphans());
        self.unreaped.retain(
            |(pid, rule)| match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(_) => false,
                Err(e) => {
                    log::error!("rule {rule}: cannot reap its killed repair (pid {pid}): {e}");
                    false
                }
            },
        );
        self.groups.retain(|g| {
            if now >= g.kill_at {
                if signal_group(g.group, Signal::SIGKILL, &g.rule) {
                    log::warn!(
                        "rule {}: processes its repair left in group {} outlived SIGTERM; sent SIGKILL",
                        g.rule,
                        g.group
                    );
                }
                return false;
            }
            // Signal 0 only asks whether anyone is left; once nobody is,
            // the group's number may be reused, so it is forgotten.
            match killpg(g.group, None) {
                Ok(()) => true,
                Err(Errno::ESRCH) => false,
                Err(_) => true,
            }
        });
    }

    /// The daemon stops: leftover groups are killed now; killed commands
    /// are not waited for (init reaps them once the daemon has exited).
    pub fn stop(&mut self) {
        for g in self.groups.drain(..) {
            signal_group(g.group, Signal::SIGKILL, &g.rule);
        }
        self.unreaped.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_and_bytes_that_are_not_utf8() {
        let text = Printable(b"ok\tfine \x00\x1b[31m caf\xc3\xa9 \xff\xfe end").to_string();
        assert_eq!(text, "ok\tfine \\x00\\x1b[31m café \\xff\\xfe end");
        assert_eq!(Printable("\u{85}".as_bytes()).to_string(), "\\xc2\\x85");
    }

    #[test]
    fn the_output_log_cuts_long_lines_and_counts_past_its_budget() {
        let mut log = OutputLog::new();
        log.take(&[b'x'; 2000], "r");
        log.take(b"\n", "r");
        assert_eq!((log.logged, log.dropped_bytes), (1, 2000 - LINE_MAX as u64));
        log.take(b"\n\n", "r");
        assert_eq!(
            (log.logged, log.dropped_lines),
            (1, 0),
            "empty lines are skipped"
        );
        for _ in 0..LOG_LINES + 10 {
            log.take(b"line\n", "r");
        }
        log.take(b"tail without newline", "r");
        assert_eq!(log.logged, LOG_LINES);
        log.end_line("r");
        assert_eq!(log.dropped_lines, 12);
        assert_eq!(
            log.dropped_bytes,
            2000 - LINE_MAX as u64 + 11 * 5 + "tail without newline".len() as u64
        );
        assert!(log.line.capacity() == LINE_MAX);
    }
}
