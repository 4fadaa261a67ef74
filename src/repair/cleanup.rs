//! What finished or killed repairs leave behind, reaped and killed
//! without waiting.

use super::*;

/// What finished or abandoned repairs leave for the loop to finish: the
/// commands killed when their rule went away, to be reaped without
/// waiting, and the process groups of finished repairs that still had
/// processes in them, to be killed after their grace.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub(super) unreaped: Vec<(Pid, String)>,
    groups: Vec<Leftover>,
}

#[derive(Debug)]
struct Leftover {
    group: Pid,
    rule: String,
    kill_at: Instant,
}

impl Cleanup {
    /// A repair whose rule went away (reload): killed now, reaped later.
    pub fn adopt(&mut self, mut running: Running, rule: &str) {
        log::warn!(
            "rule {rule}: the rule changed or was removed while its {} (pid {}) ran; killing it",
            running.what,
            running.pid()
        );
        if let Some(pid) = running.kill_now() {
            self.unreaped.push((pid, rule.to_string()));
        }
    }

    /// A repair exited: processes still in its group are leaked workers.
    /// They get SIGTERM now and SIGKILL after [`KILL_GRACE`] — or SIGKILL
    /// at once when the repair was killed at its timeout (they had their
    /// SIGTERM then). A process that left the group (`setsid`) is not
    /// reached: that is how a repair starts a daemon.
    pub(super) fn after_exit(
        &mut self,
        group: Pid,
        timed_out: bool,
        rule: &str,
        what: &str,
        now: Instant,
    ) {
        if timed_out {
            if signal_group(group, Signal::SIGKILL, rule) {
                log::warn!("rule {rule}: killed what was left of its {what}'s process group");
            }
            return;
        }
        if signal_group(group, Signal::SIGTERM, rule) {
            log::warn!(
                "rule {rule}: its {what} left processes in its process group {group}; sending them SIGTERM, SIGKILL in {} (a process meant to outlive the {what} must leave the group: setsid, or better systemd-run)",
                DurationText(KILL_GRACE)
            );
            self.groups.push(Leftover {
                group,
                rule: rule.to_string(),
                kill_at: now + KILL_GRACE,
            });
        }
    }

    /// When the loop must next call [`Cleanup::tend`].
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let orphans = !orphans().is_empty();
        if self.unreaped.is_empty() && self.groups.is_empty() && !orphans {
            None
        } else {
            Some(now + CLEANUP_LOOK)
        }
    }

    /// Reaps killed commands that have died, kills leftover groups whose
    /// grace is over, forgets groups that emptied.
    pub fn tend(&mut self, now: Instant) {
        self.unreaped.append(&mut orphans());
        self.unreaped.retain(
            |(pid, rule)| match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(_) => false,
                Err(e) => {
                    log::error!("rule {rule}: cannot reap its killed repair (pid {pid}): {e}");
                    false
                }
            },
        );
        self.groups.retain(|g| {
            if now >= g.kill_at {
                if signal_group(g.group, Signal::SIGKILL, &g.rule) {
                    log::warn!(
                        "rule {}: processes its repair left in group {} outlived SIGTERM; sent SIGKILL",
                        g.rule,
                        g.group
                    );
                }
                return false;
            }
            // Signal 0 only asks whether anyone is left; once nobody is,
            // the group's number may be reused, so it is forgotten.
            match killpg(g.group, None) {
                Ok(()) => true,
                Err(Errno::ESRCH) => false,
                Err(_) => true,
            }
        });
    }

    /// The daemon stops: leftover groups are killed now; killed commands
    /// are not waited for (init reaps them once the daemon has exited).
    pub fn stop(&mut self) {
        for g in self.groups.drain(..) {
            signal_group(g.group, Signal::SIGKILL, &g.rule);
        }
        self.unreaped.clear();
    }
}
