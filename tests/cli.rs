//! The command line through the real binary, as a hostile local user would
//! try it: `beat` on whatever was planted in the heartbeat's place, `status`
//! when the daemon died and its PID was reused or the rules no longer
//! validate, `check` and `status` writing into a pipe closed early, and
//! pidfiles that name a thread or init.

mod common;
use common::*;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn heartbeat_rule(file: &Path) -> String {
    format!("[Heartbeat]\nFile={}\nMaxAge=1h\n", file.display())
}

/// Sets a file's (or a node's, or a link target's) times far in the past,
/// so that any touch shows.
fn age(path: &Path) {
    let old = nix::sys::time::TimeSpec::new(1_000_000, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn mtime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).unwrap().mtime()
}

/// `heartwatch beat NAME`, which must end on its own (a FIFO must not
/// hang it); the limit only stops a hang.
fn beat(conf: &Path, name: &str) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(["--config"])
        .arg(conf)
        .args(["beat", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("heartwatch beat {name} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

/// A character device node like /dev/null (1:3), made in the scratch
/// directory: nothing real is ever opened by the test.
fn null_device(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits(0o666).unwrap(),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
}

#[test]
fn beat_never_follows_a_symlink_planted_in_the_heartbeats_place() {
    let s = Scratch::new("beat-link");
    s.write_conf("");
    let beat_path = s.path("job.beat");
    s.write_rule("job", &heartbeat_rule(&beat_path));

    // A link to a file elsewhere: the target is not touched.
    let target = s.path("elsewhere");
    std::fs::write(&target, "precious").unwrap();
    age(&target);
    std::os::unix::fs::symlink(&target, &beat_path).unwrap();
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a symlink; heartwatch beat touches only regular files",
            beat_path.display()
        )),
        "{err}"
    );
    assert_eq!(mtime(&target), 1_000_000, "the link's target was touched");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

    // A dangling link: its target is not created.
    std::fs::remove_file(&beat_path).unwrap();
    let absent = s.path("created-as-root");
    std::os::unix::fs::symlink(&absent, &beat_path).unwrap();
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a symlink"), "{err}");
    assert!(!absent.exists(), "the dangling link's target was created");

    // A link to a device: the device is never opened (its node's times
    // would change if it were touched through an open descriptor).
    std::fs::remove_file(&beat_path).unwrap();
    let device = s.path("fake-watchdog");
    null_device(&device);
    age(&device);
    std::os::unix::fs::symlink(&device, &beat_path).unwrap();
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a symlink"), "{err}");
    assert_eq!(mtime(&device), 1_000_000, "the device was touched");
}

#[test]
fn beat_refuses_fifos_directories_and_devices() {
    let s = Scratch::new("beat-kinds");
    s.write_conf("");
    let beat_path = s.path("job.beat");
    s.write_rule("job", &heartbeat_rule(&beat_path));

    // A FIFO without a reader, then with one: never opened, never a hang.
    nix::unistd::mkfifo(&beat_path, nix::sys::stat::Mode::from_bits(0o644).unwrap()).unwrap();
    age(&beat_path);
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}: is a FIFO; heartwatch beat touches only regular files",
            beat_path.display()
        )),
        "{err}"
    );
    let reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&beat_path)
            .unwrap()
    };
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a FIFO"), "{err}");
    assert_eq!(
        mtime(&beat_path),
        1_000_000,
        "the FIFO was opened and touched"
    );
    drop(reader);
    std::fs::remove_file(&beat_path).unwrap();

    // A directory.
    std::fs::create_dir(&beat_path).unwrap();
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("job.beat: is a directory;"), "{err}");
    std::fs::remove_dir(&beat_path).unwrap();

    // A device node.
    null_device(&beat_path);
    age(&beat_path);
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("job.beat: is a character device;"), "{err}");
    assert_eq!(
        mtime(&beat_path),
        1_000_000,
        "the device was opened and touched"
    );
    std::fs::remove_file(&beat_path).unwrap();

    // What beat is for still works: a missing file is created, a regular
    // file is touched.
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::metadata(&beat_path).unwrap().is_file());
    age(&beat_path);
    let (code, err) = beat(&s.conf(), "job");
    assert_eq!(code, 0, "{err}");
    assert!(mtime(&beat_path) > 1_000_000);
}

