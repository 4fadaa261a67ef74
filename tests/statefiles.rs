//! The daemon's own files, through the real binary: the status file in
//! `RuntimeDirectory=` and the reboot record in `StateDirectory=` are
//! written off the loop, so a directory on a filesystem that does not
//! answer delays no ping (see docs/RELIABILITY.md); the directories are
//! refused when others can write in them; and what a hostile user plants
//! there (a FIFO, a symlink, a directory at a file's name) neither hangs
//! the daemon nor leads it elsewhere. `next-stop` failures are logged.
//!
//! No test here can reboot this machine: the `[Reboot]` section's
//! `Command=` is a script that writes a marker, and `Forced=no` keeps
//! reboot(2) from being called. FUSE mounts live in private mount
//! namespaces of the daemon under test. The plants need root (tests/run
//! runs as root), as does mounting FUSE.

mod common;
#[path = "common/hangfs.rs"]
mod hangfs;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use hangfs::{Fault, HangFs};
use pings::{Pings, assert_rhythm, heartwatch_with_pings};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests mount FUSE and chown files: run them as root (tests/run does)"
    );
}

/// The `[Reboot]` section: the orderly reboot is a script that records a
/// marker, and reboot(2) is never called.
fn reboot_seam(s: &Scratch) -> (String, PathBuf) {
    let script = s.path("reboot-command");
    let marker = s.path("reboot-command.ran");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho ran >> {}\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let section = format!(
        "[Reboot]\nCommand={}\nForced=no\nOrderlyTimeout=1s\n",
        script.display()
    );
    (section, marker)
}

/// A heartbeat rule that is healthy at start and goes stale after a second.
fn fading_rule(s: &Scratch) {
    let beat = s.path("fading.beat");
    touch(&beat);
    s.write_rule(
        "fading",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\nCheckInterval=200ms\n",
            beat.display()
        ),
    );
}

/// The daemon with `dir` (inside the scratch directory) served by a FUSE
/// filesystem that leaves `fault` unanswered.
struct OnHungFs {
    // Dropped first: a daemon stuck in a request exits only once the
    // server lets go of it, and the daemon's drop waits for that exit.
    server: hangfs::Server,
    d: Daemon,
    pings: Pings,
    mount: PathBuf,
    started: Instant,
}

impl OnHungFs {
    fn start(s: &Scratch, dir: &str, fault: Fault) -> OnHungFs {
        need_root();
        let mount = s.path(dir);
        std::fs::create_dir(&mount).unwrap();
        let pings = Pings::listen(&s.path("notify.sock"));
        let fs = HangFs::with(fault);
        let mut command = heartwatch_with_pings(&s.conf(), &s.path("notify.sock"));
        fs.mount_in_child(&mut command, &mount);
        let d = Daemon::start_with(&mut command);
        let server = fs.serve();
        OnHungFs {
            d,
            server,
            pings,
            mount,
            started: Instant::now(),
        }
    }

    /// Stops the daemon; it can only exit once the FUSE server has let go
    /// of the requests it holds.
    fn stop(mut self) {
        self.d.signal(SIGTERM);
        self.d.expect("stopped");
        self.server.abort();
        let status = self
            .d
            .wait_exit(Duration::from_secs(10))
            .expect("heartwatch did not exit after the FUSE server went away");
        assert!(status.success(), "{status:?}");
        assert!(
            !mounted_on_host(&self.mount),
            "the FUSE mount leaked to the host"
        );
    }
}

#[test]
fn a_runtime_directory_whose_writes_hang_delays_no_ping() {
    let s = Scratch::new("run-hung");
    s.write_conf("");
    fading_rule(&s);
    let mut h = OnHungFs::start(&s, "run", Fault::Writes);
    h.d.expect("ready: 1 rule");
    h.d.expect("rule fading: healthy");
    h.d.expect("rule fading: failing");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        h.server.seen.hung.load(Ordering::SeqCst) >= 1,
        "no write ever reached the filesystem"
    );
    assert_rhythm(&h.pings, h.started, "status file on a hung filesystem");
    // The hung create holds the directory: the orderly stop's look at
    // next-stop has its bound too.
    h.d.signal(SIGTERM);
    h.d.expect(&format!(
        "{}/next-stop: no answer within 1s; ignored, KeepArmedOnStop=no: disarmed",
        h.mount.display()
    ));
    h.d.expect(&format!(
        "{}/status: the last status was not written within 1s",
        h.mount.display()
    ));
    h.stop();
}

