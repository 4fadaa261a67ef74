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
//! running) has its ladder at the start; a refused reload changes nothing
//! (status, deadline, commands), an accepted one keeps the health and
//! `since` of unchanged rules; the published status agrees with the state,
//! and a change of state is published. Besides: one check per rule at a
//! time, late checks accounted, systemd pinged while feeding works, no
//! deadline left in the past (the loop would spin).
//!
//! Simplifications: a record handed to the writer is on the simulated disk
//! at once (its answer may be late, or never come); the daemon's children
//! die with it.
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
    Command, DeviceInfo, Engine, Event, KILL_GRACE, Now, Options, RebootState, RuleId, World,
};
use heartwatch::health::{Cause, Health};
use heartwatch::ladder;
use heartwatch::probe::{Finding, Outcome, Stamp, Subject};
use heartwatch::process::{Found, Lookup, Target};
use heartwatch::reboot::Record;
use heartwatch::repair::Ending;
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

// ---------------------------------------------------------------- configuration

#[derive(Clone, Debug)]
struct Settings {
    devices: usize,
    timeout: Duration,
    feed: Duration,
    grace: Duration,
    check_timeout: Duration,
    dry_run: bool,
    budget: u32,
    healthy_uptime: Duration,
    orderly_timeout: Duration,
    forced: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum WatchSpec {
    Heartbeat {
        file: usize,
        max_age: Duration,
        interval: Duration,
    },
    Process {
        subject: usize,
        pidfile: bool,
        interval: Duration,
    },
}

#[derive(Clone, Debug)]
struct RepairSpec {
    attempts: u32,
    timeout: Duration,
    backoff: Duration,
    backoff_max: Duration,
}

#[derive(Clone, Debug)]
struct Escalate {
    repair: Option<RepairSpec>,
    reboot: bool,
    recovery: Duration,
}

#[derive(Clone, Debug)]
struct RuleSpec {
    name: String,
    watch: WatchSpec,
    escalate: Option<Escalate>,
}

/// What the configuration directory holds: settings and rules, and a
/// defect (which file, which kind) that makes the parser refuse it.
#[derive(Clone, Debug)]
struct Scenario {
    settings: Settings,
    rules: Vec<RuleSpec>,
    defect: Option<(usize, u64)>,
}

const HB_FILES: usize = 6;
const PROCS: usize = 6;

fn dur(d: Duration) -> String {
    let m = d.as_millis();
    if m.is_multiple_of(1000) {
        format!("{}s", m / 1000)
    } else {
        format!("{m}ms")
    }
}

impl Scenario {
    fn settings_text(&self) -> String {
        let s = &self.settings;
        let device = match s.devices {
            0 => "none",
            1 => "/dev/watchdog0",
            _ => "/dev/watchdog0 /dev/watchdog1",
        };
        let mut t = format!(
            "[Watchdog]\nDevice={device}\nTimeout={}\nFeedInterval={}\n\n[Daemon]\nStartupGrace={}\nCheckTimeout={}\nDryRun={}\n\n[Reboot]\nBudget={}\nHealthyUptime={}\nOrderlyTimeout={}\nCommand=/bin/true\nForced={}\n",
            dur(s.timeout),
            dur(s.feed),
            dur(s.grace),
            dur(s.check_timeout),
            if s.dry_run { "yes" } else { "no" },
            s.budget,
            dur(s.healthy_uptime),
            dur(s.orderly_timeout),
            if s.forced { "yes" } else { "no" },
        );
        if let Some((0, kind)) = self.defect {
            t = match kind % 4 {
                0 => t.replace("Budget=", "Budget=1000\n#"),
                1 => t.replace(
                    "FeedInterval=",
                    &format!("FeedInterval={}\n#", dur(s.timeout)),
                ),
                2 => t + "Frobnicate=yes\n",
                _ => t.replace("CheckTimeout=", "CheckTimeout=5\n#"),
            };
        }
        t
    }

    fn rule_text(&self, i: usize) -> String {
        let r = &self.rules[i];
        let mut t = match &r.watch {
            WatchSpec::Heartbeat {
                file,
                max_age,
                interval,
            } => format!(
                "[Heartbeat]\nFile=/sim/hb/{file}\nMaxAge={}\nCheckInterval={}\n",
                dur(*max_age),
                dur(*interval)
            ),
            WatchSpec::Process {
                subject,
                pidfile: true,
                interval,
            } => format!(
                "[Process]\nPidFile=/sim/run/{subject}.pid\nCheckInterval={}\n",
                dur(*interval)
            ),
            WatchSpec::Process {
                subject, interval, ..
            } => format!(
                "[Process]\nExecutable=/sim/bin/{subject}\nCheckInterval={}\n",
                dur(*interval)
            ),
        };
        if let Some(e) = &r.escalate {
            t.push_str("\n[Escalate]\n");
            if let Some(rp) = &e.repair {
                let _ = write!(
                    t,
                    "Repair=/bin/true {}\nRepairAttempts={}\nRepairTimeout={}\nRepairBackoff={}\nRepairBackoffMax={}\nRecoveryPeriod={}\n",
                    r.name,
                    rp.attempts,
                    dur(rp.timeout),
                    dur(rp.backoff),
                    dur(rp.backoff_max),
                    dur(e.recovery)
                );
            }
            t.push_str(if e.reboot {
                "Finally=reboot\n"
            } else {
                "Finally=log\n"
            });
        }
        if self.defect.map(|(f, _)| f) == Some(i + 1) {
            let kind = self.defect.unwrap().1;
            t = match kind % 6 {
                0 => t + "Frobnicate=1\n",
                1 => t + "[Bogus]\n",
                2 => t + "\n[Process]\nExecutable=/sim/bin/0\n",
                3 => t.replace("CheckInterval=", "CheckInterval=5\n#"),
                4 => t + "\n[Escalate]\nFinally=sometimes\n",
                _ => t + "\n[Escalate]\nRepair=sim/relative\n",
            };
        }
        t
    }

    /// The configuration as the real parser reads it (`config::load`
    /// combines the same parts).
    fn parse(&self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let settings =
            config::parse_settings(Path::new("/sim/etc/heartwatch.conf"), &self.settings_text());
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let path = format!("/sim/etc/rules.d/{}.rule", r.name);
            match config::parse_rule(Path::new(&path), &r.name, &self.rule_text(i)) {
                Ok(rule) => rules.push(rule),
                Err(mut e) => errors.append(&mut e),
            }
        }
        match settings {
            Ok((watchdog, daemon, reboot)) if errors.is_empty() => Ok(Config {
                root: "/sim/etc".into(),
                watchdog,
                daemon,
                reboot,
                rules,
            }),
            Ok(_) => Err(errors),
            Err(mut e) => {
                e.append(&mut errors);
                Err(e)
            }
        }
    }
}

/// Durations scaled by the seed's tempo: `k` = 1 for coarse seeds (minutes
/// and hours), a small fraction for fine ones (seconds).
struct Gen<'a> {
    rng: &'a mut Rng,
    k: f64,
}

