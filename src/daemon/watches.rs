//! The shell's side of event-driven heartbeats: one inotify watch per
//! heartbeat directory, shared by the rules whose files are in it, and the
//! table that maps an event's (watch, name) to a rule without allocating
//! (`names`: a hash over the name's bytes).
//!
//! Whether a directory can be watched is decided off the loop, by a probe
//! worker (`Subject::WatchDir`: statfs, then inotify_add_watch), because
//! statfs can hang on a dead NFS mount. Until it answers, and for good
//! where it cannot be trusted, the directory's rules keep the periodic
//! stat. A directory that does not exist yet, or that went away, is tried
//! again when one of its files is found by a stat, and at every reload.

use super::names::NameTable;
use crate::engine::{Fallback, HeartbeatMode, RuleId};
use crate::probe::{Finding, Prober, Subject};
use crate::sys::inotify::{self, EventBuf, Inotify};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::ops::Range;
use std::sync::Arc;

/// Tickets of directory watches: apart from rule identities.
pub const WATCH_TICKET: u64 = 1 << 63;

/// What the watches tell the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Mode(RuleId, HeartbeatMode),
    Changed { rule: RuleId, at: usize, beat: bool },
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A worker is deciding; its answer comes with this serial.
    Pending(u32),
    Watched(i32),
    Fallback(Fallback),
}

/// A file's name in its directory, its rule and where the rule is in the
/// engine.
type Name<'a> = (&'a [u8], RuleId, usize);

struct Dir {
    path: Arc<CString>,
    state: State,
    /// Its rules' entries in `Watches::names`.
    names: Range<usize>,
}

pub struct Watches {
    ino: Option<Arc<Inotify>>,
    buf: Box<EventBuf>,
    dirs: Vec<Dir>,
    /// Every directory's file names and their rules.
    names: NameTable,
    /// Counts reads of events: a beat repeated within one is dropped.
    batch: u32,
    /// (watch descriptor, directory index), sorted.
    by_wd: Vec<(i32, usize)>,
    /// `by_wd` is to be rebuilt before it is next read: answers that
    /// watch a directory come in by the thousand after a start, and
    /// sorting again after each was quadratic.
    by_wd_stale: bool,
    /// The directory each pending request's serial is for.
    asked: HashMap<u32, usize>,
    rule_dir: HashMap<RuleId, usize>,
    serial: u32,
    pending: usize,
    #[cfg(feature = "test-hooks")]
    reads: u64,
}

impl Watches {
    pub fn new() -> Watches {
        let ino = match Inotify::new() {
            Ok(i) => Some(Arc::new(i)),
            Err(e) => {
                log::warn!(
                    "inotify unavailable ({}): every heartbeat uses the periodic stat",
                    e.desc()
                );
                None
            }
        };
        Watches {
            ino,
            buf: Box::default(),
            dirs: Vec::new(),
            names: NameTable::default(),
            batch: 0,
            by_wd: Vec::new(),
            by_wd_stale: false,
            asked: HashMap::new(),
            rule_dir: HashMap::new(),
            serial: 0,
            pending: 0,
            #[cfg(feature = "test-hooks")]
            reads: 0,
        }
    }

    /// How many heartbeat directories there are.
    pub fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// The descriptor to poll, if inotify is there.
    pub fn fd(&self) -> Option<i32> {
        self.ino.as_ref().map(|i| i.raw_fd())
    }

