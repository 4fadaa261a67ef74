//! The `[Command]` section of a rule: a check program (`Run=`, an argv
//! parsed and resolved like `Repair=`), how often it runs (`Interval=`,
//! from the end of one run to the start of the next) and how long one run
//! may take (`Timeout=`, at most the interval).

use super::keys::Keys;
use super::types::{CommandSpec, DurationText, Watch};
use super::values::{parse_argv, parse_positive_duration};
use std::time::Duration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn parse_command(keys: &mut Keys) -> Option<Watch> {
    let run = keys.required("Run", parse_argv);
    let interval_line = keys.line_of("Interval");
    let interval = keys.get("Interval", parse_positive_duration);
    let timeout_line = keys.line_of("Timeout");
    let timeout = keys.get("Timeout", parse_positive_duration);
    let interval = interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = match timeout {
        Some(t) => t,
        // Only a shorter interval than the default timeout lowers it.
        None if keys.section.entries.iter().any(|e| e.key == "Timeout") => return None,
        None => DEFAULT_TIMEOUT.min(interval),
    };
    if timeout > interval {
        let line = if keys.section.entries.iter().any(|e| e.key == "Timeout") {
            timeout_line
        } else {
            interval_line
        };
        keys.error(
            line,
            format!(
                "Timeout={} is longer than Interval={}; a run may not outlast the time between runs",
                DurationText(timeout),
                DurationText(interval)
            ),
        );
        return None;
    }
    Some(Watch::Command(Box::new(CommandSpec {
        run: run?,
        interval,
        timeout,
    })))
}

#[cfg(test)]
mod tests {
    use crate::config::{Watch, parse_rule};
    use std::path::Path;
    use std::time::Duration;

    fn rule(text: &str) -> Result<Watch, Vec<String>> {
        parse_rule(Path::new("/r/x.rule"), "x", text)
            .map(|r| r.watch)
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_and_resolution() {
        let Ok(Watch::Command(c)) = rule("[Command]\nRun=true --flag 'a b'\n") else {
            panic!("not a command rule")
        };
        assert!(c.run.program.is_absolute());
        assert_eq!(c.run.args, ["--flag", "a b"]);
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.timeout, Duration::from_secs(10));
        let Ok(Watch::Command(c)) = rule("[Command]\nRun=true\nInterval=2s\n") else {
            panic!("not a command rule")
        };
        assert_eq!(
            c.timeout,
            Duration::from_secs(2),
            "an interval below 10s bounds the default timeout"
        );
    }

    #[test]
    fn errors_name_their_line() {
        let cases: &[(&str, &str)] = &[
            (
                "[Command]\nInterval=1s\n",
                "/r/x.rule:1: [Command] needs Run=",
            ),
            (
                "[Command]\nRun=no-such-program-here\n",
                "/r/x.rule:2: Run=: command \"no-such-program-here\" not found",
            ),
            (
                "[Command]\nRun=true\nInterval=5s\nTimeout=6s\n",
                "/r/x.rule:4: Timeout=6s is longer than Interval=5s",
            ),
            (
                "[Command]\nRun=true\nTimeout=0s\n",
                "/r/x.rule:3: Timeout=: must be longer than zero",
            ),
            (
                "[Command]\nRun=true\nInterval=5\n",
                "/r/x.rule:3: Interval=: \"5\" has no unit",
            ),
            (
                "[Command]\nRun=true\nEvery=5s\n",
                "/r/x.rule:3: unknown key Every= in [Command]",
            ),
            (
                "[Command]\nRun=true\n[Heartbeat]\nFile=/a\nMaxAge=1s\n",
                "/r/x.rule:3: a rule watches one thing",
            ),
        ];
        for (text, want) in cases {
            let errors = rule(text).expect_err(text);
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{text:?}: {errors:?} lacks {want:?}"
            );
        }
    }
}
