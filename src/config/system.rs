//! The `[System]` section: one threshold on the host (load, memory, swap,
//! file handles, a filesystem, a temperature, pressure stall
//! information), how often it is read and how long it must hold (`For=`).
//! Exactly one measure per rule; a threshold key without its measure, or
//! a measure without its threshold, is an error on its line.

use super::keys::Keys;
use super::types::{DurationText, Watch};
use super::values::{parse_absolute_path, parse_bool, parse_duration, parse_positive_duration};
use std::path::PathBuf;
use std::time::Duration;

/// A `[System]` rule: the measure, how often it is read, and how long a
/// reading must stay beyond (or back within) its threshold to count.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSpec {
    pub measure: Measure,
    pub check_interval: Duration,
    /// `For=`: beyond the threshold this long to fail, within it this long
    /// to recover.
    pub hold: Duration,
}

/// What is read and where its threshold lies. Decimals are in thousandths
/// (`milli`): a load of 1.5 is 1500, 12.5% is 12 500, 80 °C is 80 000.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// `/proc/loadavg`; with `per_cpu`, divided by the online CPUs.
    Load {
        window: LoadWindow,
        max_milli: u64,
        per_cpu: bool,
    },
    /// `MemAvailable` in `/proc/meminfo` must stay at or above this.
    MemoryAvailable { min: Amount },
    /// `SwapTotal - SwapFree` must stay at or below this.
    SwapUsed { max: Amount },
    /// Allocated file handles (`/proc/sys/fs/file-nr`) at or below this.
    FileHandles { max: Amount },
    /// `statvfs` of the mount point.
    Filesystem {
        mount: PathBuf,
        limits: FilesystemLimits,
    },
    /// A sensor file in millidegrees Celsius (a thermal zone's `temp`, a
    /// hwmon `temp*_input`). `named`: the zone type or hwmon label it was
    /// resolved from at load.
    Temperature {
        sensor: PathBuf,
        named: Option<String>,
        max_milli: i64,
    },
    /// `/proc/pressure/RESOURCE`, one line's one average, in percent.
    Pressure {
        resource: PressureResource,
        line: PressureLine,
        average: PressureAverage,
        max_milli: u64,
    },
}

/// The free space and free inodes a filesystem must keep; at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemLimits {
    pub space: Option<Amount>,
    pub inodes: Option<Amount>,
}

/// A threshold as written: a size, a count, or a share of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Bytes(u64),
    Count(u64),
    /// Thousandths of a percent: 10% is 10 000.
    Percent(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadWindow {
    One,
    Five,
    Fifteen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureResource {
    Cpu,
    Memory,
    Io,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureLine {
    Some,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureAverage {
    Ten,
    Sixty,
    ThreeHundred,
}

impl LoadWindow {
    pub fn word(self) -> &'static str {
        match self {
            LoadWindow::One => "1min",
            LoadWindow::Five => "5min",
            LoadWindow::Fifteen => "15min",
        }
    }
}

impl PressureResource {
    pub fn word(self) -> &'static str {
        match self {
            PressureResource::Cpu => "cpu",
            PressureResource::Memory => "memory",
            PressureResource::Io => "io",
        }
    }
}

impl PressureLine {
    pub fn word(self) -> &'static str {
        match self {
            PressureLine::Some => "some",
            PressureLine::Full => "full",
        }
    }
}

impl PressureAverage {
    pub fn word(self) -> &'static str {
        match self {
            PressureAverage::Ten => "10s",
            PressureAverage::Sixty => "60s",
            PressureAverage::ThreeHundred => "300s",
        }
    }
}

/// The measure keys: a rule has exactly one of them.
const MEASURES: [&str; 7] = [
    "LoadAverage",
    "MinMemoryAvailable",
    "MaxSwapUsed",
    "MaxFileHandles",
    "Filesystem",
    "TemperatureSensor",
    "Pressure",
];

/// The keys that qualify a measure, with the measure they belong to.
const QUALIFIERS: [(&str, &str); 8] = [
    ("MaxLoad", "LoadAverage"),
    ("PerCPU", "LoadAverage"),
    ("MinFreeSpace", "Filesystem"),
    ("MinFreeInodes", "Filesystem"),
    ("MaxTemperature", "TemperatureSensor"),
    ("PressureLine", "Pressure"),
    ("PressureAverage", "Pressure"),
    ("MaxPressure", "Pressure"),
];

