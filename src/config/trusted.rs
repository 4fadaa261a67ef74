//! Reading the configuration from disk, trusting only what root could have
//! written: `heartwatch.conf` and `rules.d` must be owned by root (or by
//! whoever runs heartwatch) and writable by nobody else, and so must every
//! directory a rule's symlink leads to. Files are looked at before they
//! are opened, so that a device or a FIFO put in their place does nothing.

use super::schema::{parse_rule, parse_settings};
use super::types::{Config, ConfigError, DaemonSettings, RebootSettings, Rule, WatchdogSettings};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest configuration or rule file accepted.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Reads and validates the configuration under `root`. Returns every error
/// found, not just the first.
pub fn load(root: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();
    // Whoever can write the root can swap heartwatch.conf or rules.d.
    if let Err(e) = check_trust(root, &fs::metadata(root).map_err(|e| e.to_string())) {
        errors.push(e);
    }
    let conf_path = root.join("heartwatch.conf");
    let settings = match read_trusted(&conf_path) {
        Ok(text) => parse_settings(&conf_path, &text),
        Err(e) => Err(vec![e]),
    };
    let rules_dir = root.join("rules.d");
    let rules = load_rules(&rules_dir, &mut errors);
    assemble(root, settings, rules, errors)
}

/// The configuration under `root` from its parsed parts: whole, or every
/// error found in any of them (the settings' first).
pub fn assemble(
    root: &Path,
    settings: Result<(WatchdogSettings, DaemonSettings, RebootSettings), Vec<ConfigError>>,
    rules: Vec<Rule>,
    mut errors: Vec<ConfigError>,
) -> Result<Config, Vec<ConfigError>> {
    match settings {
        Ok((watchdog, daemon, reboot)) if errors.is_empty() => Ok(Config {
            root: root.to_path_buf(),
            watchdog,
            daemon,
            reboot,
            rules,
        }),
        Ok(_) => Err(errors),
        Err(mut e) => {
            e.append(&mut errors);
            Err(e)
        }
    }
}

fn load_rules(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<Rule> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(ConfigError::file(
                dir,
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    if let Err(e) = check_trust(dir, &fs::metadata(dir).map_err(|e| e.to_string())) {
        errors.push(e);
        return Vec::new();
    }
    // By file name: the same order as sorting the paths (one directory),
    // without comparing them component by component (at 10 000 rules that
    // was a third of the start-up's instructions).
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                let text = name.to_string_lossy();
                if text.ends_with(".rule") && !text.starts_with('.') {
                    names.push(name);
                }
            }
            Err(e) => errors.push(ConfigError::file(dir, format!("cannot list: {e}"))),
        }
    }
    names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    let mut rules = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(name);
        let parsed = read_trusted(&path).map_err(|e| vec![e]).and_then(|text| {
            let name = rule_name(&path).map_err(|m| vec![ConfigError::file(&path, m)])?;
            parse_rule(&path, &name, &text)
        });
        match parsed {
            Ok(mut rule) => {
                // Rules with the same ladder (most have none of their own:
                // the default) share one copy of its settings.
                if let Some(last) = rules.last().filter(|l: &&Rule| l.ladder == rule.ladder) {
                    rule.ladder = std::sync::Arc::clone(&last.ladder);
                }
                rules.push(rule)
            }
            // Removed since the directory was listed (a package upgrade,
            // an admin): it is simply not a rule any more. A dangling
            // symlink is still there, and still an error.
            Err(_)
                if fs::symlink_metadata(&path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    rules
}

/// A rule's name is its file name without `.rule`.
fn rule_name(path: &Path) -> Result<String, String> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".rule"))
        .ok_or("the file name is not UTF-8")?;
    let ok = !stem.is_empty()
        && stem.len() <= 64
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if ok {
        Ok(stem.to_string())
    } else {
        Err(format!(
            "rule name {stem:?} must be 1 to 64 characters of letters, digits and -_.@:"
        ))
    }
}

/// Reads a file that may make heartwatch run commands as root: it must be a
/// regular file owned by root (or by whoever runs heartwatch) and writable
/// by nobody else, in a directory that is just as safe, and small.
fn read_trusted(path: &Path) -> Result<String, ConfigError> {
    // Look before opening: opening a device can act (opening a watchdog
    // arms it), and a FIFO could stall the read. One lstat tells a symlink
    // (looked through, and its directory checked below) from a file.
    let cannot_open = |e: std::io::Error| ConfigError::file(path, format!("cannot open: {e}"));
    let link = fs::symlink_metadata(path).map_err(cannot_open)?;
    let symlink = link.file_type().is_symlink();
    let meta = if symlink {
        fs::metadata(path).map_err(cannot_open)?
    } else {
        link
    };
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    // O_NONBLOCK so that a FIFO swapped in since the look cannot stall us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| ConfigError::file(path, format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| e.to_string());
    check_trust(path, &meta)?;
    let meta = meta.expect("checked by check_trust");
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    if symlink {
        check_symlink_target(path)?;
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::file(
            path,
            format!(
                "is {} bytes; the largest accepted is {MAX_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError::at(path, line, "is not UTF-8 text")
    })
}

fn not_regular(path: &Path, meta: &fs::Metadata) -> ConfigError {
    use std::os::unix::fs::MetadataExt;
    let kind = crate::regular::kind(meta.mode());
    ConfigError::file(path, format!("is not a regular file ({kind})"))
}

/// A rule may be a symlink, but the directory it really lives in must be
/// as safe as rules.d: whoever can write there can swap the rule.
fn check_symlink_target(path: &Path) -> Result<(), ConfigError> {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    let target = fs::canonicalize(path)
        .map_err(|e| ConfigError::file(path, format!("cannot resolve the symlink: {e}")))?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    check_trust(dir, &fs::metadata(dir).map_err(|e| e.to_string())).map_err(|e| {
        ConfigError::file(
            path,
            format!(
                "is a symlink to {}, and its directory {e}",
                target.display()
            ),
        )
    })
}

fn check_trust(path: &Path, meta: &Result<fs::Metadata, String>) -> Result<(), ConfigError> {
    let meta = meta
        .as_ref()
        .map_err(|e| ConfigError::file(path, format!("cannot stat: {e}")))?;
    match distrust(path, meta.uid(), meta.mode(), "rules run commands as root") {
        Some(why) => Err(ConfigError::file(path, why)),
        None => Ok(()),
    }
}

/// Why a file or directory with this owner and mode is not safe for a
/// daemon running as root (`stake` says what is at stake), with the fix;
/// None when it is: owned by root or the running user, and not writable by
/// group or others.
pub fn distrust(path: &Path, uid: u32, mode: u32, stake: &str) -> Option<String> {
    // Asked once: at 10 000 rules it was one system call per rule.
    static ME: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let me = *ME.get_or_init(|| nix::unistd::geteuid().as_raw());
    if uid != 0 && uid != me {
        return Some(format!(
            "refused: owned by uid {uid}, not root; {stake} (fix: chown root: {})",
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "refused: mode {:04o} lets group or others write it; {stake} (fix: chmod go-w {})",
            mode & 0o7777,
            path.display()
        ));
    }
    None
}
