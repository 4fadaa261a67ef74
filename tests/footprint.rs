//! Reloads do not leave the old configuration's memory behind (issue 14):
//! the real binary with a few thousand heartbeat rules, reloaded (SIGHUP)
//! again and again; its resident memory after the reloads is compared
//! with its memory after start. Before the fix it tripled over the first
//! reloads (glibc's dynamic mmap threshold rose to the size of the rule
//! table freed, and every later table came from the locked heap). The
//! margin is generous: the figure this guards is benches/footprint.py's.

mod common;

use common::{Daemon, Scratch};
use std::time::Duration;

const RULES: usize = 3000;
const RELOADS: usize = 30;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn reloads_leave_no_memory_behind() {
    let s = Scratch::new("footprint");
    s.write_conf("");
    std::fs::create_dir_all(s.path("files")).unwrap();
    for i in 0..RULES {
        let file = s.path(&format!("files/beat-{i:05}"));
        std::fs::write(&file, "").unwrap();
        s.write_rule(
            &format!("beat-{i:05}"),
            &format!("[Heartbeat]\nFile={}\nMaxAge=1h\n", file.display()),
        );
    }
    let mut d = Daemon::start(&s.conf(), &[]);
    let limit = Duration::from_secs(300);
    d.wait_for("ready:", limit).expect("the daemon started");
    // Its first look at every rule, and the first status written.
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_kib(d.child.id());
    for _ in 0..RELOADS {
        d.signal(libc::SIGHUP);
        d.wait_for("reloaded:", limit).expect("the daemon reloaded");
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(d.child.id());
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30))
        .expect("the daemon stopped");
    eprintln!("{RULES} rules: RSS {before} KiB after start, {after} KiB after {RELOADS} reloads");
    assert!(
        after * 10 <= before * 17,
        "RSS grew from {before} to {after} KiB over {RELOADS} reloads"
    );
}
