//! The bugs the simulator found, each as a plain test of the engine.

use super::*;

/// An engine over the given settings and rules, started at `t0`.
fn engine_at(
    settings: &str,
    rules: &[(&str, &str)],
    world: impl FnOnce(&mut World),
) -> (Engine, Instant) {
    let (watchdog, daemon, reboot) =
        config::parse_settings(Path::new("/sim/etc/heartwatch.conf"), settings).unwrap();
    let rules = rules
        .iter()
        .map(|(name, text)| config::parse_rule(Path::new("/sim/r.rule"), name, text).unwrap())
        .collect();
    let config = Config {
        root: "/sim/etc".into(),
        watchdog,
        daemon,
        reboot,
        rules,
    };
    let mut w = World {
        devices: Vec::new(),
        boot_status: String::new(),
        record: Some(Record::default()),
        boot_id: "boot".into(),
        uptime: Duration::ZERO,
        use_pidfd: true,
        ping_interval: None,
        identity: heartwatch::status::Identity {
            pid: 1,
            start_time: None,
            boot_id: None,
        },
        seed: 1,
        history: Default::default(),
        watchdog_reset: None,
    };
    world(&mut w);
    let t0 = Instant::now();
    let now = Now {
        mono: t0,
        wall: WALL0,
    };
    (Engine::new(config, Options::default(), w, now), t0)
}

fn at(t0: Instant, s: u64) -> Now {
    Now {
        mono: t0 + secs(s),
        wall: WALL0 + s as i64,
    }
}

/// Ticks at `now` and answers every check with `outcome`.
fn tick_answering(e: &mut Engine, now: Now, outcome: Outcome) {
    e.tick(now);
    while let Some(c) = e.next_command() {
        if let Command::StartCheck(id, _) = c {
            e.handle(Event::Answered(id, Finding::File(outcome)), now);
        }
    }
}

#[test]
fn a_refused_keepalive_does_not_make_the_loop_spin() {
    // Seed 0x3: while feeding fails no ping is sent, and the ping that was
    // due held the engine's deadline in the past: the loop polled with a
    // zero timeout until the device took a keepalive again.
    let settings = "[Watchdog]\nDevice=/dev/watchdog0\nTimeout=60s\nFeedInterval=10s\n[Reboot]\nCommand=/bin/true\n";
    let (mut e, t0) = engine_at(settings, &[], |w| {
        w.devices.push(DeviceInfo {
            path: "/dev/watchdog0".into(),
            identity: "sim".into(),
            timeout: secs(60),
            boot_status: None,
        });
        w.ping_interval = Some(secs(5));
    });
    e.tick(at(t0, 0));
    e.tick(at(t0, 5));
    let now = at(t0, 10);
    e.feed_due(now);
    while e.next_command().is_some() {}
    e.handle(Event::Fed { ok: false }, now);
    e.tick(now);
    assert!(
        e.next_deadline(now.mono) > now.mono,
        "the deadline is not in the past"
    );
}

const STAYS_UP: &str = "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\n[Reboot]\nBudget=2\nHealthyUptime=1h\nOrderlyTimeout=1min\nCommand=/bin/true\nForced=no\n";
const REBOOTER: &str =
    "[Heartbeat]\nFile=/sim/hb/0\nMaxAge=1h\nCheckInterval=10min\n[Escalate]\nFinally=reboot\n";

#[test]
fn a_reboot_that_does_not_happen_does_not_make_the_loop_spin() {
    // Seed 0xb066869c81c8405d: with a reboot decided the count does not
    // start again, yet its deadline stayed in the engine's: on a host that
    // stays up (no device, Forced=no) the loop spun once it was healthy.
    let (mut e, t0) = engine_at(STAYS_UP, &[("r0", REBOOTER)], |w| {
        w.record = Some(Record {
            count: 1,
            last: None,
        })
    });
    tick_answering(&mut e, at(t0, 0), Outcome::Missing);
    assert!(e.rebooting());
    e.handle(Event::ReasonWritten, at(t0, 0));
    tick_answering(&mut e, at(t0, 60), Outcome::Missing);
    assert_eq!(e.reboot_state(), RebootState::FeedStopped);
    // The job beats again: a fresh modification at each look.
    let beat = |s: i64| {
        Outcome::Found(Stamp {
            mtime_sec: s,
            mtime_nsec: 0,
            inode: 1,
            device: 1,
        })
    };
    tick_answering(&mut e, at(t0, 600), beat(600));
    for s in [1200, 2400, 3600] {
        tick_answering(&mut e, at(t0, s), beat(s as i64));
    }
    let now = at(t0, 600 + 3600);
    tick_answering(&mut e, now, beat(4200));
    assert!(e.rule_health().all(|(_, h)| h == Health::Healthy));
    assert!(
        e.next_deadline(now.mono) > now.mono,
        "the deadline is not in the past"
    );
}

#[test]
fn the_status_says_rebooting_without_a_state_directory() {
    // Seed 0x1: the REBOOTING line came from the record, which there is
    // none of without a usable state directory.
    let (mut e, t0) = engine_at(STAYS_UP, &[("r0", REBOOTER)], |w| w.record = None);
    tick_answering(&mut e, at(t0, 0), Outcome::Missing);
    assert!(e.rebooting());
    let mut status = Vec::new();
    e.render_status(&mut status, WALL0).unwrap();
    let status = String::from_utf8(status).unwrap();
    assert!(status.contains("\nREBOOTING: rule r0: missing"), "{status}");
}