#[test]
fn a_state_directory_whose_writes_hang_delays_neither_pings_nor_the_reboot() {
    let s = Scratch::new("state-hung");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    doomed_rule(&s);
    let mut h = OnHungFs::start(&s, "state", Fault::Writes);
    h.d.expect("ready: 1 rule");
    h.d.expect("rebooting: rule doomed: missing");
    // The reason cannot be written: the reboot goes on after its bound,
    // said at critical priority, and the loop pings all along.
    let line = h.d.expect(&format!(
        "cannot record the reboot reason in {}/reboot: no answer within 5s; rebooting anyway, the reason is only in this log",
        h.mount.display()
    ));
    assert!(line.contains("critical: "), "{line}");
    h.d.expect("orderly reboot command succeeded (exit 0)");
    assert!(
        std::fs::read_to_string(&marker).is_ok_and(|m| !m.is_empty()),
        "the reboot command did not run"
    );
    h.d.expect("the orderly reboot did not happen in time; Forced=no");
    assert_rhythm(&h.pings, h.started, "reboot record on a hung filesystem");
    h.stop();
}

#[test]
fn a_state_directory_that_does_not_answer_at_start_delays_ready_by_its_bound() {
    let s = Scratch::new("state-hung-start");
    s.write_conf("");
    fading_rule(&s);
    let mut h = OnHungFs::start(&s, "state", Fault::Lookups);
    h.d.expect(&format!(
        "state directory {}: no answer within 5s; the reboot count starts at 0",
        h.mount.display()
    ));
    h.d.expect("ready: 1 rule");
    let ready = Instant::now();
    h.d.expect("rule fading: failing");
    std::thread::sleep(Duration::from_secs(3));
    assert_rhythm(&h.pings, ready, "after a state directory hung at start");
    h.stop();
}

#[test]
fn a_runtime_directory_that_does_not_answer_at_start_delays_ready_by_its_bound() {
    let s = Scratch::new("run-hung-start");
    s.write_conf("");
    fading_rule(&s);
    let mut h = OnHungFs::start(&s, "run", Fault::Lookups);
    h.d.expect(&format!(
        "runtime directory {}: no answer within 5s; starting without a status file",
        h.mount.display()
    ));
    h.d.expect("ready: 1 rule");
    let ready = Instant::now();
    h.d.expect("rule fading: failing");
    std::thread::sleep(Duration::from_secs(3));
    assert_rhythm(&h.pings, ready, "after a runtime directory hung at start");
    // The orderly stop does not wait for next-stop on it either.
    h.d.signal(SIGTERM);
    h.d.expect(
        "next-stop: not read, the runtime directory never answered; KeepArmedOnStop=no: disarmed",
    );
    h.stop();
}

/// Starts the daemon and waits for it to be ready and its status written.
fn ready(s: &Scratch) -> Daemon {
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready: 1 rule");
    s.wait_status("rule");
    d
}

