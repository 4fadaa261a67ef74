//! Hostile and broken rule files through the real binary: each is refused
//! with a message that names the file and what is wrong, `check` never
//! hangs or crashes on it, and a running daemon that is asked to reload it
//! keeps its configuration and its rhythm (systemd pings go on).

mod common;
#[path = "common/pings.rs"]
mod pings;
use common::*;
use pings::Pings;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

/// `heartwatch check` that must finish: a stall is a failure, not a hang.
fn check_within(conf: &Path, limit: Duration) -> (i32, String, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["check", "--config"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads so a long error list cannot block the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        String::from_utf8_lossy(&v).into_owned()
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("`heartwatch check` stalled for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let code = status
        .code()
        .unwrap_or_else(|| panic!("`heartwatch check` crashed: {status:?}"));
    (
        code,
        out.join().unwrap(),
        err.join().unwrap(),
        start.elapsed(),
    )
}

/// One kind of hostile rule: how to make it, and what the error must say.
struct Case {
    name: &'static str,
    make: fn(&Scratch) -> std::path::PathBuf,
    want: &'static str,
}

fn rules_dir(s: &Scratch) -> std::path::PathBuf {
    s.conf().join("rules.d")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "binary garbage (an ELF executable)",
            make: |s| {
                // Without its newlines, so that the error is on line 1
                // whatever bytes the build put into the ELF header (the
                // entry point's address can hold a 0x0a).
                let bytes: Vec<u8> = std::fs::read(BIN).unwrap()[..16 * 1024]
                    .iter()
                    .map(|&b| if b == b'\n' { 0 } else { b })
                    .collect();
                let path = rules_dir(s).join("elf.rule");
                std::fs::write(&path, &bytes).unwrap();
                path
            },
            want: ":1: is not UTF-8 text",
        },
        Case {
            name: "binary garbage that happens to be UTF-8",
            make: |s| {
                let path = rules_dir(s).join("nul.rule");
                std::fs::write(&path, b"\0\x01\x02\x7f[Heartbeat]\0\n").unwrap();
                path
            },
            want: ":1: control character '\\0' in line",
        },
        Case {
            name: "non-UTF-8 text",
            make: |s| {
                let path = rules_dir(s).join("latin1.rule");
                std::fs::write(&path, b"[Heartbeat]\nMaxAge=1s\nFile=/run/caf\xe9\n").unwrap();
                path
            },
            want: ":3: is not UTF-8 text",
        },
        Case {
            name: "a 10 MB file",
            make: |s| {
                let path = rules_dir(s).join("huge.rule");
                let mut text = String::from("[Heartbeat]\nFile=/a\nMaxAge=1s\n");
                while text.len() < 10 * 1024 * 1024 {
                    text.push_str("# padding padding padding padding padding padding\n");
                }
                text.truncate(10 * 1024 * 1024);
                std::fs::write(&path, text).unwrap();
                path
            },
            want: ": is 10485760 bytes; the largest accepted is 65536",
        },
        Case {
            name: "a 10 000-character line",
            make: |s| {
                let path = rules_dir(s).join("long.rule");
                let text = format!("[Heartbeat]\nFile=/{}\nMaxAge=1s\n", "a".repeat(9994));
                std::fs::write(&path, text).unwrap();
                path
            },
            want: ":2: line is 10000 bytes long; the longest accepted is 4096",
        },
        Case {
            name: "a FIFO",
            make: |s| {
                let path = rules_dir(s).join("fifo.rule");
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits(0o644).unwrap())
                    .unwrap();
                path
            },
            want: ": is not a regular file (a FIFO)",
        },
        Case {
            name: "a directory",
            make: |s| {
                let path = rules_dir(s).join("dir.rule");
                std::fs::create_dir(&path).unwrap();
                path
            },
            want: ": is not a regular file (a directory)",
        },
        Case {
            name: "a character device",
            make: |s| {
                let path = rules_dir(s).join("null.rule");
                symlink("/dev/null", &path).unwrap();
                path
            },
            want: ": is not a regular file (a character device)",
        },
        Case {
            name: "a rule that is a symlink loop",
            make: |s| {
                let path = rules_dir(s).join("loop.rule");
                symlink("loop.rule", &path).unwrap();
                path
            },
            want: ": cannot open: Too many levels of symbolic links",
        },
        Case {
            name: "a dangling symlink",
            make: |s| {
                let path = rules_dir(s).join("dangling.rule");
                symlink("/nonexistent/x.rule", &path).unwrap();
                path
            },
            want: ": cannot open: No such file or directory",
        },
        Case {
            name: "a file name that is not UTF-8",
            make: |s| {
                use std::os::unix::ffi::OsStrExt;
                let name = std::ffi::OsStr::from_bytes(b"caf\xe9.rule");
                let path = rules_dir(s).join(name);
                std::fs::write(&path, "[Heartbeat]\nFile=/a\nMaxAge=1s\n").unwrap();
                path
            },
            want: ": the file name is not UTF-8",
        },
        Case {
            name: "a rule directory that is a symlink loop",
            make: |s| {
                let dir = rules_dir(s);
                std::fs::remove_dir_all(&dir).unwrap();
                symlink("rules.d", &dir).unwrap();
                dir
            },
            want: ": cannot read directory: Too many levels of symbolic links",
        },
    ]
}

