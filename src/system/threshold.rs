//! Judging a `[System]` rule's readings, in the engine: the value against
//! its threshold, and the `For=` hysteresis. The rule fails only once every
//! reading for `For=` has been beyond the threshold, and recovers only once
//! every reading for `For=` has been back within it, so a spike shorter
//! than `For=` never fails a rule and a dip never ends a failure. A source
//! that cannot be read is a cause of its own, at once; it breaks a run of
//! readings either way.

use super::read::{Reading, Unread};
use crate::config::{
    Amount, LoadWindow, Measure, PressureAverage, PressureLine, PressureResource, SystemSpec,
};
use crate::health::Cause;
use crate::sys::Errno;
use crate::text::DurationText;
use std::fmt;
use std::time::{Duration, Instant};

/// What a system rule measures, as its causes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Load {
        window: LoadWindow,
        per_cpu: bool,
    },
    MemoryAvailable,
    SwapUsed,
    FileHandles,
    FreeSpace,
    FreeInodes,
    Temperature,
    Pressure {
        resource: PressureResource,
        line: PressureLine,
        average: PressureAverage,
    },
}

/// A measured value or a threshold, in its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A load in thousandths.
    Load(u64),
    Bytes(u64),
    Count(u64),
    /// Thousandths of a percent.
    Percent(u64),
    /// Millidegrees Celsius.
    Celsius(i64),
}

/// Where a reading failed, for the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    LoadAverage,
    Memory,
    FileHandles,
    Filesystem,
    Sensor,
    Pressure(PressureResource),
}

/// Why a system rule fails. `Copy`, like every cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemCause {
    /// The value was beyond the limit at every reading for `held`.
    Beyond {
        what: What,
        value: Value,
        limit: Value,
        held: Duration,
    },
    /// The source could not be read.
    Unread { origin: Origin, why: Unread },
}

impl SystemCause {
    /// Same kind of failure, whatever the value and for how long: a value
    /// that moves is not a change of health.
    pub fn same_kind(&self, other: &SystemCause) -> bool {
        match (self, other) {
            (SystemCause::Beyond { what: a, .. }, SystemCause::Beyond { what: b, .. }) => a == b,
            _ => self == other,
        }
    }
}

/// Where a rule's readings stand against the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not failing; `beyond_since`: the first of an unbroken run of
    /// readings beyond the threshold.
    Within { beyond_since: Option<Instant> },
    /// Failing with `cause`; `beyond_since` started the failing run,
    /// `within_since` the first of an unbroken run back within.
    Beyond {
        cause: SystemCause,
        beyond_since: Instant,
        within_since: Option<Instant>,
    },
}

/// A system rule's check state in the engine.
#[derive(Debug, Clone)]
pub struct SystemWatch {
    measure: Measure,
    interval: Duration,
    hold: Duration,
    state: State,
}

impl SystemWatch {
    pub fn new(spec: &SystemSpec) -> SystemWatch {
        SystemWatch {
            measure: spec.measure.clone(),
            interval: spec.check_interval,
            hold: spec.hold,
            state: State::Within { beyond_since: None },
        }
    }

    /// Judges a reading made at `now`. Returns the verdict and when to
    /// read again.
    pub fn observe(
        &mut self,
        reading: Result<Reading, Unread>,
        now: Instant,
    ) -> (Result<(), Cause>, Instant) {
        let next = now + self.interval;
        let beyond = match reading.map_err(|why| SystemCause::Unread {
            origin: origin(&self.measure),
            why,
        }) {
            Ok(reading) => beyond(&self.measure, &reading),
            Err(cause) => Err(cause),
        };
        let beyond = match beyond {
            Ok(b) => b,
            Err(cause) => {
                // No reading: the run of readings either way is broken.
                match &mut self.state {
                    State::Within { beyond_since } => *beyond_since = None,
                    State::Beyond { within_since, .. } => *within_since = None,
                }
                return (Err(Cause::System(cause)), next);
            }
        };
        let hold = self.hold;
        let verdict = match (&mut self.state, beyond) {
            (State::Within { beyond_since }, None) => {
                *beyond_since = None;
                Ok(())
            }
            (State::Within { beyond_since }, Some((what, value, limit))) => {
                let since = *beyond_since.get_or_insert(now);
                let held = now.saturating_duration_since(since);
                if held >= hold {
                    let cause = SystemCause::Beyond {
                        what,
                        value,
                        limit,
                        held: whole_seconds(held),
                    };
                    self.state = State::Beyond {
                        cause,
                        beyond_since: since,
                        within_since: None,
                    };
                    Err(cause)
                } else {
                    Ok(())
                }
            }
            (
                State::Beyond {
                    cause,
                    beyond_since,
                    within_since,
                },
                Some((what, value, limit)),
            ) => {
                *within_since = None;
                *cause = SystemCause::Beyond {
                    what,
                    value,
                    limit,
                    held: whole_seconds(now.saturating_duration_since(*beyond_since)),
                };
                Err(*cause)
            }
            (
                State::Beyond {
                    cause,
                    within_since,
                    ..
                },
                None,
            ) => {
                let since = *within_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= hold {
                    self.state = State::Within { beyond_since: None };
                    Ok(())
                } else {
                    Err(*cause)
                }
            }
        };
        (verdict.map_err(Cause::System), next)
    }
}

