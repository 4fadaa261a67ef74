//! `heartwatch import-watchdog-conf [FILE] --to DIR`: reads a `watchdog.conf`
//! of Debian's (upstream's) watchdog daemon and writes the same checks as a
//! heartwatch configuration: `DIR/heartwatch.conf` and one rule per check in
//! `DIR/rules.d`. Every option is either translated, translated with a
//! change (said), or not translated (said, with why): none is dropped in
//! silence. Reading and translating are plain functions of text; only
//! `import` touches the disk.
//!
//! The file is read the way watchdog 5.16 reads it: one `name = value` a
//! line, blanks around both ignored, `#` starting a comment only as the
//! first character of a line, an empty value leaving the option off.

use super::args::Args;
use crate::config::{COMMAND_PATH, DurationText};
use crate::report::{EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE, Report, complain, say};
use crate::text::Count;
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where watchdog's configuration lives unless FILE says otherwise.
const DEFAULT_SOURCE: &str = "/etc/watchdog.conf";

/// Largest `watchdog.conf` read; watchdog's own files are a few KiB.
const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// watchdog's defaults (watchdog.conf(5), watchdog 5.16).
const WATCHDOG_INTERVAL: u64 = 1;
const WATCHDOG_RETRY_TIMEOUT: u64 = 60;
const WATCHDOG_REPAIR_TIMEOUT: u64 = 60;
const WATCHDOG_TEST_TIMEOUT: u64 = 60;
const WATCHDOG_REPAIR_MAXIMUM: u32 = 1;
const WATCHDOG_MAX_TEMPERATURE: u32 = 90;

/// How long a load, memory or swap threshold must hold before the rule
/// fails. watchdog acts on a single sample of these (watchdog(8): the
/// retry timer does not apply to load averages and memory); one sample is
/// the false reboot issue 13 is about, so the import keeps the default
/// hold of `[System] For=`.
const RESOURCE_FOR: Duration = Duration::from_secs(60);
/// The same for a temperature: watchdog powers off at once on one sample;
/// a sensor does not spike like a load average, and heat is urgent.
const TEMPERATURE_FOR: Duration = Duration::from_secs(10);
const TEMPERATURE_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// The longest `[Command] Timeout=` the import writes for ping and stat.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn import(args: &Args) -> Result<(), u8> {
    let source = match args.words.as_slice() {
        [] => PathBuf::from(DEFAULT_SOURCE),
        [file] => PathBuf::from(file),
        _ => {
            complain!(
                "heartwatch: import-watchdog-conf takes one FILE at most\n{}",
                super::args::USAGE
            );
            return Err(EXIT_USAGE);
        }
    };
    let dir = target(args.to.as_deref()).map_err(|message| {
        complain!("heartwatch: import-watchdog-conf: {message}");
        EXIT_USAGE
    })?;
    let text = read_source(&source).map_err(|message| {
        complain!("heartwatch: {}: {message}", source.display());
        EXIT_FAILURE
    })?;
    let malformed = |errors: Vec<(usize, String)>| {
        for (_, e) in &errors {
            complain!("{e}");
        }
        complain!(
            "heartwatch: {}: {}; nothing written",
            source.display(),
            Count::of(errors.len(), "malformed line")
        );
        EXIT_CONFIG
    };
    // Every malformed line is said, those of values too, before anything
    // is written.
    let (settings, mut errors) = read_settings(&source, &text);
    let translation = match translate(&source, &settings, page_size(), &Host) {
        Ok(translation) if errors.is_empty() => translation,
        Ok(_) => return Err(malformed(errors)),
        Err(mut more) => {
            errors.append(&mut more);
            errors.sort_by_key(|(line, _)| *line);
            return Err(malformed(errors));
        }
    };
    let files = translation.files();
    let taken: Vec<PathBuf> = files
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !taken.is_empty() && !args.force {
        for path in &taken {
            complain!(
                "heartwatch: {} exists; not overwritten (--force replaces it)",
                path.display()
            );
        }
        complain!("heartwatch: nothing written");
        return Err(EXIT_FAILURE);
    }
    for (_, _, note) in &translation.notes {
        complain!("{note}");
    }
    write_files(&dir, &files).map_err(|message| {
        complain!("heartwatch: {message}");
        EXIT_FAILURE
    })?;
    let mut report = Report::new();
    say!(
        report,
        "{}: translated into {}",
        source.display(),
        dir.display()
    );
    say!(
        report,
        "  heartwatch.conf: {}",
        translation.settings_summary.join(", ")
    );
    for rule in &translation.rules {
        say!(report, "  rules.d/{}.rule: {}", rule.name, rule.summary);
    }
    let changed = translation.count(Note::Changed);
    let untranslated = translation.count(Note::NotTranslated);
    say!(
        report,
        "{}, {} written; {} translated with a change and {} not translated (said on standard error)",
        Count::of(settings.len(), "option"),
        Count::of(translation.rules.len(), "rule"),
        changed,
        untranslated
    );
    for line in &translation.summary {
        say!(report, "{line}");
    }
    say!(
        report,
        "next: heartwatch check --config {}; then copy the files to /etc/heartwatch",
        dir.display()
    );
    report.finish(Ok(()))
}

/// The directory to write into. It must be named with `--to`; a directory
/// inside `/etc` only when `--to` names it so (`/etc/...`), not through a
/// relative path, `..` or a symlink, so that the live configuration is
/// never replaced by accident.
fn target(to: Option<&str>) -> Result<PathBuf, String> {
    let Some(text) = to else {
        return Err(
            "say where to write with --to DIR (a new directory; /etc/heartwatch only when --to names it)"
                .into(),
        );
    };
    if text.is_empty() {
        return Err("--to needs a directory".into());
    }
    let absolute = normalize(&std::path::absolute(text).map_err(|e| format!("--to {text}: {e}"))?);
    let real = resolve(&absolute);
    let named = Path::new(text);
    let names_etc = named.is_absolute()
        && named.starts_with("/etc")
        && !named.components().any(|c| c == Component::ParentDir);
    if real.starts_with("/etc") && !names_etc {
        return Err(format!(
            "--to {text} is {} inside /etc; not writing there unless --to names it as /etc/...",
            real.display()
        ));
    }
    Ok(absolute)
}

