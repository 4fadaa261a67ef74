//! The second shell: the daemon's start, crash and the host's reboot, the
//! engine's commands carried out against the simulated world, the events
//! it is told, a turn of the loop.

use super::*;

impl Sim {
    /// The daemon starts: configuration from the disk, the devices opened
    /// and fed once, a new engine from the state directory's record.
    pub fn daemon_start(&mut self) {
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
                    boot_status: None,
                })
                .collect(),
            boot_status: String::new(),
            record: self.state_dir.then(|| self.disk.record.clone()),
            boot_id: format!("boot-{}", self.boot),
            uptime: self.t - self.boot_t0,
            use_pidfd: self.use_pidfd,
            ping_interval: self.ping,
            identity: heartwatch::status::Identity {
                pid: 1000 + self.epoch as u32,
                start_time: None,
                boot_id: None,
            },
            seed: self.rng_misc.next(),
            history: if self.state_dir {
                self.disk.history.clone()
            } else {
                Default::default()
            },
            watchdog_reset: None,
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
        self.command_checks.clear();
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

    pub fn track(&self, rule: &Rule, grace_end: T) -> Track {
        let spec = self
            .active
            .rules
            .iter()
            .find(|r| r.name == rule.name)
            .expect("the rule is the scenario's");
        let subject = match spec.watch {
            WatchSpec::Heartbeat { file, .. } => SubjectKey::Hb(file),
            WatchSpec::Process { subject, .. } | WatchSpec::Command { subject, .. } => {
                SubjectKey::Proc(subject)
            }
        };
        Track {
            name: rule.name.clone(),
            rule: rule.clone(),
            subject,
            grace_end,
            healthy_from: None,
            busy: self.t,
            ladder: (LadderState::Idle, self.t),
        }
    }

    pub fn retry_delay(&mut self) -> Duration {
        let k = self.k.max(0.1);
        self.rng_misc.between(
            Duration::from_secs_f64(k),
            Duration::from_secs_f64(30.0 * k),
        )
    }

    /// The daemon dies (crash, systemd's watchdog): its children with it
    /// (the unit's control group); the crash handler feeds once.
    pub fn crash(&mut self, why: &str) {
        if self.engine.take().is_none() {
            return;
        }
        self.stats.crashes += 1;
        self.epoch += 1;
        self.repairs.clear();
        self.command_checks.clear();
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
    pub fn reboot(&mut self, why: &'static str) {
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
        self.command_checks.clear();
        self.tracked.clear();
        self.outstanding.clear();
        self.healthy_since = None;
        self.reboot_now = None;
        self.boot_world();
        let at = self.t + self.rng_misc.between(secs(20), secs(90));
        self.push(at, Ev::DaemonStart(self.boot));
    }

    /// Carries out the engine's commands, as `daemon::perform` does.
    pub fn perform(&mut self) {
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

    pub fn command(&mut self, command: Command) {
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
                let (finding, mount) = self.look(&subject);
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
            Command::SaveHistory => {
                if self.state_dir {
                    self.disk.history = self.engine().history().clone();
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
            Command::StartCommandCheck(id) => self.start_command_check(id),
            Command::TerminateCommandCheck(id) => self.signal_command_check(id, true),
            Command::KillCommandCheck(id) => self.signal_command_check(id, false),
            Command::AbandonCommandCheck(id) => {
                if self.command_checks.remove(&id).is_none() {
                    fail!(self, "{command:?}: rule {id} has no check running");
                }
            }
        }
    }

    pub fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the daemon runs")
    }

    pub fn start_repair(&mut self, id: RuleId) {
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
        // Without the fault class every repair exits 0 in time.
        let roll = if faulty { r.unit() } else { 0.3 };
        // One in ten runs long (floods its output, say): near its timeout
        // or past it.
        let long = faulty && r.chance(0.1);
        let after = timeout.mul_f64(if long {
            0.9 + 0.5 * r.unit()
        } else {
            0.8 * r.unit()
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

    /// A run of a command check: it passes while the process it checks is
    /// alive; with the hang fault some runs exit late, hang until SIGTERM
    /// or SIGKILL, or cannot start.
    pub fn start_command_check(&mut self, id: RuleId) {
        if self.command_checks.contains_key(&id) {
            fail!(self, "a second run of rule {id}'s command check");
            return;
        }
        let Some(index) = self.engine().rules().position(|r| r.id == id) else {
            fail!(self, "StartCommandCheck for unknown rule {id}");
            return;
        };
        let track = &self.tracks[index];
        let (subject, timeout) = match (&track.rule.watch, track.subject) {
            (config::Watch::Command(spec), SubjectKey::Proc(i)) => (i, spec.timeout),
            _ => {
                fail!(self, "StartCommandCheck for rule {id}, not a command rule");
                return;
            }
        };
        self.stats.command_runs += 1;
        let alive = self.procs[subject].alive.is_some();
        let faulty = self.on(F_HANG);
        let r = self.r(F_HANG);
        let roll = if faulty { r.unit() } else { 0.5 };
        let after = timeout.mul_f64(if roll < 0.1 {
            1.0 + r.unit()
        } else {
            0.9 * r.unit()
        });
        let code = if alive { 0 } else { 1 };
        let kind = match roll {
            x if x < 0.02 => {
                let now = self.now();
                let event = Event::CommandExited(id, Ending::NotStarted(11), FirstLine::default());
                self.engine().handle(event, now);
                return;
            }
            x if x < 0.05 => RepairKind::Hangs {
                term: r.chance(0.7),
                kill: r.chance(0.95),
            },
            _ => RepairKind::Exits { code, fixes: false },
        };
        let token = self.seq + 1;
        if let RepairKind::Exits { code, .. } = kind {
            let at = self.t + after;
            self.push(
                at,
                Ev::CommandEnd(self.epoch, id, token, Ending::Exited(code)),
            );
        }
        self.command_checks.insert(
            id,
            RunningRepair {
                subject: SubjectKey::Proc(subject),
                started: self.t,
                timeout,
                terminated: None,
                killed: None,
                kind,
                token,
            },
        );
    }

    pub fn signal_command_check(&mut self, id: RuleId, term: bool) {
        let t = self.t;
        let epoch = self.epoch;
        let Some(run) = self.command_checks.get_mut(&id) else {
            fail!(
                self,
                "a signal to rule {id}'s command check, which does not run"
            );
            return;
        };
        if t < run.started + run.timeout {
            fail!(
                self,
                "rule {id}'s command check signalled before its timeout"
            );
        }
        let dies = if term {
            run.terminated = Some(t);
            matches!(
                run.kind,
                RepairKind::Exits { .. } | RepairKind::Hangs { term: true, .. }
            )
        } else {
            run.killed = Some(t);
            matches!(run.kind, RepairKind::Hangs { kill: true, .. })
        };
        if !dies {
            return;
        }
        let max = if term { ms(2500) } else { ms(4000) };
        let delay = self.rng[3].between(ms(0), max);
        let seq = self.seq + 1;
        let run = self.command_checks.get_mut(&id).unwrap();
        run.token = seq;
        let signal = if term { 15 } else { 9 };
        self.push(
            t + delay,
            Ev::CommandEnd(epoch, id, seq, Ending::Signalled(signal)),
        );
    }

    pub fn signal_repair(&mut self, id: RuleId, term: bool) {
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
    pub fn deliver(&mut self, event: Event) {
        self.note(|| format!("event {event:?}"));
        let now = self.now();
        self.engine().handle(event, now);
        self.perform();
        self.observe();
    }

    pub fn reload(&mut self) {
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
        let kept: Vec<(String, Health, Instant, LadderState)> = engine
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
                self.command_checks.retain(|id, _| ids.contains(id));
                self.tracked.retain(|id, _| ids.contains(id));
                let after: Vec<(String, Health, Instant, LadderState)> = self
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
}
