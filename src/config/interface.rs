//! The `[Interface]` section: a network interface that must be up and
//! whose receive counter must move within `Within=` (heartwatch.rules(5)).

use super::keys::Keys;
use super::types::{DurationText, InterfaceSpec, Watch};
use super::values::parse_positive_duration;
use std::time::Duration;

/// The kernel's limit: `IFNAMSIZ` (16) with its NUL.
const MAX_NAME: usize = 15;

pub(super) fn parse_interface(keys: &mut Keys) -> Option<Watch> {
    let name = keys.required("Name", parse_name);
    let within = keys.required("Within", parse_positive_duration);
    let interval_line = keys.line_of("CheckInterval");
    let interval = keys.get("CheckInterval", parse_positive_duration);
    let within = within?;
    let check_interval = match interval {
        Some(i) if i > within => {
            keys.error(
                interval_line,
                format!(
                    "CheckInterval={} is longer than Within={}; the rule would be checked too rarely to fire on time",
                    DurationText(i),
                    DurationText(within)
                ),
            );
            return None;
        }
        Some(i) => i,
        None => default_check_interval(within),
    };
    Some(Watch::Interface(InterfaceSpec {
        name: name?,
        within,
        check_interval,
    }))
}

/// A tenth of `Within=`, between one second and one minute, and never
/// longer than `Within=` itself.
fn default_check_interval(within: Duration) -> Duration {
    (within / 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
        .min(within)
}

/// A name the kernel accepts for a network interface (`dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, without `/`, `:` or whitespace.
fn parse_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(format!(
            "{value:?} is not an interface name: it has 1 to {MAX_NAME} bytes"
        ));
    }
    if value == "." || value == ".." {
        return Err(format!("{value:?} is not an interface name"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{value:?} is not an interface name: it may not contain {c:?}"
        ));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_accepts() {
        for good in ["eth0", "lo", "enp0s31f6", "wg-vpn", "a", "123456789012345"] {
            assert_eq!(parse_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "1234567890123456",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "a b",
            "a\u{a0}b",
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    fn rule(text: &str) -> Result<Watch, Vec<String>> {
        super::super::parse_rule(std::path::Path::new("/r/x.rule"), "x", text)
            .map(|r| r.watch)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn interface_rules() {
        assert_eq!(
            rule("[Interface]\nName=eth0\nWithin=5min\n"),
            Ok(Watch::Interface(InterfaceSpec {
                name: "eth0".into(),
                within: Duration::from_secs(300),
                check_interval: Duration::from_secs(30),
            }))
        );
        for (text, want) in [
            (
                "[Interface]\nWithin=5min\n",
                "/r/x.rule:1: [Interface] needs Name=",
            ),
            (
                "[Interface]\nName=eth0\n",
                "/r/x.rule:1: [Interface] needs Within=",
            ),
            (
                "[Interface]\nName=eth0\nWithin=0s\n",
                "/r/x.rule:3: Within=: must be longer than zero",
            ),
            (
                "[Interface]\nName=eth0/1\nWithin=1s\n",
                "/r/x.rule:2: Name=: \"eth0/1\" is not an interface name",
            ),
            (
                "[Interface]\nName=eth0\nWithin=10s\nCheckInterval=11s\n",
                "/r/x.rule:4: CheckInterval=11s is longer than Within=10s",
            ),
            (
                "[Interface]\nName=eth0\nWithin=10s\nMaxAge=1s\n",
                "/r/x.rule:4: unknown key MaxAge= in [Interface]",
            ),
            (
                "[Heartbeat]\nFile=/a\nMaxAge=1s\n[Interface]\nName=lo\nWithin=1s\n",
                "/r/x.rule:4: a rule watches one thing: it has both [Heartbeat] and [Interface]",
            ),
        ] {
            let errors = rule(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "for {text:?} wanted {want:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn the_default_interval_is_a_tenth_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(default_check_interval(s(300)), s(30));
        assert_eq!(default_check_interval(s(3)), s(1));
        assert_eq!(default_check_interval(s(3600)), s(60));
        assert_eq!(
            default_check_interval(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }
}
