//! `heartwatch status --json` against its JSON Schema (docs/status.schema.json),
//! checked by a real validator: Python's `jsonschema` (Debian's
//! python3-jsonschema, tests/peers.list). The real daemon runs rules of each
//! kind this build has in each state — healthy, failing, starting, one whose
//! repair ran, one whose reboot the budget refused (a history entry) — and
//! the document is validated and its values checked; a stopped daemon's and
//! a missing status's documents are validated too, and so that the check
//! can fail, broken copies of the document must be rejected.

mod common;

use common::{BIN, Daemon, Scratch, heartwatch, touch};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;

/// Validates the document at `doc` against the schema, prints every leaf
/// as `path=json` (list items by `name` where they have one), checks that
/// each time's two forms agree, and with `broken`, says of each damaged
/// copy whether the validator rejected it.
const VALIDATE: &str = r#"
import copy, datetime, json, sys
import jsonschema
schema = json.load(open(sys.argv[1], encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
with open(sys.argv[2], "rb") as f:
    doc = json.loads(f.read().decode("utf-8"))
branch = 0 if doc.get("available") else 1
for e in validator.iter_errors(doc):
    # Of a oneOf, what the branch this document means to be says.
    said = [c for c in e.context if c.relative_schema_path[0] == branch] or [e]
    for c in said:
        print("invalid:", c.message[:300], "at", list(c.absolute_path))
def flat(prefix, x):
    if isinstance(x, dict) and set(x) == {"rfc3339", "epoch"}:
        t = datetime.datetime.fromtimestamp(x["epoch"], datetime.timezone.utc)
        if t.strftime("%Y-%m-%dT%H:%M:%SZ") != x["rfc3339"]:
            print("invalid: time", prefix, x)
    if isinstance(x, dict) and x:
        for k, v in x.items():
            flat(prefix + "." + k if prefix else k, v)
    elif isinstance(x, list) and x:
        for i, v in enumerate(x):
            key = v["name"] if isinstance(v, dict) and "name" in v else str(i)
            flat(prefix + "[" + key + "]", v)
    else:
        print(prefix + "=" + json.dumps(x, ensure_ascii=False))
flat("", doc)
def broken(name, damage):
    d = copy.deepcopy(doc)
    damage(d)
    print("broken " + name + ": " + ("rejected" if not validator.is_valid(d) else "ACCEPTED"))
if sys.argv[3:] == ["broken"]:
    broken("kind", lambda d: d["rules"][0].update(kind="bogus"))
    broken("state", lambda d: d["rules"][0].update(state="fine"))
    broken("extra-field", lambda d: d["daemon"].update(color="red"))
    broken("missing-field", lambda d: d["daemon"].pop("pid"))
    broken("schema-version", lambda d: d.update(schema="heartwatch-status/0"))
    broken("time", lambda d: d["daemon"]["started"].update(rfc3339="yesterday"))
    broken("history-kind", lambda d: d["history"][0].update(kind="restart"))
    broken("cause-of-healthy", lambda d: d["rules"][0].update(cause="x"))
"#;

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status.schema.json")
}

/// `heartwatch status --json` for the configuration at `root`: exit code
/// and the validator's lines.
fn status_json(s: &Scratch, root: &Path, broken: bool) -> (i32, String, Vec<String>) {
    let (code, doc, stderr) = heartwatch(root, &["status", "--json"]);
    let path = s.path("status.json");
    std::fs::write(&path, &doc).unwrap();
    // Debian's interpreter, where python3-jsonschema is installed (not
    // whatever python3 comes first on PATH).
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(VALIDATE).arg(schema()).arg(&path);
    if broken {
        python.arg("broken");
    }
    let out = python.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "the validator failed (is python3-jsonschema installed? tests/install-peers):\n{}\n{doc}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let invalid: Vec<&String> = lines.iter().filter(|l| l.starts_with("invalid")).collect();
    assert!(invalid.is_empty(), "{invalid:#?}\n{doc}\nstderr: {stderr}");
    (code, doc, lines)
}

/// The value the validator printed for `key`, as JSON.
fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    let prefix = format!("{key}=");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
}

