//! Repair commands at their edges, through the real binary with real
//! processes: a repair that floods its output, one that prints no newline,
//! one that closes its output and goes on, one whose grandchild keeps the
//! pipe open, the signal mask and dispositions a repair starts with, the
//! processes a repair leaves behind, a repair that leaves its process group
//! while the daemon reloads or stops, and a repair whose end cannot be
//! learned. No test here reboots anything: every ladder ends in `log`.
//!
//! Every process a test starts, or makes a repair start, is killed by PID
//! when the test ends ([`Reap`]).

// Raw pidfds, sysconf and pre_exec hooks for the processes under test:
// `unsafe` is allowed here (Cargo.toml denies it elsewhere).
#![allow(unsafe_code)]

mod common;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use pings::{Pings, assert_pinged, assert_rhythm, heartwatch_with_pings};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

/// Processes a test made, each held by a pidfd opened while it was
/// provably the process meant, together with every process then in its
/// process group (a repair's group, so the repair goes too): SIGKILLed
/// through those pidfds when the test ends, pass or fail. Nothing is
/// signalled by number, so a PID reused by an unrelated process after the
/// daemon already killed ours is never hit.
#[derive(Default)]
struct Reap {
    held: Vec<OwnedFd>,
}

impl Reap {
    fn add(&mut self, pid: i32) {
        let Some(group) = self.hold(pid).and_then(|f| f[2].parse::<i32>().ok()) else {
            return;
        };
        for member in group_members(group) {
            if member != pid {
                self.hold(member);
            }
        }
    }

    /// Opens a pidfd for `pid` and reads its stat; keeps the pidfd and
    /// returns the stat only when the process is still there after the
    /// read (so the read was of the process the pidfd holds).
    fn hold(&mut self, pid: i32) -> Option<Vec<String>> {
        // SAFETY: pidfd_open takes a PID and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a descriptor just returned to us and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let fields = stat_fields(pid)?;
        if pidfd_signal(&fd, 0) != 0 {
            return None;
        }
        self.held.push(fd);
        Some(fields)
    }
}

/// `pidfd_send_signal(2)`; 0 or -1.
fn pidfd_signal(fd: &OwnedFd, signal: i32) -> i64 {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        for fd in &self.held {
            pidfd_signal(fd, libc::SIGKILL);
        }
    }
}

/// Whether `pid` is a live process (a zombie is dead).
fn alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// The live processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[2] == pgid.to_string()))
        .collect()
}

