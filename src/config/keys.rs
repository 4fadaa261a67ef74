//! Typed access to one INI section: a key read with its value parser, an
//! error that names the key's line, and the keys nobody read reported as
//! unknown.

use super::ini::{Entry, LineError, Section};
use super::types::ConfigError;
use std::path::Path;

/// Typed access to one section; remembers which keys were read so that the
/// rest can be reported as unknown.
pub(super) struct Keys<'a> {
    path: &'a Path,
    pub(super) section: &'a Section,
    used: Vec<bool>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Keys<'a> {
    pub(super) fn new(
        path: &'a Path,
        section: &'a Section,
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        Keys {
            path,
            section,
            used: vec![false; section.entries.len()],
            errors,
        }
    }

    pub(super) fn entry(&mut self, key: &str) -> Option<&'a Entry> {
        let index = self.section.entries.iter().position(|e| e.key == key)?;
        self.used[index] = true;
        Some(&self.section.entries[index])
    }

    /// Reads `key` with `parse`; on a bad value records the error and
    /// returns `None`, as for a missing key.
    pub(super) fn get<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let entry = self.entry(key)?;
        match parse(&entry.value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.errors.push(ConfigError::at(
                    self.path,
                    entry.line,
                    format!("{key}=: {message}"),
                ));
                None
            }
        }
    }

    /// Like `get`, but a missing key is an error too.
    pub(super) fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.section.entries.iter().any(|e| e.key == key) {
            self.get(key, parse)
        } else {
            let line = self.section.line;
            let name = self.section.name.clone();
            self.error(line, format!("[{name}] needs {key}="));
            None
        }
    }

    pub(super) fn line_of(&self, key: &str) -> usize {
        self.section
            .entries
            .iter()
            .find(|e| e.key == key)
            .map_or(self.section.line, |e| e.line)
    }

    pub(super) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ConfigError::at(self.path, line, message));
    }

    pub(super) fn finish(self) {
        for (entry, used) in self.section.entries.iter().zip(&self.used) {
            if !used {
                self.errors.push(ConfigError::at(
                    self.path,
                    entry.line,
                    format!("unknown key {}= in [{}]", entry.key, self.section.name),
                ));
            }
        }
    }
}

pub(super) fn line_errors(path: &Path, errors: Vec<LineError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError::at(path, e.line, e.message))
        .collect()
}
