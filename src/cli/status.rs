//! `heartwatch status`: reads the record the daemon keeps in its runtime
//! directory, judges whether the daemon that wrote it still runs, and
//! prints the status for people (`Status::render`).

use super::files::{read_regular, read_regular_bounded};
use crate::config;
use crate::identity;
use crate::regular::Symlink;
use crate::report::{EXIT_FAILURE, Report, complain, say};
use crate::status::{self, DaemonState, Status};
use crate::text::Count;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(super) fn status(root: &Path, json: bool) -> Result<(), u8> {
    let path = runtime_dir(root).join("status");
    let status = match read_status(&path) {
        Ok(status) => status,
        Err(why) => {
            complain!("heartwatch: {why}");
            if json {
                let mut doc = String::new();
                status::write_unavailable(&why, &mut doc);
                let mut report = Report::new();
                report.text(&doc);
                return report.finish(Err(EXIT_FAILURE));
            }
            return Err(EXIT_FAILURE);
        }
    };
    let verdict = judge(&status);
    if json {
        return print_json(&status, &verdict);
    }
    let mut text = String::with_capacity(4096);
    let _ = status.render(&mut text);
    let mut report = Report::new();
    let result = match verdict {
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

/// The status file read and parsed; what stops that, said in a sentence.
fn read_status(path: &Path) -> Result<Status, String> {
    let bytes = read_regular_bounded(path, Symlink::Refuse, status::MAX_RECORD)
        .map_err(|e| {
            format!(
                "{}: {}; is the daemon running?",
                path.display(),
                e.explain("heartwatch status reads only a regular file")
            )
        })?
        .ok_or_else(|| {
            format!(
                "{}: larger than {} MiB: not a status record",
                path.display(),
                status::MAX_RECORD >> 20
            )
        })?;
    status::parse(&bytes).map_err(|why| format!("{}: {why}", path.display()))
}

/// `status --json`: the document, whose `daemon.state` is the verdict.
/// The exit code is the text status's: 1 when the daemon is not running.
fn print_json(status: &Status, verdict: &Verdict) -> Result<(), u8> {
    let running = if status.rebooting.is_some() {
        DaemonState::Rebooting
    } else {
        DaemonState::Running
    };
    let (state, detail, result) = match verdict {
        Verdict::Running => (running, None, Ok(())),
        Verdict::Unverified(why) => (running, Some(why.as_str()), Ok(())),
        Verdict::NotRunning(why) if status.stopped.is_some() => {
            (DaemonState::Stopped, Some(why.as_str()), Err(EXIT_FAILURE))
        }
        Verdict::NotRunning(why) => (DaemonState::Gone, Some(why.as_str()), Err(EXIT_FAILURE)),
    };
    let mut doc = String::with_capacity(4096 + status.rules.len() * 512);
    status.write_json(state, detail, &mut doc);
    let mut report = Report::new();
    report.text(&doc);
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
pub(super) fn runtime_dir_of(text: &str) -> Option<PathBuf> {
    let sections = crate::config::parse_ini(text).ok()?;
    let entry = sections
        .iter()
        .filter(|s| s.name == "Daemon")
        .flat_map(|s| &s.entries)
        .find(|e| e.key == "RuntimeDirectory")?;
    let path = PathBuf::from(&entry.value);
    path.is_absolute().then_some(path)
}

/// What the status says of its writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Running,
    /// Probably running, but that could not be made sure of.
    Unverified(String),
    NotRunning(String),
}

/// Whether the daemon that wrote `status` still runs: the process its
/// identity names exists, started when it says, in this boot.
pub(super) fn judge(status: &Status) -> Verdict {
    let pid = status.identity.pid as i32;
    if status.stopped.is_some() {
        return Verdict::NotRunning(format!("heartwatch stopped (an orderly stop of pid {pid})"));
    }
    let exists = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    let gone = format!(
        "the daemon that wrote this status (pid {pid}) has exited without an orderly stop (it crashed, failed or was killed: see the journal)"
    );
    if let (Some(boot), Some(this_boot)) = (&status.identity.boot_id, identity::boot_id())
        && *boot != this_boot
    {
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
    let Some(start) = status.identity.start_time else {
        return unverified("the daemon could not say its start time".into());
    };
    match crate::process::start_time(pid) {
        Some(now) if start == now => Verdict::Running,
        Some(_) => Verdict::NotRunning(format!("{gone}; pid {pid} now belongs to another process")),
        None => unverified(format!(
            "cannot read /proc/{pid}/stat to make sure it is still the daemon (is /proc mounted with hidepid=?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Identity;

    fn written_by(identity: Identity) -> Status {
        Status {
            version: "0.2.0".into(),
            identity,
            ..Status::default()
        }
    }

    #[test]
    fn the_status_writer_is_known_by_pid_start_time_and_boot() {
        let me = identity::this_process();
        let start = me.start_time.unwrap();
        assert_eq!(judge(&written_by(me.clone())), Verdict::Running);
        let Verdict::NotRunning(why) = judge(&written_by(Identity {
            start_time: Some(start + 1),
            ..me.clone()
        })) else {
            panic!("another start time is another process");
        };
        assert!(why.contains("now belongs to another process"), "{why}");
        let Verdict::NotRunning(why) = judge(&written_by(Identity {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me.clone()
        })) else {
            panic!("another boot is another process");
        };
        assert!(why.contains("before the host last booted"), "{why}");
        assert!(matches!(
            judge(&written_by(Identity {
                pid: 1,
                ..me.clone()
            })),
            Verdict::NotRunning(_)
        ));
        // Without a start time, the PID's existence is all there is.
        let unknown = Identity {
            start_time: None,
            boot_id: None,
            ..me.clone()
        };
        assert!(matches!(
            judge(&written_by(unknown.clone())),
            Verdict::Unverified(_)
        ));
        let Verdict::NotRunning(why) = judge(&written_by(Identity {
            pid: i32::MAX as u32,
            ..unknown
        })) else {
            panic!("a PID that names no process is not the daemon");
        };
        assert!(why.contains("without an orderly stop"), "{why}");
        let stopped = Status {
            stopped: Some(1),
            ..written_by(me)
        };
        let Verdict::NotRunning(why) = judge(&stopped) else {
            panic!("a stopped daemon is not running");
        };
        assert!(why.starts_with("heartwatch stopped"), "{why}");
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