fn this_boot() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_json_status_follows_its_schema_in_every_state() {
    let s = Scratch::new("json");
    let marker = s.path("rebooted");
    s.write_conf(&format!(
        "[Reboot]\nBudget=1\nCommand=sh -c 'echo reboot >> {}'\nOrderlyTimeout=1s\nForced=no\n",
        marker.display()
    ));
    // An earlier boot's reboot used the budget; the history holds it and a
    // watchdog reset, with text that JSON must escape.
    std::fs::create_dir_all(s.path("state")).unwrap();
    std::fs::write(
        s.path("state/reboot"),
        "count=1\nrule=old\ncause=stale\nstep=no repair configured\nuptime_ms=5000\nwall=1795000000\nboot_id=an-earlier-boot\n",
    )
    .unwrap();
    std::fs::write(
        s.path("state/history"),
        "heartwatch-history 1\n\
entry 1795000000\tan-earlier-boot\treboot\told\tcause: \"q\" \\\\b \\x01 \\t e\tno repair configured\n\
entry 1795000100\tan-earlier-boot\twatchdog-reset\t\twatchdog /dev/watchdog0: last reset was caused by the watchdog (boot status cardreset)\t\n\
end\n",
    )
    .unwrap();
    touch(&s.path("beat"));
    s.write_rule(
        "beating",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1h\n",
            s.path("beat").display()
        ),
    );
    std::fs::write(s.path("alive.pid"), format!("{}\n", std::process::id())).unwrap();
    s.write_rule(
        "alive",
        &format!(
            "[Process]\nPidFile={}\nCheckInterval=200ms\n",
            s.path("alive.pid").display()
        ),
    );
    s.write_rule(
        "doomed",
        &format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n[Escalate]\nFinally=reboot\n",
            s.path("never.beat").display()
        ),
    );
    s.write_rule(
        "repaired",
        &format!(
            "[Process]\nPidFile={}\nCheckInterval=200ms\n[Escalate]\nRepair=sh -c 'exit 3'\nRepairAttempts=1\nFinally=log\n",
            s.path("no.pid").display()
        ),
    );
    // Names JSON must escape: a configuration root with a quote, a
    // backslash and a tab in its name.
    let root = s.dir.join("conf \"q\" \\b\tt");
    std::fs::rename(s.conf(), &root).unwrap();

    let mut d = Daemon::start(&root, &[]);
    d.expect("rule repaired: repair attempt 1 failed (exit 3)");
    d.expect("reboot suppressed: 1 reboot without a healthy period (Budget=1)");
    d.expect("rule repaired: every repair was tried");
    // A rule added by a reload with a long grace stays starting.
    std::fs::write(
        root.join("heartwatch.conf"),
        std::fs::read_to_string(root.join("heartwatch.conf"))
            .unwrap()
            .replace("StartupGrace=0s", "StartupGrace=1h"),
    )
    .unwrap();
    std::fs::write(
        root.join("rules.d/late.rule"),
        format!(
            "[Heartbeat]\nFile={}\nMaxAge=1s\n",
            s.path("late.beat").display()
        ),
    )
    .unwrap();
    d.signal(SIGHUP);
    d.expect("reloaded: 5 rules");
    let text = loop {
        let (_, text, _) = heartwatch(&root, &["status"]);
        if text.contains("  late ") && text.contains("repaired  failing") {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("reboot history, newest first:\n  "), "{text}");

    let (code, doc, lines) = status_json(&s, &root, true);
    assert_eq!(code, 0, "{doc}");
    for broken in lines.iter().filter(|l| l.starts_with("broken ")) {
        assert!(broken.ends_with(": rejected"), "{broken}\n{doc}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("broken ")).count(), 8);
    let pid = d.child.id().to_string();
    let boot = format!("{:?}", this_boot());
    for (key, want) in [
        ("schema", "\"heartwatch-status/1\""),
        ("available", "true"),
        ("daemon.pid", pid.as_str()),
        ("daemon.state", "\"running\""),
        ("daemon.state_detail", "null"),
        ("daemon.stopped", "null"),
        ("daemon.dry_run", "false"),
        ("daemon.boot_id", boot.as_str()),
        ("devices", "[]"),
        ("boot_status", "null"),
        ("budget.used", "1"),
        ("budget.budget", "1"),
        ("budget.healthy_uptime_seconds", "3600"),
        ("budget.healthy_since", "null"),
        ("last_reboot.rule", "\"old\""),
        ("last_reboot.uptime_seconds", "5"),
        ("last_reboot.at.epoch", "1795000000"),
        ("last_reboot.at.rfc3339", "\"2026-11-18T11:06:40Z\""),
        ("rebooting", "null"),
        ("rules[beating].kind", "\"heartbeat\""),
        ("rules[beating].state", "\"healthy\""),
        ("rules[beating].cause", "null"),
        ("rules[beating].ladder.step", "\"idle\""),
        ("rules[beating].ladder.text", "null"),
        ("rules[beating].ladder.repair_attempts", "0"),
        ("rules[beating].last_repair", "null"),
        ("rules[alive].kind", "\"process\""),
        ("rules[alive].state", "\"healthy\""),
        ("rules[doomed].kind", "\"heartbeat\""),
        ("rules[doomed].state", "\"failing\""),
        (
            "rules[doomed].cause",
            "\"missing: the heartbeat file does not exist\"",
        ),
        ("rules[repaired].kind", "\"process\""),
        ("rules[repaired].state", "\"failing\""),
        ("rules[repaired].cause", "\"pidfile missing\""),
        ("rules[repaired].ladder.step", "\"exhausted\""),
        ("rules[repaired].ladder.repair_attempts", "1"),
        ("rules[repaired].last_repair.outcome", "\"failed\""),
        ("rules[late].kind", "\"heartbeat\""),
        ("rules[late].state", "\"starting\""),
        ("rules[late].cause", "null"),
        ("history[0].kind", "\"suppressed\""),
        ("history[0].rule", "\"doomed\""),
        ("history[0].boot_id", boot.as_str()),
        ("history[0].step", "\"no repair configured\""),
        ("history[1].kind", "\"watchdog-reset\""),
        ("history[1].rule", "null"),
        ("history[1].step", "null"),
        ("history[1].at.epoch", "1795000100"),
        ("history[2].kind", "\"reboot\""),
        ("history[2].rule", "\"old\""),
        ("history[2].cause", r#""cause: \"q\" \\b \u0001 \t e""#),
    ] {
        assert_eq!(value(&lines, key), want, "{key} in\n{doc}");
    }
    assert!(
        value(&lines, "rules[repaired].last_repair.text")
            .starts_with("\"attempt 1 failed (exit 3)"),
        "{doc}"
    );
    assert!(
        value(&lines, "suppressed").contains("reboot suppressed"),
        "{doc}"
    );
    assert!(
        value(&lines, "daemon.config_root").ends_with(r#"/conf \"q\" \\b\tt""#),
        "{doc}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("history[3]")), "{doc}");
    assert!(!marker.exists(), "the refused reboot did not run");
    // The history file holds the new entry, in its own format.
    let history = std::fs::read_to_string(s.path("state/history")).unwrap();
    assert!(history.starts_with("heartwatch-history 1\n"), "{history}");
    assert_eq!(history.matches("\nentry ").count(), 3, "{history}");
    assert!(history.contains("\tsuppressed\tdoomed\t"), "{history}");

    d.signal(SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).unwrap().success());
    let (code, doc, lines) = status_json(&s, &root, false);
    assert_eq!(code, 1, "a stopped daemon is not running:\n{doc}");
    assert_eq!(value(&lines, "daemon.state"), "\"stopped\"");
    assert!(value(&lines, "daemon.stopped.epoch").parse::<i64>().is_ok());
    assert!(value(&lines, "daemon.state_detail").contains("orderly stop"));
}

#[test]
fn without_a_status_the_json_says_why_and_exits_1() {
    let s = Scratch::new("json-none");
    s.write_conf("");
    let (code, doc, lines) = status_json(&s, &s.conf(), false);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(value(&lines, "available"), "false");
    assert_eq!(value(&lines, "schema"), "\"heartwatch-status/1\"");
    assert!(
        value(&lines, "error").contains("is the daemon running?"),
        "{doc}"
    );
    // The usage is refused where --json means nothing.
    let out = Command::new(BIN)
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A configuration root whose name is not UTF-8 is a usage error, not a
    // panic (every path in the status, and so in the JSON, is UTF-8).
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(OsStr::from_bytes(b"/etc/hw-\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not UTF-8"),
        "{out:?}"
    );
}
