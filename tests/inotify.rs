//! Event-driven heartbeats through the real binary: inotify on the
//! heartbeat's directory sees a delete, a re-create, a rename over the
//! file and a touch when they happen; where it cannot be trusted (a FUSE
//! filesystem, the watch limit) the rule falls back to the periodic stat
//! and the log says so; a lost event (queue overflow, simulated and the
//! kernel's own) makes the daemon look again and never makes a live heartbeat stale; a reload moves a
//! watch without leaking the old one.
//!
//! The proofs are causal: with `CheckInterval=1h` the periodic stat would
//! not look again within the test, so a change reported is one an event
//! reported.

mod common;
#[path = "common/hangfs.rs"]
mod hangfs;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SIGHUP: i32 = 1;

fn rule(file: &Path, max_age: &str, interval: &str) -> String {
    format!(
        "[Heartbeat]\nFile={}\nMaxAge={max_age}\nCheckInterval={interval}\n",
        file.display()
    )
}

/// Atomically replaces `file` (write a temporary, rename over).
fn replace(file: &Path) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, b"beat\n").unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The inotify watches the process holds (from its fdinfo).
fn watch_count(pid: u32) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if target.to_string_lossy() == "anon_inode:inotify" {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap();
            n += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    n
}

#[test]
fn delete_recreate_and_rename_over_are_seen_by_events() {
    let s = Scratch::new("inotify-events");
    s.write_conf("");
    let file = s.path("beats/a");
    std::fs::create_dir(s.path("beats")).unwrap();
    touch(&file);
    s.write_rule("a", &rule(&file, "1h", "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("heartbeats: 1 rule seen by inotify events");
    d.expect("rule a: healthy");
    // The next periodic look would be in an hour: these are events.
    std::fs::remove_file(&file).unwrap();
    d.expect("rule a: failing: missing");
    touch(&file);
    d.expect("rule a: healthy again");
    let before = d.drain().len();
    std::fs::remove_file(&file).unwrap();
    d.expect_after(before, "rule a: failing: missing");
    let before = d.drain().len();
    replace(&file);
    d.expect_after(before, "rule a: healthy again");
    let status = s.wait_status("(1 healthy");
    assert!(rule_line(&status, "a").contains(" healthy "), "{status}");
}

#[test]
fn a_touch_heals_a_stale_heartbeat_before_the_next_periodic_look() {
    let s = Scratch::new("inotify-touch");
    s.write_conf("");
    let file = s.path("t.beat");
    touch(&file);
    s.write_rule("t", &rule(&file, "5s", "5s"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("heartbeats: 1 rule seen by inotify events");
    d.expect("rule t: failing: stale");
    // utimensat only (IN_ATTRIB). The periodic stat would look again a
    // whole CheckInterval after the stat that found it stale, so it could
    // not report it healthy again sooner than 5 s after.
    touch(&file);
    let line = d.expect("rule t: healthy again after ");
    let after = line.rsplit("after ").next().unwrap();
    assert!(
        millis(after) < 5000,
        "healed {after} after going stale: not by the event ({line})"
    );
}

/// "1s4ms", "975ms", "2s" as milliseconds.
fn millis(text: &str) -> u64 {
    let mut total = 0;
    let mut n = 0;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '0'..='9' => n = n * 10 + c.to_digit(10).unwrap() as u64,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                total += n;
                n = 0;
            }
            's' => {
                total += n * 1000;
                n = 0;
            }
            'm' => {
                total += n * 60_000;
                n = 0;
            }
            _ => break,
        }
    }
    total
}

#[test]
fn lost_events_are_rescanned_and_no_live_heartbeat_goes_stale() {
    let s = Scratch::new("inotify-overflow");
    s.write_conf("");
    let gone = s.path("gone.beat");
    let live = s.path("live.beat");
    touch(&gone);
    touch(&live);
    s.write_rule("gone", &rule(&gone, "1h", "1h"));
    s.write_rule("live", &rule(&live, "2s", "2s"));
    // Every 50th read of events from the first on loses its events and
    // reports an overflow, as the kernel does when its queue is full.
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.conf())
            .env("HEARTWATCH_TEST_LOSE_READ", "1"),
    );
    d.expect("heartbeats: 2 rules seen by inotify events");
    d.expect("rule gone: healthy");
    d.expect("rule live: healthy");
    // The delete's event is lost: only the rescan can report it within
    // the hour.
    std::fs::remove_file(&gone).unwrap();
    d.expect(
        "inotify queue overflowed: events were lost; 2 event-driven heartbeats looked at again",
    );
    d.expect("rule gone: failing: missing");
    // The live one, beaten through more lost reads, never goes stale.
    for _ in 0..60 {
        touch(&live);
        std::thread::sleep(Duration::from_millis(100));
    }
    let overflows = d
        .drain()
        .iter()
        .filter(|l| l.contains("inotify queue overflowed"))
        .count();
    assert!(overflows >= 2, "{:#?}", d.seen);
    assert!(
        !d.seen.iter().any(|l| l.contains("rule live: failing")),
        "{:#?}",
        d.seen
    );
}

