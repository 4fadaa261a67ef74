//! What runs on a crash: the report's opening lines, the one feed of the
//! watchdog, the memory test, and the signal re-raised with its default
//! action. Async-signal-safe throughout (see the module `crash`).
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
use std::ptr;
use std::sync::atomic::Ordering;

use libc::c_int;

use super::install::{BUDGET_MS, DEVICES, FEEDING, MEMTEST, STARTED_NS};
use super::park::{HANDLING, park_forever};
use super::report::{
    BUS_MCEERR_AO, BUS_MCEERR_AR, Line, SUMMARY_BYTES, Sink, code_name, read_summary, signal_name,
};
use super::{PAGE, memory, monotonic_ns};

/// `WDIOC_KEEPALIVE`, `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;

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

/// The crash handler. Async-signal-safe: see the module `crash`.
pub(super) extern "C" fn on_fatal_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
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
    let sink = Sink::prepared();
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
        memory::test(&sink, entered.saturating_add(budget_ns), budget_ns);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_overflow_is_a_fault_next_to_the_stack_pointer() {
        let sp = 0x7ffd_0000_1000;
        assert!(is_stack_overflow(libc::SIGSEGV, 1, sp - 8, sp));
        assert!(is_stack_overflow(libc::SIGSEGV, 2, sp - 4096, sp));
        assert!(!is_stack_overflow(libc::SIGSEGV, 1, 0x10, sp));
        assert!(!is_stack_overflow(libc::SIGABRT, -6, sp, sp));
        assert!(!is_stack_overflow(libc::SIGSEGV, 1, sp - 8, 0));
    }
}
