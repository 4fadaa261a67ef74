//! The daemon's own files in its runtime and state directories: the status
//! file, the reboot record, `next-stop`. Each directory is checked like
//! rules.d (owned by root or the running user, not writable by group or
//! others) and held open; every file in it is opened relative to it,
//! without following a final symlink, without blocking on a FIFO, and only
//! when it is a regular file.
//!
//! A file is replaced atomically (write a temporary file, fsync it, rename
//! it over the old one, fsync the directory), so a reader or a crash sees
//! the old content or the new, never a mix. The replacing is done by a
//! [`Writer`] thread of the file's own: the loop hands it the latest content
//! and goes on, so a directory on a filesystem that does not answer delays
//! only that file, never the feeding. Names and buffers are prepared once,
//! so handing over and writing allocate nothing in the steady state.
//!
//! [`Writer::start_foreign`] writes a file the same way into a directory
//! that is not heartwatch's (the metrics, in the node exporter's textfile
//! directory): no ownership checks there, but the file itself is still
//! never followed.

use crate::sys::Errno;
use crate::sys::fs;
use crate::text::DurationText;
use std::ffi::{CStr, CString};
use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The largest file the daemon reads back from its directories.
pub const MAX_READ: usize = 64 * 1024;

/// A runtime or state directory, checked and open.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a directory cannot be used.
#[derive(Debug)]
pub enum DirError {
    /// It is not safe: another user could plant files in it.
    Refused(String),
    /// It could not be created or opened.
    Io(std::io::Error),
}

impl std::fmt::Display for DirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirError::Refused(why) => f.write_str(why),
            DirError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Why a file in a directory could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Something other than a regular file is there (never opened).
    NotRegular(&'static str),
    TooLarge,
    Os(Errno),
    /// No answer within this bound.
    TimedOut(Duration),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            ReadError::TooLarge => write!(f, "is larger than {MAX_READ} bytes"),
            ReadError::Os(e) => write!(f, "{e}"),
            ReadError::TimedOut(bound) => write!(f, "no answer within {}", DurationText(*bound)),
        }
    }
}

impl Dir {
    /// Creates `path` if missing (mode 0755 whatever the umask, so that a
    /// daemon started with umask 0 does not refuse its own directory),
    /// opens it and checks that no one but root or the running user can
    /// write in it. A symlinked directory is followed; the directory it
    /// leads to is checked.
    pub fn open(path: &Path) -> Result<Dir, DirError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(DirError::Io)?;
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| DirError::Io(std::io::Error::other(e)))?;
        let fd = fs::open(
            &c_path,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
        .map_err(|e| DirError::Io(e.into()))?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| DirError::Io(e.into()))?;
        let stake = "heartwatch writes its state there as root";
        if let Some(why) = crate::config::distrust(path, st.st_uid, st.st_mode, stake) {
            return Err(DirError::Refused(why));
        }
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the regular file `name` into `buf`; None when there is none.
    /// Anything else at that name (a symlink, a FIFO, a directory, a
    /// device) is refused before it is opened.
    pub fn read(&self, name: &CStr, buf: &mut Vec<u8>) -> Result<Option<()>, ReadError> {
        let dir = self.fd.as_raw_fd();
        match nix::sys::stat::fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => regular(st.st_mode)?,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(ReadError::Os(e)),
        }
        // O_NONBLOCK and O_NOFOLLOW: whatever was swapped in since the look
        // cannot stall the open or lead elsewhere.
        let opened = fs::openat(
            self.fd.as_fd(),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
            0,
        );
        let file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(ReadError::NotRegular(SYMBOLIC_LINK)),
            Err(e) => return Err(ReadError::Os(e)),
        };
        let st = nix::sys::stat::fstat(file.as_raw_fd()).map_err(ReadError::Os)?;
        regular(st.st_mode)?;
        buf.clear();
        file.take(MAX_READ as u64 + 1)
            .read_to_end(buf)
            .map_err(|e| ReadError::Os(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        if buf.len() > MAX_READ {
            return Err(ReadError::TooLarge);
        }
        Ok(Some(()))
    }

    /// [`Dir::read`] on a thread of its own, waited for at most `bound`:
    /// for the few reads outside the loop that must not hang (the orderly
    /// stop's look at `next-stop`).
    pub fn read_within(
        self: Arc<Self>,
        name: &'static CStr,
        bound: Duration,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let (tx, rx) = sync_channel(1);
        std::thread::Builder::new()
            .name("read".into())
            // Small, like the writers': under RLIMIT_MEMLOCK (no
            // CAP_IPC_LOCK) a new stack is locked memory, and the default
            // 2 MiB one could not start where the daemon otherwise fits.
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let mut buf = Vec::new();
                let read = self.read(name, &mut buf).map(|found| found.map(|()| buf));
                let _ = tx.send(read); // the caller may have stopped waiting
            })
            .map_err(|e| ReadError::Os(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        rx.recv_timeout(bound)
            .unwrap_or(Err(ReadError::TimedOut(bound)))
    }

    /// Removes `name`, whatever it is (an empty directory too); false when
    /// there was nothing.
    pub fn remove(&self, name: &CStr) -> Result<bool, Errno> {
        remove_in(self.fd.as_fd(), name)
    }

    /// Replaces `name` with `bytes` through the temporary `tmp`. Whatever
    /// was left or planted at `tmp` is removed first (the temporary is
    /// created with O_EXCL, so nothing there is ever opened); an empty
    /// directory at `name` is removed so the rename can take its place.
    pub fn replace(&self, name: &CStr, tmp: &CStr, bytes: &[u8]) -> Result<(), Errno> {
        replace_in(self.fd.as_fd(), name, tmp, bytes, Durability::Durable)
    }
}

