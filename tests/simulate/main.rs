//! Deterministic simulation of the engine (issue 12): a second shell around
//! `heartwatch::engine::Engine`, over a simulated world in simulated time.
//! Heartbeats stop and resume, processes die and come back with new PIDs,
//! checks answer late or never, repairs succeed, fail, hang or cannot be
//! killed, the device refuses keepalives, the configuration is reloaded
//! (valid and invalid, parsed by the real parser), the daemon crashes and
//! restarts from what it wrote to a simulated disk, and the host reboots.
//! After every step the invariants of the issue are checked.
//!
//! The invariants: the device is fed at every feed deadline unless feeding
//! stopped for a decided reboot after its orderly deadline; no more than
//! `Budget=` reboots are decided without `HealthyUptime=` healthy between
//! them (the simulator's own count, across restarts and reloads); every
//! repair gets SIGTERM at its timeout, SIGKILL a kill grace later and is
//! given up on after another; no rule fails inside its start-up grace; a
//! rule healthy for `RecoveryPeriod=` (plus `CheckTimeout=`, no repair
//! running) has its ladder at the start, and a waiting ladder moves on
//! within `RepairBackoffMax=` plus `CheckTimeout=`; a refused reload
//! changes nothing (status, deadline, commands), an accepted one keeps the
//! health and `since` of unchanged rules; the published status agrees with the state,
//! and a change of state is published. Besides: one check per rule at a
//! time, late checks accounted, systemd pinged while feeding works, no
//! deadline left in the past (the loop would spin).
//!
//! Simplifications: a record handed to the writer is on the simulated disk
//! at once (its answer may be late, or never come); the daemon's children
//! die with it.
//!
//! The files: `scenario` (the configuration and its edits), `world` (the
//! host), `shell` (the daemon around the engine), `oracle` (the
//! invariants), `bugs` (what the simulator found, as plain tests); here the
//! simulator's state, the loop and the runner.
//!
//! Nothing here reads a clock: one base `Instant` plus simulated durations.
//! A seed decides everything. A failing seed prints itself, the fault
//! classes it still fails with (`HEARTWATCH_SIM_MASK`), its first failing
//! step and the last events and commands, and the command that reruns it:
//! `HEARTWATCH_SIM_SEED=<seed>` runs just that seed, `HEARTWATCH_SIM_STEPS=<n>`
//! stops at step n and prints the trace. `HEARTWATCH_SIM_HOURS` sets the
//! simulated hours of a coarse seed, `HEARTWATCH_SIM_TOTAL_HOURS` those of
//! the whole run.

use heartwatch::config::{self, Config, ConfigError, Rule};
use heartwatch::engine::{
    Cause, Ending, FileOutcome as Outcome, Finding, Found, Health, LadderState, Lookup, Record,
    Stamp, Subject, Target,
};
use heartwatch::engine::{
    Command, DeviceInfo, Engine, Event, FirstLine, KILL_GRACE, Now, Options, RebootState, RuleId,
    World,
};
use nix::errno::Errno;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Seeds that found bugs or cover rare paths: they run first, every time.
/// 0x3, 0x1c250c8e4c82f9c0: the loop spun while the device refused a
/// keepalive (a ping due, none sent). 0xb066869c81c8405d: it spun on a
/// host whose decided reboot did not happen (the budget's deadline).
/// 0x1, 0xdef0eda7cc70496: no REBOOTING in the status without a state
/// directory.
const REGRESSION_SEEDS: &[u64] = &[
    0x1,
    0x2,
    0x3,
    0x4,
    0x5,
    0x1c25_0c8e_4c82_f9c0,
    0xb066_869c_81c8_405d,
    0x0def_0eda_7cc7_0496,
];
/// Random seeds follow (from one fixed root, so every run is the same)
/// until this many hours are simulated; a debug build runs fewer.
const TOTAL_HOURS: f64 = if cfg!(debug_assertions) {
    50_000.0
} else {
    1_000_000.0
};
/// Simulated hours of one coarse seed; fine seeds run a 600th of it.
const HOURS_PER_SEED: u64 = if cfg!(debug_assertions) {
    5_000
} else {
    25_000
};
/// Wall-clock seconds at the simulation's start (display only).
const WALL0: i64 = 1_800_000_000;

// ---------------------------------------------------------------- random

