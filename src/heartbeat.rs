//! Heartbeat rules: a file that a job touches. Its age is measured on the
//! monotonic clock from the moment the daemon *saw* its modification time
//! change, never by comparing the file's time with the wall clock, so a
//! wall-clock step never fires a rule.

use crate::config::HeartbeatSpec;
use crate::health::Cause;
use crate::sys::stat::{Outcome, Stamp};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Heartbeat {
    max_age: Duration,
    interval: Duration,
    seen: Option<Stamp>,
    changed_at: Instant,
    /// How changes are seen: by inotify events, or by the periodic stat.
    pub mode: Mode,
    /// An event beat since the last stat: the next stat's stamp is that
    /// beat's, already counted, and is adopted without counting again.
    adopt: bool,
    /// An event asked for a stat (a delete, a move away, a rescan).
    look: bool,
    /// Whether a stat has answered yet: the first one says where the
    /// rule stands, events or not.
    looked: bool,
}

/// How a heartbeat's changes are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// inotify on the file's directory: an event is a beat, and the one
    /// stat is at the deadline.
    Events,
    /// The periodic stat, every `CheckInterval=`, and why.
    Periodic(Fallback),
}

/// Why a heartbeat falls back to the periodic stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Not decided yet: the directory's watch is being set up.
    Pending,
    /// inotify itself is unavailable (no instance).
    Unavailable,
    /// A network or FUSE filesystem (its kind).
    Filesystem(&'static str),
    /// The inotify watch limit (fs.inotify.max_user_watches) is reached.
    WatchLimit,
    /// The directory does not exist (yet); tried again when the file is seen.
    NoDirectory,
    /// The directory was removed, moved or unmounted while watched.
    DirectoryGone,
    /// Another error from statfs or inotify_add_watch.
    Error(nix::errno::Errno),
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Pending => f.write_str("watch being set up"),
            Fallback::Unavailable => f.write_str("inotify unavailable"),
            Fallback::Filesystem(kind) => write!(f, "{kind} filesystem"),
            Fallback::WatchLimit => f.write_str("inotify watch limit reached"),
            Fallback::NoDirectory => f.write_str("directory does not exist"),
            Fallback::DirectoryGone => f.write_str("directory went away"),
            Fallback::Error(e) => write!(f, "cannot watch: {}", e.desc()),
        }
    }
}

/// How long an event-driven heartbeat that fails (stale, missing) goes
/// without a stat: its events say when it comes back; this is the safety
/// net for an event no queue overflow reported (a mount over the
/// directory, a symlinked parent swapped), so that a job beating again is
/// seen within a minute, long before a ladder reboots for it.
pub const EVENT_IDLE_LOOK: Duration = Duration::from_secs(60);

impl Heartbeat {
    /// Starts watching at `now`: the file counts as fresh at that moment.
    pub fn new(spec: &HeartbeatSpec, now: Instant) -> Heartbeat {
        Heartbeat {
            max_age: spec.max_age,
            interval: spec.check_interval,
            seen: None,
            changed_at: now,
            mode: Mode::Periodic(Fallback::Pending),
            adopt: false,
            look: false,
            looked: false,
        }
    }

    /// An inotify event for the file: `beat` for a touch, a write, a
    /// rename over it or a create (a beat, counted now, no stat); else (a
    /// delete, a move away) a stat is wanted. Returns the verdict of a beat.
    pub fn event(&mut self, beat: bool, now: Instant) -> Option<Result<(), crate::health::Cause>> {
        if self.mode != Mode::Events {
            return None;
        }
        if beat {
            self.changed_at = now;
            self.adopt = true;
            Some(Ok(()))
        } else {
            self.look = true;
            None
        }
    }

    /// When it is stale if nothing changes.
    pub fn deadline(&self) -> Instant {
        self.changed_at + self.max_age
    }

    /// Events may have been lost (queue overflow, watch gone): the next
    /// stat decides alone, and comes soon.
    pub fn rescan(&mut self) {
        self.adopt = false;
        self.look = true;
    }

    /// Whether an event asked for a stat; clears the request.
    pub fn take_look(&mut self) -> bool {
        std::mem::take(&mut self.look)
    }

    /// A check comes due at `now`: `None` to stat, or (event-driven, no
    /// stat asked for, deadline not reached) when to come back instead.
    pub fn postpone(&mut self, now: Instant) -> Option<Instant> {
        if self.mode != Mode::Events || !self.looked || std::mem::take(&mut self.look) {
            return None;
        }
        let deadline = self.changed_at + self.max_age;
        (deadline > now).then_some(deadline)
    }

    /// Judges a stat made at `now`. Returns the verdict and when to look again.
    pub fn observe(&mut self, outcome: Outcome, now: Instant) -> (Result<(), Cause>, Instant) {
        self.looked = true;
        let verdict = match outcome {
            Outcome::Found(stamp) => {
                if self.seen != Some(stamp) {
                    self.seen = Some(stamp);
                    // A stamp an event already counted is not a new beat.
                    if !(self.adopt && self.mode == Mode::Events) {
                        self.changed_at = now;
                    }
                }
                self.adopt = false;
                let unchanged = now.saturating_duration_since(self.changed_at);
                if unchanged >= self.max_age {
                    Err(Cause::Stale {
                        unchanged,
                        max_age: self.max_age,
                    })
                } else {
                    Ok(())
                }
            }
            Outcome::Missing => Err(Cause::Missing),
            Outcome::Unreachable(e) => Err(Cause::Unreachable(e)),
            Outcome::Unreadable(e) => Err(Cause::Unreadable(e)),
        };
        let next = match verdict {
            // Nothing says when these end: look every interval.
            Err(Cause::Unreachable(_) | Cause::Unreadable(_)) => now + self.interval,
            _ => self.next_check(now),
        };
        (verdict, next)
    }