fn stop(mut d: Daemon) {
    d.signal(SIGTERM);
    d.expect("stopped");
    let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert!(status.success(), "{status:?}");
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn healthy_rule(s: &Scratch) {
    let beat = s.path("ok.beat");
    touch(&beat);
    s.write_rule(
        "ok",
        &format!("[Heartbeat]\nFile={}\nMaxAge=1h\n", beat.display()),
    );
}

#[test]
fn a_fifo_planted_at_the_status_temporary_does_not_hang_the_start() {
    need_root();
    let s = Scratch::new("plant-tmp-fifo");
    s.write_conf("");
    healthy_rule(&s);
    std::fs::create_dir(s.path("run")).unwrap();
    fifo(&s.path("run/.status.tmp"));
    let d = ready(&s);
    assert!(is_regular(&s.path("run/status")));
    // Gone, or a temporary of a write in progress: no longer the FIFO.
    let tmp = std::fs::symlink_metadata(s.path("run/.status.tmp"));
    assert!(tmp.is_err() || tmp.unwrap().file_type().is_file());
    stop(d);
}

#[test]
fn a_symlink_planted_at_the_status_temporary_neither_blocks_the_status_nor_is_followed() {
    need_root();
    let s = Scratch::new("plant-tmp-link");
    s.write_conf("");
    healthy_rule(&s);
    let victim = s.path("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::fs::create_dir(s.path("run")).unwrap();
    symlink(&victim, s.path("run/.status.tmp")).unwrap();
    let d = ready(&s);
    assert!(is_regular(&s.path("run/status")));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    stop(d);
}

#[test]
fn a_symlink_planted_at_the_status_name_is_replaced_not_followed() {
    need_root();
    let s = Scratch::new("plant-status-link");
    s.write_conf("");
    healthy_rule(&s);
    let victim = s.path("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::fs::create_dir(s.path("run")).unwrap();
    symlink(&victim, s.path("run/status")).unwrap();
    let d = ready(&s);
    assert!(is_regular(&s.path("run/status")));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    stop(d);
}

/// Plants `what` at `run/next-stop` once the daemon runs, stops it, and
/// returns what the stop logged about it.
fn stop_with_next_stop(plant: impl FnOnce(&Path)) -> String {
    need_root();
    let s = Scratch::new("plant-next-stop");
    s.write_conf("");
    healthy_rule(&s);
    let mut d = ready(&s);
    let next_stop = s.path("run/next-stop");
    plant(&next_stop);
    d.signal(SIGTERM);
    let line = d.expect(&format!("{}: ", next_stop.display()));
    d.expect("stopped");
    let status = d.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert!(status.success(), "{status:?}");
    line
}

#[test]
fn a_fifo_planted_as_next_stop_does_not_hang_the_stop() {
    let line = stop_with_next_stop(fifo);
    assert!(
        line.contains("is a FIFO, not a regular file; ignored, KeepArmedOnStop=no: disarmed"),
        "{line}"
    );
}

#[test]
fn a_symlink_planted_as_next_stop_is_not_followed() {
    let line = stop_with_next_stop(|p| {
        let target = p.parent().unwrap().with_file_name("keep-armed-request");
        std::fs::write(&target, "keep-armed\n").unwrap();
        symlink(&target, p).unwrap();
    });
    assert!(
        line.contains(
            "is a symbolic link, not a regular file; ignored, KeepArmedOnStop=no: disarmed"
        ),
        "{line}"
    );
}

#[test]
fn a_directory_planted_as_next_stop_is_reported() {
    let line = stop_with_next_stop(|p| std::fs::create_dir(p).unwrap());
    assert!(
        line.contains("is a directory, not a regular file; ignored, KeepArmedOnStop=no: disarmed"),
        "{line}"
    );
}

#[test]
fn a_next_stop_that_cannot_be_removed_at_start_is_reported() {
    need_root();
    let s = Scratch::new("next-stop-stuck");
    s.write_conf("");
    healthy_rule(&s);
    let next_stop = s.path("run/next-stop");
    std::fs::create_dir_all(next_stop.join("full")).unwrap();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect(&format!(
        "{}: cannot remove it: ENOTEMPTY: Directory not empty; if it holds a request, the next stop follows it",
        next_stop.display()
    ));
    d.expect("ready: 1 rule");
    stop(d);
}

/// Starts a daemon with a rule that reboots at once, `plant` having put
/// something at `state/reboot`; the reboot goes ahead and its reason is
/// recorded in a regular file. Returns the daemon and the log line about
/// what was found at start.
fn reboot_over(plant: impl FnOnce(&Path)) -> (Daemon, String) {
    need_root();
    let s = Scratch::new("plant-reboot");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    doomed_rule(&s);
    std::fs::create_dir(s.path("state")).unwrap();
    let record = s.path("state/reboot");
    plant(&record);
    let mut d = Daemon::start(&s.conf(), &[]);
    let found = d.expect(&format!("{}: ", record.display()));
    d.expect("ready: 1 rule");
    d.expect("rebooting: rule doomed: missing");
    d.expect(&format!("reboot reason recorded in {}", record.display()));
    d.expect("orderly reboot command succeeded (exit 0)");
    assert!(std::fs::read_to_string(&marker).is_ok_and(|m| !m.is_empty()));
    assert!(is_regular(&record), "the record is not a regular file");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains("count=1\n") && text.contains("rule=doomed\n"),
        "{text}"
    );
    (d, found)
}

#[test]
fn a_fifo_planted_as_the_reboot_record_does_not_hang_the_start() {
    let (_d, found) = reboot_over(fifo);
    assert!(
        found.contains("is a FIFO, not a regular file; starting the reboot count afresh"),
        "{found}"
    );
}

#[test]
fn a_symlink_planted_as_the_reboot_record_is_not_followed() {
    // Followed, the planted count would suppress the reboot.
    let elsewhere = Scratch::new("record-victim");
    let victim = elsewhere.path("record");
    std::fs::write(&victim, "count=7\n").unwrap();
    let (_d, found) = reboot_over(|p| symlink(&victim, p).unwrap());
    let left = std::fs::read_to_string(&victim).unwrap();
    assert_eq!(left, "count=7\n", "the symlink's target was written");
    assert!(
        found.contains("is a symbolic link, not a regular file; starting the reboot count afresh"),
        "{found}"
    );
}

#[test]
fn a_directory_planted_as_the_reboot_record_does_not_stop_the_record() {
    let (_d, found) = reboot_over(|p| std::fs::create_dir(p).unwrap());
    assert!(
        found.contains("is a directory, not a regular file; starting the reboot count afresh"),
        "{found}"
    );
}

/// `dir` (run or state) made untrusted by `spoil` is refused at start.
fn refused_at_start(dir: &str, spoil: impl FnOnce(&Path), want: &str) {
    need_root();
    let s = Scratch::new("untrusted-dir");
    s.write_conf("");
    healthy_rule(&s);
    let path = s.path(dir);
    std::fs::create_dir(&path).unwrap();
    spoil(&path);
    let mut d = Daemon::start(&s.conf(), &[]);
    let status = d.wait_exit(Duration::from_secs(30)).expect("did not exit");
    assert!(!status.success(), "{status:?}");
    let what = if dir == "run" {
        "runtime directory"
    } else {
        "state directory"
    };
    let shown = path.display().to_string();
    let want = format!("{what}: {shown}: refused: {}", want.replace("{}", &shown));
    d.expect(&want);
    assert!(!d.seen.iter().any(|l| l.contains("ready:")), "it started");
}

#[test]
fn a_group_writable_runtime_directory_is_refused_at_start() {
    refused_at_start(
        "run",
        |p| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o775)).unwrap(),
        "mode 0775 lets group or others write it; heartwatch writes its state there as root (fix: chmod go-w {})",
    );
}