/// `path` without `.` and with each `..` taking off the component before.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where `path` really is: its deepest existing ancestor with the symlinks
/// followed, and the rest as written.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(real, |p, c: &std::ffi::OsString| p.join(c));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn read_source(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} bytes is too large for a watchdog.conf (at most {MAX_SOURCE_BYTES})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(format!(
            "not a text file (a NUL byte on line {line}); is it a watchdog.conf?"
        ));
    }
    // Comments may be in any encoding; a setting must be UTF-8 (below).
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One `name = value` line of watchdog.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    line: usize,
    name: String,
    value: String,
}

/// The settings of `text`, and every malformed line as `file:line: why`.
fn read_settings(path: &Path, text: &str) -> (Vec<Setting>, Vec<(usize, String)>) {
    let mut settings = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_matches([' ', '\t', '\r']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = |why: String| (line, format!("{}:{line}: {why}", path.display()));
        if trimmed.contains('\u{fffd}') {
            errors.push(at("not valid UTF-8".into()));
            continue;
        }
        if let Some(c) = trimmed.chars().find(|c| c.is_control() && *c != '\t') {
            errors.push(at(format!(
                "a control character ({:#04x}) in a setting",
                u32::from(c)
            )));
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            errors.push(at(format!(
                "{:?} is not `name = value` (nor a # comment)",
                shorten(trimmed)
            )));
            continue;
        };
        let name = name.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            errors.push(at(format!(
                "{:?} is not an option name (lower-case letters, digits and -)",
                shorten(name)
            )));
            continue;
        }
        settings.push(Setting {
            line,
            name: name.to_string(),
            value: value.trim_matches([' ', '\t']).to_string(),
        });
    }
    (settings, errors)
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// What the host the import runs on has: the programs that rules run.
trait Programs {
    fn executable(&self, path: &Path) -> bool;
    /// `name` looked up in heartwatch's command path.
    fn find(&self, name: &str) -> Option<PathBuf> {
        COMMAND_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(name))
            .find(|p| self.executable(p))
    }
}

struct Host;

impl Programs for Host {
    fn executable(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    }
}

fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

/// What kind of line an option said on standard error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    /// Translated, but not as written: the line says what changed.
    Changed,
    NotTranslated,
}

/// A rule file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuleFile {
    name: String,
    text: String,
    /// What it watches, for the summary.
    summary: String,
}

/// The translation of one watchdog.conf.
#[derive(Debug, Default)]
struct Translation {
    settings: String,
    settings_summary: Vec<String>,
    rules: Vec<RuleFile>,
    /// `(line, kind, "file:line: option=: changed|not translated: why")`.
    notes: Vec<(usize, Note, String)>,
    /// Lines for the end of the report: decisions that apply to many rules.
    summary: Vec<String>,
}

impl Translation {
    fn count(&self, kind: Note) -> usize {
        self.notes.iter().filter(|(_, k, _)| *k == kind).count()
    }

    /// `(path below DIR, text)` of every file.
    fn files(&self) -> Vec<(String, String)> {
        let mut files = vec![("heartwatch.conf".to_string(), self.settings.clone())];
        for rule in &self.rules {
            files.push((format!("rules.d/{}.rule", rule.name), rule.text.clone()));
        }
        files
    }
}

/// A value with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct At<T> {
    line: usize,
    value: T,
}

/// A `file =` with the `change =` that follows it.
#[derive(Debug, Clone)]
struct FileCheck {
    file: At<String>,
    change: Option<At<u64>>,
}

/// watchdog.conf read into what it asks for, before translating.
#[derive(Debug, Default)]
struct Asked {
    device: Option<At<String>>,
    timeout: Option<At<u64>>,
    interval: Option<At<u64>>,
    max_load: [Option<At<u64>>; 3],
    min_memory: Option<At<u64>>,
    allocatable_memory: Option<At<u64>>,
    max_swap: Option<At<u64>>,
    sensors: Vec<At<String>>,
    max_temperature: Option<At<u64>>,
    files: Vec<FileCheck>,
    pidfiles: Vec<At<String>>,
    pings: Vec<At<String>>,
    interfaces: Vec<At<String>>,
    test_binaries: Vec<At<String>>,
    test_timeout: Option<At<u64>>,
    repair_binary: Option<At<String>>,
    repair_timeout: Option<At<u64>>,
    retry_timeout: Option<At<u64>>,
    repair_maximum: Option<At<u64>>,
    softboot: Option<At<bool>>,
}

/// Why heartwatch has no counterpart of an option it does not translate.
fn no_counterpart(name: &str) -> Option<&'static str> {
    Some(match name {
        "realtime" | "priority" => {
            "heartwatch locks its memory itself (mlockall at start) and its unit keeps it alive under memory pressure (OOMScoreAdjust=-1000); it needs no real-time scheduling, as nothing a rule does can delay the feeding"
        }
        "logtick" => "heartwatch logs each change of a rule's state, not every interval",
        "ping-count" => {
            "each ping rule sends one packet and waits 1 s (ping -c 1 -W 1); edit its Run= to send more"
        }
        "watchdog-refresh-use-settimeout" => {
            "heartwatch feeds with WDIOC_KEEPALIVE (a write where the driver has none), never by setting the timeout again"
        }
        "watchdog-refresh-ignore-errors" => {
            "heartwatch has no switch to ignore a driver's feed errors"
        }
        "temp-power-off" => {
            "heartwatch reboots a host that is too hot (Finally=reboot); it does not power it off or halt it"
        }
        "admin" => {
            "heartwatch sends no mail: the reason of a reboot is in the journal and in `heartwatch status`"
        }
        "test-directory" => {
            "the programs in the test directory are not imported: write a [Command] rule for each (Run=PROGRAM test)"
        }
        "log-dir" => "the output of repairs and checks goes to the journal, not to files",
        "sigterm-delay" => {
            "heartwatch reboots through systemd (systemctl reboot), whose stop timeouts give services their time; [Reboot] OrderlyTimeout= bounds the whole orderly reboot"
        }
        "verbose" => "start the daemon with `heartwatch run --verbose` (a drop-in for the unit)",
        "heartbeat-file" | "heartbeat-stamps" => {
            "a debugging record of watchdog's own; `heartwatch status` shows the daemon's view"
        }
        "log-killed-pids" => "heartwatch leaves stopping the processes to systemd",
        _ => return None,
    })
}

