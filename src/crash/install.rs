//! Getting ready for a crash, at start and on reload: the memory the
//! handler works in, the descriptors it writes and reads, the alternate
//! signal stacks, and the handlers themselves. This is the only part that
//! maps memory, opens files or can fail; the handler finds everything
//! ready.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use libc::c_int;

use super::report::{KMSG_FD, STDERR_PRIORITY, signal_name};
use super::{PAGE, handler, monotonic_ns, park};

/// What the daemon hands to `install`.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Open hardware watchdog devices: fed once on a crash, never disarmed.
    pub watchdog_fds: Vec<RawFd>,
    /// Run the memory test on a crash (`CrashMemtest=`).
    pub memtest: bool,
    /// Bound on the memory test: about a quarter of the hardware timeout.
    pub memtest_budget: Duration,
}

#[derive(Debug)]
pub enum Error {
    TooManyDevices(usize),
    Map {
        what: &'static str,
        source: io::Error,
    },
    AltStack(io::Error),
    Handler {
        signal: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooManyDevices(n) => write!(
                f,
                "crash handler: {n} watchdog devices, at most {MAX_DEVICES} supported"
            ),
            Error::Map { what, source } => {
                write!(f, "crash handler: cannot map the {what}: {source}")
            }
            Error::AltStack(e) => write!(
                f,
                "crash handler: cannot install the alternate signal stack: {e}"
            ),
            Error::Handler { signal, source } => {
                write!(
                    f,
                    "crash handler: cannot install the handler for {signal}: {source}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::TooManyDevices(_) => None,
            Error::Map { source, .. } | Error::Handler { source, .. } => Some(source),
            Error::AltStack(e) => Some(e),
        }
    }
}

const FATAL_SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];
const MAX_DEVICES: usize = 8;
/// The handler's frames are small, but debug builds are generous with
/// stack; 128 KiB leaves a wide margin either way.
pub(super) const ALT_STACK_BYTES: usize = 128 * 1024;
/// The memory test's chunk: copied aside, tested, restored.
pub(super) const BACKUP_BYTES: usize = 256 * 1024;
/// About 600 lines of `/proc/self/maps`; the daemon has a few dozen.
const MAPS_BYTES: usize = 64 * 1024;
const DIRENT_BYTES: usize = 16 * 1024;

/// The memory the handler works in, mapped once by `install`.
#[repr(C)]
pub(super) struct Arena {
    pub(super) backup: [u64; BACKUP_BYTES / 8],
    pub(super) maps: [u8; MAPS_BYTES],
    pub(super) dirents: [u8; DIRENT_BYTES],
}

pub(super) const ARENA_BYTES: usize = std::mem::size_of::<Arena>().div_ceil(PAGE) * PAGE;

// What install prepares for the handler (with `report`'s descriptor and
// `park`'s). The handler copies all of it into locals before the memory
// test starts, since these statics live in memory the test covers.
pub(super) static ARENA: AtomicPtr<Arena> = AtomicPtr::new(ptr::null_mut());
pub(super) static ALT_STACK: AtomicUsize = AtomicUsize::new(0);
pub(super) static MEMTEST: AtomicBool = AtomicBool::new(false);
pub(super) static BUDGET_MS: AtomicU64 = AtomicU64::new(0);
pub(super) static DEVICES: [AtomicI32; MAX_DEVICES] = [const { AtomicI32::new(-1) }; MAX_DEVICES];
pub(super) static FEEDING: AtomicBool = AtomicBool::new(true);
pub(super) static MAPS_FD: AtomicI32 = AtomicI32::new(-1);
pub(super) static STARTED_NS: AtomicU64 = AtomicU64::new(0);

