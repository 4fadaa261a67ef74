//! The memory test: address, random (xorshift), solid and checkerboard
//! patterns written and read back. It runs over freshly mapped memory for
//! `heartwatch memtest SIZE`, and from the crash handler over the process's
//! own mappings with their contents preserved (see `crash`). The command
//! line shows this command's report and gives its exit code: the command
//! writes its lines through the function it is given and returns what
//! went wrong.
//!
//! Everything the crash handler reaches here is async-signal-safe: no
//! allocation, no locks, no formatting; only volatile loads and stores, so
//! the compiler can neither drop a write nor answer a read from a register.

// Volatile loads and stores over raw memory: Cargo.toml denies
// unsafe_code elsewhere (sys and the crash handler apart).
#![allow(unsafe_code)]

use crate::text::Count;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::time::Instant;

/// The patterns, in the order they run. Each is written over the whole
/// region and then read back, so that a fault in one word shows up as a
/// mismatch at its address rather than being hidden by a cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Each word holds its own address: catches address lines that are
    /// stuck or shorted (two addresses reaching the same cell).
    Address,
    /// A xorshift sequence: catches data-dependent faults.
    Random,
    /// All bits clear.
    Zeros,
    /// All bits set.
    Ones,
    /// Alternating 1010.../0101... words.
    Checker,
    /// The same, inverted.
    CheckerInverse,
}

impl Pattern {
    pub const ALL: [Pattern; 6] = [
        Pattern::Address,
        Pattern::Random,
        Pattern::Zeros,
        Pattern::Ones,
        Pattern::Checker,
        Pattern::CheckerInverse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Address => "address",
            Pattern::Random => "random",
            Pattern::Zeros => "solid zeros",
            Pattern::Ones => "solid ones",
            Pattern::Checker => "checkerboard",
            Pattern::CheckerInverse => "checkerboard inverse",
        }
    }
}

const ONE_ZERO: u64 = 0xaaaa_aaaa_aaaa_aaaa;
const ZERO_ONE: u64 = 0x5555_5555_5555_5555;

/// A xorshift64 generator: no state outside itself, so the handler can use
/// it, and the read-back regenerates the same sequence from the seed.
#[derive(Clone, Copy)]
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A run of 8-byte words that the test may overwrite.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    start: NonNull<u64>,
    words: usize,
}

impl Region {
    /// # Safety
    /// `start` must be 8-byte aligned and `words` words from it readable and
    /// writable, and nothing else may read or write them until the test that
    /// receives this region has returned (the preserving test restores them).
    pub unsafe fn new(start: NonNull<u64>, words: usize) -> Self {
        Region { start, words }
    }

    pub fn addr(&self) -> usize {
        self.start.as_ptr() as usize
    }

    #[cfg(any(test, feature = "test-hooks"))]
    pub fn words(&self) -> usize {
        self.words
    }

    pub fn bytes(&self) -> usize {
        self.words * 8
    }

    /// The part of the region from word `from`, at most `words` long.
    pub fn sub(&self, from: usize, words: usize) -> Region {
        assert!(from <= self.words);
        // SAFETY: `from` is within the region (checked above), so the
        // pointer stays inside the same mapping and is non-null.
        let start = unsafe { self.start.add(from) };
        Region {
            start,
            words: words.min(self.words - from),
        }
    }

    fn load(&self, i: usize) -> u64 {
        debug_assert!(i < self.words);
        // SAFETY: i < words, and Region::new's contract makes every word
        // readable and ours alone.
        unsafe { self.start.as_ptr().add(i).read_volatile() }
    }

    fn store(&self, i: usize, value: u64) {
        debug_assert!(i < self.words);
        // SAFETY: as in `load`, for writing.
        unsafe { self.start.as_ptr().add(i).write_volatile(value) }
    }

    /// Flips one bit of a word: the corruption a test injects between the
    /// write and the read-back of a pattern.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn flip_bit(&self, word: usize, bit: u32) {
        self.store(word, self.load(word) ^ (1u64 << bit));
    }

    fn copy_from(&self, other: &Region) {
        let n = self.words.min(other.words);
        for i in 0..n {
            self.store(i, other.load(i));
        }
    }
}

