//! Command checks (`[Command]`): how a run of the check program is judged,
//! and the first line of its output, kept in a fixed inline buffer so that
//! a cause that quotes it stays `Copy` and costs no allocation. The engine
//! decides when a check runs and when it is killed
//! (`engine::command`); the shell runs it like a repair (`repair`).

use crate::config::{CommandSpec, DurationText};
use crate::repair::Ending;
use nix::errno::Errno;
use std::fmt;
use std::time::Duration;

/// How many bytes of the first output line a cause quotes.
pub const FIRST_LINE_MAX: usize = 80;

/// The first non-empty line a check printed: at most [`FIRST_LINE_MAX`]
/// bytes, cut on a character boundary, control characters and bytes that
/// are not UTF-8 replaced, so that it is always valid UTF-8 on one line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FirstLine {
    bytes: [u8; FIRST_LINE_MAX],
    len: u8,
    /// The line has ended (a newline was seen): later output is not kept.
    done: bool,
    /// More of the line came than was kept.
    cut: bool,
}

impl Default for FirstLine {
    fn default() -> Self {
        FirstLine {
            bytes: [0; FIRST_LINE_MAX],
            len: 0,
            done: false,
            cut: false,
        }
    }
}

impl fmt::Debug for FirstLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl FirstLine {
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever stored (`push`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// Takes output as it comes, until the first non-empty line has ended.
    pub fn take(&mut self, output: &[u8]) {
        if self.done {
            return;
        }
        let mut rest = output;
        while !rest.is_empty() {
            let chunk = rest.utf8_chunks().next().expect("rest is not empty");
            for c in chunk.valid().chars() {
                if c == '\n' {
                    if self.len > 0 || self.cut {
                        self.done = true;
                        return;
                    }
                    continue;
                }
                // A line that begins with spaces is kept as it is, but a
                // blank line is skipped like an empty one.
                let c = match c {
                    '\t' => ' ',
                    c if c.is_control() => '\u{fffd}',
                    c => c,
                };
                self.push(c);
            }
            let skip = chunk.valid().len() + chunk.invalid().len();
            if !chunk.invalid().is_empty() {
                self.push('\u{fffd}');
            }
            rest = &rest[skip..];
        }
    }

    fn push(&mut self, c: char) {
        if self.cut {
            return;
        }
        let len = usize::from(self.len);
        if len + c.len_utf8() > FIRST_LINE_MAX {
            self.cut = true;
            return;
        }
        c.encode_utf8(&mut self.bytes[len..]);
        self.len += c.len_utf8() as u8;
    }
}

impl fmt::Display for FirstLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str().trim_end())?;
        if self.cut { f.write_str("…") } else { Ok(()) }
    }
}

/// What a `[Command]` rule checks, in words (`heartwatch check`).
pub fn explain(spec: &CommandSpec) -> String {
    format!(
        "if `{}` ({}) exits non-zero, is killed by a signal, cannot start or runs longer than {} (run every {}, from the end of one run to the start of the next)",
        spec.run.text,
        spec.run.program.display(),
        DurationText(spec.timeout),
        DurationText(spec.interval)
    )
}

/// Why a command check failed (`health::Cause::Command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It exited with this code, having printed this first line.
    Exit(i32, FirstLine),
    /// A signal ended it (not heartwatch's, at a timeout).
    Signalled(i32),
    /// It ran past `Timeout=` and was killed (its whole process group).
    TimedOut(Duration),
    /// It could not be started (fork, pipe or exec failed with this).
    NotStarted(Errno),
    /// How it ended could not be learned (`waitpid` failed with this).
    Lost(Errno),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exit(code, line) if line.as_str().trim().is_empty() => {
                write!(f, "exit {code} (no output)")
            }
            Failure::Exit(code, line) => write!(f, "exit {code}: {line}"),
            Failure::Signalled(sig) => write!(f, "killed by signal {sig}"),
            Failure::TimedOut(t) => write!(
                f,
                "timed out: still running after {}; its process group was killed",
                DurationText(*t)
            ),
            Failure::NotStarted(e) => write!(f, "could not start: {e}"),
            Failure::Lost(e) => write!(f, "how it ended is unknown: {e}"),
        }
    }
}

/// The verdict on a run that ended by itself (a timeout is judged by the
/// engine when it happens, not when the killed run is reaped).
pub fn judge(ending: Ending, first: FirstLine) -> Result<(), Failure> {
    match ending {
        Ending::Exited(0) => Ok(()),
        Ending::Exited(code) => Err(Failure::Exit(code, first)),
        Ending::Signalled(sig) => Err(Failure::Signalled(sig)),
        Ending::NotStarted(errno) => Err(Failure::NotStarted(Errno::from_raw(errno))),
        Ending::Lost(errno) => Err(Failure::Lost(Errno::from_raw(errno))),
        // The engine judges these itself: only a run it timed out is
        // killed, and a check is never a dry run.
        Ending::TimedOut | Ending::Unkillable(_) | Ending::DryRun => {
            Err(Failure::TimedOut(Duration::ZERO))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(parts: &[&[u8]]) -> String {
        let mut line = FirstLine::default();
        for p in parts {
            line.take(p);
        }
        line.to_string()
    }

    #[test]
    fn the_first_non_empty_line_is_kept() {
        assert_eq!(first(&[b"\n\nhello ", b"world\nsecond\n"]), "hello world");
        assert_eq!(first(&[b"no newline"]), "no newline");
        assert_eq!(first(&[b""]), "");
        assert_eq!(
            first(&[b"tab\there \x1b[31m\xff end\n"]),
            "tab here \u{fffd}[31m\u{fffd} end"
        );
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let text = first(&[long.as_bytes()]);
        assert!(text.ends_with('…'));
        assert_eq!(text.trim_end_matches('…').len(), FIRST_LINE_MAX);
        let odd = format!("x{long}\nnext");
        let text = first(&[odd.as_bytes()]);
        assert_eq!(text.trim_end_matches('…').len(), FIRST_LINE_MAX - 1);
    }

    #[test]
    fn causes_read_well() {
        let mut line = FirstLine::default();
        line.take(b"connection refused\n");
        assert_eq!(
            Failure::Exit(7, line).to_string(),
            "exit 7: connection refused"
        );
        assert_eq!(
            Failure::Exit(1, FirstLine::default()).to_string(),
            "exit 1 (no output)"
        );
        assert_eq!(judge(Ending::Exited(0), line), Ok(()));
        assert_eq!(
            judge(Ending::NotStarted(2), line),
            Err(Failure::NotStarted(Errno::ENOENT))
        );
    }
}
