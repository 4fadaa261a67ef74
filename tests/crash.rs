//! The crash handler and the memory test, through the real binary: the
//! binary crashes by each signal and by stack overflow (test-only
//! `crash-test` subcommand, feature `test-hooks`), and `heartwatch memtest`
//! runs on demand.

use std::process::Command;

fn heartwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_heartwatch"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn memtest_on_fresh_memory_passes() {
    let out = heartwatch()
        .args(["memtest", "4M", "--passes", "2"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for pattern in [
        "address",
        "random",
        "solid zeros",
        "solid ones",
        "checkerboard",
        "checkerboard inverse",
    ] {
        assert!(
            stdout.contains(&format!("pass 2/2: {pattern:<22}ok")),
            "{pattern}: {stdout}"
        );
    }
    assert!(
        stdout.contains("memtest PASSED: 4 MiB, 2 passes"),
        "{stdout}"
    );
}

#[test]
fn memtest_refuses_bad_input_with_usage_exit_code() {
    for args in [
        &["memtest"][..],
        &["memtest", "lots"],
        &["memtest", "64Q"],
        &["memtest", "64M", "--passes", "0"],
    ] {
        let out = heartwatch().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("heartwatch memtest: ") && stderr.contains("usage:"),
            "{stderr}"
        );
    }
}

