//! The steady state allocates nothing. A counting global allocator wraps
//! the system one; the real daemon loop runs over 120 heartbeat rules (some
//! kept fresh, some going stale, some recovering) and 20 process rules (ten
//! alive, watched through pidfds and looked up every 100 ms; ten failing:
//! a missing pidfile, garbage, a dead PID) with the `none` device,
//! logging and systemd notification on, and two repairs running throughout,
//! one printing lines (long ones, bytes that are not UTF-8) past its log
//! budget, one flooding (`yes`), and three interface rules: two on the
//! loopback interface, fed by a datagram the test sends every 700 ms (one
//! with `Within=2s` stays healthy, one with `Within=300ms` flaps), and one
//! on an interface that does not exist (missing); after a warm-up, every
//! turn is counted and must not allocate, in the loop or in its stat
//! workers. The heartbeat files' directory is watched by inotify: the
//! touches arrive as events, read and mapped to rules while counting.
//!
//! `harness = false`: libtest's own threads would allocate and be counted.

// A counting global allocator and raw system calls: `unsafe` is allowed
// here (Cargo.toml denies it elsewhere).
#![allow(unsafe_code)]

use heartwatch::config;
use heartwatch::daemon::{Control, Daemon, Options};
use heartwatch::health::Health;
use heartwatch::notify::Notifier;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged; it only
// counts calls while COUNTING is set.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RULES: usize = 120;