/// Waits until `gone` holds; the limit only keeps a broken test from hanging.
fn wait_until(what: &str, limit: Duration, mut gone: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !gone() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The number after `word ` in `line`.
fn number_after(line: &str, word: &str) -> i32 {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {line:?}"))
        + word.len();
    line[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("a number after {word:?} in {line:?}"))
}

/// A rule that fails at once (its file never exists) and runs `repair`
/// once, then only logs.
fn failing_rule(s: &Scratch, repair: &str, timeout: &str) -> String {
    format!(
        "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair={repair}\nRepairAttempts=1\nRepairTimeout={timeout}\nFinally=log\n",
        s.path("never").display()
    )
}

fn output_lines(d: &mut Daemon, rule: &str) -> usize {
    let needle = format!("rule {rule}: repair output: ");
    d.drain().iter().filter(|l| l.contains(&needle)).count()
}

#[test]
fn a_flooding_repair_does_not_hold_the_loop_and_is_killed_at_its_timeout() {
    let s = Scratch::new("flood");
    s.write_conf("");
    let beat = s.path("beat");
    touch(&beat);
    s.write_rule(
        "beat",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=2s\nCheckInterval=100ms\n",
            beat.display()
        ),
    );
    s.write_rule("flood", &failing_rule(&s, "sh -c 'yes'", "8s"));
    let pings = Pings::listen(&s.path("notify.sock"));
    let mut d = Daemon::start_with(&mut heartwatch_with_pings(
        &s.conf(),
        &s.path("notify.sock"),
    ));
    d.expect("rule flood: running `sh -c 'yes'`");
    let flood_began = Instant::now();
    let cpu_before = cpu_time(d.child.id() as i32);

    // While `yes` writes as fast as it can, the loop keeps its rhythm:
    // systemd hears its pings, the other rule is judged (it goes stale,
    // nobody touches it) and the status file says so.
    std::thread::sleep(Duration::from_secs(4));
    assert_pinged(&pings, flood_began, "a repair flooding its output");
    let status = s.wait_status("failing");
    let beat_line = rule_line(&status, "beat");
    assert!(beat_line.contains(" failing "), "{status}");
    assert!(
        rule_line(&status, "flood").contains("ladder: repair attempt 1 running"),
        "{status}"
    );
    assert!(
        !d.drain().iter().any(|l| l.contains("ran past its timeout")),
        "the flood was over before the other rule was judged"
    );

    // It does not spin the loop either: the output is read in bounded
    // helpings, with pauses that let the full pipe slow the writer down.
    let cpu = cpu_time(d.child.id() as i32) - cpu_before;
    let share = cpu.as_secs_f64() / flood_began.elapsed().as_secs_f64();
    eprintln!(
        "heartwatch used {cpu:?} of CPU ({:.0}%) while the flood ran",
        share * 100.0
    );
    assert!(
        share < 0.5,
        "heartwatch spun on the flood: {:.0}% of a CPU",
        share * 100.0
    );

    // Its timeout is enforced whatever the output does.
    let line = d.expect("ran past its timeout; sending SIGTERM to its process group");
    let group = number_after(&line, "(pid");
    let mut reap = Reap::default();
    reap.add(group);
    d.expect("rule flood: repair attempt 1 timed out and was killed");
    assert_pinged(
        &pings,
        flood_began,
        "a repair flooding its output until its timeout",
    );
    let summary = d.expect("rule flood: repair output: ");
    let summary = d
        .drain()
        .iter()
        .find(|l| l.contains("more lines not logged"))
        .cloned()
        .unwrap_or(summary);
    assert!(
        summary.contains("more lines not logged") && summary.contains("bytes dropped"),
        "no account of what was dropped: {summary}"
    );
    let logged = output_lines(&mut d, "flood");
    eprintln!("flood: {logged} output lines logged; {summary}");
    assert!(logged <= 101, "{logged} lines of `yes` reached the log");
    wait_until(
        "the flooding group is gone",
        Duration::from_secs(10),
        || group_members(group).is_empty(),
    );
    let status = s.wait_status("last repair: attempt 1 timed out and was killed");
    assert!(
        rule_line(&status, "flood").contains("timed out"),
        "{status}"
    );
}