/// A run's length for the cause: whole seconds, as `For=` is written.
fn whole_seconds(d: Duration) -> Duration {
    if d < Duration::from_secs(1) {
        d
    } else {
        Duration::from_secs(d.as_secs())
    }
}

fn origin(measure: &Measure) -> Origin {
    match measure {
        Measure::Load { .. } => Origin::LoadAverage,
        Measure::MemoryAvailable { .. } | Measure::SwapUsed { .. } => Origin::Memory,
        Measure::FileHandles { .. } => Origin::FileHandles,
        Measure::Filesystem { .. } => Origin::Filesystem,
        Measure::Temperature { .. } => Origin::Sensor,
        Measure::Pressure { resource, .. } => Origin::Pressure(*resource),
    }
}

/// `part` of `whole` in thousandths of a percent (0 of nothing is 0%).
fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (u128::from(part) * 100_000 / u128::from(whole)) as u64
}

/// Whether `value` falls short of `min` (of `total` for a percentage):
/// the value and the limit in the threshold's unit when it does.
fn below(value: u64, total: u64, min: Amount) -> Option<(Value, Value)> {
    match min {
        Amount::Bytes(b) => (value < b).then_some((Value::Bytes(value), Value::Bytes(b))),
        Amount::Count(c) => (value < c).then_some((Value::Count(value), Value::Count(c))),
        Amount::Percent(p) => {
            let v = percent(value, total);
            (v < p).then_some((Value::Percent(v), Value::Percent(p)))
        }
    }
}

/// Whether `value` exceeds `max` (of `total` for a percentage).
fn above(value: u64, total: u64, max: Amount) -> Option<(Value, Value)> {
    match max {
        Amount::Bytes(b) => (value > b).then_some((Value::Bytes(value), Value::Bytes(b))),
        Amount::Count(c) => (value > c).then_some((Value::Count(value), Value::Count(c))),
        Amount::Percent(p) => {
            let v = percent(value, total);
            (v > p).then_some((Value::Percent(v), Value::Percent(p)))
        }
    }
}

type Beyond = Option<(What, Value, Value)>;

