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
}

impl Heartbeat {
    /// Starts watching at `now`: the file counts as fresh at that moment.
    pub fn new(spec: &HeartbeatSpec, now: Instant) -> Heartbeat {
        Heartbeat {
            max_age: spec.max_age,
            interval: spec.check_interval,
            seen: None,
            changed_at: now,
        }
    }

    /// Judges a stat made at `now`. Returns the verdict and when to look again.
    pub fn observe(&mut self, outcome: Outcome, now: Instant) -> (Result<(), Cause>, Instant) {
        let verdict = match outcome {
            Outcome::Found(stamp) => {
                if self.seen != Some(stamp) {
                    self.seen = Some(stamp);
                    self.changed_at = now;
                }
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
        (verdict, self.next_check(now))
    }

    /// The next look: one interval on, but never later than the deadline,
    /// so staleness is seen when it begins.
    fn next_check(&self, now: Instant) -> Instant {
        let regular = now + self.interval;
        let deadline = self.changed_at + self.max_age;
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
}
