//! The reboot history: the last [`MAX_ENTRIES`] reboots heartwatch decided,
//! refused (past the budget) or found (a boot the watchdog reset), kept in
//! the state directory's `history` file across reboots. The engine holds
//! the entries and decides what is added (`Engine::history`); the shell
//! reads the file at start and writes it, atomically, on the engine's
//! `Command::SaveHistory` ([`HistoryFile`]).
//!
//! The file's first line is `heartwatch-history 1` (the format's version),
//! then one `entry` line per entry, oldest first, with tab-separated fields
//! escaped as in the status record, and a last line `end`, so a file cut
//! short is known:
//! `entry WALL\tBOOT-ID\tKIND\tRULE\tCAUSE\tSTEP`.

use crate::atomic::{Dir, DirError, Writer};
use crate::status::{escape, unescape};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Instant;

/// How many entries the history keeps; the oldest go first.
pub const MAX_ENTRIES: usize = 16;

/// The format's version, the first line's second word.
pub const FORMAT: u32 = 1;
const MAGIC: &str = "heartwatch-history";
const NAME: &str = "history";

/// What happened to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A rule's ladder reached `reboot` and heartwatch began the reboot.
    #[default]
    Reboot,
    /// A rule's ladder reached `reboot` past the budget: no reboot.
    Suppressed,
    /// At start, a device's boot status said the watchdog reset the host.
    WatchdogReset,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Reboot => "reboot",
            Kind::Suppressed => "suppressed",
            Kind::WatchdogReset => "watchdog-reset",
        }
    }

    fn from_word(word: &str) -> Option<Kind> {
        [Kind::Reboot, Kind::Suppressed, Kind::WatchdogReset]
            .into_iter()
            .find(|k| k.word() == word)
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Wall-clock seconds when it was decided or found (display only).
    pub wall: i64,
    /// The boot it happened in (for a watchdog reset: the boot it was
    /// found in, the one after the reset).
    pub boot_id: String,
    pub kind: Kind,
    /// The rule, its cause and its ladder's step; empty for a watchdog
    /// reset, whose `cause` is what the driver said.
    pub rule: String,
    pub cause: String,
    pub step: String,
}

impl Entry {
    /// Becomes a copy of `from`, keeping the allocations of its texts (a
    /// derived `clone_from` would allocate anew).
    pub fn copy_from(&mut self, from: &Entry) {
        self.wall = from.wall;
        self.boot_id.clone_from(&from.boot_id);
        self.kind = from.kind;
        self.rule.clone_from(&from.rule);
        self.cause.clone_from(&from.cause);
        self.step.clone_from(&from.step);
    }

    /// The entry's fields as a record line's value (after its key).
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(out, "{}\t", self.wall);
        escape(out, &self.boot_id);
        out.push(b'\t');
        out.extend_from_slice(self.kind.word().as_bytes());
        for text in [&self.rule, &self.cause, &self.step] {
            out.push(b'\t');
            escape(out, text);
        }
    }

    /// The inverse of [`Entry::write_fields`].
    pub fn read_fields(value: &str) -> Result<Entry, String> {
        let mut parts = value.split('\t');
        let mut next = || parts.next().ok_or("fewer than 6 tab-separated fields");
        let wall = next()?;
        let entry = Entry {
            wall: wall
                .parse()
                .map_err(|_| format!("not a number in range: {wall:?}"))?,
            boot_id: unescape(next()?)?,
            kind: {
                let word = next()?;
                Kind::from_word(word).ok_or_else(|| format!("unknown kind {word:?}"))?
            },
            rule: unescape(next()?)?,
            cause: unescape(next()?)?,
            step: unescape(next()?)?,
        };
        if parts.next().is_some() {
            return Err("more than 6 tab-separated fields".into());
        }
        Ok(entry)
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = crate::text::UtcTime(self.wall);
        match self.kind {
            Kind::Reboot => write!(
                f,
                "{at}  reboot      rule {}: {} ({})",
                self.rule, self.cause, self.step
            ),
            Kind::Suppressed => write!(
                f,
                "{at}  suppressed  rule {}: {} ({}): past the budget, no reboot",
                self.rule, self.cause, self.step
            ),
            Kind::WatchdogReset => write!(f, "{at}  watchdog    {}", self.cause),
        }
    }
}