/// Whole seconds, as watchdog takes them, up to a year.
fn seconds(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n <= 365 * 86_400 => Ok(n),
        Ok(_) => Err(format!("{value} seconds is longer than a year")),
        Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
    }
}

fn whole(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
        .ok_or_else(|| format!("{value:?} is not a whole number"))
}

fn yes_no(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("{value:?} is not yes or no")),
    }
}

/// Reads the settings into [`Asked`]: values that are not what their
/// option takes are malformed lines; an option given twice keeps its last
/// value, as in watchdog, and the earlier one is said.
fn ask(
    path: &Path,
    settings: &[Setting],
    out: &mut Translation,
) -> Result<Asked, Vec<(usize, String)>> {
    let mut asked = Asked::default();
    let mut errors = Vec::new();
    for s in settings {
        let here = |why: String| format!("{}:{}: {}=: {why}", path.display(), s.line, s.name);
        if s.value.is_empty() {
            out.note(path, s, Note::NotTranslated, "empty: off, as in watchdog");
            continue;
        }
        let number = |parse: fn(&str) -> Result<u64, String>| {
            parse(&s.value).map(|value| At {
                line: s.line,
                value,
            })
        };
        let text = || At {
            line: s.line,
            value: s.value.clone(),
        };
        let result: Result<(), String> = (|| {
            let mut once = |slot: &mut Option<At<u64>>, value| keep_last(slot, value, s, path, out);
            match s.name.as_str() {
                "watchdog-device" => keep_last(&mut asked.device, text(), s, path, out),
                "watchdog-timeout" => once(&mut asked.timeout, number(seconds)?),
                "interval" => once(&mut asked.interval, number(seconds)?),
                "max-load-1" => once(&mut asked.max_load[0], number(whole)?),
                "max-load-5" => once(&mut asked.max_load[1], number(whole)?),
                "max-load-15" => once(&mut asked.max_load[2], number(whole)?),
                "min-memory" => once(&mut asked.min_memory, number(whole)?),
                "allocatable-memory" => once(&mut asked.allocatable_memory, number(whole)?),
                "max-swap" => once(&mut asked.max_swap, number(whole)?),
                "max-temperature" => once(&mut asked.max_temperature, number(whole)?),
                "test-timeout" => once(&mut asked.test_timeout, number(seconds)?),
                "repair-timeout" => once(&mut asked.repair_timeout, number(seconds)?),
                "retry-timeout" => once(&mut asked.retry_timeout, number(seconds)?),
                "repair-maximum" => once(&mut asked.repair_maximum, number(whole)?),
                "temperature-sensor" => asked.sensors.push(text()),
                "pidfile" => asked.pidfiles.push(text()),
                "ping" => asked.pings.push(text()),
                "interface" => asked.interfaces.push(text()),
                "test-binary" => asked.test_binaries.push(text()),
                "file" => asked.files.push(FileCheck {
                    file: text(),
                    change: None,
                }),
                "change" => {
                    let change = number(seconds)?;
                    match asked.files.last_mut() {
                        Some(check) => {
                            if let Some(old) = check.change.replace(change) {
                                out.note_at(path, old.line, &s.name, Note::NotTranslated, &format!(
                                    "given again on line {} for the same file; watchdog takes the last",
                                    s.line
                                ));
                            }
                        }
                        None => out.note(
                            path,
                            s,
                            Note::NotTranslated,
                            "comes before any file=, so it belongs to none (watchdog ignores it too)",
                        ),
                    }
                }
                "repair-binary" => keep_last(&mut asked.repair_binary, text(), s, path, out),
                "softboot-option" => {
                    let value = yes_no(&s.value)?;
                    asked.softboot = Some(At {
                        line: s.line,
                        value,
                    });
                }
                name => match no_counterpart(name) {
                    Some(why) => out.note(path, s, Note::NotTranslated, why),
                    None => out.note(
                        path,
                        s,
                        Note::NotTranslated,
                        "not an option of watchdog.conf(5)",
                    ),
                },
            }
            Ok(())
        })();
        if let Err(why) = result {
            errors.push((s.line, here(why)));
        }
    }
    if errors.is_empty() {
        Ok(asked)
    } else {
        Err(errors)
    }
}

/// Puts `value` in `slot`; an earlier value there is said to be replaced,
/// as watchdog takes the last of an option given twice.
fn keep_last<T>(
    slot: &mut Option<At<T>>,
    value: At<T>,
    s: &Setting,
    path: &Path,
    out: &mut Translation,
) {
    if let Some(old) = slot.replace(value) {
        out.note_at(
            path,
            old.line,
            &s.name,
            Note::NotTranslated,
            &format!("given again on line {}; watchdog takes the last", s.line),
        );
    }
}

impl Translation {
    fn note(&mut self, path: &Path, s: &Setting, kind: Note, why: &str) {
        self.note_at(path, s.line, &s.name, kind, why);
    }

    fn note_at(&mut self, path: &Path, line: usize, name: &str, kind: Note, why: &str) {
        let word = match kind {
            Note::Changed => "changed",
            Note::NotTranslated => "not translated",
        };
        self.notes.push((
            line,
            kind,
            format!("{}:{line}: {name}=: {word}: {why}", path.display()),
        ));
    }
}

/// A word of a command line as `parse_argv` reads it back.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=,%".contains(c));
    if plain {
        word.to_string()
    } else if !word.contains('\'') {
        format!("'{word}'")
    } else {
        let escaped: String = word
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

/// A path heartwatch takes in a rule: absolute, no `..`, no white space.
fn rule_path(text: &str) -> Result<(), &'static str> {
    if !text.starts_with('/') {
        Err("is not an absolute path")
    } else if text.split('/').any(|p| p == "..") {
        Err("contains `..`")
    } else if text.contains(char::is_whitespace) {
        Err("contains white space, which heartwatch does not take in a path")
    } else {
        Ok(())
    }
}

