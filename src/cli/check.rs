//! `heartwatch check`: validates the configuration and rules and says what
//! each rule watches and how it escalates; warns of what would make the
//! watchdog or a rule misbehave.

use crate::config::{self, Config, DurationText, Watch};
use crate::report::{Report, complain, say};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

pub(super) fn check(root: &Path) -> Result<(), u8> {
    let config = super::load(root)?;
    let missing = crate::system::missing_sources(&config.rules, Path::new("/proc"));
    if !missing.is_empty() {
        for e in &missing {
            complain!("{e}");
        }
        complain!(
            "heartwatch: {}: this host cannot serve {}",
            root.display(),
            crate::text::Count::of(missing.len(), "rule")
        );
        return Err(crate::report::EXIT_CONFIG);
    }
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
    let interfaces = config.rules.iter().filter_map(|r| match &r.watch {
        Watch::Interface(spec) => crate::interface::absent_warning(&r.name, spec),
        _ => None,
    });
    for warning in pidfile_warnings(&config).into_iter().chain(interfaces) {
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
    super::check_watches::report_heartbeat_modes(&config, &mut report);
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
            Watch::Heartbeat(_) | Watch::Interface(_) | Watch::System(_) | Watch::Command(_) => {
                None
            }
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
fn explain(watch: &Watch) -> String {
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
        Watch::Interface(i) => crate::interface::explain(i),
        Watch::System(s) => crate::system::explain(s),
        Watch::Command(c) => crate::command::explain(c),
    }
}
