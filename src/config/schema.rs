//! The key schema: which sections and keys `heartwatch.conf` and a rule
//! file have, what each key's value must be, the defaults of those left
//! out, and the checks that span keys (a feed interval against the
//! timeout, a check interval against the maximum age).

use super::ini::{self, Section};
use super::keys::{Keys, line_errors};
use super::types::{
    ConfigError, DaemonSettings, DurationText, Finally, HeartbeatSpec, LadderSpec, ProcessSpec,
    ProcessTarget, RebootSettings, RepairSpec, Rule, Watch, WatchdogSettings,
};
use super::values::{
    parse_absolute_path, parse_argv, parse_bool, parse_count, parse_devices, parse_duration,
    parse_positive_duration,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parses the text of `heartwatch.conf` (public for the fuzz target).
pub fn parse_settings(
    path: &Path,
    text: &str,
) -> Result<(WatchdogSettings, DaemonSettings, RebootSettings), Vec<ConfigError>> {
    let sections = ini::parse(text).map_err(|e| line_errors(path, e))?;
    let mut errors = Vec::new();
    let empty = |name: &str| Section {
        name: name.to_string(),
        line: 1,
        entries: Vec::new(),
    };
    for s in &sections {
        if !["Watchdog", "Daemon", "Reboot", "Metrics"].contains(&s.name.as_str()) {
            errors.push(ConfigError::at(
                path,
                s.line,
                format!(
                    "unknown section [{}]; expected [Watchdog], [Daemon], [Reboot] or [Metrics]",
                    s.name
                ),
            ));
        }
    }
    let find = |name: &str| sections.iter().find(|s| s.name == name).cloned();
    let watchdog_section = find("Watchdog").unwrap_or_else(|| empty("Watchdog"));
    let daemon_section = find("Daemon").unwrap_or_else(|| empty("Daemon"));
    let reboot_section = find("Reboot").unwrap_or_else(|| empty("Reboot"));
    let metrics_section = find("Metrics").unwrap_or_else(|| empty("Metrics"));

    let mut keys = Keys::new(path, &watchdog_section, &mut errors);
    let devices = keys
        .get("Device", parse_devices)
        .unwrap_or_else(|| vec![PathBuf::from("/dev/watchdog0")]);
    let timeout = keys
        .get("Timeout", |v| {
            let d = parse_duration(v)?;
            if d.subsec_nanos() != 0 || d < Duration::from_secs(2) || d > Duration::from_secs(3600)
            {
                return Err("must be whole seconds from 2s to 1h (drivers count seconds)".into());
            }
            Ok(d)
        })
        .unwrap_or(Duration::from_secs(30));
    let feed_line = keys.line_of("FeedInterval");
    let feed_interval = keys
        .get("FeedInterval", parse_positive_duration)
        .unwrap_or(timeout / 6);
    if feed_interval > timeout / 2 {
        keys.error(
            feed_line,
            format!(
                "FeedInterval={} is more than half of Timeout={}; feed at most every {}",
                DurationText(feed_interval),
                DurationText(timeout),
                DurationText(timeout / 2)
            ),
        );
    }
    let keep_armed_on_stop = keys.get("KeepArmedOnStop", parse_bool).unwrap_or(false);
    keys.finish();

    let mut keys = Keys::new(path, &daemon_section, &mut errors);
    let startup_grace = keys
        .get("StartupGrace", parse_duration)
        .unwrap_or(Duration::from_secs(60));
    let check_timeout = keys
        .get("CheckTimeout", parse_positive_duration)
        .unwrap_or(Duration::from_secs(2));
    let state_dir = keys
        .get("StateDirectory", parse_absolute_path)
        .unwrap_or_else(|| PathBuf::from("/var/lib/heartwatch"));
    let runtime_dir = keys
        .get("RuntimeDirectory", parse_absolute_path)
        .unwrap_or_else(|| PathBuf::from("/run/heartwatch"));
    let dry_run = keys.get("DryRun", parse_bool).unwrap_or(false);
    let crash_memtest = keys.get("CrashMemtest", parse_bool).unwrap_or(true);
    keys.finish();

    let mut keys = Keys::new(path, &reboot_section, &mut errors);
    let budget = keys.get("Budget", |v| parse_count(v, 0, 100)).unwrap_or(3);
    let healthy_uptime = keys
        .get("HealthyUptime", parse_positive_duration)
        .unwrap_or(Duration::from_secs(3600));
    let orderly_timeout = keys
        .get("OrderlyTimeout", parse_positive_duration)
        .unwrap_or(Duration::from_secs(120));
    let command = match keys.entry("Command") {
        Some(entry) => match parse_argv(&entry.value) {
            Ok(argv) => Some(argv),
            Err(message) => {
                let line = entry.line;
                keys.error(line, format!("Command=: {message}"));
                None
            }
        },
        None => parse_argv("systemctl reboot").ok(),
    };
    let forced = keys.get("Forced", parse_bool).unwrap_or(true);
    let drain = keys.get("Drain", parse_drain).unwrap_or(Duration::ZERO);
    keys.finish();

    let mut keys = Keys::new(path, &metrics_section, &mut errors);
    let textfile_dir = keys.get("TextfileDirectory", parse_absolute_path);
    keys.finish();

    if errors.is_empty() {
        Ok((
            WatchdogSettings {
                devices,
                timeout,
                feed_interval,
                keep_armed_on_stop,
            },
            DaemonSettings {
                startup_grace,
                check_timeout,
                state_dir,
                runtime_dir,
                dry_run,
                crash_memtest,
                textfile_dir,
            },
            RebootSettings {
                budget,
                healthy_uptime,
                orderly_timeout,
                command,
                forced,
                drain,
            },
        ))
    } else {
        Err(errors)
    }
}

/// The sections of which a rule has exactly one, for messages.
const WATCH_SECTIONS: &str = "[Heartbeat], [Process], [Command], [System], [Interface]";
/// `[Reboot] Drain=`: `0` (the default: no drain) or a duration of at most
/// an hour, which a reboot waits once decided.
fn parse_drain(text: &str) -> Result<Duration, String> {
    let d = match text {
        "0" => Duration::ZERO,
        _ => parse_duration(text)?,
    };
    if d > Duration::from_secs(3600) {
        return Err(format!(
            "{text:?} is longer than an hour; a reboot that waits that long for the load balancer is a host that stays broken"
        ));
    }
    Ok(d)
}

/// Parses one rule file; `name` comes from the file name.
pub fn parse_rule(path: &Path, name: &str, text: &str) -> Result<Rule, Vec<ConfigError>> {
    let sections = ini::parse(text).map_err(|e| line_errors(path, e))?;
    let mut errors = Vec::new();
    let mut watch = None;
    let mut watch_kind = None;
    let mut ladder = None;
    for section in &sections {
        match section.name.as_str() {
            kind @ ("Heartbeat" | "Process" | "Command" | "System" | "Interface") => {
                if let Some(first) = watch_kind {
                    errors.push(ConfigError::at(
                        path,
                        section.line,
                        format!(
                            "a rule watches one thing: it has both [{first}] and [{kind}] (one of {WATCH_SECTIONS})"
                        ),
                    ));
                    continue;
                }
                watch_kind = Some(kind);
                let mut keys = Keys::new(path, section, &mut errors);
                watch = Some(match kind {
                    "Heartbeat" => parse_heartbeat(&mut keys),
                    "Process" => parse_process(&mut keys),
                    "System" => super::system::parse_system(&mut keys),
                    "Command" => super::command::parse_command(&mut keys),
                    _ => super::interface::parse_interface(&mut keys),
                });
                keys.finish();
            }
            "Escalate" => {
                let mut keys = Keys::new(path, section, &mut errors);
                ladder = Some(parse_ladder(&mut keys));
                keys.finish();
            }
            other => errors.push(ConfigError::at(
                path,
                section.line,
                format!("unknown section [{other}]; expected {WATCH_SECTIONS} or [Escalate]"),
            )),
        }
    }
    let watch = match watch {
        Some(Some(w)) => Some(w),
        Some(None) => None,
        None => {
            errors.push(ConfigError::at(
                path,
                1,
                format!("the rule watches nothing: add one of {WATCH_SECTIONS}"),
            ));
            None
        }
    };
    let ladder = match ladder {
        Some(l) => l,
        None => Some(LadderSpec {
            repair: None,
            finally: Finally::Log,
            recovery: Duration::from_secs(60),
            drain: false,
        }),
    };
    match (watch, ladder) {
        (Some(watch), Some(ladder)) if errors.is_empty() => Ok(Rule {
            name: name.to_string(),
            source: path.to_path_buf(),
            watch,
            ladder: std::sync::Arc::new(ladder),
        }),
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError::file(path, "the rule is incomplete"));
            }
            Err(errors)
        }
    }
}

