//! `[Command]` rules through the real binary with real processes: a check
//! that passes (again and again), that fails (its exit code and first
//! output line in the cause, in the status and the log), that hangs (timed
//! out, its whole process group killed: the check and a grandchild are
//! gone, checked by PID), that floods its output (the loop keeps pinging,
//! the log stays bounded), that cannot start, a failing one going healthy
//! again, one that escalates (its repair runs and mends it), one whose
//! program is on a hung mount (its `execve` never returns: the loop goes
//! on), and a reload that keeps an unchanged check running and kills a
//! changed one's run.
//!
//! Every process a test makes a check start is held by a pidfd and
//! SIGKILLed through it when the test ends ([`Held`]).

// Raw pidfds for the processes under test: `unsafe` is allowed here
// (Cargo.toml denies it elsewhere).
#![allow(unsafe_code)]

mod common;
#[path = "common/hangfs.rs"]
mod hangfs;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use pings::{Pings, assert_pinged, heartwatch_with_pings};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;

/// Processes held by pidfds, SIGKILLed through them when dropped: a PID
/// that an unrelated process took since is never signalled.
#[derive(Default)]
struct Held(Vec<OwnedFd>);

impl Held {
    /// Holds `pid`; the pidfd says when it is gone.
    fn hold(&mut self, pid: i32) -> usize {
        // SAFETY: pidfd_open takes a PID and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(fd >= 0, "pid {pid} is already gone");
        // SAFETY: `fd` was just returned by pidfd_open and is owned here.
        self.0.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        self.0.len() - 1
    }

    /// Whether the held process has exited (its pidfd is readable).
    fn gone(&self, i: usize) -> bool {
        let mut p = libc::pollfd {
            fd: self.0[i].as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for fd in &self.0 {
            // SAFETY: a valid pidfd, SIGKILL, no siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                );
            }
        }
    }
}

/// The fields of the status record's line for rule `name` that these tests
/// read: name, health, since, cause, ladder, last repair, its time.
fn record(s: &Scratch, name: &str) -> Vec<String> {
    s.status_record()
        .lines()
        .filter_map(|l| l.strip_prefix("rule "))
        .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .map(|mut f| {
            // name, kind, health, since, cause, step, ladder, attempts,
            // repair, its ending, its time: kind, step, attempts and the
            // ending are left out.
            assert_eq!(f.remove(1), "command", "rule {name}'s kind");
            f.remove(4);
            f.remove(5);
            f.remove(6);
            f
        })
        .unwrap_or_default()
}