#[test]
fn a_runtime_directory_owned_by_another_user_is_refused_at_start() {
    refused_at_start(
        "run",
        |p| std::os::unix::fs::chown(p, Some(4242), Some(4242)).unwrap(),
        "owned by uid 4242, not root; heartwatch writes its state there as root (fix: chown root: {})",
    );
}

#[test]
fn a_world_writable_state_directory_is_refused_at_start() {
    refused_at_start(
        "state",
        |p| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777)).unwrap(),
        "mode 1777 lets group or others write it; heartwatch writes its state there as root (fix: chmod go-w {})",
    );
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused_at_start() {
    refused_at_start(
        "state",
        |p| std::os::unix::fs::chown(p, Some(4242), Some(4242)).unwrap(),
        "owned by uid 4242, not root; heartwatch writes its state there as root (fix: chown root: {})",
    );
}

#[test]
fn directories_the_daemon_creates_under_umask_0_are_trusted() {
    // A umask of 0 (a bare init, a careless wrapper) must not make the
    // daemon refuse the directories it creates itself.
    let s = Scratch::new("umask-0");
    s.write_conf("");
    healthy_rule(&s);
    let mut d = Daemon::start_with(
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" run --config \"$1\"")
            .arg(BIN)
            .arg(s.conf()),
    );
    d.expect("ready: 1 rule");
    s.wait_status("rule");
    for dir in ["run", "state"] {
        let mode = std::fs::metadata(s.path(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "{dir}");
    }
    stop(d);
}

