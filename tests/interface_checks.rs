//! `[Interface]` rules through the real binary, on a real interface: each
//! test makes a network namespace of its own with one end of a veth pair
//! in it, runs the daemon inside (`ip netns exec`), and pings across the
//! pair from this side so that packets arrive there. The traffic keeps the
//! rule healthy; its end, the link going down on either side, and the
//! interface's deletion each give their cause. The namespace and the veth
//! pair are removed when the test ends, passing or failing (`Net`'s Drop).
//!
//! These tests need root (network namespaces) and iproute2 and
//! iputils-ping (tests/peers.list). They run as root here and in CI; they
//! do not skip.

mod common;

use common::{Daemon, Scratch, rule_line};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A network namespace with the far end of a veth pair in it, and the ping
/// processes sent through the pair. Dropping it stops the pings (by PID)
/// and deletes the pair and the namespace.
struct Net {
    ns: String,
    /// The end on this side (the test's namespace).
    here: String,
    /// The end in `ns`, which the rule watches.
    there: String,
    /// The address of `there`.
    peer: String,
    pings: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new() -> Net {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 1_000_000);
        // A /30 of its own from 10.213.0.0/16 for each test of this run.
        let subnet = (pid % 4000) * 16 + n;
        let (hi, lo) = (subnet / 64 % 256, subnet % 64 * 4);
        // Interface names have at most 15 bytes: "hwi" + 7 + "a".
        let net = Net {
            ns: format!("hw-iface-{tag}"),
            here: format!("hwi{tag}a"),
            there: format!("hwi{tag}b"),
            peer: format!("10.213.{hi}.{}", lo + 2),
            pings: Vec::new(),
        };
        let addr_here = format!("10.213.{hi}.{}/30", lo + 1);
        let addr_there = format!("{}/30", net.peer);
        ip(&["netns", "add", &net.ns]);
        ip(&[
            "link", "add", &net.here, "type", "veth", "peer", "name", &net.there,
        ]);
        ip(&["link", "set", &net.there, "netns", &net.ns]);
        // No IPv6 on the pair: its neighbour discovery would send packets
        // that the test did not.
        let no_ipv6 = |dev: &str| {
            format!("f=/proc/sys/net/ipv6/conf/{dev}/disable_ipv6; [ ! -e $f ] || echo 1 > $f")
        };
        let here = Command::new("sh")
            .arg("-c")
            .arg(no_ipv6(&net.here))
            .status();
        let there = Command::new("ip")
            .args(["netns", "exec", &net.ns, "sh", "-c"])
            .arg(no_ipv6(&net.there))
            .status();
        assert!(here.unwrap().success() && there.unwrap().success());
        ip(&["addr", "add", &addr_here, "dev", &net.here]);
        ip(&["-n", &net.ns, "addr", "add", &addr_there, "dev", &net.there]);
        ip(&["link", "set", &net.here, "up"]);
        ip(&["-n", &net.ns, "link", "set", &net.there, "up"]);
        net
    }

    /// Starts pinging `there` from this side, five times a second.
    fn start_traffic(&mut self) {
        let child = Command::new("ping")
            .args(["-q", "-n", "-i", "0.2", "-I", &self.here, &self.peer])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping (iputils-ping)");
        self.pings.push(child);
    }

    /// Starts pinging the namespace's own loopback from inside it.
    fn start_loopback_traffic(&mut self) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "ping",
                "-q",
                "-n",
                "-i",
                "0.2",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping (iputils-ping)");
        self.pings.push(child);
    }

    fn stop_traffic(&mut self) {
        for mut child in self.pings.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `heartwatch ARGS` in the namespace, as a command to run.
    fn heartwatch(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, common::BIN]).args(args);
        c
    }

    /// The interface's receive counter, read inside the namespace.
    fn rx_packets(&self) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "cat"])
            .arg(format!(
                "/sys/class/net/{}/statistics/rx_packets",
                self.there
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_traffic();
        // Deleting one end deletes the pair; the end inside goes with the
        // namespace if it is still there.
        let _ = Command::new("ip")
            .args(["link", "del", &self.here])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

const WITHIN: &str = "3s";

fn interface_rule(s: &Scratch, name: &str, interface: &str) {
    s.write_rule(
        name,
        &format!("[Interface]\nName={interface}\nWithin={WITHIN}\nCheckInterval=500ms\n"),
    );
}

/// The daemon, run inside the namespace.
fn start(net: &Net, s: &Scratch) -> Daemon {
    let conf = s.conf();
    Daemon::start_with(&mut net.heartwatch(&["run", "--config", conf.to_str().unwrap()]))
}

/// Waits until rule `name`'s line in the status contains `needle`.
fn wait_rule(s: &Scratch, name: &str, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let status = s.status();
        if status.lines().any(|l| l.starts_with("  ")) {
            let line = rule_line(&status, name).to_string();
            if line.contains(needle) {
                return line;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rule {name} never showed {needle:?}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn traffic_keeps_it_healthy_silence_fails_it_and_traffic_again_heals_it() {
    let s = Scratch::new("iface-traffic");
    s.write_conf("");
    let mut net = Net::new();
    interface_rule(&s, "link", &net.there);
    net.start_traffic();
    let mut daemon = start(&net, &s);
    wait_rule(&s, "link", "healthy");
    // Twice Within= with packets arriving: never failing, and the counter
    // did move (the pings reached the namespace).
    let before = net.rx_packets();
    std::thread::sleep(Duration::from_secs(6));
    assert!(net.rx_packets() > before, "no packet crossed the veth pair");
    let line = wait_rule(&s, "link", "healthy");
    assert!(
        !daemon.drain().iter().any(|l| l.contains("failing")),
        "{line}\n{:#?}",
        daemon.seen
    );

    net.stop_traffic();
    let line = wait_rule(&s, "link", "failing");
    assert!(
        line.contains("no packet received for") && line.contains("(within 3s)"),
        "{line}"
    );
    daemon.expect("rule link: failing: no packet received for");

    net.start_traffic();
    wait_rule(&s, "link", "healthy");
    daemon.expect("rule link: healthy again after");
}

#[test]
fn down_on_either_side_and_deletion_are_causes_of_their_own() {
    let s = Scratch::new("iface-down");
    s.write_conf("");
    let mut net = Net::new();
    interface_rule(&s, "link", &net.there);
    net.start_traffic();
    let mut daemon = start(&net, &s);
    wait_rule(&s, "link", "healthy");

    // The far side goes down: the watched end loses its carrier.
    ip(&["link", "set", &net.here, "down"]);
    let line = wait_rule(&s, "link", "failing");
    assert!(line.contains("down: operstate"), "{line}");
    assert!(line.contains("no carrier"), "{line}");
    ip(&["link", "set", &net.here, "up"]);
    wait_rule(&s, "link", "healthy");

    // The watched end itself is brought down: no carrier is reported.
    ip(&["-n", &net.ns, "link", "set", &net.there, "down"]);
    let line = wait_rule(&s, "link", "failing");
    assert!(
        line.contains("down: operstate down, carrier not reported"),
        "{line}"
    );
    daemon.expect("rule link: failing: down: operstate down");
    ip(&["-n", &net.ns, "link", "set", &net.there, "up"]);
    wait_rule(&s, "link", "healthy");

    // Deleted: missing.
    ip(&["-n", &net.ns, "link", "del", &net.there]);
    let line = wait_rule(&s, "link", "failing");
    assert!(
        line.contains("missing: no such network interface"),
        "{line}"
    );
    daemon.expect("rule link: failing: missing: no such network interface");
    let record = s.status_record();
    assert!(record.contains("\tinterface\t"), "{record}");
}

#[test]
fn loopback_whose_operstate_is_unknown_counts_as_up_by_its_carrier() {
    let s = Scratch::new("iface-lo");
    s.write_conf("");
    let mut net = Net::new();
    interface_rule(&s, "lo", "lo");
    // A new namespace's loopback is down.
    let mut daemon = start(&net, &s);
    let line = wait_rule(&s, "lo", "failing");
    assert!(line.contains("down: operstate down"), "{line}");
    // Up, loopback says `unknown` with carrier 1: up, and with packets
    // (nothing else uses this namespace's loopback) healthy.
    ip(&["-n", &net.ns, "link", "set", "lo", "up"]);
    net.start_loopback_traffic();
    wait_rule(&s, "lo", "healthy");
    net.stop_traffic();
    let line = wait_rule(&s, "lo", "failing");
    assert!(line.contains("no packet received for"), "{line}");
    assert!(!line.contains("down"), "{line}");
    daemon.expect("rule lo: failing: no packet received for");
}

#[test]
fn check_explains_the_rule_and_warns_of_an_interface_absent_now() {
    let s = Scratch::new("iface-check");
    s.write_conf("");
    let net = Net::new();
    interface_rule(&s, "link", &net.there);
    interface_rule(&s, "later", "hwnosuch0");
    let conf = s.conf();
    let out = net
        .heartwatch(&["check", "--config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "link: if network interface {} is not up or receives no packet for 3s (looked at every 500ms)",
            net.there
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: rule later: network interface hwnosuch0 does not exist now (/sys/class/net/hwnosuch0)"
        ),
        "{stdout}"
    );
    // The end that exists in the namespace is not warned of.
    assert!(!stdout.contains("rule link: network interface"), "{stdout}");
    // Outside the namespace that end does not exist: there it is warned of.
    let (code, stdout, _) = common::heartwatch(&conf, &["check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "warning: rule link: network interface {}",
            net.there
        )),
        "{stdout}"
    );
}