/// Installs the handlers, once; later calls (on reload) update the settings.
/// Call it from the daemon's main thread: the alternate stack belongs to
/// the calling thread. Threads must not block `SIGRTMAX` (the parking
/// signal) or the crash memory test is skipped.
pub fn install(setup: Setup) -> Result<(), Error> {
    if setup.watchdog_fds.len() > MAX_DEVICES {
        return Err(Error::TooManyDevices(setup.watchdog_fds.len()));
    }
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut prepared = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    for (i, slot) in DEVICES.iter().enumerate() {
        slot.store(
            setup.watchdog_fds.get(i).copied().unwrap_or(-1),
            Ordering::Relaxed,
        );
    }
    MEMTEST.store(setup.memtest, Ordering::Relaxed);
    BUDGET_MS.store(
        u64::try_from(setup.memtest_budget.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    if !*prepared {
        prepare()?;
        *prepared = true;
    }
    for sig in FATAL_SIGNALS {
        set_action(
            sig,
            handler::on_fatal_signal as *const () as usize,
            libc::SA_SIGINFO | libc::SA_ONSTACK,
        )?;
    }
    set_action(
        libc::SIGRTMAX(),
        park::on_park_signal as *const () as usize,
        0,
    )
}

/// Stops the handler's one feed on a crash, for good: for the daemon's
/// reboot path, once it has decided to let the hardware reset the host.
pub fn stop_feeding() {
    FEEDING.store(false, Ordering::Relaxed);
}

fn prepare() -> Result<(), Error> {
    STARTED_NS.store(monotonic_ns(), Ordering::Relaxed);
    let arena = map_anonymous(ARENA_BYTES).map_err(|source| Error::Map {
        what: "memory test's backup area",
        source,
    })?;
    ARENA.store(arena.cast(), Ordering::Release);

    let alt = map_alt_stack()?;
    ALT_STACK.store(alt as usize, Ordering::Release);

    KMSG_FD.store(
        open_for_handler(kmsg_path(), libc::O_WRONLY),
        Ordering::Relaxed,
    );
    MAPS_FD.store(
        open_for_handler(c"/proc/self/maps", libc::O_RDONLY),
        Ordering::Relaxed,
    );
    park::TASKS_FD.store(
        open_for_handler(c"/proc/self/task", libc::O_RDONLY | libc::O_DIRECTORY),
        Ordering::Relaxed,
    );
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    STDERR_PRIORITY.store(!tty, Ordering::Relaxed);
    #[cfg(feature = "test-hooks")]
    super::test_hooks::read_env();
    Ok(())
}

/// Maps an alternate signal stack with a guard page below it (so that a
/// handler overflowing it faults instead of writing over other memory) and
/// installs it for the calling thread. Returns the mapping's start.
fn map_alt_stack() -> Result<*mut c_void, Error> {
    let alt = map_anonymous(PAGE + ALT_STACK_BYTES).map_err(|source| Error::Map {
        what: "alternate signal stack",
        source,
    })?;
    let stack = libc::stack_t {
        // SAFETY: PAGE is inside the mapping of PAGE + ALT_STACK_BYTES.
        ss_sp: unsafe { alt.cast::<u8>().add(PAGE) }.cast(),
        ss_flags: 0,
        ss_size: ALT_STACK_BYTES,
    };
    // SAFETY: the first page of a mapping we own and nothing references
    // becomes the guard; the stack is live until `ThreadStack` (or never,
    // for the main thread's) unmaps it after disabling it.
    let ok = unsafe {
        libc::mprotect(alt, PAGE, libc::PROT_NONE) == 0
            && libc::sigaltstack(&stack, ptr::null_mut()) == 0
    };
    if !ok {
        let e = io::Error::last_os_error();
        // SAFETY: unmapping the mapping made above, which nothing uses.
        unsafe { libc::munmap(alt, PAGE + ALT_STACK_BYTES) };
        return Err(Error::AltStack(e));
    }
    Ok(alt)
}

/// The crash handler's alternate stack for a thread the daemon spawns;
/// disabled and unmapped when dropped, which the thread must do itself
/// (keep it alive for the thread's whole life).
#[must_use = "the stack is removed when this is dropped"]
pub struct ThreadStack {
    mapping: *mut c_void,
}

/// Gives the calling thread the crash handler's alternate stack, so that a
/// crash (or a stack overflow) on that thread is reported like one on the
/// main thread. Without it, the thread falls back on the Rust runtime's
/// small alternate stack, on which a debug build cannot run the handler.
pub fn prepare_thread() -> Result<ThreadStack, Error> {
    #[cfg(feature = "test-hooks")]
    if super::test_hooks::thread_stack_refused() {
        return Err(Error::AltStack(io::Error::from_raw_os_error(libc::ENOMEM)));
    }
    Ok(ThreadStack {
        mapping: map_alt_stack()?,
    })
}

impl Drop for ThreadStack {
    fn drop(&mut self) {
        let off = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: called on the thread that installed the stack (the value
        // is not Send), outside any handler; after SS_DISABLE nothing uses
        // the mapping, which is then unmapped whole.
        unsafe {
            libc::sigaltstack(&off, ptr::null_mut());
            libc::munmap(self.mapping, PAGE + ALT_STACK_BYTES);
        }
    }
}

fn map_anonymous(len: usize) -> io::Result<*mut c_void> {
    // SAFETY: a fresh private anonymous mapping aliases nothing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p)
    }
}

fn kmsg_path() -> &'static std::ffi::CStr {
    #[cfg(feature = "test-hooks")]
    if let Some(path) = super::test_hooks::kmsg_override() {
        return path;
    }
    c"/dev/kmsg"
}

/// Opens a descriptor the handler will use; -1 when it cannot (the
/// handler then does without, e.g. no `/dev/kmsg` in a container).
fn open_for_handler(path: &std::ffi::CStr, flags: c_int) -> RawFd {
    // SAFETY: path is NUL-terminated; the flags create nothing.
    unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) }
}

fn set_action(sig: c_int, handler: usize, flags: c_int) -> Result<(), Error> {
    // SAFETY: sigaction is plain data; all-zero is a valid starting value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = flags;
    // SAFETY: sa_mask is a valid sigset_t inside `action`; the handler
    // address is an `extern "C"` function of the signature `flags` names;
    // every signal is blocked while a handler runs.
    let rc = unsafe {
        libc::sigfillset(&mut action.sa_mask);
        libc::sigaction(sig, &action, ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Handler {
            signal: signal_name(sig),
            source: io::Error::last_os_error(),
        })
    }
}