/// A rule name from `kind` and what it watches: the characters a rule name
/// may have (letters, digits, `-_.@:`), 64 at most, unlike every name in
/// `taken` (a number is added where two would be alike).
fn rule_name(kind: &str, subject: &str, taken: &[RuleFile]) -> String {
    let mut cleaned = String::new();
    for c in subject.trim_start_matches('/').chars() {
        let c = if c.is_ascii_alphanumeric() || "_.@:".contains(c) {
            c
        } else {
            '-'
        };
        if !(c == '-' && (cleaned.ends_with('-') || cleaned.is_empty())) {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_end_matches('-');
    let base = if cleaned.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}-{cleaned}")
    };
    let fit = |text: &str, room: usize| -> String { text.chars().take(room).collect() };
    let free = |name: &str| !taken.iter().any(|r| r.name == name);
    let first = fit(&base, 64);
    if free(&first) {
        return first;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", fit(&base, 64 - suffix.len()))
        })
        .find(|name| free(name))
        .expect("some number is free")
}

/// `bytes` as a size heartwatch reads: whole MiB, rounded `up` or down.
fn mebibytes(bytes: u64, up: bool) -> u64 {
    let mib = 1024 * 1024;
    if up { bytes.div_ceil(mib) } else { bytes / mib }
}

/// How a translated rule escalates, from watchdog's repair settings.
struct Escalation {
    /// The `[Escalate]` lines with a repair.
    repair: Option<String>,
}

impl Escalation {
    fn section(&self, repairable: bool) -> String {
        let mut text = String::from("[Escalate]\n");
        if repairable && let Some(repair) = &self.repair {
            text.push_str(repair);
        }
        text.push_str("Finally=reboot\n");
        text
    }
}

/// Translates what `settings` ask for, or says which values are not what
/// their option takes (`file:line: why`). `page_size` converts watchdog's
/// memory pages; `programs` says which commands exist here.
fn translate(
    path: &Path,
    settings: &[Setting],
    page_size: u64,
    programs: &dyn Programs,
) -> Result<Translation, Vec<(usize, String)>> {
    let mut out = Translation::default();
    let asked = ask(path, settings, &mut out)?;
    build(path, &asked, page_size, programs, &mut out);
    out.notes.sort_by_key(|(line, _, _)| *line);
    Ok(out)
}

/// Adds a comment to heartwatch.conf's [Watchdog] section (after the
/// settings written so far).
fn conf_comment(out: &mut Translation, text: &str) {
    let _ = writeln!(out.settings, "# {text}");
}

/// What the rules of one translation share.
struct Context<'a> {
    path: &'a Path,
    asked: &'a Asked,
    programs: &'a dyn Programs,
    page_size: u64,
    /// watchdog's interval, in seconds.
    interval: u64,
    /// How often watchdog looked: its interval, at least a second.
    every: Duration,
    /// How long watchdog let an error last before it acted, in seconds.
    retry: u64,
    escalation: Escalation,
}

fn build(
    path: &Path,
    asked: &Asked,
    page_size: u64,
    programs: &dyn Programs,
    out: &mut Translation,
) {
    let interval = watchdog_settings(path, asked, out);
    let retry = timings(path, asked, out);
    let escalation = repairs(path, asked, programs, out);
    let cx = Context {
        path,
        asked,
        programs,
        page_size,
        interval,
        every: Duration::from_secs(interval.max(1)),
        retry,
        escalation,
    };
    load_rules(&cx, out);
    memory_rules(&cx, out);
    temperature_rules(&cx, out);
    file_rules(&cx, out);
    pidfile_rules(&cx, out);
    ping_rules(&cx, out);
    interface_rules(&cx, out);
    test_rules(&cx, out);
    decisions(&cx, out);
}

/// The [Watchdog] section; returns watchdog's interval in seconds.
fn watchdog_settings(path: &Path, asked: &Asked, out: &mut Translation) -> u64 {
    let shown = path.display();
    // [Watchdog]
    let mut conf = format!(
        "# Translated from {shown} by heartwatch import-watchdog-conf.\n# See heartwatch.conf(5).\n[Watchdog]\n"
    );
    match &asked.device {
        Some(d) => match rule_path(&d.value) {
            Ok(()) => {
                let _ = writeln!(conf, "# watchdog-device={}\nDevice={}", d.value, d.value);
                out.settings_summary.push(format!("Device={}", d.value));
            }
            Err(why) => {
                out.note_at(
                    path,
                    d.line,
                    "watchdog-device",
                    Note::NotTranslated,
                    &format!("{:?} {why}; heartwatch.conf says Device=none", d.value),
                );
                conf.push_str("Device=none\n");
                out.settings_summary.push("Device=none".into());
            }
        },
        None => {
            conf.push_str(
                "# watchdog.conf names no watchdog-device, so watchdog fed none; nor does this.\nDevice=none\n",
            );
            out.settings_summary
                .push("Device=none (watchdog-device= is not set: watchdog fed no device)".into());
        }
    }
    let timeout =
        match &asked.timeout {
            Some(t) => {
                let secs = t.value.clamp(2, 3600);
                if secs != t.value {
                    out.note_at(path, t.line, "watchdog-timeout", Note::Changed, &format!(
                    "{} s is outside the 2 s to 1 h heartwatch asks of a driver; Timeout={}",
                    t.value,
                    DurationText(Duration::from_secs(secs))
                ));
                }
                let d = Duration::from_secs(secs);
                let _ = writeln!(
                    conf,
                    "# watchdog-timeout={}\nTimeout={}",
                    t.value,
                    DurationText(d)
                );
                out.settings_summary
                    .push(format!("Timeout={}", DurationText(d)));
                d
            }
            None => Duration::from_secs(30),
        };
    let interval = asked
        .interval
        .as_ref()
        .map_or(WATCHDOG_INTERVAL, |i| i.value);
    if let Some(i) = &asked.interval {
        let wanted = Duration::from_secs(i.value);
        let feed = if wanted.is_zero() {
            out.note_at(
                path,
                i.line,
                "interval",
                Note::Changed,
                &format!(
                    "0 s is no interval; FeedInterval={} (a sixth of Timeout=)",
                    DurationText(timeout / 6)
                ),
            );
            timeout / 6
        } else if wanted > timeout / 2 {
            out.note_at(path, i.line, "interval", Note::Changed, &format!(
                "{} is more than half of Timeout={}; FeedInterval={} (heartwatch feeds at least twice a timeout)",
                DurationText(wanted),
                DurationText(timeout),
                DurationText(timeout / 2)
            ));
            timeout / 2
        } else {
            wanted
        };
        let _ = writeln!(
            conf,
            "# interval={} (also how often the command rules run)\nFeedInterval={}",
            i.value,
            DurationText(feed)
        );
        out.settings_summary
            .push(format!("FeedInterval={}", DurationText(feed)));
    }
    out.settings = conf;
    interval
}

