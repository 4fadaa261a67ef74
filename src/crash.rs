//! What heartwatch does when it crashes: a handler for SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE and SIGABRT that writes a crash report to stderr (the
//! journal) and `/dev/kmsg` (which survives into pstore/ramoops), tests the
//! process's own anonymous writable memory while preserving it, and then
//! re-raises the signal with the default action so that the crash stays a
//! crash: systemd restarts the daemon and a core dump stays possible.
//!
//! The handler is async-signal-safe: it runs on its own alternate stack
//! (`install` gives the calling thread one, `prepare_thread` any other),
//! calls only raw system calls (`writev`, `read`, `ioctl`, `mincore`,
//! `tgkill`, `clock_gettime`, ...), allocates nothing, takes no lock and
//! formats its numbers itself. Everything it needs — file descriptors, the
//! memory test's backup area, the `/proc/self/maps` buffer, the rules'
//! summary — is prepared by `install` and `publish_summary` beforehand.
//!
//! It replaces the Rust runtime's SIGSEGV/SIGBUS handler, so it reports
//! stack overflows itself: a fault next to the interrupted stack pointer.
//!
//! The memory test never writes to a word the handler itself reads while
//! that word is under test: the handler copies every setting it needs out of
//! the statics into locals first, and skips its arena, its alternate stack,
//! the stack it runs on and the running thread's control block around the
//! thread pointer (glibc's TCB and initial thread-locals, with the rseq
//! area the kernel writes behind its back). Other threads are parked first (`SIGRTMAX`,
//! whose handler waits forever); if one does not stop within 100 ms (say, a
//! stat stuck on a dead NFS mount), the test is skipped rather than racing
//! it.
//!
//! Feeding the hardware watchdog: the handler feeds each device once, on
//! entry, and never between chunks of the memory test. The daemon fed at
//! most one feed interval (at most half the hardware timeout) ago, and the
//! test's budget is a quarter of the timeout, so the device cannot expire
//! during the test; the one feed on entry hands systemd's restart the whole
//! timeout rather than what is left of it. Feeding in a loop would let a
//! handler stuck in that loop (a corrupted deadline, a bit flip in a
//! counter) keep a broken host alive, which is exactly what the hardware is
//! there to catch. The handler never writes the magic close character, so
//! an armed watchdog stays armed when the process dies.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Mutex;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};
use std::time::Duration;

use libc::c_int;

use crate::memtest::{self, Observer, Region};

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
const PAGE: usize = 4096;
/// The handler's frames are small, but debug builds are generous with
/// stack; 128 KiB leaves a wide margin either way.
const ALT_STACK_BYTES: usize = 128 * 1024;
/// The memory test's chunk: copied aside, tested, restored.
const BACKUP_BYTES: usize = 256 * 1024;
/// About 600 lines of `/proc/self/maps`; the daemon has a few dozen.
const MAPS_BYTES: usize = 64 * 1024;
const DIRENT_BYTES: usize = 16 * 1024;
const SUMMARY_BYTES: usize = 256;
/// How long the handler waits for the other threads to park.
const PARK_WAIT_MS: u64 = 100;
/// Memory errors reported by address; the rest are counted.
const ERRORS_SHOWN: usize = 16;
const BUS_MCEERR_AR: c_int = 4;
const BUS_MCEERR_AO: c_int = 5;
/// `WDIOC_KEEPALIVE`, `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;

/// The memory the handler works in, mapped once by `install`.
#[repr(C)]
struct Arena {
    backup: [u64; BACKUP_BYTES / 8],
    maps: [u8; MAPS_BYTES],
    dirents: [u8; DIRENT_BYTES],
}

const ARENA_BYTES: usize = std::mem::size_of::<Arena>().div_ceil(PAGE) * PAGE;

// What install prepares for the handler. The handler copies all of it into
// locals before the memory test starts, since these statics live in memory
// the test covers.
static ARENA: AtomicPtr<Arena> = AtomicPtr::new(ptr::null_mut());
static ALT_STACK: AtomicUsize = AtomicUsize::new(0);
static MEMTEST: AtomicBool = AtomicBool::new(false);
static BUDGET_MS: AtomicU64 = AtomicU64::new(0);
static DEVICES: [AtomicI32; MAX_DEVICES] = [const { AtomicI32::new(-1) }; MAX_DEVICES];
static FEEDING: AtomicBool = AtomicBool::new(true);
static KMSG_FD: AtomicI32 = AtomicI32::new(-1);
static MAPS_FD: AtomicI32 = AtomicI32::new(-1);
static TASKS_FD: AtomicI32 = AtomicI32::new(-1);
static STDERR_PRIORITY: AtomicBool = AtomicBool::new(false);
static STARTED_NS: AtomicU64 = AtomicU64::new(0);
/// What the memory test skips on either side of the thread pointer. glibc
/// keeps the running thread's control block there (`struct pthread`, about
/// 2.3 KiB, above the pointer on x86_64 and below it on aarch64) with the
/// stack guard and the rseq area, and the initial-exec thread-locals (errno
/// among them) just below it. The kernel writes the rseq area on every
/// preemption and follows its `rseq_cs` pointer: a test pattern there gets
/// the thread killed with SIGSEGV. Found from the thread pointer alone, it
/// needs no look-up of `__rseq_offset` (glibc 2.35 and later only);
/// `the_rseq_area_is_skipped` checks with it and with the kernel where the
/// area really is.
const THREAD_BLOCK_BYTES: usize = 4096;
/// Tests only (`HEARTWATCH_TEST_CORRUPT_MEMTEST=1`): the crash memory test
/// flips one bit between a write and its read-back.
static INJECT: AtomicBool = AtomicBool::new(false);

/// The thread handling a crash (0: none). A second thread that crashes
/// meanwhile parks; the process dies with the first.
static HANDLING: AtomicI32 = AtomicI32::new(0);
/// Threads that have parked for the memory test.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// The rules' summary: two buffers and a generation counter. The writer
/// fills the buffer the counter does not point at and then advances the
/// counter; the reader checks the counter did not move by two while it
/// copied, so it never reports a torn line.
static SUMMARY: [[AtomicU8; SUMMARY_BYTES]; 2] = [
    [const { AtomicU8::new(0) }; SUMMARY_BYTES],
    [const { AtomicU8::new(0) }; SUMMARY_BYTES],
];
static SUMMARY_LEN: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static SUMMARY_GEN: AtomicUsize = AtomicUsize::new(0);

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
            on_fatal_signal as *const () as usize,
            libc::SA_SIGINFO | libc::SA_ONSTACK,
        )?;
    }
    set_action(libc::SIGRTMAX(), on_park_signal as *const () as usize, 0)
}