#[test]
fn beat_takes_a_rule_named_like_an_option_after_a_double_dash() {
    let s = Scratch::new("beat-dash");
    s.write_conf("");
    let beat_path = s.path("x.beat");
    s.write_rule("-x", &heartbeat_rule(&beat_path));
    // Everything after `--` is a word, so the options come first.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(s.conf())
        .args(["beat", "--", "-x"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(beat_path.is_file());
    // Without `--` it is still an unknown option.
    assert_eq!(heartwatch(&s.conf(), &["beat", "-x"]).0, 2);
}

/// A daemon with one healthy heartbeat rule, ready.
fn running_daemon(s: &Scratch) -> Daemon {
    s.write_conf("");
    let beat_path = s.path("job.beat");
    s.write_rule("job", &heartbeat_rule(&beat_path));
    touch(&beat_path);
    let d = Daemon::start(&s.conf(), &[]);
    s.wait_status("job  healthy");
    d
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[test]
fn status_does_not_take_a_reused_pid_for_the_daemon() {
    let s = Scratch::new("status-reuse");
    let mut d = running_daemon(&s);
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    let daemon_pid = d.child.id();
    d.signal(SIGKILL);
    d.wait_exit(Duration::from_secs(30)).unwrap();
    // The daemon's PID now belongs to another live process: the status
    // file is rewritten to name the test's own child, started later.
    let mut other = Command::new("sleep").arg("1000").spawn().unwrap();
    let text = s.status_record().replace(
        &format!("\npid {daemon_pid}\n"),
        &format!("\npid {}\n", other.id()),
    );
    assert!(text.contains(&format!("\npid {}\n", other.id())), "{text}");
    std::fs::write(s.path("run/status"), text).unwrap();
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        first_line(&out).starts_with("NOT RUNNING:"),
        "first line: {out}"
    );
    assert!(out.contains("another process"), "{out}");
    // The last status follows, for the post-mortem.
    assert!(out.contains("job  healthy"), "{out}");
}

#[test]
fn status_says_in_its_first_line_that_a_killed_daemon_is_not_running() {
    let s = Scratch::new("status-killed");
    let mut d = running_daemon(&s);
    d.signal(SIGKILL);
    d.wait_exit(Duration::from_secs(30)).unwrap();
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        first_line(&out).starts_with("NOT RUNNING:"),
        "first line: {out}"
    );
    assert!(out.contains("without an orderly stop"), "{out}");
    assert!(out.contains("job  healthy"), "{out}");
}

#[test]
fn status_says_in_its_first_line_that_the_daemon_stopped() {
    let s = Scratch::new("status-stopped");
    let mut d = running_daemon(&s);
    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        first_line(&out).starts_with("NOT RUNNING: heartwatch stopped"),
        "first line: {out}"
    );
}

#[test]
fn status_finds_the_daemon_when_the_configuration_no_longer_validates() {
    let s = Scratch::new("status-broken");
    let _d = running_daemon(&s);
    // A rule edited into an invalid state since the daemon loaded it.
    s.write_rule("broken", "[Heartbeat]\nFile=relative\n");
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!first_line(&out).starts_with("NOT RUNNING"), "{out}");
    assert!(out.contains("job  healthy"), "{out}");
    assert!(err.contains("no longer validates"), "{err}");
    // heartwatch.conf itself broken: its RuntimeDirectory= still leads to
    // the daemon, and status says what it did.
    let conf = s.conf().join("heartwatch.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}Bogus=1\n")).unwrap();
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("job  healthy"), "{out}");
    assert!(err.contains("heartwatch.conf does not validate"), "{err}");
    assert!(err.contains(&s.path("run").display().to_string()), "{err}");
    // Not even readable as settings: the default directory, said so.
    std::fs::write(&conf, "RuntimeDirectory\n").unwrap();
    let (_, _, err) = heartwatch(&s.conf(), &["status"]);
    assert!(err.contains("/run/heartwatch"), "{err}");
}

