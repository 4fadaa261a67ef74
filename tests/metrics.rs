//! `[Metrics] TextfileDirectory=` against the real peers: Debian's
//! `prometheus-node-exporter` reads heartwatch.prom through its textfile
//! collector and is scraped over HTTP while a heartbeat rule fails and
//! recovers; `promtool check metrics` finds nothing to say about the file;
//! `promtool test rules` runs the alerting rules' unit tests. Also: a
//! textfile directory that is missing, then made, and a symlink planted at
//! the file's name.

mod common;
#[path = "common/pings.rs"]
mod pings;

use common::{Daemon, Scratch, touch};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMTOOL: &str = "/usr/bin/promtool";

/// The node exporter on a free loopback port, textfile collector only;
/// stopped by PID when dropped.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(dir: &Path) -> Exporter {
        // A port the kernel just handed out and that was let go at once: a
        // race with other tests is possible, so a start that fails retries.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(EXPORTER)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus-node-exporter (tests/peers.list)");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Exporter { child, port };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the node exporter never listened");
    }

    /// GET /metrics over HTTP/1.0 (no chunked answer): the body.
    fn scrape(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.to_string()
    }

    /// Scrapes until every `(series, value)` is there; the body.
    fn wait_for(&self, want: &[(&str, &str)]) -> String {
        let start = Instant::now();
        loop {
            let body = self.scrape();
            if want.iter().all(|(s, v)| value(&body, s) == Some(v)) {
                return body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {want:?} in\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `series` (name and labels as written).
fn value<'a>(body: &'a str, series: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(PROMTOOL)
        .args(args)
        .output()
        .expect("promtool (Debian's prometheus, tests/peers.list)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `promtool check metrics < file`: success and no complaint.
fn check_metrics(file: &Path) {
    let out = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {}: {said}",
        file.display()
    );
}

const RULE: &str = "web-1.example@a:b";

fn setup(s: &Scratch, prom: &Path) -> PathBuf {
    s.write_conf(&format!(
        "[Reboot]\nBudget=0\nCommand=/bin/true\n[Metrics]\nTextfileDirectory={}\n",
        prom.display()
    ));
    let beat = s.path("web.beat");
    touch(&beat);
    s.write_rule(
        RULE,
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=true\nRepairAttempts=1\nFinally=log\n",
            beat.display()
        ),
    );
    let pidfile = s.path("me.pid");
    std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    s.write_rule("me", &format!("[Process]\nPidFile={}\n", pidfile.display()));
    // Fails at once and reaches `reboot`, which Budget=0 suppresses.
    common::doomed_rule(s);
    beat
}

#[test]
fn the_node_exporter_serves_a_rule_failing_and_recovering() {
    let s = Scratch::new("metrics-exporter");
    let prom = s.path("textfile");
    std::fs::create_dir(&prom).unwrap();
    let beat = setup(&s, &prom);
    let exporter = Exporter::start(&prom);
    let mut daemon = Daemon::start(&s.conf(), &[]);
    daemon.expect("ready");

    let state = |st: &str| {
        format!("heartwatch_rule_state{{kind=\"heartbeat\",rule=\"{RULE}\",state=\"{st}\"}}")
    };
    let failures = format!("heartwatch_rule_failures_total{{kind=\"heartbeat\",rule=\"{RULE}\"}}");
    let succeeded = format!(
        "heartwatch_rule_repairs_total{{kind=\"heartbeat\",outcome=\"succeeded\",rule=\"{RULE}\"}}"
    );
    let me = "heartwatch_rule_state{kind=\"process\",rule=\"me\",state=\"healthy\"}";

    // Healthy while beaten.
    let start = Instant::now();
    let body = loop {
        touch(&beat);
        let body = exporter.scrape();
        if value(&body, &state("healthy")) == Some("1") && value(&body, me) == Some("1") {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never healthy:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&body, &failures), Some("0"), "{body}");
    assert_eq!(value(&body, "heartwatch_rules"), Some("3"), "{body}");
    assert_eq!(
        value(&body, "node_textfile_scrape_error"),
        Some("0"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "heartwatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    let mtime = format!(
        "node_textfile_mtime_seconds{{file=\"{}\"}}",
        prom.join("heartwatch.prom").display()
    );
    let mtime_short = "node_textfile_mtime_seconds{file=\"heartwatch.prom\"}";
    assert!(
        value(&body, &mtime).or(value(&body, mtime_short)).is_some(),
        "no mtime for heartwatch.prom:\n{body}"
    );

    // The beat stops: failing, counted once, repaired once.
    let body = exporter.wait_for(&[
        (&state("failing"), "1"),
        (&state("healthy"), "0"),
        (&failures, "1"),
        (&succeeded, "1"),
    ]);
    assert_eq!(
        value(&body, "heartwatch_reboots_suppressed_total"),
        Some("1"),
        "{body}"
    );
    assert_eq!(
        value(&body, "heartwatch_reboot_suppressed"),
        Some("1"),
        "{body}"
    );
    assert_eq!(
        value(&body, "heartwatch_reboots_decided_total"),
        Some("0"),
        "{body}"
    );
    assert_eq!(
        value(&body, "heartwatch_reboot_budget"),
        Some("0"),
        "{body}"
    );
    assert_eq!(
        value(&body, "node_textfile_scrape_error"),
        Some("0"),
        "{body}"
    );

    // Beaten again: healthy, and the counter stays where it was.
    let start = Instant::now();
    let body = loop {
        touch(&beat);
        let body = exporter.scrape();
        if value(&body, &state("healthy")) == Some("1") {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never healthy again:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&body, &failures), Some("1"), "{body}");
    assert_eq!(value(&body, &state("failing")), Some("0"), "{body}");
    // Not `contains("node_textfile_scrape_error 1")`: its HELP says that.
    assert_eq!(
        value(&body, "node_textfile_scrape_error"),
        Some("0"),
        "{body}"
    );

    check_metrics(&prom.join("heartwatch.prom"));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
    drop(exporter);
}

#[test]
fn a_missing_directory_is_said_once_and_used_when_it_appears() {
    let s = Scratch::new("metrics-missing");
    let prom = s.path("not-yet");
    let beat = setup(&s, &prom);
    let mut daemon = Daemon::start(&s.conf(), &[]);
    daemon.expect("ready");
    daemon.expect(&format!(
        "cannot write {}",
        prom.join("heartwatch.prom").display()
    ));
    // Changes go on (the doomed rule, the beat) and feeding with them.
    touch(&beat);
    s.wait_status("doomed");
    std::thread::sleep(Duration::from_millis(1500));
    let said = daemon
        .drain()
        .iter()
        .filter(|l| l.contains("cannot write") && l.contains("heartwatch.prom"))
        .count();
    assert_eq!(said, 1, "{:#?}", daemon.seen);

    std::fs::create_dir(&prom).unwrap();
    daemon.expect("heartwatch.prom: written again");
    let file = prom.join("heartwatch.prom");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("heartwatch_rules 3")
    );
    check_metrics(&file);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
}

#[test]
fn a_symlink_at_the_file_is_replaced_not_followed() {
    let s = Scratch::new("metrics-symlink");
    let prom = s.path("textfile");
    std::fs::create_dir(&prom).unwrap();
    let target = s.path("elsewhere");
    std::fs::write(&target, "precious\n").unwrap();
    let file = prom.join("heartwatch.prom");
    std::os::unix::fs::symlink(&target, &file).unwrap();
    // And a FIFO at the temporary's name: removed, never opened.
    nix::unistd::mkfifo(
        &prom.join(".heartwatch.prom.tmp"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    setup(&s, &prom);
    let mut daemon = Daemon::start(&s.conf(), &[]);
    daemon.expect("ready");
    let start = Instant::now();
    while !std::fs::symlink_metadata(&file).unwrap().is_file() {
        assert!(start.elapsed() < Duration::from_secs(30), "never replaced");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("heartwatch_rules 3")
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
}

#[test]
fn the_alerting_rules_pass_their_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let alerts = root.join("packaging/heartwatch.alerts.yml");
    let (ok, said) = promtool(&["check", "rules", alerts.to_str().unwrap()]);
    assert!(ok, "promtool check rules: {said}");
    let tests = root.join("tests/metrics/alerts.test.yml");
    let (ok, said) = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(ok, "promtool test rules: {said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn the_readme_example_passes_promtool() {
    check_metrics(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/example.prom"));
}

/// Runs heartwatch, with systemd's notify socket at `pings`, in a mount
/// namespace of its own after `setup` (shell) has prepared the mounts
/// there; nothing is mounted on the host.
fn in_private_mounts(setup: &str, conf: &Path, pings: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-euc"])
        .arg(format!("{setup}\nexec \"$0\" run --config \"$1\""))
        .arg(common::BIN)
        .arg(conf)
        .env("NOTIFY_SOCKET", pings)
        .env("WATCHDOG_USEC", pings::WATCHDOG.as_micros().to_string());
    c
}

/// A textfile directory on a full filesystem: said once, the loop goes on
/// (systemd's pings, the status), and once there is room the file is
/// written again.
#[test]
fn a_full_textfile_directory_is_said_once_and_never_stops_the_loop() {
    let s = Scratch::new("metrics-full");
    let prom = s.path("textfile");
    std::fs::create_dir(&prom).unwrap();
    let beat = setup(&s, &prom);
    let pings = pings::Pings::listen(&s.path("notify.sock"));
    let fill = format!(
        "mount -t tmpfs -o size=64k,mode=0755 hw-prom {p}\ndd if=/dev/zero of={p}/filler bs=4k 2>/dev/null || true\n! echo x > {p}/probe",
        p = prom.display()
    );
    let mut daemon = Daemon::start_with(&mut in_private_mounts(
        &fill,
        &s.conf(),
        &s.path("notify.sock"),
    ));
    daemon.expect("ready");
    let file = prom.join("heartwatch.prom");
    daemon.expect(&format!(
        "cannot write {}: ENOSPC: No space left on device",
        file.display()
    ));
    let since = Instant::now();
    // Changes go on while it is full: the beat goes stale and comes back.
    touch(&beat);
    daemon.expect(&format!("rule {RULE}: failing"));
    touch(&beat);
    daemon.expect(&format!("rule {RULE}: healthy again"));
    // A stretch of a few pings (systemd wants one a second).
    std::thread::sleep(Duration::from_secs(3));
    pings::assert_pinged(&pings, since, "while the textfile directory is full");
    let said = daemon
        .drain()
        .iter()
        .filter(|l| l.contains("cannot write") && l.contains("heartwatch.prom"))
        .count();
    assert_eq!(said, 1, "{:#?}", daemon.seen);
    // Room again (from inside the daemon's mount namespace).
    let pid = daemon.child.id().to_string();
    let freed = Command::new("nsenter")
        .args(["-t", &pid, "-m", "rm", "-f"])
        .arg(prom.join("filler"))
        .status()
        .unwrap();
    assert!(freed.success());
    daemon.expect(&format!("{}: written again", file.display()));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
    assert!(
        !common::mounted_on_host(&prom),
        "the tmpfs leaked to the host"
    );
    assert!(!file.exists(), "written on the host, not in the tmpfs");
}

/// A read-only textfile directory: said once, the daemon runs on.
#[test]
fn a_read_only_textfile_directory_is_said_once() {
    let s = Scratch::new("metrics-ro");
    let prom = s.path("textfile");
    std::fs::create_dir(&prom).unwrap();
    let beat = setup(&s, &prom);
    let pings = pings::Pings::listen(&s.path("notify.sock"));
    let ro = format!(
        "mount -t tmpfs -o ro,size=64k,mode=0755 hw-prom {}",
        prom.display()
    );
    let mut daemon = Daemon::start_with(&mut in_private_mounts(
        &ro,
        &s.conf(),
        &s.path("notify.sock"),
    ));
    daemon.expect("ready");
    daemon.expect(&format!(
        "cannot write {}: EROFS: Read-only file system",
        prom.join("heartwatch.prom").display()
    ));
    let since = Instant::now();
    touch(&beat);
    daemon.expect(&format!("rule {RULE}: failing"));
    // A stretch of a few pings (systemd wants one a second).
    std::thread::sleep(Duration::from_secs(3));
    pings::assert_pinged(&pings, since, "while the textfile directory is read-only");
    let said = daemon
        .drain()
        .iter()
        .filter(|l| l.contains("cannot write") && l.contains("heartwatch.prom"))
        .count();
    assert_eq!(said, 1, "{:#?}", daemon.seen);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(30)).is_some());
    assert!(
        !common::mounted_on_host(&prom),
        "the tmpfs leaked to the host"
    );
}
