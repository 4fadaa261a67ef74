//! The command line: parses arguments, runs a command, and maps every error
//! to an exit code in one place.
//!
//! Exit codes: 0 success; 1 a runtime failure (device, I/O, daemon not
//! running for `status`); 2 a usage error; 3 an invalid configuration. A
//! reader that closes the output early (`heartwatch check | head -1`)
//! changes nothing: the rest of the output is dropped, the code stays.

use crate::config::{self, Config, DurationText, Watch};
use crate::daemon::{self, DaemonError};
use crate::identity;
use crate::sys::regular::{self, FdPath, NotOpened, Symlink};
use crate::text::Count;
use std::ffi::CString;
use std::fmt;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 3;

const USAGE: &str = "\
usage: heartwatch [--config DIR] COMMAND
commands:
  run [--dry-run] [--syslog] [--verbose]   the daemon (what the systemd unit starts)
  check                                    validate the configuration and rules
  status                                   the running daemon's view of its rules
  beat [--] NAME                           touch heartbeat rule NAME's file
  memtest SIZE [--passes N]                test SIZE of fresh memory (e.g. 64M, 1G)
options:
  --config DIR   configuration root (default /etc/heartwatch)
  --             what follows are words, not options (a rule named -x)
";

/// Says something on standard error. When that is closed too there is
/// nowhere left to say it, so a failed write is dropped.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes one line of a command's report (see [`Report`]).
macro_rules! say {
    ($report:expr, $($arg:tt)*) => {
        $report.line(format_args!($($arg)*))
    };
}

/// Where writing standard output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Writing,
    /// The reader went away (`| head -1`): the rest is dropped quietly.
    ReaderGone,
    /// Another write error, already said on standard error.
    Failed,
}

/// Standard output for a command's report. A closed pipe ends the report
/// quietly and leaves the command's exit code as it is; any other write
/// error (a full disk) is said once and fails the command.
pub(crate) struct Report {
    out: std::io::StdoutLock<'static>,
    state: Output,
}

impl Report {
    pub(crate) fn new() -> Report {
        Report {
            out: std::io::stdout().lock(),
            state: Output::Writing,
        }
    }

    pub(crate) fn line(&mut self, args: fmt::Arguments) {
        self.text(&format!("{args}\n"));
    }

    pub(crate) fn text(&mut self, text: &str) {
        if self.state == Output::Writing {
            let written = self.out.write_all(text.as_bytes());
            self.record(written);
        }
    }

    /// Shows a line written so far in part (a progress report).
    pub(crate) fn flush(&mut self) {
        if self.state == Output::Writing {
            let flushed = self.out.flush();
            self.record(flushed);
        }
    }

    fn record(&mut self, written: std::io::Result<()>) {
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.state = Output::ReaderGone;
            }
            Err(e) => {
                complain!("heartwatch: cannot write standard output: {e}");
                self.state = Output::Failed;
            }
        }
    }

    /// The command's result, failed if its output could not be written.
    pub(crate) fn finish(mut self, result: Result<(), u8>) -> Result<(), u8> {
        self.flush();
        match self.state {
            Output::Failed => result.and(Err(EXIT_FAILURE)),
            Output::Writing | Output::ReaderGone => result,
        }
    }
}

/// Parsed arguments: the command, its words, and the shared flags.
struct Args {
    command: String,
    words: Vec<String>,
    root: PathBuf,
    dry_run: bool,
    syslog: bool,
    verbose: bool,
}

