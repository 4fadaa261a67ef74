//! Ways to make the real binary crash, for the tests: `heartwatch
//! crash-test`, `HEARTWATCH_TEST_CRASH` in the daemon, and the settings
//! that bend the handler for a test. Compiled only with the `test-hooks`
//! feature, so that a production build has none of it.

use std::ffi::CString;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::memtest::{Pattern, Region};

use super::report::{Line, Sink};
use super::{Setup, monotonic_ns};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
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
static CORRUPT: AtomicBool = AtomicBool::new(false);

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
    CORRUPT.store(corrupt, Ordering::Relaxed);
}

/// `HEARTWATCH_TEST_NO_THREAD_ALTSTACK`: `prepare_thread` fails with
/// ENOMEM, as a refused mapping would.
pub(super) fn thread_stack_refused() -> bool {
    std::env::var_os("HEARTWATCH_TEST_NO_THREAD_ALTSTACK").is_some()
}

/// `HEARTWATCH_TEST_CORRUPT_MEMTEST=1`: the crash memory test flips one
/// bit between a write and its read-back, once, to prove the report's
/// addresses.
pub(super) struct Corruption {
    planned: bool,
    flipped: usize,
}

impl Corruption {
    /// Read before the test starts: the setting lives in memory it covers.
    pub(super) fn planned() -> Corruption {
        Corruption {
            planned: CORRUPT.load(Ordering::Relaxed),
            flipped: 0,
        }
    }

    /// Called once a pattern has been written over `region`.
    pub(super) fn written(&mut self, region: &Region, pattern: Pattern) {
        if self.planned && pattern == Pattern::Random {
            let word = region.words() / 2;
            region.flip_bit(word, 5);
            self.flipped = region.addr() + word * 8;
            self.planned = false;
        }
    }

    /// Says where the bit was flipped, after the test.
    pub(super) fn report(&self, sink: &Sink) {
        if self.flipped != 0 {
            let mut l = Line::new();
            l.text("test hook: flipped bit 5 at ")
                .hex(self.flipped as u64);
            sink.emit(&mut l);
        }
    }
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
