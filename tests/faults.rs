//! The fault matrix rows that need no kernel of their own, through the real
//! binary (see docs/RELIABILITY.md): a heartbeat on a hung FUSE mount, repair
//! commands that cannot fork, a read-only or full state directory, and
//! SIGHUP storms over a large rule set.
//!
//! No test here can reboot this machine: every configuration with a reboot
//! in it goes through [`reboot_seam`], whose `Command=` is a script that
//! writes a marker and whose `Forced=no` keeps reboot(2) from being called.
//! Mounts are made in private mount namespaces of the daemon under test, so
//! none is left on the host.

mod common;
#[path = "common/hangfs.rs"]
mod hangfs;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use pings::{Pings, WATCHDOG, assert_rhythm, heartwatch_with_pings};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

/// A script that appends a line to `marker` when run.
fn marker_script(s: &Scratch, name: &str) -> (PathBuf, PathBuf) {
    let script = s.path(name);
    let marker = s.path(&format!("{name}.ran"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$0 $*\" >> {}\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, marker)
}

/// The `[Reboot]` section every test with a reboot uses: the orderly
/// reboot is a script that records a marker, and reboot(2) is never called.
fn reboot_seam(s: &Scratch) -> (String, PathBuf) {
    let (script, marker) = marker_script(s, "reboot-command");
    let section = format!(
        "[Reboot]\nCommand={}\nForced=no\nOrderlyTimeout=1s\n",
        script.display()
    );
    (section, marker)
}

#[test]
fn a_heartbeat_on_a_hung_fuse_mount_fails_with_its_timeout_cause_and_pings_go_on() {
    let s = Scratch::new("fuse");
    s.write_conf("CheckTimeout=500ms\n");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = s.path("ok.beat");
    touch(&ok);
    s.write_rule(
        "hung",
        &format!(
            "[Heartbeat]\nFile={}/{}\nMaxAge=10s\nCheckInterval=1s\n",
            mnt.display(),
            hangfs::NAME
        ),
    );
    s.write_rule(
        "ok",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=200ms\n",
            ok.display()
        ),
    );
    let pings = Pings::listen(&s.path("notify.sock"));
    let fs = hangfs::HangFs::new();
    let mut command = heartwatch_with_pings(&s.conf(), &s.path("notify.sock"));
    fs.mount_in_child(&mut command, &mnt);
    let mut d = Daemon::start_with(&mut command);
    let mut server = fs.serve();
    let started = Instant::now();

    d.expect("ready: 2 rules");
    d.expect("rule ok: healthy");
    d.expect("rule hung: failing: check timed out: stat did not answer within 500ms (hung mount?)");
    assert!(
        server.seen.hung_getattrs.load(Ordering::SeqCst) >= 1,
        "the stat never reached the filesystem's getattr"
    );
    // The loop goes on: pings keep their rhythm, the other rule is checked.
    std::thread::sleep(Duration::from_secs(3));
    assert_rhythm(&pings, started, "hung FUSE getattr");
    let status = s.wait_status("check timed out");
    assert!(rule_line(&status, "ok").contains(" healthy "), "{status}");
    assert!(rule_line(&status, "hung").contains(" failing "), "{status}");
    // One stuck stat, not one per check interval.
    assert_eq!(server.seen.hung_getattrs.load(Ordering::SeqCst), 1);

    // An orderly stop is not held up by the worker stuck in the kernel:
    // the loop stops, disarms and says so at once.
    let sent = Instant::now();
    d.signal(SIGTERM);
    d.expect("stopped");
    eprintln!("stop logged {:?} after SIGTERM", sent.elapsed());
    // The process itself cannot be reaped while the FUSE server holds the
    // request (the kernel waits for the answer, even on SIGKILL). When the
    // server goes away, the request fails and heartwatch is gone.
    std::thread::sleep(Duration::from_millis(300));
    let lingering = d.child.try_wait().unwrap().is_none();
    server.abort();
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("heartwatch did not exit after the FUSE server went away");
    eprintln!(
        "exited {:?} after SIGTERM (lingered until the FUSE server went away: {lingering})",
        sent.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert!(!mounted_on_host(&mnt), "the FUSE mount leaked to the host");
}

/// A ladder's backoff that ends while the rule's check hangs: the check's
/// timeout is the fresh look the ladder waits for. The first repair
/// points the heartbeat at a hung FUSE mount, so the look made right after
/// it never answers; the backoff (at most 200 ms) ends while that look is
/// in flight. Before the engine, the ladder waited for the answer for
/// ever: no second attempt, no final step.
#[test]
fn a_backoff_that_ends_while_the_check_hangs_goes_on_at_the_checks_timeout() {
    let s = Scratch::new("hung-backoff");
    s.write_conf("CheckTimeout=1s\n");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let link = s.path("beat");
    let (script, marker) = marker_script(&s, "repair");
    let repair = s.path("repair.sh");
    std::fs::write(
        &repair,
        format!(
            "#!/bin/sh\n{}\n[ -L {link} ] || ln -s {}/{} {link}\n",
            script.display(),
            mnt.display(),
            hangfs::NAME,
            link = link.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&repair, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.write_rule(
        "hung",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=10s\nCheckInterval=100ms\n\
             [Escalate]\nRepair={}\nRepairAttempts=2\nRepairBackoff=200ms\n",
            link.display(),
            repair.display()
        ),
    );
    let fs = hangfs::HangFs::new();
    let mut command = std::process::Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    fs.mount_in_child(&mut command, &mnt);
    let mut d = Daemon::start_with(&mut command);
    let mut server = fs.serve();
    d.expect("rule hung: failing: missing");
    d.expect("(repair attempt 1 of 2)");
    d.expect("rule hung: failing: check timed out");
    d.expect("(repair attempt 2 of 2)");
    d.expect("rule hung: every repair was tried; nothing more will be done");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(ran.lines().count(), 2, "{ran}");
    d.signal(SIGTERM);
    d.expect("stopped");
    server.abort();
    d.wait_exit(Duration::from_secs(10))
        .expect("heartwatch did not exit after the FUSE server went away");
    assert!(!mounted_on_host(&mnt), "the FUSE mount leaked to the host");
}

/// A reboot was decided but did not happen (no device, `Forced=no`), and
/// the failing rule healed: once `HealthyUptime=` has passed, the budget
/// cannot start again while the reboot is under way. The loop used to
/// take that moment as due at every turn and spin a CPU for as long as
/// the host stayed up; now it sleeps. Found by the simulator.
#[test]
fn a_reboot_that_did_not_happen_does_not_spin_the_loop_after_a_healthy_period() {
    let s = Scratch::new("spin");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&format!("{reboot}HealthyUptime=1s\n"));
    let beat = s.path("app.beat");
    s.write_rule(
        "app",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=100ms\n[Escalate]\nFinally=reboot\n",
            beat.display()
        ),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rebooting: rule app");
    d.expect("no hardware watchdog to fall back on; the host stays up");
    assert!(marker.exists(), "the orderly reboot command did not run");
    touch(&beat);
    d.expect("rule app: healthy again");
    // HealthyUptime= passes; then the CPU the daemon uses is measured.
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.child.id() as i32;
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(pid) - before;
    eprintln!("CPU used in 3 s after the healthy period: {used:?}");
    assert!(
        used < Duration::from_millis(1500),
        "the loop spins: {used:?} of CPU in 3 s"
    );
    d.signal(SIGTERM);
    d.expect("stopped");
}

/// A cgroup with the pids controller (v1 or v2): `pids.max` set to what
/// its members already have makes every further fork fail with EAGAIN, as
/// under systemd's `TasksMax=`.
struct PidsLimit {
    dir: PathBuf,
}

impl PidsLimit {
    fn create(name: &str) -> PidsLimit {
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "pids"));
        let base = if v2 {
            // Harmless when already enabled (systemd enables it).
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+pids");
            PathBuf::from("/sys/fs/cgroup")
        } else if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else {
            panic!("no pids cgroup controller under /sys/fs/cgroup (v1 or v2)");
        };
        let dir = base.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create the cgroup {}: {e}", dir.display()));
        PidsLimit { dir }
    }

    fn enter(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// No more tasks than there are now.
    fn freeze(&self) -> String {
        let current = std::fs::read_to_string(self.dir.join("pids.current")).unwrap();
        std::fs::write(self.dir.join("pids.max"), current.trim()).unwrap();
        current.trim().to_string()
    }
}

impl Drop for PidsLimit {
    fn drop(&mut self) {
        // Empty once the daemon has exited; give it a moment.
        for _ in 0..200 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn repair_commands_that_cannot_fork_are_logged_and_the_ladder_goes_on() {
    let s = Scratch::new("nproc");
    let (reboot, reboot_marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    let (repair, repair_marker) = marker_script(&s, "repair-command");
    let beat = s.path("job.beat");
    touch(&beat);
    s.write_rule(
        "job",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\nCheckInterval=100ms\n[Escalate]\nRepair={}\nRepairAttempts=2\nRepairBackoff=100ms\nRepairTimeout=5s\nFinally=reboot\n",
            beat.display(),
            repair.display()
        ),
    );
    let pings = Pings::listen(&s.path("notify.sock"));
    let mut d = Daemon::start_with(&mut heartwatch_with_pings(
        &s.conf(),
        &s.path("notify.sock"),
    ));
    d.expect("ready: 1 rule");
    d.expect("rule job: healthy");

    let limit = PidsLimit::create("heartwatch-test-nproc");
    limit.enter(d.child.id());
    let tasks = limit.freeze();
    eprintln!("heartwatch limited to its {tasks} tasks");
    let since = Instant::now();

    // The heartbeat goes stale; every fork the ladder needs fails.
    d.expect("rule job: failing: stale");
    d.expect("rule job: repair attempt 1 could not be started (EAGAIN");
    d.expect("rule job: repair attempt 2 could not be started (EAGAIN");
    d.expect("rebooting: rule job: stale");
    d.expect("orderly reboot: `");
    d.expect(&format!(
        "orderly reboot: `{}` could not be started (EAGAIN",
        s.path("reboot-command").display()
    ));
    d.expect("the orderly reboot did not happen in time; Forced=no: not calling reboot(2)");
    assert!(d.child.try_wait().unwrap().is_none(), "heartwatch exited");
    // Long enough to hear several pings.
    std::thread::sleep((since + 3 * WATCHDOG).saturating_duration_since(Instant::now()));
    assert_rhythm(&pings, since, "forks failing");
    assert!(!repair_marker.exists(), "a repair ran despite the limit");
    assert!(
        !reboot_marker.exists(),
        "the reboot command ran despite the limit"
    );
    let status = s.wait_status("REBOOTING");
    assert!(status.contains("could not be started"), "{status}");

    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(10)).expect("did not stop");
}

/// Runs heartwatch in a mount namespace of its own after `setup` (shell)
/// has prepared the mounts there.
fn in_private_mounts(setup: &str, conf: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-euc"])
        .arg(format!("{setup}\nexec \"$0\" run --config \"$1\""))
        .arg(BIN)
        .arg(conf);
    c
}

/// The reboot goes ahead, its reason in the log, whatever the state
/// directory did; `expect` is what the log says about the state directory.
fn reboot_goes_ahead(d: &mut Daemon, marker: &Path, expect: &[&str]) {
    let reason = d.expect("rebooting: rule doomed: missing: the heartbeat file does not exist");
    assert!(
        reason.contains("(no repair configured), decided at"),
        "{reason}"
    );
    for e in expect {
        d.expect(e);
    }
    d.expect("orderly reboot: running `");
    d.expect("orderly reboot command succeeded (exit 0)");
    assert!(
        std::fs::read_to_string(marker).is_ok_and(|m| !m.is_empty()),
        "the reboot command did not run"
    );
    d.expect("the orderly reboot did not happen in time; Forced=no: not calling reboot(2)");
}

#[test]
fn a_read_only_state_directory_does_not_stop_the_reboot() {
    let s = Scratch::new("state-ro");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    doomed_rule(&s);
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    let setup = format!(
        "mount -t tmpfs -o size=1m,mode=0755 hw-state {st}\nprintf 'count=0\\n' > {st}/reboot\nmount -o remount,ro {st}",
        st = state.display()
    );
    let mut d = Daemon::start_with(&mut in_private_mounts(&setup, &s.conf()));
    d.expect("ready: 1 rule");
    reboot_goes_ahead(
        &mut d,
        &marker,
        &[&format!(
            "cannot record the reboot reason in {}/reboot: EROFS: Read-only file system; rebooting anyway",
            state.display()
        )],
    );
    drop(d);
    assert!(!mounted_on_host(&state), "the tmpfs leaked to the host");
}

#[test]
fn a_full_state_directory_does_not_stop_the_reboot() {
    let s = Scratch::new("state-full");
    let (reboot, marker) = reboot_seam(&s);
    s.write_conf(&reboot);
    doomed_rule(&s);
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    let setup = format!(
        "mount -t tmpfs -o size=64k,mode=0755 hw-state {st}\ndd if=/dev/zero of={st}/filler bs=4k 2>/dev/null || true\n! echo x > {st}/probe",
        st = state.display()
    );
    let mut d = Daemon::start_with(&mut in_private_mounts(&setup, &s.conf()));
    d.expect("ready: 1 rule");
    reboot_goes_ahead(
        &mut d,
        &marker,
        &[&format!(
            "cannot record the reboot reason in {}/reboot: ENOSPC: No space left on device; rebooting anyway",
            state.display()
        )],
    );
    drop(d);
    assert!(!mounted_on_host(&state), "the tmpfs leaked to the host");
}

#[test]
fn a_state_directory_that_cannot_be_created_does_not_stop_the_reboot() {
    let s = Scratch::new("state-none");
    let (reboot, marker) = reboot_seam(&s);
    // The state directory would be created in a read-only parent.
    let parent = s.path("ro");
    std::fs::create_dir(&parent).unwrap();
    let state = parent.join("state");
    std::fs::write(
        s.conf().join("heartwatch.conf"),
        format!(
            "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\nRuntimeDirectory={}\nStateDirectory={}\n{reboot}",
            s.path("run").display(),
            state.display()
        ),
    )
    .unwrap();
    doomed_rule(&s);
    let setup = format!("mount -t tmpfs -o ro,size=1m hw-ro {}", parent.display());
    let mut d = Daemon::start_with(&mut in_private_mounts(&setup, &s.conf()));
    d.expect(&format!(
        "state directory {}: Read-only file system (os error 30); reboot reasons and the reboot budget will not be kept",
        state.display()
    ));
    d.expect("ready: 1 rule");
    reboot_goes_ahead(
        &mut d,
        &marker,
        &["no state directory: the reboot reason is only in this log"],
    );
    drop(d);
    assert!(!mounted_on_host(&parent), "the tmpfs leaked to the host");
}

/// Rule names in the status file, in its order.
fn status_rules(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn rules_on_disk(s: &Scratch) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.conf().join("rules.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".rule").map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn sighup_storms_over_a_large_rule_set_keep_the_rhythm_and_end_on_the_disk_configuration() {
    const RULES: usize = 2000;
    const ROUNDS: usize = 10;
    const SIGNALS_PER_ROUND: usize = 50;
    let s = Scratch::new("storm");
    s.write_conf("");
    let beats = s.path("beats");
    std::fs::create_dir(&beats).unwrap();
    // Rules are replaced atomically (write, rename), as package managers
    // and editors do: a half-written rule is a refused reload, not a storm.
    let rule = |name: &str, max_age: &str| {
        let beat = beats.join(format!("{name}.beat"));
        touch(&beat);
        let staged = s.path("staged.rule");
        std::fs::write(
            &staged,
            format!("[Heartbeat]\nFile={}\nMaxAge={max_age}\n", beat.display()),
        )
        .unwrap();
        std::fs::rename(&staged, s.conf().join(format!("rules.d/{name}.rule"))).unwrap();
    };
    for i in 0..RULES {
        rule(&format!("r{i:05}"), "1h");
    }
    rule("canary", "1h");
    let pings = Pings::listen(&s.path("notify.sock"));
    let mut d = Daemon::start_with(&mut heartwatch_with_pings(
        &s.conf(),
        &s.path("notify.sock"),
    ));
    d.expect(&format!("ready: {} rules", RULES + 1));

    let since = Instant::now();
    let mut sent = 0;
    for round in 0..ROUNDS {
        // The disk changes under the storm: rules go, rules come.
        for k in 0..10 {
            let gone = s
                .conf()
                .join(format!("rules.d/r{:05}.rule", round * 10 + k));
            std::fs::remove_file(gone).unwrap();
            rule(&format!("new-{round}-{k}"), "1h");
        }
        if round == ROUNDS - 1 {
            // The last word on disk: the canary's maximum age becomes one
            // second, and its file is not touched again.
            rule("canary", "1s");
        }
        for _ in 0..SIGNALS_PER_ROUND {
            d.signal(SIGHUP);
            sent += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let storm = since.elapsed();
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "heartwatch died in the storm"
    );

    // After the storm the configuration is the one on disk.
    let on_disk = rules_on_disk(&s);
    let want = format!("reloaded: {} rules", on_disk.len());
    d.expect(&want);
    let line = d.expect("rule canary: failing: stale");
    assert!(line.contains("(max age 1s)"), "{line}");
    let status = s.wait_status("stale");
    assert!(
        rule_line(&status, "canary").contains(" failing "),
        "{status}"
    );
    let mut in_status = status_rules(&status);
    in_status.sort();
    assert_eq!(
        in_status, on_disk,
        "the running rules are not the ones on disk"
    );
    assert_rhythm(&pings, since, "SIGHUP storm");
    let reloads = d.drain().iter().filter(|l| l.contains("reloaded:")).count();
    let refused = d
        .seen
        .iter()
        .filter(|l| l.contains("reload refused"))
        .count();
    eprintln!(
        "{sent} SIGHUPs in {storm:?} with {RULES} rules: {reloads} reloads (signals coalesce), {refused} refused"
    );
    assert_eq!(refused, 0);
    assert!(reloads >= 2);
    let reloads = pings.reload_durations();
    let longest = reloads.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} reloads told to systemd; the longest took {longest:?} (the loop's feed can be late by that much)",
        reloads.len()
    );
    assert!(!reloads.is_empty(), "systemd heard no RELOADING=1");

    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
}

/// Whether `pid` blocks SIGHUP (`SigBlk:` in /proc/PID/status).
fn blocks_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (SIGHUP - 1)) != 0)
}