/// How long watchdog let an error last before it acted, in seconds.
fn timings(path: &Path, asked: &Asked, out: &mut Translation) -> u64 {
    // How long an error may last before watchdog acts.
    let retry = match (&asked.softboot, &asked.retry_timeout) {
        (Some(s), _) if s.value => 0,
        (_, Some(r)) => r.value,
        _ => WATCHDOG_RETRY_TIMEOUT,
    };
    match &asked.softboot {
        Some(s) if s.value => {
            out.note_at(path, s.line, "softboot-option", Note::Changed,
                "yes sets retry-timeout to 0: errors are not let to last (see the interface and heartbeat rules)");
            if let Some(r) = &asked.retry_timeout {
                out.note_at(
                    path,
                    r.line,
                    "retry-timeout",
                    Note::NotTranslated,
                    &format!("softboot-option=yes on line {} sets it to 0", s.line),
                );
            }
        }
        Some(_) => conf_comment(
            out,
            "softboot-option=no: errors may last the retry-timeout, as the rules say",
        ),
        None => {}
    }
    if asked.device.is_some() && asked.timeout.is_none() {
        out.summary.push("note: watchdog-timeout= is not set: watchdog kept the driver's timeout; heartwatch asks it for Timeout=30s (set Timeout= to the driver's)".into());
    }
    retry
}

/// The repair every rule but the temperature ones gets, from repair-binary.
fn repairs(
    path: &Path,
    asked: &Asked,
    programs: &dyn Programs,
    out: &mut Translation,
) -> Escalation {
    // Repairs: watchdog runs repair-binary for every error but a too-hot one.
    let mut escalation = Escalation { repair: None };
    match &asked.repair_binary {
        Some(r) if !programs.executable(Path::new(&r.value)) || !r.value.starts_with('/') => {
            out.note_at(
                path,
                r.line,
                "repair-binary",
                Note::NotTranslated,
                &format!(
                    "{} is not an executable file here; the rules end in a reboot without a repair",
                    r.value
                ),
            );
        }
        Some(r) => {
            let timeout =
                match &asked.repair_timeout {
                    Some(t) if t.value == 0 => {
                        out.note_at(path, t.line, "repair-timeout", Note::Changed,
                        "0 (unlimited) is not allowed: every repair has a bound; RepairTimeout=1h");
                        Duration::from_secs(3600)
                    }
                    Some(t) => Duration::from_secs(t.value),
                    None => Duration::from_secs(WATCHDOG_REPAIR_TIMEOUT),
                };
            let attempts = match &asked.repair_maximum {
                Some(m) if m.value == 0 => {
                    out.note_at(path, m.line, "repair-maximum", Note::Changed,
                        "0 (a repair reporting success may block a reboot for ever) becomes RepairAttempts=1000, heartwatch's most");
                    1000
                }
                Some(m) if m.value > 1000 => {
                    out.note_at(
                        path,
                        m.line,
                        "repair-maximum",
                        Note::Changed,
                        "more than heartwatch's most; RepairAttempts=1000",
                    );
                    1000
                }
                Some(m) => m.value,
                None => u64::from(WATCHDOG_REPAIR_MAXIMUM),
            };
            out.note_at(path, r.line, "repair-binary", Note::Changed, &format!(
                "Repair={} on every rule but the temperature ones, run without the error number watchdog passes as its first argument: check that it copes",
                quote(&r.value)
            ));
            let from = |slot: &Option<At<u64>>, option: &str| {
                slot.as_ref()
                    .map_or(String::new(), |s| format!(", {option}={}", s.value))
            };
            escalation.repair = Some(format!(
                "# repair-binary={}{}{}\nRepair={}\nRepairTimeout={}\nRepairAttempts={attempts}\n",
                r.value,
                from(&asked.repair_timeout, "repair-timeout"),
                from(&asked.repair_maximum, "repair-maximum"),
                quote(&r.value),
                DurationText(timeout)
            ));
        }
        None => {
            for (option, slot) in [
                ("repair-timeout", &asked.repair_timeout),
                ("repair-maximum", &asked.repair_maximum),
            ] {
                if let Some(s) = slot {
                    out.note_at(
                        path,
                        s.line,
                        option,
                        Note::NotTranslated,
                        "no repair-binary= to apply it to",
                    );
                }
            }
        }
    }
    escalation
}

/// [System] LoadAverage= rules.
fn load_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, escalation) = (cx.path, cx.asked, &cx.escalation);
    // [System] load averages: max-load-5 and -15 default to 3/4 and 1/2 of
    // max-load-1 in watchdog.
    let spans = ["1min", "5min", "15min"];
    let load1 = asked.max_load[0].as_ref().map_or(0, |l| l.value);
    for (i, span) in spans.iter().enumerate() {
        let (max, from) = match &asked.max_load[i] {
            Some(l) => (
                l.value,
                format!("max-load-{}={}", &span[..span.len() - 3], l.value),
            ),
            None if load1 > 0 && i > 0 => {
                let derived = if i == 1 { load1 * 3 / 4 } else { load1 / 2 };
                (
                    derived,
                    format!(
                        "max-load-{} unset: watchdog's {} of max-load-1",
                        &span[..span.len() - 3],
                        if i == 1 { "3/4" } else { "1/2" }
                    ),
                )
            }
            None => continue,
        };
        if max == 0 {
            if let Some(l) = &asked.max_load[i] {
                out.note_at(
                    path,
                    l.line,
                    &format!("max-load-{}", &span[..span.len() - 3]),
                    Note::NotTranslated,
                    "0: off, as in watchdog",
                );
            }
            continue;
        }
        let name = rule_name("load", span, &out.rules);
        let text = format!(
            "# {from}\n[System]\nLoadAverage={span}\nMaxLoad={max}\nFor={}\n{}",
            DurationText(RESOURCE_FOR),
            escalation.section(true)
        );
        out.rules.push(RuleFile {
            summary: format!(
                "{span} load average above {max} for {}",
                DurationText(RESOURCE_FOR)
            ),
            name,
            text,
        });
    }
}

