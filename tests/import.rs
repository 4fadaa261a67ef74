//! `heartwatch import-watchdog-conf` through the real binary: on the
//! `watchdog.conf` Debian's `watchdog` package ships and on a file with
//! every option its watchdog.conf(5) documents (both taken from Debian's
//! archive at test time, never copied into the repository), then the
//! refusals (into /etc by accident, over existing files) and the inputs it
//! must not take (malformed lines, binary data). Every configuration it
//! writes must pass `heartwatch check`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Debian's `watchdog` package unpacked, downloaded once into the target
/// directory and reused by later runs.
fn debian_watchdog() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-watchdog");
    let unpacked = cache.join("root");
    if unpacked.join("etc/watchdog.conf").is_file() {
        return unpacked;
    }
    let work = cache.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("apt-get")
        .args(["-q", "download", "watchdog"])
        .current_dir(&work));
    let deb = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download left no .deb");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(work.join("root")));
    // Another run of the suite may have put its copy there first.
    if let Err(e) = std::fs::rename(work.join("root"), &unpacked) {
        assert!(unpacked.join("etc/watchdog.conf").is_file(), "{e}");
    }
    std::fs::remove_dir_all(&work).unwrap();
    unpacked
}

/// The options watchdog.conf(5) documents: each `.TP` tag of OPTIONS, as
/// `(name, placeholder)` (`interval`, `<interval>`).
fn documented_options() -> Vec<(String, String)> {
    let page = debian_watchdog().join("usr/share/man/man5/watchdog.conf.5.gz");
    let out = Command::new("gzip").arg("-dc").arg(&page).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut options = Vec::new();
    let mut in_options = false;
    let mut tag = false;
    for line in text.lines() {
        if let Some(section) = line.strip_prefix(".SH ") {
            in_options = section.trim() == "OPTIONS";
            continue;
        }
        if line == ".TP" {
            tag = in_options;
            continue;
        }
        if tag && let Some((name, placeholder)) = line.split_once(" = ") {
            options.push((name.trim().to_string(), placeholder.trim().to_string()));
        }
        tag = false;
    }
    options
}

/// `heartwatch import-watchdog-conf ARGS` run in `dir`.
fn import_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("import-watchdog-conf")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn import(args: &[&str]) -> (i32, String, String) {
    import_in(Path::new("/"), args)
}

/// `heartwatch check --config DIR` passes.
fn assert_checks(dir: &Path) {
    let (code, out, err) = heartwatch(dir, &["check"]);
    assert_eq!(
        code,
        0,
        "heartwatch check --config {}: stdout {out}\nstderr {err}",
        dir.display()
    );
}