/// Starts a daemon with a rule that reboots at once, `plant` having put
/// something at `state/history`; the reboot goes ahead, and the history is
/// written anew as a regular file with that reboot in it. Returns the log
/// line about what was found at start.
fn history_over(plant: impl FnOnce(&Path)) -> String {
    need_root();
    let s = Scratch::new("plant-history");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    doomed_rule(&s);
    std::fs::create_dir(s.path("state")).unwrap();
    let history = s.path("state/history");
    plant(&history);
    let mut d = Daemon::start(&s.conf(), &[]);
    let found = d.expect(&format!("{}: ", history.display()));
    d.expect("ready: 1 rule");
    d.expect("rebooting: rule doomed: missing");
    d.expect("orderly reboot command succeeded (exit 0)");
    assert!(std::fs::read_to_string(&marker).is_ok_and(|m| !m.is_empty()));
    // The history is written off the loop: wait for it.
    let start = Instant::now();
    while !is_regular(&history) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(is_regular(&history), "the history is not a regular file");
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(text.starts_with("heartwatch-history 1\nentry "), "{text}");
    assert_eq!(text.matches("\nentry ").count(), 1, "{text}");
    assert!(text.contains("\treboot\tdoomed\tmissing"), "{text}");
    assert!(
        s.wait_status("reboot history, newest first:\n  ")
            .contains("  reboot      rule doomed: missing"),
    );
    found
}

#[test]
fn a_fifo_planted_as_the_history_does_not_hang_the_start() {
    let found = history_over(fifo);
    assert!(
        found.contains("is a FIFO, not a regular file; the reboot history starts afresh"),
        "{found}"
    );
}

#[test]
fn a_symlink_planted_as_the_history_is_not_followed() {
    let elsewhere = Scratch::new("history-victim");
    let victim = elsewhere.path("history");
    let planted = "heartwatch-history 1\nend\n";
    std::fs::write(&victim, planted).unwrap();
    let found = history_over(|p| symlink(&victim, p).unwrap());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), planted);
    assert!(
        found.contains("is a symbolic link, not a regular file; the reboot history starts afresh"),
        "{found}"
    );
}

#[test]
fn a_damaged_history_is_refused_and_replaced() {
    let found = history_over(|p| {
        std::fs::write(p, "heartwatch-history 1\nentry 12\tboot\treboot\n").unwrap()
    });
    assert!(
        found.contains(
            "line 2: fewer than 6 tab-separated fields; the reboot history starts afresh"
        ),
        "{found}"
    );
    let found = history_over(|p| std::fs::write(p, "count=1\n").unwrap());
    assert!(
        found.contains("does not begin with `heartwatch-history 1`"),
        "{found}"
    );
}

#[test]
fn a_huge_history_is_not_read() {
    let found = history_over(|p| {
        let mut text = String::from("heartwatch-history 1\n");
        while text.len() <= 70_000 {
            text.push_str("entry 1\tboot\treboot\trule\tcause\tstep\n");
        }
        text.push_str("end\n");
        std::fs::write(p, text).unwrap()
    });
    assert!(
        found.contains("is larger than 65536 bytes; the reboot history starts afresh"),
        "{found}"
    );
}
