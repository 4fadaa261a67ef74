//! The crash report: its lines, formatted without `fmt` or allocation,
//! written whole to stderr and `/dev/kmsg`, and the rules' summary the
//! daemon publishes for it beforehand.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering, fence};

use libc::c_int;

pub(super) const SUMMARY_BYTES: usize = 256;
/// SIGBUS's `si_code`s for a hardware memory error (action required,
/// action optional).
pub(super) const BUS_MCEERR_AR: c_int = 4;
pub(super) const BUS_MCEERR_AO: c_int = 5;

/// `/dev/kmsg`, opened by `install` (-1: none).
pub(super) static KMSG_FD: AtomicI32 = AtomicI32::new(-1);
/// Whether stderr lines carry a syslog priority (stderr is not a terminal).
pub(super) static STDERR_PRIORITY: AtomicBool = AtomicBool::new(false);

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
pub(super) fn read_summary(out: &mut [u8; SUMMARY_BYTES]) -> Option<usize> {
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

pub(super) fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

pub(super) fn code_name(sig: c_int, code: c_int) -> &'static str {
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
pub(super) struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub(super) fn new() -> Line {
        let mut line = Line {
            buf: [0; 512],
            len: 0,
        };
        line.text("crash: ");
        line
    }

    pub(super) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let room = self.buf.len() - 1 - self.len;
        let n = b.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        self
    }

    pub(super) fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(super) fn dec(&mut self, n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        self.bytes(crate::text::decimal(n, &mut digits))
    }

    /// `n` and its noun, which agrees with it: `1 error`, `2 errors`.
    pub(super) fn count(&mut self, n: u64, noun: &str) -> &mut Self {
        self.dec(n).text(" ").text(noun);
        if n == 1 { self } else { self.text("s") }
    }

    pub(super) fn signed(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            self.text("-");
        }
        self.dec(n.unsigned_abs())
    }

    pub(super) fn hex(&mut self, mut n: u64) -> &mut Self {
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
    pub(super) fn ms(&mut self, ns: u64) -> &mut Self {
        self.dec(ns / 1_000_000).text(" ms")
    }

    /// Bytes as KiB, as `1234 KiB`.
    pub(super) fn kib(&mut self, bytes: u64) -> &mut Self {
        self.dec(bytes.div_ceil(1024)).text(" KiB")
    }
}

/// Where the report goes: stderr (with a syslog priority prefix when it is
/// not a terminal, as the daemon's other lines) and `/dev/kmsg`.
#[derive(Clone, Copy)]
pub(super) struct Sink {
    kmsg: RawFd,
    priority: bool,
    pub(super) pid: u32,
}

impl Sink {
    /// Where `install` prepared the report to go.
    pub(super) fn prepared() -> Sink {
        Sink {
            kmsg: KMSG_FD.load(Ordering::Relaxed),
            priority: STDERR_PRIORITY.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    pub(super) fn emit(&self, line: &mut Line) {
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
        writev_all(2, &[&head.buf[..head.len], body]);
        if self.kmsg >= 0 {
            let mut head = Line {
                buf: [0; 512],
                len: 0,
            };
            head.text("<2>heartwatch[")
                .dec(u64::from(self.pid))
                .text("]: ");
            writev_all(self.kmsg, &[&head.buf[..head.len], body]);
        }
    }
}

/// Writes the parts as one `writev`, so that each line is one record in
/// `/dev/kmsg` and is not interleaved on stderr; retries short writes.
fn writev_all(fd: RawFd, parts: &[&[u8]; 2]) {
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

    #[test]
    fn code_names() {
        assert_eq!(code_name(libc::SIGSEGV, 1), "SEGV_MAPERR");
        assert_eq!(code_name(libc::SIGBUS, 2), "BUS_ADRERR");
        assert_eq!(code_name(libc::SIGABRT, libc::SI_TKILL), "SI_TKILL");
    }
}