impl Gen<'_> {
    fn d(&mut self, lo_s: f64, hi_s: f64) -> Duration {
        let lo = Duration::from_secs_f64(lo_s * self.k).max(ms(1));
        let hi = Duration::from_secs_f64(hi_s * self.k).max(lo);
        self.rng.between(lo, hi)
    }

    fn settings(&mut self) -> Settings {
        let timeout = secs(
            (self.rng.unit() * 1200.0 * self.k + 2400.0 * self.k)
                .round()
                .clamp(2.0, 3600.0) as u64,
        );
        let feed = self.rng.between(timeout / 3, timeout / 2).max(ms(1));
        let budget = [0, 1, 1, 2, 2, 3, 4][self.rng.below(7) as usize];
        Settings {
            devices: [0, 1, 1, 1, 1, 2][self.rng.below(6) as usize],
            timeout,
            feed,
            grace: if self.rng.chance(0.3) {
                Duration::ZERO
            } else {
                self.d(60.0, 1800.0)
            },
            check_timeout: self.d(10.0, 300.0),
            dry_run: self.rng.chance(0.1),
            budget,
            healthy_uptime: self.d(3600.0, 72.0 * 3600.0),
            orderly_timeout: self.d(60.0, 600.0),
            forced: self.rng.chance(0.8),
        }
    }

    fn watch(&mut self) -> WatchSpec {
        if self.rng.chance(0.5) {
            let max_age = self.d(3600.0, 12.0 * 3600.0);
            let interval = max_age.mul_f64(0.25 + 0.25 * self.rng.unit()).max(ms(1));
            WatchSpec::Heartbeat {
                file: self.rng.below(HB_FILES as u64) as usize,
                max_age,
                interval,
            }
        } else {
            WatchSpec::Process {
                subject: self.rng.below(PROCS as u64) as usize,
                pidfile: self.rng.chance(0.6),
                interval: self.d(1800.0, 4.0 * 3600.0),
            }
        }
    }

    fn escalate(&mut self) -> Option<Escalate> {
        if self.rng.chance(0.15) {
            return None;
        }
        let repair = self.rng.chance(0.8).then(|| {
            let backoff = self.d(60.0, 1800.0);
            RepairSpec {
                attempts: 1 + self.rng.below(4) as u32,
                timeout: self.d(60.0, 1800.0),
                backoff,
                backoff_max: backoff.mul_f64(1.0 + 3.0 * self.rng.unit()),
            }
        });
        Some(Escalate {
            repair,
            reboot: self.rng.chance(0.6),
            recovery: self.d(600.0, 6.0 * 3600.0),
        })
    }

    fn rule(&mut self, name: String) -> RuleSpec {
        RuleSpec {
            name,
            watch: self.watch(),
            escalate: self.escalate(),
        }
    }

    fn scenario(&mut self) -> Scenario {
        let n = 1 + self.rng.below(5) as usize;
        let rules = (0..n).map(|i| self.rule(format!("r{i}"))).collect();
        Scenario {
            settings: self.settings(),
            rules,
            defect: None,
        }
    }

    /// An admin's edit of `s`: ladders, watches, rules added or removed,
    /// Budget=, DryRun=, the grace; with `invalid`, one defect too.
    fn edit(&mut self, s: &Scenario, invalid: bool) -> Scenario {
        let mut s = s.clone();
        s.defect = None;
        for _ in 0..1 + self.rng.below(3) {
            let n = s.rules.len();
            match self.rng.below(10) {
                0 if n < 6 => {
                    let used: Vec<&str> = s.rules.iter().map(|r| r.name.as_str()).collect();
                    let name = (0..9)
                        .map(|i| format!("r{i}"))
                        .find(|c| !used.contains(&c.as_str()))
                        .unwrap();
                    let rule = self.rule(name);
                    s.rules.push(rule);
                    s.rules.sort_by(|a, b| a.name.cmp(&b.name));
                }
                1 if n > 1 => {
                    s.rules.remove(self.rng.below(n as u64) as usize);
                }
                2 | 3 if n > 0 => {
                    let i = self.rng.below(n as u64) as usize;
                    s.rules[i].escalate = self.escalate();
                }
                4 if n > 0 => {
                    let i = self.rng.below(n as u64) as usize;
                    s.rules[i].watch = self.watch();
                }
                5 => s.settings.budget = self.rng.below(5) as u32,
                6 => s.settings.dry_run = self.rng.chance(0.3),
                7 => s.settings.healthy_uptime = self.d(3600.0, 72.0 * 3600.0),
                8 => {
                    s.settings.grace = self.d(0.0, 1800.0);
                    s.settings.check_timeout = self.d(10.0, 300.0);
                }
                // [Watchdog] changes take effect only at a restart.
                _ => {
                    let t = s.settings.timeout;
                    s.settings.feed = self.rng.between(t / 6, t / 2).max(ms(1));
                }
            }
        }
        if invalid {
            s.defect = Some((
                self.rng.below(s.rules.len() as u64 + 1) as usize,
                self.rng.next(),
            ));
        }
        s
    }
}

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
}

/// The state directory: what `SaveRecord` wrote.
struct Disk {
    record: Record,
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
    suppressed: u64,
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

    // ------------------------------------------------------------ world

    /// A fresh boot: processes started, heartbeat jobs beating, mounts up.
    fn boot_world(&mut self) {
        let periods: Vec<Duration> = (0..HB_FILES)
            .map(|i| {
                let max_age = self
                    .active
                    .rules
                    .iter()
                    .filter_map(|r| match r.watch {
                        WatchSpec::Heartbeat { file, max_age, .. } if file == i => Some(max_age),
                        _ => None,
                    })
                    .min()
                    .unwrap_or(Duration::from_secs_f64(1800.0 * self.k));
                max_age
                    .mul_f64(0.1 + 0.5 * self.rng_misc.unit())
                    .max(ms(10))
            })
            .collect();
        self.hb = periods
            .into_iter()
            .map(|period| HbFile {
                beating: Some(self.t),
                period,
                last_touch: self.t,
                exists: true,
                mount: Mount::Ok,
                era: 0,
            })
            .collect();
        self.procs = (0..PROCS)
            .map(|_| Proc {
                alive: None,
                pidfile: PidFile::Missing,
                zombie_until: T::ZERO,
                mount: Mount::Ok,
                era: 0,
            })
            .collect();
        for i in 0..PROCS {
            self.start_process(i);
        }
        for i in 0..HB_FILES {
            self.schedule_fault(SubjectKey::Hb(i));
        }
        for i in 0..PROCS {
            self.schedule_fault(SubjectKey::Proc(i));
        }
    }

    fn schedule_fault(&mut self, key: SubjectKey) {
        match key {
            SubjectKey::Hb(i) => {
                self.hb[i].era += 1;
                if self.on(F_HB) || self.on(F_HANG) {
                    let at = self.gap(F_HB);
                    let era = self.hb[i].era;
                    self.push(at, Ev::HbFault(i, era));
                }
            }
            SubjectKey::Proc(i) => {
                self.procs[i].era += 1;
                if self.on(F_PROC) || self.on(F_HANG) {
                    let at = self.gap(F_PROC);
                    let era = self.procs[i].era;
                    self.push(at, Ev::ProcFault(i, era));
                }
            }
        }
    }

    fn start_process(&mut self, i: usize) {
        self.next_pid += 1 + self.rng_misc.below(40) as i32;
        if self.next_pid > 32_000 {
            self.next_pid = 300 + self.rng_misc.below(100) as i32;
        }
        let since_boot = self.t - self.boot_t0;
        let inc = Incarnation {
            pid: self.next_pid,
            start: (since_boot.as_millis() / 10) as u64 + 1,
            stamp: Stamp {
                mtime_sec: WALL0 + self.t.as_secs() as i64,
                mtime_nsec: self.t.subsec_nanos() as i64,
                inode: self.seq,
                device: 1,
            },
        };
        let p = &mut self.procs[i];
        p.alive = Some(inc);
        p.pidfile = PidFile::Current;
    }