/// Stops the handler's one feed on a crash, for good: for the daemon's
/// reboot path, once it has decided to let the hardware reset the host.
pub fn stop_feeding() {
    FEEDING.store(false, Ordering::Relaxed);
}

/// Publishes the one-line rules summary the crash report shows. Called by
/// the daemon's loop (one writer) on every state change; does not allocate.
/// Longer lines are cut at a character boundary; control characters become
/// spaces.
pub fn publish_summary(line: &str) {
    let generation = SUMMARY_GEN.load(Ordering::Relaxed);
    let slot = (generation + 1) % 2;
    let mut len = line.len().min(SUMMARY_BYTES);
    while !line.is_char_boundary(len) {
        len -= 1;
    }
    for (dst, &b) in SUMMARY[slot].iter().zip(&line.as_bytes()[..len]) {
        dst.store(
            if b < b' ' || b == 0x7f { b' ' } else { b },
            Ordering::Relaxed,
        );
    }
    SUMMARY_LEN[slot].store(len, Ordering::Relaxed);
    SUMMARY_GEN.store(generation + 1, Ordering::Release);
}

/// Copies the summary into `out`; None when no summary was published or it
/// changed twice while being copied.
fn read_summary(out: &mut [u8; SUMMARY_BYTES]) -> Option<usize> {
    let before = SUMMARY_GEN.load(Ordering::Acquire);
    if before == 0 {
        return None;
    }
    let slot = before % 2;
    let len = SUMMARY_LEN[slot].load(Ordering::Relaxed).min(SUMMARY_BYTES);
    for (o, b) in out.iter_mut().zip(&SUMMARY[slot]).take(len) {
        *o = b.load(Ordering::Relaxed);
    }
    fence(Ordering::Acquire);
    let after = SUMMARY_GEN.load(Ordering::Relaxed);
    (after.wrapping_sub(before) < 2).then_some(len)
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
    TASKS_FD.store(
        open_for_handler(c"/proc/self/task", libc::O_RDONLY | libc::O_DIRECTORY),
        Ordering::Relaxed,
    );
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    STDERR_PRIORITY.store(!tty, Ordering::Relaxed);
    #[cfg(feature = "test-hooks")]
    test_hooks::read_env();
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
/// Tests only (`HEARTWATCH_TEST_NO_THREAD_ALTSTACK`): fails with ENOMEM,
/// as a refused mapping would.
pub fn prepare_thread() -> Result<ThreadStack, Error> {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("HEARTWATCH_TEST_NO_THREAD_ALTSTACK").is_some() {
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
    if let Some(path) = test_hooks::kmsg_override() {
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

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

fn code_name(sig: c_int, code: c_int) -> &'static str {
    match (sig, code) {
        (_, libc::SI_USER) => "SI_USER",
        (_, libc::SI_KERNEL) => "SI_KERNEL",
        (_, libc::SI_QUEUE) => "SI_QUEUE",
        (_, libc::SI_TKILL) => "SI_TKILL",
        (libc::SIGSEGV, 1) => "SEGV_MAPERR",
        (libc::SIGSEGV, 2) => "SEGV_ACCERR",
        (libc::SIGSEGV, 3) => "SEGV_BNDERR",
        (libc::SIGSEGV, 4) => "SEGV_PKUERR",
        (libc::SIGBUS, 1) => "BUS_ADRALN",
        (libc::SIGBUS, 2) => "BUS_ADRERR",
        (libc::SIGBUS, 3) => "BUS_OBJERR",
        (libc::SIGBUS, BUS_MCEERR_AR) => "BUS_MCEERR_AR (hardware memory error)",
        (libc::SIGBUS, BUS_MCEERR_AO) => "BUS_MCEERR_AO (hardware memory error)",
        (libc::SIGILL, 1) => "ILL_ILLOPC",
        (libc::SIGILL, 2) => "ILL_ILLOPN",
        (libc::SIGILL, 3) => "ILL_ILLADR",
        (libc::SIGILL, 4) => "ILL_ILLTRP",
        (libc::SIGILL, 5) => "ILL_PRVOPC",
        (libc::SIGILL, 6) => "ILL_PRVREG",
        (libc::SIGILL, 7) => "ILL_COPROC",
        (libc::SIGILL, 8) => "ILL_BADSTK",
        (libc::SIGFPE, 1) => "FPE_INTDIV",
        (libc::SIGFPE, 2) => "FPE_INTOVF",
        (libc::SIGFPE, 3) => "FPE_FLTDIV",
        (libc::SIGFPE, 4) => "FPE_FLTOVF",
        (libc::SIGFPE, 5) => "FPE_FLTUND",
        (libc::SIGFPE, 6) => "FPE_FLTRES",
        (libc::SIGFPE, 7) => "FPE_FLTINV",
        (libc::SIGFPE, 8) => "FPE_FLTSUB",
        _ => "?",
    }
}

/// One line of the report, formatted without `fmt` or allocation.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        let mut line = Line {
            buf: [0; 512],
            len: 0,
        };
        line.text("crash: ");
        line
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let room = self.buf.len() - 1 - self.len;
        let n = b.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn dec(&mut self, n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        self.bytes(crate::text::decimal(n, &mut digits))
    }

    /// `n` and its noun, which agrees with it: `1 error`, `2 errors`.
    fn count(&mut self, n: u64, noun: &str) -> &mut Self {
        self.dec(n).text(" ").text(noun);
        if n == 1 { self } else { self.text("s") }
    }

    fn signed(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            self.text("-");
        }
        self.dec(n.unsigned_abs())
    }

    fn hex(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.text("0x").bytes(&digits[i..])
    }

    /// Milliseconds from nanoseconds, as `1234 ms`.
    fn ms(&mut self, ns: u64) -> &mut Self {
        self.dec(ns / 1_000_000).text(" ms")
    }

    /// Bytes as KiB, as `1234 KiB`.
    fn kib(&mut self, bytes: u64) -> &mut Self {
        self.dec(bytes.div_ceil(1024)).text(" KiB")
    }
}