/// Whether `reading` is beyond the measure's threshold, and by what.
fn beyond(measure: &Measure, reading: &Reading) -> Result<Beyond, SystemCause> {
    let tag = |what: What, found: Option<(Value, Value)>| found.map(|(v, l)| (what, v, l));
    let malformed = SystemCause::Unread {
        origin: origin(measure),
        why: Unread::Malformed,
    };
    Ok(match (measure, *reading) {
        (
            Measure::Load {
                window,
                max_milli,
                per_cpu,
            },
            Reading::Load { milli, cpus },
        ) => {
            let index = match window {
                LoadWindow::One => 0,
                LoadWindow::Five => 1,
                LoadWindow::Fifteen => 2,
            };
            let value = if *per_cpu {
                milli[index] / u64::from(cpus.max(1))
            } else {
                milli[index]
            };
            let what = What::Load {
                window: *window,
                per_cpu: *per_cpu,
            };
            (value > *max_milli).then_some((what, Value::Load(value), Value::Load(*max_milli)))
        }
        (
            Measure::MemoryAvailable { min },
            Reading::Memory {
                total, available, ..
            },
        ) => tag(What::MemoryAvailable, below(available, total, *min)),
        (
            Measure::SwapUsed { max },
            Reading::Memory {
                swap_total,
                swap_free,
                ..
            },
        ) => tag(
            What::SwapUsed,
            above(swap_total.saturating_sub(swap_free), swap_total, *max),
        ),
        (Measure::FileHandles { max }, Reading::FileHandles { used, max: limit }) => {
            tag(What::FileHandles, above(used, limit, *max))
        }
        (
            Measure::Filesystem { limits, .. },
            Reading::Filesystem {
                free_bytes,
                total_bytes,
                free_inodes,
                total_inodes,
            },
        ) => {
            let space = limits
                .space
                .and_then(|min| tag(What::FreeSpace, below(free_bytes, total_bytes, min)));
            // A filesystem with no inode count (btrfs, some FUSE) has no
            // inodes to run out of.
            let inodes = limits
                .inodes
                .filter(|_| total_inodes > 0)
                .and_then(|min| tag(What::FreeInodes, below(free_inodes, total_inodes, min)));
            space.or(inodes)
        }
        (Measure::Temperature { max_milli, .. }, Reading::Temperature { milli }) => {
            (milli > *max_milli).then_some((
                What::Temperature,
                Value::Celsius(milli),
                Value::Celsius(*max_milli),
            ))
        }
        (
            Measure::Pressure {
                resource,
                line,
                average,
                max_milli,
            },
            Reading::Pressure { some, full },
        ) => {
            let averages = match line {
                PressureLine::Some => some,
                PressureLine::Full => full.ok_or(malformed)?,
            };
            let value = averages[match average {
                PressureAverage::Ten => 0,
                PressureAverage::Sixty => 1,
                PressureAverage::ThreeHundred => 2,
            }];
            let what = What::Pressure {
                resource: *resource,
                line: *line,
                average: *average,
            };
            (value > *max_milli).then_some((
                what,
                Value::Percent(value),
                Value::Percent(*max_milli),
            ))
        }
        _ => return Err(malformed),
    })
}

/// A decimal in thousandths, without trailing zeros: 7900 is `7.9`.
struct Milli(i64);

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let n = self.0.unsigned_abs();
        let (whole, mut fraction) = (n / 1000, n % 1000);
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let mut places = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            places -= 1;
        }
        write!(f, "{sign}{whole}.{fraction:0places$}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Load(m) => write!(f, "{}", Milli(m as i64)),
            Value::Count(n) => write!(f, "{n}"),
            Value::Percent(m) => write!(f, "{}%", Milli(m as i64)),
            Value::Celsius(m) => write!(f, "{} °C", Milli(m)),
            Value::Bytes(b) => {
                let (unit, shift) = match b {
                    b if b >= 1 << 40 => ("TiB", 40),
                    b if b >= 1 << 30 => ("GiB", 30),
                    b if b >= 1 << 20 => ("MiB", 20),
                    b if b >= 1 << 10 => ("KiB", 10),
                    _ => return write!(f, "{b} B"),
                };
                // One decimal place, rounded down.
                let tenths = ((u128::from(b) * 10) >> shift) as i64;
                write!(f, "{} {unit}", Milli(tenths * 100))
            }
        }
    }
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            What::Load { window, per_cpu } => {
                write!(f, "load average {}", window.word())?;
                if per_cpu {
                    f.write_str(" per CPU")?;
                }
                Ok(())
            }
            What::MemoryAvailable => f.write_str("available memory"),
            What::SwapUsed => f.write_str("swap used"),
            What::FileHandles => f.write_str("file handles"),
            What::FreeSpace => f.write_str("free space"),
            What::FreeInodes => f.write_str("free inodes"),
            What::Temperature => f.write_str("temperature"),
            What::Pressure {
                resource,
                line,
                average,
            } => write!(
                f,
                "{} pressure {} avg{}",
                resource.word(),
                line.word(),
                average.word().trim_end_matches('s')
            ),
        }
    }
}

