//! The shell's side of command checks: each `[Command]` rule's slot holds
//! a [`Checker`], made when the rule is installed (its argv prepared, its
//! output buffers allocated), in which every run starts without an
//! allocation. A run is a repair in all but name (`repair::Running`):
//! `execve`, clean environment, stdin closed, its own process group, an
//! empty signal mask, output logged within the bounds, the group killed at
//! the engine's say. Its end goes to the engine as `Event::CommandExited`.

use super::Daemon;
use crate::engine::{Event, Now, RuleId};
use crate::repair::{self, Ending, Running};
use crate::sys::spawn::Prepared;

/// One command rule's runs.
pub(super) struct Checker {
    /// `None` when the argv cannot be handed to the kernel (a NUL byte):
    /// every run then fails to start.
    prepared: Option<Prepared>,
    pub(super) running: Running,
}

impl Daemon {
    /// A checker for every command rule that has none (a new or changed
    /// rule): allocation is fine here, at install.
    pub(super) fn install_checkers(&mut self) {
        for (&id, slot) in self.slots.iter_mut() {
            if slot.check.is_some() {
                continue;
            }
            if let Some((name, argv)) = self.engine.command_argv(id) {
                let prepared = repair::prepare(argv);
                if prepared.is_none() {
                    log::error!(
                        "rule {name}: `{}` holds a NUL byte; it cannot run",
                        argv.text
                    );
                }
                slot.check = Some(Box::new(Checker {
                    prepared,
                    running: Running::idle(name, "check"),
                }));
            }
        }
        self.checking
            .retain(|id| self.slots.get(id).is_some_and(|s| s.check.is_some()));
    }

    pub(super) fn start_command_check(&mut self, id: RuleId, now: Now) {
        let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut()) else {
            return;
        };
        if checker.running.is_running() {
            // The engine never asks for two runs at once; should the shell
            // still have one, the run under way stands for the new one.
            return;
        }
        let started = match &checker.prepared {
            Some(prepared) => checker.running.rerun(prepared),
            None => Err(Ending::NotStarted(libc::EINVAL)),
        };
        match started {
            Ok(()) => {
                self.checking.push(id);
                self.poll_dirty = true;
            }
            Err(ending) => {
                let first = checker.running.first_line();
                self.tell(Event::CommandExited(id, ending, first), now);
            }
        }
    }

    pub(super) fn with_check(&mut self, id: RuleId, f: impl FnOnce(&mut Running)) {
        if let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut())
            && checker.running.is_running()
        {
            f(&mut checker.running);
        }
    }

    /// The engine gave up on a run SIGKILL did not end.
    pub(super) fn abandon_command_check(&mut self, id: RuleId) {
        if let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut())
            && checker.running.is_running()
        {
            checker.running.abandon(&mut self.cleanup);
            checker.running.pidfd = None;
        }
        self.checking.retain(|&r| r != id);
        self.poll_dirty = true;
    }

    pub(super) fn check_output(&mut self, id: RuleId, now: Now) {
        if let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut()) {
            checker.running.drain_output(now.mono);
            if checker.running.output_to_poll().is_none() {
                self.poll_dirty = true;
            }
        }
    }

    pub(super) fn check_exited(&mut self, id: RuleId, now: Now) {
        let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut()) else {
            return;
        };
        let r = &mut checker.running;
        let had_pidfd = r.pidfd.is_some();
        if let Some(ending) = r.try_finish(now.mono, &mut self.cleanup) {
            r.pidfd = None;
            let first = r.first_line();
            self.checking.retain(|&c| c != id);
            self.poll_dirty = true;
            self.tell(Event::CommandExited(id, ending, first), now);
        } else if had_pidfd && r.pidfd.is_none() {
            self.poll_dirty = true;
        }
    }

    /// Paused output to resume, and exits to look for where no pidfd says.
    pub(super) fn tend_checks(&mut self, now: Now) {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend_from_slice(&self.checking);
        for &id in &ids {
            let Some(checker) = self.slots.get_mut(&id).and_then(|s| s.check.as_mut()) else {
                continue;
            };
            if checker.running.resume_output(now.mono) {
                self.poll_dirty = true;
            }
            if checker.running.pidfd.is_none() {
                self.check_exited(id, now);
            }
        }
        self.scratch = ids;
    }
}