/// [System] MinMemoryAvailable= and MaxSwapUsed= rules, from pages.
fn memory_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, page_size, escalation) = (cx.path, cx.asked, cx.page_size, &cx.escalation);
    // [System] memory, from pages.
    let memory = [
        ("min-memory", &asked.min_memory, "memory-available", true),
        (
            "allocatable-memory",
            &asked.allocatable_memory,
            "memory-allocatable",
            true,
        ),
        ("max-swap", &asked.max_swap, "swap-used", false),
    ];
    for (option, slot, kind, minimum) in memory {
        let Some(pages) = slot else { continue };
        if pages.value == 0 {
            out.note_at(
                path,
                pages.line,
                option,
                Note::NotTranslated,
                "0: off, as in watchdog",
            );
            continue;
        }
        let bytes = pages.value.saturating_mul(page_size);
        let mib = mebibytes(bytes, minimum).max(1);
        let key = if minimum {
            "MinMemoryAvailable"
        } else {
            "MaxSwapUsed"
        };
        let exact = bytes % (1024 * 1024) == 0;
        let why = match option {
            "allocatable-memory" => ", MemAvailable rather than a trial mapping",
            "min-memory" => ", MemAvailable rather than MemFree + Buffers + Cached",
            _ => "",
        };
        if !exact || !why.is_empty() {
            out.note_at(
                path,
                pages.line,
                option,
                Note::Changed,
                &format!(
                    "{} of {page_size} bytes{}: {key}={mib}M{why}",
                    Count::of(usize::try_from(pages.value).unwrap_or(usize::MAX), "page"),
                    if exact { "" } else { ", rounded to whole MiB" }
                ),
            );
        }
        let name = rule_name(kind, "", &out.rules);
        let text = format!(
            "# {option}={} (pages of {page_size} bytes)\n[System]\n{key}={mib}M\nFor={}\n{}",
            pages.value,
            DurationText(RESOURCE_FOR),
            escalation.section(true)
        );
        out.rules.push(RuleFile {
            summary: format!(
                "{} {mib} MiB for {}",
                if minimum {
                    "available memory below"
                } else {
                    "swap in use above"
                },
                DurationText(RESOURCE_FOR)
            ),
            name,
            text,
        });
    }
}

/// [System] TemperatureSensor= rules, one per sensor.
fn temperature_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, escalation) = (cx.path, cx.asked, &cx.escalation);
    // [System] temperatures: one rule per sensor.
    let max_temperature = asked
        .max_temperature
        .as_ref()
        .map_or(u64::from(WATCHDOG_MAX_TEMPERATURE), |t| t.value);
    if asked.sensors.is_empty()
        && let Some(t) = &asked.max_temperature
    {
        out.note_at(
            path,
            t.line,
            "max-temperature",
            Note::NotTranslated,
            "no temperature-sensor= to compare it with",
        );
    }
    for sensor in &asked.sensors {
        if let Err(why) = rule_path(&sensor.value) {
            out.note_at(
                path,
                sensor.line,
                "temperature-sensor",
                Note::NotTranslated,
                &format!("{:?} {why}", sensor.value),
            );
            continue;
        }
        out.note_at(
            path,
            sensor.line,
            "temperature-sensor",
            Note::Changed,
            "watchdog ignores a sensor it cannot read; this rule fails then, at once: name the sensor by its thermal zone type or hwmon label (TemperatureSensor=, heartwatch.rules(5)) if its number may change between boots",
        );
        let subject = sensor
            .value
            .trim_start_matches("/sys/class/")
            .trim_start_matches("/sys/");
        let name = rule_name("temperature", subject, &out.rules);
        let text = format!(
            "# temperature-sensor={}, max-temperature={max_temperature}\n[System]\nTemperatureSensor={}\nMaxTemperature={max_temperature}\nCheckInterval={}\nFor={}\n{}",
            sensor.value,
            sensor.value,
            DurationText(TEMPERATURE_CHECK_INTERVAL),
            DurationText(TEMPERATURE_FOR),
            escalation.section(false)
        );
        out.rules.push(RuleFile {
            summary: format!(
                "{} above {max_temperature} °C for {}",
                sensor.value,
                DurationText(TEMPERATURE_FOR)
            ),
            name,
            text,
        });
    }
}

/// [Heartbeat] rules for files with change=, [Command] `test -e` rules for
/// those without.
fn file_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, programs, every, retry, escalation) = (
        cx.path,
        cx.asked,
        cx.programs,
        cx.every,
        cx.retry,
        &cx.escalation,
    );
    // [Heartbeat] files with change=, [Command] `test -e` for those without.
    let test = programs.find("test");
    for check in &asked.files {
        let file = &check.file;
        if let Err(why) = rule_path(&file.value) {
            out.note_at(
                path,
                file.line,
                "file",
                Note::NotTranslated,
                &format!("{:?} {why}", file.value),
            );
            continue;
        }
        match &check.change {
            Some(change) if change.value > 0 => {
                let max_age = Duration::from_secs(change.value + retry);
                if retry > 0 {
                    out.note_at(path, change.line, "change", Note::Changed, &format!(
                        "MaxAge={}: change= plus the {} retry-timeout watchdog let the error last",
                        DurationText(max_age),
                        DurationText(Duration::from_secs(retry))
                    ));
                }
                let name = rule_name("heartbeat", &file.value, &out.rules);
                let text = format!(
                    "# file={}, change={}\n[Heartbeat]\nFile={}\nMaxAge={}\n{}",
                    file.value,
                    change.value,
                    file.value,
                    DurationText(max_age),
                    escalation.section(true)
                );
                out.rules.push(RuleFile {
                    summary: format!("{} not modified for {}", file.value, DurationText(max_age)),
                    name,
                    text,
                });
            }
            _ => {
                let Some(test) = &test else {
                    out.note_at(path, file.line, "file", Note::NotTranslated,
                        "without change= watchdog only looks that it exists, and there is no `test` program here to do that");
                    continue;
                };
                let name = rule_name("exists", &file.value, &out.rules);
                out.rules.push(command_rule(
                    name,
                    &format!("file={} (no change=: it must exist)", file.value),
                    &format!("{} -e {}", test.display(), quote(&file.value)),
                    every,
                    PROBE_TIMEOUT.min(every),
                    escalation,
                    format!("{} exists", file.value),
                ));
            }
        }
    }
}