pub(super) fn parse_system(keys: &mut Keys) -> Option<Watch> {
    let section_line = keys.section.line;
    let check_interval = keys
        .get("CheckInterval", parse_positive_duration)
        .unwrap_or(Duration::from_secs(10));
    let hold_line = keys.line_of("For");
    let hold = keys
        .get("For", parse_duration)
        .unwrap_or(Duration::from_secs(60));
    let mut present: Vec<(&str, usize)> = MEASURES
        .iter()
        .filter_map(|m| {
            let e = keys.section.entries.iter().find(|e| e.key == *m)?;
            Some((*m, e.line))
        })
        .collect();
    // The second measure in the file is the one reported.
    present.sort_by_key(|(_, line)| *line);
    let measure = match present.as_slice() {
        [] => {
            keys.error(
                section_line,
                "[System] needs one measure: LoadAverage=, MinMemoryAvailable=, MaxSwapUsed=, MaxFileHandles=, Filesystem=, TemperatureSensor= or Pressure=",
            );
            None
        }
        [(one, _)] => Some(*one),
        [(first, _), (second, line), ..] => {
            let line = *line;
            keys.error(
                line,
                format!(
                    "[System] takes exactly one measure, and {first}= and {second}= are two: write one rule for each"
                ),
            );
            None
        }
    };
    for (qualifier, owner) in QUALIFIERS {
        if measure != Some(owner)
            && let Some(line) = keys
                .section
                .entries
                .iter()
                .find(|e| e.key == qualifier)
                .map(|e| e.line)
        {
            if measure.is_some() || present.is_empty() {
                keys.error(
                    line,
                    format!("{qualifier}= belongs to {owner}=, which this rule does not have"),
                );
            }
            // Read, so that it is not also reported as unknown.
            keys.entry(qualifier);
        }
    }
    if measure.is_none() {
        // Read, so that they are not also reported as unknown.
        for (m, _) in &present {
            keys.entry(m);
        }
    }
    if !hold.is_zero() && hold < check_interval {
        keys.error(
            hold_line,
            format!(
                "For={} is shorter than CheckInterval={}: one reading is all it would see; write For=0s for that, or read more often",
                DurationText(hold),
                DurationText(check_interval)
            ),
        );
        return None;
    }
    let measure = match measure? {
        "LoadAverage" => parse_load(keys),
        "MinMemoryAvailable" => keys
            .get("MinMemoryAvailable", parse_size_or_percent)
            .map(|min| Measure::MemoryAvailable { min }),
        "MaxSwapUsed" => keys
            .get("MaxSwapUsed", parse_size_or_percent)
            .map(|max| Measure::SwapUsed { max }),
        "MaxFileHandles" => keys
            .get("MaxFileHandles", parse_count_or_percent)
            .map(|max| Measure::FileHandles { max }),
        "Filesystem" => parse_filesystem(keys),
        "TemperatureSensor" => parse_temperature(keys),
        _ => parse_pressure(keys),
    }?;
    Some(Watch::System(Box::new(SystemSpec {
        measure,
        check_interval,
        hold,
    })))
}

fn parse_load(keys: &mut Keys) -> Option<Measure> {
    let window = keys.get("LoadAverage", |v| match v {
        "1min" => Ok(LoadWindow::One),
        "5min" => Ok(LoadWindow::Five),
        "15min" => Ok(LoadWindow::Fifteen),
        _ => Err(format!("{v:?} is not 1min, 5min or 15min")),
    });
    let max = keys.required("MaxLoad", |v| {
        let milli = parse_milli(v)?;
        if milli == 0 {
            return Err("must be above 0".into());
        }
        Ok(milli)
    });
    let per_cpu = keys.get("PerCPU", parse_bool).unwrap_or(false);
    Some(Measure::Load {
        window: window?,
        max_milli: max?,
        per_cpu,
    })
}

fn parse_filesystem(keys: &mut Keys) -> Option<Measure> {
    let mount = keys.get("Filesystem", parse_absolute_path);
    let space = keys.get("MinFreeSpace", parse_size_or_percent);
    let inodes = keys.get("MinFreeInodes", parse_count_or_percent);
    let has = |keys: &Keys, k: &str| keys.section.entries.iter().any(|e| e.key == k);
    if !has(keys, "MinFreeSpace") && !has(keys, "MinFreeInodes") {
        let line = keys.line_of("Filesystem");
        keys.error(
            line,
            "Filesystem= needs MinFreeSpace= or MinFreeInodes= (or both)",
        );
        return None;
    }
    if has(keys, "MinFreeSpace") && space.is_none()
        || has(keys, "MinFreeInodes") && inodes.is_none()
    {
        return None;
    }
    Some(Measure::Filesystem {
        mount: mount?,
        limits: FilesystemLimits { space, inodes },
    })
}

