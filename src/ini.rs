//! A strict reader for heartwatch's INI-like files: `[Section]` headers,
//! `Key=value` lines, `#` and `;` comments. It knows no keys; `config` gives
//! them meaning. Every problem carries the line it was found on.

#![deny(unsafe_code)]

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
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        LineError {
            line,
            message: message.into(),
        }
    }
}

/// Longest line accepted; longer ones are an error, not a truncation.
pub const MAX_LINE: usize = 4096;

/// Splits `text` into sections. Every malformed line is reported; a file
/// with any error yields no sections at all.
pub fn parse(text: &str) -> Result<Vec<Section>, Vec<LineError>> {
    let mut sections: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        if let Err(message) = read_line(raw, line, &mut sections) {
            errors.push(LineError::new(line, message));
        }
    }
    if errors.is_empty() {
        Ok(sections)
    } else {
        Err(errors)
    }
}

fn read_line(raw: &str, line: usize, sections: &mut Vec<Section>) -> Result<(), String> {
    if raw.len() > MAX_LINE {
        return Err(format!(
            "line is {} bytes long; the longest accepted is {MAX_LINE}",
            raw.len()
        ));
    }
    let text = raw.strip_suffix('\r').unwrap_or(raw);
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!("control character {:?} in line", c));
    }
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
        return Ok(());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let name = rest
            .strip_suffix(']')
            .ok_or_else(|| format!("section header {text:?} lacks its closing ']'"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("section name {name:?} is not a plain word"));
        }
        if let Some(first) = sections.iter().find(|s| s.name == name) {
            return Err(format!(
                "section [{name}] appears twice (first at line {})",
                first.line
            ));
        }
        sections.push(Section {
            name: name.to_string(),
            line,
            entries: Vec::new(),
        });
        return Ok(());
    }
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected `Key=value` or `[Section]`, found {text:?}"))?;
    let key = key.trim();
    let value = value.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("key {key:?} is not a plain word"));
    }
    if value.is_empty() {
        return Err(format!("{key}= has an empty value"));
    }
    let section = sections
        .last_mut()
        .ok_or_else(|| format!("{key}= comes before any [Section] header"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(found[2].1.contains("appears twice (first at line 2)"));
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
}
