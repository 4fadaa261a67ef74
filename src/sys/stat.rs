//! `stat(2)` of a heartbeat file, and what it found: enough of `struct
//! stat` to notice that the file was touched or replaced, or why there is
//! nothing to look at.

use super::Errno;
use std::ffi::CStr;

/// What a `stat` of a heartbeat file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file exists; its identity and modification time.
    Found(Stamp),
    /// No such file (or a directory on the way is missing).
    Missing,
    /// The mount under the file is gone or broken (ESTALE, ENOTCONN, EIO...).
    Unreachable(Errno),
    /// Any other failure, e.g. permission denied.
    Unreadable(Errno),
}

/// Enough of `struct stat` to notice that a file was touched or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    pub inode: u64,
    pub device: u64,
}

impl Stamp {
    /// The stamp of what `stat`, `fstat` or `fstatat` returned.
    pub fn of(st: &libc::stat) -> Stamp {
        Stamp {
            mtime_sec: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            inode: st.st_ino,
            device: st.st_dev,
        }
    }
}

/// One `stat(2)`, classified.
pub fn stat(path: &CStr) -> Outcome {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is large enough for the kernel
    // to fill in.
    let rc = unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return classify(Errno::last());
    }
    // SAFETY: stat returned 0, so the kernel initialised `st`.
    let st = unsafe { st.assume_init() };
    Outcome::Found(Stamp::of(&st))
}

fn classify(errno: Errno) -> Outcome {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => Outcome::Missing,
        Errno::ESTALE
        | Errno::ENOTCONN
        | Errno::EIO
        | Errno::ENODEV
        | Errno::EHOSTDOWN
        | Errno::EHOSTUNREACH
        | Errno::ETIMEDOUT => Outcome::Unreachable(errno),
        other => Outcome::Unreadable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        assert_eq!(classify(Errno::ENOENT), Outcome::Missing);
        assert_eq!(classify(Errno::ESTALE), Outcome::Unreachable(Errno::ESTALE));
        assert_eq!(classify(Errno::EACCES), Outcome::Unreadable(Errno::EACCES));
    }

    #[test]
    fn a_directory_is_found_and_a_missing_path_is_missing() {
        assert!(matches!(stat(c"/"), Outcome::Found(_)));
        assert_eq!(stat(c"/no/such/file/here"), Outcome::Missing);
    }
}
