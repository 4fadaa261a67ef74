//! The inotify events of the heartbeat watches, as the loop takes them:
//! read in batches, handed to the engine as events.

use super::Daemon;
use super::watches::Note;
use crate::engine::{Event, Now};
use std::time::Duration;

/// How long the loop leaves the inotify descriptor alone after reading
/// it: the events of a burst of beats (a thousand files touched in a few
/// milliseconds) are read together, in a wake-up per batch, not one per
/// event. A beat read late is counted from when it was read, so this can
/// only postpone a staleness report, by at most this much; a beat after a
/// quiet moment is read at once.
pub(super) const EVENT_BATCH: Duration = Duration::from_millis(5);

impl Daemon {
    /// Reads the queued inotify events and hands them to the engine; after
    /// a read that found some, the descriptor rests for `EVENT_BATCH`.
    pub(super) fn read_events(&mut self, now: Now) {
        if self.watches.read(&mut self.notes) {
            self.events_resume = Some(now.mono + EVENT_BATCH);
            self.set_events_fd(None);
        }
        self.tell_notes(now);
    }

    /// Puts the inotify descriptor in its poll slot, or (`None`) leaves
    /// the slot for poll to skip.
    pub(super) fn set_events_fd(&mut self, fd: Option<i32>) {
        if let Some(slot) = self.events_slot {
            self.pollfds[slot].fd = fd.unwrap_or(-1);
        }
    }

    /// Hands the engine what the inotify watches saw.
    pub(super) fn tell_notes(&mut self, now: Now) {
        let mut notes = std::mem::take(&mut self.notes);
        for note in notes.drain(..) {
            let event = match note {
                Note::Mode(id, mode) => Event::HeartbeatMode(id, mode),
                Note::Changed { rule, at, beat } => Event::FileChanged { rule, at, beat },
                Note::Overflow => Event::Rescan,
            };
            self.engine.handle(event, now);
        }
        self.notes = notes;
        self.perform(now);
    }
}
