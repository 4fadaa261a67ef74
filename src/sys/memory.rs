//! Keeping the daemon in memory: `mlockall(2)` and glibc's `mallopt`.
//!
//! A reload builds the new configuration while the old one still runs,
//! then frees the old one. Two things would keep that memory resident for
//! good (at 10 000 rules RSS tripled over the first reloads, 18 → 50 MiB):
//! glibc's dynamic mmap threshold, which rises to the size of any large
//! block freed, so that the next configuration's large vectors come from
//! the heap instead of their own mappings; and freed heap pages below the
//! top, which glibc gives back only on `malloc_trim`, and which the kernel
//! refuses to drop while they are locked. [`malloc_settings`] fixes the
//! first, [`release_unused_memory`] (after start-up and each reload) the
//! second; it also drops the program's own pages that only loading used.

use super::Errno;
use std::sync::atomic::{AtomicU8, Ordering};

/// Blocks at least this large get their own mapping, unmapped when freed.
/// Setting it turns glibc's dynamic threshold off.
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;
/// Free memory at the top of the heap beyond this goes back at once.
const TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// How memory is locked: not (0), each page as it is touched (1), or all
/// of it, present and future (2).
static LOCKED: AtomicU8 = AtomicU8::new(0);
const ON_FAULT: u8 = 1;
const EVERYTHING: u8 = 2;

/// One malloc arena instead of one per thread (the stat workers allocate
/// nothing, and each arena would reserve 64 MiB of locked address space),
/// a fixed mmap threshold and a trim threshold. Call before anything
/// large is allocated and before any thread starts. Nothing to do where
/// the C library is not glibc.
pub fn malloc_settings() {
    #[cfg(target_env = "gnu")]
    for (param, value) in [
        (libc::M_ARENA_MAX, 1),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, 0),
    ] {
        // SAFETY: mallopt takes two integers; called before any thread starts.
        unsafe { libc::mallopt(param, value) };
    }
}

#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
))]
const MCL_ONFAULT: libc::c_int = 0x8000;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
)))]
const MCL_ONFAULT: libc::c_int = 4;

/// Locks the process's pages, present and future, in memory: each as it
/// is first touched (`MCL_ONFAULT`), or everything at once on kernels
/// before 4.4, which refuse `MCL_ONFAULT` with EINVAL.
pub fn lock_all() -> Result<(), Errno> {
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(flags | MCL_ONFAULT) } == 0 {
        LOCKED.store(ON_FAULT, Ordering::Relaxed);
        return Ok(());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::mlockall(flags) };
    if rc == 0 {
        LOCKED.store(EVERYTHING, Ordering::Relaxed);
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Gives back what start-up or a reload used and the loop does not: the
/// free pages inside the heap (the old configuration, the parser's
/// temporaries) and the pages of the program's own code and constants
/// that were mapped in while loading (the parser, the checks of `check`,
/// and their neighbours: the kernel maps a file's pages 64 KiB at a time).
/// The kernel drops no locked page, so locked memory is unlocked for this
/// and locked again, each page as it is touched: the loop's pages come
/// back once, from the page cache, and stay; the others stay out. Where
/// everything had to be locked at once (no `MCL_ONFAULT`), locking again
/// would bring them all back: nothing is done there.
pub fn release_unused_memory() {
    let locked = LOCKED.load(Ordering::Relaxed);
    if locked == EVERYTHING {
        return;
    }
    if locked == ON_FAULT {
        // SAFETY: munlockall takes no argument.
        unsafe { libc::munlockall() };
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a size; glibc's malloc is thread-safe.
    unsafe {
        libc::malloc_trim(0)
    };
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        for (start, len) in clean_file_mappings(&smaps) {
            // SAFETY: the range is one whole mapping of a file, read-only
            // and with no page of its own (clean_file_mappings): dropping
            // its pages loses nothing, the next touch reads them again
            // from the file. No code here changes a mapping's protection.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
    if locked == ON_FAULT {
        let flags = libc::MCL_CURRENT | libc::MCL_FUTURE | MCL_ONFAULT;
        // SAFETY: mlockall takes flags only.
        if unsafe { libc::mlockall(flags) } != 0 {
            LOCKED.store(0, Ordering::Relaxed);
            log::warn!(
                "cannot lock memory again ({}); heartwatch may be paged out",
                Errno::last()
            );
        }
    }
}

/// The mappings of `/proc/self/smaps` whose pages can be dropped without
/// losing anything: backed by a file, not writable, and holding no page
/// of their own (no private dirty or anonymous page, as a relocated or
/// patched page would be). As (start, length).
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // The mapping being read, while it still qualifies.
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let Some(done) = current.take() {
                found.push(done);
            }
            // start-end perms offset dev inode path
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let path = fields.next().unwrap_or("");
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let readable_only = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-');
            if readable_only && inode != "0" && path.starts_with('/') && end > start {
                current = Some((start, end - start));
            }
        } else if matches!(first, "Private_Dirty:" | "Anonymous:")
            && fields.next().is_some_and(|kib| kib != "0")
        {
            current = None;
        }
    }
    found.extend(current);
    found
}

