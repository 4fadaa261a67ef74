//! The daemon through the real binary: heartbeats going stale, reloads,
//! orderly stops and systemd notification.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;

fn heartbeat_rule(file: &std::path::Path, max_age: &str) -> String {
    format!("[Heartbeat]\nFile={}\nMaxAge={max_age}\n", file.display())
}

#[test]
fn a_stale_heartbeat_is_reported_in_the_log_and_the_status() {
    let s = Scratch::new("stale");
    s.write_conf("");
    let beat = s.path("job.beat");
    s.write_rule("job", &heartbeat_rule(&beat, "1s"));
    touch(&beat);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready: 1 rule");
    d.expect("rule job: healthy");
    // Keep it fresh for a while through `heartwatch beat`.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(heartwatch(&s.conf(), &["beat", "job"]).0, 0);
    }
    let last_beat = Instant::now();
    assert!(
        !d.drain().iter().any(|l| l.contains("failing")),
        "{:?}",
        d.seen
    );
    let line = d.expect("rule job: failing: stale: not modified for");
    let late = last_beat.elapsed().saturating_sub(Duration::from_secs(1));
    eprintln!("stale reported {late:?} after the deadline");
    assert!(line.contains("(max age 1s)"), "{line}");
    let status = s.wait_status("job  failing");
    assert!(status.contains("stale: not modified for"), "{status}");
    // `heartwatch status` shows the same.
    let (code, out, _) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("job  failing"), "{out}");
    // And a beat heals it.
    heartwatch(&s.conf(), &["beat", "job"]);
    d.expect("rule job: healthy again");
}

