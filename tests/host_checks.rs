//! `[System]` rules through the real binary, each measure driven beyond
//! its threshold for real and back: load raised by busy processes (and a
//! burst shorter than `For=` that must not fail a rule), available memory
//! under a memory hog, cpu pressure, a small tmpfs filled and emptied, a
//! filesystem rule on a hung FUSE mount, file handles opened in bulk, a
//! temperature file whose value changes, and pressure stall information
//! missing.
//!
//! Thresholds are set relative to what each test reads first: the machine
//! is shared and noisy. The CPU-heavy tests take one lock so that their
//! busy processes do not overlap. Every process started is stopped by its
//! PID, every mount is unmounted, every scratch directory removed.

#![allow(unsafe_code)]

mod common;
#[path = "common/hangfs.rs"]
mod hangfs;
#[path = "common/pings.rs"]
mod pings;

use common::*;
use pings::{Pings, assert_rhythm, heartwatch_with_pings};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SIGTERM: i32 = 15;

/// Held by the tests that load the CPUs.
static CPU: Mutex<()> = Mutex::new(());

fn cpu_lock() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|p| p.into_inner())
}

/// Children that are killed (by PID) and reaped when dropped.
struct Children(Vec<Child>);

impl Children {
    /// `n` processes that spin on a CPU.
    fn busy(n: usize) -> Children {
        Children(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }

    /// A python3 child running `code`; returns once it printed `ready`.
    fn python(code: &str) -> Children {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args(["-c", code])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the child did not get ready");
        Children(vec![child])
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "heartwatch-test"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs -o {options} {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The rule's status line once its health is `health` (`healthy`,
/// `failing`); the limit only keeps a broken test from hanging.
fn wait_rule(s: &Scratch, name: &str, health: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let status = s.status();
        if !status.is_empty() {
            let line = rule_line(&status, name);
            if line.contains(&format!(" {health} ")) {
                eprintln!("rule {name} {health} after {:?}: {line}", start.elapsed());
                return line.to_string();
            }
        }
        assert!(
            start.elapsed() < limit,
            "rule {name} never became {health} in {limit:?}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// That the daemon never said rule `name` was failing.
fn never_failed(d: &mut Daemon, name: &str) {
    let needle = format!("rule {name}: failing");
    let lines = d.drain();
    assert!(
        !lines.iter().any(|l| l.contains(&needle)),
        "rule {name} failed: {lines:#?}"
    );
}

fn stop(mut d: Daemon) {
    d.signal(SIGTERM);
    d.expect("stopped");
    assert!(d.wait_exit(Duration::from_secs(10)).is_some());
}

fn load1() -> f64 {
    read("/proc/loadavg")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Busy processes raise the 1min load average above a threshold set
/// above what it is now: the rule with a short `For=` fails and, once they
/// stop and the load sinks, recovers; the rule with the same threshold and
/// a `For=` longer than the burst never fails.
#[test]
fn load_raised_by_busy_processes_fails_and_a_shorter_burst_does_not() {
    let _cpu = cpu_lock();
    let s = Scratch::new("load");
    s.write_conf("");
    // Far enough above the load now that the rest of a shared machine
    // does not cross it alone, and low enough that 12 busy processes do.
    let max = load1() + 4.0;
    eprintln!("load now {}, MaxLoad={max:.2}", load1());
    for (name, hold) in [("quick", "3s"), ("patient", "10min")] {
        s.write_rule(
            name,
            &format!(
                "[System]\nLoadAverage=1min\nMaxLoad={max:.2}\nCheckInterval=1s\nFor={hold}\n"
            ),
        );
    }
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "quick: if the 1min load average is above {} at every reading for 3s, recovering after 3s within it (read every 1s)",
            format!("{max:.2}").trim_end_matches('0').trim_end_matches('.')
        )),
        "{out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule quick: healthy");
    d.expect("rule patient: healthy");
    {
        let _busy = Children::busy(12);
        let line = wait_rule(&s, "quick", "failing", Duration::from_secs(240));
        assert!(
            line.contains("load average 1min ") && line.contains(" for "),
            "{line}"
        );
        eprintln!("load at the failure: {}", load1());
    }
    wait_rule(&s, "quick", "healthy", Duration::from_secs(300));
    // The burst lasted as long as it took quick to fail plus a look: far
    // shorter than patient's For=, which therefore never failed.
    never_failed(&mut d, "patient");
    let status = s.status();
    assert!(
        rule_line(&status, "patient").contains(" healthy "),
        "{status}"
    );
    stop(d);
}

fn meminfo(key: &str) -> u64 {
    let text = read("/proc/meminfo");
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// A child that allocates and touches 5 GiB takes available memory below
/// a threshold 2.5 GiB under what is available now; once it is gone the
/// rule recovers.
#[test]
fn available_memory_under_a_memory_hog() {
    let s = Scratch::new("memory");
    s.write_conf("");
    let available = meminfo("MemAvailable:");
    let min_mib = (available >> 20).saturating_sub(2560);
    assert!(
        min_mib > 1024,
        "too little memory for the test: {available}"
    );
    s.write_rule(
        "memory",
        &format!("[System]\nMinMemoryAvailable={min_mib}M\nCheckInterval=200ms\nFor=1s\n"),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule memory: healthy");
    {
        let _hog = Children::python(
            "import sys, time\nb = bytearray(b'\\x01') * (5 << 30)\nprint('ready', flush=True)\ntime.sleep(3600)\n",
        );
        eprintln!(
            "MemAvailable {} MiB with the hog, threshold {min_mib} MiB",
            meminfo("MemAvailable:") >> 20
        );
        let line = wait_rule(&s, "memory", "failing", Duration::from_secs(60));
        assert!(
            line.contains("available memory ") && line.contains(" below "),
            "{line}"
        );
        assert!(line.contains(" for 1s"), "{line}");
    }
    wait_rule(&s, "memory", "healthy", Duration::from_secs(60));
    stop(d);
}

fn cpu_some_avg10() -> f64 {
    let text = read("/proc/pressure/cpu");
    let field = text.split_whitespace().nth(1).unwrap();
    field.strip_prefix("avg10=").unwrap().parse().unwrap()
}

/// More busy processes than CPUs: tasks wait for a CPU, and the cpu
/// `some` pressure rises above a threshold between now and 100%; it sinks
/// again when they stop.
#[test]
fn cpu_pressure_under_more_busy_processes_than_cpus() {
    let _cpu = cpu_lock();
    let s = Scratch::new("psi");
    s.write_conf("");
    // After the load test's busy processes (or anyone else's), wait for
    // the 10s average to settle: the threshold must lie between it and
    // the 100% that busy processes bring.
    let settling = Instant::now();
    let now = loop {
        let now = cpu_some_avg10();
        if now < 50.0 {
            break now;
        }
        assert!(
            settling.elapsed() < Duration::from_secs(300),
            "the machine stays under cpu pressure ({now}%): no room for the test's own"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let max = (now + 100.0) / 2.0;
    eprintln!("cpu some avg10 now {now}%, MaxPressure={max:.1}%");
    s.write_rule(
        "psi",
        &format!(
            "[System]\nPressure=cpu\nPressureAverage=10s\nMaxPressure={max:.1}%\nCheckInterval=500ms\nFor=1s\n"
        ),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("psi: if the cpu pressure stall (some tasks, 10s average) is above"),
        "{out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule psi: healthy");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    {
        let _busy = Children::busy(cpus * 3);
        let line = wait_rule(&s, "psi", "failing", Duration::from_secs(120));
        assert!(line.contains("cpu pressure some avg10 "), "{line}");
        assert!(
            line.contains(&format!("above {max:.1}%").replace(".0%", "%")),
            "{line}"
        );
    }
    wait_rule(&s, "psi", "healthy", Duration::from_secs(180));
    stop(d);
}

/// A tmpfs of 8 MiB and 128 inodes: a file of 5 MiB takes its free space
/// below 4 MiB, 100 files its free inodes below 64; each rule recovers when
/// they are removed, and the other rule stays healthy meanwhile.
#[test]
fn a_small_tmpfs_filled_and_emptied() {
    let s = Scratch::new("tmpfs");
    s.write_conf("");
    let mnt = s.path("mnt");
    let _tmpfs = Tmpfs::mount(&mnt, "size=8m,nr_inodes=128");
    s.write_rule(
        "space",
        &format!(
            "[System]\nFilesystem={}\nMinFreeSpace=4M\nCheckInterval=200ms\nFor=600ms\n",
            mnt.display()
        ),
    );
    s.write_rule(
        "inodes",
        &format!(
            "[System]\nFilesystem={}\nMinFreeInodes=64\nCheckInterval=200ms\nFor=600ms\n",
            mnt.display()
        ),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "space: if on the filesystem of {} free space is below 4 MiB (statvfs, for unprivileged users)",
            mnt.display()
        )),
        "{out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule space: healthy");
    d.expect("rule inodes: healthy");

    let big = mnt.join("big");
    std::fs::write(&big, vec![1u8; 5 << 20]).unwrap();
    let line = wait_rule(&s, "space", "failing", Duration::from_secs(30));
    assert!(line.contains("free space 3 MiB below 4 MiB for "), "{line}");
    std::fs::remove_file(&big).unwrap();
    wait_rule(&s, "space", "healthy", Duration::from_secs(30));
    never_failed(&mut d, "inodes");

    for i in 0..100 {
        std::fs::write(mnt.join(format!("f{i}")), "").unwrap();
    }
    let line = wait_rule(&s, "inodes", "failing", Duration::from_secs(30));
    assert!(
        line.contains("free inodes ") && line.contains(" below 64"),
        "{line}"
    );
    for i in 0..100 {
        std::fs::remove_file(mnt.join(format!("f{i}"))).unwrap();
    }
    wait_rule(&s, "inodes", "healthy", Duration::from_secs(30));
    stop(d);
}

/// A filesystem rule on a FUSE mount whose server never answers `statfs`:
/// the `statvfs` hangs in a probe worker, the rule fails with the check's
/// timeout, and the loop keeps feeding and pinging. When the server goes
/// away the same look fails with the mount's error.
#[test]
fn a_filesystem_rule_on_a_hung_fuse_mount_times_out_and_pings_go_on() {
    let s = Scratch::new("statvfs-fuse");
    s.write_conf("CheckTimeout=500ms\n");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    s.write_rule(
        "hung",
        &format!(
            "[System]\nFilesystem={}\nMinFreeSpace=1M\nCheckInterval=1s\nFor=0s\n",
            mnt.display()
        ),
    );
    let temperature = sensor(&s, "45000");
    s.write_rule(
        "ok",
        &format!(
            "[System]\nTemperatureSensor={}\nMaxTemperature=80\nCheckInterval=200ms\nFor=0s\n",
            temperature.display()
        ),
    );
    let pings = Pings::listen(&s.path("notify.sock"));
    let fs = hangfs::HangFs::with(hangfs::Fault::Statfs);
    let mut command = heartwatch_with_pings(&s.conf(), &s.path("notify.sock"));
    fs.mount_in_child(&mut command, &mnt);
    let mut d = Daemon::start_with(&mut command);
    let mut server = fs.serve();
    let started = Instant::now();
    d.expect("ready: 2 rules");
    d.expect("rule ok: healthy");
    d.expect("rule hung: failing: check timed out");
    assert!(
        server.seen.hung.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the statvfs never reached the filesystem"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_rhythm(&pings, started, "hung FUSE statfs");
    let status = s.wait_status("check timed out");
    assert!(rule_line(&status, "ok").contains(" healthy "), "{status}");
    // One stuck statvfs, not one per check interval.
    assert_eq!(
        server.seen.hung.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    server.abort();
    // ENOTCONN, or ECONNABORTED for the look that was waiting.
    d.expect("rule hung: failing: unreadable: statvfs of the filesystem: E");
    d.signal(SIGTERM);
    d.expect("stopped");
    assert!(d.wait_exit(Duration::from_secs(10)).is_some());
    assert!(!mounted_on_host(&mnt), "the FUSE mount leaked to the host");
}

fn file_handles() -> u64 {
    read("/proc/sys/fs/file-nr")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A child opens 10 000 files: the open file handles exceed a threshold
/// 4 000 above what they are now; when it exits, the rule recovers.
#[test]
fn file_handles_opened_in_bulk() {
    let s = Scratch::new("file-nr");
    s.write_conf("");
    let max = file_handles() + 4000;
    s.write_rule(
        "handles",
        &format!("[System]\nMaxFileHandles={max}\nCheckInterval=200ms\nFor=1s\n"),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule handles: healthy");
    {
        let _opener = Children::python(
            "import resource, time\nresource.setrlimit(resource.RLIMIT_NOFILE, (12000, 12000))\nfiles = [open('/dev/null') for _ in range(10000)]\nprint('ready', flush=True)\ntime.sleep(3600)\n",
        );
        let line = wait_rule(&s, "handles", "failing", Duration::from_secs(30));
        assert!(
            line.contains("file handles ") && line.contains(&format!(" above {max} for ")),
            "{line}"
        );
    }
    wait_rule(&s, "handles", "healthy", Duration::from_secs(30));
    stop(d);
}

/// A temperature file in millidegrees, in the scratch directory.
fn sensor(s: &Scratch, value: &str) -> PathBuf {
    let path = s.path("temp1_input");
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// A temperature file whose value the test changes: above the threshold
/// for longer than the quick rule's `For=` and shorter than the patient
/// one's, then back; then gone (a cause of its own), then back.
#[test]
fn a_temperature_sensor_whose_value_changes() {
    let s = Scratch::new("temperature");
    s.write_conf("");
    let path = sensor(&s, "45000");
    for (name, hold) in [("quick", "1s"), ("patient", "1h")] {
        s.write_rule(
            name,
            &format!(
                "[System]\nTemperatureSensor={}\nMaxTemperature=80.5\nCheckInterval=100ms\nFor={hold}\n",
                path.display()
            ),
        );
    }
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "quick: if the temperature in {} is above 80.5 °C at every reading for 1s",
            path.display()
        )),
        "{out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule quick: healthy");
    d.expect("rule patient: healthy");
    let line = wait_rule(&s, "quick", "healthy", Duration::from_secs(30));
    assert!(line.contains(" healthy   system  since "), "{line}");
    std::fs::write(&path, "91250\n").unwrap();
    let line = wait_rule(&s, "quick", "failing", Duration::from_secs(30));
    assert!(
        line.contains("temperature 91.25 °C above 80.5 °C for 1s"),
        "{line}"
    );
    std::fs::write(&path, "45000\n").unwrap();
    wait_rule(&s, "quick", "healthy", Duration::from_secs(30));
    never_failed(&mut d, "patient");

    // Gone: unreadable at once, for both (no For= for a source that
    // cannot be read).
    std::fs::remove_file(&path).unwrap();
    let line = wait_rule(&s, "patient", "failing", Duration::from_secs(30));
    assert!(
        line.contains("unreadable: the temperature sensor: ENOENT"),
        "{line}"
    );
    std::fs::write(&path, "45000\n").unwrap();
    wait_rule(&s, "patient", "healthy", Duration::from_secs(30));
    wait_rule(&s, "quick", "healthy", Duration::from_secs(30));
    stop(d);
}

/// On a host without pressure stall information (here: a mount namespace
/// with an empty tmpfs over /proc/pressure), `check` refuses a pressure
/// rule and the daemon reports it as the rule's cause.
#[test]
fn missing_pressure_stall_information_is_an_error_at_check_and_a_cause_at_run() {
    let s = Scratch::new("no-psi");
    s.write_conf("");
    let rule = s.write_rule(
        "psi",
        "[System]\nPressure=memory\nMaxPressure=20%\nCheckInterval=200ms\n",
    );
    let hide = "mount -t tmpfs none /proc/pressure && exec \"$@\"";
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", hide, "sh", BIN, "check", "--config"])
        .arg(s.conf())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "{}: Pressure=memory: pressure stall information missing: /proc/pressure/memory: No such file or directory",
            rule.display()
        )),
        "{err}"
    );
    // The same configuration passes where the kernel has PSI.
    let (code, _, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");

    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", hide, "sh", BIN, "run", "--config"])
        .arg(s.conf());
    let mut d = Daemon::start_with(&mut command);
    d.expect("rule psi: failing: pressure stall information missing: /proc/pressure/memory does not exist");
    stop(d);
}
