//! The simulated host: heartbeat jobs, processes, mounts, and what a look
//! at them finds.

use super::*;

impl Sim {
    /// A fresh boot: processes started, heartbeat jobs beating, mounts up.
    pub fn boot_world(&mut self) {
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

    pub fn schedule_fault(&mut self, key: SubjectKey) {
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

    pub fn start_process(&mut self, i: usize) {
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

    pub fn kill_process(&mut self, i: usize) {
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
    pub fn fix(&mut self, key: SubjectKey) {
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

    pub fn hb_fault(&mut self, i: usize) {
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
                    f.last_touch = last_touch(since, f.period, t);
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

    pub fn proc_fault(&mut self, i: usize) {
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
    pub fn look(&mut self, subject: &Subject) -> (Finding, Mount) {
        match subject {
            // Only the real shell watches directories; the simulated one
            // keeps every heartbeat on the periodic stat.
            Subject::WatchDir(..) => (
                Finding::Watch(Err(heartwatch::engine::Fallback::Unavailable)),
                Mount::Ok,
            ),
            Subject::File(path) => {
                let i = index_of(path.to_bytes(), b"/sim/hb/");
                let f = &self.hb[i];
                let outcome = match f.mount {
                    Mount::Unreachable => Outcome::Unreachable(Errno::ESTALE),
                    _ if !f.exists => Outcome::Missing,
                    _ => {
                        let touched = match f.beating {
                            Some(since) => last_touch(since, f.period, self.t),
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
                (Finding::File(outcome), f.mount)
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
                (Finding::Process(lookup), mount)
            }
            Subject::Interface(_) => {
                unreachable!("the simulated world's scenarios write no [Interface] rules")
            }
            Subject::System(_) => unreachable!("the simulated world makes no [System] rules"),
        }
    }
}
