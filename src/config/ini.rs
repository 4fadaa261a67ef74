//! A strict reader for heartwatch's INI-like files: `[Section]` headers,
//! `Key=value` lines, `#` and `;` comments on lines of their own. It knows
//! no keys; `config` gives them meaning. Every problem carries the line it
//! was found on.
//!
//! As in systemd, a comment is a whole line. A comment after a value or a
//! header is an error rather than part of the value: `Command=systemctl
//! reboot   # orderly` would otherwise run `systemctl` with four arguments.
//! A word of a value that begins with an unquoted `#` or `;` is taken for
//! such a comment, whatever the key, so no kind of value can swallow one;
//! inside a word (`/srv/a#b`, `a;b`) or quoted (`'#x'`, `\#x`) the
//! character is literal. The quoting is that of `Repair=` commands.

/// One `Key=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A `[Section]` with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A problem at a line of the file being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl LineError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        LineError {
            line,
            message: message.into(),
        }
    }
}

/// Longest line accepted; longer ones are an error, not a truncation.
const MAX_LINE: usize = 4096;

/// Splits `text` into sections. Every malformed line is reported; a file
/// with any error yields no sections at all.
///
/// A UTF-8 byte-order mark at the start of the file is skipped, as systemd
/// does: editors on other systems write one.
pub fn parse(text: &str) -> Result<Vec<Section>, Vec<LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        sections: Vec::new(),
        current: Current::Nothing,
    };
    let mut errors = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        if let Err(message) = reader.read_line(raw, line) {
            errors.push(LineError::new(line, message));
        }
    }
    let sections = reader.sections;
    if errors.is_empty() {
        Ok(sections)
    } else {
        Err(errors)
    }
}

/// Where the next `Key=value` line goes.
enum Current {
    /// No header yet.
    Nothing,
    /// The last section in `sections`.
    Last,
    /// A header in error (a section given twice, a malformed header): it
    /// is reported once, at the header; the keys below it are read for
    /// their form only, not counted against another section.
    Ignored,
}

struct Reader {
    sections: Vec<Section>,
    current: Current,
}

impl Reader {
    fn read_line(&mut self, raw: &str, line: usize) -> Result<(), String> {
        if raw.len() > MAX_LINE {
            return Err(format!(
                "line is {} bytes long; the longest accepted is {MAX_LINE}",
                raw.len()
            ));
        }
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        // Most lines are ASCII: their bytes are their characters, and
        // they hold no byte-order mark (at 10 000 rules the character-wise
        // looks were a fifth of the start-up's parsing).
        let ascii = text.is_ascii();
        let control = if ascii {
            let control = |b: &&u8| (**b < 0x20 && **b != b'\t') || **b == 0x7f;
            text.as_bytes().iter().find(control).map(|&b| char::from(b))
        } else {
            text.chars().find(|c| c.is_control() && *c != '\t')
        };
        if let Some(c) = control {
            return Err(format!("control character {:?} in line", c));
        }
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
            return Ok(());
        }
        if !ascii && text.contains('\u{feff}') {
            return Err("a byte-order mark (U+FEFF) is taken only at the start of the file".into());
        }
        if text.starts_with('[') {
            return self.read_header(text, line);
        }
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("expected `Key=value` or `[Section]`, found {text:?}"))?;
        let key = key.trim();
        let value = value.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("key {key:?} is not a plain word"));
        }
        if let Some(at) = comment_start(value) {
            return Err(format!(
                "{key}=: {} after the value is a comment, and {COMMENTS}",
                snippet(&value[at..])
            ));
        }
        if value.is_empty() {
            return Err(format!("{key}= has an empty value"));
        }
        let section = match self.current {
            Current::Nothing => return Err(format!("{key}= comes before any [Section] header")),
            Current::Ignored => return Ok(()),
            Current::Last => self.sections.last_mut().expect("a section was read"),
        };
        if let Some(first) = section.entries.iter().find(|e| e.key == key) {
            return Err(format!(
                "{key}= is set twice in [{}] (first at line {})",
                section.name, first.line
            ));
        }
        section.entries.push(Entry {
            key: key.to_string(),
            value: value.to_string(),
            line,
        });
        Ok(())
    }

    fn read_header(&mut self, text: &str, line: usize) -> Result<(), String> {
        // Until the header is known good, keys below it belong nowhere.
        self.current = Current::Ignored;
        let (name, after) = text[1..]
            .split_once(']')
            .ok_or_else(|| format!("section header {text:?} lacks its closing ']'"))?;
        let after = after.trim_start();
        if after.starts_with('#') || after.starts_with(';') {
            return Err(format!(
                "{} after [{name}] is a comment, and {COMMENTS}",
                snippet(after)
            ));
        }
        if !after.is_empty() {
            return Err(format!("{after:?} follows the section header [{name}]"));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("section name {name:?} is not a plain word"));
        }
        if let Some(first) = self.sections.iter().find(|s| s.name == name) {
            return Err(format!(
                "section [{name}] given twice; first at line {}",
                first.line
            ));
        }
        self.sections.push(Section {
            name: name.to_string(),
            line,
            entries: Vec::new(),
        });
        self.current = Current::Last;
        Ok(())
    }
}