fn parse_temperature(keys: &mut Keys) -> Option<Measure> {
    let sensor = keys.get("TemperatureSensor", |v| {
        if v.starts_with('/') {
            parse_absolute_path(v).map(|p| (p, None))
        } else {
            crate::system::resolve_sensor(v).map(|p| (p, Some(v.to_string())))
        }
    });
    let max = keys.required("MaxTemperature", |v| {
        let (negative, digits) = match v.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let milli = parse_milli(digits)?;
        if milli > 300_000 {
            return Err(format!("{v:?} is above 300 °C: no sensor reads that"));
        }
        let milli = milli as i64;
        Ok(if negative { -milli } else { milli })
    });
    let (sensor, named) = sensor?;
    Some(Measure::Temperature {
        sensor,
        named,
        max_milli: max?,
    })
}

fn parse_pressure(keys: &mut Keys) -> Option<Measure> {
    let resource = keys.get("Pressure", |v| match v {
        "cpu" => Ok(PressureResource::Cpu),
        "memory" => Ok(PressureResource::Memory),
        "io" => Ok(PressureResource::Io),
        _ => Err(format!("{v:?} is not cpu, memory or io")),
    });
    let line = keys
        .get("PressureLine", |v| match v {
            "some" => Ok(PressureLine::Some),
            "full" => Ok(PressureLine::Full),
            _ => Err(format!("{v:?} is not some or full")),
        })
        .unwrap_or(PressureLine::Some);
    let average = keys
        .get("PressureAverage", |v| match v {
            "10s" => Ok(PressureAverage::Ten),
            "60s" | "1min" => Ok(PressureAverage::Sixty),
            "300s" | "5min" => Ok(PressureAverage::ThreeHundred),
            _ => Err(format!(
                "{v:?} is not 10s, 60s or 300s (the kernel keeps those three averages)"
            )),
        })
        .unwrap_or(PressureAverage::Sixty);
    let max = keys.required("MaxPressure", |v| match parse_percent(v)? {
        Amount::Percent(p) => Ok(p),
        _ => unreachable!("parse_percent returns a percentage"),
    });
    Some(Measure::Pressure {
        resource: resource?,
        line,
        average,
        max_milli: max?,
    })
}

/// A non-negative decimal with at most three places, in thousandths.
fn parse_milli(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a number (examples: 4, 0.75, 12.5)");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }
    if fraction.len() > 3 {
        return Err(format!("{text:?} has more than three decimal places"));
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut milli: u64 = 0;
    for (i, d) in fraction.bytes().enumerate() {
        milli += u64::from(d - b'0') * 10u64.pow(2 - i as u32);
    }
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(milli))
        .filter(|m| *m <= 1 << 60)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `10%` or `12.5%`: strictly between 0 and 100, as a threshold at either
/// end could never fire or would always.
fn parse_percent(text: &str) -> Result<Amount, String> {
    let Some(number) = text.strip_suffix('%') else {
        return Err(format!("{text:?} is not a percentage (example: 10%)"));
    };
    let milli = parse_milli(number)?;
    if milli == 0 || milli >= 100_000 {
        return Err(format!("{text} must be above 0% and below 100%"));
    }
    Ok(Amount::Percent(milli))
}

/// A size (`512M`, `2G`; K, M, G, T are KiB, MiB, GiB, TiB) or a
/// percentage.
fn parse_size_or_percent(text: &str) -> Result<Amount, String> {
    if text.ends_with('%') {
        return parse_percent(text);
    }
    let split = text.len()
        - text
            .bytes()
            .rev()
            .take_while(u8::is_ascii_alphabetic)
            .count();
    let (number, unit) = text.split_at(split);
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "" => {
            return Err(format!(
                "{text:?} has no unit; write e.g. {text}M, {text}G or a percentage"
            ));
        }
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (K, M, G, T for KiB, MiB, GiB, TiB, or a percentage)"
            ));
        }
    };
    let milli = parse_milli(number)?;
    let bytes = u128::from(milli) * (1u128 << shift) / 1000;
    if bytes == 0 {
        return Err(format!("{text} must be above 0"));
    }
    u64::try_from(bytes)
        .map(Amount::Bytes)
        .map_err(|_| format!("{text:?} is too large"))
}

