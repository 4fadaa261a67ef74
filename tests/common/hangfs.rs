//! A tiny FUSE filesystem for the fault tests, spoken straight over
//! `/dev/fuse` (no libfuse, nothing to install). It answers for its root
//! directory and leaves one kind of request unanswered ([`Fault`]): by
//! default the `getattr` of its one file, `heartbeat`, so that a `stat` of
//! it hangs for as long as the filesystem lives, like one on a dead NFS or
//! FUSE server; or every look-up of a name (a daemon's first read of its
//! state hangs); or every request that would create or change a file (the
//! directory opens and looks empty, its first write hangs); `statfs`
//! (a filesystem rule's `statvfs` hangs); or the `open` of an executable
//! `heartbeat` (a program on the mount hangs in `execve`).
//!
//! The filesystem is mounted inside a private mount namespace of the
//! process under test (see [`HangFs::mount_in_child`]), so nothing is left
//! mounted on the host whatever happens to the test.

// A FUSE server and a mount namespace are system calls: `unsafe` is
// allowed here (Cargo.toml denies it elsewhere).
#![allow(unsafe_code)]
#![allow(dead_code)] // each test crate uses part of it

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_UNLINK: u32 = 10;
const FUSE_STATFS: u32 = 17;
const FUSE_OPEN: u32 = 14;
const FUSE_INIT: u32 = 26;
const FUSE_OPENDIR: u32 = 27;
const FUSE_RELEASEDIR: u32 = 29;
/// Requests that create or change a file: the ones [`Fault::Writes`] hangs.
const WRITES: [u32; 10] = [
    4,  // SETATTR
    8,  // MKNOD
    9,  // MKDIR
    12, // RENAME
    14, // OPEN
    16, // WRITE
    20, // FSYNC
    30, // FSYNCDIR
    35, // CREATE
    45, // RENAME2
];
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;

const ROOT: u64 = 1;
const HEARTBEAT: u64 = 2;
/// The only name in the root directory.
pub const NAME: &str = "heartbeat";

/// What the filesystem has seen.
#[derive(Default)]
pub struct Seen {
    pub lookups: AtomicUsize,
    /// `getattr` requests for the heartbeat, left unanswered.
    pub hung_getattrs: AtomicUsize,
    /// Requests of any kind left unanswered.
    pub hung: AtomicUsize,
}

/// Which requests are never answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The `getattr` of `heartbeat`.
    HeartbeatGetattr,
    /// Every look-up of a name in the root.
    Lookups,
    /// Every request that creates or changes a file; the root looks empty.
    Writes,
    /// `statfs` (what `statvfs(3)` asks): a filesystem check hangs.
    Statfs,
    /// The `open` of `heartbeat`, an executable file here (mode 0755):
    /// it can be looked at, but running it hangs in `execve`.
    Opens,
}

/// The server side: the `/dev/fuse` descriptor the mount will use.
pub struct HangFs {
    device: File,
    fault: Fault,
    pub seen: Arc<Seen>,
}

impl HangFs {
    pub fn new() -> HangFs {
        HangFs::with(Fault::HeartbeatGetattr)
    }

    pub fn with(fault: Fault) -> HangFs {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("/dev/fuse: the FUSE test needs the fuse module (modprobe fuse)");
        HangFs {
            device,
            fault,
            seen: Arc::new(Seen::default()),
        }
    }

