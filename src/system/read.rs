//! The readers: one look at the source a `[System]` rule measures. They
//! run in the probe workers (a `statvfs` of a hung NFS or FUSE mount
//! blocks a worker, never the loop), read into buffers on the stack and
//! allocate nothing. The parsers are plain functions of the bytes read.

use crate::config::PressureResource;
use crate::regular::{self, FdPath, NotOpened, Symlink};
use crate::sys::Errno;
use crate::sys::fs::read_small;
use std::ffi::CString;

/// What a rule reads, built when the rules are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `/proc/loadavg`; `per_cpu`: the online CPUs too.
    Load { per_cpu: bool },
    /// `/proc/meminfo`.
    Memory,
    /// `/proc/sys/fs/file-nr`.
    FileHandles,
    /// `statvfs` of a mount point.
    Filesystem(CString),
    /// A temperature file in millidegrees Celsius.
    Sensor(CString),
    /// `/proc/pressure/RESOURCE`.
    Pressure(PressureResource),
}

/// One reading of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The 1, 5 and 15 minute averages in thousandths, and the online CPUs
    /// (1 unless asked for).
    Load { milli: [u64; 3], cpus: u32 },
    /// Bytes.
    Memory {
        total: u64,
        available: u64,
        swap_total: u64,
        swap_free: u64,
    },
    /// Handles in use and the system's limit (`file-max`).
    FileHandles { used: u64, max: u64 },
    /// Free bytes and inodes for unprivileged users, and the totals.
    Filesystem {
        free_bytes: u64,
        total_bytes: u64,
        free_inodes: u64,
        total_inodes: u64,
    },
    /// Millidegrees Celsius.
    Temperature { milli: i64 },
    /// The avg10, avg60 and avg300 of the `some` and `full` lines, in
    /// thousandths of a percent; `full` is `None` where the kernel has no
    /// such line (cpu before Linux 5.13).
    Pressure {
        some: [u64; 3],
        full: Option<[u64; 3]>,
    },
}

/// Why a source gave no reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// The file or `statvfs` failed with this error.
    Os(Errno),
    /// The sensor path is not a regular file: what it is.
    NotRegular(&'static str),
    /// The file does not read as the kernel writes it.
    Malformed,
}

