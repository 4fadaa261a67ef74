//! `heartwatch beat NAME`: touches a heartbeat rule's file, found by the
//! rule's name.

use super::files::{OpenError, open_regular};
use crate::config::Watch;
use crate::regular::{FdPath, Symlink};
use crate::report::{EXIT_FAILURE, EXIT_USAGE, complain};
use std::io::Write;
use std::path::Path;

pub(super) fn beat(root: &Path, name: &str) -> Result<(), u8> {
    let config = super::load(root)?;
    let rule = config
        .rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            complain!("heartwatch: no rule named {name:?} in {}", root.display());
            EXIT_USAGE
        })?;
    let Watch::Heartbeat(spec) = &rule.watch else {
        complain!("heartwatch: rule {name:?} is not a heartbeat rule");
        return Err(EXIT_USAGE);
    };
    touch(&spec.file).map_err(|e| {
        complain!(
            "heartwatch: {}: {}",
            spec.file.display(),
            e.explain("heartwatch beat touches only regular files")
        );
        EXIT_FAILURE
    })
}

/// Sets a heartbeat file's modification time to now, creating it if
/// missing. Only a regular file is touched: never a final symlink (its
/// target could be any file, created or touched as root), never a FIFO, a
/// device (opening a watchdog arms it) or a directory.
pub fn touch(path: &Path) -> Result<(), OpenError> {
    let fd = match open_regular(path, Symlink::Refuse) {
        Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            match create_new(path) {
                Ok(()) => return Ok(()),
                // Made by someone else since the look: touch what is there.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    open_regular(path, Symlink::Refuse)?
                }
                Err(e) => return Err(OpenError::Io(e)),
            }
        }
        other => other?,
    };
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    nix::sys::stat::utimensat(
        None,
        FdPath::of(&fd).as_path(),
        &now,
        &now,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .map_err(|e| OpenError::Io(e.into()))
}

/// Creates a missing heartbeat file; fails if anything, even a dangling
/// symlink, appeared in its place (`O_EXCL` never follows a link).
fn create_new(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map(drop)
}