/// splitmix64: small, fast, and a different stream per seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Uniform in `[lo, hi]`, to the millisecond.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        ms(lo + self.below(hi.saturating_sub(lo) + 1))
    }
    /// Exponentially distributed with this mean, capped at 20 means.
    fn exp(&mut self, mean: Duration) -> Duration {
        let x = -(1.0 - self.unit()).ln();
        mean.mul_f64(x.min(20.0)).max(ms(1))
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------- faults

/// Fault classes, each with its own random stream, so that a failing seed
/// can be shrunk by turning classes off one by one.
const FAULTS: &[(&str, u32)] = &[
    ("heartbeats stop", 1 << 0),
    ("processes die", 1 << 1),
    ("checks hang or answer late", 1 << 2),
    ("repairs fail, hang or cannot start", 1 << 3),
    ("device refuses keepalives", 1 << 4),
    ("reloads", 1 << 5),
    ("invalid reloads", 1 << 6),
    ("daemon crashes", 1 << 7),
    ("orderly reboot fails or hangs", 1 << 8),
    ("state directory slow", 1 << 9),
];
const ALL_FAULTS: u32 = (1 << 10) - 1;
const F_HB: u32 = 1 << 0;
const F_PROC: u32 = 1 << 1;
const F_HANG: u32 = 1 << 2;
const F_REPAIR: u32 = 1 << 3;
const F_DEVICE: u32 = 1 << 4;
const F_RELOAD: u32 = 1 << 5;
const F_INVALID: u32 = 1 << 6;
const F_CRASH: u32 = 1 << 7;
const F_ORDERLY: u32 = 1 << 8;
const F_STATEDIR: u32 = 1 << 9;

use scenario::*;

/// The daemon's and each rule's counters, with whether the rule fails.
type CountsSeen = (
    heartwatch::status::Counts,
    Vec<(String, heartwatch::status::RuleCounts, bool)>,
);
use heartwatch::status::RuleHealth;

// ---------------------------------------------------------------- the world

type T = Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mount {
    Ok,
    Unreachable,
    /// Every look blocks until then.
    Hung(T),
    /// Looks answer slowly (often after `CheckTimeout=`) until then.
    Slow(T),
}

struct HbFile {
    /// The job touches the file every `period` from `since`.
    beating: Option<T>,
    period: Duration,
    last_touch: T,
    exists: bool,
    mount: Mount,
    era: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Incarnation {
    pid: i32,
    start: u64,
    stamp: Stamp,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PidFile {
    Current,
    Stale(Incarnation, Option<u64>),
    Missing,
}

struct Proc {
    alive: Option<Incarnation>,
    pidfile: PidFile,
    zombie_until: T,
    mount: Mount,
    era: u64,
}

/// A repair command as the world runs it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RepairKind {
    /// Exits by itself after a while (and honours SIGTERM).
    Exits { code: i32, fixes: bool },
    /// Runs until signalled: `term`: SIGTERM ends it; `kill`: SIGKILL does.
    Hangs { term: bool, kill: bool },
}

struct RunningRepair {
    subject: SubjectKey,
    started: T,
    timeout: Duration,
    terminated: Option<T>,
    killed: Option<T>,
    kind: RepairKind,
    /// The scheduled exit that counts; earlier ones are void.
    token: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SubjectKey {
    Hb(usize),
    Proc(usize),
}

/// What happens at a time: world changes, or events for the engine
/// (tagged with the daemon's epoch: a crash voids them).
#[derive(Debug)]
enum Ev {
    HbFault(usize, u64),
    HbRecover(usize, u64),
    ProcFault(usize, u64),
    ProcRestart(usize, u64),
    DeviceRefuse,
    DeviceAccept,
    Reload,
    Revert,
    Crash,
    DaemonStart(u64),
    /// The host reboots (the orderly command succeeded); tagged with the
    /// boot it belongs to.
    HostReboot(u64),
    Answer(u64, RuleId, Finding),
    Died(u64, RuleId),
    RepairEnd(u64, RuleId, u64, Ending),
    CommandEnd(u64, RuleId, u64, Ending),
    ReasonWritten(u64),
}

struct Entry {
    t: T,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

/// What the oracle tracks per installed rule (aligned with the engine's
/// rules, which are in configuration order).
#[derive(Clone)]
struct Track {
    name: String,
    rule: Rule,
    subject: SubjectKey,
    grace_end: T,
    healthy_from: Option<T>,
    /// The last time a repair ran or the ladder's settings were replaced.
    busy: T,
    /// The ladder's state when last seen, and since when.
    ladder: (LadderState, T),
}

/// The state directory: what `SaveRecord` wrote.
struct Disk {
    record: Record,
    history: heartwatch::history::History,
}

#[derive(Default, Clone, Copy)]
struct Stats {
    steps: u64,
    hours: f64,
    reboots_decided: u64,
    reboots: u64,
    hardware_resets: u64,
    crashes: u64,
    reloads: u64,
    refused_reloads: u64,
    repairs: u64,
    command_runs: u64,
    suppressed: u64,
    drains_cancelled: u64,
    publishes: u64,
}

struct Failure {
    step: u64,
    t: T,
    message: String,
}

struct Sim {
    mask: u32,
    k: f64,
    base: Instant,
    t: T,
    end: T,
    max_steps: u64,
    seq: u64,
    heap: BinaryHeap<Entry>,
    rng_cfg: Rng,
    rng: [Rng; 10],
    rng_misc: Rng,
    options: Options,
    use_pidfd: bool,
    state_dir: bool,
    ping: Option<Duration>,

    // the host
    boot: u64,
    boot_t0: T,
    next_pid: i32,
    hb: Vec<HbFile>,
    procs: Vec<Proc>,
    refusing: bool,
    armed: bool,
    hw_timeout: Duration,
    last_ok_feed: T,
    disk: Disk,
    on_disk: Scenario,
    last_valid: Scenario,
    reboot_now: Option<&'static str>,

    // the daemon
    epoch: u64,
    engine: Option<Engine>,
    active: Scenario,
    feed_interval: Duration,
    devices: usize,
    outstanding: BTreeMap<RuleId, ()>,
    tracked: BTreeMap<RuleId, (usize, Incarnation)>,
    offered: Option<(usize, Incarnation)>,
    repairs: BTreeMap<RuleId, RunningRepair>,
    /// Command checks running, as the world runs them (a check is a
    /// repair in all but name: it exits, or hangs until signalled).
    command_checks: BTreeMap<RuleId, RunningRepair>,
    overdue: i64,
    stopped_feeding: bool,

    // the oracle
    tracks: Vec<Track>,
    last_feed: T,
    last_ping: T,
    budget_count: u32,
    healthy_since: Option<T>,
    prev_reboot: RebootState,
    orderly_deadline: Option<Instant>,
    fingerprint: u64,
    failure: Option<String>,
    same_time: u64,

    stats: Stats,
    trace: Option<VecDeque<String>>,
    status_buf: Vec<u8>,
    /// The counters the last publish showed, and the daemon run (epoch)
    /// they belong to: within a run they only grow.
    counts_seen: Option<(u64, CountsSeen)>,
    prev_suppressed: bool,
    /// What the status must say of the last boot's reboot, if any.
    previous_reboot: Option<String>,
}

macro_rules! fail {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.failure.is_none() {
            $sim.failure = Some(format!($($arg)*));
        }
    };
}

// After the macro, which they use.
mod bugs;
mod oracle;
mod scenario;
mod shell;
mod world;

impl Sim {
    fn new(seed: u64, mask: u32, hours: u64, max_steps: u64, trace: bool) -> Sim {
        let mut root = Rng::new(seed);
        let fine = root.chance(0.2);
        let k = if fine { 1.0 / 150.0 } else { 1.0 };
        let mut rng_cfg = Rng::new(root.next());
        let scenario = Gen {
            rng: &mut rng_cfg,
            k,
        }
        .scenario();
        let rng = std::array::from_fn(|_| Rng::new(root.next()));
        let mut rng_misc = Rng::new(root.next());
        let options = Options {
            dry_run: rng_misc.chance(0.05),
        };
        let use_pidfd = rng_misc.chance(0.85);
        let state_dir = rng_misc.chance(0.9);
        let ping = rng_misc
            .chance(0.5)
            .then(|| Duration::from_secs_f64((1800.0 + 1200.0 * rng_misc.unit()) * k));
        let end = Duration::from_secs_f64(hours as f64 * 3600.0 * if fine { k / 4.0 } else { 1.0 });
        let mut sim = Sim {
            mask,
            k,
            base: Instant::now(),
            t: T::ZERO,
            end,
            max_steps,
            seq: 0,
            heap: BinaryHeap::new(),
            rng_cfg,
            rng,
            rng_misc,
            options,
            use_pidfd,
            state_dir,
            ping,
            boot: 0,
            boot_t0: T::ZERO,
            next_pid: 300,
            hb: Vec::new(),
            procs: Vec::new(),
            refusing: false,
            armed: false,
            hw_timeout: scenario.settings.timeout,
            last_ok_feed: T::ZERO,
            disk: Disk {
                record: Record::default(),
                history: Default::default(),
            },
            on_disk: scenario.clone(),
            last_valid: scenario.clone(),
            reboot_now: None,
            epoch: 0,
            engine: None,
            active: scenario,
            feed_interval: Duration::ZERO,
            devices: 0,
            outstanding: BTreeMap::new(),
            tracked: BTreeMap::new(),
            offered: None,
            repairs: BTreeMap::new(),
            command_checks: BTreeMap::new(),
            overdue: 0,
            stopped_feeding: false,
            tracks: Vec::new(),
            last_feed: T::ZERO,
            last_ping: T::ZERO,
            budget_count: 0,
            healthy_since: None,
            prev_reboot: RebootState::Up,
            orderly_deadline: None,
            fingerprint: 0,
            failure: None,
            same_time: 0,
            stats: Stats::default(),
            trace: trace.then(VecDeque::new),
            status_buf: Vec::new(),
            counts_seen: None,
            prev_suppressed: false,
            previous_reboot: None,
        };
        sim.boot_world();
        sim.push(T::ZERO, Ev::DaemonStart(0));
        for (class, ev) in [
            (F_RELOAD, Ev::Reload),
            (F_CRASH, Ev::Crash),
            (F_DEVICE, Ev::DeviceRefuse),
        ] {
            if mask & class != 0 {
                let at = sim.gap(class);
                sim.push(at, ev);
            }
        }
        sim
    }

    fn on(&self, class: u32) -> bool {
        self.mask & class != 0
    }

    fn r(&mut self, class: u32) -> &mut Rng {
        &mut self.rng[class.trailing_zeros() as usize]
    }

    /// The mean time between two faults of a class, scaled by the tempo.
    fn gap(&mut self, class: u32) -> T {
        let hours = match class {
            F_HB | F_PROC => 150.0,
            F_RELOAD => 120.0,
            F_CRASH => 900.0,
            F_DEVICE => 3000.0,
            _ => 500.0,
        };
        let mean = Duration::from_secs_f64(hours * 3600.0 * self.k);
        self.t + self.r(class).exp(mean)
    }

    fn push(&mut self, t: T, ev: Ev) {
        self.seq += 1;
        self.heap.push(Entry {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn now(&self) -> Now {
        Now {
            mono: self.base + self.t,
            wall: WALL0 + self.t.as_secs() as i64,
        }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        let t = self.t;
        if let Some(trace) = &mut self.trace {
            if trace.len() == 60 {
                trace.pop_front();
            }
            trace.push_back(format!("{:>14.3} s  {}", t.as_secs_f64(), what()));
        }
    }
}

/// The job's last touch at `t`, beating every `period` since `since`.
fn last_touch(since: T, period: Duration, t: T) -> T {
    let period = period.as_nanos().max(1);
    let n = (t - since).as_nanos() / period;
    since + Duration::from_nanos((n * period) as u64)
}

fn index_of(path: &[u8], prefix: &[u8]) -> usize {
    let rest = &path[prefix.len()..];
    (rest[0] - b'0') as usize
}

// ---------------------------------------------------------------- the runner

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The seed, shrunk: fault classes turned off one by one while it still
/// fails; then the trace of its last steps.
fn report(seed: u64, hours: u64, failure: &Failure) -> String {
    let mut mask = ALL_FAULTS;
    let mut last = (failure.step, failure.t, failure.message.clone());
    for &(_, class) in FAULTS {
        let trial = mask & !class;
        if let Err(f) = Sim::new(seed, trial, hours, u64::MAX, false).run() {
            mask = trial;
            last = (f.step, f.t, f.message);
        }
    }
    let mut sim = Sim::new(seed, mask, hours, last.0, true);
    let replay = sim.run();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSIMULATION FAILED: seed {seed:#x}, step {}, at {:.3} s ({:.2} h) of simulated time:\n  {}",
        failure.step,
        failure.t.as_secs_f64(),
        failure.t.as_secs_f64() / 3600.0,
        failure.message
    );
    let on: Vec<&str> = FAULTS
        .iter()
        .filter(|(_, c)| mask & c != 0)
        .map(|(n, _)| *n)
        .collect();
    let _ = writeln!(
        out,
        "minimal replay: fault classes {mask:#x} [{}]; fails at step {} ({:.2} h): {}",
        on.join(", "),
        last.0,
        last.1.as_secs_f64() / 3600.0,
        last.2
    );
    let _ = writeln!(out, "configuration at the start:\n{}", sim_config(seed));
    let _ = writeln!(out, "last events and commands of the replay:");
    for line in sim.trace.iter().flatten() {
        let _ = writeln!(out, "  {line}");
    }
    if let Err(f) = replay {
        let _ = writeln!(
            out,
            "replay failed as expected at step {}: {}",
            f.step, f.message
        );
    }
    let _ = writeln!(
        out,
        "rerun: HEARTWATCH_SIM_SEED={seed:#x} HEARTWATCH_SIM_MASK={mask:#x} HEARTWATCH_SIM_STEPS={} cargo test --release --test simulate -- --nocapture",
        last.0
    );
    out
}

/// The time this thread spent on a CPU: on a shared machine the wall
/// clock says more about the neighbours than about the simulation.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn sim_config(seed: u64) -> String {
    let sim = Sim::new(seed, ALL_FAULTS, 1, 0, false);
    let mut s = sim.active.settings_text();
    for i in 0..sim.active.rules.len() {
        let _ = write!(
            s,
            "--- {}.rule\n{}",
            sim.active.rules[i].name,
            sim.active.rule_text(i)
        );
    }
    s
}

#[test]
fn simulation() {
    let started = std::time::Instant::now();
    let cpu_started = thread_cpu();
    let hours = env_u64("HEARTWATCH_SIM_HOURS").unwrap_or(HOURS_PER_SEED);
    let one = env_u64("HEARTWATCH_SIM_SEED");
    let target = env_u64("HEARTWATCH_SIM_TOTAL_HOURS").map_or(TOTAL_HOURS, |h| h as f64);
    let mask = env_u64("HEARTWATCH_SIM_MASK").map_or(ALL_FAULTS, |m| m as u32);
    let max_steps = env_u64("HEARTWATCH_SIM_STEPS").unwrap_or(u64::MAX);
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let mut seeds = Vec::new();
    let mut root = Rng::new(0x4845_4152_5457_4154);
    loop {
        let seed = match one {
            Some(seed) if seeds.is_empty() => seed,
            Some(_) => break,
            None if seeds.len() < REGRESSION_SEEDS.len() => REGRESSION_SEEDS[seeds.len()],
            None if total.hours < target => root.next(),
            None => break,
        };
        seeds.push(seed);
        let tracing = max_steps != u64::MAX;
        let mut sim = Sim::new(seed, mask, hours, max_steps, tracing);
        match sim.run() {
            Ok(s) => {
                total.steps += s.steps;
                total.hours += s.hours;
                total.reboots_decided += s.reboots_decided;
                total.reboots += s.reboots;
                total.hardware_resets += s.hardware_resets;
                total.crashes += s.crashes;
                total.reloads += s.reloads;
                total.refused_reloads += s.refused_reloads;
                total.repairs += s.repairs;
                total.command_runs += s.command_runs;
                total.suppressed += s.suppressed;
                total.drains_cancelled += s.drains_cancelled;
                total.publishes += s.publishes;
                if tracing {
                    for line in sim.trace.iter().flatten() {
                        println!("  {line}");
                    }
                }
            }
            Err(f) => {
                let text = report(seed, hours, &f);
                println!("{text}");
                failures.push(seed);
            }
        }
    }
    let real = started.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu_started);
    println!(
        "simulation: {} seeds ({} regression), {:.0} simulated hours, {} steps, {:.1} s real time ({:.1} s on the CPU); {} statuses checked, {} repairs, {} command check runs, {} reboots decided, {} refused (budget or dry run), {} cancelled during their drain, {} reboots ({} by the hardware watchdog), {} crashes, {} reloads ({} refused)",
        seeds.len(),
        REGRESSION_SEEDS.len().min(seeds.len()),
        total.hours,
        total.steps,
        real.as_secs_f64(),
        cpu.as_secs_f64(),
        total.publishes,
        total.repairs,
        total.command_runs,
        total.reboots_decided,
        total.suppressed,
        total.drains_cancelled,
        total.reboots,
        total.hardware_resets,
        total.crashes,
        total.reloads,
        total.refused_reloads,
    );
    assert!(failures.is_empty(), "failing seeds: {failures:#x?}");
}