#[test]
fn hostile_rule_files_are_refused_with_a_clear_error_by_check() {
    for case in cases() {
        let s = Scratch::new("hostile");
        s.write_conf("");
        let path = (case.make)(&s);
        let (code, out, err, took) = check_within(&s.conf(), Duration::from_secs(20));
        eprintln!("{}: check took {took:?}", case.name);
        assert_eq!(
            code, 3,
            "{}: exit code; stdout {out} stderr {err}",
            case.name
        );
        let expected = format!("{}{}", path.display(), case.want);
        assert!(
            err.contains(&expected),
            "{}: wanted {expected:?} in\n{err}",
            case.name
        );
    }
}

#[test]
fn crlf_line_endings_are_read_like_lf() {
    let s = Scratch::new("crlf");
    s.write_conf("");
    let beat = s.path("crlf.beat");
    touch(&beat);
    let text = format!(
        "# written on Windows\r\n[Heartbeat]\r\nFile={}\r\nMaxAge=1h\r\n\r\n[Escalate]\r\nFinally=log\r\n",
        beat.display()
    );
    s.write_rule("crlf", &text);
    let (code, out, err, _) = check_within(&s.conf(), Duration::from_secs(20));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "crlf: if {} is not modified for 1h",
            beat.display()
        )),
        "{out}"
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready: 1 rule");
    d.expect("rule crlf: healthy");
}

fn heartbeat_rule(file: &Path, max_age: &str) -> String {
    format!("[Heartbeat]\nFile={}\nMaxAge={max_age}\n", file.display())
}

#[test]
fn thousands_of_rule_files_load_and_run() {
    const RULES: usize = 3000;
    let s = Scratch::new("many");
    s.write_conf("");
    let beats = s.path("beats");
    std::fs::create_dir(&beats).unwrap();
    for i in 0..RULES {
        let beat = beats.join(format!("{i}.beat"));
        touch(&beat);
        s.write_rule(&format!("rule-{i:05}"), &heartbeat_rule(&beat, "1h"));
    }
    let (code, out, err, took) = check_within(&s.conf(), Duration::from_secs(60));
    eprintln!("check of {RULES} rules took {took:?}");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("rules: {RULES}")), "{out}");

    let started = Instant::now();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect(&format!("ready: {RULES} rules"));
    eprintln!("ready with {RULES} rules after {:?}", started.elapsed());
    d.expect("rule rule-02999: healthy");
    s.wait_status(&format!(
        "rules: {RULES} ({RULES} healthy, 0 failing, 0 starting)"
    ));
}

#[test]
fn thousands_of_broken_rule_files_are_all_reported() {
    const RULES: usize = 3000;
    let s = Scratch::new("many-broken");
    s.write_conf("");
    for i in 0..RULES {
        let path = rules_dir(&s).join(format!("bad-{i:05}.rule"));
        std::fs::write(&path, b"\xff\xfe garbage \x00").unwrap();
    }
    let (code, _, err, took) = check_within(&s.conf(), Duration::from_secs(60));
    eprintln!("check of {RULES} broken rules took {took:?}");
    assert_eq!(code, 3);
    assert_eq!(err.matches("is not UTF-8 text").count(), RULES);
    assert!(
        err.contains(&format!("{RULES} errors")),
        "{}",
        &err[err.len() - 300..]
    );
}