/// Waits until the record's line for `name` satisfies `ok`; returns it.
fn wait_record(s: &Scratch, name: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let fields = record(s, name);
        if fields.len() > 3 && ok(&fields) {
            return fields;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rule {name} never got there: {fields:?}\n{}",
            s.status_record()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn a_passing_check_is_healthy_and_runs_again_and_again() {
    let s = Scratch::new("cmd-pass");
    s.write_conf("");
    let runs = s.path("runs");
    s.write_rule(
        "pass",
        &format!(
            "[Command]\nRun=sh -c 'echo run >> {}; echo all good'\nInterval=100ms\nTimeout=100ms\n",
            runs.display()
        ),
    );
    let (code, out, _) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("pass: if `sh -c")
            && out.contains("exits non-zero")
            && out.contains("every 100ms"),
        "check does not explain the rule: {out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    let fields = wait_record(&s, "pass", |f| f[1] == "healthy");
    assert_eq!(fields[3], "", "a healthy rule has no cause");
    let status = s.status();
    assert!(
        rule_line(&status, "pass").contains(" healthy   command  since "),
        "{status}"
    );
    wait_until("the check ran five times", || lines(&runs) >= 5);
    d.expect("rule pass: check output: all good");
    assert_eq!(record(&s, "pass")[1], "healthy");
    assert!(!d.drain().iter().any(|l| l.contains("failing")));
}

#[test]
fn a_failing_check_says_its_exit_code_and_first_line_and_goes_healthy_again() {
    let s = Scratch::new("cmd-fail");
    s.write_conf("");
    let flag = s.path("flag");
    s.write_rule(
        "probe",
        &format!(
            "[Command]\nRun=sh -c 'test -e {} && exit 0; printf \"\\n\\nboom:\\tdisk full\\nsecond line\\n\"; echo to stderr >&2; exit 3'\nInterval=200ms\nTimeout=200ms\n",
            flag.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    let fields = wait_record(&s, "probe", |f| f[1] == "failing");
    assert_eq!(fields[3], "command check failed: exit 3: boom: disk full");
    let line = d.expect("rule probe: failing:");
    assert!(
        line.ends_with("failing: command check failed: exit 3: boom: disk full"),
        "{line}"
    );
    d.expect("rule probe: check output: to stderr");
    let status = s.status();
    assert!(
        rule_line(&status, "probe").contains("exit 3: boom: disk full"),
        "{status}"
    );

    touch(&flag);
    wait_record(&s, "probe", |f| f[1] == "healthy" && f[3].is_empty());
    d.expect("rule probe: healthy again after");
}

#[test]
fn a_hanging_check_times_out_and_its_process_group_is_killed() {
    let s = Scratch::new("cmd-hang");
    s.write_conf("");
    let (child, grandchild) = (s.path("child.pid"), s.path("grandchild.pid"));
    s.write_rule(
        "hang",
        &format!(
            "[Command]\nRun=sh -c 'sleep 1000 & echo $! > {}; echo $$ > {}; wait'\nInterval=30s\nTimeout=1s\n",
            grandchild.display(),
            child.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    wait_until("the check and its grandchild wrote their PIDs", || {
        read_pid(&child).is_some() && read_pid(&grandchild).is_some()
    });
    let mut held = Held::default();
    let c = held.hold(read_pid(&child).unwrap());
    let g = held.hold(read_pid(&grandchild).unwrap());
    let fields = wait_record(&s, "hang", |f| f[1] == "failing");
    assert!(
        fields[3].starts_with("command check failed: timed out: still running after 1s"),
        "{fields:?}"
    );
    d.expect("rule hang: check (pid");
    wait_until("the check is gone", || held.gone(c));
    wait_until("its grandchild is gone", || held.gone(g));
    d.expect("rule hang: its timed-out command check ended");
    // Judged once: the rule stays failing, and no second run began
    // (Interval=30s from the end of the first).
    assert_eq!(record(&s, "hang")[1], "failing");
    assert_eq!(
        d.drain()
            .iter()
            .filter(|l| l.contains("ran past its timeout"))
            .count(),
        1
    );
}

#[test]
fn a_flooding_check_does_not_hold_the_loop_and_its_log_is_bounded() {
    let s = Scratch::new("cmd-flood");
    s.write_conf("");
    s.write_rule(
        "flood",
        "[Command]\nRun=yes flooding the pipe\nInterval=1h\nTimeout=4s\n",
    );
    let sock = s.path("notify.sock");
    let pings = Pings::listen(&sock);
    let mut d = Daemon::start_with(&mut heartwatch_with_pings(&s.conf(), &sock));
    d.expect("rule flood: check output: flooding the pipe");
    let began = Instant::now();
    let line = d.expect("rule flood: check (pid");
    assert!(line.contains("ran past its timeout"), "{line}");
    assert_pinged(&pings, began, "a command check flooding its output");
    let summary = d.expect("more lines not logged");
    assert!(summary.contains("rule flood: check output:"), "{summary}");
    let logged = d
        .drain()
        .iter()
        .filter(|l| l.contains("rule flood: check output: flooding the pipe"))
        .count();
    assert!(logged <= 100, "{logged} lines of `yes` reached the log");
    let fields = wait_record(&s, "flood", |f| f[1] == "failing");
    assert!(fields[3].contains("timed out"), "{fields:?}");
}

#[test]
fn a_check_that_cannot_start_has_a_cause_of_its_own() {
    let s = Scratch::new("cmd-nostart");
    s.write_conf("");
    // Executable, so it loads; not a program the kernel can run.
    let program = s.path("not-a-program");
    std::fs::write(&program, b"\x00\x01\x02 no interpreter, no ELF\n").unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    s.write_rule(
        "broken",
        &format!(
            "[Command]\nRun={}\nInterval=200ms\nTimeout=100ms\n",
            program.display()
        ),
    );
    // A program that runs until it is removed.
    let vanishing = s.path("vanishing");
    std::fs::copy("/bin/true", &vanishing).unwrap();
    s.write_rule(
        "vanishing",
        &format!(
            "[Command]\nRun={}\nInterval=200ms\nTimeout=100ms\n",
            vanishing.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    let fields = wait_record(&s, "broken", |f| f[1] == "failing");
    assert!(
        fields[3].starts_with("command check failed: could not start: ENOEXEC"),
        "{fields:?}"
    );
    d.expect("rule broken: failing: command check failed: could not start: ENOEXEC");
    wait_record(&s, "vanishing", |f| f[1] == "healthy");
    std::fs::remove_file(&vanishing).unwrap();
    let fields = wait_record(&s, "vanishing", |f| f[1] == "failing");
    assert!(
        fields[3].starts_with("command check failed: could not start: ENOENT"),
        "{fields:?}"
    );
}

#[test]
fn a_failing_check_escalates_and_its_repair_mends_it() {
    let s = Scratch::new("cmd-ladder");
    s.write_conf("");
    let flag = s.path("flag");
    s.write_rule(
        "service",
        &format!(
            "[Command]\nRun=test -e {0}\nInterval=200ms\nTimeout=200ms\n[Escalate]\nRepair=touch {0}\nRepairAttempts=1\nRepairTimeout=5s\nFinally=log\n",
            flag.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule service: failing: command check failed: exit 1 (no output)");
    d.expect(&format!(
        "rule service: running `touch {}` (repair attempt 1 of 1)",
        flag.display()
    ));
    d.expect("rule service: repair attempt 1 succeeded (exit 0)");
    let fields = wait_record(&s, "service", |f| f[1] == "healthy");
    assert!(fields[5].contains("attempt 1 succeeded"), "{fields:?}");
    assert!(flag.exists());
}

#[test]
fn a_reload_keeps_an_unchanged_check_running_and_kills_a_changed_ones_run() {
    let s = Scratch::new("cmd-reload");
    s.write_conf("");
    let pid = |n: &str| s.path(&format!("{n}.pid"));
    let rule = |n: &str, timeout: &str| {
        format!(
            "[Command]\nRun=sh -c 'echo $$ > {}; exec sleep 1000'\nInterval=1h\nTimeout={timeout}\n",
            pid(n).display()
        )
    };
    s.write_rule("kept", &rule("kept", "1h"));
    s.write_rule("edited", &rule("edited", "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    wait_until("both checks run", || {
        read_pid(&pid("kept")).is_some() && read_pid(&pid("edited")).is_some()
    });
    let mut held = Held::default();
    let kept = held.hold(read_pid(&pid("kept")).unwrap());
    let edited = held.hold(read_pid(&pid("edited")).unwrap());
    std::fs::remove_file(pid("edited")).unwrap();

    s.write_rule("edited", &rule("edited", "59min"));
    d.signal(SIGHUP);
    d.expect("reloaded: 2 rules");
    wait_until("the edited rule's run is killed", || held.gone(edited));
    d.expect("rule edited: the rule changed or was removed while its check (pid");
    wait_until("the edited rule runs anew", || {
        read_pid(&pid("edited")).is_some()
    });
    let again = held.hold(read_pid(&pid("edited")).unwrap());
    assert!(!held.gone(kept), "the unchanged rule's run was killed");
    assert!(!held.gone(again));
    assert_eq!(
        d.drain()
            .iter()
            .filter(|l| l.contains("rule kept:"))
            .count(),
        0,
        "the unchanged rule was touched"
    );

    // Removing the rule kills its run too.
    std::fs::remove_file(s.conf().join("rules.d/kept.rule")).unwrap();
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
    wait_until("the removed rule's run is killed", || held.gone(kept));
}

#[test]
fn a_check_whose_exec_hangs_on_a_hung_mount_does_not_hold_the_loop() {
    let s = Scratch::new("cmd-hung-exec");
    s.write_conf("");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    s.write_rule(
        "hung",
        &format!(
            "[Command]\nRun={}/{}\nInterval=1h\nTimeout=1s\n",
            mnt.display(),
            hangfs::NAME
        ),
    );
    let sock = s.path("notify.sock");
    let pings = Pings::listen(&sock);
    let fs = hangfs::HangFs::with(hangfs::Fault::Opens);
    let mut command = heartwatch_with_pings(&s.conf(), &sock);
    fs.mount_in_child(&mut command, &mnt);
    let mut d = Daemon::start_with(&mut command);
    let mut server = fs.serve();
    d.expect("ready: 1 rule");
    let began = Instant::now();
    // The run is stuck in the kernel, in its exec's open: the loop is not
    // (before: it waited for the exec with the run, and never judged it).
    let line = d.expect("rule hung: check (pid");
    let pid: i32 = line
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));
    let mut held = Held::default();
    let run = held.hold(pid);
    let fields = wait_record(&s, "hung", |f| f[1] == "failing");
    assert!(fields[3].contains("timed out"), "{fields:?}");
    assert!(
        server.seen.hung.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the exec never reached the filesystem's open"
    );
    // SIGKILL does not end a FUSE request the server holds: the run is
    // given up on, and the loop went on pinging all along.
    d.expect("rule hung: its check (pid");
    assert_pinged(&pings, began, "a command check hung in execve");
    // When the server goes, the request fails and the run is gone.
    server.abort();
    wait_until("the hung run is gone", || held.gone(run));
}

/// A check program gets stdin, stdout and stderr and no other descriptor
/// of the daemon's, its own or inherited (the /dev/null behind its stdin
/// and what the test runner passed on were once left open):
/// the test looks at a running check's descriptors from outside.
#[test]
fn a_check_inherits_only_its_three_standard_descriptors() {
    let s = Scratch::new("cmd-fds");
    s.write_conf("");
    // A duration no other process on the machine sleeps for.
    let nap = format!("{}.{}", 300 + std::process::id() % 100, std::process::id());
    s.write_rule(
        "fds",
        &format!("[Command]\nRun=sleep {nap}\nInterval=1h\nTimeout=1h\n"),
    );
    let d = Daemon::start(&s.conf(), &[]);
    let mut pid = None;
    wait_until("the check runs", || {
        pid = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .ends_with(format!("sleep\0{nap}\0").as_bytes())
                .then(|| e.path())
        });
        pid.is_some()
    });
    let mut open: Vec<String> = std::fs::read_dir(pid.unwrap().join("fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    open.sort();
    // The orderly stop kills the running check (its process group).
    let mut d = d;
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stops");
    assert_eq!(open, ["0", "1", "2"], "the check's open descriptors");
}
