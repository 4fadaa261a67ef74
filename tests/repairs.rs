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

mod common;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use pings::Pings;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

/// systemd's WatchdogSec= for these tests: heartwatch pings at half of it,
/// and a silence this long would have systemd kill and restart it.
const WATCHDOG: Duration = Duration::from_secs(2);

/// Processes a test made: each PID, and the process group each was in
/// when it was added (a repair's group, so the repair goes too), is
/// SIGKILLed when the test ends, pass or fail.
#[derive(Default)]
struct Reap {
    pids: Vec<i32>,
    groups: Vec<i32>,
}

impl Reap {
    fn add(&mut self, pid: i32) {
        self.pids.push(pid);
        if let Some(group) = stat_fields(pid).and_then(|f| f[2].parse().ok()) {
            self.groups.push(group);
        }
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        for &group in &self.groups {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn heartwatch_with_pings(conf: &Path, pings: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "--config"])
        .arg(conf)
        .env("NOTIFY_SOCKET", pings)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
    c
}

fn assert_rhythm(pings: &Pings, since: Instant, what: &str) {
    let (count, worst) = pings.rhythm(since, Instant::now());
    eprintln!(
        "{what}: {count} pings over {:?}, longest silence {worst:?}",
        since.elapsed()
    );
    assert!(count >= 2, "{what}: systemd heard {count} pings");
    assert!(
        worst < WATCHDOG,
        "{what}: no ping for {worst:?}; systemd would have killed heartwatch"
    );
}

/// `/proc/PID/stat` fields after the command name: state is [0], the
/// process group [2], the session [3].
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_string).collect())
}

/// The CPU time (user and system) process `pid` has used.
fn cpu_time(pid: i32) -> Duration {
    let fields = stat_fields(pid).expect("the daemon runs");
    // utime and stime are fields 14 and 15 of stat, [11] and [12] here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes a constant and returns a number.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
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

/// The status file's line for rule `name` (names are padded to a column).
fn rule_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| {
            l.strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
                == Some(name)
        })
        .unwrap_or_else(|| panic!("no line for rule {name} in\n{status}"))
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
    assert_rhythm(&pings, flood_began, "a repair flooding its output");
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
    let _reap = Reap {
        pids: vec![group],
        groups: vec![group],
    };
    d.expect("rule flood: repair attempt 1 timed out and was killed");
    assert_rhythm(
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
    // The daemon's own parent ignored SIGQUIT and SIGUSR2 (as `nohup` or a
    // careless init would): a repair must not inherit that either.
    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    // SAFETY: between fork and exec in the test's child; signal(2) is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
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
    let _reap = Reap {
        pids: vec![group],
        groups: vec![group],
    };
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
    // With SIGCHLD ignored (inherited from a careless parent) the kernel
    // reaps the repair itself, so waiting for it fails with ECHILD.
    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    // SAFETY: between fork and exec in the test's child; signal(2) is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut d = Daemon::start_with(&mut command);
    let line = d.expect("rule lost: cannot learn how its repair");
    assert!(line.contains("ECHILD"), "{line}");
    assert!(line.contains("error:"), "not logged as an error: {line}");
    d.expect("rule lost: repair attempt 1 failed");
    d.expect("(repair attempt 2 of 2)");
    d.expect("rule lost: every repair was tried; nothing more will be done");
    s.wait_status("ladder: every step taken");
}
