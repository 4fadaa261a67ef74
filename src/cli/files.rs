//! Opening files for the command line: only regular files, never a device
//! (opening a watchdog arms it), never blocking on a FIFO.

use crate::sys::regular::{self, FdPath, NotOpened, Symlink};
use std::ffi::CString;
use std::fmt;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why the command line did not open a file.
#[derive(Debug)]
pub enum OpenError {
    /// Something other than a regular file is in the file's place: what,
    /// in words (`a symlink`, `a FIFO`, ...). It was not opened.
    NotRegular(&'static str),
    Io(std::io::Error),
}

impl OpenError {
    /// The error, followed by `rule` where the file was not regular.
    pub(super) fn explain(&self, rule: &str) -> String {
        match self {
            OpenError::NotRegular(kind) => format!("is {kind}; {rule}"),
            OpenError::Io(e) => e.to_string(),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            OpenError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the regular file `path` with `O_PATH`, nothing else: see
/// [`regular::open`].
pub(super) fn open_regular(path: &Path, symlink: Symlink) -> Result<OwnedFd, OpenError> {
    // A NUL in the name fails as std's own open says it.
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        OpenError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "file name contained an unexpected NUL byte",
        ))
    })?;
    match regular::open(&path, symlink) {
        Ok((fd, _)) => Ok(fd),
        Err(NotOpened::NotRegular(kind)) => Err(OpenError::NotRegular(kind)),
        Err(NotOpened::Os(e)) => Err(OpenError::Io(e.into())),
    }
}

/// Reads a regular file; never opens anything else.
pub(super) fn read_regular(path: &Path, symlink: Symlink) -> Result<String, OpenError> {
    let fd = open_regular(path, symlink)?;
    std::fs::read_to_string(FdPath::of(&fd).as_path()).map_err(OpenError::Io)
}

/// Reads at most `limit` bytes of a regular file; never opens anything
/// else. `Ok(None)` when the file holds more.
pub(super) fn read_regular_bounded(
    path: &Path,
    symlink: Symlink,
    limit: usize,
) -> Result<Option<Vec<u8>>, OpenError> {
    let fd = open_regular(path, symlink)?;
    let file = std::fs::File::open(FdPath::of(&fd).as_path()).map_err(OpenError::Io)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(OpenError::Io)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}