    fn kill_process(&mut self, i: usize) {
        let Some(inc) = self.procs[i].alive.take() else {
            return;
        };
        let r = self.r(F_PROC);
        let stale = r.chance(0.7);
        let stranger = r.chance(0.15).then(|| r.next() % 100_000 + 7);
        let zombie = r.chance(0.2);
        let zombie_for = r.between(ms(100), secs(30));
        let p = &mut self.procs[i];
        p.pidfile = if stale {
            PidFile::Stale(inc, stranger)
        } else {
            PidFile::Missing
        };
        if zombie {
            p.zombie_until = self.t + zombie_for;
        }
        // The pidfds of the rules watching it become readable.
        let watchers: Vec<RuleId> = self
            .tracked
            .iter()
            .filter(|(_, (s, x))| *s == i && *x == inc)
            .map(|(id, _)| *id)
            .collect();
        for id in watchers {
            self.tracked.remove(&id);
            let t = self.t;
            self.push(t, Ev::Died(self.epoch, id));
        }
    }

    /// A repair that worked, or a reboot: the subject is as new.
    fn fix(&mut self, key: SubjectKey) {
        match key {
            SubjectKey::Hb(i) => {
                let f = &mut self.hb[i];
                f.beating = Some(self.t);
                f.exists = true;
                f.mount = Mount::Ok;
                self.schedule_fault(key);
            }
            SubjectKey::Proc(i) => {
                self.procs[i].mount = Mount::Ok;
                if self.procs[i].alive.is_none() {
                    self.start_process(i);
                }
                self.schedule_fault(key);
            }
        }
    }

    fn hb_fault(&mut self, i: usize) {
        let k = self.k;
        let t = self.t;
        let (hb, hang) = (self.on(F_HB), self.on(F_HANG));
        let r = self.r(F_HB);
        let kind = match (hb, hang) {
            (true, true) => r.below(5),
            (true, false) => r.below(3),
            _ => 3 + r.below(2),
        };
        let lasts = r.between(
            Duration::from_secs_f64(300.0 * k),
            Duration::from_secs_f64(20.0 * 3600.0 * k),
        );
        let forever = r.chance(0.1);
        let f = &mut self.hb[i];
        match kind {
            0 | 1 => {
                if let Some(since) = f.beating.take() {
                    let n = (t - since).as_nanos() / f.period.as_nanos().max(1);
                    f.last_touch = since + f.period * n as u32;
                }
                if kind == 1 {
                    f.exists = false;
                }
            }
            2 => f.mount = Mount::Unreachable,
            3 => f.mount = Mount::Hung(t + lasts),
            _ => f.mount = Mount::Slow(t + lasts),
        }
        f.era += 1;
        if !forever {
            let era = f.era;
            self.push(t + lasts, Ev::HbRecover(i, era));
        }
    }

    fn proc_fault(&mut self, i: usize) {
        let k = self.k;
        let t = self.t;
        let (pr, hang) = (self.on(F_PROC), self.on(F_HANG));
        let r = self.r(F_PROC);
        let mount_fault = !pr || (hang && r.chance(0.2));
        let lasts = r.between(
            Duration::from_secs_f64(1.0 * k),
            Duration::from_secs_f64(10.0 * 3600.0 * k),
        );
        let restarts = r.chance(0.6);
        if mount_fault {
            let hung = r.chance(0.5);
            let p = &mut self.procs[i];
            p.mount = if hung {
                Mount::Hung(t + lasts)
            } else {
                Mount::Slow(t + lasts)
            };
            p.era += 1;
            let era = p.era;
            self.push(t + lasts, Ev::ProcRestart(i, era));
            return;
        }
        self.kill_process(i);
        self.procs[i].era += 1;
        if restarts {
            let era = self.procs[i].era;
            self.push(t + lasts, Ev::ProcRestart(i, era));
        }
    }

    /// What a look at `subject` finds now, and when it answers.
    fn look(&mut self, subject: &Subject) -> (SubjectKey, Finding, Mount) {
        match subject {
            Subject::File(path) => {
                let i = index_of(path.to_bytes(), b"/sim/hb/");
                let f = &self.hb[i];
                let outcome = match f.mount {
                    Mount::Unreachable => Outcome::Unreachable(Errno::ESTALE),
                    _ if !f.exists => Outcome::Missing,
                    _ => {
                        let touched = match f.beating {
                            Some(since) => {
                                let n = (self.t - since).as_nanos() / f.period.as_nanos().max(1);
                                since + f.period * n as u32
                            }
                            None => f.last_touch,
                        };
                        Outcome::Found(Stamp {
                            mtime_sec: WALL0 + touched.as_secs() as i64,
                            mtime_nsec: touched.subsec_nanos() as i64,
                            inode: 42,
                            device: 1,
                        })
                    }
                };
                (SubjectKey::Hb(i), Finding::File(outcome), f.mount)
            }
            Subject::Process(target, _) => {
                let (i, pidfile) = match &**target {
                    Target::PidFile(p) => (index_of(p.to_bytes(), b"/sim/run/"), true),
                    Target::Executable(e) => (index_of(e, b"/sim/bin/"), false),
                };
                let p = &self.procs[i];
                let zombie = self.t < p.zombie_until && p.alive.is_none();
                let found = |inc: &Incarnation, pidfile: bool| Found {
                    pid: inc.pid,
                    start: inc.start,
                    pidfd: None,
                    pidfile: pidfile.then_some(inc.stamp),
                };
                let lookup = match (pidfile, p.mount, &p.alive, p.pidfile) {
                    (true, Mount::Unreachable, ..) => Lookup::Dead(Cause::Unreadable(Errno::EIO)),
                    (true, _, _, PidFile::Missing) => Lookup::Dead(Cause::PidFileMissing),
                    (_, _, Some(inc), _) => Lookup::Alive(found(inc, pidfile)),
                    (_, _, None, _) if zombie => Lookup::Dead(Cause::Zombie),
                    (true, _, None, PidFile::Stale(inc, Some(stranger))) => Lookup::Alive(Found {
                        start: stranger,
                        ..found(&inc, true)
                    }),
                    (true, ..) => Lookup::Dead(Cause::ProcessDead),
                    (false, ..) => Lookup::Dead(Cause::NoSuchProcess),
                };
                let mount = if pidfile { p.mount } else { Mount::Ok };
                (SubjectKey::Proc(i), Finding::Process(lookup), mount)
            }
        }
    }

    // ------------------------------------------------------------ the daemon

