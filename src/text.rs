//! Formatting without allocation: a fixed buffer that `write!` can fill,
//! wall-clock dates rendered by hand, durations as the configuration
//! writes them (`1min30s`). The loop logs and writes status
//! through these so that a state change costs no heap allocation.

use std::fmt;
use std::time::Duration;

/// A fixed-capacity text buffer; what does not fit is cut off, marked `…`.
pub struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> FixedBuf<N> {
    pub const fn new() -> Self {
        FixedBuf {
            bytes: [0; N],
            len: 0,
            truncated: false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only whole `str`s and complete chars are ever copied in.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    #[cfg(test)]
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = N.saturating_sub(self.len);
        if s.len() <= room {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        // Cut at a char boundary, leaving room for the three-byte ellipsis.
        let mut cut = room.saturating_sub(3);
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        if N - self.len >= 3 {
            self.bytes[self.len..self.len + 3].copy_from_slice("…".as_bytes());
            self.len += 3;
        }
        self.truncated = true;
        Ok(())
    }
}

/// A wall-clock time in UTC as `2026-11-24 14:05:03 UTC`, from seconds
/// since the epoch. For display only: heartwatch never decides by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime(pub i64);

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// Seconds since the epoch as RFC 3339 in UTC: `2026-11-18T11:06:40Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// A count with its noun, which agrees with it: `1 rule`, `2 rules`, `0
/// errors`. The plural adds `s` (`es` after an `s`: `passes`), which is
/// all heartwatch's nouns need.
/// Formats without allocating, so the loop may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u64, pub &'static str);

impl Count {
    pub fn of(n: usize, noun: &'static str) -> Count {
        Count(n as u64, noun)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Count(n, noun) = *self;
        let ending = match (n, noun.ends_with('s')) {
            (1, _) => "",
            (_, true) => "es",
            (_, false) => "s",
        };
        write!(f, "{n} {noun}{ending}")
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub use crate::sys::decimal;

/// Shows a duration the way the configuration writes it: `1min30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("min", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// Seconds since the epoch by the wall clock (display only).
pub fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn fixed_buf_cuts_what_does_not_fit() {
        let mut b = FixedBuf::<10>::new();
        write!(b, "abc").unwrap();
        assert_eq!(b.as_str(), "abc");
        write!(b, "défghijkl").unwrap();
        assert!(b.is_truncated());
        assert!(b.as_str().ends_with('…'));
        assert!(b.as_bytes().len() <= 10);
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(Count::of(0, "rule").to_string(), "0 rules");
        assert_eq!(Count::of(1, "rule").to_string(), "1 rule");
        assert_eq!(Count(2, "error").to_string(), "2 errors");
        assert_eq!(Count(3, "pass").to_string(), "3 passes");
    }

    #[test]
    fn durations_print_as_the_configuration_writes_them() {
        assert_eq!(DurationText(Duration::ZERO).to_string(), "0s");
        assert_eq!(DurationText(Duration::from_secs(90)).to_string(), "1min30s");
        assert_eq!(
            DurationText(Duration::from_millis(90_061_001)).to_string(),
            "1d1h1min1s1ms"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            UtcTime(1_795_000_000).to_string(),
            "2026-11-18 11:06:40 UTC"
        );
        assert_eq!(UtcTime(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
        assert_eq!(Rfc3339(1_795_000_000).to_string(), "2026-11-18T11:06:40Z");
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
    }
}
