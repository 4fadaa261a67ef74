//! A repair's output in the log: lines cut, runs bounded, the rest counted.

use super::{LINE_MAX, LOG_LINES};
use std::fmt;

/// The log of one run's output: the line being assembled (its buffer is
/// allocated once, at start, and never grows) and what was not logged.
#[derive(Debug)]
pub(super) struct OutputLog {
    line: Vec<u8>,
    /// Bytes of the current line, including those cut off.
    line_bytes: u64,
    logged: u32,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The output had not ended when the run did: the rest was not read.
    pub(super) unread: bool,
    /// Whose output: "repair" or "check", for the log.
    label: &'static str,
}

impl OutputLog {
    pub(super) fn new(label: &'static str) -> OutputLog {
        OutputLog {
            line: Vec::with_capacity(LINE_MAX),
            line_bytes: 0,
            logged: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
            unread: false,
            label,
        }
    }

    /// Empty again for the next run, keeping its buffer.
    pub(super) fn reset(&mut self) {
        self.line.clear();
        self.line_bytes = 0;
        self.logged = 0;
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        self.unread = false;
    }

    pub(super) fn take(&mut self, mut bytes: &[u8], rule: &str) {
        while self.logged < LOG_LINES {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.append(&bytes[..end]);
                    self.end_line(rule);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.append(bytes);
                    return;
                }
            }
        }
        // The budget is spent: count what comes, as fast as it comes.
        self.dropped_bytes += bytes.len() as u64;
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.dropped_lines += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                self.line_bytes = (bytes.len() - last - 1) as u64;
            }
            None => self.line_bytes += bytes.len() as u64,
        }
    }

    fn append(&mut self, part: &[u8]) {
        let room = LINE_MAX - self.line.len();
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.line_bytes += part.len() as u64;
    }

    /// Ends the line assembled so far: logs it (empty lines are skipped),
    /// or counts it once the budget is spent.
    pub(super) fn end_line(&mut self, rule: &str) {
        if self.line_bytes == 0 {
            return;
        }
        if self.logged >= LOG_LINES {
            // Its bytes were counted as they came.
            self.dropped_lines += 1;
            self.line_bytes = 0;
            return;
        }
        let cut = self.line_bytes - self.line.len() as u64;
        if cut == 0 {
            log::info!(
                "rule {rule}: {} output: {}",
                self.label,
                Printable(&self.line)
            );
        } else {
            log::info!(
                "rule {rule}: {} output: {}… (line cut at {LINE_MAX} bytes)",
                self.label,
                Printable(&self.line)
            );
        }
        self.logged += 1;
        self.dropped_bytes += cut;
        self.line.clear();
        self.line_bytes = 0;
    }

    /// The last partial line, then what was not logged, if anything.
    pub(super) fn finish(&mut self, rule: &str) {
        self.end_line(rule);
        let label = self.label;
        let unread = if self.unread {
            "; the output had not ended when the command exited, the rest was not read"
        } else {
            ""
        };
        if self.dropped_lines > 0 || self.dropped_bytes > 0 || self.unread {
            log::info!(
                "rule {rule}: {label} output: {} more lines not logged, {} bytes dropped in all (at most {LOG_LINES} lines of {LINE_MAX} bytes are logged per run){unread}",
                self.dropped_lines,
                self.dropped_bytes
            );
        }
    }
}

/// Output bytes as text for the log: UTF-8 as it is, control characters
/// (but tab) and bytes that are not UTF-8 as `\xNN`. No allocation.
struct Printable<'a>(&'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            let text = chunk.valid();
            let mut from = 0;
            for (i, c) in text.char_indices() {
                if c.is_control() && c != '\t' {
                    f.write_str(&text[from..i])?;
                    let mut bytes = [0u8; 4];
                    for b in c.encode_utf8(&mut bytes).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                    from = i + c.len_utf8();
                }
            }
            f.write_str(&text[from..])?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_and_bytes_that_are_not_utf8() {
        let text = Printable(b"ok\tfine \x00\x1b[31m caf\xc3\xa9 \xff\xfe end").to_string();
        assert_eq!(text, "ok\tfine \\x00\\x1b[31m café \\xff\\xfe end");
        assert_eq!(Printable("\u{85}".as_bytes()).to_string(), "\\xc2\\x85");
    }

    #[test]
    fn the_output_log_cuts_long_lines_and_counts_past_its_budget() {
        let mut log = OutputLog::new("repair");
        log.take(&[b'x'; 2000], "r");
        log.take(b"\n", "r");
        assert_eq!((log.logged, log.dropped_bytes), (1, 2000 - LINE_MAX as u64));
        log.take(b"\n\n", "r");
        assert_eq!(
            (log.logged, log.dropped_lines),
            (1, 0),
            "empty lines are skipped"
        );
        for _ in 0..LOG_LINES + 10 {
            log.take(b"line\n", "r");
        }
        log.take(b"tail without newline", "r");
        assert_eq!(log.logged, LOG_LINES);
        log.end_line("r");
        assert_eq!(log.dropped_lines, 12);
        assert_eq!(
            log.dropped_bytes,
            2000 - LINE_MAX as u64 + 11 * 5 + "tail without newline".len() as u64
        );
        assert!(log.line.capacity() == LINE_MAX);
    }
}