/// `--config`'s directory made absolute (against the working directory,
/// without following symlinks), so that what the daemon writes and what
/// `check` and `status` print names it wherever they are read.
fn absolute(dir: &str) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir))
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
    let mut only_words = false;
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            s if only_words && args.command.is_empty() => args.command = s.to_string(),
            s if only_words => args.words.push(s.to_string()),
            "--" => only_words = true,
            "--config" | "-c" => {
                let dir = iter.next().ok_or("--config needs a directory")?;
                args.root = absolute(dir);
            }
            s if s.starts_with("--config=") => args.root = absolute(&s[9..]),
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
    // Nothing is assumed of what the parent left (process.rs).
    if let Err(e) = crate::process::default_sigchld() {
        complain!("heartwatch: cannot reset SIGCHLD to its default: {e}");
    }
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            complain!("heartwatch: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let words_wanted = match args.command.as_str() {
        "run" | "check" | "status" => Some(0),
        "beat" => Some(1),
        _ => None,
    };
    if words_wanted.is_some_and(|n| n != args.words.len()) {
        complain!(
            "heartwatch: wrong number of arguments for {}\n{USAGE}",
            args.command
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match args.command.as_str() {
        "help" => {
            let mut report = Report::new();
            report.text(USAGE);
            report.finish(Ok(()))
        }
        "run" => {
            crate::logger::init(args.verbose, args.syslog);
            run(&args)
        }
        "check" => check(&args.root),
        "status" => status(&args.root),
        "beat" => beat(&args.root, &args.words[0]),
        "memtest" => {
            use crate::memtest::Failure;
            let mut report = Report::new();
            let result = crate::memtest::command(&args.words, &mut |piece| {
                report.text(piece);
                report.flush();
            });
            let result = result.map_err(|failure| match failure {
                Failure::Usage(_) => {
                    complain!("{failure}");
                    EXIT_USAGE
                }
                Failure::Map { .. } => {
                    complain!("{failure}");
                    EXIT_FAILURE
                }
                Failure::Errors(_) => EXIT_FAILURE,
            });
            report.finish(result)
        }
        #[cfg(feature = "test-hooks")]
        "crash-test" => return crate::crash::crash_test_command(&args.words),
        other => {
            complain!("heartwatch: unknown command {other:?}\n{USAGE}");
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
        crate::device::report_abandoned();
        match e {
            DaemonError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    })
}

fn load(root: &Path) -> Result<Config, u8> {
    config::load(root).map_err(|errors| {
        for e in &errors {
            complain!("{e}");
        }
        complain!(
            "heartwatch: {}: the configuration has {}",
            root.display(),
            Count::of(errors.len(), "error")
        );
        EXIT_CONFIG
    })
}

fn check(root: &Path) -> Result<(), u8> {
    let config = load(root)?;
    let mut report = Report::new();
    say!(report, "{}: the configuration is valid", root.display());
    let w = &config.watchdog;
    if w.devices.is_empty() {
        say!(report, "watchdog: none (checks only)");
    } else {
        let devices: Vec<String> = w.devices.iter().map(|d| d.display().to_string()).collect();
        say!(
            report,
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
            say!(
                report,
                "warning: Timeout={} is not longer than systemd needs to notice a hung heartwatch and start it again (about {}: WatchdogSec + TimeoutAbortSec + RestartSec + 1s to start, from {source}); the hardware could reset the host first",
                DurationText(w.timeout),
                DurationText(restart)
            );
        }
    }
    if config.daemon.dry_run {
        say!(report, "dry run: actions are logged, not taken");
    }
    for warning in pidfile_warnings(&config) {
        say!(report, "warning: {warning}");
    }
    say!(report, "rules: {}", config.rules.len());
    for rule in &config.rules {
        say!(
            report,
            "  {}: {}: {}",
            rule.name,
            explain(&rule.watch),
            crate::ladder::explain(&rule.ladder)
        );
    }
    report.finish(Ok(()))
}

/// How long `check` waits for the process rules' pidfiles to be read.
const PIDFILE_READ_BOUND: Duration = Duration::from_secs(2);

/// What the process rules' pidfiles name today that no rule should watch:
/// init, which cannot die without the host going down, or a thread, which
/// is not a process; or a pidfile that is not a regular file. A pidfile
/// missing now is not worth a word (the service may not run yet). They
/// are read with a bound (see `process::look_at_pidfiles`): a pidfile on a
/// hung mount must not hang `check`, the unit's `ExecStartPre=`.
fn pidfile_warnings(config: &Config) -> Vec<String> {
    use crate::health::Cause;
    let pidfiles: Vec<(&str, &Path, std::ffi::CString)> = config
        .rules
        .iter()
        .filter_map(|rule| match &rule.watch {
            Watch::Process(p) => match &p.target {
                config::ProcessTarget::PidFile(path) => {
                    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
                    Some((rule.name.as_str(), path.as_path(), c_path))
                }
                config::ProcessTarget::Executable(_) => None,
            },
            Watch::Heartbeat(_) => None,
        })
        .collect();
    if pidfiles.is_empty() {
        return Vec::new();
    }
    let paths: Vec<std::ffi::CString> = pidfiles.iter().map(|(_, _, c)| c.clone()).collect();
    let looks = match crate::process::look_at_pidfiles(&paths, PIDFILE_READ_BOUND) {
        Ok(looks) => looks,
        Err(why) => return vec![format!("the process rules' pidfiles were not read: {why}")],
    };
    pidfiles
        .iter()
        .zip(looks)
        .filter_map(|((name, path, _), look)| {
            let shown = path.display();
            match look {
                Ok((1, _)) => Some(format!(
                    "rule {name}: {shown} names PID 1 (init): the rule can never fire, as init cannot die without the host going down; name the service's own pidfile"
                )),
                Ok((pid, Some(process))) if process != pid => Some(format!(
                    "rule {name}: {shown} names thread {pid} of process {process}, not a process; the rule fails until it names a process"
                )),
                Ok(_) => None,
                Err(Cause::PidFileNotRegular) => Some(format!(
                    "rule {name}: {shown} is not a regular file; the daemon does not open it, and the rule fails"
                )),
                Err(_) => None,
            }
        })
        .collect()
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
    let path = runtime_dir(root).join("status");
    let text = read_regular(&path, Symlink::Refuse).map_err(|e| {
        complain!(
            "heartwatch: {}: {}; is the daemon running?",
            path.display(),
            e.explain("heartwatch status reads only a regular file")
        );
        EXIT_FAILURE
    })?;
    let verdict = judge(&text);
    let mut report = Report::new();
    let result = match &verdict {
        Verdict::Running => {
            report.text(&text);
            Ok(())
        }
        Verdict::Unverified(why) => {
            complain!("heartwatch: {why}");
            report.text(&text);
            Ok(())
        }
        Verdict::NotRunning(why) => {
            say!(report, "NOT RUNNING: {why}; its last status follows");
            report.text(&text);
            say!(report, "NOT RUNNING: {why}");
            Err(EXIT_FAILURE)
        }
    };
    report.finish(result)
}

/// Where the daemon keeps its status: `RuntimeDirectory=` of
/// heartwatch.conf. Only that file is read for it, so that `status` finds
/// a running daemon whatever its rules were edited into since it loaded
/// them; what does not validate is said on standard error.
fn runtime_dir(root: &Path) -> PathBuf {
    let default = PathBuf::from("/run/heartwatch");
    let conf = root.join("heartwatch.conf");
    let text = match read_regular(&conf, Symlink::Follow) {
        Ok(text) => text,
        Err(e) => {
            complain!(
                "heartwatch: {}: {}; looking in {}",
                conf.display(),
                e.explain("heartwatch reads only a regular file"),
                default.display()
            );
            return default;
        }
    };
    match config::parse_settings(&conf, &text) {
        Ok((_, daemon, _)) => {
            if let Err(errors) = config::load(root) {
                complain!(
                    "heartwatch: note: the configuration in {} no longer validates ({}; see heartwatch check); the daemon goes on with what it loaded",
                    root.display(),
                    Count::of(errors.len(), "error")
                );
            }
            daemon.runtime_dir
        }
        Err(errors) => {
            let dir = runtime_dir_of(&text);
            complain!(
                "heartwatch: {} does not validate ({}; see heartwatch check); looking in {}{}",
                conf.display(),
                Count::of(errors.len(), "error"),
                dir.as_ref().unwrap_or(&default).display(),
                if dir.is_some() {
                    ", its RuntimeDirectory="
                } else {
                    ", the default"
                }
            );
            dir.unwrap_or(default)
        }
    }
}

/// `RuntimeDirectory=` of a heartwatch.conf that does not validate, if it
/// still reads as settings and the value is an absolute path.
fn runtime_dir_of(text: &str) -> Option<PathBuf> {
    let sections = crate::ini::parse(text).ok()?;
    let entry = sections
        .iter()
        .filter(|s| s.name == "Daemon")
        .flat_map(|s| &s.entries)
        .find(|e| e.key == "RuntimeDirectory")?;
    let path = PathBuf::from(&entry.value);
    path.is_absolute().then_some(path)
}

/// What the status file says of its writer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Running,
    /// Probably running, but that could not be made sure of.
    Unverified(String),
    NotRunning(String),
}

/// Whether the daemon that wrote `text` still runs. The first line says
/// `heartwatch VERSION pid PID running|stopped ...`; the identity line
/// (see [`identity::line`]) says which process PID was.
fn judge(text: &str) -> Verdict {
    let first: Vec<&str> = text.lines().next().unwrap_or("").split(' ').collect();
    let pid = match first.as_slice() {
        ["heartwatch", _, "pid", pid, ..] => pid.parse::<i32>().ok().filter(|p| *p > 0),
        _ => None,
    };
    let Some(pid) = pid else {
        return Verdict::NotRunning(
            "the status file does not name the daemon that wrote it".into(),
        );
    };
    if first.get(4) == Some(&"stopped") {
        return Verdict::NotRunning(format!("heartwatch stopped (an orderly stop of pid {pid})"));
    }
    let exists = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    let gone = format!(
        "the daemon that wrote this status (pid {pid}) has exited without an orderly stop (it crashed, failed or was killed: see the journal)"
    );
    let Some(identity::Written {
        pid: id_pid,
        start,
        boot,
    }) = identity::read(text)
    else {
        // Written by a daemon that did not say its identity.
        return match exists() {
            Ok(()) | Err(nix::errno::Errno::EPERM) => Verdict::Unverified(format!(
                "the status file does not say the daemon's start time; assuming pid {pid}, which exists, is the daemon"
            )),
            Err(_) => Verdict::NotRunning(gone),
        };
    };
    if id_pid.parse() != Ok(pid) {
        return Verdict::NotRunning("the status file names two different daemons".into());
    }
    let this_boot = identity::boot_id();
    if boot != this_boot && boot != "unknown" && this_boot != "unknown" {
        return Verdict::NotRunning(format!(
            "the daemon that wrote this status (pid {pid}) ran before the host last booted"
        ));
    }
    let unverified = |why: String| match exists() {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Verdict::Unverified(format!(
            "{why}; assuming pid {pid}, which exists, is the daemon"
        )),
        Err(_) => Verdict::NotRunning(gone.clone()),
    };
    if start == "unknown" {
        return unverified("the daemon could not say its start time".into());
    }
    match crate::process::start_time(pid) {
        Some(now) if start.parse() == Ok(now) => Verdict::Running,
        Some(_) => Verdict::NotRunning(format!("{gone}; pid {pid} now belongs to another process")),
        None => unverified(format!(
            "cannot read /proc/{pid}/stat to make sure it is still the daemon (is /proc mounted with hidepid=?)"
        )),
    }
}

fn beat(root: &Path, name: &str) -> Result<(), u8> {
    let config = load(root)?;
    let rule = config
        .rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            complain!("heartwatch: no rule named {name:?} in {}", root.display());
            EXIT_USAGE
        })?;
    let Watch::Heartbeat(spec) = &rule.watch else {
        complain!("heartwatch: rule {name:?} is not a heartbeat rule");
        return Err(EXIT_USAGE);
    };
    touch(&spec.file).map_err(|e| {
        complain!(
            "heartwatch: {}: {}",
            spec.file.display(),
            e.explain("heartwatch beat touches only regular files")
        );
        EXIT_FAILURE
    })
}

