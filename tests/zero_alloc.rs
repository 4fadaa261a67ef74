//! The steady state allocates nothing. A counting global allocator wraps
//! the system one; the real daemon loop runs over 120 heartbeat rules (some
//! kept fresh, some going stale, some recovering; half of them with
//! `[Escalate] Drain=yes`, so the agent's answer changes as they do) and 20 process rules (ten
//! alive, watched through pidfds and looked up every 100 ms; ten failing:
//! a missing pidfile, garbage, a dead PID) with the `none` device,
//! logging, systemd notification and the metrics file on, and two repairs running throughout,
//! one printing lines (long ones, bytes that are not UTF-8) past its log
//! budget, one flooding (`yes`); three interface rules: two on the
//! loopback interface, fed by a datagram the test sends every 700 ms (one
//! with `Within=2s` stays healthy, one with `Within=300ms` flaps), and one
//! on an interface that does not exist (missing); and 13 system rules,
//! every measure (load, memory, swap, file handles, a filesystem, pressure,
//! and a temperature file that flips above and below its threshold), read
//! every 100 ms, some healthy, some failing, some flapping; and two command
//! rules whose checks run every 100 ms throughout, one passing, one failing
//! with output (each run is started, read, reaped and judged in the steady
//! state); after a warm-up, every turn is counted and must not allocate, in
//! the loop or in its stat workers. The heartbeat files' directory is
//! watched by inotify: the touches arrive as events, read and mapped to
//! rules while counting. The engine hands at most four looks to the
//! probe at once (a lowered bound), so that looks wait their turn in the
//! steady state too.
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

/// Writes `value` over the file at `path` (created if missing).
fn write_value(path: &CString, value: &[u8]) {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    assert!(fd >= 0);
    // SAFETY: `fd` is open and `value` is readable for its length.
    let n = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    assert_eq!(n, value.len() as isize);
    // SAFETY: `fd` is open and ours.
    unsafe { libc::close(fd) };
}