#[test]
fn output_without_a_newline_is_cut_and_counted_and_a_fast_finite_flood_ends_on_its_own() {
    let s = Scratch::new("nonl");
    s.write_conf("");
    // 20 MB of NUL bytes without a newline, then one short line: the long
    // one is logged cut, the rest of it counted; the repair runs to its end.
    s.write_rule(
        "nonl",
        &failing_rule(
            &s,
            "sh -c 'head -c 20000000 /dev/zero; echo; echo done'",
            "1min",
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    let first = d.expect("rule nonl: repair output: ");
    assert!(
        first.contains("\\x00\\x00"),
        "NUL bytes are shown escaped: {first}"
    );
    assert!(
        first.len() < 2100,
        "the cut line is {} bytes long",
        first.len()
    );
    assert!(
        first.contains('…'),
        "the cut line is not marked as cut: {first}"
    );
    d.expect("rule nonl: repair output: done");
    d.expect("rule nonl: repair attempt 1 succeeded (exit 0)");
    let summary = d
        .drain()
        .iter()
        .find(|l| l.contains("bytes dropped"))
        .cloned()
        .unwrap_or_else(|| panic!("no account of the dropped bytes: {:#?}", d.seen));
    let dropped = number_after(&summary, "not logged,");
    eprintln!("{summary}");
    assert!(
        (19_000_000..20_000_000).contains(&dropped),
        "dropped {dropped} bytes: {summary}"
    );
    assert_eq!(output_lines(&mut d, "nonl"), 3, "{:#?}", d.seen);
}

#[test]
fn a_repair_starts_with_an_empty_signal_mask_and_default_dispositions() {
    let s = Scratch::new("mask");
    s.write_conf("");
    s.write_rule("mask", &failing_rule(&s, "cat /proc/self/status", "10s"));
    // The daemon's own parent ignored SIGQUIT, SIGUSR2 and a real-time
    // signal (as `nohup` or a careless init would): a repair must not
    // inherit that either.
    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    // SAFETY: between fork and exec in the test's child; signal(2) is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
            libc::signal(libc::SIGRTMIN() + 2, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut d = Daemon::start_with(&mut command);
    let blocked = d.expect("rule mask: repair output: SigBlk:");
    let ignored = d.expect("rule mask: repair output: SigIgn:");
    d.expect("rule mask: repair attempt 1 succeeded (exit 0)");
    assert!(blocked.ends_with("0000000000000000"), "{blocked}");
    assert!(ignored.ends_with("0000000000000000"), "{ignored}");
}

#[test]
fn a_repair_that_closes_its_output_and_goes_on_is_judged_by_its_exit_and_its_timeout_term_suffices()
{
    let s = Scratch::new("closed");
    s.write_conf("");
    // No output pipe left, but still running: the timeout finds it, and a
    // plain command (no shell in between to clear its mask) dies of the
    // SIGTERM: no SIGKILL needed.
    s.write_rule(
        "closed",
        &failing_rule(
            &s,
            "perl -e '$| = 1; print \"bye\\n\"; close STDOUT; close STDERR; sleep 1000'",
            "1s",
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule closed: repair output: bye");
    let line = d.expect("ran past its timeout; sending SIGTERM to its process group");
    let group = number_after(&line, "(pid");
    let mut reap = Reap::default();
    reap.add(group);
    d.expect("rule closed: repair attempt 1 timed out and was killed");
    assert!(
        !d.drain().iter().any(|l| l.contains("sending SIGKILL")),
        "SIGTERM was not enough: the repair had it blocked? {:#?}",
        d.seen
    );
    wait_until("the group is gone", Duration::from_secs(10), || {
        group_members(group).is_empty()
    });
}

#[test]
fn workers_a_repair_leaves_in_its_group_are_stopped_and_daemons_it_starts_are_left_alone() {
    let s = Scratch::new("leftover");
    s.write_conf("");
    // Two workers left in the repair's group, one of which ignores SIGTERM,
    // and a daemon that left the group with setsid; all three keep the
    // output pipe open after the repair exits. The repair waits until the
    // daemon has its own session and the stubborn one ignores SIGTERM.
    s.write_rule(
        "left",
        &failing_rule(
            &s,
            "sh -c 'sleep 1000 & echo worker $!; (trap \"\" TERM; exec sleep 1002) & t=$!; echo stubborn $t; setsid sleep 1001 & d=$!; echo daemon $d; until [ \"$(cut -d\" \" -f6 /proc/$d/stat)\" = $d ] && grep -q \"^SigIgn:.*400.$\" /proc/$t/status; do sleep 0.05; done; exit 0'",
            "1min",
        ),
    );
    let mut reap = Reap::default();
    let mut d = Daemon::start(&s.conf(), &[]);
    let worker = number_after(&d.expect("rule left: repair output: worker "), "worker");
    reap.add(worker);
    let stubborn = number_after(&d.expect("rule left: repair output: stubborn "), "stubborn");
    reap.add(stubborn);
    let daemon = number_after(&d.expect("rule left: repair output: daemon "), "daemon");
    reap.add(daemon);
    // Judged when it exits, though three processes still hold its pipe.
    d.expect("rule left: repair attempt 1 succeeded (exit 0)");
    d.expect("rule left: its repair left processes in its process group");
    let took = wait_until("the worker is stopped", Duration::from_secs(10), || {
        !alive(worker)
    });
    eprintln!("the leftover worker was gone {took:?} after the repair's end was logged");
    assert!(
        alive(stubborn),
        "SIGTERM should not have stopped the worker that ignores it"
    );
    d.expect("outlived SIGTERM; sent SIGKILL");
    let took = wait_until(
        "the stubborn worker is killed",
        Duration::from_secs(10),
        || !alive(stubborn),
    );
    eprintln!("the stubborn worker was gone {took:?} after the SIGKILL was logged");
    // Past the SIGKILL the daemon it started still runs.
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(daemon), "the repair's daemon (setsid) was killed");
}

/// A repair that leaves its own process group: it forks a child, puts the
/// child in a group of its own and joins it, so a signal to the repair's
/// original group reaches nobody. Prints `moved PGID` when done.
const GROUP_LEAVER: &str = "perl -e '$| = 1; $c = fork; if (!$c) { sleep 1000; exit } setpgrp($c, $c); setpgrp(0, $c); print \"moved $c\\n\"; sleep 1000'";

#[test]
fn reload_and_stop_do_not_wait_for_a_repair_that_left_its_group() {
    let s = Scratch::new("leaver");
    s.write_conf("");
    s.write_rule("gone", &failing_rule(&s, GROUP_LEAVER, "1h"));
    s.write_rule("stays", &failing_rule(&s, GROUP_LEAVER, "1h"));
    let pings = Pings::listen(&s.path("notify.sock"));
    let mut d = Daemon::start_with(&mut heartwatch_with_pings(
        &s.conf(),
        &s.path("notify.sock"),
    ));
    let mut reap = Reap::default();
    let mut leaders = Vec::new();
    for rule in ["gone", "stays"] {
        let line = d.expect(&format!("rule {rule}: repair output: moved "));
        let group = number_after(&line, "moved");
        let members = group_members(group);
        assert_eq!(members.len(), 2, "{rule}: group {group} holds {members:?}");
        for &pid in &members {
            reap.add(pid);
        }
        leaders.push(*members.iter().find(|&&p| p != group).unwrap());
    }

    // The reload drops rule `gone`: its repair is killed, and reaped
    // later, without the loop waiting for it.
    std::fs::remove_file(s.conf().join("rules.d/gone.rule")).unwrap();
    let sent = Instant::now();
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
    eprintln!("reload logged {:?} after SIGHUP", sent.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    assert_rhythm(&pings, sent, "a reload that drops a running repair");
    assert_eq!(pings.reload_durations().len(), 1, "the reload never ended");
    wait_until(
        "the dropped repair is killed and reaped",
        Duration::from_secs(10),
        || !Path::new(&format!("/proc/{}", leaders[0])).exists(),
    );

    // The stop does not wait for the other one either: it is killed.
    let sent = Instant::now();
    d.signal(SIGTERM);
    d.expect("stopped");
    let status = d.wait_exit(Duration::from_secs(20));
    eprintln!("exited {:?} after SIGTERM: {status:?}", sent.elapsed());
    assert!(status.is_some(), "the daemon did not exit on SIGTERM");
    wait_until(
        "the running repair is killed at stop",
        Duration::from_secs(10),
        || !alive(leaders[1]),
    );
}

#[test]
fn a_repair_whose_end_cannot_be_learned_is_a_failed_attempt_and_the_ladder_goes_on() {
    let s = Scratch::new("lost");
    s.write_conf("");
    s.write_rule(
        "lost",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=true\nRepairAttempts=2\nRepairBackoff=100ms\nRepairBackoffMax=100ms\nFinally=log\n",
            s.path("never").display()
        ),
    );
    // Tests only: the daemon's wait for the repair fails with ECHILD, as
    // if something else had reaped it.
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(s.conf())
        .env("HEARTWATCH_TEST_LOSE_REPAIRS", "1");
    let mut d = Daemon::start_with(&mut command);
    let line = d.expect("rule lost: cannot learn how its repair");
    assert!(line.contains("ECHILD"), "{line}");
    assert!(line.contains("error:"), "not logged as an error: {line}");
    d.expect("rule lost: repair attempt 1 failed");
    d.expect("(repair attempt 2 of 2)");
    d.expect("rule lost: every repair was tried; nothing more will be done");
    s.wait_status("ladder: every step taken");
}

/// `Command` with SIGCHLD ignored in the child, as a careless parent
/// (a shell script with `trap '' CHLD`, a supervisor) would leave it.
fn with_sigchld_ignored(command: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec in the test's child; signal(2) is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    command
}

#[test]
fn an_inherited_ignored_sigchld_breaks_neither_repairs_nor_check() {
    let s = Scratch::new("sigchld");
    s.write_conf("");
    s.write_rule("r", &failing_rule(&s, "true", "1h"));
    let pidfile = s.path("pid");
    std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    s.write_rule("p", &format!("[Process]\nPidFile={}\n", pidfile.display()));

    // `check` reads pidfiles in a child process and waits for it.
    let out = with_sigchld_ignored(Command::new(BIN).args(["check", "--config"]).arg(s.conf()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "check failed: {text}");
    assert!(!text.contains("were not read"), "{text}");

    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    let mut d = Daemon::start_with(with_sigchld_ignored(&mut command));
    d.expect("rule r: repair attempt 1 succeeded (exit 0)");
    assert!(
        !d.drain().iter().any(|l| l.contains("cannot learn how")),
        "a repair was lost"
    );
}

/// The children of `parent`: PID and state.
fn children(parent: i32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let f = stat_fields(pid)?;
            (f[1] == parent.to_string()).then(|| (pid, f[0].clone()))
        })
        .collect()
}

/// The one live child of `parent`, once there is one (the daemon logs
/// that it runs a repair just before it starts it).
fn live_child(parent: i32) -> i32 {
    let mut found = 0;
    wait_until("a repair runs", Duration::from_secs(10), || {
        let live: Vec<i32> = children(parent)
            .into_iter()
            .filter(|(_, state)| state != "Z")
            .map(|(pid, _)| pid)
            .collect();
        found = live.first().copied().unwrap_or(0);
        live.len() == 1
    });
    found
}

fn zombies(parent: i32) -> Vec<i32> {
    children(parent)
        .into_iter()
        .filter(|(_, state)| state == "Z")
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn reloads_that_kill_repairs_leave_no_zombie() {
    let s = Scratch::new("zombies");
    s.write_conf("");
    let rule = |max_age: u32| {
        format!(
            "[Heartbeat]\nFile={}\nMaxAge={max_age}s\n[Escalate]\nRepair=sleep 1000\nRepairAttempts=1\nRepairTimeout=1h\nFinally=log\n",
            s.path("never").display()
        )
    };
    s.write_rule("z", &rule(1));
    let mut d = Daemon::start(&s.conf(), &[]);
    let daemon = d.child.id() as i32;
    let mut reap = Reap::default();
    d.expect("rule z: running `sleep 1000`");
    reap.add(live_child(daemon));
    // Each reload changes the rule's watch: the rule is new, its running
    // repair is killed, and must be reaped.
    for n in 2..=5 {
        s.write_rule("z", &rule(n));
        d.signal(SIGHUP);
        d.expect("reloaded: 1 rule");
        d.expect("rule z: running `sleep 1000`");
        // The one before was killed (SIGKILL) when the rule changed.
        reap.add(live_child(daemon));
    }
    wait_until(
        "the killed repairs are reaped",
        Duration::from_secs(10),
        || zombies(daemon).is_empty(),
    );
    // So is the last one when the rule goes away.
    std::fs::remove_file(s.conf().join("rules.d/z.rule")).unwrap();
    d.signal(SIGHUP);
    d.expect("reloaded: 0 rules");
    wait_until(
        "the removed rule's repair is killed and reaped",
        Duration::from_secs(10),
        || children(daemon).is_empty(),
    );
}

fn reboot_conf(s: &Scratch) -> String {
    format!(
        "[Reboot]\nBudget=5\nCommand=sh -c 'echo reboot >> {}'\nOrderlyTimeout=1s\nForced=no\n",
        s.path("rebooted").display()
    )
}

#[test]
fn a_reload_that_edits_a_failing_rules_ladder_while_its_repair_runs_goes_on_to_reboot() {
    let s = Scratch::new("ladder-edit");
    s.write_conf(&reboot_conf(&s));
    let rule = |timeout: &str| {
        format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=sleep 1000\nRepairAttempts=2\nRepairTimeout={timeout}\nRepairBackoff=100ms\nRepairBackoffMax=100ms\nFinally=reboot\n",
            s.path("never").display()
        )
    };
    s.write_rule("e", &rule("1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    let daemon = d.child.id() as i32;
    let mut reap = Reap::default();
    d.expect("rule e: running `sleep 1000` (repair attempt 1 of 2)");
    let first = live_child(daemon);
    reap.add(first);

    s.write_rule("e", &rule("2h"));
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
    // The running repair is attempt 1 of the new ladder: when it ends,
    // the ladder goes on.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.expect("rule e: repair attempt 1 failed (killed by signal 9)");
    d.expect("rule e: running `sleep 1000` (repair attempt 2 of 2)");
    let second = live_child(daemon);
    reap.add(second);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.expect("rule e: repair attempt 2 failed");
    d.expect("Forced=no: not calling reboot(2)");
    assert_eq!(
        std::fs::read_to_string(s.path("rebooted")).unwrap(),
        "reboot\n"
    );
}

#[test]
fn a_reload_that_edits_a_failing_rules_ladder_in_its_backoff_goes_on_to_reboot() {
    let s = Scratch::new("ladder-edit-wait");
    s.write_conf(&reboot_conf(&s));
    let rule = |attempts: u32, backoff: &str| {
        format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=true\nRepairAttempts={attempts}\nRepairBackoff={backoff}\nRepairBackoffMax={backoff}\nFinally=reboot\n",
            s.path("never").display()
        )
    };
    // A backoff of up to an hour: the reload comes inside it.
    s.write_rule("w", &rule(1, "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule w: repair attempt 1 succeeded");
    s.wait_status("ladder: waiting after repair attempt 1");
    s.write_rule("w", &rule(2, "100ms"));
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
    // The new ladder starts from its bottom, told that the rule fails.
    d.expect("(repair attempt 1 of 2)");
    d.expect("(repair attempt 2 of 2)");
    d.expect("Forced=no: not calling reboot(2)");
    assert_eq!(
        std::fs::read_to_string(s.path("rebooted")).unwrap(),
        "reboot\n"
    );
}

#[test]
fn a_repair_that_sigkill_cannot_end_is_a_failed_attempt_and_the_ladder_goes_on() {
    let s = Scratch::new("unkillable");
    s.write_conf(&reboot_conf(&s));
    s.write_rule(
        "u",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nRepair=sleep 1000\nRepairAttempts=1\nRepairTimeout=1s\nFinally=reboot\n",
            s.path("never").display()
        ),
    );
    // Tests only: the daemon does not learn of its repairs' exits, as if
    // SIGKILL could not end them (a process in D state on a hung device).
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(s.conf())
        .env("HEARTWATCH_TEST_UNKILLABLE_REPAIRS", "1");
    let mut d = Daemon::start_with(&mut command);
    let mut reap = Reap::default();
    d.expect("rule u: running `sleep 1000`");
    reap.add(live_child(d.child.id() as i32));
    d.expect("sending SIGKILL to its process group");
    let line = d.expect("rule u: repair attempt 1 could not be stopped");
    assert!(line.contains("after SIGKILL; left to the reaper"), "{line}");
    d.expect("Forced=no: not calling reboot(2)");
    assert_eq!(
        std::fs::read_to_string(s.path("rebooted")).unwrap(),
        "reboot\n"
    );
}
