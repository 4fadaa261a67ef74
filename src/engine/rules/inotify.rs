//! Event-driven heartbeats: what the shell's inotify watches tell the
//! engine. The shell owns the descriptor and says, per rule, whether its
//! directory is watched (`Event::HeartbeatMode`); an event for the file
//! is a beat or asks for a stat (`Event::FileChanged`); a queue overflow
//! asks every event-driven rule for a stat (`Event::Rescan`). The stat at
//! the deadline decides staleness: a lost event can delay it, never cause it.

use super::{Check, Probe, SubjectRef};
use crate::engine::{Engine, Now, RuleId};
use crate::heartbeat::Mode;
use std::ffi::CStr;
use std::time::Instant;

impl Engine {
    /// A check comes due: an event-driven heartbeat whose deadline has not
    /// come yet is not looked at.
    pub(super) fn postponed(&mut self, index: usize, now: Now) -> Option<Instant> {
        match &mut self.rules[index].check {
            Check::Heartbeat(hb) => hb.postpone(now.mono),
            _ => None,
        }
    }

    /// The shell watches the rule's directory, or falls back.
    pub(crate) fn heartbeat_mode(&mut self, index: usize, mode: Mode, now: Now) {
        let w = &mut self.rules[index];
        let Check::Heartbeat(hb) = &mut w.check else {
            return;
        };
        let was = hb.mode;
        hb.mode = mode;
        self.dirty |= was != mode;
        if was == Mode::Events && mode != Mode::Events {
            // Events may have been missed: look now, and every interval on.
            hb.rescan();
            self.look_soon(index, now);
        }
    }

    /// An inotify event for the rule's file.
    pub(crate) fn file_changed(&mut self, index: usize, beat: bool, now: Now) {
        let Check::Heartbeat(hb) = &mut self.rules[index].check else {
            return;
        };
        match hb.event(beat, now.mono) {
            Some(verdict) => {
                let deadline = hb.deadline();
                if let Probe::Due(at) = self.rules[index].probe
                    && at > deadline
                {
                    // It was failing, its one look far off: the deadline
                    // of this beat comes first.
                    self.schedule_check(index, deadline);
                }
                if !self.rules[index]
                    .health
                    .same_kind(&crate::health::Health::Healthy)
                {
                    self.judge(index, verdict, now);
                }
            }
            None if !beat && hb.mode == Mode::Events => self.look_soon(index, now),
            None => {}
        }
    }

    /// Events were lost (IN_Q_OVERFLOW): every event-driven heartbeat is
    /// looked at once, soon; its stat decides alone.
    pub(crate) fn rescan(&mut self, now: Now) -> usize {
        let mut n = 0;
        for index in 0..self.rules.len() {
            if let Check::Heartbeat(hb) = &mut self.rules[index].check
                && hb.mode == Mode::Events
            {
                hb.rescan();
                n += 1;
                self.look_soon(index, now);
            }
        }
        n
    }

    /// A stat now, unless one is under way (its answer then sees the
    /// request and looks again at once).
    fn look_soon(&mut self, index: usize, now: Now) {
        if let Probe::Due(_) = self.rules[index].probe {
            self.schedule_check(index, now.mono);
        }
    }

    /// Every heartbeat rule's file and where the rule is, for
    /// `Event::FileChanged`.
    pub fn heartbeat_places(&self) -> impl Iterator<Item = (RuleId, usize, &CStr)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(at, w)| match (&w.subject, &w.check) {
                (SubjectRef::File(path), Check::Heartbeat(_)) => Some((w.id, at, path.as_c_str())),
                _ => None,
            })
    }

    /// The index of rule `id`, which was at `at`: reloads move rules.
    pub(crate) fn place(&self, id: RuleId, at: usize) -> Option<usize> {
        match self.rules.get(at) {
            Some(w) if w.id == id => Some(at),
            _ => self.ids.get(&id).copied(),
        }
    }

    /// Every heartbeat rule's file and how its changes are seen.
    pub fn heartbeat_files(&self) -> impl Iterator<Item = (RuleId, &CStr, Mode)> {
        self.rules
            .iter()
            .filter_map(|w| match (&w.subject, &w.check) {
                (SubjectRef::File(path), Check::Heartbeat(hb)) => {
                    Some((w.id, path.as_c_str(), hb.mode))
                }
                _ => None,
            })
    }
}
