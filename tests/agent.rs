//! `heartwatch agent` and draining, through the real binary: the agent on
//! its own (no record, a damaged one, a daemon that is gone), and the
//! agent behind Debian's real HAProxy. The test runs what systemd's
//! `heartwatch-agent.socket` (`Accept=yes`) would: a listener that starts
//! `heartwatch agent` per connection with the connection as standard input
//! and output. HAProxy asks it with `agent-check`; the test reads the
//! backend server's state from HAProxy's runtime API (`show stat` on its
//! stats socket). No test reboots this machine: `[Reboot] Command=` leaves
//! a marker and `Forced=no` skips reboot(2).

mod common;

use common::{BIN, Daemon, Scratch, touch};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TEMPLATE: &str = include_str!("agent/haproxy.cfg.in");

/// `heartwatch agent --config CONF` with `stdin`: (exit code, stdout, stderr).
fn agent_with(conf: &Path, stdin: Stdio) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("agent")
        .arg("--config")
        .arg(conf)
        .stdin(stdin)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn agent(conf: &Path) -> String {
    let (code, out, err) = agent_with(conf, Stdio::null());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    assert!(out.ends_with('\n'), "{out:?}");
    out
}

#[test]
fn without_a_status_record_the_agent_says_down() {
    let s = Scratch::new("agent-none");
    s.write_conf("");
    let (code, out, err) = agent_with(&s.conf(), Stdio::null());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "down #no heartwatch status (is heartwatch running?)\n");
    assert!(err.contains("run/status"), "says which file: {err}");
}

#[test]
fn a_damaged_record_or_a_directory_makes_the_agent_say_down() {
    let s = Scratch::new("agent-damaged");
    s.write_conf("");
    std::fs::create_dir_all(s.path("run")).unwrap();
    for damaged in [
        "",
        "heartwatch-status 1\nversion 0.2.0\n",
        "\u{0}\u{1}binary",
    ] {
        std::fs::write(s.path("run/status"), damaged).unwrap();
        assert_eq!(
            agent(&s.conf()),
            "down #heartwatch status record is damaged\n",
            "{damaged:?}"
        );
    }
    std::fs::remove_file(s.path("run/status")).unwrap();
    std::fs::create_dir(s.path("run/status")).unwrap();
    assert_eq!(
        agent(&s.conf()),
        "down #no heartwatch status (is heartwatch running?)\n"
    );
}