/// Starts an empty queue again at the front of its buffer. A `VecDeque`
/// that is only ever pushed at the back and popped at the front walks
/// round its whole capacity, touching every page of it in time, however
/// few entries it holds at once: at 10 000 rules the probe's queues alone
/// grew by 1.2 MiB of resident memory that way. Rewound whenever it is
/// empty, it touches only as much as it ever held at once.
pub fn rewind<T>(queue: &mut std::collections::VecDeque<T>) {
    if queue.is_empty() {
        queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{clean_file_mappings, rewind};
    use std::collections::VecDeque;

    const SMAPS: &str = "\
55e000000000-55e000065000 r--p 00000000 fe:00 42 /usr/sbin/heartwatch
Rss:                 100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55e000065000-55e0001cb000 r-xp 00065000 fe:00 42 /usr/sbin/heartwatch
Rss:                1300 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55e0001cb000-55e0001d5000 r--p 001cb000 fe:00 42 /usr/sbin/heartwatch
Private_Dirty:        40 kB
Anonymous:            40 kB
55e0001d5000-55e0001d9000 rw-p 001d4000 fe:00 42 /usr/sbin/heartwatch
Private_Dirty:         4 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Private_Dirty:       100 kB
7f0000200000-7f0000201000 r--p 00000000 fe:00 43 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)
Private_Dirty:         0 kB
Anonymous:             0 kB
7fff00000000-7fff00002000 r-xp 00000000 00:00 0                          [vdso]
Private_Dirty:         0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        assert_eq!(
            clean_file_mappings(SMAPS),
            [
                (0x55e0_0000_0000, 0x65000),
                (0x55e0_0006_5000, 0x166000),
                (0x7f00_0020_0000, 0x1000),
            ]
        );
    }

    #[test]
    fn a_mapping_that_gained_a_page_of_its_own_is_kept() {
        let patched = SMAPS.replacen(
            "Anonymous:             0 kB",
            "Anonymous:             4 kB",
            1,
        );
        assert_eq!(clean_file_mappings(&patched).len(), 2);
        assert!(clean_file_mappings("").is_empty());
        assert!(clean_file_mappings("garbage\n\u{0}\n-").is_empty());
    }

    #[test]
    fn a_rewound_queue_stays_at_the_front_of_its_buffer() {
        let mut queue = VecDeque::with_capacity(64);
        queue.push_back(0u64);
        let front = queue.as_slices().0.as_ptr();
        queue.clear();
        for i in 0..40 {
            queue.push_back(i);
            queue.pop_front();
            rewind(&mut queue);
        }
        queue.push_back(1);
        assert_eq!(queue.as_slices().0.as_ptr(), front);
        queue.push_back(2);
        rewind(&mut queue);
        assert_eq!(queue.len(), 2, "a queue with entries is left alone");
    }
}
