//! Rule trust through the real binary, with real owners and modes
//! (`chown`/`chmod`; the tests run as root): rules and heartwatch.conf run
//! commands as root, so a file, its directory, a symlinked rule's real
//! directory and the configuration root must be owned by root and not
//! writable by group or others. Each refusal names the file, the owner or
//! the mode, and the fix.

mod common;
use common::*;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

/// A uid that is not root and not the test's own.
const USER: u32 = 4242;

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the trust tests chown files: run them as root (tests/run does)"
    );
}

fn rule_text(s: &Scratch) -> String {
    let beat = s.path("a.beat");
    touch(&beat);
    format!(
        "[Heartbeat]\nFile={}\nMaxAge=1h\n[Escalate]\nRepair=/bin/true\nFinally=log\n",
        beat.display()
    )
}

/// `check` refuses the tree with exit 3 and every `wants` in its errors.
fn refused(s: &Scratch, wants: &[String]) {
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 3, "stdout {out}\nstderr {err}");
    for want in wants {
        assert!(err.contains(want.as_str()), "wanted {want:?} in\n{err}");
    }
}

fn accepted(s: &Scratch) {
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("rules: 1"), "{out}");
}

#[test]
fn a_rule_owned_by_another_user_is_refused() {
    need_root();
    let s = Scratch::new("trust-owner");
    s.write_conf("");
    let path = s.write_rule("a", &rule_text(&s));
    chown(&path, USER, USER);
    chmod(&path, 0o644);
    refused(
        &s,
        &[format!(
            "{p}: refused: owned by uid {USER}, not root; rules run commands as root (fix: chown root: {p})",
            p = path.display()
        )],
    );
}

#[test]
fn a_rule_writable_by_group_or_others_is_refused() {
    need_root();
    for mode in [0o664, 0o646, 0o666, 0o660, 0o1666] {
        let s = Scratch::new("trust-mode");
        s.write_conf("");
        let path = s.write_rule("a", &rule_text(&s));
        chmod(&path, mode);
        refused(
            &s,
            &[format!(
                "{p}: refused: mode {mode:04o} lets group or others write it; rules run commands as root (fix: chmod go-w {p})",
                p = path.display()
            )],
        );
    }
}

#[test]
fn a_root_rule_readable_by_others_or_in_another_group_is_accepted() {
    need_root();
    for (gid, mode) in [
        (0, 0o644),
        (USER, 0o644),
        (USER, 0o640),
        (0, 0o600),
        (0, 0o400),
    ] {
        let s = Scratch::new("trust-ok");
        s.write_conf("");
        let path = s.write_rule("a", &rule_text(&s));
        chown(&path, 0, gid);
        chmod(&path, mode);
        accepted(&s);
    }
}

#[test]
fn a_rule_directory_owned_by_another_user_or_writable_is_refused() {
    need_root();
    let cases: [(u32, u32, String); 4] = [
        (USER, 0o755, format!("owned by uid {USER}, not root")),
        (0, 0o775, "mode 0775 lets group or others write it".into()),
        (0, 0o777, "mode 0777 lets group or others write it".into()),
        // Sticky like /tmp: others still create files in it.
        (0, 0o1777, "mode 1777 lets group or others write it".into()),
    ];
    for (uid, mode, want) in cases {
        let s = Scratch::new("trust-dir");
        s.write_conf("");
        s.write_rule("a", &rule_text(&s));
        let dir = s.conf().join("rules.d");
        chown(&dir, uid, uid);
        chmod(&dir, mode);
        let fix = if uid != 0 {
            "chown root:"
        } else {
            "chmod go-w"
        };
        refused(
            &s,
            &[
                format!("{}: refused: {want}", dir.display()),
                format!("(fix: {fix} {})", dir.display()),
            ],
        );
    }
}

#[test]
fn the_configuration_root_and_heartwatch_conf_must_be_trusted_too() {
    need_root();
    // heartwatch.conf sets the reboot command: as sensitive as a rule.
    let s = Scratch::new("trust-conf");
    s.write_conf("");
    s.write_rule("a", &rule_text(&s));
    let conf = s.conf().join("heartwatch.conf");
    chown(&conf, USER, USER);
    refused(
        &s,
        &[format!("{}: refused: owned by uid {USER}", conf.display())],
    );

    // Whoever can write the root can replace rules.d or heartwatch.conf.
    let s = Scratch::new("trust-root");
    s.write_conf("");
    s.write_rule("a", &rule_text(&s));
    chmod(&s.conf(), 0o777);
    refused(
        &s,
        &[format!(
            "{}: refused: mode 0777 lets group or others write it",
            s.conf().display()
        )],
    );
}

#[test]
fn a_symlinked_rule_is_judged_by_its_target_and_the_target_directory() {
    need_root();
    // A root-owned rule in a directory a user owns: the user can swap it.
    let s = Scratch::new("trust-link-dir");
    s.write_conf("");
    let elsewhere = s.path("app");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("app.rule");
    std::fs::write(&target, rule_text(&s)).unwrap();
    chown(&elsewhere, USER, USER);
    let link = s.conf().join("rules.d/app.rule");
    symlink(&target, &link).unwrap();
    refused(
        &s,
        &[format!(
            "{}: is a symlink to {}, and its directory {}: refused: owned by uid {USER}",
            link.display(),
            target.display(),
            elsewhere.display()
        )],
    );
    // Once the directory is root's, the same link is accepted.
    chown(&elsewhere, 0, 0);
    accepted(&s);
    // A user-owned target is refused whatever its directory.
    chown(&target, USER, USER);
    refused(
        &s,
        &[format!("{}: refused: owned by uid {USER}", link.display())],
    );
}

#[test]
fn the_daemon_refuses_untrusted_rules_at_start_and_on_reload() {
    need_root();
    let s = Scratch::new("trust-daemon");
    s.write_conf("");
    let path = s.write_rule("a", &rule_text(&s));
    chmod(&path, 0o666);
    let mut d = Daemon::start(&s.conf(), &[]);
    let status = d.wait_exit(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(3));
    d.expect(&format!("{}: refused: mode 0666", path.display()));
    drop(d);

    chmod(&path, 0o644);
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("ready: 1 rule");
    d.expect("rule a: healthy");
    // Someone makes the rule group-writable and adds another as a user.
    chmod(&path, 0o664);
    let other = s.write_rule("b", &rule_text(&s));
    chown(&other, USER, USER);
    d.signal(1);
    d.expect(&format!("{}: refused: mode 0664", path.display()));
    d.expect(&format!(
        "{}: refused: owned by uid {USER}",
        other.display()
    ));
    d.expect("reload refused: 2 errors; the running configuration stays");
    // The status is written off the loop, just after the log lines.
    let status = s.wait_status("  a  healthy");
    assert!(status.contains("rules: 1"), "{status}");
}