/// Where the report goes: stderr (with a syslog priority prefix when it is
/// not a terminal, as the daemon's other lines) and `/dev/kmsg`.
#[derive(Clone, Copy)]
struct Sink {
    kmsg: RawFd,
    priority: bool,
    pid: u32,
}

impl Sink {
    fn emit(&self, line: &mut Line) {
        line.bytes(b"\n");
        let body = &line.buf[..line.len];
        let mut head = Line {
            buf: [0; 512],
            len: 0,
        };
        if self.priority {
            head.text("<2>");
        }
        head.text("heartwatch: ");
        write_all(2, &[&head.buf[..head.len], body]);
        if self.kmsg >= 0 {
            let mut head = Line {
                buf: [0; 512],
                len: 0,
            };
            head.text("<2>heartwatch[")
                .dec(u64::from(self.pid))
                .text("]: ");
            write_all(self.kmsg, &[&head.buf[..head.len], body]);
        }
    }
}

/// Writes the parts as one `writev`, so that each line is one record in
/// `/dev/kmsg` and is not interleaved on stderr; retries short writes.
fn write_all(fd: RawFd, parts: &[&[u8]; 2]) {
    let mut iov = [
        libc::iovec {
            iov_base: parts[0].as_ptr() as *mut c_void,
            iov_len: parts[0].len(),
        },
        libc::iovec {
            iov_base: parts[1].as_ptr() as *mut c_void,
            iov_len: parts[1].len(),
        },
    ];
    let mut first = 0;
    while first < iov.len() {
        // SAFETY: the iovecs point into `parts`, which outlive the call;
        // writev is async-signal-safe.
        let n = unsafe { libc::writev(fd, iov[first..].as_ptr(), (iov.len() - first) as c_int) };
        if n <= 0 {
            return;
        }
        let mut n = n as usize;
        while first < iov.len() && n >= iov[first].iov_len {
            n -= iov[first].iov_len;
            first += 1;
        }
        if first < iov.len() {
            // SAFETY: n < iov_len, so the advanced pointer stays in the part.
            iov[first].iov_base = unsafe { iov[first].iov_base.cast::<u8>().add(n) }.cast();
            iov[first].iov_len -= n;
        }
    }
}

/// The interrupted context's stack pointer and instruction pointer.
fn context_registers(ctx: *mut c_void) -> (u64, u64) {
    if ctx.is_null() {
        return (0, 0);
    }
    let uc = ctx.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    return unsafe {
        let regs = &(*uc).uc_mcontext.gregs;
        (
            regs[libc::REG_RSP as usize] as u64,
            regs[libc::REG_RIP as usize] as u64,
        )
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    return unsafe { ((*uc).uc_mcontext.sp, (*uc).uc_mcontext.pc) };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        (0, 0)
    }
}

/// A fault right at the interrupted stack pointer is a stack overflow:
/// pushes and stack probes touch the guard page just below it.
fn is_stack_overflow(sig: c_int, code: c_int, fault: u64, sp: u64) -> bool {
    const NEAR: u64 = 64 * 1024;
    (sig == libc::SIGSEGV || sig == libc::SIGBUS)
        && code > 0
        && sp != 0
        && fault <= sp.saturating_add(PAGE as u64)
        && fault >= sp.saturating_sub(NEAR)
}

/// The crash handler. Async-signal-safe: see the module's documentation.
extern "C" fn on_fatal_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: gettid is a system call without side effects.
    let tid = unsafe { libc::gettid() };
    if let Err(owner) = HANDLING.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire) {
        if owner != tid {
            // Another thread is reporting a crash and will end the process.
            park_forever();
        }
        // A signal raised inside the handler itself (faults inside it are
        // forced to the default action by the kernel, since every signal
        // is blocked here): give up on the report.
        // SAFETY: the kernel passes a valid siginfo_t.
        reraise(sig, unsafe { (*info).si_code });
        return;
    }
    let entered = monotonic_ns();
    let sink = Sink {
        kmsg: KMSG_FD.load(Ordering::Relaxed),
        priority: STDERR_PRIORITY.load(Ordering::Relaxed),
        pid: std::process::id(),
    };
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, fault, sender) = unsafe {
        let code = (*info).si_code;
        let fault = if code > 0 {
            (*info).si_addr() as u64
        } else {
            0
        };
        let sender = if code <= 0 { (*info).si_pid() } else { 0 };
        (code, fault, sender)
    };
    let (sp, ip) = context_registers(ctx);

    let mut l = Line::new();
    l.text(signal_name(sig))
        .text(" (si_code ")
        .signed(i64::from(code));
    l.text(" ").text(code_name(sig, code)).text(")");
    if code > 0 {
        l.text(", fault address ")
            .hex(fault)
            .text(", ip ")
            .hex(ip)
            .text(", sp ")
            .hex(sp);
    } else {
        l.text(", sent by pid ").dec(sender as u64);
    }
    sink.emit(&mut l);

    let up = entered.saturating_sub(STARTED_NS.load(Ordering::Relaxed));
    let mut l = Line::new();
    l.text("pid ")
        .dec(u64::from(sink.pid))
        .text(", tid ")
        .dec(tid as u64);
    l.text(", uptime ").dec(up / 1_000_000_000).text(".");
    let millis = (up / 1_000_000) % 1000;
    l.bytes(&[
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
    ]);
    l.text(" s, heartwatch ").text(env!("CARGO_PKG_VERSION"));
    sink.emit(&mut l);

    let mut summary = [0u8; SUMMARY_BYTES];
    let mut l = Line::new();
    l.text("rules: ");
    match read_summary(&mut summary) {
        Some(len) => l.bytes(&summary[..len]),
        None => l.text("(no summary)"),
    };
    sink.emit(&mut l);

    if is_stack_overflow(sig, code, fault, sp) {
        let mut l = Line::new();
        l.text("stack overflow: fault address ").hex(fault);
        l.text(" is next to the stack pointer ").hex(sp);
        sink.emit(&mut l);
    }

    feed_once(&sink);

    if sig == libc::SIGBUS && (code == BUS_MCEERR_AR || code == BUS_MCEERR_AO) {
        // Reading the poisoned page again would only fault once more.
        let mut l = Line::new();
        l.text("memory test skipped: the kernel reported a hardware memory error at ");
        l.hex(fault);
        sink.emit(&mut l);
    } else if MEMTEST.load(Ordering::Relaxed) {
        let budget_ns = BUDGET_MS.load(Ordering::Relaxed).saturating_mul(1_000_000);
        memory_test(&sink, entered.saturating_add(budget_ns), budget_ns);
    } else {
        let mut l = Line::new();
        l.text("memory test off (CrashMemtest=no)");
        sink.emit(&mut l);
    }

    let mut l = Line::new();
    l.text("re-raising ")
        .text(signal_name(sig))
        .text(" with the default action");
    sink.emit(&mut l);
    reraise(sig, code);
}