/// Whether a replaced file is synced to the disk with its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Durable,
    /// For a file made anew at every start (the metrics): atomic for
    /// readers, not synced, so a rewrite every few seconds does not wear
    /// a flash card.
    ReadersOnly,
}

/// [`Dir::replace`] in the directory `dir`.
fn replace_in(
    dir: BorrowedFd<'_>,
    name: &CStr,
    tmp: &CStr,
    bytes: &[u8],
    sync: Durability,
) -> Result<(), Errno> {
    let file = match create(dir, tmp) {
        Err(Errno::EEXIST) => {
            remove_in(dir, tmp)?;
            create(dir, tmp)?
        }
        other => other?,
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        match nix::unistd::write(&file, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(discard(dir, tmp, e)),
        }
    }
    if sync == Durability::Durable
        && let Err(e) = nix::unistd::fsync(file.as_raw_fd())
    {
        return Err(discard(dir, tmp, e));
    }
    drop(file);
    let raw = dir.as_raw_fd();
    let rename = || nix::fcntl::renameat(Some(raw), tmp, Some(raw), name);
    match rename() {
        Err(Errno::EISDIR) => {
            if let Err(e) = remove_in(dir, name).and_then(|_| rename()) {
                return Err(discard(dir, tmp, e));
            }
        }
        Err(e) => return Err(discard(dir, tmp, e)),
        Ok(()) => {}
    }
    match sync {
        Durability::Durable => nix::unistd::fsync(raw),
        Durability::ReadersOnly => Ok(()),
    }
}

fn create(dir: BorrowedFd<'_>, tmp: &CStr) -> Result<OwnedFd, Errno> {
    fs::openat(
        dir,
        tmp,
        libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_NOFOLLOW
            | libc::O_NONBLOCK
            | libc::O_CLOEXEC,
        0o644,
    )
}

/// Removes `name` from `dir`, whatever it is (an empty directory too);
/// false when there was nothing.
fn remove_in(dir: BorrowedFd<'_>, name: &CStr) -> Result<bool, Errno> {
    let removed = match fs::unlinkat(dir, name, 0) {
        Err(Errno::EISDIR) => fs::unlinkat(dir, name, libc::AT_REMOVEDIR),
        other => other,
    };
    match removed {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A failed write leaves no temporary behind; returns its error.
fn discard(dir: BorrowedFd<'_>, tmp: &CStr, e: Errno) -> Errno {
    let _ = remove_in(dir, tmp); // best effort: the next write removes it anyway
    e
}

/// The daemon's own files say "symbolic link", as the kernel's ELOOP does.
const SYMBOLIC_LINK: &str = "a symbolic link";

fn regular(mode: libc::mode_t) -> Result<(), ReadError> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Ok(()),
        libc::S_IFLNK => Err(ReadError::NotRegular(SYMBOLIC_LINK)),
        _ => Err(ReadError::NotRegular(crate::sys::regular::kind(mode))),
    }
}

/// A writer's thread (and the reader of `read_within`) only opens,
/// reads or writes, renames and logs.
const WRITER_STACK: usize = 128 * 1024;

/// One file rewritten by a thread of its own, latest content wins.
pub struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Tells the thread there is content (or that the writer is dropped).
    wake: Condvar,
    /// Tells [`Writer::flush`] that a write ended.
    done: Condvar,
}

struct Slot {
    /// The content handed over and not yet taken by the thread.
    next: Vec<u8>,
    pending: bool,
    /// How many contents were handed over, and which was written last
    /// (with the outcome).
    offered: u64,
    written: u64,
    outcome: Result<(), Errno>,
    /// The directory, once the thread has opened it.
    dir: Option<Arc<Dir>>,
    /// The capacity the thread's own buffer should have.
    room: usize,
    closed: bool,
}