    /// After a start or a reload: a directory for each heartbeat rule's
    /// file; kept directories keep their watch, new ones are asked for,
    /// gone ones lose theirs. `notes` gets every rule's mode.
    pub fn install<'a>(
        &mut self,
        files: impl Iterator<Item = (RuleId, usize, &'a CStr)>,
        prober: &mut Prober,
        notes: &mut Vec<Note>,
    ) {
        // Each directory's names. Rules come in configuration order, and
        // neighbours mostly share a directory: the last one is compared
        // before the map is asked (at 10 000 rules, hashing every file's
        // directory was a tenth of the start-up after the parsing).
        let mut by_path: HashMap<Vec<u8>, Vec<Name>> = HashMap::new();
        let mut last: Option<(&[u8], Vec<Name>)> = None;
        let mut n_rules = 0;
        for (id, at, file) in files {
            let bytes = file.to_bytes();
            let (dir, name) = match bytes.iter().rposition(|&b| b == b'/') {
                Some(0) => (&b"/"[..], &bytes[1..]),
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (&b"."[..], bytes),
            };
            match &mut last {
                Some((last_dir, names)) if *last_dir == dir => names.push((name, id, at)),
                _ => {
                    if let Some((last_dir, names)) = last.take() {
                        by_path.entry(last_dir.to_vec()).or_default().extend(names);
                    }
                    last = Some((dir, vec![(name, id, at)]));
                }
            }
            n_rules += 1;
        }
        if let Some((last_dir, names)) = last {
            by_path.entry(last_dir.to_vec()).or_default().extend(names);
        }
        let mut old: HashMap<Vec<u8>, Dir> = self
            .dirs
            .drain(..)
            .map(|d| (d.path.to_bytes().to_vec(), d))
            .collect();
        let mut dirs = Vec::with_capacity(by_path.len());
        let mut paths: Vec<_> = by_path.into_iter().collect();
        paths.sort();
        for (_, names) in &mut paths {
            names.sort();
        }
        let (table, ranges) = NameTable::build(
            paths
                .iter()
                .enumerate()
                .flat_map(|(i, (_, names))| names.iter().map(move |&(n, id, at)| (i, n, id, at))),
        );
        self.names = table;
        for ((path, _), names) in paths.into_iter().zip(ranges) {
            let state = match old.remove(&path) {
                Some(Dir {
                    state: s @ (State::Watched(_) | State::Pending(_)),
                    ..
                }) => s,
                _ => State::Pending(0),
            };
            dirs.push(Dir {
                path: Arc::new(CString::new(path).expect("paths have no NUL")),
                state,
                names,
            });
        }
        let ino = self.ino.clone();
        if !old.is_empty() {
            let kept: HashSet<i32> = dirs.iter().filter_map(|d| watch_of(d.state)).collect();
            for gone in old.into_values() {
                if let (Some(wd), Some(ino)) = (watch_of(gone.state), &ino)
                    && !kept.contains(&wd)
                {
                    ino.rm_watch(wd);
                }
            }
        }
        self.dirs = dirs;
        self.pending = 0;
        self.asked.clear();
        // Room for a request per directory and a watch per directory, so
        // that asking again and answering allocate nothing.
        self.asked.reserve(self.dirs.len());
        self.by_wd.reserve(self.dirs.len());
        for index in 0..self.dirs.len() {
            match self.dirs[index].state {
                State::Pending(serial) if serial != 0 => {
                    self.pending += 1;
                    self.asked.insert(serial, index);
                }
                State::Pending(_) => self.ask(index, prober),
                _ => {}
            }
        }
        self.reindex();
        // Sized first: collected from a flat_map it would grow by doubling.
        self.rule_dir = HashMap::with_capacity(n_rules);
        self.rule_dir
            .extend(self.dirs.iter().enumerate().flat_map(|(i, d)| {
                self.names
                    .of(d.names.clone())
                    .iter()
                    .map(move |e| (e.rule, i))
            }));
        notes.reserve(n_rules.max(1024) + 16);
        for d in &self.dirs {
            let mode = mode_of(d.state);
            for e in self.names.of(d.names.clone()) {
                notes.push(Note::Mode(e.rule, mode));
            }
        }
        if self.pending == 0 {
            self.summary();
        }
    }

