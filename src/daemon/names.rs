//! The heartbeat files' names, directory by directory, in one table that
//! an inotify event's (directory, name) is looked up in: a hash over the
//! name's bytes and a probe or two into one flat array, the names
//! themselves end to end in one buffer. Every beat is such a look-up, so
//! it neither allocates nor chases a pointer per name compared (as a
//! binary search over boxed names did, a cache miss at each step).

use crate::engine::RuleId;
use std::ops::Range;

/// One file name of a directory, and its rule.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub rule: RuleId,
    /// Where the rule is in the engine (`Event::FileChanged`).
    place: u32,
    hash: u32,
    dir: u32,
    /// Where its bytes are in `NameTable::bytes`.
    at: u32,
    len: u32,
    /// The batch of events that last named it, and whether that event
    /// was a beat (`NameTable::mark`).
    batch: u32,
    beat: bool,
}

#[derive(Default)]
pub struct NameTable {
    /// Directory by directory, in the order they were added.
    entries: Vec<Entry>,
    bytes: Vec<u8>,
    /// Open addressing, linear probing: an index into `entries` plus one,
    /// 0 for an empty slot. A power of two, at most half full.
    slots: Vec<u32>,
}

impl NameTable {
    /// A table for `names`, given directory by directory (each
    /// directory's names in one run, sorted, the directories numbered
    /// from 0 in order); each directory's range of entries.
    pub fn build<'a>(
        names: impl Iterator<Item = (usize, &'a [u8], RuleId, usize)>,
    ) -> (NameTable, Vec<Range<usize>>) {
        let mut t = NameTable::default();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for (dir, name, rule, place) in names {
            while ranges.len() <= dir {
                let at = t.entries.len();
                ranges.push(at..at);
            }
            ranges[dir].end = t.entries.len() + 1;
            t.entries.push(Entry {
                rule,
                place: place as u32,
                hash: hash(dir, name),
                dir: dir as u32,
                at: t.bytes.len() as u32,
                len: name.len() as u32,
                batch: 0,
                beat: false,
            });
            t.bytes.extend_from_slice(name);
        }
        let size = (t.entries.len() * 2).next_power_of_two().max(16);
        t.slots = vec![0; size];
        let mask = size - 1;
        for (i, e) in t.entries.iter().enumerate() {
            let mut s = e.hash as usize & mask;
            while t.slots[s] != 0 {
                s = (s + 1) & mask;
            }
            t.slots[s] = i as u32 + 1;
        }
        (t, ranges)
    }

    /// The entries of a directory's range.
    pub fn of(&self, range: Range<usize>) -> &[Entry] {
        &self.entries[range]
    }

    /// The entries of `name` in directory `dir`: one, or more where
    /// several rules watch the same file; empty when none does.
    pub fn find(&self, dir: usize, name: &[u8]) -> Range<usize> {
        let h = hash(dir, name);
        let is = |e: &Entry| e.hash == h && e.dir as usize == dir && self.name(e) == name;
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return 0..0;
        };
        let mut s = h as usize & mask;
        loop {
            let Some(i) = self.slots[s].checked_sub(1) else {
                return 0..0;
            };
            let i = i as usize;
            if is(&self.entries[i]) {
                // Entries are inserted in order: the first one probed is
                // the first of its name, the others follow it (sorted).
                let n = self.entries[i..].iter().take_while(|e| is(e)).count();
                return i..i + n;
            }
            s = (s + 1) & mask;
        }
    }

    fn name(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.at as usize..(e.at + e.len) as usize]
    }

    /// Entry `i` was named in event batch `batch` (never 0), by a beat or
    /// not; whether it was already named by a beat in that batch, which
    /// says nothing new (the same touch's next event, or a second touch
    /// read at the same moment).
    pub fn mark(&mut self, i: usize, batch: u32, beat: bool) -> bool {
        let e = &mut self.entries[i];
        let repeat = beat && e.batch == batch && e.beat;
        e.batch = batch;
        e.beat = beat;
        repeat
    }

    /// The rule of entry `i`, and where it is in the engine.
    pub fn rule(&self, i: usize) -> (RuleId, usize) {
        let e = &self.entries[i];
        (e.rule, e.place as usize)
    }
}

/// FNV-1a over the name, mixed with the directory's number.
fn hash(dir: usize, name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5 ^ (dir as u32).wrapping_mul(0x9e37_79b1);
    for &b in name {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_their_own_directory_only() {
        let names: Vec<(usize, Vec<u8>, RuleId)> = (0..300)
            .map(|i| {
                (
                    i / 100,
                    format!("beat-{}", i % 150).into_bytes(),
                    i as RuleId,
                )
            })
            .collect();
        let (mut t, ranges) =
            NameTable::build(names.iter().map(|(d, n, r)| (*d, n.as_slice(), *r, 0)));
        assert_eq!(ranges, vec![0..100, 100..200, 200..300]);
        for (d, n, r) in &names {
            let found = t.find(*d, n);
            assert_eq!(found.len(), 1);
            assert_eq!(t.rule(found.start).0, *r);
        }
        assert!(t.find(0, b"beat-120").is_empty());
        assert!(t.find(2, b"beat-10").is_empty());
        assert!(t.find(3, b"beat-1").is_empty());
        assert!(t.find(0, b"").is_empty());
        assert!(t.of(ranges[1].clone()).iter().all(|e| e.dir == 1));
        // A beat repeated in one batch says nothing new; a delete between
        // two beats makes the second one new again.
        let i = t.find(0, b"beat-1").start;
        assert!(!t.mark(i, 1, true));
        assert!(t.mark(i, 1, true));
        assert!(!t.mark(i, 1, false));
        assert!(!t.mark(i, 1, true));
        assert!(!t.mark(i, 2, true));
        let (empty, ranges) = NameTable::build(std::iter::empty());
        assert!(ranges.is_empty());
        assert!(empty.find(0, b"x").is_empty());
    }

    #[test]
    fn rules_that_watch_the_same_file_all_hear_of_it() {
        let names: [(usize, &[u8], RuleId, usize); 5] = [
            (0, b"a", 1, 0),
            (0, b"b", 2, 1),
            (0, b"b", 3, 2),
            (0, b"b", 4, 3),
            (1, b"b", 5, 4),
        ];
        let (t, _) = NameTable::build(names.into_iter());
        let found = t.find(0, b"b");
        let rules: Vec<(RuleId, usize)> = found.map(|i| t.rule(i)).collect();
        assert_eq!(rules, vec![(2, 1), (3, 2), (4, 3)]);
        assert_eq!(t.find(1, b"b").len(), 1);
    }
}