/// The entries, oldest first, at most [`MAX_ENTRIES`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    entries: VecDeque<Entry>,
}

impl History {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> History {
        let mut history = History::default();
        for e in entries {
            history.push(e);
        }
        history
    }

    /// Adds `entry` as the newest, dropping the oldest past the bound.
    pub fn push(&mut self, entry: Entry) {
        if self.entries.len() == MAX_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter()
    }

    pub fn newest(&self) -> Option<&Entry> {
        self.entries.back()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's content.
    pub fn render(&self) -> Vec<u8> {
        let mut out = format!("{MAGIC} {FORMAT}\n").into_bytes();
        for e in &self.entries {
            out.extend_from_slice(b"entry ");
            e.write_fields(&mut out);
            out.push(b'\n');
        }
        out.extend_from_slice(b"end\n");
        out
    }

    /// Reads what [`History::render`] wrote; anything else is an error that
    /// says what is wrong. More than [`MAX_ENTRIES`] entries keep the newest.
    pub fn parse(bytes: &[u8]) -> Result<History, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "is not text (not valid UTF-8)")?;
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let first = lines.next().unwrap_or("");
        match first.split_once(' ') {
            Some((MAGIC, v)) if v == FORMAT.to_string() => {}
            Some((MAGIC, v)) => {
                return Err(format!(
                    "is in history format {v:?}; this heartwatch reads format {FORMAT}"
                ));
            }
            _ => return Err(format!("does not begin with `{MAGIC} {FORMAT}`")),
        }
        let mut history = History::default();
        let mut ended = false;
        for (i, line) in lines.enumerate() {
            let at = |why: String| format!("line {}: {why}", i + 2);
            if ended {
                return Err(at("text after the end line".into()));
            }
            if line == "end" {
                ended = true;
                continue;
            }
            let value = line
                .strip_prefix("entry ")
                .ok_or_else(|| at(format!("not an entry line: {line:?}")))?;
            history.push(Entry::read_fields(value).map_err(at)?);
        }
        if !ended {
            return Err("is cut short (no end line)".into());
        }
        Ok(history)
    }
}

/// The state directory's `history` file, written by a thread of its own
/// (see [`Writer`]), so that a state directory that does not answer never
/// holds up the loop.
pub struct HistoryFile {
    file: Writer,
}

/// A history file being opened: [`HistoryFile::opened`] waits for it.
pub struct Opening {
    file: Writer,
    read: Receiver<Result<History, DirError>>,
}

impl HistoryFile {
    /// Starts opening the state directory and reading what an earlier run
    /// left in `history`, without waiting for either.
    pub fn start(dir: &Path) -> std::io::Result<Opening> {
        let (file, read) = Writer::start(dir, NAME, read_history)?;
        Ok(Opening { file, read })
    }

    /// Hands the history to the writer. Errors are logged by the writer.
    pub fn save(&self, history: &History) {
        self.file.offer(&history.render());
    }