/// Every file written below `dir`, as `(path below dir, text)`.
fn written(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn rule(files: &[(String, String)], name: &str) -> String {
    files
        .iter()
        .find(|(n, _)| n == &format!("rules.d/{name}.rule"))
        .unwrap_or_else(|| panic!("no rules.d/{name}.rule in {files:#?}"))
        .1
        .clone()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn debians_shipped_watchdog_conf_is_translated_and_checks() {
    let source = debian_watchdog().join("etc/watchdog.conf");
    let text = std::fs::read_to_string(&source).unwrap();
    let scratch = Scratch::new("import-debian");
    let out_dir = scratch.path("out");
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    // Each option set in the shipped file is translated or said.
    let files = written(&out_dir);
    let all_output: String = files.iter().map(|(_, t)| t.as_str()).collect();
    let mut options = 0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        options += 1;
        let name = line.split('=').next().unwrap().trim();
        let said = format!("{}:{}: {name}=: ", source.display(), index + 1);
        assert!(
            err.contains(&said) || all_output.contains(&format!("# {name}=")),
            "{name} (line {}) is neither translated nor said:\nstderr {err}\nfiles {files:#?}",
            index + 1
        );
    }
    assert!(options > 0, "the shipped file sets nothing?");
    // It names no device, so Debian's watchdog fed none: neither does this.
    let conf = &files
        .iter()
        .find(|(n, _)| n == "heartwatch.conf")
        .expect("no heartwatch.conf")
        .1;
    assert!(conf.contains("\nDevice=none\n"), "{conf}");
    assert!(out.contains("translated into"), "{out}");
    assert_checks(&out_dir);
}

/// A value for each documented option that makes a configuration `check`
/// can pass on this host (paths in `scratch`).
fn sample_value(name: &str, placeholder: &str, scratch: &Scratch) -> String {
    let here = |f: &str| scratch.path(f).display().to_string();
    match name {
        "interval" => "2".into(),
        "watchdog-timeout" => "10".into(),
        "watchdog-device" => "/dev/watchdog".into(),
        "max-load-1" => "24".into(),
        "max-load-5" => "20".into(),
        "max-load-15" => "16".into(),
        "min-memory" => "2560".into(),
        "allocatable-memory" => "256".into(),
        "max-swap" => "262144".into(),
        "temperature-sensor" => here("temp1_input"),
        "max-temperature" => "80".into(),
        "file" => here("beat"),
        "change" => "60".into(),
        "pidfile" => here("daemon.pid"),
        "ping" => "127.0.0.1".into(),
        "interface" => "lo".into(),
        "test-binary" | "repair-binary" => "/bin/true".into(),
        "test-timeout" => "5".into(),
        "repair-timeout" => "30".into(),
        "retry-timeout" => "30".into(),
        "repair-maximum" => "2".into(),
        "softboot-option" => "no".into(),
        "admin" => "root".into(),
        "test-directory" => here("watchdog.d"),
        "log-dir" => here("log"),
        "heartbeat-file" => here("heartbeat"),
        _ if placeholder == "<yes|no>" => "yes".into(),
        _ if placeholder.starts_with("<auto") => "auto".into(),
        _ => "1".into(),
    }
}

#[test]
fn every_documented_option_is_translated_or_said() {
    let options = documented_options();
    // The man page of watchdog 5.16 documents 38; a parse that finds few
    // is a broken parse, not a short page.
    assert!(options.len() >= 30, "{options:?}");
    let scratch = Scratch::new("import-every");
    std::fs::write(scratch.path("temp1_input"), "45000\n").unwrap();
    let mut text = String::from("# every option of watchdog.conf(5)\n");
    let mut line_of = Vec::new();
    for (name, placeholder) in &options {
        text.push_str(&format!(
            "{name} = {}\n",
            sample_value(name, placeholder, &scratch)
        ));
        line_of.push((name.clone(), text.lines().count()));
    }
    let source = scratch.path("watchdog.conf");
    std::fs::write(&source, &text).unwrap();
    let out_dir = scratch.path("out");
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let files = written(&out_dir);
    let all_output: String = files.iter().map(|(_, t)| t.as_str()).collect();
    for (name, line) in &line_of {
        let said = format!("{}:{line}: {name}=: ", source.display());
        assert!(
            err.contains(&said)
                || all_output.contains(&format!("# {name}="))
                || all_output.contains(&format!(", {name}=")),
            "{name} (line {line}) is neither translated nor said:\nstderr {err}\nfiles {files:#?}"
        );
    }
    // One stderr line per option said, each translated with a change or
    // not translated, and the summary counts them.
    let said = err.lines().filter(|l| l.contains("=: ")).count();
    assert!(
        err.lines()
            .filter(|l| l.contains("=: "))
            .all(|l| l.contains(": changed: ") || l.contains(": not translated: ")),
        "{err}"
    );
    assert!(out.contains(&format!("{} options", options.len())), "{out}");
    let changed = err.lines().filter(|l| l.contains(": changed: ")).count();
    assert!(
        out.contains(&format!(
            "{changed} translated with a change and {} not translated",
            said - changed
        )),
        "{out}\n{err}"
    );
    // Documented, so known: none is called a stranger.
    assert!(!err.contains("not an option of watchdog.conf(5)"), "{err}");
    for reported in [
        "realtime=: not translated",
        "priority=: not translated",
        "admin=: not translated",
        "ping-count=: not translated",
    ] {
        assert!(err.contains(reported), "{reported}: {err}");
    }

    let page = Command::new("getconf").arg("PAGESIZE").output().unwrap();
    let page: u64 = String::from_utf8_lossy(&page.stdout)
        .trim()
        .parse()
        .unwrap();
    let conf = &files
        .iter()
        .find(|(n, _)| n == "heartwatch.conf")
        .unwrap()
        .1;
    for want in [
        "Device=/dev/watchdog\n",
        "Timeout=10s\n",
        "FeedInterval=2s\n",
    ] {
        assert!(conf.contains(want), "{want:?} in {conf}");
    }
    let escalate = "Repair=/bin/true\nRepairTimeout=30s\nRepairAttempts=2\nFinally=reboot\n";
    for (name, want) in [
        ("load-1min", "LoadAverage=1min\nMaxLoad=24\nFor=1min\n"),
        ("load-5min", "LoadAverage=5min\nMaxLoad=20\n"),
        ("load-15min", "LoadAverage=15min\nMaxLoad=16\n"),
        (
            "memory-available",
            &format!("MinMemoryAvailable={}M\n", (2560 * page).div_ceil(1 << 20)),
        ),
        (
            "memory-allocatable",
            &format!("MinMemoryAvailable={}M\n", (256 * page).div_ceil(1 << 20)),
        ),
        (
            "swap-used",
            &format!("MaxSwapUsed={}M\n", 262144 * page / (1 << 20)),
        ),
        // change= plus the retry-timeout watchdog let the error last.
        ("heartbeat", "MaxAge=1min30s\n"),
        ("process-daemon", "[Process]\nPidFile="),
        // An interval plus the retry-timeout without a packet.
        ("interface-lo", "[Interface]\nName=lo\nWithin=32s\n"),
        ("ping-127.0.0.1", " -c 1 -W 1 127.0.0.1\nInterval=2s\n"),
        // Run again only after the last run ended: every Timeout=.
        (
            "command-true",
            "[Command]\nRun=/bin/true\nInterval=5s\nTimeout=5s\n",
        ),
    ] {
        let name = if name == "heartbeat" {
            files
                .iter()
                .find(|(n, _)| n.starts_with("rules.d/heartbeat-"))
                .map(|(n, _)| n["rules.d/".len()..n.len() - ".rule".len()].to_string())
                .expect("no heartbeat rule")
        } else {
            name.to_string()
        };
        let text = rule(&files, &name);
        assert!(text.contains(want), "{want:?} in {name}: {text}");
        assert!(text.contains(escalate), "{name} escalates: {text}");
    }
    let temperature = files
        .iter()
        .find(|(n, _)| n.starts_with("rules.d/temperature-"))
        .expect("no temperature rule")
        .1
        .clone();
    assert!(
        temperature.contains(&format!(
            "TemperatureSensor={}\nMaxTemperature=80\n",
            scratch.path("temp1_input").display()
        )),
        "{temperature}"
    );
    // watchdog repairs everything but heat.
    assert!(!temperature.contains("Repair="), "{temperature}");
    assert!(temperature.contains("Finally=reboot"), "{temperature}");
    // Needs the [System], [Command] and [Interface] kinds of issue 13.
    assert_checks(&out_dir);
}

#[test]
fn a_file_of_heartbeats_and_processes_checks_today() {
    let scratch = Scratch::new("import-hp");
    let source = scratch.path("watchdog.conf");
    std::fs::write(
        &source,
        format!(
            "watchdog-device = /dev/watchdog\nwatchdog-timeout = 60\ninterval = 40\nfile = {0}/a\nchange = 300\nfile = {0}/a\nchange = 10\npidfile = /run/sshd.pid\npidfile = /var/run/sshd.pid\n",
            scratch.dir.display()
        ),
    )
    .unwrap();
    let out_dir = scratch.path("out");
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    // FeedInterval= at most half of Timeout=: clamped, and said.
    assert!(
        err.contains(&format!("{}:3: interval=: changed: ", source.display())),
        "{err}"
    );
    let files = written(&out_dir);
    let conf = &files
        .iter()
        .find(|(n, _)| n == "heartwatch.conf")
        .unwrap()
        .1;
    assert!(conf.contains("\nFeedInterval=30s\n"), "{conf}");
    // Two rules watching alike things get names of their own.
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.contains(&"rules.d/process-sshd.rule"), "{names:?}");
    assert!(names.contains(&"rules.d/process-sshd-2.rule"), "{names:?}");
    assert_checks(&out_dir);
    let (_, checked, _) = heartwatch(&out_dir, &["check"]);
    assert!(checked.contains("rules: 4"), "{checked}");
}

