//! What `heartwatch check` says of a `[System]` rule: the measure and its
//! threshold in words, and the sources missing on this host (a kernel
//! without pressure stall information), which are errors there.

use super::threshold::Value;
use crate::config::{Amount, Measure, PressureAverage, Rule, SystemSpec, Watch};
use crate::text::DurationText;
use std::path::Path;

fn amount(a: Amount) -> String {
    match a {
        Amount::Bytes(b) => Value::Bytes(b).to_string(),
        Amount::Count(n) => n.to_string(),
        Amount::Percent(p) => format!("{} of the total", Value::Percent(p)),
    }
}

/// The rule in words: what is read, the threshold, `For=`, how often.
pub fn explain(spec: &SystemSpec) -> String {
    let what = match &spec.measure {
        Measure::Load {
            window,
            max_milli,
            per_cpu,
        } => format!(
            "if the {} load average{} is above {}",
            window.word(),
            if *per_cpu {
                " divided by the online CPUs"
            } else {
                ""
            },
            Value::Load(*max_milli)
        ),
        Measure::MemoryAvailable { min } => format!(
            "if available memory (MemAvailable) is below {}",
            amount(*min)
        ),
        Measure::SwapUsed { max } => format!("if swap in use is above {}", amount(*max)),
        Measure::FileHandles { max } => format!(
            "if the open file handles (/proc/sys/fs/file-nr) are above {}",
            match max {
                Amount::Percent(p) => format!("{} of file-max", Value::Percent(*p)),
                other => amount(*other),
            }
        ),
        Measure::Filesystem { mount, limits } => {
            let mut parts = Vec::new();
            if let Some(space) = limits.space {
                parts.push(format!("free space is below {}", amount(space)));
            }
            if let Some(inodes) = limits.inodes {
                parts.push(format!("free inodes are below {}", amount(inodes)));
            }
            format!(
                "if on the filesystem of {} {} (statvfs, for unprivileged users)",
                mount.display(),
                parts.join(" or ")
            )
        }
        Measure::Temperature {
            sensor,
            named,
            max_milli,
        } => format!(
            "if {} is above {}",
            match named {
                Some(name) => format!("sensor {name:?} ({}, resolved at load)", sensor.display()),
                None => format!("the temperature in {}", sensor.display()),
            },
            Value::Celsius(*max_milli)
        ),
        Measure::Pressure {
            resource,
            line,
            average,
            max_milli,
        } => format!(
            "if the {} pressure stall ({} tasks, {} average) is above {}",
            resource.word(),
            line.word(),
            match average {
                PressureAverage::Ten => "10s",
                PressureAverage::Sixty => "60s",
                PressureAverage::ThreeHundred => "300s",
            },
            Value::Percent(*max_milli)
        ),
    };
    let hold = if spec.hold.is_zero() {
        "at one reading".to_string()
    } else {
        format!(
            "at every reading for {0}, recovering after {0} within it",
            DurationText(spec.hold)
        )
    };
    format!(
        "{what} {hold} (read every {})",
        DurationText(spec.check_interval)
    )
}

/// The errors of system rules this host cannot serve: pressure stall
/// information that the kernel does not provide, looked for under `proc`
/// (`/proc` but in tests). At run time the same is a cause of the rule.
pub fn missing_sources(rules: &[Rule], proc: &Path) -> Vec<String> {
    rules
        .iter()
        .filter_map(|rule| {
            let Watch::System(spec) = &rule.watch else {
                return None;
            };
            let SystemSpec {
                measure: Measure::Pressure { resource, .. },
                ..
            } = &**spec
            else {
                return None;
            };
            let file = proc.join("pressure").join(resource.word());
            // Read, not only opened: a kernel may list the file and refuse
            // to read it.
            match std::fs::read(&file) {
                Ok(_) => None,
                Err(e) => Some(format!(
                    "{}: Pressure={}: pressure stall information missing: {}: {e} (a kernel without PSI, or booted with psi=0; CONFIG_PSI=y and psi=1 on the kernel command line provide it)",
                    rule.source.display(),
                    resource.word(),
                    file.display()
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_rule;

    fn rule(text: &str) -> Rule {
        parse_rule(Path::new("/r/p.rule"), "p", text).unwrap()
    }

    #[test]
    fn each_measure_in_words() {
        let say = |text: &str| match rule(text).watch {
            Watch::System(s) => explain(&s),
            _ => unreachable!(),
        };
        assert_eq!(
            say("[System]\nLoadAverage=1min\nMaxLoad=4\n"),
            "if the 1min load average is above 4 at every reading for 1min, recovering after 1min within it (read every 10s)"
        );
        assert_eq!(
            say("[System]\nMinMemoryAvailable=10%\nFor=0s\n"),
            "if available memory (MemAvailable) is below 10% of the total at one reading (read every 10s)"
        );
        assert!(
            say("[System]\nFilesystem=/var\nMinFreeSpace=1G\nMinFreeInodes=1000\n")
                .starts_with("if on the filesystem of /var free space is below 1 GiB or free inodes are below 1000")
        );
        assert!(
            say("[System]\nPressure=io\nPressureLine=full\nMaxPressure=20%\n")
                .starts_with("if the io pressure stall (full tasks, 60s average) is above 20%")
        );
    }

    #[test]
    fn missing_psi_is_an_error() {
        let dir = std::env::temp_dir().join(format!("heartwatch-psi-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pressure")).unwrap();
        std::fs::write(dir.join("pressure/cpu"), "").unwrap();
        let rules = [
            rule("[System]\nPressure=cpu\nMaxPressure=10%\n"),
            rule("[System]\nPressure=io\nMaxPressure=10%\n"),
            rule("[System]\nMaxSwapUsed=1G\n"),
        ];
        let errors = missing_sources(&rules, &dir);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("/r/p.rule: Pressure=io: pressure stall information missing"),
            "{errors:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
