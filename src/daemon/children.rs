//! The child processes the shell runs for the engine: repair commands and
//! the orderly reboot command, their output and their exits.

use super::Daemon;
use crate::engine::{Event, Now, RuleId};
use crate::repair::{self, Running};

impl Daemon {
    pub(super) fn start_repair(&mut self, id: RuleId, now: Now) {
        let Some((name, spec)) = self.engine.repair_spec(id) else {
            return;
        };
        match repair::start(&spec.command, name) {
            Ok(running) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.repair = Some(Box::new(running));
                    self.running.push(id);
                    self.poll_dirty = true;
                }
            }
            Err(ending) => self.tell(Event::RepairExited(id, ending), now),
        }
    }

    pub(super) fn with_repair(&mut self, id: RuleId, f: impl FnOnce(&mut Running)) {
        if let Some(running) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) {
            f(running);
        }
    }

    pub(super) fn take_repair(&mut self, id: RuleId) -> Option<Running> {
        self.poll_dirty = true;
        self.running.retain(|&r| r != id);
        self.slots.get_mut(&id)?.repair.take().map(|b| *b)
    }

    pub(super) fn start_orderly_reboot(&mut self, now: Now) {
        let Some(argv) = &self.engine.config().reboot.command else {
            return;
        };
        match repair::start(argv, "reboot") {
            Ok(running) => self.orderly = Some(running),
            Err(ending) => {
                log::error!("orderly reboot: `{}` {ending}", argv.text);
                self.tell(Event::OrderlyNotStarted, now);
            }
        }
    }

    pub(super) fn repair_output(&mut self, id: RuleId, now: Now) {
        if let Some(r) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) {
            r.drain_output(now.mono);
            if r.output_to_poll().is_none() {
                self.poll_dirty = true;
            }
        }
    }

    pub(super) fn repair_exited(&mut self, id: RuleId, now: Now) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(r) = &mut slot.repair else { return };
        let had_pidfd = r.pidfd.is_some();
        if let Some(ending) = r.try_finish(now.mono, &mut self.cleanup) {
            slot.repair = None;
            self.running.retain(|&r| r != id);
            self.poll_dirty = true;
            self.tell(Event::RepairExited(id, ending), now);
        } else if had_pidfd && r.pidfd.is_none() {
            self.poll_dirty = true;
        }
    }

    /// Paused output to resume, and exits to look for where no pidfd says.
    pub(super) fn tend_repairs(&mut self, now: Now) {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend_from_slice(&self.running);
        for &id in &ids {
            let Some(r) = self.slots.get_mut(&id).and_then(|s| s.repair.as_mut()) else {
                continue;
            };
            if r.resume_output(now.mono) {
                self.poll_dirty = true;
            }
            if r.pidfd.is_none() {
                self.repair_exited(id, now);
            }
        }
        self.scratch = ids;
    }

    pub(super) fn tend_orderly_reboot(&mut self, now: Now) {
        if let Some(running) = &mut self.orderly {
            running.drain_output(now.mono);
            if let Some(ending) = running.try_finish(now.mono, &mut self.cleanup) {
                log::info!("orderly reboot command {ending}");
                self.orderly = None;
            }
        }
    }
}
