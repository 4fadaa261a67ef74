//! The crash memory test: the process's own anonymous writable memory
//! (heap, stacks, anonymous mappings), tested page by resident page with
//! the patterns of `crate::memtest`, each chunk copied aside and restored,
//! within a time budget.
//!
//! The memory test never writes to a word the handler itself reads while
//! that word is under test: the handler copies every setting it needs out
//! of the statics into locals first, and skips its arena, its alternate
//! stack, the stack it runs on and the running thread's control block
//! around the thread pointer (glibc's TCB and initial thread-locals, with
//! the rseq area the kernel writes behind its back). The other threads are
//! parked first (`park`).

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering;

use crate::memtest::{self, Observer, Region};

use super::install::{ALT_STACK, ALT_STACK_BYTES, ARENA, ARENA_BYTES, BACKUP_BYTES, MAPS_FD};
use super::park::park_other_threads;
use super::report::{Line, Sink};
use super::{PAGE, monotonic_ns};

/// Memory errors reported by address; the rest are counted.
const ERRORS_SHOWN: usize = 16;
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

/// A decimal number of at most 19 digits (a tid, an inode).
pub(super) fn parse_dec(s: &[u8]) -> Option<u64> {
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
struct Mismatches {
    first: [(usize, u64, u64); ERRORS_SHOWN],
    recorded: usize,
    printed: usize,
    #[cfg(feature = "test-hooks")]
    corruption: super::test_hooks::Corruption,
}

impl Observer for Mismatches {
    fn mismatch(&mut self, addr: usize, expected: u64, actual: u64) {
        if self.recorded < ERRORS_SHOWN {
            self.first[self.recorded] = (addr, expected, actual);
            self.recorded += 1;
        }
    }

    #[cfg(feature = "test-hooks")]
    fn written(&mut self, region: &Region, pattern: memtest::Pattern) {
        self.corruption.written(region, pattern);
    }
}

impl Mismatches {
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

/// Parks the other threads and tests the memory until `deadline` (monotonic
/// nanoseconds, `budget_ns` after the crash), then says on `sink` what it
/// covered and found.
pub(super) fn test(sink: &Sink, deadline: u64, budget_ns: u64) {
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
    // guard (`park`) makes this thread its only user.
    let arena = unsafe { &mut *arena_ptr };
    // SAFETY: gettid has no side effects.
    let (parked, others) = park_other_threads(&mut arena.dirents, unsafe { libc::gettid() });
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
    let mut found = Mismatches {
        first: [(0, 0, 0); ERRORS_SHOWN],
        recorded: 0,
        printed: 0,
        #[cfg(feature = "test-hooks")]
        corruption: super::test_hooks::Corruption::planned(),
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
    #[cfg(feature = "test-hooks")]
    found.corruption.report(sink);

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
    found: &mut Mismatches,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

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
}