/// Feeds each watchdog device once (see the module's documentation).
fn feed_once(sink: &Sink) {
    if !FEEDING.load(Ordering::Relaxed) {
        return;
    }
    let mut l = Line::new();
    l.text("fed watchdog fd");
    let mut any = false;
    for slot in &DEVICES {
        let fd = slot.load(Ordering::Relaxed);
        if fd < 0 {
            continue;
        }
        // SAFETY: ioctl and write on a descriptor the daemon keeps open;
        // a stale descriptor only makes them fail. The byte written is not
        // the magic close character.
        let ok = unsafe {
            libc::ioctl(fd, WDIOC_KEEPALIVE as _, 0) == 0
                || libc::write(fd, [0u8].as_ptr().cast(), 1) == 1
        };
        l.text(" ")
            .dec(fd as u64)
            .text(if ok { "" } else { " (failed)" });
        any = true;
    }
    if any {
        l.text(" once; left armed");
        sink.emit(&mut l);
    }
}

/// Restores the default action, unblocks the signal and sends it to this
/// thread, so the process dies by it: systemd sees a crash and a core dump
/// stays possible. Returns only if the signal could not be delivered; then
/// a fault the kernel raised (`si_code > 0`) repeats when the handler
/// returns, now with the default action, while a signal that was sent would
/// not, so that case exits as a signal death would.
fn reraise(sig: c_int, code: c_int) {
    // SAFETY: sigaction, pthread_sigmask and tgkill are async-signal-safe;
    // the action and the set are local and initialised before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
        libc::tgkill(libc::getpid(), libc::gettid(), sig);
        if code <= 0 || sig == libc::SIGABRT {
            libc::_exit(128 + sig);
        }
    }
}

extern "C" fn on_park_signal(_: c_int) {
    if HANDLING.load(Ordering::Acquire) == 0 {
        return;
    }
    park_forever();
}

/// Counts this thread as parked and waits for the process to end.
fn park_forever() -> ! {
    PARKED.fetch_add(1, Ordering::AcqRel);
    loop {
        // SAFETY: pause is async-signal-safe; every signal is blocked in
        // the handler that called this, so it only returns on SIGKILL's way.
        unsafe { libc::pause() };
    }
}

/// Stops every other thread of the process; false when one did not stop
/// within the wait, in which case the memory test must not run.
fn park_other_threads(arena: &mut Arena, me: i32) -> (bool, usize) {
    let fd = TASKS_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return (false, 0);
    }
    let mut others = 0;
    // SAFETY: lseek and getdents64 on our own directory descriptor into a
    // buffer we own exclusively (the HANDLING guard).
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    loop {
        // SAFETY: see above.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd,
                arena.dirents.as_mut_ptr(),
                arena.dirents.len(),
            )
        };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at + 19 < n as usize {
            let entry = &arena.dirents[at..n as usize];
            let reclen = u16::from_ne_bytes([entry[16], entry[17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &entry[19..reclen.min(entry.len())];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_dec(name)
                && tid as i32 != me
            {
                // SAFETY: tgkill sends the parking signal to a thread of
                // this process; ESRCH (it just exited) is not counted.
                if unsafe { libc::tgkill(libc::getpid(), tid as i32, libc::SIGRTMAX()) } == 0 {
                    others += 1;
                }
            }
            at += reclen;
        }
    }
    let deadline = monotonic_ns() + PARK_WAIT_MS * 1_000_000;
    while PARKED.load(Ordering::Acquire) < others {
        if monotonic_ns() > deadline {
            return (false, others);
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: nanosleep is async-signal-safe; ts is valid.
        unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
    }
    (true, others)
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(d))
    })
}

/// One line of `/proc/self/maps`, as far as the memory test cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// Private, readable, writable and anonymous (heap, stacks, anonymous
    /// mmaps; not files, not the vDSO, not shared memory).
    pub anonymous_rw: bool,
}

/// Parses one line of `/proc/self/maps` (public for the fuzz target).
pub fn parse_maps_line(line: &[u8]) -> Option<Mapping> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = parse_hex(&range[..dash])? as usize;
    let end = parse_hex(&range[dash + 1..])? as usize;
    if end < start {
        // Never from the kernel, but a cut or corrupted buffer must not
        // make the memory test's sizes underflow.
        return None;
    }
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode = parse_dec(fields.next()?)?;
    let name = fields.next().unwrap_or(b"");
    let anonymous_name =
        name.is_empty() || name == b"[heap]" || name == b"[stack]" || name.starts_with(b"[anon:");
    Some(Mapping {
        start,
        end,
        anonymous_rw: perms == b"rw-p" && inode == 0 && anonymous_name,
    })
}

/// Calls `each` with the parts of `[start, end)` outside every range in
/// `skip`.
fn without(start: usize, end: usize, skip: &[(usize, usize)], mut each: impl FnMut(usize, usize)) {
    let mut at = start;
    while at < end {
        let next = skip
            .iter()
            .filter(|&&(s, e)| e > at && s < end)
            .min_by_key(|&&(s, _)| s);
        match next {
            None => {
                each(at, end);
                return;
            }
            Some(&(s, e)) => {
                if s > at {
                    each(at, s);
                }
                at = e;
            }
        }
    }
}

