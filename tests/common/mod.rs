//! Helpers for the integration tests: scratch configuration trees and the
//! real `heartwatch` binary run as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_heartwatch");

/// A scratch directory removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("hw-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf/rules.d")).unwrap();
        Scratch { dir }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes heartwatch.conf: no device, no grace, directories in here.
    pub fn write_conf(&self, extra: &str) {
        let text = format!(
            "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\nRuntimeDirectory={}\nStateDirectory={}\n{extra}",
            self.dir.join("run").display(),
            self.dir.join("state").display()
        );
        std::fs::write(self.conf().join("heartwatch.conf"), text).unwrap();
    }

    pub fn write_rule(&self, name: &str, text: &str) -> PathBuf {
        let path = self.conf().join("rules.d").join(format!("{name}.rule"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Waits until the status contains `needle` (the status file is
    /// rewritten just after the log line that announces a change) and
    /// returns it.
    pub fn wait_status(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let status = self.status();
            if status.contains(needle) {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "status never contained {needle:?}:\n{status}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The status for people, as `heartwatch status` prints it (empty when
    /// there is none yet). The status file itself is a record for programs.
    pub fn status(&self) -> String {
        heartwatch(&self.conf(), &["status"]).1
    }

    /// The status file as the daemon wrote it: a record.
    pub fn status_record(&self) -> String {
        std::fs::read_to_string(self.dir.join("run/status")).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `heartwatch ARGS --config DIR`, run to completion.
pub fn heartwatch(conf: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running daemon whose stderr is read line by line.
pub struct Daemon {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Daemon {
    pub fn start(conf: &Path, extra_args: &[&str]) -> Daemon {
        Self::start_with(
            Command::new(BIN)
                .arg("run")
                .args(extra_args)
                .arg("--config")
                .arg(conf),
        )
    }

    pub fn start_with(command: &mut Command) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  daemon| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it with the time waited.
    /// The limit only keeps a broken test from hanging; it asserts nothing
    /// about speed.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Option<(String, Duration)> {
        let start = Instant::now();
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some((line.clone(), Duration::ZERO));
        }
        while let Some(left) = limit.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some((line, start.elapsed()));
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub fn expect(&mut self, needle: &str) -> String {
        match self.wait_for(needle, Duration::from_secs(30)) {
            Some((line, _)) => line,
            None => panic!("no line containing {needle:?}; saw {:#?}", self.seen),
        }
    }

    /// Like `expect`, for a line logged after the first `index` lines.
    pub fn expect_after(&mut self, index: usize, needle: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            self.drain();
            if let Some(line) = self.seen[index.min(self.seen.len())..]
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no line containing {needle:?} after line {index}; saw {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything logged so far (drains what has arrived).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY-free: kill(2) through nix.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::try_from(signal).unwrap(),
        )
        .unwrap();
    }

    /// Waits for the child to exit; the limit only stops a hang.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Touches a file (creating it).
pub fn touch(path: &Path) {
    heartwatch::cli::touch(path).unwrap();
}

/// A heartbeat rule `doomed` whose file never exists and that reboots at once.
pub fn doomed_rule(s: &Scratch) {
    s.write_rule(
        "doomed",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nFinally=reboot\n",
            s.path("never.beat").display()
        ),
    );
}

/// The status's line for rule `name` (names are padded to a column).
pub fn rule_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| {
            l.strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
                == Some(name)
        })
        .unwrap_or_else(|| panic!("no line for rule {name} in\n{status}"))
}

/// Whether something is mounted at `path` in this test's mount namespace.
pub fn mounted_on_host(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

/// `/proc/PID/stat` fields after the command name: state is [0], the
/// process group [2], the session [3].
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_string).collect())
}

/// The CPU time (user and system) process `pid` has used.
#[allow(unsafe_code)]
pub fn cpu_time(pid: i32) -> Duration {
    let fields = stat_fields(pid).expect("the daemon runs");
    // utime and stime are fields 14 and 15 of stat, [11] and [12] here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes a constant and returns a number.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}