/// Where the test says what it finds.
pub trait Observer {
    /// One word read back differently from what was written.
    fn mismatch(&mut self, addr: usize, expected: u64, actual: u64);

    /// A pattern has been written over `region` and is about to be read
    /// back. The seam where a unit test injects corruption.
    fn written(&mut self, _region: &Region, _pattern: Pattern) {}
}

fn expected(pattern: Pattern, region: &Region, i: usize, rng: &mut Xorshift) -> u64 {
    match pattern {
        Pattern::Address => (region.addr() + i * 8) as u64,
        Pattern::Random => rng.next(),
        Pattern::Zeros => 0,
        Pattern::Ones => !0,
        Pattern::Checker => {
            if i.is_multiple_of(2) {
                ONE_ZERO
            } else {
                ZERO_ONE
            }
        }
        Pattern::CheckerInverse => {
            if i.is_multiple_of(2) {
                ZERO_ONE
            } else {
                ONE_ZERO
            }
        }
    }
}

/// Writes `pattern` over the region.
pub fn fill(region: &Region, pattern: Pattern, seed: u64) {
    let mut rng = Xorshift::new(seed);
    for i in 0..region.words {
        region.store(i, expected(pattern, region, i, &mut rng));
    }
}

/// Reads `pattern` back; returns the number of words that differ.
pub fn verify(region: &Region, pattern: Pattern, seed: u64, obs: &mut impl Observer) -> u64 {
    let mut rng = Xorshift::new(seed);
    let mut errors = 0;
    for i in 0..region.words {
        let want = expected(pattern, region, i, &mut rng);
        let got = region.load(i);
        if got != want {
            errors += 1;
            obs.mismatch(region.addr() + i * 8, want, got);
        }
    }
    errors
}

/// Writes and reads back one pattern; returns the number of errors.
pub fn run_pattern(region: &Region, pattern: Pattern, seed: u64, obs: &mut impl Observer) -> u64 {
    fill(region, pattern, seed);
    obs.written(region, pattern);
    verify(region, pattern, seed, obs)
}

/// Every pattern over `region`, whose contents are lost.
pub fn run_patterns(region: &Region, seed: u64, obs: &mut impl Observer) -> u64 {
    Pattern::ALL
        .iter()
        .map(|&p| run_pattern(region, p, seed, obs))
        .sum()
}

/// Every pattern over `region`, preserving its contents: copied to
/// `backup` (at least as large), tested, copied back and compared with the
/// backup, so that a word that does not hold its old value after the
/// restore is reported too. Returns the number of errors.
pub fn run_preserving(region: &Region, backup: &Region, seed: u64, obs: &mut impl Observer) -> u64 {
    assert!(backup.words >= region.words, "backup area too small");
    let saved = backup.sub(0, region.words);
    saved.copy_from(region);
    let mut errors = run_patterns(region, seed, obs);
    region.copy_from(&saved);
    for i in 0..region.words {
        let want = saved.load(i);
        let got = region.load(i);
        if got != want {
            errors += 1;
            obs.mismatch(region.addr() + i * 8, want, got);
        }
    }
    errors
}

/// The outcome of a bounded, preserving test over a region.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub errors: u64,
}

/// `run_preserving` over `region` in chunks the size of `backup`, asking
/// `keep_going` before each chunk; returns what was tested and whether the
/// whole region was.
#[cfg(test)]
pub fn run_preserving_chunked(
    region: &Region,
    backup: &Region,
    seed: u64,
    obs: &mut impl Observer,
    keep_going: &mut impl FnMut() -> bool,
) -> (Tally, bool) {
    let mut tally = Tally::default();
    let mut at = 0;
    while at < region.words {
        if !keep_going() {
            return (tally, false);
        }
        let chunk = region.sub(at, backup.words);
        tally.errors += run_preserving(&chunk, backup, seed ^ chunk.addr() as u64, obs);
        tally.bytes += chunk.bytes() as u64;
        at += chunk.words;
    }
    (tally, true)
}

