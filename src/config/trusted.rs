//! Reading the configuration from disk, trusting only what root could have
//! written: `heartwatch.conf` and `rules.d` must be owned by root (or by
//! whoever runs heartwatch) and writable by nobody else, and so must every
//! directory a rule's symlink leads to. Files are looked at before they
//! are opened, so that a device or a FIFO put in their place does nothing.

use super::schema::{parse_rule, parse_settings};
use super::types::{Config, ConfigError, DaemonSettings, RebootSettings, Rule, WatchdogSettings};
use nix::errno::Errno;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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

/// What opening or listing `dir` gave; a missing rules.d is an empty one,
/// any other error is the directory's.
fn opened<T>(result: std::io::Result<T>, dir: &Path, errors: &mut Vec<ConfigError>) -> Option<T> {
    match result {
        Ok(it) => Some(it),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(ConfigError::file(
                dir,
                format!("cannot read directory: {e}"),
            ));
            None
        }
    }
}

fn load_rules(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<Rule> {
    // The directory is opened once: its trust is read from the descriptor
    // and each rule is opened relative to it, one name to look up instead
    // of the whole path (at 10 000 rules the path walks of the lstat,
    // open and fstat of every file were most of the start-up's kernel time).
    let Some(dir_fd) = opened(open_dir(dir), dir, errors) else {
        return Vec::new();
    };
    let Some(entries) = opened(fs::read_dir(dir), dir, errors) else {
        return Vec::new();
    };
    if let Err(e) = check_trust_stat(dir, fstat(&dir_fd)) {
        errors.push(e);
        return Vec::new();
    }
    // By file name: the same order as sorting the paths (one directory),
    // without comparing them component by component (at 10 000 rules that
    // was a third of the start-up's instructions). With each name, whether
    // the listing already says it is a regular file (no lstat needed).
    let mut names: Vec<(std::ffi::OsString, bool)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                let bytes = name.as_encoded_bytes();
                if bytes.ends_with(b".rule") && !bytes.starts_with(b".") {
                    // The listing's d_type: no system call where the
                    // filesystem gives it.
                    let regular = entry.file_type().is_ok_and(|t| t.is_file());
                    names.push((name, regular));
                }
            }
            Err(e) => errors.push(ConfigError::file(dir, format!("cannot list: {e}"))),
        }
    }
    names.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    let (rules, mut rule_errors) = read_rules_split(&dir_fd, dir, &names);
    errors.append(&mut rule_errors);
    rules
}

/// Below this many rules one thread reads them all: a thread costs more
/// than it saves.
const SPLIT_FROM: usize = 512;
/// The reading thread's stack: parsing does not recurse, and glibc keeps
/// an exited thread's stack for the next, its touched pages resident.
const READER_STACK: usize = 256 * 1024;

/// Reads and parses the rules `names` of `dir`, in order: the first half
/// on a thread of its own while this one reads the second (most of a large
/// load is the kernel opening and reading files, and parsing them; on two
/// cores the halves overlap). The rules and the errors come out in the
/// order of the names, as if read by one thread.
fn read_rules_split(
    dir_fd: &OwnedFd,
    dir: &Path,
    names: &[(std::ffi::OsString, bool)],
) -> (Vec<Rule>, Vec<ConfigError>) {
    if names.len() < SPLIT_FROM {
        return read_rules(dir_fd, dir, names);
    }
    let (first, second) = names.split_at(names.len() / 2);
    let ((mut rules, mut errors), (more_rules, mut more_errors)) = std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("read-rules".into())
            .stack_size(READER_STACK)
            .spawn_scoped(scope, || read_rules(dir_fd, dir, first));
        let second = read_rules(dir_fd, dir, second);
        let first = match helper {
            Ok(helper) => helper.join().expect("reading rules does not panic"),
            // No thread to be had: this one reads both halves.
            Err(_) => read_rules(dir_fd, dir, first),
        };
        (first, second)
    });
    let mut more_rules = more_rules.into_iter();
    if let Some(mut rule) = more_rules.next() {
        share_ladder(&rules, &mut rule);
        rules.push(rule);
    }
    rules.extend(more_rules);
    errors.append(&mut more_errors);
    (rules, errors)
}

/// Rules with the same ladder as the rule before them (most have none of
/// their own: the default) share one copy of its settings.
fn share_ladder(rules: &[Rule], rule: &mut Rule) {
    if let Some(last) = rules.last().filter(|l| l.ladder == rule.ladder) {
        rule.ladder = std::sync::Arc::clone(&last.ladder);
    }
}

