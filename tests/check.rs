//! `heartwatch check` through the real binary: valid trees pass, each kind
//! of malformed rule is reported at its `path:line`.

mod common;
use common::*;

#[test]
fn the_bundled_example_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let (code, out, err) = heartwatch(&root, &["check"]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("the configuration is valid"));
    assert!(
        out.contains("demo-job: if /tmp/heartwatch-demo/demo-job.beat is not modified for 5s (looked at every 500ms): log and do nothing more"),
        "{out}"
    );
}

#[test]
fn malformed_rules_are_reported_at_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "no-section",
            "File=/a\n",
            ":1: File= comes before any [Section] header",
        ),
        ("no-watch", "# nothing\n", ":1: the rule watches nothing"),
        (
            "unknown-key",
            "[Heartbeat]\nFile=/a\nMaxAge=1s\nMaxAeg=2s\n",
            ":4: unknown key MaxAeg= in [Heartbeat]",
        ),
        (
            "duplicate-key",
            "[Heartbeat]\nFile=/a\nFile=/b\nMaxAge=1s\n",
            ":3: File= is set twice in [Heartbeat] (first at line 2)",
        ),
        (
            "relative-path",
            "[Heartbeat]\nFile=run/a\nMaxAge=1s\n",
            ":2: File=: \"run/a\" is not an absolute path",
        ),
        (
            "no-unit",
            "[Heartbeat]\nFile=/a\nMaxAge=30\n",
            ":3: MaxAge=: \"30\" has no unit",
        ),
        (
            "empty-value",
            "[Heartbeat]\nFile=\nMaxAge=1s\n",
            ":2: File= has an empty value",
        ),
        (
            "out-of-range",
            "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepair=true\nRepairAttempts=5000\n",
            ":6: RepairAttempts=: 5000 is out of range 1..=1000",
        ),
        (
            "never-fires",
            "[Heartbeat]\nFile=/a\nMaxAge=0s\n",
            ":3: MaxAge=: must be longer than zero",
        ),
        (
            "bad-section",
            "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalation]\n",
            ":4: unknown section [Escalation]",
        ),
        (
            "not-a-line",
            "[Heartbeat]\nFile /a\n",
            ":2: expected `Key=value` or `[Section]`",
        ),
        (
            "no-command",
            "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Escalate]\nRepair=no-such-program-xyz\n",
            ":5: Repair=: command \"no-such-program-xyz\" not found",
        ),
        (
            "ambiguous-unit",
            "[Heartbeat]\nFile=/a\nMaxAge=5m\n",
            ":3: MaxAge=: \"5m\": `m` is ambiguous",
        ),
        (
            "crlf-and-bad",
            "[Heartbeat]\r\nFile=/a\r\nMaxAge=1x\r\n",
            ":3: MaxAge=: \"1x\": unknown unit",
        ),
    ];
    for (name, text, want) in cases {
        let s = Scratch::new("check");
        s.write_conf("");
        let path = s.write_rule(name, text);
        let (code, out, err) = heartwatch(&s.conf(), &["check"]);
        assert_eq!(code, 3, "{name}: exit code; stdout {out} stderr {err}");
        let expected = format!("{}{want}", path.display());
        assert!(
            err.contains(&expected),
            "{name}: wanted {expected:?} in\n{err}"
        );
    }
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let s = Scratch::new("check-all");
    s.write_conf("[Reboot]\nBudget=lots\n");
    s.write_rule("a", "[Heartbeat]\nFile=x\nMaxAge=1s\n");
    s.write_rule("b", "[Heartbeat]\nFile=/x\nMaxAge=1\n");
    let (code, _, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("heartwatch.conf:8: Budget=: \"lots\" is not a whole number"),
        "{err}"
    );
    assert!(err.contains("a.rule:2:"), "{err}");
    assert!(err.contains("b.rule:3:"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn rules_writable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("trust");
    s.write_conf("");
    let path = s.write_rule("open", "[Heartbeat]\nFile=/a\nMaxAge=1s\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("refused: mode 0666 lets group or others write it"),
        "{err}"
    );
    assert!(err.contains("chmod go-w"), "{err}");
}

#[test]
fn files_that_are_not_rules_are_ignored_and_non_files_refused() {
    let s = Scratch::new("kinds");
    s.write_conf("");
    std::fs::write(s.conf().join("rules.d/notes.txt"), "not a rule").unwrap();
    std::fs::write(s.conf().join("rules.d/a.rule.dpkg-old"), "junk").unwrap();
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rules: 0"));
    std::fs::create_dir(s.conf().join("rules.d/dir.rule")).unwrap();
    nix::unistd::mkfifo(
        &s.conf().join("rules.d/fifo.rule"),
        nix::sys::stat::Mode::from_bits(0o644).unwrap(),
    )
    .unwrap();
    let (code, _, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3);
    assert!(err.contains("dir.rule: is not a regular file"), "{err}");
    assert!(err.contains("fifo.rule: is not a regular file"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let s = Scratch::new("usage");
    assert_eq!(heartwatch(&s.conf(), &["frobnicate"]).0, 2);
    assert_eq!(heartwatch(&s.conf(), &["check", "--bogus"]).0, 2);
    assert_eq!(heartwatch(&s.conf(), &["beat"]).0, 2);
}

/// Writes `conf` as heartwatch.conf and `rule` (if any) as `r.rule`, runs
/// `check`, and returns (exit code, stdout, stderr, the two paths).
fn check_tree(conf: &str, rule: Option<&str>) -> (i32, String, String, String, String) {
    let s = Scratch::new("tree");
    let conf_path = s.conf().join("heartwatch.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let rule_path = rule.map(|text| s.write_rule("r", text)).unwrap_or_default();
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    (
        code,
        out,
        err,
        conf_path.display().to_string(),
        rule_path.display().to_string(),
    )
}

#[test]
fn a_comment_after_a_value_or_a_header_is_an_error_for_every_kind_of_value() {
    const COMMENT: &str = "comments go on their own line";
    let conf_cases: &[(&str, &str)] = &[
        (
            "[Watchdog]\nDevice=none\nTimeout=30s   # asked of the driver\n",
            ":3: Timeout=: ",
        ),
        ("[Watchdog]\nDevice=none   ; no device\n", ":2: Device=: "),
        (
            "[Watchdog]\nDevice=/dev/watchdog0 # the first one\n",
            ":2: Device=: ",
        ),
        (
            "[Watchdog]\nDevice=none\nKeepArmedOnStop=no # yes: armed\n",
            ":3: KeepArmedOnStop=: ",
        ),
        ("[Reboot]\nBudget=3 # reboots in a row\n", ":2: Budget=: "),
        // Accepted before: it would have run `systemctl` with the
        // arguments `#`, `the`, `orderly`, `reboot`.
        (
            "[Reboot]\nCommand=systemctl reboot   # the orderly reboot\n",
            ":2: Command=: ",
        ),
        ("[Reboot]\nCommand=sh -c true ;and more\n", ":2: Command=: "),
        (
            "[Daemon]\nStateDirectory=/var/lib/heartwatch # state\n",
            ":2: StateDirectory=: ",
        ),
        ("[Daemon]\nStartupGrace= # none\n", ":2: StartupGrace=: "),
        ("[Daemon]   # the daemon\nDryRun=no\n", ":1: "),
        ("[Daemon] ; the daemon\n", ":1: "),
    ];
    for (conf, want) in conf_cases {
        let (code, _, err, conf_path, _) = check_tree(conf, None);
        assert_eq!(code, 3, "{conf:?}: {err}");
        let wanted = format!("{conf_path}{want}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&wanted) && first.contains(COMMENT),
            "{conf:?}: wanted {wanted:?}…{COMMENT:?}, got\n{err}"
        );
        assert!(err.contains("has 1 error\n"), "{conf:?}: {err}");
    }
    let rule_cases: &[(&str, &str)] = &[
        (
            "[Heartbeat]\nFile=/run/backup/heartbeat   # the job touches it\nMaxAge=10min\n",
            ":2: File=: ",
        ),
        (
            "[Heartbeat]\nFile=/a\nMaxAge=10min # stale\n",
            ":3: MaxAge=: ",
        ),
        (
            "[Heartbeat]\nFile=/a\nMaxAge=10min\nCheckInterval=1min\t# optional\n",
            ":4: CheckInterval=: ",
        ),
        (
            "[Process]\nPidFile=/run/n.pid\n[Escalate]   # without it, only logged\nRepair=true\n",
            ":3: ",
        ),
        (
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nRepair=systemctl restart nginx.service # restart\n",
            ":4: Repair=: ",
        ),
        (
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nRepair=sh -c 'true' \"x\" ;y\n",
            ":4: Repair=: ",
        ),
        (
            "[Process]\nExecutable=/usr/sbin/nginx # or PidFile=\n",
            ":2: Executable=: ",
        ),
        (
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nRepair=true\nRepairAttempts=3 # times\n",
            ":5: RepairAttempts=: ",
        ),
        (
            "[Process]\nPidFile=/run/n.pid\n[Escalate]\nFinally=reboot # or log\n",
            ":4: Finally=: ",
        ),
    ];
    for (rule, want) in rule_cases {
        let (code, _, err, _, rule_path) = check_tree("[Watchdog]\nDevice=none\n", Some(rule));
        assert_eq!(code, 3, "{rule:?}: {err}");
        let wanted = format!("{rule_path}{want}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&wanted) && first.contains(COMMENT),
            "{rule:?}: wanted {wanted:?}…{COMMENT:?}, got\n{err}"
        );
        assert!(err.contains("has 1 error\n"), "{rule:?}: {err}");
    }
}

#[test]
fn a_hash_inside_a_word_or_quoted_is_not_a_comment() {
    let rule = "[Heartbeat]\nFile=/run/a#b\nMaxAge=1min\n[Escalate]\nRepair=printf a#b;c '#x' \"; y\" \\#z\n";
    let (code, out, err, _, _) = check_tree("[Watchdog]\nDevice=none\n", Some(rule));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("if /run/a#b is not modified"), "{out}");
    assert!(
        out.contains(r#"run `printf a#b;c '#x' "; y" \#z`"#),
        "{out}"
    );
    let conf = "[Reboot]\nCommand=sh -c 'echo # not a comment; reboot'\n";
    let (code, out, err, _, _) = check_tree(conf, None);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_byte_order_mark_at_the_start_of_a_file_is_skipped() {
    let (code, out, err, _, _) = check_tree(
        "\u{feff}[Watchdog]\nDevice=none\n",
        Some("\u{feff}[Heartbeat]\r\nFile=/a\r\nMaxAge=1s\r\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("watchdog: none"), "{out}");
    assert!(out.contains("r: if /a is not modified for 1s"), "{out}");
    // Anywhere else it is not white space: still an error, at its line.
    let (code, _, err, _, rule_path) = check_tree(
        "[Watchdog]\nDevice=none\n",
        Some("[Heartbeat]\n\u{feff}File=/a\nMaxAge=1s\n"),
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{rule_path}:2: a byte-order mark (U+FEFF) is taken only at the start of the file"
        )),
        "{err}"
    );
}

#[test]
fn a_section_given_twice_is_reported_once_and_not_its_keys() {
    let (code, _, err, _, rule_path) = check_tree(
        "[Watchdog]\nDevice=none\n",
        Some("[Heartbeat]\nFile=/a\nMaxAge=1s\n\n[Heartbeat]\nFile=/b\nMaxAge=2s\n"),
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        format!("{rule_path}:5: section [Heartbeat] given twice; first at line 1"),
        "{err}"
    );
    assert!(!err.contains("set twice"), "{err}");
    assert!(err.contains("has 1 error\n"), "{err}");
    // Keys after the repeated header are not counted in the section before.
    let (code, _, err, conf_path, _) = check_tree(
        "[Watchdog]\nDevice=none\n[Reboot]\n[Watchdog]\nDevice=none\n",
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{conf_path}:4: section [Watchdog] given twice; first at line 1"
        )),
        "{err}"
    );
    assert!(err.contains("has 1 error\n"), "{err}");
}

#[test]
fn counts_agree_with_their_nouns() {
    let (code, _, err, _, _) = check_tree("[Reboot]\nBudget=lots\n", None);
    assert_eq!(code, 3);
    assert!(err.ends_with("the configuration has 1 error\n"), "{err}");
    let (code, _, err, _, _) = check_tree("[Reboot]\nBudget=lots\nForced=maybe\n", None);
    assert_eq!(code, 3);
    assert!(err.ends_with("the configuration has 2 errors\n"), "{err}");
    let s = Scratch::new("memtest");
    let (code, out, err) = heartwatch(&s.conf(), &["memtest", "64K", "--passes", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", 1 pass, "), "{out}");
    assert!(!out.contains("pass(es)"), "{out}");
}

#[test]
fn the_daemon_counts_one_rule_and_one_error_in_the_singular() {
    let s = Scratch::new("singular");
    s.write_conf("");
    let beat = s.path("a.beat");
    touch(&beat);
    s.write_rule(
        "a",
        &format!("[Heartbeat]\nFile={}\nMaxAge=1min\n", beat.display()),
    );
    let mut d = Daemon::start(&s.conf(), &[]);
    let line = d.expect("ready: ");
    assert!(line.ends_with("ready: 1 rule"), "{line}");
    s.write_rule("b", "[Heartbeat]\nFile=/b\nMaxAge=0s\n");
    d.signal(1);
    let line = d.expect("reload refused: ");
    assert!(
        line.ends_with("reload refused: 1 error; the running configuration stays"),
        "{line}"
    );
    std::fs::remove_file(s.conf().join("rules.d/b.rule")).unwrap();
    d.signal(1);
    let line = d.expect("reloaded: ");
    assert!(line.ends_with("reloaded: 1 rule"), "{line}");
    // With no configuration at all, `run` says how many errors in words too.
    std::fs::write(s.conf().join("heartwatch.conf"), "[Reboot]\nBudget=lots\n").unwrap();
    let mut refused = Daemon::start(&s.conf(), &[]);
    let line = refused.expect("not starting: ");
    assert!(
        line.ends_with("not starting: the configuration has 1 error"),
        "{line}"
    );
}

#[test]
fn a_log_only_rule_is_described_as_what_it_does() {
    let s = Scratch::new("log-only");
    s.write_conf("");
    let beat = s.path("job.beat");
    s.write_rule(
        "job",
        &format!("[Heartbeat]\nFile={}\nMaxAge=300ms\n", beat.display()),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out.lines().find(|l| l.contains("job: ")).unwrap();
    assert!(line.ends_with(": log and do nothing more"), "{line}");
    // The same for an [Escalate] that says so: no ladder to start over.
    s.write_rule(
        "job",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=300ms\n[Escalate]\nFinally=log\n",
            beat.display()
        ),
    );
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out.lines().find(|l| l.contains("job: ")).unwrap();
    assert!(line.ends_with(": log and do nothing more"), "{line}");
    // RecoveryPeriod= would have nothing to start over: an error.
    s.write_rule(
        "job",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=300ms\n[Escalate]\nFinally=log\nRecoveryPeriod=1s\n",
            beat.display()
        ),
    );
    let (code, _, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("job.rule:6: RecoveryPeriod= has no effect without Repair="),
        "{err}"
    );
    s.write_rule(
        "job",
        &format!("[Heartbeat]\nFile={}\nMaxAge=300ms\n", beat.display()),
    );

    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("rule job: failing");
    let status = s.wait_status("missing");
    let (_, out, _) = heartwatch(&s.conf(), &["status"]);
    let line = out
        .lines()
        .find(|l| l.contains(" job "))
        .unwrap_or_default();
    assert!(!line.contains("every step taken"), "{out}");
    assert!(
        line.ends_with("; ladder: logged (no repair configured)"),
        "{status}"
    );
    touch(&beat);
    d.expect("rule job: healthy");
    s.wait_status("(1 healthy");
    let (_, out, _) = heartwatch(&s.conf(), &["status"]);
    let line = out
        .lines()
        .find(|l| l.contains(" job "))
        .unwrap_or_default();
    assert!(!line.contains("ladder"), "{out}");
    assert!(!line.contains("recovering"), "{out}");
}
