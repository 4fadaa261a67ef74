//! The configuration the simulated admin writes: settings and rules as
//! values, rendered to text and read by the real parser, and the edits of a
//! reload (some with a defect the parser must refuse).

use super::*;

#[derive(Clone, Debug)]
pub struct Settings {
    pub devices: usize,
    pub timeout: Duration,
    pub feed: Duration,
    pub grace: Duration,
    pub check_timeout: Duration,
    pub dry_run: bool,
    pub budget: u32,
    pub healthy_uptime: Duration,
    pub orderly_timeout: Duration,
    pub forced: bool,
    /// `[Reboot] Drain=`; zero: none.
    pub drain: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum WatchSpec {
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
    /// A check of the process `subject`'s service (a `curl` of its health
    /// URL, say): it passes while the process is alive.
    Command {
        subject: usize,
        interval: Duration,
        timeout: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct RepairSpec {
    pub attempts: u32,
    pub timeout: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

#[derive(Clone, Debug)]
pub struct Escalate {
    pub repair: Option<RepairSpec>,
    pub reboot: bool,
    pub recovery: Duration,
}

#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub name: String,
    pub watch: WatchSpec,
    pub escalate: Option<Escalate>,
}

/// What the configuration directory holds: settings and rules, and a
/// defect (which file, which kind) that makes the parser refuse it.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub settings: Settings,
    pub rules: Vec<RuleSpec>,
    pub defect: Option<(usize, u64)>,
}

pub const HB_FILES: usize = 6;
pub const PROCS: usize = 6;

pub fn dur(d: Duration) -> String {
    let m = d.as_millis();
    if m.is_multiple_of(1000) {
        format!("{}s", m / 1000)
    } else {
        format!("{m}ms")
    }
}

impl Scenario {
    pub fn settings_text(&self) -> String {
        let s = &self.settings;
        let device = match s.devices {
            0 => "none",
            1 => "/dev/watchdog0",
            _ => "/dev/watchdog0 /dev/watchdog1",
        };
        let mut t = format!(
            "[Watchdog]\nDevice={device}\nTimeout={}\nFeedInterval={}\n\n[Daemon]\nStartupGrace={}\nCheckTimeout={}\nDryRun={}\n\n[Reboot]\nBudget={}\nHealthyUptime={}\nOrderlyTimeout={}\nCommand=/bin/true\nForced={}\nDrain={}\n",
            dur(s.timeout),
            dur(s.feed),
            dur(s.grace),
            dur(s.check_timeout),
            if s.dry_run { "yes" } else { "no" },
            s.budget,
            dur(s.healthy_uptime),
            dur(s.orderly_timeout),
            if s.forced { "yes" } else { "no" },
            dur(s.drain),
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

    pub fn rule_text(&self, i: usize) -> String {
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
            WatchSpec::Command {
                subject,
                interval,
                timeout,
            } => format!(
                "[Command]\nRun=/bin/true {subject}\nInterval={}\nTimeout={}\n",
                dur(*interval),
                dur(*timeout)
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
                3 if t.contains("CheckInterval=") => {
                    t.replace("CheckInterval=", "CheckInterval=5\n#")
                }
                3 => t.replace("\nInterval=", "\nInterval=5\n#"),
                4 => t + "\n[Escalate]\nFinally=sometimes\n",
                _ => t + "\n[Escalate]\nRepair=sim/relative\n",
            };
        }
        t
    }

    /// The configuration as the real parser reads it (`config::load`
    /// combines the same parts).
    pub fn parse(&self) -> Result<Config, Vec<ConfigError>> {
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
        config::assemble(Path::new("/sim/etc"), settings, rules, errors)
    }
}

/// Durations scaled by the seed's tempo: `k` = 1 for coarse seeds (minutes
/// and hours), a small fraction for fine ones (seconds).
pub struct Gen<'a> {
    pub rng: &'a mut Rng,
    pub k: f64,
}

impl Gen<'_> {
    pub fn d(&mut self, lo_s: f64, hi_s: f64) -> Duration {
        let lo = Duration::from_secs_f64(lo_s * self.k).max(ms(1));
        let hi = Duration::from_secs_f64(hi_s * self.k).max(lo);
        self.rng.between(lo, hi)
    }

    pub fn settings(&mut self) -> Settings {
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
            drain: if self.rng.chance(0.5) {
                Duration::ZERO
            } else {
                self.d(1.0, 600.0)
            },
        }
    }

    pub fn watch(&mut self) -> WatchSpec {
        if self.rng.chance(0.2) {
            let interval = self.d(600.0, 3600.0);
            let timeout = interval.mul_f64(0.05 + 0.45 * self.rng.unit()).max(ms(1));
            return WatchSpec::Command {
                subject: self.rng.below(PROCS as u64) as usize,
                interval,
                timeout,
            };
        }
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

    pub fn escalate(&mut self) -> Option<Escalate> {
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

    pub fn rule(&mut self, name: String) -> RuleSpec {
        RuleSpec {
            name,
            watch: self.watch(),
            escalate: self.escalate(),
        }
    }

    pub fn scenario(&mut self) -> Scenario {
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
    pub fn edit(&mut self, s: &Scenario, invalid: bool) -> Scenario {
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