impl Writer {
    /// Starts the thread that opens `dir` (see [`Dir::open`]), runs `setup`
    /// on it, and then writes `name` whenever new content is handed over.
    /// The receiver gets the directory's verdict and `setup`'s result; the
    /// caller decides how long to wait for it.
    pub fn start<T: Send + 'static>(
        dir: &Path,
        name: &str,
        setup: impl FnOnce(&Dir) -> T + Send + 'static,
    ) -> std::io::Result<(Writer, Receiver<Result<T, DirError>>)> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                next: Vec::new(),
                pending: false,
                offered: 0,
                written: 0,
                outcome: Ok(()),
                dir: None,
                room: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let c_name = CString::new(name)?;
        let tmp = CString::new(format!(".{name}.tmp"))?;
        let (tx, rx) = sync_channel(1);
        let dir_path = dir.to_path_buf();
        let path = dir.join(name);
        let thread_path = path.clone();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("write-{name}"))
            .stack_size(WRITER_STACK)
            .spawn(move || {
                // A crash on this thread is reported like one on the loop's.
                let _stack = crate::crash::prepare_thread();
                let dir = match Dir::open(&dir_path) {
                    Ok(dir) => Arc::new(dir),
                    Err(e) => {
                        // Said here when the daemon no longer waits to say it.
                        if let Err(SendError(Err(e))) = tx.send(Err(e)) {
                            log::error!("{}: {e}; it is not written", thread_path.display());
                        }
                        return;
                    }
                };
                let value = setup(&dir);
                lock(&thread_shared.slot).dir = Some(Arc::clone(&dir));
                let _ = tx.send(Ok(value)); // as above
                write_loop(&thread_shared, |bytes| {
                    let outcome = dir.replace(&c_name, &tmp, bytes);
                    if let Err(e) = outcome {
                        log::error!("cannot write {}: {e}", thread_path.display());
                    }
                    outcome
                });
            })?;
        Ok((Writer { shared, path }, rx))
    }

    /// Starts the thread that writes `name` in `dir`, a directory that is
    /// not heartwatch's (the node exporter's textfile directory): it is
    /// neither created nor checked for ownership, and is opened anew for
    /// each write, so that one made, mounted or fixed later is used. The
    /// file itself is never followed if it is a symbolic link: it is
    /// replaced by a rename. A write that fails is logged when the failure
    /// begins or changes, then at most hourly while it lasts; a write that
    /// works again says so. The content is not synced (see [`Durability`]).
    pub fn start_foreign(dir: &Path, name: &str) -> std::io::Result<Writer> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                next: Vec::new(),
                pending: false,
                offered: 0,
                written: 0,
                outcome: Ok(()),
                dir: None,
                room: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let c_dir = CString::new(dir.as_os_str().as_bytes())?;
        let c_name = CString::new(name)?;
        let tmp = CString::new(format!(".{name}.tmp"))?;
        let path = dir.join(name);
        let thread_path = path.clone();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("write-{name}"))
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let _stack = crate::crash::prepare_thread();
                let mut failing = Failing::default();
                write_loop(&thread_shared, |bytes| {
                    let outcome =
                        fs::open(&c_dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
                            .and_then(|dir| {
                                replace_in(
                                    dir.as_fd(),
                                    &c_name,
                                    &tmp,
                                    bytes,
                                    Durability::ReadersOnly,
                                )
                            });
                    failing.note(outcome, &thread_path);
                    outcome
                });
            })?;
        Ok(Writer { shared, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands `bytes` over to be written, replacing content not yet taken;
    /// returns its number for [`Writer::outcome`]. Never waits on the
    /// write: the lock is only ever held to copy a buffer.
    pub fn offer(&self, bytes: &[u8]) -> u64 {
        self.offer_with(|next| next.extend_from_slice(bytes))
    }

    /// Like [`Writer::offer`], with `fill` writing the content straight
    /// into the buffer handed over (emptied first): no buffer of the
    /// caller's holds a third copy of a large content. The lock is held
    /// while `fill` runs; the thread only ever takes it to copy the
    /// content out or to record an outcome, so the loop never waits long.
    pub fn offer_with(&self, fill: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let mut slot = lock(&self.shared.slot);
        slot.next.clear();
        fill(&mut slot.next);
        slot.pending = true;
        slot.offered += 1;
        let n = slot.offered;
        drop(slot);
        self.shared.wake.notify_one();
        n
    }

    /// Makes room for contents up to `capacity` bytes, here and in the
    /// thread, so that neither side allocates for them later.
    pub fn reserve(&self, capacity: usize) {
        let mut slot = lock(&self.shared.slot);
        let len = slot.next.len();
        slot.next.reserve(capacity.saturating_sub(len));
        slot.room = slot.room.max(capacity);
    }

    /// The outcome of the write that covered content number `n`, if done.
    pub fn outcome(&self, n: u64) -> Option<Result<(), Errno>> {
        let slot = lock(&self.shared.slot);
        (slot.written >= n).then_some(slot.outcome)
    }

    /// Waits at most `bound` for the last content handed over to be
    /// written; true when it was (or nothing was pending). For the end of
    /// an orderly stop, so that the last status reaches the disk before
    /// the process exits; never called from the loop.
    pub fn flush(&self, bound: Duration) -> bool {
        let slot = lock(&self.shared.slot);
        let (slot, _) = self
            .shared
            .done
            .wait_timeout_while(slot, bound, |s| s.written < s.offered)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.written >= slot.offered
    }

    /// The directory, if the thread has opened it.
    pub fn dir(&self) -> Option<Arc<Dir>> {
        lock(&self.shared.slot).dir.clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.shared.slot).closed = true;
        self.shared.wake.notify_one();
    }
}

