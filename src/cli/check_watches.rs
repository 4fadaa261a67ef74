//! `heartwatch check`: which heartbeat rules the daemon would see by
//! inotify events and which would fall back to the periodic stat, and why.
//! The same decision as the daemon's (statfs, then an inotify watch), made
//! in a thread with a bound: statfs on a hung mount must not hang `check`.

use crate::config::{Config, Watch};
use crate::report::{Report, say};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// How long `check` waits for the directories' filesystems to answer.
const BOUND: Duration = Duration::from_secs(2);

pub(super) fn report_heartbeat_modes(config: &Config, report: &mut Report) {
    let mut dirs: BTreeMap<Vec<u8>, Vec<&str>> = BTreeMap::new();
    for rule in &config.rules {
        if let Watch::Heartbeat(h) = &rule.watch {
            let dir = h.file.parent().unwrap_or(std::path::Path::new("/"));
            dirs.entry(dir.as_os_str().as_bytes().to_vec())
                .or_default()
                .push(&rule.name);
        }
    }
    if dirs.is_empty() {
        return;
    }
    let paths: Vec<CString> = dirs
        .keys()
        .map(|d| CString::new(d.clone()).expect("paths have no NUL"))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ino = match crate::sys::inotify::Inotify::new() {
            Ok(i) => i,
            Err(_) => {
                let _ = tx.send(None);
                return;
            }
        };
        for p in &paths {
            let r = crate::probe::watch_dir(&ino, p).map(|_| ());
            if tx.send(Some(r)).is_err() {
                return;
            }
        }
    });
    let mut events = 0;
    let mut periodic: Vec<(&str, String)> = Vec::new();
    let start = std::time::Instant::now();
    for names in dirs.values() {
        let left = BOUND.saturating_sub(start.elapsed());
        let why = match rx.recv_timeout(left) {
            Ok(Some(Ok(()))) => {
                events += names.len();
                continue;
            }
            Ok(Some(Err(why))) => why.to_string(),
            Ok(None) => "inotify unavailable".to_string(),
            Err(_) => format!(
                "its filesystem did not answer statfs within {}",
                crate::config::DurationText(BOUND)
            ),
        };
        periodic.extend(names.iter().map(|n| (*n, why.clone())));
    }
    say!(
        report,
        "heartbeats: {} seen by inotify events, {} on the periodic stat every CheckInterval",
        events,
        periodic.len()
    );
    for (name, why) in periodic {
        say!(report, "  {name}: periodic stat: {why}");
    }
}