/// Records the first memory errors for the report, which prints them
/// between chunks, when no tested memory is in flight.
struct Found {
    first: [(usize, u64, u64); ERRORS_SHOWN],
    recorded: usize,
    printed: usize,
    /// Tests only: flip a bit once, to prove the report's addresses.
    inject: bool,
    injected: usize,
}

impl Observer for Found {
    fn mismatch(&mut self, addr: usize, expected: u64, actual: u64) {
        if self.recorded < ERRORS_SHOWN {
            self.first[self.recorded] = (addr, expected, actual);
            self.recorded += 1;
        }
    }

    fn written(&mut self, region: &Region, pattern: memtest::Pattern) {
        if self.inject && pattern == memtest::Pattern::Random {
            let word = region.words() / 2;
            region.flip_bit(word, 5);
            self.injected = region.addr() + word * 8;
            self.inject = false;
        }
    }
}

impl Found {
    fn print_new(&mut self, sink: &Sink) {
        while self.printed < self.recorded {
            let (addr, expected, actual) = self.first[self.printed];
            let mut l = Line::new();
            l.text("memory error at ")
                .hex(addr as u64)
                .text(": wrote ")
                .hex(expected);
            l.text(", read ")
                .hex(actual)
                .text(", bits ")
                .hex(expected ^ actual);
            sink.emit(&mut l);
            self.printed += 1;
        }
    }
}

/// What the crash memory test covered.
#[derive(Default)]
struct Coverage {
    mappings: u64,
    mapped: u64,
    /// Mapped, less the handler's own areas.
    candidate: u64,
    resident: u64,
    tested: u64,
    errors: u64,
    stopped: bool,
}

fn page_down(a: usize) -> usize {
    a & !(PAGE - 1)
}

fn page_up(a: usize) -> usize {
    a.div_ceil(PAGE) * PAGE
}

/// The pages around the thread pointer `tp` that the memory test skips.
fn thread_block(tp: usize) -> (usize, usize) {
    (
        page_down(tp.saturating_sub(THREAD_BLOCK_BYTES)),
        page_up(tp + THREAD_BLOCK_BYTES),
    )
}

/// The thread pointer (glibc's TCB).
fn thread_pointer() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: reads the TCB's self pointer at %fs:0, which glibc sets
        // for every thread.
        unsafe {
            std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        tp
    }
    #[cfg(target_arch = "aarch64")]
    {
        let tp: usize;
        // SAFETY: reads the thread ID register; no side effects.
        unsafe {
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags))
        };
        tp
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    0
}

fn memory_test(sink: &Sink, deadline: u64, budget_ns: u64) {
    let started = monotonic_ns();
    let arena_ptr = ARENA.load(Ordering::Acquire);
    let maps_fd = MAPS_FD.load(Ordering::Relaxed);
    if arena_ptr.is_null() || maps_fd < 0 || budget_ns == 0 {
        let mut l = Line::new();
        l.text("memory test skipped: ");
        l.text(if budget_ns == 0 {
            "no time budget"
        } else {
            "not prepared"
        });
        sink.emit(&mut l);
        return;
    }
    // SAFETY: the arena is mapped once and never unmapped; the HANDLING
    // guard makes this thread its only user.
    let arena = unsafe { &mut *arena_ptr };
    // SAFETY: gettid has no side effects.
    let (parked, others) = park_other_threads(arena, unsafe { libc::gettid() });
    if !parked {
        let mut l = Line::new();
        l.text("memory test skipped: ")
            .count(others as u64, "other thread");
        l.text(" did not stop");
        sink.emit(&mut l);
        return;
    }

    // Read the whole of /proc/self/maps before testing anything.
    // SAFETY: lseek/read on our descriptor into the arena's buffer.
    let len = unsafe {
        libc::lseek(maps_fd, 0, libc::SEEK_SET);
        let mut len = 0;
        while len < arena.maps.len() {
            let n = libc::read(
                maps_fd,
                arena.maps.as_mut_ptr().add(len).cast(),
                arena.maps.len() - len,
            );
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        len
    };
    let truncated = len == arena.maps.len();

    let here = &len as *const usize as usize;
    let alt = ALT_STACK.load(Ordering::Acquire);
    // The alternate stack this handler runs on, whichever thread's it is.
    // SAFETY: stack_t is plain data; sigaltstack only reports into it.
    let current = unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(ptr::null(), &mut current);
        current
    };
    let on_alt_stack = current.ss_flags & libc::SS_ONSTACK != 0;
    let current = (
        current.ss_sp as usize,
        current.ss_sp as usize + current.ss_size,
    );
    let skip = [
        (arena_ptr as usize, arena_ptr as usize + ARENA_BYTES),
        (alt, alt + PAGE + ALT_STACK_BYTES),
        if on_alt_stack { current } else { (0, 0) },
        thread_block(thread_pointer()),
    ];
    // SAFETY: the backup array lives in the arena, is aligned and ours.
    let backup = unsafe {
        Region::new(
            NonNull::new(arena.backup.as_mut_ptr()).expect("arena is not null"),
            arena.backup.len(),
        )
    };
    let mut found = Found {
        first: [(0, 0, 0); ERRORS_SHOWN],
        recorded: 0,
        printed: 0,
        inject: INJECT.load(Ordering::Relaxed),
        injected: 0,
    };
    let mut cov = Coverage::default();
    let seed = started | 1;
    let maps: &[u8] = &arena.maps[..len];
    for line in maps.split(|&b| b == b'\n') {
        let Some(m) = parse_maps_line(line) else {
            continue;
        };
        // The stack this handler runs on is never tested.
        if !m.anonymous_rw || (!on_alt_stack && m.start <= here && here < m.end) {
            continue;
        }
        cov.mappings += 1;
        cov.mapped += (m.end - m.start) as u64;
        without(m.start, m.end, &skip, |from, to| {
            test_range(
                from, to, &backup, seed, deadline, &mut found, &mut cov, sink,
            );
        });
    }
    found.print_new(sink);
    if found.injected != 0 {
        let mut l = Line::new();
        l.text("test hook: flipped bit 5 at ")
            .hex(found.injected as u64);
        sink.emit(&mut l);
    }

    let took = monotonic_ns() - started;
    let mut l = Line::new();
    if cov.errors == 0 {
        l.text("memory test PASSED: ");
    } else {
        l.text("memory test FAILED: ")
            .count(cov.errors, "error")
            .text(" in ");
    }
    l.kib(cov.tested)
        .text(" tested of ")
        .kib(cov.resident)
        .text(" resident (");
    l.kib(cov.candidate)
        .text(" mapped, besides the handler's own ");
    l.kib(cov.mapped - cov.candidate)
        .text(") in ")
        .dec(cov.mappings);
    l.text(" anonymous mappings, ");
    l.ms(took).text(" (budget ").ms(budget_ns).text(")");
    if cov.stopped {
        l.text(", stopped at the budget");
    }
    if truncated {
        l.text(", maps truncated");
    }
    sink.emit(&mut l);
}