/// The daemon is asked to reload each hostile file in turn: every reload is
/// refused, the running rule stays, and systemd's pings never stop.
#[test]
fn a_running_daemon_refuses_hostile_reloads_and_keeps_its_rhythm() {
    let s = Scratch::new("hostile-reload");
    s.write_conf("");
    let beat = s.path("good.beat");
    touch(&beat);
    s.write_rule("good", &heartbeat_rule(&beat, "1h"));
    let socket_path = s.path("notify.sock");
    let pings = Pings::listen(&socket_path);
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.conf())
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "1000000"),
    );
    d.expect("ready: 1 rule");
    d.expect("rule good: healthy");

    let began = Instant::now();
    for case in cases() {
        if case.name.starts_with("a rule directory") {
            continue; // replaces rules.d itself; covered by `check` above
        }
        let path = (case.make)(&s);
        d.signal(SIGHUP);
        let refused = d.expect(&format!("{}{}", path.display(), case.want));
        eprintln!("{}: {refused}", case.name);
        d.expect("reload refused: 1 error; the running configuration stays");
        // Forget this refusal so the next case waits for its own.
        d.seen.retain(|l| !l.contains("reload refused"));
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // Back to the good tree: it reloads.
    d.signal(SIGHUP);
    d.expect("reloaded: 1 rule");
    // The status is written off the loop thread (and fsynced): wait for
    // the one that shows the rule, not for whichever is on disk now.
    let status = s.wait_status("  good  healthy");
    assert!(status.contains("rules: 1"), "{status}");
    // Long enough to hear several pings.
    std::thread::sleep(Duration::from_millis(1500));
    let (count, worst) = pings.rhythm(began, Instant::now());
    eprintln!(
        "{count} pings over {:?} of hostile reloads; longest silence {worst:?}",
        began.elapsed()
    );
    assert!(count >= 2, "systemd heard {count} pings");
    // WATCHDOG_USEC=1s: a silence that long would have systemd kill us.
    assert!(worst < Duration::from_secs(1), "no ping for {worst:?}");
    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
}

/// A large rules.d is read in two halves at once (`config::trusted`): the
/// errors still come in the order of the file names, each file judged as
/// when read alone: a FIFO is refused unopened, a symlink is followed,
/// broken text is named by line, in either half.
#[test]
fn a_large_rules_directory_reports_its_errors_in_file_order() {
    const RULES: usize = 1500;
    let s = Scratch::new("many-mixed");
    s.write_conf("");
    let beats = s.path("beats");
    std::fs::create_dir(&beats).unwrap();
    let beat = beats.join("a.beat");
    touch(&beat);
    let good = heartbeat_rule(&beat, "1h");
    for i in 0..RULES {
        s.write_rule(&format!("rule-{i:05}"), &good);
    }
    let dir = rules_dir(&s);
    let bad = |i: usize| dir.join(format!("rule-{i:05}.rule"));
    std::fs::write(bad(3), b"[Heartbeat]\n\xff\n").unwrap();
    std::fs::write(bad(700), format!("{good}Colour=blue\n")).unwrap();
    std::fs::remove_file(bad(800)).unwrap();
    nix::unistd::mkfifo(&bad(800), nix::sys::stat::Mode::from_bits(0o644).unwrap()).unwrap();
    std::fs::remove_file(bad(900)).unwrap();
    symlink(bad(901), bad(900)).unwrap();
    std::fs::write(bad(1499), "[Heartbeat]\nMaxAge=1h\n").unwrap();
    let (code, _, err, _) = check_within(&s.conf(), Duration::from_secs(60));
    assert_eq!(code, 3, "{err}");
    let wants = [
        format!("{}:2: is not UTF-8 text", bad(3).display()),
        format!(
            "{}:4: unknown key Colour= in [Heartbeat]",
            bad(700).display()
        ),
        format!("{}: is not a regular file (a FIFO)", bad(800).display()),
        format!("{}:1: [Heartbeat] needs File=", bad(1499).display()),
    ];
    let mut at = 0;
    for want in &wants {
        let found = err[at..]
            .find(want.as_str())
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in:\n{err}"));
        at += found + want.len();
    }
    assert!(err.contains("4 errors"), "{err}");
}