/// Runs `heartwatch ARGS`, reads one byte of its output and closes the
/// pipe; returns the exit code and stderr.
fn read_one_byte_and_close(conf: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn a_closed_pipe_ends_check_quietly() {
    let s = Scratch::new("pipe-check");
    s.write_conf("");
    // More output than a pipe holds (64 KiB).
    for i in 0..1000 {
        s.write_rule(
            &format!("rule-{i:04}"),
            &heartbeat_rule(&s.path(&format!("rule-{i:04}.beat"))),
        );
    }
    let (code, err) = read_one_byte_and_close(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err, "");
}

#[test]
fn a_closed_pipe_ends_status_quietly() {
    let s = Scratch::new("pipe-status");
    s.write_conf("");
    // A status file larger than a pipe holds, left by a daemon that is gone.
    let mut text = gone_daemons_record().replace("end\n", "");
    for i in 0..5000 {
        text.push_str(&format!(
            "rule rule-{i:04}\theartbeat\thealthy\t1767225600\t\tidle\t\t0\t\t\t\n"
        ));
    }
    text.push_str("end\n");
    std::fs::create_dir_all(s.path("run")).unwrap();
    std::fs::write(s.path("run/status"), text).unwrap();
    let (code, err) = read_one_byte_and_close(&s.conf(), &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A record as a daemon of this version writes it, with one healthy rule,
/// written by a process that is gone.
fn gone_daemons_record() -> String {
    "heartwatch-status 2\nversion 0.2.0\npid 2147483647\nstarted 1767225600\nupdated 1767225600\nroot /etc/heartwatch\ndry-run no\nbudget 0\t3\t3600000000000\t\nrule job\theartbeat\thealthy\t1767225600\t\tidle\t\t0\t\t\t\nend\n".into()
}

#[test]
fn status_refuses_what_is_not_a_status_record_and_says_what_it_is() {
    let s = Scratch::new("status-hostile");
    s.write_conf("");
    std::fs::create_dir_all(s.path("run")).unwrap();
    let file = s.path("run/status");
    let refused = |what: &str| {
        let (code, out, err) = heartwatch(&s.conf(), &["status"]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert_eq!(out, "", "{what}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        err
    };
    // What a daemon writes reads as the status of a daemon that is gone.
    std::fs::write(&file, gone_daemons_record()).unwrap();
    let (code, out, err) = heartwatch(&s.conf(), &["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("\n  job  healthy   heartbeat  since 2026-01-01 00:00:00 UTC\n"),
        "{out}"
    );
    assert!(out.contains("without an orderly stop"), "{out}");
    let (code, out, err) = heartwatch(&s.conf(), &["status", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("\"state\": \"gone\", \"state_detail\": \"the daemon that wrote this status (pid 2147483647) has exited without an orderly stop"), "{out}");

    for (what, bytes, needle) in [
        ("empty", Vec::new(), "is empty, not a status record"),
        ("binary", b"\x7fELF\x02\x01\x01\0\0\xff\xfe\n".to_vec(), "is not text"),
        (
            "cut short",
            gone_daemons_record().replace("end\n", "").into_bytes(),
            "is cut short",
        ),
        (
            "newer",
            gone_daemons_record()
                .replace("heartwatch-status 2\n", "heartwatch-status 3\n")
                .into_bytes(),
            "newer heartwatch",
        ),
        (
            "older",
            gone_daemons_record()
                .replace("heartwatch-status 2\n", "heartwatch-status 1\n")
                .into_bytes(),
            "is in status format 1, written by an older heartwatch daemon; this one reads format 2: restart the daemon",
        ),
        (
            "prose of 0.2.0",
            b"heartwatch 0.2.0 pid 812 running since 2026-11-24 14:05:03 UTC, updated 2026-11-24 14:05:04 UTC\nidentity: pid 812 start 4711 boot x\nrules: 0 (0 healthy, 0 failing, 0 starting)\n".to_vec(),
            "written by an older heartwatch daemon (0.2.0), whose status is text this heartwatch does not read; restart the daemon",
        ),
    ] {
        std::fs::write(&file, bytes).unwrap();
        let err = refused(what);
        assert!(err.contains(needle), "{what}: {err}");
        assert!(err.contains(&file.display().to_string()), "{what}: {err}");
    }

    // Huge: read no further than the bound.
    let mut huge = gone_daemons_record().replace("end\n", "");
    let line = "rule job\theartbeat\thealthy\t1767225600\t\tidle\t\t0\t\t\t\n";
    huge.push_str(&line.repeat((17 << 20) / line.len()));
    std::fs::write(&file, huge).unwrap();
    let err = refused("huge");
    assert!(err.contains("larger than 16 MiB"), "{err}");

    // Not a regular file in its place: never opened, never waited on.
    std::fs::remove_file(&file).unwrap();
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits(0o644).unwrap()).unwrap();
    let err = refused("FIFO");
    assert!(
        err.contains("is a FIFO; heartwatch status reads only a regular file"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();
    let elsewhere = s.path("record");
    std::fs::write(&elsewhere, gone_daemons_record()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let err = refused("symlink");
    assert!(
        err.contains("is a symlink; heartwatch status reads only a regular file"),
        "{err}"
    );
}

/// A thread of this test process, parked until the returned sender is
/// dropped: its TID is a PID that names no process.
fn parked_thread() -> (i32, std::sync::mpsc::Sender<()>) {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        let _ = stop_rx.recv();
    });
    (tid_rx.recv().unwrap(), stop_tx)
}

#[test]
fn a_pidfile_naming_a_thread_says_so() {
    let s = Scratch::new("thread");
    s.write_conf("");
    let (tid, _stop) = parked_thread();
    assert_ne!(tid, std::process::id() as i32);
    let pidfile = s.path("job.pid");
    std::fs::write(&pidfile, format!("{tid}\n")).unwrap();
    s.write_rule(
        "job",
        &format!(
            "[Process]\nPidFile={}\nCheckInterval=200ms\n",
            pidfile.display()
        ),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    let me = std::process::id();
    assert!(
        out.contains(&format!(
            "warning: rule job: {} names thread {tid} of process {me}, not a process",
            pidfile.display()
        )),
        "{out}"
    );
    let _d = Daemon::start(&s.conf(), &[]);
    let status = s.wait_status("job  failing");
    assert!(
        status.contains(&format!(
            "pidfile names a thread: {tid} is a thread of process {me}, not a process"
        )),
        "{status}"
    );
}

#[test]
fn check_warns_of_a_pidfile_naming_init() {
    let s = Scratch::new("init");
    s.write_conf("");
    let pidfile = s.path("init.pid");
    std::fs::write(&pidfile, "1\n").unwrap();
    s.write_rule(
        "init",
        &format!("[Process]\nPidFile={}\n", pidfile.display()),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "warning: rule init: {} names PID 1 (init)",
            pidfile.display()
        )),
        "{out}"
    );
}

#[test]
fn a_pidfile_that_is_a_fifo_or_a_device_is_never_opened() {
    let s = Scratch::new("pidfile-kinds");
    s.write_conf("");
    let fifo = s.path("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits(0o644).unwrap()).unwrap();
    let device = s.path("device");
    null_device(&device);
    let link = s.path("link.pid");
    std::os::unix::fs::symlink(&device, &link).unwrap();
    // And a symlink loop: not "missing", but why it cannot be read.
    let looped = s.path("loop.pid");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    for (name, path) in [("fifo", &fifo), ("link", &link), ("loop", &looped)] {
        s.write_rule(
            name,
            &format!(
                "[Process]\nPidFile={}\nCheckInterval=200ms\n",
                path.display()
            ),
        );
    }
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    for path in [&fifo, &link] {
        assert!(
            out.contains(&format!("{} is not a regular file", path.display())),
            "{out}"
        );
    }
    let _d = Daemon::start(&s.conf(), &[]);
    let status = s.wait_status("link  failing");
    let status = if status.contains("fifo  failing") {
        status
    } else {
        s.wait_status("fifo  failing")
    };
    let status = if status.contains("loop  failing") {
        status
    } else {
        s.wait_status("loop  failing")
    };
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}  failing")))
            .unwrap()
            .to_string()
    };
    for name in ["fifo", "link"] {
        assert!(
            line(name).contains("pidfile refused: it is not a regular file"),
            "{status}"
        );
    }
    assert!(line("loop").contains("unreadable: ELOOP"), "{status}");
}

#[test]
fn a_closed_pipe_on_stderr_ends_a_long_error_report_quietly() {
    let s = Scratch::new("pipe-stderr");
    s.write_conf("");
    for i in 0..1000 {
        s.write_rule(
            &format!("rule-{i:04}"),
            &format!("[Heartbeat]\nFile=relative-{i:04}\nMaxAge=1h\n"),
        );
    }
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(s.conf())
        .arg("check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut byte = [0u8; 1];
    stderr.read_exact(&mut byte).unwrap();
    drop(stderr);
    let status = child.wait().unwrap();
    // The configuration's own exit code, not a panic's (101, or 134 for
    // the release build's abort).
    assert_eq!(status.code(), Some(3), "{status:?}");
}

#[test]
fn a_closed_pipe_ends_memtest_quietly() {
    let s = Scratch::new("pipe-memtest");
    s.write_conf("");
    let (code, err) = read_one_byte_and_close(&s.conf(), &["memtest", "16M", "--passes", "2"]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
}

#[test]
fn a_relative_config_is_shown_as_an_absolute_path() {
    let s = Scratch::new("relative-config");
    s.write_conf("");
    let parent = s.conf().parent().unwrap().to_path_buf();
    let relative = s.conf().file_name().unwrap().to_owned();
    let out = Command::new(BIN)
        .current_dir(&parent)
        .arg("--config")
        .arg(&relative)
        .arg("check")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.contains(&format!(
            "{}: the configuration is valid",
            s.conf().display()
        )),
        "{out}"
    );
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .current_dir(&parent)
            .arg("run")
            .arg("--config")
            .arg(&relative),
    );
    d.expect("ready:");
    let status = s.wait_status("configuration");
    d.signal(SIGTERM);
    d.wait_exit(Duration::from_secs(30)).expect("still running");
    assert!(
        status.contains(&format!("configuration {}\n", s.conf().display()))
            || status.contains(&format!("configuration {} (", s.conf().display())),
        "{status}"
    );
}