/// The kernel's own overflow, no test hook: the daemon is stopped
/// (SIGSTOP) while more events than `fs.inotify.max_queued_events` queue
/// up; the delete that comes after them is lost for good, and only the
/// rescan after `IN_Q_OVERFLOW` reports it.
#[test]
fn a_real_queue_overflow_is_rescanned() {
    let s = Scratch::new("inotify-real-overflow");
    s.write_conf("");
    let gone = s.path("gone.beat");
    let a = s.path("a.beat");
    let b = s.path("b.beat");
    for f in [&gone, &a, &b] {
        touch(f);
        s.write_rule(
            f.file_stem().unwrap().to_str().unwrap(),
            &rule(f, "1h", "1h"),
        );
    }
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("heartbeats: 3 rules seen by inotify events");
    d.expect("rule gone: healthy");
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    d.signal(libc::SIGSTOP);
    // Touches of two files in turn: the kernel merges an event only with
    // an identical one just before it, so each of these is queued.
    for i in 0..queue + 100 {
        touch(if i % 2 == 0 { &a } else { &b });
    }
    std::fs::remove_file(&gone).unwrap();
    d.signal(libc::SIGCONT);
    d.expect(
        "inotify queue overflowed: events were lost; 3 event-driven heartbeats looked at again",
    );
    d.expect("rule gone: failing: missing");
    assert!(
        !d.drain()
            .iter()
            .any(|l| l.contains("rule a: failing") || l.contains("rule b: failing")),
        "{:#?}",
        d.seen
    );
}

#[test]
fn at_the_watch_limit_a_rule_falls_back_to_the_periodic_stat() {
    let s = Scratch::new("inotify-limit");
    s.write_conf("");
    for dir in ["d1", "d2"] {
        std::fs::create_dir(s.path(dir)).unwrap();
        touch(&s.path(&format!("{dir}/beat")));
        s.write_rule(dir, &rule(&s.path(&format!("{dir}/beat")), "1h", "200ms"));
    }
    let mut d = Daemon::start_with(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(s.conf())
            .env("HEARTWATCH_TEST_MAX_WATCHES", "1"),
    );
    d.expect("heartbeats: 1 rule on the periodic stat: inotify watch limit reached");
    d.expect("heartbeats: 1 rule seen by inotify events");
    assert_eq!(watch_count(d.child.id()), 1);
    d.expect("rule d1: healthy");
    d.expect("rule d2: healthy");
    // Both are seen to go: one by its event, one by its periodic stat.
    std::fs::remove_file(s.path("d1/beat")).unwrap();
    std::fs::remove_file(s.path("d2/beat")).unwrap();
    d.expect("rule d1: failing: missing");
    d.expect("rule d2: failing: missing");
}

#[test]
fn a_heartbeat_on_fuse_uses_the_periodic_stat() {
    let s = Scratch::new("inotify-fuse");
    s.write_conf("");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let local = s.path("local.beat");
    touch(&local);
    s.write_rule("local", &rule(&local, "1h", "1h"));
    // The filesystem answers look-ups (its root is empty) and statfs.
    s.write_rule("f", &rule(&mnt.join(hangfs::NAME), "1h", "200ms"));
    let fs = hangfs::HangFs::with(hangfs::Fault::Writes);
    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(s.conf());
    fs.mount_in_child(&mut command, &mnt);
    let mut d = Daemon::start_with(&mut command);
    let _server = fs.serve();
    d.expect("heartbeats: 1 rule on the periodic stat: fuse filesystem");
    d.expect("heartbeats: 1 rule seen by inotify events");
    d.expect("rule f: failing: missing");
    assert_eq!(watch_count(d.child.id()), 1);
}

