//! How many looks the probe holds at once. At start (and after a reload or
//! an inotify overflow) every rule is due together; handed to the probe at
//! once, n requests, n answers and n `StartCheck` commands would fill the
//! queues to n entries, and that memory would stay touched for good (about
//! 320 bytes a rule). At most [`MAX_LOOKS`] looks are in flight; the rules
//! due beyond that wait in a queue of indices (8 bytes a rule) and are
//! handed over as answers come back, in the order they came due. A look's
//! timeout starts when it is handed over, not while it waits.

use super::Probe;
use crate::engine::{Engine, Now};

/// Looks in flight at most. The workers (two, more while some hang) take
/// one request at a time: a few hundred keep them busy.
pub(crate) const MAX_LOOKS: usize = 256;

/// The bound in force: [`MAX_LOOKS`], or a test's.
fn limit() -> usize {
    #[cfg(feature = "test-hooks")]
    return LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "test-hooks"))]
    MAX_LOOKS
}

#[cfg(feature = "test-hooks")]
static LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(MAX_LOOKS);

/// Lowers the bound, so that a test with few rules has looks waiting
/// (tests/zero_alloc.rs: the waiting looks allocate nothing either).
#[cfg(feature = "test-hooks")]
pub fn set_look_limit_for_tests(n: usize) {
    LIMIT.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

impl Engine {
    /// A look is due: it starts now, or waits for room.
    pub(super) fn look_or_wait(&mut self, index: usize, seq: u32, now: Now) {
        if self.looks < limit() {
            self.start_check(index, now);
        } else {
            self.waiting.push_back((index as u32, seq));
        }
    }

    /// A look answered or timed out: its room is free.
    pub(super) fn look_done(&mut self) {
        self.looks = self.looks.saturating_sub(1);
    }

    /// Starts waiting looks while there is room. An entry is void once its
    /// rule was scheduled again (its sequence number moved on).
    pub(super) fn start_waiting(&mut self, now: Now) {
        while self.looks < limit() {
            let Some((index, seq)) = self.waiting.pop_front() else {
                break;
            };
            let index = index as usize;
            let w = &self.rules[index];
            if w.seq == seq && matches!(w.probe, Probe::Due(_)) {
                self.start_check(index, now);
            }
        }
        crate::sys::memory::rewind(&mut self.waiting);
    }

    /// Whether a waiting look could start now.
    pub(crate) fn looks_waiting(&self) -> bool {
        self.looks < limit() && !self.waiting.is_empty()
    }

    /// After a reload: the looks in flight are those of the rules kept; the
    /// waiting ones are due again from the check heap.
    pub(super) fn count_looks(&mut self) {
        self.looks = self
            .rules
            .iter()
            .filter(|w| {
                matches!(w.probe, Probe::InFlight { .. })
                    && !matches!(w.check, super::Check::Command(_))
            })
            .count();
        self.waiting.clear();
        self.waiting.reserve(self.rules.len());
    }
}
