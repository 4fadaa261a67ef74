//! The command line: parses arguments, runs a command, and maps every error
//! to an exit code in one place.
//!
//! Exit codes: 0 success; 1 a runtime failure (device, I/O, daemon not
//! running for `status`); 2 a usage error; 3 an invalid configuration.

#![deny(unsafe_code)]

use crate::config::{self, Config, DurationText, Watch};
use crate::daemon::{self, DaemonError};
use crate::text::Count;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 3;

const USAGE: &str = "\
usage: heartwatch [--config DIR] COMMAND
commands:
  run [--dry-run] [--syslog] [--verbose]   the daemon (what the systemd unit starts)
  check                                    validate the configuration and rules
  status                                   the running daemon's view of its rules
  beat NAME                                touch heartbeat rule NAME's file
  memtest SIZE [--passes N]                test SIZE of fresh memory (e.g. 64M, 1G)
options:
  --config DIR   configuration root (default /etc/heartwatch)
";

/// Parsed arguments: the command, its words, and the shared flags.
struct Args {
    command: String,
    words: Vec<String>,
    root: PathBuf,
    dry_run: bool,
    syslog: bool,
    verbose: bool,
}

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        words: Vec::new(),
        root: PathBuf::from(config::DEFAULT_ROOT),
        dry_run: false,
        syslog: false,
        verbose: false,
    };
    let mut iter = raw.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let dir = iter.next().ok_or("--config needs a directory")?;
                args.root = PathBuf::from(dir);
            }
            s if s.starts_with("--config=") => args.root = PathBuf::from(&s[9..]),
            "--dry-run" => args.dry_run = true,
            "--syslog" => args.syslog = true,
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => args.command = "help".into(),
            s if s.starts_with('-') && s.len() > 1 && args.command != "memtest" => {
                return Err(format!("unknown option {s}"));
            }
            s if args.command.is_empty() => args.command = s.to_string(),
            s => args.words.push(s.to_string()),
        }
    }
    if args.command.is_empty() {
        return Err("no command given".into());
    }
    Ok(args)
}

