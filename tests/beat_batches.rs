//! A burst of beats through the real binary: hundreds of heartbeat files
//! touched at once are read by the daemon's loop in a few wake-ups (the
//! events that follow one another within 5 ms are read together), not in
//! one wake-up per event.
//!
//! The wake-ups are the loop thread's voluntary context switches, which
//! the kernel counts; nothing else wakes it while the test counts
//! (`Device=none`, no systemd watchdog, checks an hour apart).

mod common;

use common::*;
use std::time::Duration;

const FILES: usize = 400;
const BURSTS: u64 = 3;

fn voluntary_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_burst_of_beats_is_read_in_a_few_wake_ups() {
    let s = Scratch::new("beat-batches");
    s.write_conf("");
    std::fs::create_dir(s.path("beats")).unwrap();
    let files: Vec<_> = (0..FILES)
        .map(|i| {
            let file = s.path(&format!("beats/b{i:03}"));
            touch(&file);
            s.write_rule(
                &format!("b{i:03}"),
                &format!(
                    "[Heartbeat]\nFile={}\nMaxAge=1h\nCheckInterval=1h\n",
                    file.display()
                ),
            );
            file
        })
        .collect();
    let mut d = Daemon::start(&s.conf(), &[]);
    d.expect(&format!("heartbeats: {FILES} rules seen by inotify events"));
    // Its first look at every rule is done: all are healthy.
    for i in 0..FILES {
        d.expect(&format!("rule b{i:03}: healthy"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.child.id();
    let before = voluntary_switches(pid);
    for _ in 0..BURSTS {
        for file in &files {
            touch(file);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let wakeups = voluntary_switches(pid) - before;
    eprintln!("{wakeups} wake-ups for {BURSTS} bursts of {FILES} beats");
    // One wake-up per event would be FILES per burst; batches of 5 ms
    // take a few per burst however slowly the bursts go here.
    assert!(
        wakeups <= BURSTS * 20,
        "{wakeups} wake-ups for {BURSTS} bursts of {FILES} beats"
    );
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited");
}