impl What {
    /// Whether the threshold is a minimum (the value must stay above it).
    fn is_minimum(self) -> bool {
        matches!(
            self,
            What::MemoryAvailable | What::FreeSpace | What::FreeInodes
        )
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::LoadAverage => f.write_str("/proc/loadavg"),
            Origin::Memory => f.write_str("/proc/meminfo"),
            Origin::FileHandles => f.write_str("/proc/sys/fs/file-nr"),
            Origin::Filesystem => f.write_str("statvfs of the filesystem"),
            Origin::Sensor => f.write_str("the temperature sensor"),
            Origin::Pressure(r) => write!(f, "/proc/pressure/{}", r.word()),
        }
    }
}

impl fmt::Display for SystemCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SystemCause::Beyond {
                what,
                value,
                limit,
                held,
            } => {
                let side = if what.is_minimum() { "below" } else { "above" };
                write!(f, "{what} {value} {side} {limit}")?;
                if !held.is_zero() {
                    write!(f, " for {}", DurationText(held))?;
                }
                Ok(())
            }
            SystemCause::Unread {
                origin: origin @ Origin::Pressure(_),
                why: Unread::Os(Errno::ENOENT),
            } => write!(
                f,
                "pressure stall information missing: {origin} does not exist (a kernel without PSI, or booted with psi=0)"
            ),
            SystemCause::Unread {
                origin: Origin::Pressure(r),
                why: Unread::Malformed,
            } => write!(
                f,
                "unreadable: /proc/pressure/{} has no such line (the kernel reports no `full` line for cpu before Linux 5.13)",
                r.word()
            ),
            SystemCause::Unread { origin, why } => match why {
                Unread::Os(errno) => write!(f, "unreadable: {origin}: {errno}"),
                Unread::NotRegular(what) => write!(
                    f,
                    "unreadable: {origin} is {what}, not a regular file, so it is not opened"
                ),
                Unread::Malformed => write!(f, "unreadable: {origin} does not read as expected"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilesystemLimits;
    use std::path::PathBuf;

    fn load_watch(max_milli: u64, hold: u64) -> SystemWatch {
        SystemWatch::new(&SystemSpec {
            measure: Measure::Load {
                window: LoadWindow::One,
                max_milli,
                per_cpu: false,
            },
            check_interval: Duration::from_secs(10),
            hold: Duration::from_secs(hold),
        })
    }

    fn load(milli: u64) -> Result<Reading, Unread> {
        Ok(Reading::Load {
            milli: [milli, 0, 0],
            cpus: 2,
        })
    }

    #[test]
    fn fails_after_for_and_recovers_after_for() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = load_watch(4000, 60);
        assert_eq!(w.observe(load(1000), t0).0, Ok(()));
        // Beyond from t0+10s: held back until a minute of it.
        for t in [10, 20, 40, 69] {
            assert_eq!(w.observe(load(7900), t0 + s(t)).0, Ok(()), "at {t}s");
        }
        let (v, next) = w.observe(load(7900), t0 + s(70));
        assert_eq!(next, t0 + s(80));
        let Err(Cause::System(cause)) = v else {
            panic!("{v:?}")
        };
        assert_eq!(cause.to_string(), "load average 1min 7.9 above 4 for 1min");
        // Within again: failing until a minute of it.
        for t in [80, 100, 139] {
            assert!(w.observe(load(100), t0 + s(t)).0.is_err(), "at {t}s");
        }
        // A reading beyond breaks the run: the minute starts over.
        assert!(w.observe(load(5000), t0 + s(140)).0.is_err());
        for t in [150, 200, 209] {
            assert!(w.observe(load(100), t0 + s(t)).0.is_err(), "at {t}s");
        }
        assert_eq!(w.observe(load(100), t0 + s(210)).0, Ok(()));
    }

    #[test]
    fn a_spike_shorter_than_for_never_fails() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = load_watch(4000, 60);
        for round in 0..10 {
            let at = t0 + s(round * 100);
            assert_eq!(w.observe(load(9000), at).0, Ok(()));
            assert_eq!(w.observe(load(9000), at + s(50)).0, Ok(()));
            assert_eq!(w.observe(load(1000), at + s(59)).0, Ok(()));
        }
    }

    #[test]
    fn an_unreadable_source_fails_at_once_and_breaks_the_run() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = load_watch(4000, 20);
        assert_eq!(w.observe(load(9000), t0).0, Ok(()));
        let (v, _) = w.observe(Err(Unread::Os(Errno::EACCES)), t0 + s(10));
        assert_eq!(
            v.unwrap_err().to_string(),
            "unreadable: /proc/loadavg: EACCES: Permission denied"
        );
        assert_eq!(w.observe(load(9000), t0 + s(20)).0, Ok(()));
        assert_eq!(w.observe(load(9000), t0 + s(30)).0, Ok(()));
        assert!(w.observe(load(9000), t0 + s(40)).0.is_err());
    }

    #[test]
    fn for_zero_acts_on_one_reading() {
        let t0 = Instant::now();
        let mut w = load_watch(4000, 0);
        let v = w.observe(load(4001), t0).0.unwrap_err();
        assert_eq!(v.to_string(), "load average 1min 4.001 above 4");
        assert_eq!(w.observe(load(4000), t0).0, Ok(()));
    }

    fn judge(measure: Measure, reading: Reading) -> Result<(), String> {
        let mut w = SystemWatch::new(&SystemSpec {
            measure,
            check_interval: Duration::from_secs(1),
            hold: Duration::ZERO,
        });
        w.observe(Ok(reading), Instant::now())
            .0
            .map_err(|c| c.to_string())
    }

    #[test]
    fn every_measure_says_what_and_by_how_much() {
        let memory = Reading::Memory {
            total: 24 << 30,
            available: 3 << 29,
            swap_total: 4 << 30,
            swap_free: 1 << 30,
        };
        assert_eq!(
            judge(
                Measure::MemoryAvailable {
                    min: Amount::Bytes(2 << 30)
                },
                memory
            ),
            Err("available memory 1.5 GiB below 2 GiB".into())
        );
        assert_eq!(
            judge(
                Measure::MemoryAvailable {
                    min: Amount::Percent(10_000)
                },
                memory
            ),
            Err("available memory 6.25% below 10%".into())
        );
        assert_eq!(
            judge(
                Measure::MemoryAvailable {
                    min: Amount::Bytes(1 << 30)
                },
                memory
            ),
            Ok(())
        );
        assert_eq!(
            judge(
                Measure::SwapUsed {
                    max: Amount::Percent(50_000)
                },
                memory
            ),
            Err("swap used 75% above 50%".into())
        );
        assert_eq!(
            judge(
                Measure::FileHandles {
                    max: Amount::Count(300)
                },
                Reading::FileHandles {
                    used: 355,
                    max: 1000
                }
            ),
            Err("file handles 355 above 300".into())
        );
        let fs = Reading::Filesystem {
            free_bytes: 3 << 20,
            total_bytes: 8 << 20,
            free_inodes: 10,
            total_inodes: 2000,
        };
        let filesystem = |space, inodes| Measure::Filesystem {
            mount: PathBuf::from("/m"),
            limits: FilesystemLimits { space, inodes },
        };
        assert_eq!(
            judge(filesystem(Some(Amount::Bytes(4 << 20)), None), fs),
            Err("free space 3 MiB below 4 MiB".into())
        );
        assert_eq!(
            judge(filesystem(None, Some(Amount::Percent(1000))), fs),
            Err("free inodes 0.5% below 1%".into())
        );
        assert_eq!(
            judge(filesystem(Some(Amount::Percent(10_000)), None), fs),
            Ok(())
        );
        assert_eq!(
            judge(
                Measure::Temperature {
                    sensor: PathBuf::from("/t"),
                    named: None,
                    max_milli: 85_000
                },
                Reading::Temperature { milli: 91_500 }
            ),
            Err("temperature 91.5 °C above 85 °C".into())
        );
        let pressure = |line| Measure::Pressure {
            resource: PressureResource::Cpu,
            line,
            average: PressureAverage::Ten,
            max_milli: 40_000,
        };
        let psi = Reading::Pressure {
            some: [45_200, 0, 0],
            full: None,
        };
        assert_eq!(
            judge(pressure(PressureLine::Some), psi),
            Err("cpu pressure some avg10 45.2% above 40%".into())
        );
        assert!(
            judge(pressure(PressureLine::Full), psi)
                .unwrap_err()
                .contains("no `full` line")
        );
    }

    #[test]
    fn missing_psi_says_so() {
        let cause = SystemCause::Unread {
            origin: Origin::Pressure(PressureResource::Memory),
            why: Unread::Os(Errno::ENOENT),
        };
        assert!(cause.to_string().starts_with(
            "pressure stall information missing: /proc/pressure/memory does not exist"
        ));
    }
}