    fn ask(&mut self, index: usize, prober: &mut Prober) {
        let Some(ino) = &self.ino else {
            self.dirs[index].state = State::Fallback(Fallback::Unavailable);
            return;
        };
        self.serial = self.serial.wrapping_add(1).max(1);
        self.dirs[index].state = State::Pending(self.serial);
        self.asked.insert(self.serial, index);
        self.pending += 1;
        prober.queue(
            WATCH_TICKET | u64::from(self.serial),
            Subject::WatchDir(Arc::clone(ino), Arc::clone(&self.dirs[index].path)),
        );
    }

    fn reindex(&mut self) {
        self.by_wd_stale = false;
        self.by_wd.clear();
        for (i, d) in self.dirs.iter().enumerate() {
            if let State::Watched(wd) = d.state {
                self.by_wd.push((wd, i));
            }
        }
        self.by_wd.sort_unstable();
    }

    /// A worker answered a directory's watch request.
    pub fn answered(&mut self, ticket: u64, finding: Finding, notes: &mut Vec<Note>) {
        let serial = (ticket & !WATCH_TICKET) as u32;
        let Finding::Watch(result) = finding else {
            return;
        };
        let asked = self.asked.remove(&serial);
        let Some(index) = asked.filter(|&i| {
            self.dirs
                .get(i)
                .is_some_and(|d| d.state == State::Pending(serial))
        }) else {
            // Its directory went in a reload meanwhile.
            if let Ok(wd) = result
                && !self.is_watched(wd)
                && let Some(ino) = &self.ino
            {
                ino.rm_watch(wd);
            }
            return;
        };
        self.pending = self.pending.saturating_sub(1);
        let dir = &mut self.dirs[index];
        dir.state = match result {
            Ok(wd) => State::Watched(wd),
            Err(why) => State::Fallback(why),
        };
        let mode = mode_of(dir.state);
        for e in self.names.of(dir.names.clone()) {
            notes.push(Note::Mode(e.rule, mode));
        }
        if let State::Watched(_) = dir.state {
            self.by_wd_stale = true;
        }
        if self.pending == 0 {
            self.summary();
        }
    }

    /// Whether a directory holds the watch `wd`.
    fn is_watched(&mut self, wd: i32) -> bool {
        if self.by_wd_stale {
            self.reindex();
        }
        let at = self.by_wd.partition_point(|&(w, _)| w < wd);
        self.by_wd.get(at).is_some_and(|&(w, _)| w == wd)
    }

    /// A rule's stat answered: a file found in a directory that was not
    /// there is the moment to watch it again.
    pub fn stat_answered(&mut self, rule: RuleId, finding: &Finding, prober: &mut Prober) {
        let Finding::File(crate::engine::FileOutcome::Found(_)) = finding else {
            return;
        };
        let Some(&index) = self.rule_dir.get(&rule) else {
            return;
        };
        if let State::Fallback(Fallback::NoDirectory | Fallback::DirectoryGone) =
            self.dirs[index].state
        {
            self.ask(index, prober);
        }
    }