    /// Waits at most until `deadline` for the last save to be written
    /// (the orderly stop, never the loop).
    pub fn flush(&self, deadline: Instant) -> bool {
        self.file
            .flush(deadline.saturating_duration_since(Instant::now()))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Opening {
    /// The file and what it held, waiting at most until `deadline`. A
    /// directory that does not answer in time gives an empty history (what
    /// is written later reaches it if it answers).
    pub fn opened(self, deadline: Instant) -> Result<(HistoryFile, History), DirError> {
        let bound = deadline.saturating_duration_since(Instant::now());
        let history = match self.read.recv_timeout(bound) {
            Ok(read) => read?,
            Err(_) => {
                log::error!(
                    "{}: the state directory did not answer in time; the reboot history starts empty",
                    self.file.path().display()
                );
                History::default()
            }
        };
        Ok((HistoryFile { file: self.file }, history))
    }
}

/// Reads the history on the writer's thread, where a slow disk can wait.
/// Anything but a regular file of this format is logged and taken as an
/// empty history (it is replaced at the next save): a damaged history
/// must never stop the daemon or a reboot.
fn read_history(dir: &Dir) -> History {
    let path = dir.path().join(NAME);
    let mut buf = Vec::new();
    let why = match dir.read(c"history", &mut buf) {
        Ok(Some(())) => match History::parse(&buf) {
            Ok(history) => return history,
            Err(why) => why,
        },
        Ok(None) => return History::default(),
        Err(e) => e.to_string(),
    };
    log::error!(
        "{}: {why}; the reboot history starts afresh",
        path.display()
    );
    History::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: i64, kind: Kind) -> Entry {
        Entry {
            wall: 1_795_000_000 + n,
            boot_id: "0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11".into(),
            kind,
            rule: format!("rule{n}"),
            cause: "missing: no such file".into(),
            step: "after 2 repair attempts".into(),
        }
    }

    #[test]
    fn the_history_keeps_the_newest_entries_and_reads_back() {
        let mut h = History::default();
        for n in 0..20 {
            h.push(entry(n, Kind::Reboot));
        }
        assert_eq!(h.len(), MAX_ENTRIES);
        assert_eq!(h.iter().next().unwrap().wall, 1_795_000_004);
        assert_eq!(h.newest().unwrap().wall, 1_795_000_019);
        let mut hostile = entry(99, Kind::Suppressed);
        hostile.rule = "a\tb\nend\n\\x".into();
        hostile.cause = "\u{1b}[31m\u{7f}\0é".into();
        h.push(hostile);
        h.push(Entry {
            kind: Kind::WatchdogReset,
            rule: String::new(),
            step: String::new(),
            ..entry(100, Kind::WatchdogReset)
        });
        let bytes = h.render();
        assert!(bytes.starts_with(b"heartwatch-history 1\nentry "));
        assert_eq!(
            bytes.iter().filter(|&&b| b == b'\n').count(),
            MAX_ENTRIES + 2
        );
        assert_eq!(History::parse(&bytes), Ok(h.clone()));
        assert_eq!(
            History::parse(&History::default().render()),
            Ok(History::default())
        );
    }

    #[test]
    fn what_is_not_a_history_says_so() {
        let mut h = History::default();
        h.push(entry(1, Kind::Reboot));
        let whole = String::from_utf8(h.render()).unwrap();
        for (from, to, needle) in [
            (
                "heartwatch-history 1",
                "heartwatch-history 2",
                "format \"2\"",
            ),
            ("heartwatch-history 1", "count=1", "does not begin"),
            ("\nend\n", "\n", "cut short"),
            ("\nend\n", "\nend\nentry x\n", "after the end line"),
            ("\treboot\t", "\trestart\t", "unknown kind"),
            ("\treboot\t", "\treboot\textra\t", "more than 6"),
            ("\tafter 2 repair attempts", "", "fewer than 6"),
            ("entry 1795", "entry x1795", "not a number"),
            ("entry ", "line ", "not an entry line"),
            ("rule1", "rule\\q", "bad escape"),
        ] {
            let damaged = whole.replacen(from, to, 1);
            let err = History::parse(damaged.as_bytes()).unwrap_err();
            assert!(err.contains(needle), "{from:?} -> {to:?}: {err}");
        }
        assert!(
            History::parse(b"\xff\xfe")
                .unwrap_err()
                .contains("not text")
        );
        assert!(History::parse(b"").is_err());
    }
}
