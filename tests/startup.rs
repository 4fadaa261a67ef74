//! Start-up and reload, through the real binary.
//!
//! Start-up failures once a watchdog is open: opening a watchdog arms it, so a start that fails after that must
//! disarm it (heartwatch never took over the feeding) and say so at
//! critical priority. No real watchdog is opened here: with the
//! `test-hooks` build, `HEARTWATCH_TEST_STANDIN_TIMEOUT` lets a regular
//! file stand in for one (its feeds are `\0` bytes, its magic close a
//! `V`), so the test reads from the file what the daemon did to the
//! device. The same faults on real drivers are the VM scenario
//! `second-device-fails`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;

/// The scratch configuration with `[Watchdog]` replaced by `watchdog`.
fn with_devices(s: &Scratch, watchdog: &str) {
    s.write_conf("");
    let path = s.conf().join("heartwatch.conf");
    let conf = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[Watchdog]\nDevice=none\n", watchdog);
    std::fs::write(&path, conf).unwrap();
}

/// The daemon on `s`, its stand-in devices answering `standin_timeout`
/// (seconds) to WDIOC_GETTIMEOUT, or no timeout ioctl at all (`none`).
fn start(s: &Scratch, standin_timeout: &str) -> Daemon {
    Daemon::start_with(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(s.conf())
            .env("HEARTWATCH_TEST_STANDIN_TIMEOUT", standin_timeout),
    )
}

/// What the daemon wrote to a stand-in device.
fn written(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).replace('\0', "0")
}

fn exits_with_failure(d: &mut Daemon) {
    let status = d.wait_exit(Duration::from_secs(30)).expect("still running");
    assert_eq!(status.code(), Some(1), "{:#?}", d.drain());
}

#[test]
fn a_second_device_that_is_missing_leaves_the_first_disarmed() {
    let s = Scratch::new("second-missing");
    let first = s.path("watchdog0");
    std::fs::write(&first, "").unwrap();
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={} /nonexistent/watchdog1\nTimeout=10s\nFeedInterval=1s\n",
            first.display()
        ),
    );
    let mut d = start(&s, "10");
    exits_with_failure(&mut d);
    d.expect("watchdog /nonexistent/watchdog1: no such device");
    let critical = d.expect(&format!(
        "critical: watchdog {}: disarmed (magic close)",
        first.display()
    ));
    assert!(critical.contains("restart heartwatch"), "{critical}");
    assert_eq!(written(&first), "V", "the first device was not disarmed");
}

#[test]
fn an_ioctl_that_fails_while_opening_disarms_the_device_it_failed_on() {
    let s = Scratch::new("ioctl-fails");
    let first = s.path("watchdog0");
    std::fs::write(&first, "").unwrap();
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={}\nTimeout=10s\nFeedInterval=1s\n",
            first.display()
        ),
    );
    // A stand-in that answers no WDIOC_GETTIMEOUT: the ioctl fails inside
    // the open, after the open(2) that arms a real watchdog.
    let mut d = start(&s, "none");
    exits_with_failure(&mut d);
    d.expect("WDIOC_GETTIMEOUT failed: ENOTTY");
    // The stand-in answers no WDIOC_GETSUPPORT either, so heartwatch does
    // not know whether the driver has magic close, and says what that means.
    let critical = d.expect(&format!(
        "critical: watchdog {}: closed after writing the magic close, but the driver does not announce magic close",
        first.display()
    ));
    // Nor its timeout: the message does not make one up.
    assert!(
        critical.contains("its timeout is unknown") && !critical.contains("within 10s"),
        "{critical}"
    );
    assert_eq!(written(&first), "V");
}

#[test]
fn a_timeout_too_short_for_the_feed_interval_disarms_every_device() {
    let s = Scratch::new("short-timeout");
    let (first, second) = (s.path("watchdog0"), s.path("watchdog1"));
    std::fs::write(&first, "").unwrap();
    std::fs::write(&second, "").unwrap();
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={} {}\nTimeout=10s\nFeedInterval=2s\n",
            first.display(),
            second.display()
        ),
    );
    // The "driver" sets 2 s although 10 s were asked: FeedInterval=2s is
    // more than half of it.
    let mut d = start(&s, "2");
    exits_with_failure(&mut d);
    d.expect("too short for FeedInterval=2s");
    d.expect(&format!(
        "critical: watchdog {}: disarmed (magic close)",
        first.display()
    ));
    assert_eq!(written(&first), "V");
    assert_eq!(written(&second), "", "the second device was never opened");
}