    /// The next look: one interval on, but never later than the deadline,
    /// so staleness is seen when it begins.
    fn next_check(&self, now: Instant) -> Instant {
        let deadline = self.changed_at + self.max_age;
        if self.mode == Mode::Events {
            // Events say when it changes: the one look is at the deadline;
            // past it (stale, missing), only the safety net.
            return if deadline > now {
                deadline
            } else {
                now + EVENT_IDLE_LOOK
            };
        }
        let regular = now + self.interval;
        if deadline > now && deadline < regular {
            deadline
        } else {
            regular
        }
    }
}

/// A stat that found the file with modification time `mtime`, for tests.
#[cfg(test)]
pub(crate) fn found(mtime: i64) -> Outcome {
    Outcome::Found(Stamp {
        mtime_sec: mtime,
        mtime_nsec: 0,
        inode: 1,
        device: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec() -> HeartbeatSpec {
        HeartbeatSpec {
            file: PathBuf::from("/run/x"),
            max_age: Duration::from_secs(10),
            check_interval: Duration::from_secs(1),
        }
    }

    use super::found;

    #[test]
    fn age_counts_from_when_the_change_was_seen() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(&spec(), t0);
        let s = Duration::from_secs;
        assert_eq!(hb.observe(found(5), t0).0, Ok(()));
        // Unchanged for 9.5 s: fine; the next look is at the deadline.
        let (v, next) = hb.observe(found(5), t0 + Duration::from_millis(9500));
        assert_eq!(v, Ok(()));
        assert_eq!(next, t0 + s(10));
        let (v, _) = hb.observe(found(5), t0 + s(10));
        assert!(matches!(v, Err(Cause::Stale { .. })));
        // Touched: fresh again, counted from this sight.
        assert_eq!(hb.observe(found(6), t0 + s(12)).0, Ok(()));
        assert_eq!(hb.observe(found(6), t0 + s(21)).0, Ok(()));
        assert!(hb.observe(found(6), t0 + s(22)).0.is_err());
    }

    #[test]
    fn wall_clock_values_do_not_matter() {
        // An mtime from 1970 or from the far future is just a value that
        // changed; only its change counts.
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(&spec(), t0);
        assert_eq!(hb.observe(found(0), t0).0, Ok(()));
        assert_eq!(
            hb.observe(found(4_000_000_000), t0 + Duration::from_secs(9))
                .0,
            Ok(())
        );
        assert_eq!(
            hb.observe(found(4_000_000_000), t0 + Duration::from_secs(18))
                .0,
            Ok(())
        );
    }

    #[test]
    fn missing_and_unreadable_are_distinct() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(&spec(), t0);
        assert_eq!(hb.observe(Outcome::Missing, t0).0, Err(Cause::Missing));
        let e = nix::errno::Errno::EACCES;
        assert_eq!(
            hb.observe(Outcome::Unreadable(e), t0).0,
            Err(Cause::Unreadable(e))
        );
        // A file that comes back after a while counts as a change.
        assert_eq!(hb.observe(found(1), t0 + Duration::from_secs(30)).0, Ok(()));
    }

    #[test]
    fn events_beat_without_a_stat_and_the_deadline_stat_decides() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(&spec(), t0);
        // The first stat comes before anything is postponed.
        hb.mode = Mode::Events;
        assert_eq!(hb.postpone(t0), None);
        let (v, next) = hb.observe(found(5), t0);
        assert_eq!(v, Ok(()));
        assert_eq!(
            next,
            t0 + s(10),
            "event-driven: the one look is at the deadline"
        );
        assert_eq!(hb.postpone(t0 + s(1)), Some(t0 + s(10)));
        // A beat at 4 s: the deadline moves, no stat.
        assert_eq!(hb.event(true, t0 + s(4)), Some(Ok(())));
        assert_eq!(hb.postpone(t0 + s(10)), Some(t0 + s(14)));
        // The deadline stat finds the stamp that beat left: already counted.
        let (v, _) = hb.observe(found(6), t0 + s(14));
        assert!(matches!(v, Err(Cause::Stale { .. })), "{v:?}");
        // Stale: no look until an event (the safety net is a minute away).
        let (_, next) = hb.observe(found(6), t0 + s(15));
        assert_eq!(next, t0 + s(15) + EVENT_IDLE_LOOK);
    }

    #[test]
    fn a_change_no_event_reported_is_a_beat_at_the_stat_that_finds_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(&spec(), t0);
        hb.mode = Mode::Events;
        assert_eq!(hb.observe(found(5), t0).0, Ok(()));
        // An event, then a change whose event was lost (an overflow):
        // the rescan makes the next stat decide alone.
        assert_eq!(hb.event(true, t0 + s(2)), Some(Ok(())));
        hb.rescan();
        assert_eq!(hb.postpone(t0 + s(3)), None, "a rescan asks for a stat");
        let (v, next) = hb.observe(found(7), t0 + s(3));
        assert_eq!(v, Ok(()));
        assert_eq!(
            next,
            t0 + s(13),
            "the change counts from the stat that saw it"
        );
        // A delete asks for a stat; the answer says missing.
        assert_eq!(hb.event(false, t0 + s(4)), None);
        assert_eq!(hb.postpone(t0 + s(4)), None);
        assert_eq!(
            hb.observe(Outcome::Missing, t0 + s(4)).0,
            Err(Cause::Missing)
        );
        // Events are ignored on the periodic stat.
        hb.mode = Mode::Periodic(Fallback::WatchLimit);
        assert_eq!(hb.event(true, t0 + s(5)), None);
        assert_eq!(hb.postpone(t0 + s(5)), None);
    }
}
