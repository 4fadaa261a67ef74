//! inotify(7) on heartbeat directories, and statfs(2) to tell whether a
//! directory's filesystem delivers its events (network and FUSE
//! filesystems do not, or not for changes made elsewhere). Events are read
//! into a fixed buffer and walked in place: nothing allocates per event.

use super::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a directory watch asks for: every way the file named in it can be
/// touched, replaced, removed; and the directory itself going away.
pub const DIR_MASK: u32 = libc::IN_ATTRIB
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;
// No IN_DONT_FOLLOW: a directory reached through a symlink (/var/run) is
// the one the file's own path resolves to, and is watched as such.

pub use libc::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE_SELF, IN_IGNORED, IN_ISDIR, IN_MODIFY,
    IN_MOVE_SELF, IN_MOVED_TO, IN_Q_OVERFLOW, IN_UNMOUNT,
};

/// An inotify instance (non-blocking, close-on-exec).
#[derive(Debug)]
pub struct Inotify(OwnedFd);

impl Inotify {
    pub fn new() -> Result<Inotify, Errno> {
        // SAFETY: plain system call with flags.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
        Ok(Inotify(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Watches `dir` (not following a final symlink: the directory named
    /// is the one watched). Safe to call from any thread.
    pub fn add_watch(&self, dir: &CStr, mask: u32) -> Result<i32, Errno> {
        // SAFETY: `dir` is NUL-terminated; the fd is ours.
        let wd = unsafe { libc::inotify_add_watch(self.raw_fd(), dir.as_ptr(), mask) };
        if wd < 0 { Err(Errno::last()) } else { Ok(wd) }
    }

    pub fn rm_watch(&self, wd: i32) {
        // SAFETY: removes a watch from our own fd; a stale wd only gets EINVAL.
        let _ = unsafe { libc::inotify_rm_watch(self.raw_fd(), wd) };
    }

    /// Reads what is queued into `buf`; 0 when nothing is.
    pub fn read(&self, buf: &mut EventBuf) -> Result<usize, Errno> {
        // SAFETY: `buf.bytes` is writable for its whole length.
        let n = unsafe {
            libc::read(
                self.raw_fd(),
                buf.bytes.as_mut_ptr().cast(),
                buf.bytes.len(),
            )
        };
        if n < 0 {
            return match Errno::last() {
                Errno::EAGAIN | Errno::EINTR => Ok(0),
                e => Err(e),
            };
        }
        buf.len = n as usize;
        Ok(buf.len)
    }
}

/// One event, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub wd: i32,
    pub mask: u32,
    /// The name in the directory, without its NUL padding; empty for
    /// events about the directory itself.
    pub name: &'a [u8],
}

/// A fixed read buffer, aligned for `struct inotify_event`.
#[repr(C, align(8))]
pub struct EventBuf {
    bytes: [u8; 16384],
    len: usize,
}

impl Default for EventBuf {
    fn default() -> Self {
        EventBuf {
            bytes: [0; 16384],
            len: 0,
        }
    }
}

impl EventBuf {
    /// The events of the last read, in order.
    pub fn events(&self) -> Events<'_> {
        Events {
            bytes: &self.bytes[..self.len],
        }
    }
}

pub struct Events<'a> {
    bytes: &'a [u8],
}

const HEADER: usize = std::mem::size_of::<libc::inotify_event>();

impl<'a> Iterator for Events<'a> {
    type Item = RawEvent<'a>;
    fn next(&mut self) -> Option<RawEvent<'a>> {
        let (head, rest) = self.bytes.split_first_chunk::<HEADER>()?;
        let word =
            |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
        let wd = word(0) as i32;
        let mask = word(4);
        let (raw, rest) = rest.split_at((word(12) as usize).min(rest.len()));
        // The name is padded with NULs, and holds none itself.
        let name = match raw.iter().rposition(|&b| b != 0) {
            Some(i) => &raw[..=i],
            None => &raw[..0],
        };
        self.bytes = rest;
        Some(RawEvent { wd, mask, name })
    }
}

/// Why a directory's events cannot be trusted, or `None` when they can:
/// from statfs's `f_type`.
pub fn untrusted_filesystem(dir: &CStr) -> Result<Option<&'static str>, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `dir` is NUL-terminated and `st` is large enough.
    let rc = unsafe { libc::statfs(dir.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    // SAFETY: statfs returned 0: `st` is initialised.
    let st = unsafe { st.assume_init() };
    Ok(remote_kind(st.f_type as u32 as u64))
}

/// Filesystems whose changes made by other hosts (or by a FUSE daemon)
/// send no inotify event here.
pub fn remote_kind(f_type: u64) -> Option<&'static str> {
    Some(match f_type {
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x517B => "smb",
        0x6573_5546 => "fuse",
        0x0065_735F => "fuseblk",
        0x00C3_6400 => "ceph",
        0x0102_1997 => "9p",
        0x5346_414F => "afs",
        0x6B41_4653 => "afs",
        0x0BD0_0BD0 => "lustre",
        0x0116_1970 => "gfs2",
        0x7461_636f => "ocfs2",
        0x564c => "ncp",
        0x6B41_4654 => "kafs",
        0x0027_e0eb => "cgroup", // no events for kernel-made changes
        0x6265_6572 => "sysfs",
        0x9fa0 => "proc",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[test]
    fn events_are_read_in_place() {
        let dir = std::env::temp_dir().join(format!("hw-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ino = Inotify::new().unwrap();
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let wd = ino.add_watch(&c, DIR_MASK).unwrap();
        std::fs::write(dir.join("beat"), b"x").unwrap();
        let mut buf = Box::<EventBuf>::default();
        assert!(ino.read(&mut buf).unwrap() > 0);
        let evs: Vec<_> = buf.events().collect();
        assert!(evs.iter().all(|e| e.wd == wd));
        assert!(
            evs.iter()
                .any(|e| e.name == b"beat" && e.mask & IN_CREATE != 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(remote_kind(0x6969), Some("nfs"));
        assert_eq!(remote_kind(0xEF53), None);
    }
}