#[test]
fn a_refused_first_keepalive_disarms_the_devices_that_were_opened() {
    let s = Scratch::new("first-feed");
    let first = s.path("watchdog0");
    std::fs::write(&first, "").unwrap();
    // /dev/full refuses every write: the stand-in refuses its keepalive,
    // and its magic close too.
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={} /dev/full\nTimeout=10s\nFeedInterval=1s\n",
            first.display()
        ),
    );
    let mut d = start(&s, "10");
    exits_with_failure(&mut d);
    d.expect("watchdog /dev/full: feeding failed");
    d.expect(&format!(
        "critical: watchdog {}: disarmed (magic close)",
        first.display()
    ));
    let failed = d.expect("critical: watchdog /dev/full: the magic close failed");
    assert!(failed.contains("may reset this host"), "{failed}");
    assert_eq!(written(&first), "0V", "fed once, then disarmed");
}

#[test]
fn a_daemon_that_started_is_disarmed_only_by_its_orderly_stop() {
    let s = Scratch::new("took-over");
    let first = s.path("watchdog0");
    std::fs::write(&first, "").unwrap();
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={}\nTimeout=10s\nFeedInterval=1s\n",
            first.display()
        ),
    );
    let mut d = start(&s, "10");
    d.expect("ready:");
    assert!(!written(&first).contains('V'), "disarmed while running");
    d.signal(SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
    assert!(written(&first).ends_with("0V"), "{:?}", written(&first));
    assert!(
        !d.drain().iter().any(|l| l.contains("critical")),
        "{:#?}",
        d.seen
    );
}

/// A rule that fails at once and repairs (`touch MARKER`) every 200 ms at
/// most, for a long time: every repair attempt shows whether the daemon is
/// in dry run.
fn repairing_rule(s: &Scratch) -> std::path::PathBuf {
    let marker = s.path("repaired");
    s.write_rule(
        "d",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=touch {}\nRepairAttempts=1000\nRepairBackoff=100ms\nRepairBackoffMax=200ms\nFinally=log\n",
            s.path("never").display(),
            marker.display()
        ),
    );
    marker
}

/// Rewrites heartwatch.conf with `DryRun=` and reloads; waits for the reload.
fn reload_with_dry_run(s: &Scratch, d: &mut Daemon, value: &str) {
    s.write_conf(&format!("DryRun={value}\n"));
    d.drain();
    d.seen.clear();
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
}

#[test]
fn dry_run_follows_the_file_across_reloads() {
    let s = Scratch::new("dry-reload");
    s.write_conf("DryRun=yes\n");
    let marker = repairing_rule(&s);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("dry run: actions are logged, not taken");
    d.expect("rule d: dry run: would run `touch");
    d.expect("rule d: repair attempt 2 not run (dry run)");
    assert!(!marker.exists(), "a repair ran in dry run");
    s.wait_status("(dry run: no action");

    reload_with_dry_run(&s, &mut d, "no");
    let ran = d.expect("rule d: running `touch");
    assert!(ran.contains("repair attempt"), "{ran}");
    d.expect("reload: dry run ends (DryRun=no): repairs and reboots are taken from now on");
    d.expect("succeeded (exit 0)");
    assert!(
        marker.exists(),
        "the repair did not run after dry run ended"
    );
    let status = s.wait_status("configuration");
    assert!(!status.contains("(dry run: no action"), "{status}");

    std::fs::remove_file(&marker).unwrap();
    reload_with_dry_run(&s, &mut d, "yes");
    d.expect("reload: dry run begins (DryRun=yes): repairs and reboots are logged, not taken");
    d.drain();
    d.seen.clear();
    d.expect("rule d: dry run: would run `touch");
    d.expect("not run (dry run)");
    assert!(!marker.exists(), "a repair ran in dry run again");
    s.wait_status("(dry run: no action");
}