fn parse_heartbeat(keys: &mut Keys) -> Option<Watch> {
    let file = keys.required("File", parse_absolute_path);
    let max_age = keys.required("MaxAge", parse_positive_duration);
    let interval_line = keys.line_of("CheckInterval");
    let interval = keys.get("CheckInterval", parse_positive_duration);
    let max_age = max_age?;
    let check_interval = match interval {
        Some(i) if i > max_age => {
            keys.error(
                interval_line,
                format!(
                    "CheckInterval={} is longer than MaxAge={}; the rule would be checked too rarely to fire on time",
                    DurationText(i),
                    DurationText(max_age)
                ),
            );
            return None;
        }
        Some(i) => i,
        None => default_check_interval(max_age),
    };
    Some(Watch::Heartbeat(HeartbeatSpec {
        file: file?,
        max_age,
        check_interval,
    }))
}

/// A tenth of the maximum age, between 100 ms and one minute: a stale
/// heartbeat is reported at most that long after its deadline.
fn default_check_interval(max_age: Duration) -> Duration {
    (max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

fn parse_process(keys: &mut Keys) -> Option<Watch> {
    let line = keys.section.line;
    let pid_file = keys.get("PidFile", parse_absolute_path);
    let executable = keys.get("Executable", parse_absolute_path);
    let check_interval = keys
        .get("CheckInterval", parse_positive_duration)
        .unwrap_or(Duration::from_secs(5));
    let target = match (pid_file, executable) {
        (Some(p), None) => ProcessTarget::PidFile(p),
        (None, Some(e)) => ProcessTarget::Executable(e),
        (Some(_), Some(_)) => {
            keys.error(line, "[Process] takes PidFile= or Executable=, not both");
            return None;
        }
        (None, None) => {
            keys.error(line, "[Process] needs PidFile= or Executable=");
            return None;
        }
    };
    Some(Watch::Process(ProcessSpec {
        target,
        check_interval,
    }))
}

fn parse_ladder(keys: &mut Keys) -> Option<LadderSpec> {
    let section_line = keys.section.line;
    let command = keys.get("Repair", parse_argv);
    let attempts_line = keys.line_of("RepairAttempts");
    let attempts = keys.get("RepairAttempts", |v| parse_count(v, 1, 1000));
    let timeout = keys.get("RepairTimeout", parse_positive_duration);
    let backoff = keys.get("RepairBackoff", parse_positive_duration);
    let backoff_max_line = keys.line_of("RepairBackoffMax");
    let backoff_max = keys.get("RepairBackoffMax", parse_positive_duration);
    let finally = keys
        .get("Finally", |v| match v {
            "log" => Ok(Finally::Log),
            "reboot" => Ok(Finally::Reboot),
            _ => Err(format!("{v:?} is not `log` or `reboot`")),
        })
        .unwrap_or(Finally::Log);
    let drain = keys.get("Drain", parse_bool).unwrap_or(false);
    let recovery_line = keys.line_of("RecoveryPeriod");
    let recovery = keys.get("RecoveryPeriod", parse_positive_duration);
    let has_repair_keys = attempts.is_some()
        || timeout.is_some()
        || backoff.is_some()
        || backoff_max.is_some()
        || keys.section.entries.iter().any(|e| e.key == "Repair");
    let repair = match command {
        Some(command) => {
            let backoff = backoff.unwrap_or(Duration::from_secs(10));
            let backoff_max = backoff_max.unwrap_or(Duration::from_secs(300).max(backoff));
            if backoff_max < backoff {
                keys.error(
                    backoff_max_line,
                    "RepairBackoffMax= is shorter than RepairBackoff=",
                );
                return None;
            }
            Some(RepairSpec {
                command,
                attempts: attempts.unwrap_or(3),
                timeout: timeout.unwrap_or(Duration::from_secs(30)),
                backoff,
                backoff_max,
            })
        }
        None if has_repair_keys => {
            if !keys.section.entries.iter().any(|e| e.key == "Repair") {
                keys.error(
                    attempts_line.max(section_line),
                    "Repair* settings without Repair=: say which command repairs",
                );
            }
            return None;
        }
        None => None,
    };
    if repair.is_none() && recovery.is_some() {
        // Without repairs the ladder is one step, taken at each failure.
        keys.error(
            recovery_line,
            "RecoveryPeriod= has no effect without Repair=: a rule that repairs nothing has no ladder to start over",
        );
        return None;
    }
    Some(LadderSpec {
        repair,
        finally,
        recovery: recovery.unwrap_or(Duration::from_secs(60)),
        drain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<Rule, Vec<String>> {
        parse_rule(Path::new("/r/x.rule"), "x", text)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn heartbeat_rule_with_defaults() {
        let r = rule("[Heartbeat]\nFile=/run/a\nMaxAge=10s\n").unwrap();
        let Watch::Heartbeat(h) = r.watch else {
            panic!("not a heartbeat")
        };
        assert_eq!(h.file, PathBuf::from("/run/a"));
        assert_eq!(h.max_age, Duration::from_secs(10));
        assert_eq!(h.check_interval, Duration::from_secs(1));
        assert_eq!(r.ladder.finally, Finally::Log);
        assert!(r.ladder.repair.is_none());
    }

    #[test]
    fn ladder_rule() {
        let r = rule(
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nRepair=sh -c true\nRepairAttempts=2\nFinally=reboot\n",
        )
        .unwrap();
        assert_eq!(r.ladder.finally, Finally::Reboot);
        let repair = r.ladder.repair.clone().unwrap();
        assert_eq!(repair.attempts, 2);
        assert_eq!(repair.backoff, Duration::from_secs(10));
    }

    #[test]
    fn rule_errors_name_their_line() {
        let cases: &[(&str, &str)] = &[
            ("", "/r/x.rule:1: the rule watches nothing"),
            (
                "[Heartbeat]\nFile=/a\n",
                "/r/x.rule:1: [Heartbeat] needs MaxAge=",
            ),
            (
                "[Heartbeat]\nFile=a\nMaxAge=1s\n",
                "/r/x.rule:2: File=: \"a\" is not an absolute path",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=10\n",
                "/r/x.rule:3: MaxAge=: \"10\" has no unit",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\nColour=red\n",
                "/r/x.rule:4: unknown key Colour= in [Heartbeat]",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\nCheckInterval=2s\n",
                "/r/x.rule:4: CheckInterval=2s is longer than MaxAge=1s",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Process]\nPidFile=/p\n",
                "/r/x.rule:4: a rule watches one thing",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nFinally=explode\n",
                "/r/x.rule:5: Finally=: \"explode\" is not `log` or `reboot`",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepairAttempts=0\nRepair=true\n",
                "/r/x.rule:5: RepairAttempts=: 0 is out of range 1..=1000",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepairAttempts=2\n",
                "/r/x.rule:5: Repair* settings without Repair=",
            ),
            (
                "[Process]\nPidFile=/a\nExecutable=/b\n",
                "/r/x.rule:1: [Process] takes PidFile= or Executable=, not both",
            ),
            ("[Nonsense]\n", "/r/x.rule:1: unknown section [Nonsense]"),
        ];
        for (text, want) in cases {
            let errors = rule(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "for {text:?} wanted {want:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn settings_defaults_and_limits() {
        let p = Path::new("/c/heartwatch.conf");
        let (w, d, r) = parse_settings(p, "").unwrap();
        assert_eq!(w.devices, vec![PathBuf::from("/dev/watchdog0")]);
        assert_eq!(w.timeout, Duration::from_secs(30));
        assert_eq!(w.feed_interval, Duration::from_secs(5));
        assert!(!d.dry_run);
        assert!(d.crash_memtest);
        assert_eq!(d.textfile_dir, None);
        assert_eq!(r.budget, 3);
        let (_, d, _) = parse_settings(p, "[Metrics]\nTextfileDirectory=/var/lib/x\n").unwrap();
        assert_eq!(d.textfile_dir, Some(PathBuf::from("/var/lib/x")));
        let errors = parse_settings(p, "[Metrics]\nTextfileDirectory=x\nPort=1\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let (w, ..) = parse_settings(p, "[Watchdog]\nDevice=none\n").unwrap();
        assert!(w.devices.is_empty());
        let errors: Vec<String> = parse_settings(
            p,
            "[Watchdog]\nTimeout=10s\nFeedInterval=6s\nDevice=/dev/a /dev/a\n[Daemon]\nStateDirectory=var\n[Reboot]\nBudget=1000\n[Extra]\n",
        )
        .unwrap_err()
        .into_iter()
        .map(|e| e.to_string())
        .collect();
        let lines: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").next().unwrap())
            .collect();
        assert!(lines.contains(&"/c/heartwatch.conf:3"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:4"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:6"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:8"), "{errors:?}");
        assert!(lines.contains(&"/c/heartwatch.conf:9"), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("more than half of Timeout=10s"))
        );
    }

    #[test]
    fn drain_settings() {
        let p = Path::new("/c/heartwatch.conf");
        let drain =
            |v: &str| parse_settings(p, &format!("[Reboot]\nDrain={v}\n")).map(|(_, _, r)| r.drain);
        assert_eq!(parse_settings(p, "").unwrap().2.drain, Duration::ZERO);
        assert_eq!(drain("0"), Ok(Duration::ZERO));
        assert_eq!(drain("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(drain("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["2h", "5", "soon"] {
            let errors = drain(bad).unwrap_err();
            assert!(
                errors[0]
                    .to_string()
                    .starts_with("/c/heartwatch.conf:2: Drain=: "),
                "{bad}: {errors:?}"
            );
        }
        assert!(
            !rule("[Heartbeat]\nFile=/a\nMaxAge=1s\n")
                .unwrap()
                .ladder
                .drain
        );
        assert!(
            rule("[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nDrain=yes\n")
                .unwrap()
                .ladder
                .drain
        );
        let errors =
            rule("[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nDrain=maybe\n").unwrap_err();
        assert!(errors[0].to_string().contains(":5: Drain=: "), "{errors:?}");
    }
}
