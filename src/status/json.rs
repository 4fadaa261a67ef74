//! `heartwatch status --json`: the status as one JSON document whose shape
//! is `docs/status.schema.json` (its `schema` field names the version,
//! `heartwatch-status/1`). Written by hand: the document is small and
//! flat, and the one subtle part, escaping strings, is a dozen lines here
//! (a serde dependency would be larger than this file).
//!
//! Strings are the status's own, which are UTF-8: a path or name that was
//! not valid UTF-8 reached the status with each bad byte as U+FFFD, as in
//! the text status. `"`, `\` and every control character are escaped.

use super::{Feeding, LastRepair, RuleStatus, Status};
use crate::device::Flags;
use crate::history::Entry;
use crate::reboot::Reason;
use crate::text::Rfc3339;
use std::fmt::Write as _;
use std::time::Duration;

/// The document's version. A field added keeps it; a field removed,
/// renamed or given another meaning changes it.
pub const SCHEMA: &str = "heartwatch-status/1";

/// What `heartwatch status` judged of the daemon that wrote the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonState {
    /// It runs (or is assumed to: see the detail).
    Running,
    /// It runs, and a reboot it decided is under way.
    Rebooting,
    /// It ended with an orderly stop.
    Stopped,
    /// It exited without an orderly stop, or ran before this boot.
    Gone,
}

impl DaemonState {
    pub fn word(self) -> &'static str {
        match self {
            DaemonState::Running => "running",
            DaemonState::Rebooting => "rebooting",
            DaemonState::Stopped => "stopped",
            DaemonState::Gone => "gone",
        }
    }
}

impl Status {
    /// The whole status as JSON, `state` and its `detail` being what the
    /// reader judged of its writer.
    pub fn write_json(&self, state: DaemonState, detail: Option<&str>, out: &mut String) {
        let mut j = Json(out);
        j.raw("{\n  \"schema\": ");
        j.string(SCHEMA);
        j.raw(",\n  \"available\": true,\n  \"daemon\": {\"version\": ");
        j.string(&self.version);
        j.raw(", \"pid\": ");
        j.num(self.identity.pid);
        j.raw(", \"start_time\": ");
        j.opt_num(self.identity.start_time);
        j.raw(", \"boot_id\": ");
        j.opt_string(self.identity.boot_id.as_deref());
        j.raw(", \"state\": ");
        j.string(state.word());
        j.raw(", \"state_detail\": ");
        j.opt_string(detail);
        j.raw(", \"started\": ");
        j.time(self.started);
        j.raw(", \"updated\": ");
        j.time(self.updated);
        j.raw(", \"stopped\": ");
        match self.stopped {
            Some(at) => j.time(at),
            None => j.raw("null"),
        }
        j.raw(", \"dry_run\": ");
        j.raw(if self.dry_run { "true" } else { "false" });
        j.raw(", \"config_root\": ");
        j.string(&self.root);
        j.raw("},\n  \"boot_status\": ");
        j.opt_string(Some(self.boot_status.as_str()).filter(|s| !s.is_empty()));
        j.raw(",\n  \"devices\": [");
        for (i, d) in self.devices.iter().enumerate() {
            j.raw(if i == 0 { "\n    " } else { ",\n    " });
            j.raw("{\"path\": ");
            j.string(&d.path);
            j.raw(", \"identity\": ");
            j.string(&d.identity);
            j.raw(", \"timeout_seconds\": ");
            j.seconds(d.timeout);
            j.raw(", \"feed_interval_seconds\": ");
            j.seconds(d.feed_interval);
            j.raw(", \"feeding\": ");
            j.string(match d.feeding {
                Feeding::Fed => "fed",
                Feeding::Fails => "fails",
                Feeding::Stopped => "stopped",
            });
            j.raw(", \"boot_status\": ");
            match d.boot_status {
                None => j.raw("null"),
                Some(bits) => {
                    j.raw("{\"bits\": ");
                    j.num(bits);
                    j.raw(", \"flags\": [");
                    let names = Flags(bits).to_string();
                    for (k, name) in names.split(',').filter(|n| *n != "none").enumerate() {
                        if k > 0 {
                            j.raw(", ");
                        }
                        j.string(name);
                    }
                    j.raw("], \"watchdog_reset\": ");
                    let reset = bits & crate::device::WDIOF_CARDRESET != 0;
                    j.raw(if reset { "true" } else { "false" });
                    j.raw("}");
                }
            }
            j.raw("}");
        }
        j.raw(if self.devices.is_empty() {
            "]"
        } else {
            "\n  ]"
        });
        j.raw(",\n  \"budget\": {\"used\": ");
        j.num(self.budget.used);
        j.raw(", \"budget\": ");
        j.num(self.budget.of);
        j.raw(", \"healthy_uptime_seconds\": ");
        j.seconds(self.budget.healthy_uptime);
        j.raw(", \"healthy_since\": ");
        match self.budget.healthy_since {
            Some(at) => j.time(at),
            None => j.raw("null"),
        }
        j.raw("},\n  \"last_reboot\": ");
        j.reason(self.last_reboot.as_ref());
        j.raw(",\n  \"rebooting\": ");
        j.reason(self.rebooting.as_ref());
        j.raw(",\n  \"suppressed\": ");
        j.opt_string(self.suppressed.as_deref());
        j.raw(",\n  \"rules\": [");
        for (i, r) in self.rules.iter().enumerate() {
            j.raw(if i == 0 { "\n    " } else { ",\n    " });
            j.rule(r);
        }
        j.raw(if self.rules.is_empty() { "]" } else { "\n  ]" });
        j.raw(",\n  \"history\": [");
        for (i, e) in self.history.iter().rev().enumerate() {
            j.raw(if i == 0 { "\n    " } else { ",\n    " });
            j.entry(e);
        }
        j.raw(if self.history.is_empty() {
            "]"
        } else {
            "\n  ]"
        });
        j.raw("\n}\n");
    }
}