/// Reads and parses the rules `names` of `dir`, in order.
fn read_rules(
    dir_fd: &OwnedFd,
    dir: &Path,
    names: &[(std::ffi::OsString, bool)],
) -> (Vec<Rule>, Vec<ConfigError>) {
    let mut rules = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    let mut buf = Vec::new();
    for (name, regular) in names {
        let path = dir.join(name);
        let parsed = read_rule(dir_fd, &path, name, *regular, &mut buf)
            .map_err(|e| vec![e])
            .and_then(|text| {
                let name = rule_name(&path).map_err(|m| vec![ConfigError::file(&path, m)])?;
                parse_rule(&path, &name, text.as_str())
            });
        match parsed {
            Ok(mut rule) => {
                share_ladder(&rules, &mut rule);
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
    (rules, errors)
}

/// A rule file's text: borrowed from the buffer the directory's rules are
/// read into, or read by path.
enum Text<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// Reads the rule `name` of the directory `dir_fd`. One the listing says
/// is a regular file is opened relative to the directory, without
/// following a symlink, checked on its descriptor (owner, mode, still a
/// regular file, size) and read with one `read` into `buf`, reused from
/// rule to rule: four system calls. Anything else (a symlink, a FIFO, a
/// filesystem whose listing does not tell) goes the way `heartwatch.conf`
/// goes, [`read_trusted`], which looks before it opens.
fn read_rule<'a>(
    dir_fd: &OwnedFd,
    path: &Path,
    name: &OsStr,
    regular: bool,
    buf: &'a mut Vec<u8>,
) -> Result<Text<'a>, ConfigError> {
    if !regular {
        return read_trusted(path).map(Text::Owned);
    }
    let Ok(c_name) = CString::new(name.as_encoded_bytes()) else {
        return read_trusted(path).map(Text::Owned);
    };
    // O_NONBLOCK so that a FIFO swapped in since the listing cannot stall
    // us; O_NOFOLLOW so that a symlink swapped in is not opened here (it
    // goes the long way, and its directory is checked).
    let flags =
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let file = match crate::sys::fs::openat(dir_fd.as_fd(), &c_name, flags, 0) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return read_trusted(path).map(Text::Owned),
        Err(e) => {
            let e = std::io::Error::from(e);
            return Err(ConfigError::file(path, format!("cannot open: {e}")));
        }
    };
    let st = fstat(&file);
    check_trust_stat(path, st.clone())?;
    let st = st.expect("checked by check_trust_stat");
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        let kind = crate::regular::kind(st.st_mode);
        return Err(ConfigError::file(
            path,
            format!("is not a regular file ({kind})"),
        ));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(ConfigError::file(
            path,
            format!("is {size} bytes; the largest accepted is {MAX_FILE_BYTES}"),
        ));
    }
    let len = read_up_to(&file, size as usize, buf)
        .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
    let bytes = &buf[..len];
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Text::Borrowed(text)),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            Err(ConfigError::at(path, line, "is not UTF-8 text"))
        }
    }
}

/// Reads `file` (of `size` bytes by its fstat) into `buf`, at most
/// `MAX_FILE_BYTES + 1` bytes, as `read_to_end` would; the bytes read. A
/// read that stops short exactly at `size` is the end: one `read` for a
/// file that did not change since its fstat.
fn read_up_to(file: &OwnedFd, size: usize, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let limit = MAX_FILE_BYTES as usize + 1;
    buf.clear();
    buf.resize((size + 1).min(limit), 0);
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= limit {
                return Ok(len);
            }
            buf.resize((len * 2).clamp(64, limit), 0);
        }
        match crate::sys::fs::read(file.as_fd(), &mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => {
                len += n;
                if len == size && len < buf.len() {
                    return Ok(len);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens a directory for the `openat` of its files.
fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let c_dir = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(Errno::EINVAL))?;
    crate::sys::fs::open(&c_dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .map_err(std::io::Error::from)
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, String> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| std::io::Error::from(e).to_string())
}

/// [`check_trust`] of what an `fstat` said.
fn check_trust_stat(path: &Path, st: Result<libc::stat, String>) -> Result<(), ConfigError> {
    let st = st.map_err(|e| ConfigError::file(path, format!("cannot stat: {e}")))?;
    match distrust(path, st.st_uid, st.st_mode, "rules run commands as root") {
        Some(why) => Err(ConfigError::file(path, why)),
        None => Ok(()),
    }
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