#[test]
fn a_reload_moves_a_watch_without_leaking_the_old_one() {
    let s = Scratch::new("inotify-reload");
    s.write_conf("");
    for dir in ["d1", "d2"] {
        std::fs::create_dir(s.path(dir)).unwrap();
        touch(&s.path(&format!("{dir}/beat")));
    }
    s.write_rule("r", &rule(&s.path("d1/beat"), "1h", "1h"));
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect("heartbeats: 1 rule seen by inotify events");
    d.expect("rule r: healthy");
    s.write_rule("r", &rule(&s.path("d2/beat"), "1h", "1h"));
    // Counted before the reload: its lines may arrive all at once.
    let before = d.drain().len();
    d.signal(SIGHUP);
    d.expect_after(before, "reloaded: 1 rule");
    d.expect_after(before, "heartbeats: 1 rule seen by inotify events");
    d.expect_after(before, "rule r: healthy");
    assert_eq!(watch_count(d.child.id()), 1);
    // The old directory is not watched for the rule any more; the new one is.
    std::fs::remove_file(s.path("d1/beat")).unwrap();
    std::fs::remove_file(s.path("d2/beat")).unwrap();
    d.expect_after(before, "rule r: failing: missing");
    for _ in 0..10 {
        d.signal(SIGHUP);
        std::thread::sleep(Duration::from_millis(50));
    }
    d.expect("reloaded");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watch_count(d.child.id()), 1);
}

#[test]
fn check_says_which_heartbeats_fall_back_and_why() {
    let s = Scratch::new("inotify-check");
    s.write_conf("");
    touch(&s.path("here.beat"));
    s.write_rule("here", &rule(&s.path("here.beat"), "1h", "1h"));
    s.write_rule("nodir", &rule(&s.path("no/such/dir/beat"), "1h", "1h"));
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "heartbeats: 1 seen by inotify events, 1 on the periodic stat every CheckInterval"
        ),
        "{out}"
    );
    assert!(
        out.contains("  nodir: periodic stat: directory does not exist"),
        "{out}"
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(s.conf())
        .env("HEARTWATCH_TEST_MAX_WATCHES", "0")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("  here: periodic stat: inotify watch limit reached"),
        "{out}"
    );
}

/// Hundreds of heartbeat directories, each watched by an answer of its
/// own (the watch index is rebuilt once before events are read, not after
/// every answer): every directory is watched, and a delete in the first,
/// a middle and the last directory is each seen by its event and told
/// to its own rule.
#[test]
fn every_one_of_many_heartbeat_directories_is_watched_and_heard() {
    const DIRS: usize = 300;
    let s = Scratch::new("inotify-dirs");
    s.write_conf("");
    let file = |i: usize| s.path(&format!("beats/d{i:03}/beat"));
    for i in 0..DIRS {
        std::fs::create_dir_all(file(i).parent().unwrap()).unwrap();
        touch(&file(i));
        s.write_rule(&format!("r{i:03}"), &rule(&file(i), "1h", "1h"));
    }
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect(&format!("heartbeats: {DIRS} rules seen by inotify events"));
    s.wait_status(&format!("({DIRS} healthy"));
    assert_eq!(watch_count(d.child.id()), DIRS);
    for i in [0, DIRS / 2, DIRS - 1] {
        let before = d.drain().len();
        std::fs::remove_file(file(i)).unwrap();
        d.expect_after(before, &format!("rule r{i:03}: failing: missing"));
    }
    let status = s.wait_status(&format!("({} healthy, 3 failing", DIRS - 3));
    for i in [1, DIRS / 2 + 1, DIRS - 2] {
        assert!(
            rule_line(&status, &format!("r{i:03}")).contains(" healthy "),
            "{status}"
        );
    }
}