    /// The daemon starts: configuration from the disk, the devices opened
    /// and fed once, a new engine from the state directory's record.
    fn daemon_start(&mut self) {
        let scenario = self.on_disk.clone();
        let config = match scenario.parse() {
            Ok(c) => c,
            Err(_) => {
                // ExecStartPre=heartwatch check fails; systemd tries again.
                let at = self.t + self.retry_delay();
                self.push(at, Ev::DaemonStart(self.boot));
                self.note(|| "start refused: invalid configuration on disk".into());
                return;
            }
        };
        let devices = config.watchdog.devices.len();
        if devices > 0 {
            if self.refusing {
                // The first feed failed: the start fails and disarms.
                self.armed = false;
                let at = self.t + self.retry_delay();
                self.push(at, Ev::DaemonStart(self.boot));
                self.note(|| "start failed: the first feed was refused".into());
                return;
            }
            self.armed = true;
            self.hw_timeout = config.watchdog.timeout;
            self.last_ok_feed = self.t;
        }
        self.epoch += 1;
        self.devices = devices;
        self.feed_interval = config.watchdog.feed_interval;
        // A reboot heartwatch decided in an earlier boot is shown.
        self.previous_reboot = self
            .disk
            .record
            .last
            .as_ref()
            .filter(|r| self.state_dir && r.boot_id != format!("boot-{}", self.boot))
            .map(|r| format!("last reboot by heartwatch: rule {}: ", r.rule));
        let world = World {
            devices: config
                .watchdog
                .devices
                .iter()
                .map(|p| DeviceInfo {
                    path: p.clone(),
                    identity: "sim".into(),
                    timeout: config.watchdog.timeout,
                })
                .collect(),
            boot_status: String::new(),
            record: self.state_dir.then(|| self.disk.record.clone()),
            boot_id: format!("boot-{}", self.boot),
            uptime: self.t - self.boot_t0,
            use_pidfd: self.use_pidfd,
            ping_interval: self.ping,
            pid: 1000 + self.epoch as u32,
            identity: "identity sim".into(),
            seed: self.rng_misc.next(),
        };
        let now = self.now();
        self.engine = Some(Engine::new(config.clone(), self.options, world, now));
        self.active = scenario;
        self.stopped_feeding = false;
        self.last_feed = self.t;
        self.last_ping = self.t;
        self.outstanding.clear();
        self.tracked.clear();
        self.repairs.clear();
        self.overdue = 0;
        self.prev_reboot = RebootState::Up;
        self.orderly_deadline = None;
        self.healthy_since = Some(self.t);
        let grace_end = self.t + config.daemon.startup_grace;
        self.tracks = config
            .rules
            .iter()
            .map(|r| self.track(r, grace_end))
            .collect();
        let epoch = self.epoch;
        self.note(|| format!("daemon started (epoch {epoch})"));
        self.perform();
        self.observe();
        self.publish();
    }

    fn track(&self, rule: &Rule, grace_end: T) -> Track {
        let spec = self
            .active
            .rules
            .iter()
            .find(|r| r.name == rule.name)
            .expect("the rule is the scenario's");
        let subject = match spec.watch {
            WatchSpec::Heartbeat { file, .. } => SubjectKey::Hb(file),
            WatchSpec::Process { subject, .. } => SubjectKey::Proc(subject),
        };
        Track {
            name: rule.name.clone(),
            rule: rule.clone(),
            subject,
            grace_end,
            healthy_from: None,
            busy: self.t,
        }
    }

    fn retry_delay(&mut self) -> Duration {
        let k = self.k.max(0.1);
        self.rng_misc.between(
            Duration::from_secs_f64(k),
            Duration::from_secs_f64(30.0 * k),
        )
    }

    /// The daemon dies (crash, systemd's watchdog): its children with it
    /// (the unit's control group); the crash handler feeds once.
    fn crash(&mut self, why: &str) {
        if self.engine.take().is_none() {
            return;
        }
        self.stats.crashes += 1;
        self.epoch += 1;
        self.repairs.clear();
        self.tracked.clear();
        self.outstanding.clear();
        self.healthy_since = None;
        if self.armed && !self.refusing && !self.stopped_feeding {
            self.last_ok_feed = self.t;
        }
        let at = self.t + self.retry_delay();
        self.push(at, Ev::DaemonStart(self.boot));
        let why = why.to_string();
        self.note(|| format!("daemon crashed ({why})"));
    }

    /// The host reboots: a new boot, processes restarted, the daemon
    /// started again once the system is up.
    fn reboot(&mut self, why: &'static str) {
        self.stats.reboots += 1;
        if why == "hardware watchdog" {
            self.stats.hardware_resets += 1;
        }
        self.note(|| format!("HOST REBOOTS ({why})"));
        self.engine = None;
        self.epoch += 1;
        self.boot += 1;
        self.boot_t0 = self.t;
        self.armed = false;
        self.refusing = false;
        self.repairs.clear();
        self.tracked.clear();
        self.outstanding.clear();
        self.healthy_since = None;
        self.reboot_now = None;
        self.boot_world();
        let at = self.t + self.rng_misc.between(secs(20), secs(90));
        self.push(at, Ev::DaemonStart(self.boot));
    }

    /// Carries out the engine's commands, as `daemon::perform` does.
    fn perform(&mut self) {
        while self.reboot_now.is_none() {
            let Some(command) = self.engine.as_mut().and_then(Engine::next_command) else {
                return;
            };
            // Feeds and pings are routine: the trace shows the refused.
            if !matches!(command, Command::Feed | Command::Ping) || self.refusing {
                self.note(|| format!("  command {command:?}"));
            }
            self.command(command);
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Feed => {
                if self.stopped_feeding {
                    fail!(self, "Feed after StopFeeding");
                }
                if self.devices == 0 {
                    fail!(self, "Feed without a device");
                }
                self.last_feed = self.t;
                let ok = !self.refusing;
                if ok {
                    self.last_ok_feed = self.t;
                }
                self.engine().handle(Event::Fed { ok }, now);
            }
            Command::StopFeeding => self.stopped_feeding = true,
            Command::Ping => self.last_ping = self.t,
            Command::StartCheck(id, subject) => {
                if self.outstanding.insert(id, ()).is_some() {
                    fail!(self, "a second check of rule {id} while one is outstanding");
                }
                let (_, finding, mount) = self.look(&subject);
                let check_timeout = self.engine().config().daemon.check_timeout;
                let late = self.on(F_HANG);
                let t = self.t;
                let r = self.r(F_HANG);
                let at = match mount {
                    Mount::Hung(until) => Some(until),
                    Mount::Slow(_) => Some(t + check_timeout.mul_f64(0.3 + 2.0 * r.unit())),
                    _ if late && r.chance(0.02) => Some(t + check_timeout.mul_f64(1.5 * r.unit())),
                    _ => Some(t),
                };
                if let Some(at) = at {
                    self.push(at, Ev::Answer(self.epoch, id, finding));
                }
            }
            Command::CheckOverdue => self.overdue += 1,
            Command::OverdueSettled => {
                self.overdue -= 1;
                if self.overdue < 0 {
                    fail!(self, "OverdueSettled without a CheckOverdue");
                }
            }
            Command::Track(id) => {
                if self.use_pidfd
                    && let Some((i, inc)) = self.offered
                {
                    self.tracked.insert(id, (i, inc));
                    if self.procs[i].alive != Some(inc) {
                        // The pidfd was opened before the death: readable now.
                        self.tracked.remove(&id);
                        let t = self.t;
                        self.push(t, Ev::Died(self.epoch, id));
                    }
                }
            }
            Command::Untrack(id) => {
                self.tracked.remove(&id);
            }
            Command::StartRepair(id) => self.start_repair(id),
            Command::TerminateRepair(id) => self.signal_repair(id, true),
            Command::KillRepair(id) => self.signal_repair(id, false),
            Command::AbandonRepair(id) | Command::DiscardRepair(id) => {
                if self.repairs.remove(&id).is_none() {
                    fail!(self, "{command:?}: rule {id} has no repair running");
                }
            }
            Command::SaveRecord { wait } => {
                if self.state_dir {
                    let record = self.engine().record().cloned();
                    if let Some(record) = record {
                        self.disk.record = record;
                    }
                    if wait {
                        let slow = self.on(F_STATEDIR) && self.r(F_STATEDIR).chance(0.2);
                        let r = self.r(F_STATEDIR);
                        let delay = if slow {
                            r.between(secs(1), secs(12))
                        } else {
                            r.between(ms(0), ms(50))
                        };
                        let at = self.t + delay;
                        self.push(at, Ev::ReasonWritten(self.epoch));
                    }
                }
            }
            Command::StartOrderlyReboot => {
                let timeout = self.engine().config().reboot.orderly_timeout;
                let faulty = self.on(F_ORDERLY);
                let r = self.r(F_ORDERLY);
                let roll = if faulty { r.unit() } else { 0.5 };
                let after = r.between(secs(1), timeout.mul_f64(1.3).max(secs(2)));
                if roll < 0.05 {
                    self.engine().handle(Event::OrderlyNotStarted, now);
                } else if roll < 0.85 {
                    let at = self.t + after;
                    self.push(at, Ev::HostReboot(self.boot));
                }
            }
            Command::ForceReboot => {
                if !self.on(F_ORDERLY) || self.r(F_ORDERLY).chance(0.9) {
                    self.reboot_now = Some("reboot(2)");
                }
            }
            Command::Reconfigured => {}
        }
    }

    fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the daemon runs")
    }

    fn start_repair(&mut self, id: RuleId) {
        if self.engine().dry_run() {
            fail!(self, "StartRepair in dry run");
        }
        if self.repairs.contains_key(&id) {
            fail!(self, "a second repair for rule {id}");
        }
        let Some(timeout) = self.engine().repair_spec(id).map(|(_, s)| s.timeout) else {
            fail!(self, "StartRepair for unknown rule {id}");
            return;
        };
        let Some(index) = self.engine().rules().position(|r| r.id == id) else {
            return;
        };
        let subject = self.tracks[index].subject;
        self.stats.repairs += 1;
        let faulty = self.on(F_REPAIR);
        let r = self.r(F_REPAIR);
        let roll = if faulty { r.unit() } else { 0.0 };
        let after = timeout.mul_f64(if r.chance(0.9) {
            0.8 * r.unit()
        } else {
            0.9 + 0.5 * r.unit()
        });
        let fixes = r.chance(0.8);
        let kind = match roll {
            x if x < 0.04 => {
                let now = self.now();
                self.engine()
                    .handle(Event::RepairExited(id, Ending::NotStarted(2)), now);
                return;
            }
            x if x < 0.55 => RepairKind::Exits { code: 0, fixes },
            x if x < 0.75 => RepairKind::Exits {
                code: 1,
                fixes: false,
            },
            x if x < 0.85 => RepairKind::Exits { code: 0, fixes },
            x if x < 0.91 => RepairKind::Hangs {
                term: true,
                kill: true,
            },
            x if x < 0.96 => RepairKind::Hangs {
                term: false,
                kill: true,
            },
            _ => RepairKind::Hangs {
                term: false,
                kill: false,
            },
        };
        let token = self.seq + 1;
        if let RepairKind::Exits { code, .. } = kind {
            let at = self.t + after;
            self.push(
                at,
                Ev::RepairEnd(self.epoch, id, token, Ending::Exited(code)),
            );
        }
        self.repairs.insert(
            id,
            RunningRepair {
                subject,
                started: self.t,
                timeout,
                terminated: None,
                killed: None,
                kind,
                token,
            },
        );
    }

    fn signal_repair(&mut self, id: RuleId, term: bool) {
        let t = self.t;
        let epoch = self.epoch;
        let Some(rp) = self.repairs.get_mut(&id) else {
            fail!(self, "a signal to rule {id}'s repair, which does not run");
            return;
        };
        if t < rp.started + rp.timeout {
            fail!(self, "rule {id}'s repair signalled before its timeout");
        }
        let dies = if term {
            rp.terminated = Some(t);
            matches!(
                rp.kind,
                RepairKind::Exits { .. } | RepairKind::Hangs { term: true, .. }
            )
        } else {
            rp.killed = Some(t);
            matches!(rp.kind, RepairKind::Hangs { kill: true, .. })
        };
        if !dies {
            return;
        }
        let max = if term { ms(2500) } else { ms(4000) };
        let delay = self.rng[3].between(ms(0), max);
        let seq = self.seq + 1;
        let rp = self.repairs.get_mut(&id).unwrap();
        rp.token = seq;
        let signal = if term { 15 } else { 9 };
        self.push(
            t + delay,
            Ev::RepairEnd(epoch, id, seq, Ending::Signalled(signal)),
        );
    }

    /// Something the engine must hear about now.
    fn deliver(&mut self, event: Event) {
        self.note(|| format!("event {event:?}"));
        let now = self.now();
        self.engine().handle(event, now);
        self.perform();
        self.observe();
    }

    fn reload(&mut self) {
        let invalid = self.on(F_INVALID) && self.r(F_RELOAD).chance(0.3);
        let k = self.k;
        let scenario = Gen {
            rng: &mut self.rng_cfg,
            k,
        }
        .edit(&self.last_valid, invalid);
        let parsed = scenario.parse();
        if invalid && parsed.is_ok() {
            fail!(
                self,
                "the parser accepted a defect {:?}:\n{}",
                scenario.defect,
                scenario.settings_text()
            );
        }
        self.on_disk = scenario.clone();
        if parsed.is_ok() {
            self.last_valid = scenario.clone();
        } else {
            let at = self.t + self.rng_misc.between(secs(60), secs(1800));
            self.push(at, Ev::Revert);
        }
        if self.engine.is_none() {
            return;
        }
        self.stats.reloads += 1;
        let now = self.now();
        let mut before = Vec::new();
        let engine = self.engine.as_mut().unwrap();
        engine.render_status(&mut before, now.wall).unwrap();
        let deadline = engine.next_deadline(now.mono);
        let kept: Vec<(String, Health, Instant, ladder::State)> = engine
            .rules()
            .map(|r| (r.name.to_string(), r.health, r.since, r.ladder))
            .collect();
        match parsed {
            Err(errors) => {
                self.stats.refused_reloads += 1;
                self.note(|| format!("event Reload(refused: {} errors)", errors.len()));
                let engine = self.engine.as_mut().unwrap();
                engine.handle(Event::Reload(Err(errors)), now);
                let mut after = Vec::new();
                engine.render_status(&mut after, now.wall).unwrap();
                if after != before {
                    fail!(
                        self,
                        "a refused reload changed the status:\n{}\n---\n{}",
                        String::from_utf8_lossy(&before),
                        String::from_utf8_lossy(&after)
                    );
                }
                let engine = self.engine.as_mut().unwrap();
                if engine.next_deadline(now.mono) != deadline {
                    fail!(self, "a refused reload changed the next deadline");
                }
                if let Some(c) = engine.next_command() {
                    fail!(self, "a refused reload queued {c:?}");
                }
            }
            Ok(config) => {
                self.note(|| "event Reload(accepted)".to_string());
                let old: Vec<Track> = std::mem::take(&mut self.tracks);
                self.active = scenario;
                let grace_end = self.t + config.daemon.startup_grace;
                let new_rules = config.rules.clone();
                self.engine()
                    .handle(Event::Reload(Ok(Box::new(config))), now);
                self.tracks = new_rules
                    .iter()
                    .map(|r| {
                        let mut track = self.track(r, grace_end);
                        if let Some(o) = old
                            .iter()
                            .find(|o| o.name == r.name && o.rule.watch == r.watch)
                        {
                            track.grace_end = o.grace_end;
                            track.healthy_from = o.healthy_from;
                        }
                        track
                    })
                    .collect();
                // Repairs of rules gone: the shell's cleanup kills them.
                let ids: Vec<RuleId> = self.engine().rule_ids().collect();
                self.repairs.retain(|id, _| ids.contains(id));
                self.tracked.retain(|id, _| ids.contains(id));
                let after: Vec<(String, Health, Instant, ladder::State)> = self
                    .engine()
                    .rules()
                    .map(|r| (r.name.to_string(), r.health, r.since, r.ladder))
                    .collect();
                for (name, health, since, ladder) in &after {
                    let Some(o) = old.iter().find(|o| &o.name == name) else {
                        continue;
                    };
                    let Some(n) = new_rules.iter().find(|r| &r.name == name) else {
                        continue;
                    };
                    if o.rule.watch != n.watch {
                        continue;
                    }
                    let (_, h0, s0, l0) = kept.iter().find(|k| &k.0 == name).unwrap();
                    if !h0.same_kind(health) || s0 != since {
                        fail!(
                            self,
                            "reload: unchanged rule {name} went from {h0:?} since {s0:?} to {health:?} since {since:?}"
                        );
                    }
                    if o.rule.ladder == n.ladder && l0 != ladder {
                        fail!(
                            self,
                            "reload: rule {name}'s ladder did not change, yet moved from {l0:?} to {ladder:?}"
                        );
                    }
                }
                for track in &mut self.tracks {
                    track.busy = self.t;
                }
                self.perform();
            }
        }
        self.observe();
    }

    // ------------------------------------------------------------ the oracle

    /// After each interaction with the engine: the budget, grace and
    /// recovery trackers, from what the engine publishes.
    fn observe(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        let t = self.t;
        let mut failing_rebooter = false;
        let mut n = 0;
        for (i, r) in engine.rules().enumerate() {
            n += 1;
            let Some(track) = self.tracks.get_mut(i) else {
                break;
            };
            if track.name != r.name {
                let name = track.name.clone();
                fail!(
                    self,
                    "rule {i} is {} in the engine, {name} in the configuration",
                    r.name
                );
                return;
            }
            let failing = matches!(r.health, Health::Failing(_));
            if failing && track.rule.ladder.finally == config::Finally::Reboot {
                failing_rebooter = true;
            }
            if failing && t < track.grace_end {
                fail!(
                    self,
                    "rule {} reported failing inside its start-up grace ({:?} before its end)",
                    r.name,
                    track.grace_end - t
                );
            }
            if r.repair_running {
                track.busy = t;
            }
            match (r.health, track.healthy_from) {
                (Health::Healthy, None) => track.healthy_from = Some(t),
                (Health::Healthy, Some(_)) => {}
                _ => track.healthy_from = None,
            }
        }
        if n != self.tracks.len() {
            fail!(
                self,
                "the engine has {n} rules, the configuration {}",
                self.tracks.len()
            );
        }
        let state = engine.reboot_state();
        let budget = engine.config().reboot.budget;
        let suppressed = engine.suppressed().is_some();
        if suppressed && !self.prev_suppressed {
            self.stats.suppressed += 1;
        }
        self.prev_suppressed = suppressed;
        let healthy_uptime = self.active.settings.healthy_uptime;
        if failing_rebooter {
            self.healthy_since = None;
        } else if self.healthy_since.is_none() {
            self.healthy_since = Some(t);
        }
        if let Some(since) = self.healthy_since
            && t >= since + healthy_uptime
            && state == RebootState::Up
        {
            if self.budget_count > 0 {
                self.note(|| "oracle: healthy long enough, the reboot count starts again".into());
            }
            self.budget_count = 0;
        }
        if self.prev_reboot == RebootState::Up && state != RebootState::Up {
            self.stats.reboots_decided += 1;
            if self.state_dir && self.budget_count >= budget {
                fail!(
                    self,
                    "reboot decided with {} reboots already decided since the last {:?} healthy (Budget={budget})",
                    self.budget_count,
                    healthy_uptime
                );
            }
            self.budget_count += 1;
            let n = self.budget_count;
            self.note(|| format!("oracle: reboot decided ({n} since a healthy period)"));
        }
        match (self.prev_reboot, state) {
            (_, RebootState::Orderly { deadline }) => self.orderly_deadline = Some(deadline),
            (RebootState::FeedStopped, _) | (_, RebootState::Up) => {}
            (_, RebootState::FeedStopped) => match self.orderly_deadline {
                Some(d) if d <= self.base + t => {}
                d => fail!(self, "feeding stopped before the orderly deadline ({d:?})"),
            },
            _ => {}
        }
        self.prev_reboot = state;
    }

    /// The status as the shell publishes it, checked against the state.
    fn publish(&mut self) {
        let now = self.now();
        let engine = self.engine.as_ref().unwrap();
        let mut buf = std::mem::take(&mut self.status_buf);
        buf.clear();
        engine.render_status(&mut buf, now.wall).unwrap();
        self.stats.publishes += 1;
        let text = std::str::from_utf8(&buf).unwrap();
        let mut problems = Vec::new();
        // The lines above the rules say what the host does.
        let split = text.find("\nrules: ").map_or(text.len(), |i| i + 1);
        let (head, rules) = text.split_at(split);
        let has = |s: &str| head.contains(s);
        let state = engine.reboot_state();
        if has("\nREBOOTING: ") != engine.rebooting() {
            problems.push(format!(
                "REBOOTING line vs rebooting() = {}",
                engine.rebooting()
            ));
        }
        let stopped = state == RebootState::FeedStopped && self.devices > 0;
        if has("FEEDING STOPPED") != stopped {
            problems.push(format!("FEEDING STOPPED vs state {state:?}"));
        }
        let fails = !engine.feeding_ok() && !stopped && self.devices > 0;
        if has("FEEDING FAILS") != fails {
            problems.push(format!(
                "FEEDING FAILS vs feeding_ok() = {}",
                engine.feeding_ok()
            ));
        }
        if has("(dry run: no action is taken)") != engine.dry_run() {
            problems.push("dry run".into());
        }
        match &self.previous_reboot {
            Some(line) if !has(line) => problems.push(format!("no {line:?}")),
            None if !has("last reboot by heartwatch: none recorded") => {
                problems.push("a previous reboot shown, none expected".into())
            }
            _ => {}
        }
        if has("\nREBOOT SUPPRESSED: ") != engine.suppressed().is_some() {
            problems.push("REBOOT SUPPRESSED".into());
        }
        let count = engine.record().map_or(0, |r| r.count);
        let budget = engine.config().reboot.budget;
        if !has(&format!("reboot budget: {count} of {budget} used")) {
            problems.push(format!("reboot budget: {count} of {budget}"));
        }
        let views: Vec<_> = engine.rules().collect();
        let tally = |f: fn(&Health) -> bool| views.iter().filter(|v| f(&v.health)).count();
        let header = format!(
            "rules: {} ({} healthy, {} failing, {} starting)",
            views.len(),
            tally(|h| *h == Health::Healthy),
            tally(|h| matches!(h, Health::Failing(_))),
            tally(|h| *h == Health::Starting),
        );
        let mut lines = rules.lines();
        if lines.next() != Some(header.as_str()) {
            problems.push(format!("header, expected {header:?}"));
        }
        let rule_lines: Vec<&str> = lines.collect();
        if rule_lines.len() != views.len() {
            problems.push("rule line count".into());
        }
        for (line, v) in rule_lines.iter().zip(&views) {
            let mut words = line.split_whitespace();
            if words.next() != Some(v.name) || words.next() != Some(&v.health.to_string()) {
                problems.push(format!("rule line {line:?} vs {} {}", v.name, v.health));
            }
            if line.contains("; ladder: ") != (v.ladder != ladder::State::Idle) {
                problems.push(format!("rule line {line:?} vs ladder {:?}", v.ladder));
            }
        }
        if !problems.is_empty() {
            fail!(
                self,
                "the status disagrees with the state ({}):\n{text}",
                problems.join("; ")
            );
        }
        self.status_buf = buf;
        self.fingerprint = self.fingerprint();
    }

    /// What the status shows, short of times: if it changes, the engine
    /// must say the status is dirty.
    fn fingerprint(&self) -> u64 {
        let engine = self.engine.as_ref().unwrap();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |x: u64| h = (h ^ x).wrapping_mul(0x100_0000_01b3);
        for r in engine.rules() {
            mix(r.id);
            mix(match r.health {
                Health::Starting => 1,
                Health::Healthy => 2,
                Health::Failing(_) => 3,
            });
            mix(match r.ladder {
                ladder::State::Idle => 10,
                ladder::State::Repairing(n) => 20 + n as u64 * 100,
                ladder::State::Waiting(n) => 30 + n as u64 * 100,
                ladder::State::Recovering(_) => 40,
                ladder::State::Exhausted => 50,
            });
        }
        mix(match engine.reboot_state() {
            RebootState::Up => 1,
            RebootState::Recording { .. } => 2,
            RebootState::Orderly { .. } => 3,
            RebootState::FeedStopped => 4,
        });
        mix(engine.feeding_ok() as u64);
        mix(engine.suppressed().is_some() as u64);
        mix(engine.record().map_or(0, |r| r.count) as u64);
        mix(engine.dry_run() as u64);
        h
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let t = self.t;
        let Some(engine) = &self.engine else {
            return;
        };
        let state = engine.reboot_state();
        // The device is fed at every feed deadline, unless feeding stopped
        // for a decided reboot.
        if self.devices > 0
            && state != RebootState::FeedStopped
            && t >= self.last_feed + self.feed_interval
        {
            fail!(
                self,
                "the device was not fed for {:?} (FeedInterval={:?}, reboot state {state:?})",
                t - self.last_feed,
                self.feed_interval
            );
        }
        if engine.config().watchdog.feed_interval != self.feed_interval {
            fail!(self, "a reload changed FeedInterval= before a restart");
        }
        if let Some(interval) = self.ping
            && engine.feeding_ok()
            && t >= self.last_ping + interval
        {
            fail!(self, "systemd was not pinged for {:?}", t - self.last_ping);
        }
        // Every repair is signalled at its timeout, killed after the kill
        // grace and given up on after another.
        for (id, rp) in &self.repairs {
            let deadline = rp.started + rp.timeout;
            if t >= deadline && rp.terminated.is_none() {
                fail!(
                    self,
                    "rule {id}'s repair outlived its timeout without SIGTERM"
                );
            }
            if t >= deadline + KILL_GRACE && rp.killed.is_none() {
                fail!(
                    self,
                    "rule {id}'s repair outlived the kill grace without SIGKILL"
                );
            }
            if t >= deadline + 2 * KILL_GRACE {
                fail!(
                    self,
                    "rule {id}'s repair still counted {:?} after its timeout",
                    t - deadline
                );
            }
        }
        let check_timeout = engine.config().daemon.check_timeout;
        let mut late = 0;
        for (i, r) in engine.rules().enumerate() {
            late += r.check_late as i64;
            if r.repair_running != self.repairs.contains_key(&r.id) {
                fail!(
                    self,
                    "rule {}: the engine says its repair runs: {}; the world: {}",
                    r.name,
                    r.repair_running,
                    self.repairs.contains_key(&r.id)
                );
            }
            // Healthy for RecoveryPeriod= (and a check's timeout) with no
            // repair running: the ladder is at the start.
            let track = &self.tracks[i];
            if let Some(from) = track.healthy_from
                && !r.repair_running
                && t >= from.max(track.busy) + track.rule.ladder.recovery + check_timeout
                && r.ladder != ladder::State::Idle
            {
                fail!(
                    self,
                    "rule {} healthy for {:?} (RecoveryPeriod={:?}), its ladder still {:?}",
                    r.name,
                    t - from.max(track.busy),
                    track.rule.ladder.recovery,
                    r.ladder
                );
            }
        }
        if late != self.overdue {
            fail!(
                self,
                "{late} checks are late, the shell was told of {}",
                self.overdue
            );
        }
    }

    /// The earliest time the simulation must look again: the engine's
    /// deadline, the world's next event, and the oracle's own deadlines.
    fn next_time(&self) -> T {
        let mut next = self.heap.peek().map_or(self.end, |e| e.t);
        if let Some(engine) = &self.engine {
            let mono = self.base + self.t;
            next = next.min(self.t + engine.next_deadline(mono).saturating_duration_since(mono));
        }
        let now = self.t;
        // The oracle's deadlines count only ahead: one passed was checked.
        let mut at = |x: T| {
            if x > now {
                next = next.min(x)
            }
        };
        if self.armed {
            at(self.last_ok_feed + self.hw_timeout);
        }
        if let Some(engine) = &self.engine {
            if self.devices > 0 && engine.reboot_state() != RebootState::FeedStopped {
                at(self.last_feed + self.feed_interval);
            }
            if let Some(interval) = self.ping {
                at(self.last_ping + interval);
                at(self.last_ping + 2 * interval);
            }
            for rp in self.repairs.values() {
                let d = rp.started + rp.timeout;
                at(d);
                at(d + KILL_GRACE);
                at(d + 2 * KILL_GRACE);
            }
            for track in &self.tracks {
                if let Some(from) = track.healthy_from {
                    let check = engine.config().daemon.check_timeout;
                    at(from.max(track.busy) + track.rule.ladder.recovery + check);
                }
            }
        }
        next.max(self.t)
    }

    /// One turn of the loop, as `Daemon::turn` takes it.
    fn turn(&mut self) {
        if self.armed && self.t >= self.last_ok_feed + self.hw_timeout {
            self.reboot("hardware watchdog");
            return;
        }
        if let Some(interval) = self.ping
            && self.engine.is_some()
            && self.t >= self.last_ping + 2 * interval
        {
            self.crash("systemd's watchdog: no ping");
        }
        if self.engine.is_some() {
            let now = self.now();
            self.engine().feed_due(now);
            self.perform();
            self.observe();
        }
        // What the world answers at once (a check's answer, a repair that
        // cannot start) comes back in the same step: the daemon would take
        // it in its next turn, at the same time; this saves the step.
        for round in 0.. {
            if round == 10_000 {
                fail!(self, "livelock: 10000 rounds of events at one time");
                return;
            }
            while self.heap.peek().is_some_and(|e| e.t <= self.t) {
                let Entry { ev, .. } = self.heap.pop().unwrap();
                self.happen(ev);
                if let Some(why) = self.reboot_now {
                    self.reboot(why);
                }
            }
            if self.engine.is_none() {
                return;
            }
            let now = self.now();
            self.engine().tick(now);
            self.perform();
            if let Some(why) = self.reboot_now {
                self.reboot(why);
                return;
            }
            self.observe();
            if self.heap.peek().is_none_or(|e| e.t > self.t) {
                break;
            }
        }
        {
            if self.engine().take_dirty() {
                self.publish();
            } else if self.fingerprint() != self.fingerprint {
                fail!(
                    self,
                    "the state changed and the status was not marked for publishing"
                );
            }
            self.check();
        }
    }

    fn happen(&mut self, ev: Ev) {
        let epoch = self.epoch;
        let running = self.engine.is_some();
        match ev {
            Ev::HbFault(i, era) if self.hb[i].era == era => {
                self.note(|| format!("world: heartbeat file {i} fault"));
                self.hb_fault(i);
            }
            Ev::HbRecover(i, era) if self.hb[i].era == era => {
                self.note(|| format!("world: heartbeat file {i} recovers"));
                self.fix(SubjectKey::Hb(i));
            }
            Ev::ProcFault(i, era) if self.procs[i].era == era => {
                self.note(|| format!("world: process {i} fault"));
                self.proc_fault(i);
            }
            Ev::ProcRestart(i, era) if self.procs[i].era == era => {
                self.note(|| format!("world: process {i} restarted"));
                self.fix(SubjectKey::Proc(i));
            }
            Ev::HbFault(..) | Ev::HbRecover(..) | Ev::ProcFault(..) | Ev::ProcRestart(..) => {}
            Ev::DeviceRefuse => {
                self.refusing = true;
                let timeout = self.hw_timeout;
                let r = self.r(F_DEVICE);
                let lasts = if r.chance(0.85) {
                    r.between(secs(1), timeout.mul_f64(0.8))
                } else {
                    r.between(timeout, timeout.mul_f64(1.5))
                };
                self.note(|| format!("world: the device refuses keepalives for {lasts:?}"));
                let at = self.t + lasts;
                self.push(at, Ev::DeviceAccept);
            }
            Ev::DeviceAccept => {
                self.refusing = false;
                self.note(|| "world: the device accepts keepalives again".into());
                let at = self.gap(F_DEVICE);
                self.push(at, Ev::DeviceRefuse);
            }
            Ev::Reload => {
                self.reload();
                let at = self.gap(F_RELOAD);
                self.push(at, Ev::Reload);
            }
            Ev::Revert => {
                if self.on_disk.defect.is_some() {
                    self.on_disk = self.last_valid.clone();
                }
            }
            Ev::Crash => {
                self.crash("crash");
                let at = self.gap(F_CRASH);
                self.push(at, Ev::Crash);
            }
            Ev::DaemonStart(boot) if boot == self.boot && !running => self.daemon_start(),
            Ev::DaemonStart(_) => {}
            Ev::HostReboot(boot) if boot == self.boot => self.reboot_now = Some("orderly"),
            Ev::HostReboot(_) => {}
            Ev::Answer(e, id, finding) if e == epoch && running => {
                self.outstanding.remove(&id);
                self.offered = match &finding {
                    Finding::Process(Lookup::Alive(f)) => {
                        let i = self.subject_of(id);
                        i.map(|i| {
                            (
                                i,
                                Incarnation {
                                    pid: f.pid,
                                    start: f.start,
                                    stamp: f.pidfile.unwrap_or(Stamp {
                                        mtime_sec: 0,
                                        mtime_nsec: 0,
                                        inode: 0,
                                        device: 0,
                                    }),
                                },
                            )
                        })
                    }
                    _ => None,
                };
                self.deliver(Event::Answered(id, finding));
                self.offered = None;
            }
            Ev::Died(e, id) if e == epoch && running => self.deliver(Event::ProcessDied(id)),
            Ev::RepairEnd(e, id, token, ending) if e == epoch && running => {
                let Some(rp) = self.repairs.get(&id) else {
                    return;
                };
                if rp.token != token {
                    return;
                }
                let rp = self.repairs.remove(&id).unwrap();
                if ending == Ending::Exited(0)
                    && let RepairKind::Exits { fixes: true, .. } = rp.kind
                {
                    self.fix(rp.subject);
                }
                self.deliver(Event::RepairExited(id, ending));
            }
            Ev::ReasonWritten(e) if e == epoch && running => {
                if matches!(self.engine().reboot_state(), RebootState::Recording { .. }) {
                    self.deliver(Event::ReasonWritten);
                }
            }
            Ev::Answer(..) | Ev::Died(..) | Ev::RepairEnd(..) | Ev::ReasonWritten(..) => {}
        }
    }

    /// The process subject the rule watches, if it watches one.
    fn subject_of(&self, id: RuleId) -> Option<usize> {
        let engine = self.engine.as_ref()?;
        let index = engine.rules().position(|r| r.id == id)?;
        match self.tracks.get(index)?.subject {
            SubjectKey::Proc(i) => Some(i),
            SubjectKey::Hb(_) => None,
        }
    }

    fn run(&mut self) -> Result<Stats, Failure> {
        while self.t < self.end && self.stats.steps < self.max_steps {
            let next = self.next_time();
            if next == self.t {
                self.same_time += 1;
                if self.same_time > 10_000 {
                    let state = self.engine.as_ref().map(Engine::reboot_state);
                    fail!(
                        self,
                        "livelock: 10000 steps without time passing (a deadline not consumed?); reboot state {state:?}"
                    );
                }
            } else {
                self.same_time = 0;
            }
            self.t = next;
            self.stats.steps += 1;
            self.turn();
            if let Some(message) = self.failure.take() {
                return Err(Failure {
                    step: self.stats.steps,
                    t: self.t,
                    message,
                });
            }
        }
        self.stats.hours = self.t.as_secs_f64() / 3600.0;
        Ok(self.stats)
    }
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
                total.suppressed += s.suppressed;
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
        "simulation: {} seeds ({} regression), {:.0} simulated hours, {} steps, {:.1} s real time ({:.1} s on the CPU); {} statuses checked, {} repairs, {} reboots decided, {} refused (budget or dry run), {} reboots ({} by the hardware watchdog), {} crashes, {} reloads ({} refused)",
        seeds.len(),
        REGRESSION_SEEDS.len().min(seeds.len()),
        total.hours,
        total.steps,
        real.as_secs_f64(),
        cpu.as_secs_f64(),
        total.publishes,
        total.repairs,
        total.reboots_decided,
        total.suppressed,
        total.reboots,
        total.hardware_resets,
        total.crashes,
        total.reloads,
        total.refused_reloads,
    );
    assert!(failures.is_empty(), "failing seeds: {failures:#x?}");
}

// ---------------------------------------------------------------- the bugs it found

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
        pid: 1,
        identity: String::new(),
        seed: 1,
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
