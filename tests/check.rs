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
