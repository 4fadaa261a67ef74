//! What the engine adds to the reboot history (`crate::history`): a reboot
//! it decides, one the budget refuses, and a boot a device says the
//! watchdog reset. The shell reads the file at start (`World::history`)
//! and writes it on `Command::SaveHistory`.

use super::{Command, Engine};
use crate::history::{Entry, History, Kind};
use crate::reboot::Reason;

impl Engine {
    /// The reboot history, oldest first, as it is to be saved.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// At start: a boot the watchdog reset is added once, however often
    /// the daemon restarts in that boot.
    pub(super) fn note_watchdog_reset(&mut self, wall: i64) {
        let Some(said) = &self.world.watchdog_reset else {
            return;
        };
        let boot = &self.world.boot_id;
        if self
            .history
            .iter()
            .any(|e| e.kind == Kind::WatchdogReset && e.boot_id == *boot)
        {
            return;
        }
        log::warn!("the watchdog reset this host: {said}");
        self.history.push(Entry {
            wall,
            boot_id: boot.clone(),
            kind: Kind::WatchdogReset,
            cause: said.clone(),
            ..Entry::default()
        });
        self.commands.push_back(Command::SaveHistory);
    }

    /// A reboot decided or refused. A rule refused again and again (its
    /// ladder climbs back to `reboot`) is added once until something else
    /// happens, so it cannot push the real reboots out of the history.
    pub(super) fn remember(&mut self, kind: Kind, reason: &Reason) {
        if kind == Kind::Suppressed
            && self.history.newest().is_some_and(|e| {
                e.kind == Kind::Suppressed && e.rule == reason.rule && e.boot_id == reason.boot_id
            })
        {
            return;
        }
        self.history.push(Entry {
            wall: reason.wall,
            boot_id: reason.boot_id.clone(),
            kind,
            rule: reason.rule.clone(),
            cause: reason.cause.clone(),
            step: reason.step.clone(),
        });
        self.commands.push_back(Command::SaveHistory);
    }
}