fn touch(path: &CString) {
    // SAFETY: `path` is NUL-terminated; a null `times` means "now".
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    assert!(fd >= 0);
    // SAFETY: `fd` is open; null times set both to now.
    unsafe {
        libc::futimens(fd, std::ptr::null());
        libc::close(fd);
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("hw-zero-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf/rules.d")).unwrap();
    std::fs::write(
        dir.join("conf/heartwatch.conf"),
        format!(
            "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\nRuntimeDirectory={0}/run\nStateDirectory={0}/state\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut beats = Vec::new();
    for i in 0..RULES {
        let file = dir.join(format!("beat-{i}"));
        std::fs::write(
            dir.join(format!("conf/rules.d/r{i:03}.rule")),
            format!("[Heartbeat]\nFile={}\nMaxAge=300ms\n", file.display()),
        )
        .unwrap();
        let c = CString::new(file.as_os_str().as_bytes()).unwrap();
        touch(&c);
        beats.push(c);
    }
    let mut sleepers = Vec::new();
    for i in 0..20 {
        let pidfile = dir.join(format!("p{i}.pid"));
        match i {
            0..10 => {
                let child = std::process::Command::new("sleep")
                    .arg("1000")
                    .spawn()
                    .unwrap();
                std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
                sleepers.push(child);
            }
            10..13 => std::fs::write(&pidfile, "garbage\n").unwrap(),
            13..16 => std::fs::write(&pidfile, "999999999\n").unwrap(),
            _ => {}
        }
        std::fs::write(
            dir.join(format!("conf/rules.d/p{i:03}.rule")),
            format!(
                "[Process]\nPidFile={}\nCheckInterval=100ms\n",
                pidfile.display()
            ),
        )
        .unwrap();
    }
    // A repair that runs for the whole test and keeps printing: its lines
    // are logged, cut and then counted without an allocation each.
    let chatty_count = dir.join("chatty.count");
    std::fs::write(
        dir.join("conf/rules.d/chatty.rule"),
        format!(
            "[Heartbeat]\nFile={}\nMaxAge=300ms\n[Escalate]\nRepair=sh -c 'while :; do echo x >> {}; echo \"line $$\"; printf \"\\377 not utf-8\\n%500s\\n\" long; sleep 0.1; done'\nRepairAttempts=1\nRepairTimeout=1h\nFinally=log\n",
            dir.join("never").display(),
            chatty_count.display()
        ),
    )
    .unwrap();
    // And one that floods: read in bounded helpings with pauses, counted.
    std::fs::write(
        dir.join("conf/rules.d/flood.rule"),
        format!(
            "[Heartbeat]\nFile={}\nMaxAge=300ms\n[Escalate]\nRepair=yes\nRepairAttempts=1\nRepairTimeout=1h\nFinally=log\n",
            dir.join("never").display()
        ),
    )
    .unwrap();
    // Interface rules on loopback, fed by datagrams to a socket of its own.
    for (name, interface, within) in [
        ("i-lo-steady", "lo", "2s"),
        ("i-lo-flap", "lo", "300ms"),
        ("i-missing", "hwnosuch0", "1s"),
    ] {
        std::fs::write(
            dir.join(format!("conf/rules.d/{name}.rule")),
            format!("[Interface]\nName={interface}\nWithin={within}\n"),
        )
        .unwrap();
    }
    let lo_sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lo_to = lo_sink.local_addr().unwrap();
    let lo_source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    lo_sink.set_nonblocking(true).unwrap();
    let chatty_runs = || {
        std::fs::read_to_string(&chatty_count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    heartwatch::logger::init(false, false);
    let notify_path = dir.join("notify.sock");
    let notify_socket = UnixDatagram::bind(&notify_path).unwrap();
    notify_socket.set_nonblocking(true).unwrap();
    let notifier = Notifier::new(
        Some(notify_path.as_os_str()),
        Some(Duration::from_millis(100)),
    );
    let config = config::load(&dir.join("conf")).unwrap();
    let mut daemon = Daemon::start(config, Options::default(), notifier).unwrap();

    // Rules 0..40 stay fresh; 40..80 go stale and stay stale; 80..120
    // flap: stale, then touched back to health, again and again.
    let run = |daemon: &mut Daemon, how_long: Duration, turns: &mut u64| {
        let start = Instant::now();
        let mut last_flap = Instant::now();
        while start.elapsed() < how_long {
            assert_eq!(daemon.turn().unwrap(), Control::Continue);
            *turns += 1;
            for beat in &beats[..40] {
                touch(beat);
            }
            if last_flap.elapsed() > Duration::from_millis(700) {
                for beat in &beats[80..] {
                    touch(beat);
                }
                lo_source.send_to(b"beat", lo_to).unwrap();
                let mut buf = [0u8; 16];
                while lo_sink.recv(&mut buf).is_ok() {}
                last_flap = Instant::now();
            }
            let mut buf = [0u8; 512];
            while notify_socket.recv(&mut buf).is_ok() {}
        }
    };
    let mut warmup_turns = 0;
    run(&mut daemon, Duration::from_secs(2), &mut warmup_turns);

    let failing_before = daemon
        .rule_health()
        .filter(|(_, h)| matches!(h, Health::Failing(_)))
        .count();
    let changes_before = daemon.health_changes();
    let chatty_before = chatty_runs();
    let mut turns = 0;
    COUNTING.store(true, Ordering::SeqCst);
    run(&mut daemon, Duration::from_secs(4), &mut turns);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let changes = daemon.health_changes() - changes_before;
    let chatty_during = chatty_runs() - chatty_before;
    let event_driven = daemon.event_driven_heartbeats();

    // The counter itself works: one deliberate allocation is seen.
    COUNTING.store(true, Ordering::SeqCst);
    let probe = std::hint::black_box(Box::new([0u8; 64]));
    COUNTING.store(false, Ordering::SeqCst);
    drop(probe);
    let counter_works = ALLOCATIONS.load(Ordering::SeqCst) == allocations + 1;

    let failing: Vec<&str> = daemon
        .rule_health()
        .filter(|(_, h)| matches!(h, Health::Failing(_)))
        .map(|(n, _)| n)
        .collect();
    for mut child in sleepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    let interface_health = |name: &str| {
        daemon
            .rule_health()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h)
            .unwrap()
    };
    let lo_steady = interface_health("i-lo-steady");
    let missing = interface_health("i-missing");
    let alive_watched = daemon
        .rule_health()
        .filter(|(n, h)| n.starts_with('p') && *n < "p010" && *h == Health::Healthy)
        .count();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "zero_alloc: {RULES} heartbeat, 20 process and 3 interface rules, {turns} turns measured after {warmup_turns} warm-up turns, {changes} health changes, {allocations} allocations ({} failing before, {} after)",
        failing_before,
        failing.len()
    );
    let mut failed = 0;
    let mut check = |ok: bool, what: &str| {
        println!("{} zero_alloc: {what}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };
    check(turns > 100, "the loop turned many times");
    check(
        failing
            .iter()
            .any(|n| n.starts_with('r') && *n >= "r040" && *n < "r080"),
        "unfed rules went stale during the run",
    );
    check(
        !failing.iter().any(|n| n.starts_with('r') && *n < "r040"),
        "fed rules stayed healthy",
    );
    check(
        alive_watched == 10,
        "live processes were watched as healthy",
    );
    check(
        failing.iter().filter(|n| n.starts_with('p')).count() == 10,
        "dead process rules were failing",
    );
    check(
        changes >= 40,
        "rules changed health while counting (logs and status written)",
    );
    check(
        chatty_before > 0 && chatty_during >= 10,
        "a repair printed lines while counting",
    );
    check(
        lo_steady == Health::Healthy,
        "the interface rule on loopback was healthy",
    );
    check(
        missing == Health::Failing(heartwatch::health::Cause::InterfaceMissing),
        "the interface rule on an interface that does not exist was failing",
    );
    check(
        event_driven == RULES + 2,
        "the heartbeat rules were seen by inotify events (the event path was counted)",
    );
    check(counter_works, "the counting allocator sees an allocation");
    check(allocations == 0, "no allocation in the steady state");
    println!("{} passed, {failed} failed", 12 - failed);
    // Kills the chatty repair.
    daemon.stop();
    if failed > 0 {
        std::process::exit(1);
    }
}