/// Why the command line did not open a file.
#[derive(Debug)]
pub enum OpenError {
    /// Something other than a regular file is in the file's place: what,
    /// in words (`a symlink`, `a FIFO`, ...). It was not opened.
    NotRegular(&'static str),
    Io(std::io::Error),
}

impl OpenError {
    /// The error, followed by `rule` where the file was not regular.
    fn explain(&self, rule: &str) -> String {
        match self {
            OpenError::NotRegular(kind) => format!("is {kind}; {rule}"),
            OpenError::Io(e) => e.to_string(),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            OpenError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the regular file `path` with `O_PATH`, nothing else: see
/// [`regular::open`].
fn open_regular(path: &Path, symlink: Symlink) -> Result<OwnedFd, OpenError> {
    // A NUL in the name fails as std's own open says it.
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        OpenError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "file name contained an unexpected NUL byte",
        ))
    })?;
    match regular::open(&path, symlink) {
        Ok((fd, _)) => Ok(fd),
        Err(NotOpened::NotRegular(kind)) => Err(OpenError::NotRegular(kind)),
        Err(NotOpened::Os(e)) => Err(OpenError::Io(e.into())),
    }
}

/// Reads a regular file; never opens anything else.
fn read_regular(path: &Path, symlink: Symlink) -> Result<String, OpenError> {
    let fd = open_regular(path, symlink)?;
    std::fs::read_to_string(FdPath::of(&fd).as_path()).map_err(OpenError::Io)
}