/// [Process] rules.
fn pidfile_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, escalation) = (cx.path, cx.asked, &cx.escalation);
    // [Process] pidfiles.
    for pidfile in &asked.pidfiles {
        if let Err(why) = rule_path(&pidfile.value) {
            out.note_at(
                path,
                pidfile.line,
                "pidfile",
                Note::NotTranslated,
                &format!("{:?} {why}", pidfile.value),
            );
            continue;
        }
        let stem = Path::new(&pidfile.value)
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".pid").to_string())
            .unwrap_or_default();
        let name = rule_name("process", &stem, &out.rules);
        let text = format!(
            "# pidfile={}\n[Process]\nPidFile={}\n{}",
            pidfile.value,
            pidfile.value,
            escalation.section(true)
        );
        out.rules.push(RuleFile {
            summary: format!("the process in {} is alive", pidfile.value),
            name,
            text,
        });
    }
}

/// [Command] ping rules.
fn ping_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, programs, every, escalation) =
        (cx.path, cx.asked, cx.programs, cx.every, &cx.escalation);
    // [Command] pings.
    let ping = programs.find("ping");
    for host in &asked.pings {
        let plain = !host.value.is_empty()
            && host
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-".contains(c));
        if !plain || host.value.starts_with('-') {
            out.note_at(
                path,
                host.line,
                "ping",
                Note::NotTranslated,
                &format!("{:?} is not an address", host.value),
            );
            continue;
        }
        let Some(ping) = &ping else {
            out.note_at(
                path,
                host.line,
                "ping",
                Note::NotTranslated,
                "there is no `ping` program here (Debian's iputils-ping has one)",
            );
            continue;
        };
        let name = rule_name("ping", &host.value, &out.rules);
        out.rules.push(command_rule(
            name,
            &format!("ping={}", host.value),
            &format!("{} -c 1 -W 1 {}", ping.display(), host.value),
            every,
            PROBE_TIMEOUT.min(every),
            escalation,
            format!("{} answers a ping", host.value),
        ));
    }
}

/// [Interface] rules.
fn interface_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, interval, every, retry, escalation) = (
        cx.path,
        cx.asked,
        cx.interval,
        cx.every,
        cx.retry,
        &cx.escalation,
    );
    // [Interface]: watchdog fails an interface whose receive counter did not
    // move in an interval, once that has lasted the retry-timeout.
    for interface in &asked.interfaces {
        let v = &interface.value;
        let valid = !v.is_empty()
            && v.len() <= 15
            && v != "."
            && v != ".."
            && !v.contains(['/', ':'])
            && !v.contains(char::is_whitespace);
        if !valid {
            out.note_at(
                path,
                interface.line,
                "interface",
                Note::NotTranslated,
                &format!("{v:?} is not a network interface name"),
            );
            continue;
        }
        let within = Duration::from_secs(interval.max(1) + retry);
        let name = rule_name("interface", v, &out.rules);
        let text = format!(
            "# interface={v}: no packet received in an interval ({}) plus the retry-timeout ({})\n[Interface]\nName={v}\nWithin={}\n{}",
            DurationText(every),
            DurationText(Duration::from_secs(retry)),
            DurationText(within),
            escalation.section(true)
        );
        out.rules.push(RuleFile {
            summary: format!(
                "{v} is up and receives a packet within {}",
                DurationText(within)
            ),
            name,
            text,
        });
    }
}

/// [Command] rules for the test binaries.
fn test_rules(cx: &Context, out: &mut Translation) {
    let (path, asked, programs, every, escalation) =
        (cx.path, cx.asked, cx.programs, cx.every, &cx.escalation);
    // [Command] test binaries.
    let test_timeout = match &asked.test_timeout {
        Some(t) if t.value == 0 => {
            if !asked.test_binaries.is_empty() {
                out.note_at(
                    path,
                    t.line,
                    "test-timeout",
                    Note::Changed,
                    &format!(
                        "0 (unlimited) is not allowed: every check has a bound; Timeout={}",
                        DurationText(Duration::from_secs(WATCHDOG_TEST_TIMEOUT))
                    ),
                );
            }
            Duration::from_secs(WATCHDOG_TEST_TIMEOUT)
        }
        Some(t) => Duration::from_secs(t.value),
        None => Duration::from_secs(WATCHDOG_TEST_TIMEOUT),
    };
    if asked.test_binaries.is_empty()
        && let Some(t) = &asked.test_timeout
    {
        out.note_at(
            path,
            t.line,
            "test-timeout",
            Note::NotTranslated,
            "no test-binary= to apply it to",
        );
    }
    for binary in &asked.test_binaries {
        if !binary.value.starts_with('/') || !programs.executable(Path::new(&binary.value)) {
            out.note_at(
                path,
                binary.line,
                "test-binary",
                Note::NotTranslated,
                &format!("{} is not an executable file here", binary.value),
            );
            continue;
        }
        let run_every = every.max(test_timeout);
        if run_every > every {
            out.note_at(path, binary.line, "test-binary", Note::Changed, &format!(
                "runs every {} (its Timeout=), not every interval: heartwatch runs a check again only after the last run ended",
                DurationText(run_every)
            ));
        }
        let stem = Path::new(&binary.value)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = rule_name("command", &stem, &out.rules);
        out.rules.push(command_rule(
            name,
            &format!(
                "test-binary={}{}",
                binary.value,
                asked
                    .test_timeout
                    .as_ref()
                    .map_or(String::new(), |t| format!(", test-timeout={}", t.value))
            ),
            &quote(&binary.value),
            run_every,
            test_timeout,
            escalation,
            format!("{} exits 0", binary.value),
        ));
    }
}