#[cfg(feature = "test-hooks")]
mod crashes {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::path::PathBuf;
    use std::process::Output;
    use std::sync::Once;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "heartwatch-crash-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Allows core dumps for the crashing children (they dump into their
    /// scratch directory), so the test can see that one stays possible.
    fn allow_core_dumps() -> bool {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_CORE) {
                let _ = setrlimit(Resource::RLIMIT_CORE, hard.min(1 << 30), hard);
            }
        });
        let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
        getrlimit(Resource::RLIMIT_CORE).is_ok_and(|(soft, _)| soft > 0)
            && !pattern.starts_with('|')
    }

    struct Crashed {
        out: Output,
        stderr: String,
        kmsg: String,
        watchdog: Vec<u8>,
        cores: bool,
    }

    fn crash(how: &str, envs: &[(&str, &str)]) -> Crashed {
        let dir = scratch(how);
        let kmsg = dir.join("kmsg");
        let watchdog = dir.join("watchdog");
        std::fs::write(&kmsg, "").unwrap();
        let cores = allow_core_dumps();
        let out = heartwatch()
            .args(["crash-test", how])
            .current_dir(&dir)
            .env("HEARTWATCH_TEST_KMSG", &kmsg)
            .env("HEARTWATCH_TEST_WATCHDOG", &watchdog)
            // The whole resident memory is tested within this: a debug
            // build on a busy machine can take over the daemon's 2 s. The
            // budget itself is `the_memory_test_stops_at_its_budget`'s.
            .env("HEARTWATCH_TEST_MEMTEST_BUDGET_MS", "20000")
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        let crashed = Crashed {
            stderr: text(&out.stderr),
            kmsg: std::fs::read_to_string(&kmsg).unwrap(),
            watchdog: std::fs::read(&watchdog).unwrap_or_default(),
            out,
            cores,
        };
        let _ = std::fs::remove_dir_all(&dir);
        crashed
    }

    /// The report is on stderr and in kmsg, line for line; the memory test
    /// ran and passed; the process died by `signal`; the watchdog was fed
    /// once and not disarmed.
    fn assert_crash_report(c: &Crashed, signal: i32, first_line: &str) {
        let s = &c.stderr;
        assert_eq!(c.out.status.signal(), Some(signal), "{s}");
        if c.cores {
            assert!(c.out.status.core_dumped(), "no core dump: {s}");
        }
        assert!(
            s.contains(&format!("heartwatch: crash: {first_line}")),
            "{s}"
        );
        assert!(s.contains(", uptime 0."), "{s}");
        assert!(
            s.contains(&format!("heartwatch {}", env!("CARGO_PKG_VERSION"))),
            "{s}"
        );
        assert!(
            s.contains("crash: rules: 2 rules: backup healthy; web failing (repair 1/3)"),
            "{s}"
        );
        let passed = s
            .lines()
            .find(|l| l.contains("crash: memory test PASSED: "))
            .unwrap_or_else(|| panic!("no memory test verdict: {s}"));
        assert!(!passed.contains(" 0 KiB tested"), "{passed}");
        assert!(!passed.contains("stopped at the budget"), "{passed}");
        assert!(
            s.contains(&format!("crash: re-raising {}", signal_name(signal))),
            "{s}"
        );

        let pid = s
            .lines()
            .find_map(|l| l.split("crash: pid ").nth(1))
            .and_then(|rest| rest.split(',').next())
            .expect("pid line");
        let report: Vec<&str> = s
            .lines()
            .filter_map(|l| l.split("heartwatch: ").nth(1))
            .collect();
        let kmsg: Vec<&str> = c
            .kmsg
            .lines()
            .map(|l| {
                l.strip_prefix(&format!("<2>heartwatch[{pid}]: "))
                    .unwrap_or_else(|| panic!("kmsg line {l:?}"))
            })
            .collect();
        assert_eq!(kmsg, report);

        assert_eq!(
            c.watchdog, b"\0",
            "the stand-in watchdog: fed once, no magic close"
        );
    }

    fn signal_name(signal: i32) -> &'static str {
        match signal {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGABRT => "SIGABRT",
            _ => unreachable!(),
        }
    }

    #[test]
    fn segv_is_reported_tested_and_re_raised() {
        let c = crash("segv", &[]);
        assert_crash_report(
            &c,
            libc::SIGSEGV,
            "SIGSEGV (si_code 1 SEGV_MAPERR), fault address 0x10,",
        );
        assert!(!c.stderr.contains("stack overflow"), "{}", c.stderr);
    }

    #[test]
    fn bus_error_is_reported_tested_and_re_raised() {
        let c = crash("bus", &[]);
        assert_crash_report(
            &c,
            libc::SIGBUS,
            "SIGBUS (si_code 2 BUS_ADRERR), fault address 0x",
        );
    }

    #[test]
    fn illegal_instruction_is_reported_tested_and_re_raised() {
        let c = crash("ill", &[]);
        assert_crash_report(&c, libc::SIGILL, "SIGILL (si_code ");
        assert!(c.stderr.contains(" ILL_"), "{}", c.stderr);
    }

    #[test]
    fn division_by_zero_is_reported_tested_and_re_raised() {
        let c = crash("fpe", &[]);
        #[cfg(target_arch = "x86_64")]
        assert_crash_report(
            &c,
            libc::SIGFPE,
            "SIGFPE (si_code 1 FPE_INTDIV), fault address 0x",
        );
        #[cfg(not(target_arch = "x86_64"))]
        assert_crash_report(&c, libc::SIGFPE, "SIGFPE (si_code ");
    }

    #[test]
    fn abort_is_reported_tested_and_re_raised() {
        let c = crash("abrt", &[]);
        assert_crash_report(
            &c,
            libc::SIGABRT,
            "SIGABRT (si_code -6 SI_TKILL), sent by pid ",
        );
    }

    #[test]
    fn stack_overflow_is_caught_and_reported() {
        let c = crash("stack-overflow", &[]);
        assert_crash_report(&c, libc::SIGSEGV, "SIGSEGV (si_code ");
        assert!(
            c.stderr.contains("crash: stack overflow: fault address 0x"),
            "{}",
            c.stderr
        );
    }

    #[test]
    fn a_crash_on_another_thread_is_reported_the_same_way() {
        let c = crash("thread-segv", &[]);
        assert_crash_report(
            &c,
            libc::SIGSEGV,
            "SIGSEGV (si_code 1 SEGV_MAPERR), fault address 0x10,",
        );
        let tid_differs = c.stderr.lines().any(|l| {
            l.split("crash: pid ")
                .nth(1)
                .and_then(|r| r.split_once(", tid "))
                .is_some_and(|(pid, rest)| !rest.starts_with(&format!("{pid},")))
        });
        assert!(tid_differs, "{}", c.stderr);
    }

    #[test]
    fn the_daemon_trigger_crashes_after_its_delay() {
        let c = crash(
            "from-env",
            &[
                ("HEARTWATCH_TEST_CRASH", "segv"),
                ("HEARTWATCH_TEST_CRASH_AFTER_MS", "300"),
            ],
        );
        assert_crash_report(&c, libc::SIGSEGV, "SIGSEGV (si_code 1 SEGV_MAPERR)");
        assert!(c.stderr.contains(", uptime 0.3"), "{}", c.stderr);
    }

    #[test]
    fn the_memory_test_stops_at_its_budget() {
        let c = crash(
            "stack-overflow",
            &[("HEARTWATCH_TEST_MEMTEST_BUDGET_MS", "1")],
        );
        let s = &c.stderr;
        assert_eq!(c.out.status.signal(), Some(libc::SIGSEGV), "{s}");
        let verdict = s
            .lines()
            .find(|l| l.contains("crash: memory test PASSED: "))
            .unwrap_or_else(|| panic!("no verdict: {s}"));
        assert!(
            verdict.contains("(budget 1 ms), stopped at the budget"),
            "{verdict}"
        );
        let took: u64 = verdict
            .split(" anonymous mappings, ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{verdict}"));
        assert!(took < 100, "{verdict}");
    }

    #[test]
    fn the_memory_test_can_be_turned_off() {
        let c = crash("segv", &[("HEARTWATCH_TEST_MEMTEST", "no")]);
        assert_eq!(c.out.status.signal(), Some(libc::SIGSEGV));
        assert!(
            c.stderr
                .contains("crash: memory test off (CrashMemtest=no)"),
            "{}",
            c.stderr
        );
        assert!(!c.stderr.contains("PASSED"), "{}", c.stderr);
        assert!(
            c.stderr.contains("crash: re-raising SIGSEGV"),
            "{}",
            c.stderr
        );
    }

    #[test]
    fn a_corrupted_word_is_reported_at_its_address() {
        let c = crash("segv", &[("HEARTWATCH_TEST_CORRUPT_MEMTEST", "1")]);
        let s = &c.stderr;
        assert_eq!(c.out.status.signal(), Some(libc::SIGSEGV), "{s}");
        let flipped = s
            .lines()
            .find_map(|l| l.split("crash: test hook: flipped bit 5 at ").nth(1))
            .unwrap_or_else(|| panic!("no corruption injected: {s}"));
        let errors: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("crash: memory error at "))
            .collect();
        assert_eq!(errors.len(), 1, "{s}");
        assert!(
            errors[0].contains(&format!("memory error at {flipped}: wrote 0x"))
                && errors[0].ends_with(", bits 0x20"),
            "{s}"
        );
        assert!(s.contains("crash: memory test FAILED: 1 error in "), "{s}");
        assert!(s.contains("crash: re-raising SIGSEGV"), "{s}");
    }
}