/// Tests the resident pages of `[from, to)` chunk by chunk until the
/// deadline.
#[allow(clippy::too_many_arguments)]
fn test_range(
    from: usize,
    to: usize,
    backup: &Region,
    seed: u64,
    deadline: u64,
    found: &mut Found,
    cov: &mut Coverage,
    sink: &Sink,
) {
    const PAGES: usize = BACKUP_BYTES / PAGE;
    cov.candidate += (to - from) as u64;
    let mut at = from;
    while at < to {
        let end = (at + BACKUP_BYTES).min(to);
        let pages = (end - at) / PAGE;
        let mut resident = [0u8; PAGES];
        // SAFETY: mincore only inspects the page tables for a page-aligned
        // range of our own address space; `resident` has a byte per page.
        if unsafe { libc::mincore(at as *mut c_void, end - at, resident.as_mut_ptr()) } != 0 {
            return;
        }
        let mut page = 0;
        while page < pages {
            if resident[page] & 1 == 0 {
                page += 1;
                continue;
            }
            let first = page;
            while page < pages && resident[page] & 1 == 1 {
                page += 1;
            }
            let bytes = (page - first) * PAGE;
            cov.resident += bytes as u64;
            if cov.stopped || monotonic_ns() >= deadline {
                cov.stopped = true;
                continue;
            }
            let start = at + first * PAGE;
            // SAFETY: a resident, page-aligned part of a private anonymous
            // read-write mapping of this process. Nothing reads or writes it
            // while it is under test: the other threads are parked, the
            // handler uses only its locals, its stack and its arena (all
            // skipped), and its thread's control block, which glibc and the
            // kernel (rseq) use, is skipped too.
            let region =
                unsafe { Region::new(NonNull::new(start as *mut u64).expect("mapped"), bytes / 8) };
            cov.errors += memtest::run_preserving(&region, backup, seed ^ start as u64, found);
            cov.tested += bytes as u64;
            found.print_new(sink);
        }
        at = end;
    }
}

#[cfg(feature = "test-hooks")]
pub use test_hooks::{crash_test_command, trigger_for_tests};