/// A whole count or a percentage.
fn parse_count_or_percent(text: &str) -> Result<Amount, String> {
    if text.ends_with('%') {
        return parse_percent(text);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("must be above 0".into()),
        Ok(n) => Ok(Amount::Count(n)),
        Err(_) => Err(format!(
            "{text:?} is not a whole number or a percentage (examples: 50000, 80%)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::parse_rule;
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> Result<SystemSpec, Vec<String>> {
        let rule = parse_rule(Path::new("/r/s.rule"), "s", text)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        match rule.watch {
            Watch::System(s) => Ok(*s),
            other => panic!("not a system rule: {other:?}"),
        }
    }

    #[test]
    fn every_measure_parses_with_its_defaults() {
        let s = spec("[System]\nLoadAverage=5min\nMaxLoad=1.5\nPerCPU=yes\n").unwrap();
        assert_eq!(s.check_interval, Duration::from_secs(10));
        assert_eq!(s.hold, Duration::from_secs(60));
        assert_eq!(
            s.measure,
            Measure::Load {
                window: LoadWindow::Five,
                max_milli: 1500,
                per_cpu: true
            }
        );
        let m = |t: &str| spec(t).unwrap().measure;
        assert_eq!(
            m("[System]\nMinMemoryAvailable=512M\n"),
            Measure::MemoryAvailable {
                min: Amount::Bytes(512 << 20)
            }
        );
        assert_eq!(
            m("[System]\nMaxSwapUsed=12.5%\n"),
            Measure::SwapUsed {
                max: Amount::Percent(12_500)
            }
        );
        assert_eq!(
            m("[System]\nMaxFileHandles=50000\n"),
            Measure::FileHandles {
                max: Amount::Count(50_000)
            }
        );
        assert_eq!(
            m("[System]\nFilesystem=/var\nMinFreeSpace=1.5G\nMinFreeInodes=5%\n"),
            Measure::Filesystem {
                mount: PathBuf::from("/var"),
                limits: FilesystemLimits {
                    space: Some(Amount::Bytes(3 << 29)),
                    inodes: Some(Amount::Percent(5000))
                }
            }
        );
        assert_eq!(
            m(
                "[System]\nTemperatureSensor=/sys/class/thermal/thermal_zone0/temp\nMaxTemperature=85.5\n"
            ),
            Measure::Temperature {
                sensor: PathBuf::from("/sys/class/thermal/thermal_zone0/temp"),
                named: None,
                max_milli: 85_500
            }
        );
        assert_eq!(
            m("[System]\nPressure=io\nMaxPressure=40%\n"),
            Measure::Pressure {
                resource: PressureResource::Io,
                line: PressureLine::Some,
                average: PressureAverage::Sixty,
                max_milli: 40_000
            }
        );
        let s = spec(
            "[System]\nPressure=memory\nPressureLine=full\nPressureAverage=10s\nMaxPressure=5%\nCheckInterval=2s\nFor=0s\n",
        )
        .unwrap();
        assert_eq!(s.hold, Duration::ZERO);
        assert!(matches!(
            s.measure,
            Measure::Pressure {
                line: PressureLine::Full,
                average: PressureAverage::Ten,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_their_line() {
        let cases: &[(&str, &str)] = &[
            (
                "[System]\nFor=1min\n",
                "/r/s.rule:1: [System] needs one measure",
            ),
            (
                "[System]\nLoadAverage=1min\nMaxLoad=2\nPressure=cpu\nMaxPressure=10%\n",
                "/r/s.rule:4: [System] takes exactly one measure, and LoadAverage= and Pressure= are two",
            ),
            (
                "[System]\nPressure=cpu\nMaxLoad=3\nLoadAverage=1min\n",
                "/r/s.rule:4: [System] takes exactly one measure, and Pressure= and LoadAverage= are two",
            ),
            (
                "[System]\nMinMemoryAvailable=1G\nMaxLoad=3\n",
                "/r/s.rule:3: MaxLoad= belongs to LoadAverage=, which this rule does not have",
            ),
            (
                "[System]\nMaxTemperature=80\n",
                "/r/s.rule:2: MaxTemperature= belongs to TemperatureSensor=",
            ),
            (
                "[System]\nLoadAverage=1min\n",
                "/r/s.rule:1: [System] needs MaxLoad=",
            ),
            (
                "[System]\nLoadAverage=2min\nMaxLoad=1\n",
                "/r/s.rule:2: LoadAverage=: \"2min\" is not 1min, 5min or 15min",
            ),
            (
                "[System]\nLoadAverage=1min\nMaxLoad=0\n",
                "/r/s.rule:3: MaxLoad=: must be above 0",
            ),
            (
                "[System]\nLoadAverage=1min\nMaxLoad=-1\n",
                "/r/s.rule:3: MaxLoad=: \"-1\" is not a number",
            ),
            (
                "[System]\nMinMemoryAvailable=100%\n",
                "/r/s.rule:2: MinMemoryAvailable=: 100% must be above 0% and below 100%",
            ),
            (
                "[System]\nMinMemoryAvailable=0%\n",
                "/r/s.rule:2: MinMemoryAvailable=: 0% must be above 0%",
            ),
            (
                "[System]\nMinMemoryAvailable=512\n",
                "/r/s.rule:2: MinMemoryAvailable=: \"512\" has no unit",
            ),
            (
                "[System]\nMaxSwapUsed=1P\n",
                "/r/s.rule:2: MaxSwapUsed=: \"1P\": unknown unit",
            ),
            (
                "[System]\nMaxFileHandles=lots\n",
                "/r/s.rule:2: MaxFileHandles=: \"lots\" is not a whole number",
            ),
            (
                "[System]\nFilesystem=/var\n",
                "/r/s.rule:2: Filesystem= needs MinFreeSpace= or MinFreeInodes=",
            ),
            (
                "[System]\nFilesystem=var\nMinFreeSpace=1G\n",
                "/r/s.rule:2: Filesystem=: \"var\" is not an absolute path",
            ),
            (
                "[System]\nPressure=cpu\nMaxPressure=10%\nPressureAverage=30s\n",
                "/r/s.rule:4: PressureAverage=: \"30s\" is not 10s, 60s or 300s",
            ),
            (
                "[System]\nPressure=disk\nMaxPressure=10%\n",
                "/r/s.rule:2: Pressure=: \"disk\" is not cpu, memory or io",
            ),
            (
                "[System]\nPressure=cpu\nMaxPressure=150%\n",
                "/r/s.rule:3: MaxPressure=: 150% must be above 0% and below 100%",
            ),
            (
                "[System]\nPressure=cpu\nMaxPressure=10\n",
                "/r/s.rule:3: MaxPressure=: \"10\" is not a percentage",
            ),
            (
                "[System]\nTemperatureSensor=/t\nMaxTemperature=900\n",
                "/r/s.rule:3: MaxTemperature=: \"900\" is above 300 °C",
            ),
            (
                "[System]\nTemperatureSensor=no-such-sensor-anywhere\nMaxTemperature=90\n",
                "/r/s.rule:2: TemperatureSensor=: no thermal zone of type \"no-such-sensor-anywhere\"",
            ),
            (
                "[System]\nMaxSwapUsed=1G\nCheckInterval=1min\nFor=30s\n",
                "/r/s.rule:4: For=30s is shorter than CheckInterval=1min",
            ),
            (
                "[System]\nMaxSwapUsed=1G\nColour=red\n",
                "/r/s.rule:3: unknown key Colour= in [System]",
            ),
        ];
        for (text, want) in cases {
            let errors = spec(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "for {text:?} wanted {want:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn decimals_and_sizes() {
        assert_eq!(parse_milli("4"), Ok(4000));
        assert_eq!(parse_milli("0.25"), Ok(250));
        assert_eq!(parse_milli("7.125"), Ok(7125));
        assert!(parse_milli("1.2345").is_err());
        assert!(parse_milli("1.").is_err());
        assert!(parse_milli(".5").is_err());
        assert!(parse_milli("1e3").is_err());
        assert_eq!(parse_size_or_percent("2G"), Ok(Amount::Bytes(2 << 30)));
        assert_eq!(parse_size_or_percent("0.5K"), Ok(Amount::Bytes(512)));
        assert_eq!(parse_size_or_percent("1T"), Ok(Amount::Bytes(1 << 40)));
        assert_eq!(parse_count_or_percent("80%"), Ok(Amount::Percent(80_000)));
        assert!(parse_count_or_percent("0").is_err());
    }
}