/// Parses a size: a number of bytes with an optional `K`, `M`, `G` or `T`
/// suffix (binary multiples, an optional trailing `B` or `iB` accepted).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!("size {text:?}: expected a number, e.g. 64M"));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "size {text:?}: unknown unit {unit:?} (use K, M or G)"
            ));
        }
    };
    let n: usize = number
        .parse()
        .map_err(|_| format!("size {text:?}: number too large"))?;
    let bytes = n
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("size {text:?}: too large"))?;
    if bytes < 8 {
        return Err(format!("size {text:?}: must be at least 8 bytes"));
    }
    Ok(bytes)
}

struct Usage(String);

struct Request {
    bytes: usize,
    passes: u32,
}

fn parse_args(args: &[String]) -> Result<Request, Usage> {
    let mut size = None;
    let mut passes = 1;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--passes" => {
                let n = it
                    .next()
                    .ok_or_else(|| Usage("--passes needs a number".into()))?;
                passes = match n.parse::<u32>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(Usage(format!("--passes {n:?}: expected a positive number"))),
                };
            }
            a if a.starts_with('-') => return Err(Usage(format!("unknown option {a:?}"))),
            a if size.is_none() => size = Some(parse_size(a).map_err(Usage)?),
            a => return Err(Usage(format!("unexpected argument {a:?}"))),
        }
    }
    let bytes = size.ok_or_else(|| Usage("missing SIZE".into()))?;
    Ok(Request { bytes, passes })
}

/// Anonymous memory mapped for the on-demand test, unmapped on drop.
struct FreshMemory {
    region: Region,
    len: usize,
}

impl FreshMemory {
    fn new(bytes: usize) -> io::Result<FreshMemory> {
        let page = 4096;
        let len = bytes.div_ceil(page) * page;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing aliases nothing; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(p.cast::<u64>()).expect("mmap returned null");
        // SAFETY: the mapping is page aligned, `len` bytes long, readable
        // and writable, and owned by this value alone.
        let region = unsafe { Region::new(start, len / 8) };
        Ok(FreshMemory { region, len })
    }

    /// Pins the pages in RAM, so the test checks memory, not swap.
    fn lock(&self) -> io::Result<()> {
        // SAFETY: locking pages of a live mapping that this value owns.
        if unsafe { libc::mlock(self.region.addr() as *const libc::c_void, self.len) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for FreshMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `new`; no
        // reference into it outlives self.
        unsafe { libc::munmap(self.region.addr() as *mut libc::c_void, self.len) };
    }
}

/// How `heartwatch memtest` failed.
#[derive(Debug)]
pub enum Failure {
    /// The arguments are wrong; said with the usage line.
    Usage(String),
    /// The memory to test could not be mapped.
    Map { bytes: usize, source: io::Error },
    /// The test found memory errors: its report says where, and how many.
    Errors(u64),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(msg) => write!(
                f,
                "heartwatch memtest: {msg}\n\
                 usage: heartwatch memtest SIZE [--passes N]   (SIZE e.g. 4096K, 64M, 1G)"
            ),
            Failure::Map { bytes, source } => write!(
                f,
                "heartwatch memtest: cannot map {}: {source}",
                human(*bytes as u64)
            ),
            Failure::Errors(n) => write!(f, "heartwatch memtest: {}", Count(*n, "memory error")),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Map { source, .. } => Some(source),
            Failure::Usage(_) | Failure::Errors(_) => None,
        }
    }
}

/// Writes one line of the report.
fn say(show: &mut dyn FnMut(&str), line: fmt::Arguments) {
    show(&format!("{line}\n"));
}

/// Prints the first errors with their addresses and counts the rest.
struct Printer<'a> {
    show: &'a mut dyn FnMut(&str),
    shown: u64,
}

const ERRORS_SHOWN: u64 = 32;