const COMMENTS: &str =
    "comments go on their own line (quote a word that starts with # or ; to keep it)";

/// Where a word that begins with an unquoted `#` or `;` starts in `value`,
/// if one does. Quotes and backslashes are read as in `Repair=` commands;
/// after an unterminated quote nothing counts (the value's own parser says
/// what is wrong with it).
pub fn comment_start(value: &str) -> Option<usize> {
    if !value.bytes().any(|b| b == b'#' || b == b';') {
        return None;
    }
    let mut at_word_start = true;
    let mut chars = value.char_indices();
    while let Some((i, c)) = chars.next() {
        let word_start = std::mem::replace(&mut at_word_start, c.is_whitespace());
        match c {
            '#' | ';' if word_start => return Some(i),
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some(_) => {}
                    None => return None,
                }
            },
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => {
                        chars.next();
                    }
                    Some(_) => {}
                    None => return None,
                }
            },
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    None
}

/// The start of a comment, quoted and cut short for a message.
fn snippet(comment: &str) -> String {
    const LONGEST: usize = 40;
    match comment.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &comment[..cut])),
        None => format!("{comment:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_but_tab_is_refused_ascii_or_not() {
        for c in (0u32..0x200).filter_map(char::from_u32) {
            let text = format!("[Heartbeat]\nFile=/a{c}b\n");
            let refused =
                parse(&text).is_err_and(|e| e[0].message.starts_with("control character"));
            assert_eq!(refused, c.is_control() && c != '\t' && c != '\n', "{c:?}");
        }
    }

    fn errors(text: &str) -> Vec<(usize, String)> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect()
    }

    #[test]
    fn reads_sections_entries_and_comments() {
        let text = "# comment\n[Heartbeat]\nFile = /run/x\n; other\n\nMaxAge=10s\r\n[Escalate]\nFinally=log\n";
        let sections = parse(text).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].name, "Heartbeat");
        assert_eq!(sections[0].line, 2);
        assert_eq!(sections[0].entries[0].key, "File");
        assert_eq!(sections[0].entries[0].value, "/run/x");
        assert_eq!(sections[0].entries[1].line, 6);
        assert_eq!(sections[0].entries[1].value, "10s");
        assert_eq!(sections[1].entries[0].line, 8);
    }

    #[test]
    fn reports_every_bad_line() {
        let found = errors("Key=1\n[A]\nno equals\n[A]\n[B]\nX=\nY=1\nY=2\n[bad name]\n");
        let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 3, 4, 6, 8, 9]);
        assert!(found[0].1.contains("before any [Section]"));
        assert!(
            found[2]
                .1
                .contains("section [A] given twice; first at line 2")
        );
        assert!(found[3].1.contains("empty value"));
        assert!(found[4].1.contains("set twice in [B] (first at line 7)"));
    }

    #[test]
    fn refuses_long_lines_and_control_characters() {
        let long = format!("[A]\nK={}\n", "x".repeat(MAX_LINE));
        assert_eq!(errors(&long)[0].0, 2);
        assert!(
            errors("[A]\nK=a\u{1}b\n")[0]
                .1
                .contains("control character")
        );
        assert!(errors("[A\n")[0].1.contains("closing ']'"));
    }

    #[test]
    fn a_comment_after_a_value_or_header_is_an_error() {
        for (value, at) in [
            ("30s   # asked of the driver", Some(6)),
            ("# all of it", Some(0)),
            ("a ;b", Some(2)),
            ("a\t#b", Some(2)),
            ("/srv/a#b", None),
            ("a#b a;b", None),
            ("'#x' \"#y\" \\#z", None),
            ("sh -c 'echo # not; a comment'", None),
            ("\"a \\\" #b\" c", None),
            ("it's # unterminated", None),
        ] {
            assert_eq!(comment_start(value), at, "{value:?}");
        }
        let found = errors("[A]   # the first\nK=1 # one\n[B] ; two\n[C]]\n");
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].1.contains(
                "\"# the first\" after [A] is a comment, and comments go on their own line"
            )
        );
        assert!(
            found[1]
                .1
                .starts_with("K=: \"# one\" after the value is a comment")
        );
        assert!(found[2].1.contains("after [B] is a comment"));
        assert!(found[3].1.contains("\"]\" follows the section header [C]"));
        let long = format!("[A]\nK=1 #{}\n", "x".repeat(100));
        assert!(
            errors(&long)[0]
                .1
                .contains(&format!("\"#{}…\"", "x".repeat(39)))
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_at_the_start_only() {
        let sections = parse("\u{feff}[A]\nK=1\n").unwrap();
        assert_eq!(sections[0].name, "A");
        assert_eq!(
            errors("[A]\n\u{feff}K=1\n"),
            vec![(
                2,
                "a byte-order mark (U+FEFF) is taken only at the start of the file".to_string()
            )]
        );
    }

    #[test]
    fn a_section_given_twice_is_one_error_and_its_keys_none() {
        let found = errors("[A]\nK=1\n[B]\n[A]\nK=2\nK=3\nL=\n");
        assert_eq!(
            found,
            vec![
                (4, "section [A] given twice; first at line 1".to_string()),
                (7, "L= has an empty value".to_string())
            ]
        );
    }
}