/// Ways to make the real binary crash, for the tests (feature
/// `test-hooks` only).
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::ffi::CString;
    use std::process::ExitCode;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
    use std::time::Duration;

    use super::{Setup, monotonic_ns};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Crash {
        Segv = 1,
        Bus,
        Ill,
        Fpe,
        Abrt,
        StackOverflow,
        ThreadSegv,
    }

    impl Crash {
        fn parse(s: &str) -> Option<Crash> {
            Some(match s {
                "segv" => Crash::Segv,
                "bus" => Crash::Bus,
                "ill" => Crash::Ill,
                "fpe" => Crash::Fpe,
                "abrt" => Crash::Abrt,
                "stack-overflow" => Crash::StackOverflow,
                "thread-segv" => Crash::ThreadSegv,
                _ => return None,
            })
        }

        fn from_u8(n: u8) -> Option<Crash> {
            [
                Crash::Segv,
                Crash::Bus,
                Crash::Ill,
                Crash::Fpe,
                Crash::Abrt,
                Crash::StackOverflow,
                Crash::ThreadSegv,
            ]
            .into_iter()
            .find(|c| *c as u8 == n)
        }
    }

    static PLANNED: AtomicU8 = AtomicU8::new(0);
    static AT_NS: AtomicU64 = AtomicU64::new(0);
    static KMSG: OnceLock<Option<CString>> = OnceLock::new();

    /// `HEARTWATCH_TEST_CRASH`, `HEARTWATCH_TEST_CRASH_AFTER_MS` and
    /// `HEARTWATCH_TEST_CORRUPT_MEMTEST`, read once at install.
    pub(super) fn read_env() {
        if let Some(kind) = std::env::var("HEARTWATCH_TEST_CRASH")
            .ok()
            .and_then(|s| Crash::parse(&s))
        {
            let after: u64 = std::env::var("HEARTWATCH_TEST_CRASH_AFTER_MS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            AT_NS.store(monotonic_ns() + after * 1_000_000, Ordering::Relaxed);
            PLANNED.store(kind as u8, Ordering::Relaxed);
        }
        let corrupt = std::env::var("HEARTWATCH_TEST_CORRUPT_MEMTEST").as_deref() == Ok("1");
        super::INJECT.store(corrupt, Ordering::Relaxed);
    }

    /// `HEARTWATCH_TEST_KMSG`: a file that stands in for `/dev/kmsg`.
    pub(super) fn kmsg_override() -> Option<&'static std::ffi::CStr> {
        KMSG.get_or_init(|| {
            std::env::var("HEARTWATCH_TEST_KMSG")
                .ok()
                .and_then(|p| CString::new(p).ok())
        })
        .as_deref()
    }

    /// Called by the daemon once per loop turn: crashes as
    /// `HEARTWATCH_TEST_CRASH` says, once its delay has passed.
    pub fn trigger_for_tests() {
        let Some(kind) = Crash::from_u8(PLANNED.load(Ordering::Relaxed)) else {
            return;
        };
        if monotonic_ns() >= AT_NS.load(Ordering::Relaxed) {
            crash(kind);
        }
    }

    /// `heartwatch crash-test SIGNAL|stack-overflow|from-env`: installs the
    /// handler as the daemon does, with a busy second thread and a heap in
    /// use, and crashes. `from-env` loops like the daemon, calling
    /// `trigger_for_tests`. `HEARTWATCH_TEST_WATCHDOG` names a file opened
    /// as a stand-in watchdog device; `HEARTWATCH_TEST_MEMTEST=no` turns
    /// the memory test off; `HEARTWATCH_TEST_MEMTEST_BUDGET_MS` bounds it
    /// (2000 by default).
    pub fn crash_test_command(args: &[String]) -> ExitCode {
        let arg = args.first().map(String::as_str).unwrap_or("");
        let kind = Crash::parse(arg);
        if kind.is_none() && arg != "from-env" {
            eprintln!(
                "usage: heartwatch crash-test segv|bus|ill|fpe|abrt|stack-overflow|thread-segv|from-env"
            );
            return ExitCode::from(2);
        }
        let device = std::env::var_os("HEARTWATCH_TEST_WATCHDOG").map(|p| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .expect("open the stand-in watchdog")
        });
        let fds = device
            .as_ref()
            .map(std::os::fd::AsRawFd::as_raw_fd)
            .into_iter()
            .collect();
        let memtest = std::env::var("HEARTWATCH_TEST_MEMTEST").as_deref() != Ok("no");
        let budget_ms = std::env::var("HEARTWATCH_TEST_MEMTEST_BUDGET_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000);
        if let Err(e) = super::install(Setup {
            watchdog_fds: fds,
            memtest,
            memtest_budget: Duration::from_millis(budget_ms),
        }) {
            eprintln!("heartwatch crash-test: {e}");
            return ExitCode::from(1);
        }
        super::publish_summary("2 rules: backup healthy; web failing (repair 1/3)");
        // Some heap in use, and a thread writing to it: the memory test
        // must park the thread and preserve the heap.
        let heap: Vec<u64> = (0..128 * 1024).collect();
        let counter = std::sync::Arc::new(AtomicU64::new(0));
        let busy = counter.clone();
        std::thread::spawn(move || {
            loop {
                busy.fetch_add(1, Ordering::Relaxed);
            }
        });
        while counter.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        std::hint::black_box(&heap);
        match kind {
            Some(kind) => crash(kind),
            None => loop {
                trigger_for_tests();
                std::thread::sleep(Duration::from_millis(10));
            },
        }
    }

    fn crash(kind: Crash) -> ! {
        match kind {
            Crash::Segv => segv(),
            Crash::Bus => bus(),
            Crash::Ill => ill(),
            Crash::Fpe => fpe(),
            Crash::Abrt => std::process::abort(),
            Crash::StackOverflow => {
                std::hint::black_box(overflow(0));
            }
            Crash::ThreadSegv => {
                let _ = std::thread::spawn(|| {
                    let _stack = super::prepare_thread().expect("alternate stack");
                    segv();
                })
                .join();
            }
        }
        // The faults above re-raise with the default action; a raise as a
        // fallback for architectures without the instruction.
        // SAFETY: raise is always safe to call.
        unsafe { libc::raise(libc::SIGSEGV) };
        unreachable!("the crash did not happen")
    }

    /// Address 0x10: never mapped (below vm.mmap_min_addr).
    const FAULT_ADDRESS: usize = 0x10;

    fn segv() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: not sound by design: a load from an unmapped address, in
        // assembly so the compiler cannot reason about it.
        unsafe {
            std::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) _, in(reg) FAULT_ADDRESS)
        };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: not sound by design: a volatile load from an unmapped page.
        unsafe {
            std::ptr::read_volatile(FAULT_ADDRESS as *const u64);
        }
    }

    /// A load from a page of a shared mapping that lies past the end of its
    /// (empty) file: the kernel answers with SIGBUS, BUS_ADRERR.
    fn bus() {
        // SAFETY: memfd_create/mmap with checked results; the load faults
        // by design and never returns a value.
        unsafe {
            let fd = libc::memfd_create(c"heartwatch-crash-test".as_ptr(), 0);
            assert!(fd >= 0, "memfd_create");
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            std::ptr::read_volatile(p.cast::<u64>());
        }
    }

    fn ill() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: ud2 raises SIGILL by definition.
        unsafe {
            std::arch::asm!("ud2")
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: udf raises SIGILL by definition.
        unsafe {
            std::arch::asm!("udf #0")
        };
    }

    fn fpe() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an integer division by zero raises SIGFPE (FPE_INTDIV);
        // Rust's own division would panic instead.
        unsafe {
            std::arch::asm!("div {0}", in(reg) 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _)
        };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: raise is always safe; the architecture does not trap on
        // division by zero.
        unsafe {
            libc::raise(libc::SIGFPE);
        }
    }

    #[inline(never)]
    fn overflow(depth: u64) -> u64 {
        let mut frame = [0u8; 4096];
        frame[depth as usize % 4096] = 1;
        std::hint::black_box(&mut frame);
        if std::hint::black_box(depth) == u64::MAX {
            return 0;
        }
        overflow(depth + 1) + u64::from(frame[7])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: &Line) -> &str {
        std::str::from_utf8(&l.buf[..l.len]).unwrap()
    }

    #[test]
    fn counts_agree_with_their_nouns_without_fmt() {
        let mut l = Line::new();
        l.count(1, "error").text(", ").count(2, "other thread");
        assert_eq!(text(&l), "crash: 1 error, 2 other threads");
    }

    #[test]
    fn numbers_format_without_fmt() {
        let mut l = Line::new();
        l.dec(0)
            .text(" ")
            .dec(u64::MAX)
            .text(" ")
            .hex(0)
            .text(" ")
            .hex(0xdead_beef);
        l.text(" ")
            .signed(-6)
            .text(" ")
            .kib(1025)
            .text(" ")
            .ms(2_500_000_000);
        assert_eq!(
            text(&l),
            "crash: 0 18446744073709551615 0x0 0xdeadbeef -6 2 KiB 2500 ms"
        );
    }

    #[test]
    fn a_long_line_is_cut_not_overrun() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.text("0123456789");
        }
        assert_eq!(l.len, 511);
    }

    #[test]
    fn maps_lines_parse() {
        let heap =
            b"55d0c8e5a000-55d0c8e7b000 rw-p 00000000 00:00 0                          [heap]";
        assert_eq!(
            parse_maps_line(heap),
            Some(Mapping {
                start: 0x55d0c8e5a000,
                end: 0x55d0c8e7b000,
                anonymous_rw: true
            })
        );
        let anon = b"7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 ";
        assert!(parse_maps_line(anon).unwrap().anonymous_rw);
        for other in [
            &b"7f1e2c000000-7f1e2c021000 rw-p 00001000 fd:01 1234 /usr/bin/heartwatch"[..],
            b"7f1e2c000000-7f1e2c021000 r--p 00000000 00:00 0 [vvar]",
            b"7f1e2c000000-7f1e2c021000 rw-s 00000000 00:01 77 /dev/zero (deleted)",
            b"7f1e2c000000-7f1e2c021000 ---p 00000000 00:00 0 ",
        ] {
            assert!(!parse_maps_line(other).unwrap().anonymous_rw);
        }
        assert_eq!(parse_maps_line(b""), None);
        assert_eq!(parse_maps_line(b"garbage"), None);
    }

    #[test]
    fn a_mapping_that_ends_before_it_starts_is_refused() {
        // Found by the `proc` fuzz target (a truncated or corrupted maps
        // buffer): `end - start` would underflow in the memory test.
        assert_eq!(
            parse_maps_line(b"7f6f1e380000-7f6f1 rw-p 00000000 00:00 0 "),
            None
        );
        assert_eq!(parse_maps_line(b"2000-1000 rw-p 00000000 00:00 0"), None);
        assert!(parse_maps_line(b"1000-1000 rw-p 00000000 00:00 0").is_some());
    }

    #[test]
    fn skipped_ranges_are_cut_out() {
        let mut parts = Vec::new();
        without(0, 100, &[(90, 120), (10, 20), (0, 0), (30, 40)], |a, b| {
            parts.push((a, b))
        });
        assert_eq!(parts, vec![(0, 10), (20, 30), (40, 90)]);
        parts.clear();
        without(0, 100, &[(0, 100)], |a, b| parts.push((a, b)));
        assert!(parts.is_empty());
        without(50, 60, &[(0, 10)], |a, b| parts.push((a, b)));
        assert_eq!(parts, vec![(50, 60)]);
    }

    #[test]
    fn stack_overflow_is_a_fault_next_to_the_stack_pointer() {
        let sp = 0x7ffd_0000_1000;
        assert!(is_stack_overflow(libc::SIGSEGV, 1, sp - 8, sp));
        assert!(is_stack_overflow(libc::SIGSEGV, 2, sp - 4096, sp));
        assert!(!is_stack_overflow(libc::SIGSEGV, 1, 0x10, sp));
        assert!(!is_stack_overflow(libc::SIGABRT, -6, sp, sp));
        assert!(!is_stack_overflow(libc::SIGSEGV, 1, sp - 8, 0));
    }

    #[test]
    fn summary_round_trips_and_is_cut_at_a_char_boundary() {
        let mut out = [0u8; SUMMARY_BYTES];
        publish_summary("3 rules: all healthy\n");
        let len = read_summary(&mut out).unwrap();
        assert_eq!(&out[..len], b"3 rules: all healthy ");
        let long = "é".repeat(200);
        publish_summary(&long);
        let len = read_summary(&mut out).unwrap();
        assert_eq!(len, 256);
        assert!(std::str::from_utf8(&out[..len]).is_ok());
    }

    /// The rseq area the kernel writes for this thread lies inside what
    /// the memory test skips around the thread pointer. glibc (2.35 and
    /// later) says where it registered the area: `__rseq_offset` from the
    /// thread pointer, `__rseq_size` bytes (0: it registered none), symbols
    /// it exports for this, linked here (the test binary is static: `dlsym`
    /// would find nothing). The kernel confirms it without registering
    /// anything: rseq(2) on the area this thread already has is EBUSY, or
    /// EPERM with another signature (0 here, so no architecture's RSEQ_SIG
    /// is needed); on any other address or length it is EINVAL.
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn the_rseq_area_is_skipped() {
        unsafe extern "C" {
            static __rseq_offset: isize;
            static __rseq_size: u32;
        }
        // SAFETY: constants glibc sets before main and never changes.
        let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
        if size == 0 {
            // glibc registered no area: the kernel has no rseq (ENOSYS) or
            // GLIBC_TUNABLES=glibc.pthread.rseq=0. Nothing is written
            // there, so nothing to skip; said, not passed in silence.
            eprintln!("the_rseq_area_is_skipped: SKIPPED, glibc registered no rseq area");
            return;
        }
        let tp = thread_pointer();
        let area = tp.wrapping_add_signed(offset);
        // The kernel writes 32 bytes at least (struct rseq of 2018).
        let len = (size as usize).max(32);
        let mut answers = Vec::new();
        for try_len in [32u32, size, len.next_multiple_of(32) as u32] {
            // SAFETY: this thread has an rseq area (glibc registers one in
            // every thread when __rseq_size > 0), so the kernel registers
            // nothing: it compares the address, the length and the
            // signature and fails.
            let rc = unsafe { libc::syscall(libc::SYS_rseq, area, try_len, 0, 0u32) };
            let errno = io::Error::last_os_error().raw_os_error();
            assert_ne!(
                rc, 0,
                "rseq(2) registered {area:#x}: this thread had no area"
            );
            answers.push((try_len, errno));
            if errno == Some(libc::EBUSY) || errno == Some(libc::EPERM) {
                let (start, end) = thread_block(tp);
                assert!(
                    start <= area && area + len <= end,
                    "the rseq area {area:#x}+{len} is outside {start:#x}..{end:#x}, the pages skipped around the thread pointer"
                );
                return;
            }
        }
        panic!(
            "the kernel does not know {area:#x} (thread pointer {tp:#x} + {offset}) as this thread's rseq area: {answers:?}"
        );
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(libc::SIGSEGV, 1), "SEGV_MAPERR");
        assert_eq!(code_name(libc::SIGBUS, 2), "BUS_ADRERR");
        assert_eq!(code_name(libc::SIGABRT, libc::SI_TKILL), "SI_TKILL");
    }
}
