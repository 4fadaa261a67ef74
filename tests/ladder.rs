//! Process rules, the escalation ladder, repair commands and the reboot
//! path, through the real binary with real processes. No test reboots this
//! machine: `[Reboot] Command=` points at a script that leaves a marker and
//! `Forced=no` skips reboot(2); the real path is proven in the VM suite.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;

/// A child process killed and reaped when dropped, so that a failing
/// test leaves nothing behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn sleeper() -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn process_rule(pidfile: &Path, extra: &str) -> String {
    format!(
        "[Process]\nPidFile={}\nCheckInterval=200ms\n{extra}",
        pidfile.display()
    )
}

fn reboot_conf(s: &Scratch, budget: u32) -> String {
    let marker = s.path("rebooted");
    format!(
        "[Reboot]\nBudget={budget}\nCommand=sh -c 'echo reboot >> {}'\nOrderlyTimeout=1s\nForced=no\n",
        marker.display()
    )
}

#[test]
fn a_killed_process_is_seen_dead_at_once() {
    let s = Scratch::new("death");
    s.write_conf("");
    // Five processes, each its own rule with a check interval of an hour:
    // only the pidfd can see a death quickly.
    let mut children = Vec::new();
    for i in 0..5 {
        let child = sleeper();
        let pidfile = s.path(&format!("p{i}.pid"));
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        s.write_rule(
            &format!("p{i}"),
            &format!(
                "[Process]\nPidFile={}\nCheckInterval=1h\n",
                pidfile.display()
            ),
        );
        children.push(child);
    }
    let mut d = Daemon::start(&s.conf(), &[]);
    for i in 0..5 {
        d.expect(&format!("rule p{i}: healthy"));
    }
    // The look-up that found them returns before their pidfds are polled;
    // give the loop a moment to take them in.
    std::thread::sleep(Duration::from_millis(200));
    let mut latencies = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        child.kill().unwrap();
        let killed = Instant::now();
        let (line, _) = d
            .wait_for(
                &format!("rule p{i}: failing: dead"),
                Duration::from_secs(30),
            )
            .expect("death not reported");
        latencies.push(killed.elapsed());
        assert!(line.contains("dead: the process exited"), "{line}");
    }
    latencies.sort();
    eprintln!("process death reported after (kill to log line, through a pipe): {latencies:?}");
}

#[test]
fn a_reused_pid_is_treated_as_dead() {
    let s = Scratch::new("reuse");
    s.write_conf("");
    let mut a = sleeper();
    let pid = a.id();
    let pidfile = s.path("r.pid");
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    s.write_rule("r", &process_rule(&pidfile, ""));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule r: healthy");
    a.kill().unwrap();
    a.wait().unwrap();
    d.expect("rule r: failing: dead: the process exited");
    // Make the kernel hand the same PID to an unrelated process. Start
    // times count clock ticks (10 ms): a real reuse, after the PID space
    // wrapped, is never within a tick of the death; this one must not be.
    std::thread::sleep(Duration::from_millis(200));
    let mut b = None;
    // Other processes on the machine fork too: try until ours wins the race.
    for _ in 0..5000 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).unwrap();
        let mut candidate = sleeper();
        if candidate.id() == pid {
            b = Some(candidate);
            break;
        }
        candidate.kill().unwrap();
        candidate.wait().unwrap();
    }
    let mut b = b.expect("could not get the PID reused");
    // The pidfile was not rewritten; the PID is alive but another process.
    d.expect("rule r: failing: dead: the PID now belongs to another process");
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !d.drain()
            .iter()
            .any(|l| l.contains("rule r: healthy again")),
        "{:?}",
        d.seen
    );
    let status = s.wait_status("the PID now belongs to another process");
    assert!(status.contains("  r  failing"), "{status}");
    b.kill().unwrap();
    b.wait().unwrap();
}

#[test]
fn a_garbage_pidfile_and_a_zombie_have_their_own_causes() {
    let s = Scratch::new("garbage");
    s.write_conf("");
    let pidfile = s.path("g.pid");
    std::fs::write(&pidfile, "not a pid\n").unwrap();
    s.write_rule("g", &process_rule(&pidfile, ""));
    // A child we never reap stays a zombie.
    let mut zombie = Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let zpid = s.path("z.pid");
    std::fs::write(&zpid, format!("{}\n", zombie.id())).unwrap();
    s.write_rule("z", &process_rule(&zpid, ""));
    s.write_rule("m", &process_rule(&s.path("missing.pid"), ""));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule g: failing: pidfile garbage");
    d.expect("rule z: failing: dead: the process is a zombie");
    d.expect("rule m: failing: pidfile missing");
    zombie.wait().unwrap();
}