    /// Reads what the kernel queued and turns it into notes; whether
    /// there was anything.
    pub fn read(&mut self, notes: &mut Vec<Note>) -> bool {
        let Some(ino) = self.ino.clone() else {
            return false;
        };
        if self.by_wd_stale {
            self.reindex();
        }
        match ino.read(&mut self.buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => {
                log::error!("reading inotify events: {}", e.desc());
                return false;
            }
        }
        #[cfg(feature = "test-hooks")]
        {
            self.reads += 1;
            if test_lose_read(self.reads) {
                // As the kernel does: the events are lost, an overflow says so.
                notes.push(Note::Overflow);
                return true;
            }
        }
        self.batch = self.batch.wrapping_add(1).max(1);
        let mut gone = false;
        for ev in self.buf.events() {
            if ev.mask & inotify::IN_Q_OVERFLOW != 0 {
                notes.push(Note::Overflow);
                continue;
            }
            let start = self.by_wd.partition_point(|&(wd, _)| wd < ev.wd);
            for &(wd, index) in &self.by_wd[start..] {
                if wd != ev.wd {
                    break;
                }
                let dir = &mut self.dirs[index];
                let lost = inotify::IN_IGNORED
                    | inotify::IN_DELETE_SELF
                    | inotify::IN_MOVE_SELF
                    | inotify::IN_UNMOUNT;
                if ev.mask & lost != 0 {
                    if ev.mask & inotify::IN_MOVE_SELF != 0 {
                        // Still watched, under another name: not ours.
                        ino.rm_watch(wd);
                    }
                    if dir.state != State::Fallback(Fallback::DirectoryGone) {
                        dir.state = State::Fallback(Fallback::DirectoryGone);
                        gone = true;
                        let mode = HeartbeatMode::Periodic(Fallback::DirectoryGone);
                        for e in self.names.of(dir.names.clone()) {
                            notes.push(Note::Mode(e.rule, mode));
                        }
                    }
                    continue;
                }
                if ev.name.is_empty() || ev.mask & inotify::IN_ISDIR != 0 {
                    continue;
                }
                let beat = ev.mask
                    & (inotify::IN_ATTRIB
                        | inotify::IN_MODIFY
                        | inotify::IN_CLOSE_WRITE
                        | inotify::IN_MOVED_TO
                        | inotify::IN_CREATE)
                    != 0;
                for i in self.names.find(index, ev.name) {
                    // The same touch's next event (attrib, close) is no news.
                    if !self.names.mark(i, self.batch, beat) {
                        let (rule, at) = self.names.rule(i);
                        notes.push(Note::Changed { rule, at, beat });
                    }
                }
            }
        }
        if gone {
            self.reindex();
        }
        true
    }

    /// Which rules are event-driven, which fall back and why.
    fn summary(&self) {
        let mut events = 0;
        let mut reasons: Vec<(String, usize)> = Vec::new();
        for d in &self.dirs {
            match d.state {
                State::Watched(_) => events += d.names.len(),
                State::Pending(_) => {}
                State::Fallback(why) => {
                    let why = why.to_string();
                    match reasons.iter_mut().find(|(r, _)| *r == why) {
                        Some((_, n)) => *n += d.names.len(),
                        None => reasons.push((why, d.names.len())),
                    }
                }
            }
        }
        if events > 0 {
            log::info!(
                "heartbeats: {} seen by inotify events",
                crate::text::Count::of(events, "rule")
            );
        }
        for (why, n) in reasons {
            log::warn!(
                "heartbeats: {} on the periodic stat: {why}",
                crate::text::Count::of(n, "rule")
            );
        }
    }
}

fn watch_of(state: State) -> Option<i32> {
    match state {
        State::Watched(wd) => Some(wd),
        _ => None,
    }
}

fn mode_of(state: State) -> HeartbeatMode {
    match state {
        State::Watched(_) => HeartbeatMode::Events,
        State::Pending(_) => HeartbeatMode::Periodic(Fallback::Pending),
        State::Fallback(why) => HeartbeatMode::Periodic(why),
    }
}

/// `HEARTWATCH_TEST_MAX_WATCHES=N`: the (N+1)th directory watch and every
/// later one meet the watch limit, as with fs.inotify.max_user_watches.
#[cfg(feature = "test-hooks")]
pub fn test_watch_limit() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WATCHES: AtomicU64 = AtomicU64::new(0);
    let Some(max) = std::env::var("HEARTWATCH_TEST_MAX_WATCHES")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return false;
    };
    WATCHES.fetch_add(1, Ordering::Relaxed) >= max
}

/// `HEARTWATCH_TEST_LOSE_READ=N`: the Nth read of events and every 50th
/// after it lose their events and report an overflow.
#[cfg(feature = "test-hooks")]
fn test_lose_read(n: u64) -> bool {
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    match AT.get_or_init(|| {
        std::env::var("HEARTWATCH_TEST_LOSE_READ")
            .ok()
            .and_then(|s| s.parse().ok())
    }) {
        Some(at) => n >= *at && (n - at).is_multiple_of(50),
        None => false,
    }
}