/// How often a write that keeps failing in a foreign directory is logged.
const FAILING_LOG_EVERY: Duration = Duration::from_secs(3600);

/// A foreign directory's failing writes, for logging them rarely.
#[derive(Default)]
struct Failing {
    /// The failure being reported and when it last was.
    last: Option<(Errno, std::time::Instant)>,
}

impl Failing {
    fn note(&mut self, outcome: Result<(), Errno>, path: &Path) {
        match (outcome, self.last) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                self.last = None;
                log::info!("{}: written again", path.display());
            }
            (Err(e), Some((was, at))) if e == was && at.elapsed() < FAILING_LOG_EVERY => {}
            (Err(e), _) => {
                self.last = Some((e, std::time::Instant::now()));
                log::error!(
                    "cannot write {}: {e}; the metrics there are not updated until it can be (said again hourly while it lasts)",
                    path.display()
                );
            }
        }
    }
}

fn write_loop(shared: &Shared, mut write: impl FnMut(&[u8]) -> Result<(), Errno>) {
    let mut own: Vec<u8> = Vec::new();
    loop {
        let n = {
            let mut slot = lock(&shared.slot);
            while !slot.pending && !slot.closed {
                slot = shared
                    .wake
                    .wait(slot)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if slot.closed {
                return;
            }
            // A copy, not a swap, so that each side keeps the buffer it
            // reserved: a few kilobytes copied under the lock, no allocation.
            own.clear();
            own.reserve(slot.room.max(slot.next.len()));
            own.extend_from_slice(&slot.next);
            slot.pending = false;
            slot.offered
        };
        let outcome = write(&own);
        let mut slot = lock(&shared.slot);
        slot.written = n;
        slot.outcome = outcome;
        drop(slot);
        shared.done.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under the lock can be left half-changed by a panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn wait(writer: &Writer, n: u64) -> Result<(), Errno> {
        let start = Instant::now();
        loop {
            if let Some(outcome) = writer.outcome(n) {
                return outcome;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn replaces_content_and_clears_what_was_planted() {
        let path = scratch("replace");
        let (writer, opened) = Writer::start(&path, "status", |_| ()).unwrap();
        opened.recv().unwrap().unwrap();
        writer.offer(b"one\n");
        assert!(writer.flush(Duration::from_secs(10)));
        assert_eq!(std::fs::read(path.join("status")).unwrap(), b"one\n");
        nix::unistd::mkfifo(&path.join(".status.tmp"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        wait(&writer, writer.offer(b"two\n")).unwrap();
        assert_eq!(std::fs::read(path.join("status")).unwrap(), b"two\n");
        assert!(!path.join(".status.tmp").exists());
        let dir = writer.dir().unwrap();
        let mut buf = Vec::new();
        assert_eq!(dir.read(c"status", &mut buf), Ok(Some(())));
        assert_eq!(buf, b"two\n");
        assert_eq!(dir.read(c"nothing", &mut buf), Ok(None));
        std::os::unix::fs::symlink("status", path.join("link")).unwrap();
        assert_eq!(
            dir.read(c"link", &mut buf),
            Err(ReadError::NotRegular("a symbolic link"))
        );
        assert_eq!(dir.remove(c"link"), Ok(true));
        assert_eq!(dir.remove(c"link"), Ok(false));
        drop(writer);
        std::fs::remove_dir_all(path).unwrap();
    }
}