fn main() {
    let dir = std::env::temp_dir().join(format!("hw-zero-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf/rules.d")).unwrap();
    std::fs::create_dir_all(dir.join("metrics")).unwrap();
    std::fs::write(
        dir.join("conf/heartwatch.conf"),
        format!(
            "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\nRuntimeDirectory={0}/run\nStateDirectory={0}/state\n[Metrics]\nTextfileDirectory={0}/metrics\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut beats = Vec::new();
    for i in 0..RULES {
        let file = dir.join(format!("beat-{i}"));
        std::fs::write(
            dir.join(format!("conf/rules.d/r{i:03}.rule")),
            // Half of them ask the agent to drain while they fail.
            format!(
                "[Heartbeat]\nFile={}\nMaxAge=300ms\n{}",
                file.display(),
                if i % 2 == 0 {
                    "[Escalate]\nDrain=yes\n"
                } else {
                    ""
                }
            ),
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
    // System rules of every measure, read every 100 ms: healthy (s0..),
    // failing (f0..), and a temperature that flaps (t0, t1: one through
    // the For= hysteresis).
    let sensor = dir.join("temp");
    let sensor_c = CString::new(sensor.as_os_str().as_bytes()).unwrap();
    write_value(&sensor_c, b"40000\n");
    let system_rules = [
        (
            "s0",
            "LoadAverage=1min\nMaxLoad=100000\nPerCPU=yes".to_string(),
        ),
        ("s1", "LoadAverage=15min\nMaxLoad=100000".to_string()),
        ("s2", "MinMemoryAvailable=1K".to_string()),
        ("s3", "MaxSwapUsed=1T".to_string()),
        ("s4", "MaxFileHandles=99.9%".to_string()),
        (
            "s5",
            format!(
                "Filesystem={}\nMinFreeSpace=1K\nMinFreeInodes=1",
                dir.display()
            ),
        ),
        ("s6", "Pressure=cpu\nMaxPressure=99.999%".to_string()),
        (
            "s7",
            "Pressure=io\nPressureLine=full\nPressureAverage=10s\nMaxPressure=99.999%".to_string(),
        ),
        (
            "s8",
            "Pressure=memory\nPressureAverage=300s\nMaxPressure=99.999%".to_string(),
        ),
        ("f0", "MaxFileHandles=1\nFor=0s".to_string()),
        ("f1", "MinMemoryAvailable=99.999%\nFor=200ms".to_string()),
        (
            "t0",
            format!(
                "TemperatureSensor={}\nMaxTemperature=50\nFor=0s",
                sensor.display()
            ),
        ),
        (
            "t1",
            format!(
                "TemperatureSensor={}\nMaxTemperature=50\nFor=200ms",
                sensor.display()
            ),
        ),
    ];
    for (name, keys) in &system_rules {
        std::fs::write(
            dir.join(format!("conf/rules.d/{name}.rule")),
            format!("[System]\n{keys}\nCheckInterval=100ms\n"),
        )
        .unwrap();
    }
    // Command checks, run again and again: one passes (and counts its
    // runs), one fails with the same first line every time.
    let command_count = dir.join("command.count");
    std::fs::write(
        dir.join("conf/rules.d/cmd-pass.rule"),
        format!(
            "[Command]\nRun=sh -c 'echo x >> {}'\nInterval=100ms\nTimeout=100ms\n",
            command_count.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("conf/rules.d/cmd-fail.rule"),
        "[Command]\nRun=sh -c 'echo unreachable: 10.0.0.1; exit 2'\nInterval=100ms\nTimeout=100ms\n",
    )
    .unwrap();
    let command_runs = || {
        std::fs::read_to_string(&command_count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
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
    // A full reboot history: every status written in the loop carries it.
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut history = String::from("heartwatch-history 1\n");
    for n in 0..16 {
        history.push_str(&format!(
            "entry {}\tan-earlier-boot\treboot\tr{n:03}\tmissing: the heartbeat file does not exist\tno repair configured\n",
            1_795_000_000 + n
        ));
    }
    history.push_str("end\n");
    std::fs::write(dir.join("state/history"), history).unwrap();
    let config = config::load(&dir.join("conf")).unwrap();
    // Four looks in flight at most: the others wait their turn (the
    // engine's bound on looks at once, issue 14), in the steady state too.
    #[cfg(feature = "test-hooks")]
    heartwatch::engine::set_look_limit_for_tests(4);
    let mut daemon = Daemon::start(config, Options::default(), notifier).unwrap();

    // Rules 0..40 stay fresh; 40..80 go stale and stay stale; 80..120
    // flap: stale, then touched back to health, again and again.
    // `flips`: how often the flapping temperature rule t0 changed health.
    let run = |daemon: &mut Daemon, how_long: Duration, turns: &mut u64, flips: &mut u64| {
        let start = Instant::now();
        let mut last_flap = Instant::now();
        let mut hot = false;
        let mut t0_was = None;
        while start.elapsed() < how_long {
            assert_eq!(daemon.turn().unwrap(), Control::Continue);
            *turns += 1;
            let t0 = daemon
                .rule_health()
                .find(|(n, _)| *n == "t0")
                .map(|(_, h)| h);
            if t0 != t0_was {
                *flips += 1;
                t0_was = t0;
            }
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
                hot = !hot;
                write_value(&sensor_c, if hot { b"60000\n" } else { b"40000\n" });
                last_flap = Instant::now();
            }
            let mut buf = [0u8; 512];
            while notify_socket.recv(&mut buf).is_ok() {}
        }
    };
    let mut warmup_turns = 0;
    run(
        &mut daemon,
        Duration::from_secs(2),
        &mut warmup_turns,
        &mut 0,
    );

    let failing_before = daemon
        .rule_health()
        .filter(|(_, h)| matches!(h, Health::Failing(_)))
        .count();
    let changes_before = daemon.health_changes();

    let chatty_before = chatty_runs();
    let commands_before = command_runs();
    let mut turns = 0;
    // Removed before counting: found again only if rewritten meanwhile.
    let metrics_file = dir.join("metrics/heartwatch.prom");
    std::fs::remove_file(&metrics_file).unwrap();
    COUNTING.store(true, Ordering::SeqCst);
    let mut flips = 0;
    run(&mut daemon, Duration::from_secs(4), &mut turns, &mut flips);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let changes = daemon.health_changes() - changes_before;

    let chatty_during = chatty_runs() - chatty_before;
    let rule_files = std::fs::read_dir(dir.join("conf/rules.d")).unwrap().count();
    let metrics_written = std::fs::read_to_string(&metrics_file)
        .is_ok_and(|t| t.contains(&format!("heartwatch_rules {rule_files}")));
    let commands_during = command_runs() - commands_before;
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
    // The agent's answer was in the record the loop wrote: the failing
    // rules with Drain=yes (r040..r079, even) make it `drain`.
    let record = std::fs::read_to_string(dir.join("run/status")).unwrap_or_default();
    let drains = record.contains("\nagent drain\trule r0");
    println!(
        "zero_alloc: {RULES} heartbeat, 20 process, 3 interface, {} system and 2 command rules ({commands_during} runs of one while counting), {turns} turns measured after {warmup_turns} warm-up turns, {changes} health changes, {allocations} allocations ({} failing before, {} after)",
        system_rules.len(),
        failing_before,
        failing.len()
    );
    let mut failed = 0;
    let mut passed = 0;
    let mut check = |ok: bool, what: &str| {
        println!("{} zero_alloc: {what}", if ok { "PASS" } else { "FAIL" });
        if ok {
            passed += 1;
        } else {
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
        failing.iter().filter(|n| n.starts_with('s')).count() == 0,
        "system rules within their thresholds stayed healthy",
    );
    check(
        failing.contains(&"f0") && failing.contains(&"f1"),
        "system rules beyond their thresholds were failing",
    );
    check(
        flips >= 4,
        "a temperature flipping across its threshold changed the rules' health while counting",
    );
    check(
        chatty_before > 0 && chatty_during >= 10,
        "a repair printed lines while counting",
    );
    let command_health = |name: &str| {
        daemon
            .rule_health()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h)
    };
    check(
        commands_before > 0 && commands_during >= 10,
        "command checks ran again and again while counting",
    );
    check(
        command_health("cmd-pass") == Some(Health::Healthy)
            && matches!(command_health("cmd-fail"), Some(Health::Failing(_))),
        "the passing command check was healthy, the failing one failing",
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
        metrics_written,
        "heartwatch.prom was rewritten while counting ([Metrics] TextfileDirectory=)",
    );
    check(
        event_driven == RULES + 2,
        "the heartbeat rules were seen by inotify events (the event path was counted)",
    );
    check(drains, "the agent's answer in the record was drain");
    check(
        record.matches("\nhistory ").count() == 16,
        "the status written carried the reboot history",
    );
    check(counter_works, "the counting allocator sees an allocation");
    check(allocations == 0, "no allocation in the steady state");
    println!("{passed} passed, {failed} failed");
    // Kills the chatty repair; only then can its directory go (removed
    // before, the repair's next line could land in it between the unlinks
    // and the rmdir, and leave it behind).
    daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
    if failed > 0 {
        std::process::exit(1);
    }
}