    /// Makes `command`, before it execs, enter a mount namespace of its own
    /// and mount this filesystem on `mountpoint` there.
    pub fn mount_in_child(&self, command: &mut Command, mountpoint: &Path) {
        let fd = self.device.as_raw_fd();
        let target = CString::new(mountpoint.as_os_str().as_bytes()).unwrap();
        let options = CString::new(format!("fd={fd},rootmode=40000,user_id=0,group_id=0")).unwrap();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes system calls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing mounted here propagates back to the host.
                if libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(
                    c"heartwatch-hangfs".as_ptr(),
                    target.as_ptr(),
                    c"fuse".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    options.as_ptr().cast(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Serves requests on a thread until the mount goes away or the
    /// returned server is aborted. Call it after the child has started
    /// (before the mount, `/dev/fuse` has nothing to read).
    pub fn serve(self) -> Server {
        let seen = Arc::clone(&self.seen);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(self.device, self.fault, &self.seen, &stop))
        };
        Server {
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

/// The running filesystem.
pub struct Server {
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Closes `/dev/fuse`, as a crashed FUSE server would: the kernel aborts
    /// the connection and every request still waiting fails (ENOTCONN).
    pub fn abort(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.abort();
    }
}

fn serve(mut device: File, fault: Fault, seen: &Seen, stop: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        let mut pollfd = libc::pollfd {
            fd: device.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pollfd, 1, 50) } <= 0 {
            continue;
        }
        if pollfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return; // unmounted
        }
        let n = match device.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue, // interrupted request
            Err(_) => return,                                             // ENODEV: unmounted
        };
        if n < 40 {
            continue;
        }
        let opcode = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
        let unique = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
        let nodeid = u64::from_ne_bytes(buf[16..24].try_into().unwrap());
        let body = &buf[40..n];
        let hang = match fault {
            Fault::HeartbeatGetattr => false,
            Fault::Lookups => opcode == FUSE_LOOKUP,
            Fault::Writes => WRITES.contains(&opcode),
            Fault::Statfs => opcode == FUSE_STATFS,
            Fault::Opens => opcode == FUSE_OPEN,
        };
        let heartbeat_mode = if fault == Fault::Opens { 0o755 } else { 0o644 };
        let reply = match opcode {
            _ if hang => {
                seen.hung.fetch_add(1, Ordering::SeqCst);
                None
            }
            FUSE_INIT => {
                let max_readahead = u32::from_ne_bytes(body[8..12].try_into().unwrap());
                let mut out = Vec::with_capacity(64);
                out.extend(7u32.to_ne_bytes()); // major
                out.extend(31u32.to_ne_bytes()); // minor
                out.extend(max_readahead.to_ne_bytes());
                out.extend(0u32.to_ne_bytes()); // flags
                out.extend(16u16.to_ne_bytes()); // max_background
                out.extend(12u16.to_ne_bytes()); // congestion_threshold
                out.extend(4096u32.to_ne_bytes()); // max_write
                out.extend(1u32.to_ne_bytes()); // time_gran
                out.resize(64, 0);
                Some(Ok(out))
            }
            FUSE_LOOKUP => {
                seen.lookups.fetch_add(1, Ordering::SeqCst);
                let name = body.split(|&b| b == 0).next().unwrap_or(b"");
                let served = matches!(fault, Fault::HeartbeatGetattr | Fault::Opens);
                if nodeid == ROOT && name == NAME.as_bytes() && served {
                    let mut out = Vec::with_capacity(128);
                    out.extend(HEARTBEAT.to_ne_bytes()); // nodeid
                    out.extend(0u64.to_ne_bytes()); // generation
                    out.extend(0u64.to_ne_bytes()); // entry_valid: look up every time
                    out.extend(0u64.to_ne_bytes()); // attr_valid: getattr every time
                    out.extend([0u8; 8]); // the two _nsec fields
                    out.extend(attr(HEARTBEAT, libc::S_IFREG | heartbeat_mode, 1));
                    Some(Ok(out))
                } else {
                    Some(Err(libc::ENOENT))
                }
            }
            FUSE_GETATTR if nodeid == HEARTBEAT && fault == Fault::Opens => {
                let mut out = Vec::with_capacity(104);
                out.extend(0u64.to_ne_bytes()); // attr_valid
                out.extend([0u8; 8]); // attr_valid_nsec, dummy
                out.extend(attr(HEARTBEAT, libc::S_IFREG | heartbeat_mode, 1));
                Some(Ok(out))
            }
            FUSE_GETATTR if nodeid == HEARTBEAT => {
                // The fault under test: never answered.
                seen.hung_getattrs.fetch_add(1, Ordering::SeqCst);
                None
            }
            FUSE_GETATTR => {
                let mut out = Vec::with_capacity(104);
                out.extend(1u64.to_ne_bytes()); // attr_valid
                out.extend([0u8; 8]); // attr_valid_nsec, dummy
                out.extend(attr(nodeid, libc::S_IFDIR | 0o755, 2));
                Some(Ok(out))
            }
            FUSE_OPENDIR => Some(Ok(vec![0u8; 16])), // fuse_open_out: fh 0, no flags
            FUSE_RELEASEDIR => Some(Ok(Vec::new())),
            FUSE_UNLINK => Some(Err(libc::ENOENT)),
            FUSE_STATFS => Some(Ok(vec![0u8; 80])), // fuse_kstatfs, all zero

            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => None,
            _ => Some(Err(libc::ENOSYS)),
        };
        if let Some(reply) = reply {
            let (error, payload) = match reply {
                Ok(payload) => (0i32, payload),
                Err(errno) => (-errno, Vec::new()),
            };
            let mut out = Vec::with_capacity(16 + payload.len());
            out.extend(((16 + payload.len()) as u32).to_ne_bytes());
            out.extend(error.to_ne_bytes());
            out.extend(unique.to_ne_bytes());
            out.extend(payload);
            // ENOENT: the request was interrupted meanwhile; nothing to do.
            let _ = device.write_all(&out);
        }
    }
}

/// `struct fuse_attr` (88 bytes).
fn attr(ino: u64, mode: u32, nlink: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(88);
    a.extend(ino.to_ne_bytes());
    a.extend(0u64.to_ne_bytes()); // size
    a.extend(0u64.to_ne_bytes()); // blocks
    a.extend([0u8; 24]); // atime, mtime, ctime
    a.extend([0u8; 12]); // their nanoseconds
    a.extend(mode.to_ne_bytes());
    a.extend(nlink.to_ne_bytes());
    a.extend(0u32.to_ne_bytes()); // uid
    a.extend(0u32.to_ne_bytes()); // gid
    a.extend(0u32.to_ne_bytes()); // rdev
    a.extend(4096u32.to_ne_bytes()); // blksize
    a.extend(0u32.to_ne_bytes()); // flags
    a
}