/// The report's lines for what applies to many rules at once.
fn decisions(cx: &Context, out: &mut Translation) {
    let (path, asked) = (cx.path, cx.asked);
    // What applies to many rules at once.
    if let Some(r) = &asked.retry_timeout
        && asked.softboot.as_ref().is_none_or(|s| !s.value)
    {
        out.note_at(path, r.line, "retry-timeout", Note::Changed,
            "added to the interface rules' Within= and the heartbeat rules' MaxAge=; process and command rules fail at once, and their [Escalate] paces what follows");
    }
    if asked.max_load.iter().any(Option::is_some)
        || asked.min_memory.is_some()
        || asked.allocatable_memory.is_some()
        || asked.max_swap.is_some()
    {
        out.summary.push(format!(
            "note: watchdog acts on one sample of a load average or of memory; the system rules fail only once it has lasted For={} (a spike does not reboot; edit For= to change it)",
            DurationText(RESOURCE_FOR)
        ));
    }
    if !asked.sensors.is_empty() {
        out.summary.push(format!(
            "note: watchdog powers off on one too hot sample; the temperature rules reboot after For={} above MaxTemperature=",
            DurationText(TEMPERATURE_FOR)
        ));
    }
    if !out.rules.is_empty() {
        out.summary.push(
            "note: every rule ends in Finally=reboot, as watchdog reboots when a check fails"
                .into(),
        );
    }
}

fn command_rule(
    name: String,
    from: &str,
    run: &str,
    interval: Duration,
    timeout: Duration,
    escalation: &Escalation,
    summary: String,
) -> RuleFile {
    let timeout = timeout.min(interval);
    RuleFile {
        text: format!(
            "# {from}\n[Command]\nRun={run}\nInterval={}\nTimeout={}\n{}",
            DurationText(interval),
            DurationText(timeout),
            escalation.section(true)
        ),
        summary: format!("{summary} (run every {})", DurationText(interval)),
        name,
    }
}

/// Writes every file below `dir`, each replacing any old one atomically
/// (a temporary file, fsync, rename), creating `dir` and `dir/rules.d`.
fn write_files(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    let rules = dir.join("rules.d");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&rules)
        .map_err(|e| format!("{}: cannot create: {e}", rules.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        let tmp = path.with_file_name(format!(
            ".{}.import-tmp",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let written = (|| -> std::io::Result<()> {
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(path.parent().unwrap_or(dir))?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("{}: cannot write: {e}", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Everything;

    impl Programs for Everything {
        fn executable(&self, _: &Path) -> bool {
            true
        }
    }

    fn translated(text: &str) -> Translation {
        let path = Path::new("/w.conf");
        let (settings, errors) = read_settings(path, text);
        assert!(errors.is_empty(), "{errors:?}");
        translate(path, &settings, 4096, &Everything).unwrap()
    }

    #[test]
    fn rule_names_are_clean_short_and_unique() {
        let mut taken = Vec::new();
        for subject in ["/var/run/a b.pid", "/var/run/a b.pid", "", "//x//"] {
            let name = rule_name("process", subject, &taken);
            taken.push(RuleFile {
                name,
                text: String::new(),
                summary: String::new(),
            });
        }
        let names: Vec<&str> = taken.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "process-var-run-a-b.pid",
                "process-var-run-a-b.pid-2",
                "process",
                "process-x"
            ]
        );
        let long = "/".to_string() + &"d".repeat(100);
        let first = rule_name("heartbeat", &long, &[]);
        assert_eq!(first.len(), 64);
        let taken = [RuleFile {
            name: first,
            text: String::new(),
            summary: String::new(),
        }];
        let second = rule_name("heartbeat", &long, &taken);
        assert_eq!(second.len(), 64);
        assert!(second.ends_with("-2"), "{second}");
    }

    #[test]
    fn words_are_quoted_for_parse_argv() {
        assert_eq!(quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(quote("/opt/my check"), "'/opt/my check'");
        assert_eq!(quote("#x"), "'#x'");
        assert_eq!(quote("it's"), "\"it's\"");
    }

    #[test]
    fn the_last_of_an_option_counts_and_the_first_is_said() {
        let t = translated("interval = 3\ninterval = 4\n");
        assert!(t.settings.contains("FeedInterval=4s"), "{}", t.settings);
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        assert!(
            t.notes[0]
                .2
                .starts_with("/w.conf:1: interval=: not translated: given again on line 2")
        );
    }

    #[test]
    fn max_load_5_and_15_follow_max_load_1_as_in_watchdog() {
        let t = translated("max-load-1 = 10\nmax-load-15 = 0\n");
        let names: Vec<&str> = t.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["load-1min", "load-5min"]);
        assert!(
            t.rules[1].text.contains("MaxLoad=7\n"),
            "{}",
            t.rules[1].text
        );
    }

    #[test]
    fn softboot_takes_the_retry_timeout_away() {
        let t = translated(
            "softboot-option = yes\nretry-timeout = 30\ninterface = eth0\ninterval = 2\n",
        );
        assert!(
            t.rules[0].text.contains("Within=2s\n"),
            "{}",
            t.rules[0].text
        );
        assert!(
            t.notes
                .iter()
                .any(|(l, k, _)| *l == 2 && *k == Note::NotTranslated)
        );
    }

    #[test]
    fn values_an_option_does_not_take_are_malformed() {
        let path = Path::new("/w.conf");
        let (settings, _) = read_settings(
            path,
            "max-load-1 = 2.5\nchange = 5\nsoftboot-option = maybe\n",
        );
        let errors = translate(path, &settings, 4096, &Everything).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 3], "{errors:?}");
    }

    #[test]
    fn paths_into_etc_must_be_named_so() {
        assert!(target(None).is_err());
        assert!(target(Some("/etc/heartwatch")).is_ok());
        assert!(target(Some("/etc/../etc/heartwatch")).is_err());
        assert!(target(Some("/tmp/../etc/x")).is_err());
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