#[test]
fn missing_heartbeat_file_has_its_own_cause() {
    let s = Scratch::new("missing");
    s.write_conf("");
    s.write_rule("gone", &heartbeat_rule(&s.path("never.beat"), "10s"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule gone: failing: missing: the heartbeat file does not exist");
}

#[test]
fn startup_grace_holds_back_failures() {
    let s = Scratch::new("grace");
    s.write_conf("");
    let conf = std::fs::read_to_string(s.conf().join("heartwatch.conf"))
        .unwrap()
        .replace("StartupGrace=0s", "StartupGrace=2s");
    std::fs::write(s.conf().join("heartwatch.conf"), conf).unwrap();
    s.write_rule("late", &heartbeat_rule(&s.path("late.beat"), "10s"));
    let start = Instant::now();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready");
    s.wait_status("late  starting");
    d.expect("rule late: failing: missing");
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[test]
fn a_broken_reload_keeps_the_running_rules() {
    let s = Scratch::new("reload");
    s.write_conf("");
    let a = s.path("a.beat");
    touch(&a);
    s.write_rule("a", &heartbeat_rule(&a, "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready: 1 rule");
    d.expect("rule a: healthy");

    // A good reload adds a rule.
    let b = s.path("b.beat");
    s.write_rule("b", &heartbeat_rule(&b, "1h"));
    d.signal(SIGHUP);
    d.expect("reloaded: 2 rules");
    d.expect("rule b: failing: missing");

    // A broken rule is refused with path:line; the two rules stay.
    let bad = s.write_rule("c", "[Heartbeat]\nFile=relative\nMaxAge=1s\n");
    d.signal(SIGHUP);
    let line = d.expect("is not an absolute path");
    assert!(line.contains(&format!("{}:2:", bad.display())), "{line}");
    d.expect("reload refused: 1 error; the running configuration stays");
    let status = s.wait_status("rules: 2");
    assert!(status.contains("  a  healthy"), "{status}");
    assert!(!status.contains("  c "), "{status}");
    // The rule that was kept did not restart from scratch.
    assert!(!d.drain().iter().filter(|l| l.contains("rule a:")).count() > 1);
}

#[test]
fn sigterm_stops_cleanly() {
    let s = Scratch::new("term");
    s.write_conf("");
    s.write_rule("a", &heartbeat_rule(&s.path("a.beat"), "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready");
    let sent = Instant::now();
    d.signal(SIGTERM);
    let status = d.wait_exit(Duration::from_secs(30)).expect("did not exit");
    eprintln!("stopped {:?} after SIGTERM", sent.elapsed());
    assert!(status.success(), "{status:?}");
    d.expect("stopped");
}

#[test]
fn an_invalid_configuration_does_not_start() {
    let s = Scratch::new("nostart");
    s.write_conf("[Reboot]\nBogus=1\n");
    let mut d = Daemon::start(&s.conf(), &[]);
    let status = d.wait_exit(Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(3));
    d.expect("heartwatch.conf:8: unknown key Bogus= in [Reboot]");
}

#[test]
fn a_missing_device_says_what_to_do() {
    let s = Scratch::new("nodev");
    s.write_conf("");
    let conf = std::fs::read_to_string(s.conf().join("heartwatch.conf"))
        .unwrap()
        .replace("Device=none", "Device=/dev/no-such-watchdog");
    std::fs::write(s.conf().join("heartwatch.conf"), conf).unwrap();
    let mut d = Daemon::start(&s.conf(), &[]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(1)
    );
    d.expect("load the driver for your hardware (or `modprobe softdog`), or set Device=none");
}

/// A scratch configuration whose device is `path` (which need not exist).
fn conf_with_device(s: &Scratch, path: &std::path::Path) {
    s.write_conf("");
    let conf = std::fs::read_to_string(s.conf().join("heartwatch.conf"))
        .unwrap()
        .replace("Device=none", &format!("Device={}", path.display()));
    std::fs::write(s.conf().join("heartwatch.conf"), conf).unwrap();
}

#[test]
fn a_device_node_that_never_appears_is_waited_for_with_a_bound() {
    let s = Scratch::new("nodewait");
    let node = s.path("watchdog7");
    conf_with_device(&s, &node);
    let started = Instant::now();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect(&format!(
        "watchdog {}: not there yet; waiting up to 5s for its driver to load",
        node.display()
    ));
    assert_eq!(
        d.wait_exit(Duration::from_secs(60)).unwrap().code(),
        Some(1)
    );
    let waited = started.elapsed();
    d.expect("no such device");
    eprintln!("gave up after {waited:?}");
    // The bound, not a speed: the daemon gave the driver its 5 s.
    assert!(waited >= Duration::from_millis(4900), "{waited:?}");
}

#[test]
fn a_device_node_that_appears_while_waiting_is_opened() {
    let s = Scratch::new("nodeappears");
    let node = s.path("watchdog7");
    conf_with_device(&s, &node);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("not there yet; waiting up to 5s");
    // A regular file, not a watchdog: it is refused as soon as it appears
    // (a watchdog is a character device), which shows the daemon went on
    // to the path instead of waiting out its bound.
    std::fs::write(&node, b"").unwrap();
    d.expect(&format!("watchdog {}: appeared after", node.display()));
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(1)
    );
    d.expect("is not a character device (a regular file)");
    assert!(
        !d.drain().iter().any(|l| l.contains("no such device")),
        "{:#?}",
        d.seen
    );
}

#[test]
fn a_stop_ends_the_wait_for_a_device_node() {
    let s = Scratch::new("nodewaitstop");
    let node = s.path("watchdog7");
    conf_with_device(&s, &node);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("not there yet; waiting up to 5s");
    let signalled = Instant::now();
    d.signal(SIGTERM);
    d.expect("a signal arrived while waiting for the watchdog devices");
    assert!(d.wait_exit(Duration::from_secs(30)).is_some());
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
}

/// A notify socket whose reader stops reading (a hung service manager, a
/// test harness gone astray): once its queue is full a blocking send would
/// stop the loop, the feeding included. The daemon goes on: the messages
/// it cannot send are dropped and said once.
#[test]
fn a_notify_socket_nobody_reads_does_not_stop_the_loop() {
    let s = Scratch::new("notify-full");
    s.write_conf("");
    let beat = s.path("a.beat");
    touch(&beat);
    s.write_rule("a", &heartbeat_rule(&beat, "1h"));
    let socket_path = s.path("notify.sock");
    // Bound and never read.
    let _socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.conf())
            .env("NOTIFY_SOCKET", &socket_path)
            // A ping every 5 ms: the socket's queue is full at once.
            .env("WATCHDOG_USEC", "10000"),
    );
    d.expect("rule a: healthy");
    d.expect("systemd notify: ");
    // Well past the queue's length in pings: the loop still hears a
    // delete and stops when told to.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(&beat).unwrap();
    d.expect("rule a: failing: missing");
    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
    let complaints = d
        .drain()
        .iter()
        .filter(|l| l.contains("systemd notify: "))
        .count();
    assert_eq!(complaints, 1, "said once, not per message: {:#?}", d.seen);
}

#[test]
fn systemd_hears_ready_watchdog_status_reloading_and_stopping() {
    let s = Scratch::new("notify");
    s.write_conf("");
    s.write_rule("a", &heartbeat_rule(&s.path("a.beat"), "1h"));
    let socket_path = s.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.conf())
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000"),
    );
    let mut got = Vec::new();
    let mut recv = |want: &str| {
        let mut buf = [0u8; 1024];
        loop {
            let n = socket.recv(&mut buf).expect("no notification");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push(msg.clone());
            if msg.starts_with(want) {
                return msg;
            }
        }
    };
    let status = recv("STATUS=");
    assert!(status.contains("1 rule:"), "{status}");
    recv("READY=1");
    // Pings at half of WATCHDOG_USEC: several arrive.
    for _ in 0..3 {
        recv("WATCHDOG=1");
    }
    d.signal(SIGHUP);
    recv("RELOADING=1");
    recv("READY=1");
    d.signal(SIGTERM);
    recv("STOPPING=1");
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
}
