//! Regular files, and only those: what else is in a file's place, in
//! words, and opening a file by name only once it is known to be regular
//! (opening a device can act: opening a watchdog arms it; a FIFO can
//! block). Raw system calls and fixed buffers: nothing here allocates, so
//! a child forked from a process with threads may use it.

use super::Errno;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a file of mode `mode` (`st_mode`, `MetadataExt::mode`) is, in
/// words: `a FIFO`, `a directory`, ...
pub fn kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "something else",
    }
}

/// What [`open`] does with a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlink {
    /// Follows it: a symlink to a regular file is opened.
    Follow,
    /// Refuses it, as something other than a regular file.
    Refuse,
}

/// Why [`open`] opened nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOpened {
    /// Something other than a regular file is there: what, in words.
    NotRegular(&'static str),
    Os(Errno),
}

/// Opens `path` with `O_PATH`, which opens nothing, and returns the
/// descriptor with its `fstat` only if it is a regular file. The file is
/// then reached through [`FdPath`], which names the inode looked at, not
/// whatever the name points to by then.
pub fn open(path: &CStr, symlink: Symlink) -> Result<(OwnedFd, libc::stat), NotOpened> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if symlink == Symlink::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let fd = super::fs::open(path, flags).map_err(NotOpened::Os)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(NotOpened::Os)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(NotOpened::NotRegular(kind(st.st_mode)));
    }
    Ok((fd, st))
}

/// `/proc/self/fd/FD`: the path that reaches the file behind a descriptor.
pub struct FdPath {
    /// The path, NUL-terminated: 14 bytes of prefix, at most 10 digits.
    bytes: [u8; 32],
    len: usize,
}

impl FdPath {
    pub fn of(fd: &impl AsRawFd) -> FdPath {
        let mut digits = [0u8; 20];
        let digits = super::decimal(u64::from(fd.as_raw_fd().unsigned_abs()), &mut digits);
        let prefix = b"/proc/self/fd/";
        let mut bytes = [0u8; 32];
        bytes[..prefix.len()].copy_from_slice(prefix);
        bytes[prefix.len()..prefix.len() + digits.len()].copy_from_slice(digits);
        FdPath {
            bytes,
            len: prefix.len() + digits.len(),
        }
    }

    /// The path, NUL-terminated.
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        &self.bytes[..=self.len]
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.bytes[..self.len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_opened() {
        let dir = std::env::temp_dir().join(format!("heartwatch-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "text").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();

        let (fd, _) = open(&c(&file), Symlink::Refuse).unwrap();
        let text = std::fs::read_to_string(FdPath::of(&fd).as_path()).unwrap();
        assert_eq!(text, "text");
        assert!(open(&c(&link), Symlink::Follow).is_ok());
        assert_eq!(
            open(&c(&link), Symlink::Refuse).unwrap_err(),
            NotOpened::NotRegular("a symlink")
        );
        assert_eq!(
            open(&c(&dir), Symlink::Follow).unwrap_err(),
            NotOpened::NotRegular("a directory")
        );
        assert_eq!(
            open(&c(&dir.join("none")), Symlink::Follow).unwrap_err(),
            NotOpened::Os(Errno::ENOENT)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_path_of_a_descriptor_is_nul_terminated() {
        let path = FdPath::of(&7);
        assert_eq!(path.as_bytes_with_nul(), b"/proc/self/fd/7\0");
        assert_eq!(path.as_path(), Path::new("/proc/self/fd/7"));
    }
}
