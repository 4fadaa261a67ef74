//! Files replaced atomically: write a temporary file, fsync it, rename it
//! over the old one, fsync the directory. A reader (or a crash) sees the old
//! content or the new, never a mix. Names are prepared once, so a write
//! allocates nothing.

use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One file in one directory, ready to be replaced.
#[derive(Debug)]
pub struct AtomicFile {
    dir: OwnedFd,
    path: PathBuf,
    name: CString,
    tmp: CString,
}

impl AtomicFile {
    /// Opens `dir` (creating it with mode 0755 if missing) for the file `name`.
    pub fn new(dir: &Path, name: &str) -> std::io::Result<AtomicFile> {
        std::fs::create_dir_all(dir)?;
        let c_dir = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: `c_dir` is NUL-terminated; the result is checked.
        let raw = unsafe {
            libc::open(
                c_dir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(AtomicFile {
            // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
            dir: unsafe { OwnedFd::from_raw_fd(raw) },
            path: dir.join(name),
            name: CString::new(name)?,
            tmp: CString::new(format!(".{name}.tmp"))?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `bytes`.
    pub fn write(&self, bytes: &[u8]) -> Result<(), Errno> {
        let dir = self.dir.as_raw_fd();
        // SAFETY: `tmp` is NUL-terminated and `dir` an open directory.
        let raw = unsafe {
            libc::openat(
                dir,
                self.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644 as libc::c_uint,
            )
        };
        if raw < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let file = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(file.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return Err(Errno::last());
            }
            rest = &rest[n as usize..];
        }
        // SAFETY: plain syscalls on descriptors we own and NUL-terminated names.
        unsafe {
            if libc::fsync(file.as_raw_fd()) != 0 {
                return Err(Errno::last());
            }
            drop(file);
            if libc::renameat(dir, self.tmp.as_ptr(), dir, self.name.as_ptr()) != 0 {
                return Err(Errno::last());
            }
            if libc::fsync(dir) != 0 {
                return Err(Errno::last());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content() {
        let dir = std::env::temp_dir().join(format!("hw-atomic-{}", std::process::id()));
        let file = AtomicFile::new(&dir, "status").unwrap();
        file.write(b"one\n").unwrap();
        file.write(b"two\n").unwrap();
        assert_eq!(std::fs::read(dir.join("status")).unwrap(), b"two\n");
        assert!(!dir.join(".status.tmp").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
