//! Repair commands: an argv run with `execve` in a clean environment
//! (`PATH` fixed, nothing else), stdin from `/dev/null`, stdout and stderr
//! into the log under the rule's name, in a process group of its own. At
//! its timeout the group gets SIGTERM, then SIGKILL. The event loop learns
//! of the exit through a pidfd and of output through a pipe; it never waits.

use crate::config::{Argv, COMMAND_PATH, DurationText};
use crate::process::pidfd_open;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL for a command past its timeout.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// A repair command that is running.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pub pidfd: Option<OwnedFd>,
    pub output: Option<OwnedFd>,
    started: Instant,
    deadline: Instant,
    terminated: bool,
    killed: bool,
    line: Vec<u8>,
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
    /// Dry run: not started on purpose.
    DryRun,
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
            Ending::NotStarted(errno) => write!(
                f,
                "could not be started ({})",
                nix::errno::Errno::from_raw(*errno)
            ),
            Ending::DryRun => f.write_str("not run (dry run)"),
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
pub fn start(argv: &Argv, timeout: Duration, now: Instant) -> Result<Running, Ending> {
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
    // std resets the signal mask and SIGPIPE in the child, so the command
    // does not inherit the daemon's blocked signals.
    let child = Command::new(&argv.program)
        .args(&argv.args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .spawn()
        .map_err(|e| Ending::NotStarted(e.raw_os_error().unwrap_or(0)))?;
    let pidfd = pidfd_open(child.id() as i32).ok();
    Ok(Running {
        child,
        pidfd,
        output: Some(reader),
        started: now,
        deadline: now + timeout,
        terminated: false,
        killed: false,
        line: Vec::with_capacity(1024),
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When `tick` must next be called for the timeout.
    pub fn next_deadline(&self) -> Instant {
        if self.killed {
            self.deadline + KILL_GRACE + Duration::from_secs(3600)
        } else if self.terminated {
            self.deadline + KILL_GRACE
        } else {
            self.deadline
        }
    }

    /// Enforces the timeout: SIGTERM to the group, then SIGKILL.
    pub fn tick(&mut self, now: Instant, rule: &str) {
        let group = Pid::from_raw(self.child.id() as i32);
        if !self.terminated && now >= self.deadline {
            log::warn!(
                "rule {rule}: repair (pid {}) ran past its timeout; sending SIGTERM to its process group",
                self.child.id()
            );
            let _ = killpg(group, Signal::SIGTERM);
            self.terminated = true;
        } else if self.terminated && !self.killed && now >= self.deadline + KILL_GRACE {
            log::warn!("rule {rule}: repair still running; sending SIGKILL to its process group");
            let _ = killpg(group, Signal::SIGKILL);
            self.killed = true;
        }
    }

    /// Reads what the command printed and logs it line by line.
    pub fn drain_output(&mut self, rule: &str) {
        let Some(fd) = self.output.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                // EAGAIN: nothing more for now.
                return;
            }
            if n == 0 {
                self.output = None;
                self.flush_line(rule);
                return;
            }
            for &b in &buf[..n as usize] {
                if b == b'\n' || self.line.len() >= 1000 {
                    self.flush_line(rule);
                    if b == b'\n' {
                        continue;
                    }
                }
                self.line.push(b);
            }
        }
    }

    fn flush_line(&mut self, rule: &str) {
        if !self.line.is_empty() {
            log::info!(
                "rule {rule}: repair output: {}",
                String::from_utf8_lossy(&self.line)
            );
            self.line.clear();
        }
    }

    /// Whether the command has exited; if so, how it ended. A command that
    /// timed out has its whole group killed, to take its children too.
    pub fn try_finish(&mut self, now: Instant, attempt: u32, rule: &str) -> Option<Outcome> {
        let status = self.child.try_wait().ok()??;
        self.drain_output(rule);
        self.flush_line(rule);
        let ending = if self.terminated {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            Ending::TimedOut
        } else if let Some(code) = status.code() {
            Ending::Exited(code)
        } else {
            Ending::Signalled(status.signal().unwrap_or(0))
        };
        Some(Outcome {
            attempt,
            ending,
            duration: now.saturating_duration_since(self.started),
            ended_wall: crate::text::wall_now(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A daemon that stops or reloads does not leave a repair behind.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