#[test]
fn the_dry_run_flag_stays_in_force_across_reloads() {
    let s = Scratch::new("dry-flag");
    s.write_conf("DryRun=yes\n");
    let marker = repairing_rule(&s);
    let mut d = Daemon::start(&s.conf(), &["--dry-run"]);
    d.expect("rule d: dry run: would run `touch");
    reload_with_dry_run(&s, &mut d, "no");
    d.expect("reload: DryRun=no, but --dry-run stays in force: repairs and reboots are still logged, not taken");
    d.drain();
    d.seen.clear();
    d.expect("rule d: dry run: would run `touch");
    d.expect("not run (dry run)");
    assert!(!marker.exists(), "a repair ran under --dry-run");
    s.wait_status("(dry run: no action");
}

#[test]
fn a_worker_without_its_alternate_signal_stack_is_reported_and_still_works() {
    let s = Scratch::new("altstack");
    s.write_conf("");
    let beat = s.path("beat");
    touch(&beat);
    s.write_rule(
        "job",
        &format!("[Heartbeat]\nFile={}\nMaxAge=1h\n", beat.display()),
    );
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(s.conf())
            .env("HEARTWATCH_TEST_NO_THREAD_ALTSTACK", "1"),
    );
    let line =
        d.expect("warning: stat worker: crash handler: cannot install the alternate signal stack");
    assert!(
        line.contains("ENOMEM") || line.contains("Cannot allocate memory"),
        "{line}"
    );
    assert!(line.contains("its report may be lost"), "{line}");
    // The worker runs all the same: the heartbeat is judged through it.
    d.expect("rule job: healthy");
    s.wait_status("job");
}

#[test]
fn a_device_that_is_a_regular_file_or_a_fifo_is_refused_unopened() {
    let s = Scratch::new("not-a-device");
    let file = s.path("passwd");
    std::fs::write(&file, "root:x:0:0\n").unwrap();
    let fifo = s.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, kind) in [(&file, "a regular file"), (&fifo, "a FIFO")] {
        with_devices(
            &s,
            &format!(
                "[Watchdog]\nDevice={}\nTimeout=10s\nFeedInterval=1s\n",
                path.display()
            ),
        );
        // A FIFO without a reader would hold open(2) for ever.
        let mut d = Daemon::start(&s.conf(), &[]);
        exits_with_failure(&mut d);
        d.expect(&format!(
            "watchdog {}: is not a character device ({kind})",
            path.display()
        ));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "root:x:0:0\n");
}

/// The position of the first line containing `needle` in what was logged.
fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line containing {needle:?}; saw {lines:#?}"))
}

/// The log of a start that fails with `devices` (the stand-in device
/// `watchdog0` first) and the stand-in timeout `standin`.
fn failed_start_log(name: &str, devices: &str, standin: &str) -> Vec<String> {
    let s = Scratch::new(name);
    let first = s.path("watchdog0");
    std::fs::write(&first, "").unwrap();
    with_devices(
        &s,
        &format!(
            "[Watchdog]\nDevice={} {devices}\nTimeout=10s\nFeedInterval=1s\n",
            first.display()
        ),
    );
    let mut d = start(&s, standin);
    exits_with_failure(&mut d);
    d.drain().to_vec()
}

#[test]
fn a_failed_start_logs_its_cause_before_what_it_did_to_the_devices() {
    let lines = failed_start_log("cause-first", "/nonexistent/watchdog1", "10");
    let cause = position(&lines, "watchdog /nonexistent/watchdog1: no such device");
    let disarmed = position(&lines, "disarmed (magic close)");
    assert!(cause < disarmed, "the cause comes after: {lines:#?}");
    // The same for the device whose own set-up failed (`Device::open`).
    let lines = failed_start_log("cause-first-open", "", "none");
    let cause = position(&lines, "WDIOC_GETTIMEOUT failed");
    let disarmed = position(&lines, "critical: watchdog");
    assert!(cause < disarmed, "the cause comes after: {lines:#?}");
}

#[test]
fn a_character_device_that_is_not_a_watchdog_is_refused_unopened() {
    let s = Scratch::new("not-a-watchdog");
    with_devices(
        &s,
        "[Watchdog]\nDevice=/dev/null\nTimeout=10s\nFeedInterval=1s\n",
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    exits_with_failure(&mut d);
    let refused = d.expect("watchdog /dev/null: is not a watchdog");
    assert!(refused.contains("major 1"), "{refused}");
    let lines = d.drain().to_vec();
    assert!(
        !lines.iter().any(|l| l.contains("critical")),
        "it was opened: {lines:#?}"
    );
}