/// Sets a heartbeat file's modification time to now, creating it if
/// missing. Only a regular file is touched: never a final symlink (its
/// target could be any file, created or touched as root), never a FIFO, a
/// device (opening a watchdog arms it) or a directory.
pub fn touch(path: &Path) -> Result<(), OpenError> {
    let fd = match open_regular(path, Symlink::Refuse) {
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            match create_new(path) {
                Ok(()) => return Ok(()),
                // Made by someone else since the look: touch what is there.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    open_regular(path, Symlink::Refuse)?
                }
                Err(e) => return Err(OpenError::Io(e)),
            }
        }
        other => other?,
    };
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    nix::sys::stat::utimensat(
        None,
        FdPath::of(&fd).as_path(),
        &now,
        &now,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .map_err(|e| OpenError::Io(e.into()))
}

/// Creates a missing heartbeat file; fails if anything, even a dangling
/// symlink, appeared in its place (`O_EXCL` never follows a link).
fn create_new(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(raw: &[&str]) -> Result<(String, Vec<String>), String> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        parse_args(&raw).map(|a| (a.command, a.words))
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        assert_eq!(
            words(&["beat", "--", "-x"]),
            Ok(("beat".into(), vec!["-x".into()]))
        );
        assert_eq!(
            words(&["--", "beat", "-x"]),
            Ok(("beat".into(), vec!["-x".into()]))
        );
        assert_eq!(
            words(&["beat", "--", "--config"]),
            Ok(("beat".into(), vec!["--config".into()]))
        );
        assert!(words(&["beat", "-x"]).is_err());
        assert!(words(&["--"]).is_err());
    }

    fn status_text(first: &str, identity: &str) -> String {
        format!("{first}\n{identity}\nrules: 0\n")
    }

    #[test]
    fn the_status_writer_is_known_by_pid_start_time_and_boot() {
        let me = std::process::id();
        let start = crate::process::start_time(me as i32).unwrap();
        let boot = identity::boot_id();
        let first = format!("heartwatch 0.1.0 pid {me} running since x, updated y");
        let judged = |identity: String| judge(&status_text(&first, &identity));
        assert_eq!(judged(identity::line()), Verdict::Running);
        assert_eq!(
            judged(format!("identity: pid {me} start {start} boot {boot}")),
            Verdict::Running
        );
        let Verdict::NotRunning(why) = judged(format!(
            "identity: pid {me} start {} boot {boot}",
            start + 1
        )) else {
            panic!("another start time is another process");
        };
        assert!(why.contains("now belongs to another process"), "{why}");
        let Verdict::NotRunning(why) = judged(format!(
            "identity: pid {me} start {start} boot 00000000-0000-0000-0000-000000000000"
        )) else {
            panic!("another boot is another process");
        };
        assert!(why.contains("before the host last booted"), "{why}");
        assert!(matches!(
            judged(format!("identity: pid 1 start {start} boot {boot}")),
            Verdict::NotRunning(_)
        ));
        // Without an identity line, the PID's existence is all there is.
        assert!(matches!(judged(String::new()), Verdict::Unverified(_)));
        let stopped =
            format!("heartwatch 0.1.0 pid {me} stopped at x (an orderly stop), ran since y");
        let Verdict::NotRunning(why) = judge(&status_text(&stopped, &identity::line())) else {
            panic!("a stopped daemon is not running");
        };
        assert!(why.starts_with("heartwatch stopped"), "{why}");
        for garbage in [
            "",
            "\n",
            "heartwatch",
            "heartwatch 0.1.0 pid -3 running",
            "\u{0}\u{ff}",
        ] {
            assert!(
                matches!(judge(garbage), Verdict::NotRunning(_)),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn runtime_dir_of_a_bad_conf_is_read_if_it_still_reads_as_settings() {
        assert_eq!(
            runtime_dir_of("[Daemon]\nBogus=1\nRuntimeDirectory=/run/x\n"),
            Some(PathBuf::from("/run/x"))
        );
        assert_eq!(runtime_dir_of("[Daemon]\nRuntimeDirectory=run/x\n"), None);
        assert_eq!(
            runtime_dir_of("[Watchdog]\nRuntimeDirectory=/run/x\n"),
            None
        );
        assert_eq!(runtime_dir_of("RuntimeDirectory\n"), None);
    }
}