/// Reads `source` once. Runs in a probe worker; allocates nothing.
pub fn read(source: &Source) -> Result<Reading, Unread> {
    match source {
        Source::Load { per_cpu } => {
            let mut buf = [0u8; 256];
            let n = read_small(b"/proc/loadavg\0", &mut buf).map_err(Unread::Os)?;
            let milli = parse_loadavg(&buf[..n]).ok_or(Unread::Malformed)?;
            let cpus = if *per_cpu {
                let n = read_small(b"/sys/devices/system/cpu/online\0", &mut buf)
                    .map_err(Unread::Os)?;
                parse_cpu_list(&buf[..n]).ok_or(Unread::Malformed)?
            } else {
                1
            };
            Ok(Reading::Load { milli, cpus })
        }
        Source::Memory => {
            let mut buf = [0u8; 8192];
            let n = read_small(b"/proc/meminfo\0", &mut buf).map_err(Unread::Os)?;
            parse_meminfo(&buf[..n]).ok_or(Unread::Malformed)
        }
        Source::FileHandles => {
            let mut buf = [0u8; 128];
            let n = read_small(b"/proc/sys/fs/file-nr\0", &mut buf).map_err(Unread::Os)?;
            parse_file_nr(&buf[..n]).ok_or(Unread::Malformed)
        }
        Source::Filesystem(mount) => {
            // nix hands a CStr to the call as it is: no allocation.
            let st = nix::sys::statvfs::statvfs(mount.as_c_str()).map_err(Unread::Os)?;
            let fragment = st.fragment_size() as u64;
            Ok(Reading::Filesystem {
                free_bytes: (st.blocks_available() as u64).saturating_mul(fragment),
                total_bytes: (st.blocks() as u64).saturating_mul(fragment),
                free_inodes: st.files_available() as u64,
                total_inodes: st.files() as u64,
            })
        }
        Source::Sensor(path) => {
            // Only a regular file is opened, as for heartbeats: a FIFO or a
            // device in the sensor's place is a cause, not a hang.
            let (fd, _) = regular::open(path, Symlink::Refuse).map_err(|e| match e {
                NotOpened::NotRegular(what) => Unread::NotRegular(what),
                NotOpened::Os(errno) => Unread::Os(errno),
            })?;
            let mut buf = [0u8; 64];
            let n =
                read_small(FdPath::of(&fd).as_bytes_with_nul(), &mut buf).map_err(Unread::Os)?;
            let milli = parse_signed(buf[..n].trim_ascii()).ok_or(Unread::Malformed)?;
            Ok(Reading::Temperature { milli })
        }
        Source::Pressure(resource) => {
            let path: &[u8] = match resource {
                PressureResource::Cpu => b"/proc/pressure/cpu\0",
                PressureResource::Memory => b"/proc/pressure/memory\0",
                PressureResource::Io => b"/proc/pressure/io\0",
            };
            let mut buf = [0u8; 512];
            let n = read_small(path, &mut buf).map_err(Unread::Os)?;
            parse_pressure(&buf[..n]).ok_or(Unread::Malformed)
        }
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

fn parse_signed(text: &[u8]) -> Option<i64> {
    match text.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => parse_u64(text).and_then(|n| i64::try_from(n).ok()),
    }
}

/// A decimal as the kernel prints it (`7.92`), in thousandths.
fn parse_milli(text: &[u8]) -> Option<u64> {
    let (whole, fraction) = match text.iter().position(|b| *b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    let mut milli = parse_u64(whole)?.checked_mul(1000)?;
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    for (i, d) in fraction.iter().take(3).enumerate() {
        milli += u64::from(d - b'0') * 10u64.pow(2 - i as u32);
    }
    Some(milli)
}

/// `/proc/loadavg`: `0.41 0.59 0.83 1/92 15930`.
pub(crate) fn parse_loadavg(text: &[u8]) -> Option<[u64; 3]> {
    let mut fields = text.split(|b| *b == b' ');
    let mut out = [0u64; 3];
    for slot in &mut out {
        *slot = parse_milli(fields.next()?)?;
    }
    Some(out)
}

/// `/sys/devices/system/cpu/online`: `0-3,6,8-9`.
pub(crate) fn parse_cpu_list(text: &[u8]) -> Option<u32> {
    let mut count = 0u32;
    for range in text.trim_ascii().split(|b| *b == b',') {
        let (low, high) = match range.iter().position(|b| *b == b'-') {
            Some(dash) => (parse_u64(&range[..dash])?, parse_u64(&range[dash + 1..])?),
            None => {
                let n = parse_u64(range)?;
                (n, n)
            }
        };
        count = count.checked_add(u32::try_from(high.checked_sub(low)? + 1).ok()?)?;
    }
    (count > 0).then_some(count)
}

/// `/proc/meminfo`: `MemAvailable:   123456 kB` lines; `MemAvailable` is
/// there since Linux 3.14.
pub(crate) fn parse_meminfo(text: &[u8]) -> Option<Reading> {
    let mut found = [None; 4];
    let names: [&[u8]; 4] = [b"MemTotal:", b"MemAvailable:", b"SwapTotal:", b"SwapFree:"];
    for line in text.split(|b| *b == b'\n') {
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            if let Some(rest) = line.strip_prefix(*name) {
                let rest = rest.trim_ascii();
                let digits = rest.strip_suffix(b" kB").unwrap_or(rest).trim_ascii();
                *slot = Some(parse_u64(digits)?.checked_mul(1024)?);
            }
        }
    }
    Some(Reading::Memory {
        total: found[0]?,
        available: found[1]?,
        swap_total: found[2]?,
        swap_free: found[3]?,
    })
}

/// `/proc/sys/fs/file-nr`: allocated, allocated but unused (0 since Linux
/// 2.6), and the maximum.
pub(crate) fn parse_file_nr(text: &[u8]) -> Option<Reading> {
    let mut fields = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let allocated = parse_u64(fields.next()?)?;
    let unused = parse_u64(fields.next()?)?;
    let max = parse_u64(fields.next()?)?;
    Some(Reading::FileHandles {
        used: allocated.saturating_sub(unused),
        max,
    })
}

/// `/proc/pressure/*`: `some avg10=0.27 avg60=2.25 avg300=1.85 total=5591`
/// and a `full` line of the same shape.
pub(crate) fn parse_pressure(text: &[u8]) -> Option<Reading> {
    let mut some = None;
    let mut full = None;
    for line in text.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b' ');
        let slot = match fields.next() {
            Some(b"some") => &mut some,
            Some(b"full") => &mut full,
            _ => continue,
        };
        let mut averages = [0u64; 3];
        for (key, avg) in [&b"avg10="[..], b"avg60=", b"avg300="]
            .iter()
            .zip(averages.iter_mut())
        {
            *avg = parse_milli(fields.next()?.strip_prefix(*key)?)?;
        }
        *slot = Some(averages);
    }
    Some(Reading::Pressure { some: some?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_files_parse() {
        assert_eq!(
            parse_loadavg(b"0.41 7.92 12.00 1/92 15930\n"),
            Some([410, 7920, 12000])
        );
        assert_eq!(parse_loadavg(b"0.41\n"), None);
        assert_eq!(parse_cpu_list(b"0-1\n"), Some(2));
        assert_eq!(parse_cpu_list(b"0-3,6,8-9\n"), Some(7));
        assert_eq!(parse_cpu_list(b"0\n"), Some(1));
        assert_eq!(parse_cpu_list(b"3-1\n"), None);
        assert_eq!(
            parse_meminfo(
                b"MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   1000 kB\nSwapCached: 0 kB\nSwapTotal:      0 kB\nSwapFree:       0 kB\n"
            ),
            Some(Reading::Memory {
                total: 24_000_000 * 1024,
                available: 1000 * 1024,
                swap_total: 0,
                swap_free: 0
            })
        );
        assert_eq!(
            parse_meminfo(b"MemTotal: 1 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"),
            None
        );
        assert_eq!(
            parse_file_nr(b"355\t0\t2466126\n"),
            Some(Reading::FileHandles {
                used: 355,
                max: 2_466_126
            })
        );
        assert_eq!(
            parse_pressure(
                b"some avg10=0.27 avg60=2.25 avg300=1.85 total=5591564067\nfull avg10=0.00 avg60=0.00 avg300=100.00 total=0\n"
            ),
            Some(Reading::Pressure {
                some: [270, 2250, 1850],
                full: Some([0, 0, 100_000])
            })
        );
        assert_eq!(
            parse_pressure(b"some avg10=1.00 avg60=2.00 avg300=3.00 total=1\n"),
            Some(Reading::Pressure {
                some: [1000, 2000, 3000],
                full: None
            })
        );
        assert_eq!(parse_pressure(b"garbage\n"), None);
        assert_eq!(parse_signed(b"-5000"), Some(-5000));
        assert_eq!(parse_signed(b"48000"), Some(48000));
    }

    #[test]
    fn this_host_reads() {
        assert!(matches!(
            read(&Source::Load { per_cpu: true }),
            Ok(Reading::Load { cpus: 1.., .. })
        ));
        assert!(matches!(read(&Source::Memory), Ok(Reading::Memory { .. })));
        assert!(matches!(
            read(&Source::FileHandles),
            Ok(Reading::FileHandles { .. })
        ));
        assert!(matches!(
            read(&Source::Filesystem(CString::new("/").unwrap())),
            Ok(Reading::Filesystem { .. })
        ));
        assert_eq!(
            read(&Source::Filesystem(CString::new("/no/such/dir").unwrap())),
            Err(Unread::Os(Errno::ENOENT))
        );
        assert_eq!(
            read(&Source::Sensor(CString::new("/proc").unwrap())),
            Err(Unread::NotRegular("a directory"))
        );
    }

    #[test]
    fn a_sensor_that_is_a_fifo_is_not_opened() {
        let dir = std::env::temp_dir().join(format!("heartwatch-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("temp");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits(0o644).unwrap()).unwrap();
        let path = CString::new(fifo.to_str().unwrap()).unwrap();
        // Opening it for reading would block until a writer came.
        assert_eq!(
            read(&Source::Sensor(path)),
            Err(Unread::NotRegular("a FIFO"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