#[test]
fn the_agent_answers_for_a_running_daemon_and_down_once_it_is_gone() {
    let s = Scratch::new("agent-gone");
    s.write_conf("");
    let beat = s.path("beat");
    touch(&beat);
    s.write_rule(
        "job",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=100ms\n",
            beat.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule job: healthy");
    s.wait_status("job  healthy");
    assert_eq!(agent(&s.conf()), "up ready\n");
    // A daemon killed without an orderly stop leaves its record behind.
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon exits");
    assert!(s.status_record().contains("\nagent up\t\n"));
    assert_eq!(agent(&s.conf()), "down #heartwatch is not running\n");
    // An orderly stop says so.
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule job: healthy");
    s.wait_status("job  healthy");
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");
    assert_eq!(agent(&s.conf()), "down #heartwatch stopped\n");
}

#[test]
fn the_agent_does_not_wait_for_a_peer_that_sends_nothing_and_never_closes() {
    let s = Scratch::new("agent-silent");
    s.write_conf("");
    // A listener whose connection stays open and silent: the agent's
    // stdin and stdout, as with systemd's Accept=yes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut child = Command::new(BIN)
        .arg("agent")
        .arg("--config")
        .arg(s.conf())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            conn.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(conn)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(peer.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line,
        "down #no heartwatch status (is heartwatch running?)\n"
    );
    // The peer never closes: the agent exits anyway (the limit only keeps
    // a broken agent from hanging the test).
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not exit while its peer stayed open");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    peer.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    peer.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "one line only: {rest:?}");
    let _ = peer.write_all(b"late\n");
}

/// What systemd's heartwatch-agent.socket does: accepts connections and
/// starts `heartwatch agent` for each with the connection as stdin and
/// stdout. Stopped (and every agent waited for) when dropped.
struct AgentSocket {
    port: u16,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    accept: Option<JoinHandle<()>>,
}

impl AgentSocket {
    fn start(conf: PathBuf) -> AgentSocket {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2) = (stop.clone(), served.clone());
        let accept = std::thread::spawn(move || {
            let waiters: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let mut child: Child = Command::new(BIN)
                    .arg("agent")
                    .arg("--config")
                    .arg(&conf)
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                        conn.try_clone().unwrap(),
                    )))
                    .stdout(Stdio::from(std::os::fd::OwnedFd::from(conn)))
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                served2.fetch_add(1, Ordering::SeqCst);
                waiters
                    .lock()
                    .unwrap()
                    .push(std::thread::spawn(move || drop(child.wait())));
            }
            for w in std::mem::take(&mut *waiters.lock().unwrap()) {
                let _ = w.join();
            }
        });
        AgentSocket {
            port,
            stop,
            served,
            accept: Some(accept),
        }
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// The backend server: accepts HAProxy's health-check connections and
/// closes them.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                drop(conn);
            }
        });
        Server {
            port,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// A port nothing listens on at the moment (for HAProxy's frontend).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground, stopped by its PID when dropped.
struct Haproxy {
    child: Child,
    socket: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, server: u16, agent: u16) -> Haproxy {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("HAProxy is not installed: tests/install-peers installs it (tests/peers.list)");
        let socket = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        let text = TEMPLATE
            .replace("@SOCKET@", &socket.display().to_string())
            .replace("@FRONTEND_PORT@", &free_port().to_string())
            .replace("@SERVER@", &format!("127.0.0.1:{server}"))
            .replace("@AGENT_PORT@", &agent.to_string())
            .replace("@AGENT_INTER@", "200ms");
        assert!(!text.contains('@'), "every @...@ replaced:\n{text}");
        std::fs::write(&cfg, text).unwrap();
        let check = Command::new(binary)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let h = Haproxy { child, socket };
        let start = Instant::now();
        while UnixStream::connect(&h.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "HAProxy's stats socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }

    /// The `show stat` row of web/web1, by column name.
    fn server(&self) -> Vec<(String, String)> {
        let mut c = UnixStream::connect(&self.socket).unwrap();
        c.write_all(b"show stat\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .map(String::from)
            .collect();
        let row = lines
            .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
            .find(|f| f.len() > 1 && f[0] == "web" && f[1] == "web1")
            .unwrap_or_else(|| panic!("no web/web1 in show stat:\n{text}"));
        header.into_iter().zip(row).collect()
    }

    fn field(row: &[(String, String)], name: &str) -> String {
        row.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} column: {row:?}"))
    }

    /// Waits until web1's status begins with `want`; returns its row.
    fn wait_status(&self, want: &str) -> Vec<(String, String)> {
        let start = Instant::now();
        loop {
            let row = self.server();
            if Self::field(&row, "status").starts_with(want) {
                return row;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "web1 never became {want}: {row:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What HAProxy shows of the agent's last answer: for `down`, the reason
/// is in the row (`last_agt`, "via agent : down (REASON)"); for `drain`,
/// only the state is.
fn agent_reason(row: &[(String, String)]) -> String {
    row.iter()
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn haproxy_drains_the_server_while_a_rule_fails_and_before_a_reboot() {
    let s = Scratch::new("agent-haproxy");
    let web = s.path("web");
    let host = s.path("host");
    let marker = s.path("rebooted");
    touch(&web);
    touch(&host);
    s.write_rule(
        "web",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=100ms\n[Escalate]\nDrain=yes\n",
            web.display()
        ),
    );
    s.write_rule(
        "host",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=100ms\n[Escalate]\nFinally=reboot\n",
            host.display()
        ),
    );
    let reboot = |drain: &str| {
        format!(
            "[Reboot]\nDrain={drain}\nCommand=sh -c 'echo reboot >> {}'\nOrderlyTimeout=1s\nForced=no\n",
            marker.display()
        )
    };
    // A drain long enough that only a recovery ends it.
    s.write_conf(&reboot("1h"));
    let sock = AgentSocket::start(s.conf());
    let server = Server::start();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule web: healthy");
    d.expect("rule host: healthy");
    let h = Haproxy::start(&s.dir, server.port, sock.port);
    h.wait_status("UP");
    let asked = sock.served.load(Ordering::SeqCst);

    // A rule with Drain=yes fails: DRAIN, with the rule and its cause.
    std::fs::remove_file(&web).unwrap();
    d.expect("rule web: failing: missing");
    h.wait_status("DRAIN");
    assert!(
        sock.served.load(Ordering::SeqCst) > asked,
        "the agent was asked"
    );
    let said = agent(&s.conf());
    assert!(said.starts_with("drain #rule web: missing"), "{said}");
    // It recovers: UP again (`ready` ends the drain).
    touch(&web);
    d.expect("rule web: healthy again");
    h.wait_status("UP");

    // A reboot is decided: DRAIN for the drain; the rule recovers during
    // it, so the reboot is cancelled: UP, and no reboot ran.
    std::fs::remove_file(&host).unwrap();
    d.expect("draining for 1h before the reboot");
    h.wait_status("DRAIN");
    let said = agent(&s.conf());
    assert!(
        said.starts_with("drain #reboot for rule host: missing"),
        "{said}"
    );
    touch(&host);
    d.expect("the reboot is cancelled");
    h.wait_status("UP");
    assert!(!marker.exists(), "a cancelled reboot ran nothing");
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");
    // An orderly stop: DOWN, since no daemon vouches for the host.
    let row = h.wait_status("DOWN");
    assert!(agent_reason(&row).contains("heartwatch stopped"), "{row:?}");

    // A drain of 3s that ends: DRAIN, then the orderly reboot, then DOWN.
    s.write_conf(&reboot("3s"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule host: healthy");
    h.wait_status("UP");
    std::fs::remove_file(&host).unwrap();
    d.expect("draining for 3s before the reboot");
    h.wait_status("DRAIN");
    d.expect("orderly reboot: running `sh -c");
    let row = h.wait_status("DOWN");
    assert!(
        agent_reason(&row).contains("rebooting for rule host: missing"),
        "{row:?}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reboot\n");
    let drained = d.seen.iter().position(|l| l.contains("draining for 3s"));
    let rebooted = d
        .seen
        .iter()
        .position(|l| l.contains("orderly reboot: running"));
    assert!(drained < rebooted, "the drain came first: {:#?}", d.seen);
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");

    // A daemon that is killed: DOWN from UP.
    touch(&host);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule host: healthy");
    h.wait_status("UP");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon exits");
    let row = h.wait_status("DOWN");
    assert!(
        agent_reason(&row).contains("heartwatch is not running"),
        "{row:?}"
    );
    drop(h);
    drop(sock);
    drop(server);
}

/// The backend lines of the tested configuration with an operator's values.
fn readme_snippet() -> String {
    let at = TEMPLATE.find("\nbackend web").unwrap() + 1;
    TEMPLATE[at..]
        .replace("@SERVER@", "192.0.2.10:80")
        .replace("@AGENT_PORT@", "5555")
        .replace("@AGENT_INTER@", "2s")
}

#[test]
fn the_readme_shows_the_tested_haproxy_lines() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Draining behind HAProxy")
        .nth(1)
        .expect("README has a Draining behind HAProxy section");
    let snippet = readme_snippet();
    assert!(
        section.contains(&format!("```\n{snippet}```\n")),
        "the README's HAProxy snippet is not tests/agent/haproxy.cfg.in's backend:\n{snippet}"
    );
}

#[test]
fn check_says_which_rules_drain_and_refuses_a_bad_drain() {
    let s = Scratch::new("agent-check");
    s.write_conf("[Reboot]\nDrain=2min\n");
    s.write_rule(
        "web",
        "[Heartbeat]\nFile=/run/web\nMaxAge=1min\n[Escalate]\nDrain=yes\n",
    );
    let (code, out, err) = common::heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("heartwatch agent answers drain while it fails"),
        "{out}"
    );
    s.write_conf("[Reboot]\nDrain=2h\n");
    let (code, _, err) = common::heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("heartwatch.conf:8: Drain=: \"2h\" is longer than an hour"),
        "{err}"
    );
}

/// A stop during the drain cancels the reboot: nothing was recorded yet,
/// so a device left armed would reset the host with no reason written and
/// no budget counted. The daemon says so, and the record says no reboot.
#[test]
fn a_stop_during_the_drain_cancels_the_reboot() {
    let s = Scratch::new("agent-stop-drain");
    let host = s.path("host");
    let marker = s.path("rebooted");
    s.write_conf(&format!(
        "[Reboot]\nDrain=1h\nCommand=sh -c 'echo reboot >> {}'\nForced=no\n",
        marker.display()
    ));
    s.write_rule(
        "host",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=100ms\n[Escalate]\nFinally=reboot\n",
            host.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("draining for 1h before the reboot");
    d.signal(libc::SIGTERM);
    d.expect("stopping during the drain before a reboot: the reboot is cancelled");
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");
    assert!(!marker.exists(), "no reboot ran");
    assert!(!s.status_record().contains("\nlast-reboot"));
}