impl Observer for Printer<'_> {
    fn mismatch(&mut self, addr: usize, expected: u64, actual: u64) {
        self.shown += 1;
        if self.shown <= ERRORS_SHOWN {
            say(
                self.show,
                format_args!(
                    "memory error at {addr:#018x}: wrote {expected:#018x}, read {actual:#018x} (bits {:#018x})",
                    expected ^ actual
                ),
            );
        } else if self.shown == ERRORS_SHOWN + 1 {
            say(
                self.show,
                format_args!("(further errors counted, not shown)"),
            );
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// `heartwatch memtest SIZE [--passes N]`. Its report goes to `show`, a
/// piece at a time (a line, or the start of one before a pattern runs),
/// each to be shown at once; what went wrong is returned.
pub fn command(args: &[String], show: &mut dyn FnMut(&str)) -> Result<(), Failure> {
    let req = parse_args(args).map_err(|Usage(msg)| Failure::Usage(msg))?;
    let memory = FreshMemory::new(req.bytes).map_err(|source| Failure::Map {
        bytes: req.bytes,
        source,
    })?;
    if let Err(e) = memory.lock() {
        say(
            show,
            format_args!("note: memory not locked ({e}); pages may be swapped during the test"),
        );
    }
    let region = memory.region;
    say(
        show,
        format_args!(
            "memtest: {} at {:#x}, {}, {} patterns each",
            human(region.bytes() as u64),
            region.addr(),
            Count(req.passes.into(), "pass"),
            Pattern::ALL.len()
        ),
    );
    let started = Instant::now();
    let mut printer = Printer { show, shown: 0 };
    let mut errors = 0;
    let seed_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    for pass in 1..=req.passes {
        for pattern in Pattern::ALL {
            (printer.show)(&format!(
                "pass {pass}/{}: {:<22}",
                req.passes,
                pattern.name()
            ));
            let t = Instant::now();
            let seed = seed_base
                .wrapping_add(u64::from(pass))
                .wrapping_mul(0x2545_f491_4f6c_dd1d);
            let n = run_pattern(&region, pattern, seed, &mut printer);
            errors += n;
            let verdict = if n == 0 {
                "ok".to_string()
            } else {
                Count(n, "error").to_string()
            };
            say(
                printer.show,
                format_args!("{verdict} ({:.2} s)", t.elapsed().as_secs_f64()),
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if errors == 0 {
        say(
            printer.show,
            format_args!(
                "memtest PASSED: {}, {}, {secs:.2} s",
                human(region.bytes() as u64),
                Count(req.passes.into(), "pass")
            ),
        );
        Ok(())
    } else {
        say(
            printer.show,
            format_args!("memtest FAILED: {} in {secs:.2} s", Count(errors, "error")),
        );
        Err(Failure::Errors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<(usize, u64, u64)>);

    impl Observer for Collect {
        fn mismatch(&mut self, addr: usize, expected: u64, actual: u64) {
            self.0.push((addr, expected, actual));
        }
    }

    /// Flips one bit of one word after one pattern has been written.
    struct FlipAfter {
        pattern: Pattern,
        word: usize,
        bit: u32,
        seen: Collect,
    }

    impl Observer for FlipAfter {
        fn mismatch(&mut self, addr: usize, expected: u64, actual: u64) {
            self.seen.mismatch(addr, expected, actual);
        }
        fn written(&mut self, region: &Region, pattern: Pattern) {
            if pattern == self.pattern && self.word < region.words() {
                region.flip_bit(self.word, self.bit);
            }
        }
    }

    fn region_of(buf: &mut [u64]) -> Region {
        // SAFETY: the buffer is borrowed mutably for as long as the region
        // is used in the test, aligned, and all of it is readable/writable.
        unsafe { Region::new(NonNull::new(buf.as_mut_ptr()).unwrap(), buf.len()) }
    }

    #[test]
    fn clean_memory_passes_every_pattern() {
        let mut buf = vec![0u64; 4096];
        let mut c = Collect(Vec::new());
        assert_eq!(run_patterns(&region_of(&mut buf), 42, &mut c), 0);
        assert!(c.0.is_empty());
    }

    #[test]
    fn a_flipped_bit_is_detected_at_its_address_for_every_pattern() {
        for pattern in Pattern::ALL {
            let mut buf = vec![0u64; 1024];
            let region = region_of(&mut buf);
            let mut obs = FlipAfter {
                pattern,
                word: 777,
                bit: 13,
                seen: Collect(Vec::new()),
            };
            let errors = run_patterns(&region, 7, &mut obs);
            assert_eq!(errors, 1, "{pattern:?}");
            let (addr, expected, actual) = obs.seen.0[0];
            assert_eq!(addr, region.addr() + 777 * 8, "{pattern:?}");
            assert_eq!(expected ^ actual, 1 << 13, "{pattern:?}");
        }
    }

    #[test]
    fn preserving_test_restores_known_contents() {
        let known: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9) ^ 0xdead_beef)
            .collect();
        let mut buf = known.clone();
        let mut backup = vec![0u64; 1000];
        let mut c = Collect(Vec::new());
        let (tally, complete) = run_preserving_chunked(
            &region_of(&mut buf),
            &region_of(&mut backup),
            99,
            &mut c,
            &mut || true,
        );
        assert!(complete);
        assert_eq!(
            tally,
            Tally {
                bytes: 80_000,
                errors: 0
            }
        );
        assert_eq!(buf, known);
    }

    #[test]
    fn preserving_test_reports_corruption_and_still_restores() {
        let known: Vec<u64> = (0..3000u64).collect();
        let mut buf = known.clone();
        let mut backup = vec![0u64; 1024];
        let region = region_of(&mut buf);
        let mut obs = FlipAfter {
            pattern: Pattern::Checker,
            word: 5,
            bit: 63,
            seen: Collect(Vec::new()),
        };
        let (tally, complete) =
            run_preserving_chunked(&region, &region_of(&mut backup), 1, &mut obs, &mut || true);
        assert!(complete);
        // Word 5 of each of the three chunks.
        assert_eq!(tally.errors, 3);
        let addrs: Vec<usize> = obs.seen.0.iter().map(|e| e.0).collect();
        let base = region.addr();
        assert_eq!(
            addrs,
            vec![base + 5 * 8, base + (1024 + 5) * 8, base + (2048 + 5) * 8]
        );
        assert_eq!(buf, known);
    }

    #[test]
    fn chunked_test_stops_when_told() {
        let mut buf = vec![1u64; 4096];
        let mut backup = vec![0u64; 1024];
        let mut budget = 2;
        let (tally, complete) = run_preserving_chunked(
            &region_of(&mut buf),
            &region_of(&mut backup),
            1,
            &mut Collect(Vec::new()),
            &mut || {
                budget -= 1;
                budget >= 0
            },
        );
        assert!(!complete);
        assert_eq!(tally.bytes, 2 * 1024 * 8);
        assert!(buf.iter().all(|&w| w == 1));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        for bad in ["", "M", "12X", "-1", "1.5G", "4", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_reports_through_show_and_returns_what_went_wrong() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut shown = String::new();
        let done = command(&args(&["64K", "--passes", "1"]), &mut |piece| {
            shown.push_str(piece)
        });
        assert!(done.is_ok(), "{done:?}");
        assert!(
            shown.contains("\npass 1/1: address               ok ("),
            "{shown}"
        );
        assert!(
            shown.contains("\nmemtest PASSED: 64.0 KiB, 1 pass, "),
            "{shown}"
        );

        let refused = command(&args(&["64Q"]), &mut |piece| panic!("{piece}")).unwrap_err();
        assert!(matches!(refused, Failure::Usage(_)), "{refused:?}");
        assert_eq!(
            refused.to_string(),
            "heartwatch memtest: size \"64Q\": unknown unit \"Q\" (use K, M or G)\n\
             usage: heartwatch memtest SIZE [--passes N]   (SIZE e.g. 4096K, 64M, 1G)"
        );
    }

    #[test]
    fn arguments_parse() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = parse_args(&args(&["64M", "--passes", "3"])).ok().unwrap();
        assert_eq!((r.bytes, r.passes), (64 << 20, 3));
        assert!(parse_args(&args(&[])).is_err());
        assert!(parse_args(&args(&["64M", "--passes", "0"])).is_err());
        assert!(parse_args(&args(&["64M", "--passes"])).is_err());
        assert!(parse_args(&args(&["64M", "32M"])).is_err());
        assert!(parse_args(&args(&["64M", "--fast"])).is_err());
    }
}
