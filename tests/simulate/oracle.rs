//! The invariants, checked from what the engine publishes and from the
//! simulator's own trackers.

use super::*;

impl Sim {
    /// After each interaction with the engine: the budget, grace and
    /// recovery trackers, from what the engine publishes.
    pub fn observe(&mut self) {
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
            if track.ladder.0 != r.ladder {
                track.ladder = (r.ladder, t);
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
        // A reboot counts once it is past its drain (`[Reboot] Drain=`): one
        // cancelled during the drain uses no budget.
        let committed =
            |s: RebootState| !matches!(s, RebootState::Up | RebootState::Draining { .. });
        if let (RebootState::Draining { .. }, RebootState::Up) = (self.prev_reboot, state) {
            self.stats.drains_cancelled += 1;
            if failing_rebooter {
                fail!(
                    self,
                    "a drain was cancelled while a rule that can reboot fails"
                );
            }
        }
        if let (RebootState::Up, RebootState::Draining { until, .. }) = (self.prev_reboot, state)
            && until != self.base + t + self.active.settings.drain
        {
            fail!(
                self,
                "a drain until {until:?}, not Drain= after the decision"
            );
        }
        if !committed(self.prev_reboot) && committed(state) {
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
    pub fn publish(&mut self) {
        let now = self.now();
        let engine = self.engine.as_mut().unwrap();
        let mut buf = std::mem::take(&mut self.status_buf);
        buf.clear();
        engine.render_status(&mut buf, now.wall).unwrap();
        self.stats.publishes += 1;
        let text = std::str::from_utf8(&buf).unwrap();
        let mut problems = Vec::new();
        // The lines above the rules say what the host does.
        let split = text.find("\nrules: ").map_or(text.len(), |i| i + 1);
        let (head, rules) = text.split_at(split);
        // The reboot history follows the rules: shown when there is one,
        // newest first, at most 8 entries.
        let (rules, history) = rules
            .split_once("reboot history, newest first:\n")
            .unwrap_or((rules, ""));
        let entries = engine.history().len();
        if history.lines().filter(|l| l.starts_with("  20")).count() != entries.min(8) {
            problems.push(format!("reboot history lines, expected {}", entries.min(8)));
        }
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
            if line.contains("; ladder: ") != (v.ladder != LadderState::Idle) {
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
        self.check_counts(now.wall);
        self.fingerprint = self.fingerprint();
    }

    /// The metrics' counters only grow within a daemon run (across
    /// reloads too, by rule name), and a failing rule has failed at least
    /// once.
    fn check_counts(&mut self, wall: i64) {
        let status = self.engine.as_mut().unwrap().status(wall);
        let seen: CountsSeen = (
            status.counts,
            status
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.counts, r.health == RuleHealth::Failing))
                .collect(),
        );
        let mut problems = Vec::new();
        for (name, counts, failing) in &seen.1 {
            if *failing && counts.failures == 0 {
                problems.push(format!("rule {name} fails with failures_total 0"));
            }
        }
        if let Some((epoch, (was, was_rules))) = &self.counts_seen
            && *epoch == self.epoch
        {
            let now = &seen.0;
            if now.reboots_decided < was.reboots_decided
                || now.reboots_suppressed < was.reboots_suppressed
                || now.health_changes < was.health_changes
            {
                problems.push(format!("daemon counters went back: {was:?} to {now:?}"));
            }
            for (name, counts, _) in &seen.1 {
                let Some((_, before, _)) = was_rules.iter().find(|(n, ..)| n == name) else {
                    continue;
                };
                let back = counts.failures < before.failures
                    || counts
                        .repairs
                        .iter()
                        .zip(&before.repairs)
                        .any(|(a, b)| a < b);
                if back {
                    problems.push(format!(
                        "rule {name}'s counters went back: {before:?} to {counts:?}"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            fail!(self, "counters: {}", problems.join("; "));
        }
        self.counts_seen = Some((self.epoch, seen));
    }

    /// What the status shows, short of times: if it changes, the engine
    /// must say the status is dirty.
    pub fn fingerprint(&self) -> u64 {
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
                LadderState::Idle => 10,
                LadderState::Repairing(n) => 20 + n as u64 * 100,
                LadderState::Waiting(n) => 30 + n as u64 * 100,
                LadderState::Recovering(_) => 40,
                LadderState::Exhausted => 50,
            });
        }
        mix(match engine.reboot_state() {
            RebootState::Up => 1,
            RebootState::Recording { .. } => 2,
            RebootState::Orderly { .. } => 3,
            RebootState::FeedStopped => 4,
            RebootState::Draining { .. } => 5,
        });
        mix(engine.feeding_ok() as u64);
        mix(engine.suppressed().is_some() as u64);
        mix(engine.record().map_or(0, |r| r.count) as u64);
        mix(engine.dry_run() as u64);
        h
    }

    /// The invariants that hold after every step.
    pub fn check(&mut self) {
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
            let track = &self.tracks[i];
            // How long a fresh look may take: a check's timeout, or a
            // command check's run to its timeout and its kill stages.
            let check_timeout = match &track.rule.watch {
                config::Watch::Command(spec) => spec.timeout + 2 * KILL_GRACE,
                _ => check_timeout,
            };
            // A ladder waits at most its longest backoff, and a fresh
            // look: a hung check does not hold it.
            if let (LadderState::Waiting(n), since) = track.ladder
                && let Some(rp) = &track.rule.ladder.repair
                && t >= since + rp.backoff_max + check_timeout
            {
                fail!(
                    self,
                    "rule {}'s ladder has waited after attempt {n} for {:?} (RepairBackoffMax={:?})",
                    r.name,
                    t - since,
                    rp.backoff_max
                );
            }
            // Healthy for RecoveryPeriod= (and a check's timeout) with no
            // repair running: the ladder is at the start.
            if let Some(from) = track.healthy_from
                && !r.repair_running
                && t >= from.max(track.busy) + track.rule.ladder.recovery + check_timeout
                && r.ladder != LadderState::Idle
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
    pub fn next_time(&self) -> T {
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
            let check = engine.config().daemon.check_timeout;
            for track in &self.tracks {
                if let Some(from) = track.healthy_from {
                    at(from.max(track.busy) + track.rule.ladder.recovery + check);
                }
                if let (LadderState::Waiting(_), since) = track.ladder
                    && let Some(r) = &track.rule.ladder.repair
                {
                    at(since + r.backoff_max + check);
                }
            }
        }
        next.max(self.t)
    }

    /// One turn of the loop, as `Daemon::turn` takes it.
    pub fn turn(&mut self) {
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

    pub fn happen(&mut self, ev: Ev) {
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
            Ev::CommandEnd(e, id, token, ending) if e == epoch && running => {
                if self
                    .command_checks
                    .get(&id)
                    .is_none_or(|run| run.token != token)
                {
                    return;
                }
                self.command_checks.remove(&id);
                self.deliver(Event::CommandExited(id, ending, FirstLine::default()));
            }
            Ev::ReasonWritten(e) if e == epoch && running => {
                if matches!(self.engine().reboot_state(), RebootState::Recording { .. }) {
                    self.deliver(Event::ReasonWritten);
                }
            }
            Ev::Answer(..)
            | Ev::Died(..)
            | Ev::RepairEnd(..)
            | Ev::CommandEnd(..)
            | Ev::ReasonWritten(..) => {}
        }
    }

    /// The process subject the rule watches, if it watches one.
    pub fn subject_of(&self, id: RuleId) -> Option<usize> {
        let engine = self.engine.as_ref()?;
        let index = engine.rules().position(|r| r.id == id)?;
        match self.tracks.get(index)?.subject {
            SubjectKey::Proc(i) => Some(i),
            SubjectKey::Hb(_) => None,
        }
    }

    pub fn run(&mut self) -> Result<Stats, Failure> {
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