#[test]
fn executable_rules_find_a_process_by_its_binary() {
    let s = Scratch::new("exe");
    s.write_conf("");
    // A copy of sleep with a name of its own, so no other process matches.
    let exe = s.path("my-sleeper");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    s.write_rule(
        "x",
        &format!(
            "[Process]\nExecutable={}\nCheckInterval=200ms\n",
            exe.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule x: failing: dead: no process runs the executable");
    let mut child = Reaped(Command::new(&exe).arg("1000").spawn().unwrap());
    d.expect("rule x: healthy again");
    child.kill().unwrap();
    child.wait().unwrap();
    d.seen.clear();
    d.expect("rule x: failing: dead");
}

#[test]
fn a_hanging_repair_is_killed_with_its_children() {
    let s = Scratch::new("hang");
    s.write_conf("");
    // The shell ignores SIGTERM (and so does its child), so the group needs
    // the SIGKILL that follows.
    s.write_rule(
        "h",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=sh -c 'trap \"\" TERM; sleep 1000 & echo child $!; wait'\nRepairAttempts=1\nRepairTimeout=1s\nFinally=log\n",
            s.path("never").display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule h: running `sh -c");
    let line = d.expect("rule h: repair output: child ");
    let grandchild: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    d.expect("ran past its timeout; sending SIGTERM to its process group");
    d.expect("repair still running; sending SIGKILL to its process group");
    d.expect("rule h: repair attempt 1 timed out and was killed");
    let start = Instant::now();
    while Path::new(&format!("/proc/{grandchild}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the repair's child {grandchild} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.expect("rule h: every repair was tried; nothing more will be done");
    let status = s.wait_status("ladder: every step taken");
    assert!(
        status.contains("last repair: attempt 1 timed out and was killed"),
        "{status}"
    );
}

#[test]
fn a_failing_repair_climbs_the_ladder() {
    let s = Scratch::new("climb");
    s.write_conf("");
    s.write_rule(
        "c",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=sh -c 'echo trying; echo oops >&2; exit 3'\nRepairAttempts=3\nRepairBackoff=100ms\nRepairBackoffMax=200ms\nFinally=log\n",
            s.path("never").display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    for n in 1..=3 {
        d.expect(&format!("(repair attempt {n} of 3)"));
        d.expect(&format!("rule c: repair attempt {n} failed (exit 3)"));
    }
    assert!(
        d.drain()
            .iter()
            .any(|l| l.contains("rule c: repair output: trying"))
    );
    assert!(
        d.drain()
            .iter()
            .any(|l| l.contains("rule c: repair output: oops"))
    );
    d.expect("rule c: every repair was tried; nothing more will be done");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d.drain().iter().any(|l| l.contains("attempt 4")));
}

#[test]
fn a_repair_that_works_resets_the_ladder_after_the_recovery_period() {
    let s = Scratch::new("heal");
    s.write_conf("");
    let beat = s.path("beat");
    s.write_rule(
        "f",
        &format!(
            "[Heartbeat]\nFile={0}\nMaxAge=1s\n[Escalate]\nRepair=touch {0}\nRepairAttempts=2\nRepairBackoff=100ms\nRecoveryPeriod=500ms\n",
            beat.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule f: failing: missing");
    d.expect("rule f: repair attempt 1 succeeded (exit 0)");
    d.expect("rule f: healthy again");
    d.expect("rule f: stayed healthy; its ladder starts over");
    // Keep it fresh: it stays healthy and the ladder stays at the bottom.
    touch(&beat);
    std::thread::sleep(Duration::from_millis(300));
    touch(&beat);
    assert!(!d.drain().iter().any(|l| l.contains("attempt 2")));
}

#[test]
fn a_command_that_cannot_start_is_a_failed_attempt() {
    let s = Scratch::new("nostart");
    s.write_conf("");
    let script = s.path("fix.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A heartbeat fresh at start that goes stale 2 s later: the repair is
    // removed before its first attempt, however slowly this test runs (a
    // missing file would fail at once, racing the removal below).
    let beat = s.path("beat");
    touch(&beat);
    s.write_rule(
        "n",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=2s\n[Escalate]\nRepair={}\nRepairAttempts=2\nRepairBackoff=100ms\nFinally=log\n",
            beat.display(),
            script.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready");
    std::fs::remove_file(&script).unwrap();
    d.expect("rule n: repair attempt 1 could not be started (ENOENT");
    d.expect("rule n: repair attempt 2 could not be started");
    d.expect("rule n: every repair was tried");
}

#[test]
fn the_reboot_budget_survives_restarts_and_blocks_the_next_reboot() {
    let s = Scratch::new("budget");
    s.write_conf(&reboot_conf(&s, 1));
    s.write_rule(
        "b",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nFinally=reboot\n",
            s.path("never").display()
        ),
    );
    let marker = s.path("rebooted");
    {
        let mut d = Daemon::start(&s.conf(), &[]);
        let line = d.expect("rebooting: rule b: missing");
        assert!(line.contains("critical"), "{line}");
        d.expect("orderly reboot: running `sh -c");
        d.expect("Forced=no: not calling reboot(2)");
        d.expect("no hardware watchdog to fall back on");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reboot\n");
        let status = s.wait_status("REBOOTING: rule b");
        assert!(status.contains("reboot budget: 1 of 1 used"), "{status}");
        d.signal(SIGTERM);
        assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
    }
    let record = std::fs::read_to_string(s.path("state/reboot")).unwrap();
    assert!(record.contains("count=1"), "{record}");
    assert!(record.contains("rule=b"), "{record}");
    // Pretend the host did reboot: the record is from another boot.
    let record: String = record
        .lines()
        .map(|l| {
            if l.starts_with("boot_id=") {
                "boot_id=an-earlier-boot".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(s.path("state/reboot"), record).unwrap();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("the previous boot ended in a reboot by heartwatch: rule b: missing");
    let line = d.expect("reboot suppressed: 1 reboot without a healthy period (Budget=1)");
    assert!(line.contains("critical"), "{line}");
    let status = s.wait_status("REBOOT SUPPRESSED");
    assert!(
        status.contains("last reboot by heartwatch: rule b"),
        "{status}"
    );
    // The orderly reboot did not run again.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "reboot\n");
}

#[test]
fn the_reboot_count_starts_again_after_a_healthy_period() {
    let s = Scratch::new("healthy");
    let conf = reboot_conf(&s, 1) + "HealthyUptime=1s\n";
    s.write_conf(&conf);
    std::fs::create_dir_all(s.path("state")).unwrap();
    std::fs::write(s.path("state/reboot"), "count=1\n").unwrap();
    let beat = s.path("beat");
    touch(&beat);
    s.write_rule(
        "ok",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\n[Escalate]\nFinally=reboot\n",
            beat.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("healthy for 1s: the reboot count (1) starts again");
    // The record is written off the loop, just after the line.
    let start = Instant::now();
    let record = loop {
        let record = std::fs::read_to_string(s.path("state/reboot")).unwrap();
        if record.contains("count=0") || start.elapsed() > Duration::from_secs(10) {
            break record;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(record.contains("count=0"), "{record}");
}

#[test]
fn dry_run_takes_no_action() {
    let s = Scratch::new("dry");
    s.write_conf(&reboot_conf(&s, 3));
    let repaired = s.path("repaired");
    s.write_rule(
        "d",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=touch {}\nRepairAttempts=1\nRepairBackoff=100ms\nFinally=reboot\n",
            s.path("never").display(),
            repaired.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &["--dry-run"]);
    d.expect("dry run: actions are logged, not taken");
    d.expect("rule d: dry run: would run `touch");
    d.expect("rule d: repair attempt 1 not run (dry run)");
    d.expect("dry run: would record the reason, reboot in order, then call reboot(2), then stop feeding the watchdog");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!repaired.exists());
    assert!(!s.path("rebooted").exists());
    let record = std::fs::read_to_string(s.path("state/reboot")).unwrap_or_default();
    assert!(!record.contains("count=1"), "{record}");
}

#[test]
fn check_explains_each_ladder_in_words() {
    let s = Scratch::new("words");
    s.write_conf("");
    s.write_rule(
        "nginx",
        "[Process]\nPidFile=/run/nginx.pid\n[Escalate]\nRepair=sh -c 'exit 0'\nRepairAttempts=3\nFinally=reboot\n",
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nginx: if the process in /run/nginx.pid dies (pidfile looked at every 5s): run `sh -c 'exit 0'` up to 3 times (each killed after 30s; waiting a random time up to 10s, 20s, 40s after each, full jitter), then reboot (within the reboot budget); the ladder starts over after 1min healthy"),
        "{out}"
    );
}

#[test]
fn a_rule_that_heals_while_its_repair_runs_does_not_climb() {
    let s = Scratch::new("heal-during");
    s.write_conf(&reboot_conf(&s, 3));
    let beat = s.path("beat");
    // The repair fixes the heartbeat at once but takes a while to return,
    // like `systemctl restart` of a slow service: the rule is healthy again
    // before the repair ends.
    s.write_rule(
        "slow",
        &format!(
            "[Heartbeat]\nFile={0}\nMaxAge=3s\n[Escalate]\nRepair=sh -c 'touch {0}; sleep 1'\nRepairAttempts=2\nRepairBackoff=100ms\nRecoveryPeriod=500ms\nFinally=reboot\n",
            beat.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule slow: failing: missing");
    d.expect("rule slow: healthy again");
    d.expect("rule slow: repair attempt 1 succeeded (exit 0)");
    d.expect("rule slow: stayed healthy; its ladder starts over");
    touch(&beat);
    assert!(
        !d.drain()
            .iter()
            .any(|l| l.contains("attempt 2") || l.contains("rebooting"))
    );
    assert!(!s.path("rebooted").exists());
}