/// Whether `pid` has `dir` or a file in it open (it is reading the rules).
fn has_open(pid: u32, dir: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir)))
    })
}

#[test]
fn a_sighup_storm_during_start_does_not_kill_the_daemon() {
    const RULES: usize = 3000;
    let s = Scratch::new("storm-start");
    s.write_conf("");
    let beat = s.path("a.beat");
    touch(&beat);
    for i in 0..RULES {
        s.write_rule(
            &format!("r{i:05}"),
            &format!("[Heartbeat]\nFile={}\nMaxAge=1h\n", beat.display()),
        );
    }
    let rules_d = s.conf().join("rules.d");
    let mut d = Daemon::start(&s.conf(), &[]);
    let pid = d.child.id();
    // The storm begins as soon as heartwatch blocks SIGHUP or starts to
    // read its rules, whichever comes first: a daemon that read its rules
    // with SIGHUP's default action in place dies here.
    let waited = Instant::now();
    let blocked = loop {
        if blocks_sighup(pid) {
            break true;
        }
        if has_open(pid, &rules_d) {
            break false;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "heartwatch never started"
        );
    };
    let ready_before = d.drain().iter().any(|l| l.contains("ready:"));
    eprintln!(
        "storm begins {:?} after the start; SIGHUP blocked: {blocked}; ready already: {ready_before}",
        waited.elapsed()
    );
    for _ in 0..300 {
        if d.child.try_wait().unwrap().is_some() {
            break;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "heartwatch died in a SIGHUP storm during its start: {:?}",
        d.child.try_wait()
    );
    d.expect(&format!("ready: {RULES} rules"));
    d.expect(&format!("reloaded: {RULES} rules"));
    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
}