pub fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("heartwatch: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let words_wanted = match args.command.as_str() {
        "run" | "check" | "status" => Some(0),
        "beat" => Some(1),
        _ => None,
    };
    if words_wanted.is_some_and(|n| n != args.words.len()) {
        eprintln!(
            "heartwatch: wrong number of arguments for {}\n{USAGE}",
            args.command
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match args.command.as_str() {
        "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "run" => {
            crate::logger::init(args.verbose, args.syslog);
            run(&args)
        }
        "check" => check(&args.root),
        "status" => status(&args.root),
        "beat" => beat(&args.root, &args.words[0]),
        "memtest" => return crate::memtest::command(&args.words),
        #[cfg(feature = "test-hooks")]
        "crash-test" => return crate::crash::crash_test_command(&args.words),
        other => {
            eprintln!("heartwatch: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn run(args: &Args) -> Result<(), u8> {
    let options = daemon::Options {
        dry_run: args.dry_run,
    };
    daemon::run(&args.root, options).map_err(|e| {
        match &e {
            DaemonError::Config(errors) => {
                for error in errors {
                    log::error!("{error}");
                }
                log::error!(
                    "not starting: the configuration has {}",
                    Count::of(errors.len(), "error")
                );
            }
            other => log::error!("{other}"),
        }
        match e {
            DaemonError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    })
}

fn load(root: &Path) -> Result<Config, u8> {
    config::load(root).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!(
            "heartwatch: {}: the configuration has {}",
            root.display(),
            Count::of(errors.len(), "error")
        );
        EXIT_CONFIG
    })
}

fn check(root: &Path) -> Result<(), u8> {
    let config = load(root)?;
    println!("{}: the configuration is valid", root.display());
    let w = &config.watchdog;
    if w.devices.is_empty() {
        println!("watchdog: none (checks only)");
    } else {
        let devices: Vec<String> = w.devices.iter().map(|d| d.display().to_string()).collect();
        println!(
            "watchdog: {}, timeout {}, fed every {}; an orderly stop {}",
            devices.join(" "),
            DurationText(w.timeout),
            DurationText(w.feed_interval),
            if w.keep_armed_on_stop {
                "leaves it armed"
            } else {
                "disarms it (magic close)"
            }
        );
    }
    if !w.devices.is_empty() {
        let (restart, source) = systemd_restart_time();
        if w.timeout <= restart {
            println!(
                "warning: Timeout={} is not longer than systemd needs to notice a hung heartwatch and start it again (about {}: WatchdogSec + TimeoutAbortSec + RestartSec + 1s to start, from {source}); the hardware could reset the host first",
                DurationText(w.timeout),
                DurationText(restart)
            );
        }
    }
    if config.daemon.dry_run {
        println!("dry run: actions are logged, not taken");
    }
    println!("rules: {}", config.rules.len());
    for rule in &config.rules {
        println!(
            "  {}: {}: {}",
            rule.name,
            explain(&rule.watch),
            crate::ladder::explain(&rule.ladder)
        );
    }
    Ok(())
}

/// How long systemd may take from a hung daemon to a fed watchdog again:
/// `WatchdogSec + TimeoutAbortSec + RestartSec` of the installed unit (asked
/// of systemd), or of the shipped unit when systemd cannot say, plus a
/// second to start.
fn systemd_restart_time() -> (std::time::Duration, &'static str) {
    let shipped = std::time::Duration::from_secs(10 + 5 + 2 + 1);
    let asked = std::process::Command::new("systemctl")
        .args([
            "show",
            "--value",
            "-p",
            "WatchdogUSec",
            "-p",
            "TimeoutAbortUSec",
            "-p",
            "RestartUSec",
            "heartwatch.service",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = asked else {
        return (shipped, "the shipped unit");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<Option<std::time::Duration>> = text
        .lines()
        .map(|l| config::parse_duration(&l.replace(' ', "")).ok())
        .collect();
    match values.as_slice() {
        [Some(w), Some(a), Some(r)] if out.status.success() && !w.is_zero() => (
            *w + *a + *r + std::time::Duration::from_secs(1),
            "the installed unit",
        ),
        _ => (shipped, "the shipped unit"),
    }
}

/// What a rule watches, in words.
pub fn explain(watch: &Watch) -> String {
    match watch {
        Watch::Heartbeat(h) => format!(
            "if {} is not modified for {} (looked at every {})",
            h.file.display(),
            DurationText(h.max_age),
            DurationText(h.check_interval)
        ),
        Watch::Process(p) => match &p.target {
            config::ProcessTarget::PidFile(f) => format!(
                "if the process in {} dies (pidfile looked at every {})",
                f.display(),
                DurationText(p.check_interval)
            ),
            config::ProcessTarget::Executable(e) => format!(
                "if no process runs {} (looked for every {})",
                e.display(),
                DurationText(p.check_interval)
            ),
        },
    }
}

fn status(root: &Path) -> Result<(), u8> {
    let runtime = match config::load(root) {
        Ok(config) => config.daemon.runtime_dir,
        Err(_) => {
            eprintln!(
                "heartwatch: {} does not validate; looking in /run/heartwatch",
                root.display()
            );
            PathBuf::from("/run/heartwatch")
        }
    };
    let path = runtime.join("status");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        eprintln!(
            "heartwatch: {}: {e}; is the daemon running?",
            path.display()
        );
        EXIT_FAILURE
    })?;
    print!("{text}");
    let pid = text
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse::<i32>().ok());
    let alive = pid
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    if alive {
        Ok(())
    } else {
        println!("NOT RUNNING: the daemon that wrote this status has exited");
        Err(EXIT_FAILURE)
    }
}

fn beat(root: &Path, name: &str) -> Result<(), u8> {
    let config = load(root)?;
    let rule = config
        .rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            eprintln!("heartwatch: no rule named {name:?} in {}", root.display());
            EXIT_USAGE
        })?;
    let Watch::Heartbeat(spec) = &rule.watch else {
        eprintln!("heartwatch: rule {name:?} is not a heartbeat rule");
        return Err(EXIT_USAGE);
    };
    touch(&spec.file).map_err(|e| {
        eprintln!("heartwatch: {}: {e}", spec.file.display());
        EXIT_FAILURE
    })
}

/// Sets the file's modification time to now, creating it if missing.
pub fn touch(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&file), &now, &now)
        .map_err(std::io::Error::from)
}