/// The document `status --json` prints when there is no status to show
/// (no daemon has written one, or it cannot be read): `why` says so.
pub fn write_unavailable(why: &str, out: &mut String) {
    let mut j = Json(out);
    j.raw("{\"schema\": ");
    j.string(SCHEMA);
    j.raw(", \"available\": false, \"error\": ");
    j.string(why);
    j.raw("}\n");
}

/// Writes JSON into a caller's string.
struct Json<'a>(&'a mut String);

impl Json<'_> {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn num(&mut self, n: impl std::fmt::Display) {
        let _ = write!(self.0, "{n}");
    }

    fn opt_num(&mut self, n: Option<impl std::fmt::Display>) {
        match n {
            Some(n) => self.num(n),
            None => self.raw("null"),
        }
    }

    /// A duration as a number of seconds, exact to the nanosecond.
    fn seconds(&mut self, d: Duration) {
        let _ = write!(self.0, "{}", d.as_secs());
        let nanos = d.subsec_nanos();
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            self.0.push('.');
            self.0.push_str(frac.trim_end_matches('0'));
        }
    }

    /// A wall-clock time both ways: RFC 3339 (UTC) and epoch seconds.
    fn time(&mut self, at: i64) {
        let _ = write!(
            self.0,
            "{{\"rfc3339\": \"{}\", \"epoch\": {at}}}",
            Rfc3339(at)
        );
    }

    fn string(&mut self, s: &str) {
        self.0.push('"');
        for c in s.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                // The other C0 controls, DEL, and the two line separators
                // some JavaScript parsers take for line ends.
                c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
    }

    fn opt_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw("null"),
        }
    }

    fn reason(&mut self, r: Option<&Reason>) {
        let Some(r) = r else {
            return self.raw("null");
        };
        self.raw("{\"rule\": ");
        self.string(&r.rule);
        self.raw(", \"cause\": ");
        self.string(&r.cause);
        self.raw(", \"step\": ");
        self.string(&r.step);
        self.raw(", \"at\": ");
        self.time(r.wall);
        self.raw(", \"uptime_seconds\": ");
        self.seconds(r.uptime);
        self.raw(", \"boot_id\": ");
        self.string(&r.boot_id);
        self.raw("}");
    }

    fn rule(&mut self, r: &RuleStatus) {
        self.raw("{\"name\": ");
        self.string(&r.name);
        self.raw(", \"kind\": ");
        self.string(r.kind.word());
        self.raw(", \"state\": ");
        self.string(r.health.word());
        self.raw(", \"since\": ");
        self.time(r.since);
        self.raw(", \"cause\": ");
        self.opt_string(Some(r.cause.as_str()).filter(|c| !c.is_empty()));
        self.raw(", \"ladder\": {\"step\": ");
        self.string(r.step.word());
        self.raw(", \"text\": ");
        self.opt_string(Some(r.ladder.as_str()).filter(|l| !l.is_empty()));
        self.raw(", \"repair_attempts\": ");
        self.num(r.repair_attempts);
        self.raw("}, \"last_repair\": ");
        match r.last_repair.as_deref() {
            None => self.raw("null"),
            Some(LastRepair { text, end, at }) => {
                self.raw("{\"outcome\": ");
                self.string(end.word());
                self.raw(", \"text\": ");
                self.string(text);
                self.raw(", \"at\": ");
                self.time(*at);
                self.raw("}");
            }
        }
        self.raw("}");
    }

    fn entry(&mut self, e: &Entry) {
        self.raw("{\"kind\": ");
        self.string(e.kind.word());
        self.raw(", \"at\": ");
        self.time(e.wall);
        self.raw(", \"boot_id\": ");
        self.string(&e.boot_id);
        let blank = |s: &str| !s.is_empty();
        self.raw(", \"rule\": ");
        self.opt_string(Some(e.rule.as_str()).filter(|s| blank(s)));
        self.raw(", \"cause\": ");
        self.string(&e.cause);
        self.raw(", \"step\": ");
        self.opt_string(Some(e.step.as_str()).filter(|s| blank(s)));
        self.raw("}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::full;

    fn json_string(s: &str) -> String {
        let mut out = String::new();
        Json(&mut out).string(s);
        out
    }

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(json_string("plain é ✓"), "\"plain é ✓\"");
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            json_string("\n\r\t\u{0}\u{1b}\u{7f}\u{2028}"),
            r#""\n\r\t\u0000\u001b\u007f\u2028""#
        );
        // What was not UTF-8 reached the status as U+FFFD.
        let lossy = String::from_utf8_lossy(b"/etc/hw-\xff\xfe");
        assert_eq!(json_string(&lossy), "\"/etc/hw-\u{fffd}\u{fffd}\"");
    }

    #[test]
    fn durations_are_exact_seconds() {
        let mut out = String::new();
        let mut j = Json(&mut out);
        j.seconds(Duration::from_millis(2500));
        j.raw(" ");
        j.seconds(Duration::from_secs(30));
        j.raw(" ");
        j.seconds(Duration::new(1, 5));
        assert_eq!(out, "2.5 30 1.000000005");
    }

    #[test]
    fn the_document_has_every_part() {
        let mut out = String::new();
        let mut status = full();
        status.rules[0].name = "quo\"te\\".into();
        status.write_json(DaemonState::Running, None, &mut out);
        for needle in [
            "\"schema\": \"heartwatch-status/1\"",
            "\"state\": \"running\", \"state_detail\": null",
            "\"started\": {\"rfc3339\": \"2026-11-18T11:06:40Z\", \"epoch\": 1795000000}",
            "\"flags\": [\"cardreset\"], \"watchdog_reset\": true",
            "\"boot_status\": null}",
            "\"timeout_seconds\": 30, \"feed_interval_seconds\": 2.5",
            "\"name\": \"quo\\\"te\\\\\", \"kind\": \"heartbeat\"",
            "\"kind\": \"process\", \"state\": \"failing\"",
            "\"step\": \"waiting\", \"text\": \"waiting after repair attempt 1\", \"repair_attempts\": 1",
            "\"outcome\": \"succeeded\"",
            "\"healthy_since\": {\"rfc3339\"",
            "\"history\": [\n    {\"kind\": \"suppressed\"",
            "{\"kind\": \"watchdog-reset\", \"at\": {\"rfc3339\": \"2026-11-18T08:21:40Z\", \"epoch\": 1794990100}, \"boot_id\": \"0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11\", \"rule\": null",
        ] {
            assert!(out.contains(needle), "no {needle:?} in\n{out}");
        }
        let mut none = String::new();
        write_unavailable("no \"status\"", &mut none);
        assert_eq!(
            none,
            "{\"schema\": \"heartwatch-status/1\", \"available\": false, \"error\": \"no \\\"status\\\"\"}\n"
        );
    }
}