#[test]
fn it_writes_into_etc_only_when_to_names_it() {
    let scratch = Scratch::new("import-etc");
    let source = scratch.path("watchdog.conf");
    std::fs::write(&source, "").unwrap();
    let name = format!("heartwatch-import-test-{}", std::process::id());
    let in_etc = Path::new("/etc").join(&name);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(in_etc.clone());

    // Without --to, nothing is written anywhere.
    let (code, _, err) = import(&[s(&source)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--to DIR"), "{err}");
    // A relative path from /etc, a symlink to /etc, a `..` into /etc.
    std::os::unix::fs::symlink("/etc", scratch.path("etc-link")).unwrap();
    let through_link = scratch.path("etc-link").join(&name);
    let dotdot = format!("/tmp/../etc/{name}");
    for (dir, to) in [
        (Path::new("/etc"), name.as_str()),
        (Path::new("/"), s(&through_link)),
        (Path::new("/"), dotdot.as_str()),
    ] {
        let (code, out, err) = import_in(dir, &[s(&source), "--to", to]);
        assert_eq!(code, 2, "--to {to}: stdout {out}\nstderr {err}");
        assert!(err.contains("inside /etc"), "--to {to}: {err}");
        assert!(!in_etc.exists(), "--to {to} wrote into /etc");
    }
    // Named as /etc/...: written.
    let (code, out, err) = import(&[s(&source), "--to", s(&in_etc)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(in_etc.join("heartwatch.conf").is_file());
}

#[test]
fn it_overwrites_nothing_without_force() {
    let scratch = Scratch::new("import-force");
    let source = scratch.path("watchdog.conf");
    std::fs::write(&source, "pidfile = /run/a.pid\n").unwrap();
    let out_dir = scratch.path("out");
    let (code, _, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 0, "{err}");
    let rule_path = out_dir.join("rules.d/process-a.rule");
    std::fs::write(&rule_path, "# mine\n").unwrap();
    std::fs::write(&source, "pidfile = /run/a.pid\npidfile = /run/b.pid\n").unwrap();
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 1, "stdout {out}\nstderr {err}");
    assert!(
        err.contains(&format!("{} exists", rule_path.display())),
        "{err}"
    );
    // Refused as a whole: nothing written, not even the new rule.
    assert_eq!(std::fs::read_to_string(&rule_path).unwrap(), "# mine\n");
    assert!(!out_dir.join("rules.d/process-b.rule").exists());
    let (code, _, err) = import(&[s(&source), "--to", s(&out_dir), "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_to_string(&rule_path)
            .unwrap()
            .contains("PidFile=/run/a.pid")
    );
    assert!(out_dir.join("rules.d/process-b.rule").is_file());
    assert_checks(&out_dir);
}

#[test]
fn malformed_lines_are_named_by_file_and_line() {
    let scratch = Scratch::new("import-malformed");
    let source = scratch.path("watchdog.conf");
    std::fs::write(
        &source,
        "# fine\ninterval = 5\nmax-load-1 24\n  \nwatchdog-timeout = soon\n",
    )
    .unwrap();
    let out_dir = scratch.path("out");
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 3, "stdout {out}\nstderr {err}");
    let shown = source.display();
    assert!(err.contains(&format!("{shown}:3: ")), "{err}");
    assert!(
        err.contains(&format!("{shown}:5: watchdog-timeout=: ")),
        "{err}"
    );
    assert!(!err.contains(&format!("{shown}:2:")), "{err}");
    assert!(!out_dir.exists(), "written despite malformed lines");
}

#[test]
fn an_empty_file_gives_the_default_configuration() {
    let scratch = Scratch::new("import-empty");
    let source = scratch.path("watchdog.conf");
    std::fs::write(&source, "").unwrap();
    let out_dir = scratch.path("out");
    let (code, out, err) = import(&[s(&source), "--to", s(&out_dir)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(err, "");
    let files = written(&out_dir);
    assert_eq!(files.len(), 1, "{files:#?}");
    let settings: Vec<&str> = files[0].1.lines().filter(|l| !l.starts_with('#')).collect();
    // watchdog without watchdog-device= feeds no device.
    assert_eq!(settings, ["[Watchdog]", "Device=none"]);
    assert_checks(&out_dir);
}

#[test]
fn unreadable_or_binary_input_is_refused_clearly() {
    let scratch = Scratch::new("import-binary");
    let out_dir = scratch.path("out");
    let binary = scratch.path("watchdog.conf");
    // An ELF header: NUL bytes on the first line.
    std::fs::write(
        &binary,
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00",
    )
    .unwrap();
    let (code, _, err) = import(&[s(&binary), "--to", s(&out_dir)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{}: not a text file", binary.display())),
        "{err}"
    );
    // Bytes that are not text but hold no NUL: malformed lines.
    std::fs::write(&binary, b"\xff\xfe\xfd=\x80\n\xc3\x28 = 1\n").unwrap();
    let (code, _, err) = import(&[s(&binary), "--to", s(&out_dir)]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("{}:1: not valid UTF-8", binary.display())),
        "{err}"
    );
    let (code, _, err) = import(&[s(&scratch.path("missing.conf")), "--to", s(&out_dir)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read"), "{err}");
    // A directory is not a watchdog.conf.
    let (code, _, err) = import(&[s(&scratch.dir), "--to", s(&out_dir)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    assert!(!out_dir.exists());
}
