//! Prometheus metrics for the node exporter's textfile collector
//! (`[Metrics] TextfileDirectory=`): the status as `heartwatch.prom`, in
//! the text exposition format, rewritten atomically (a temporary file
//! renamed over it, so the exporter never reads half a file) whenever the
//! status is published and at least every [`REWRITE_EVERY`], so that the
//! time gauges stay true. Rendered into a buffer reserved when the rules
//! are installed: a turn that rewrites it allocates nothing.
//!
//! Counters (`_total`) count from the daemon's start: a restart resets
//! them, which Prometheus's `rate` and `increase` take in their stride.

use crate::atomic::Writer;
use crate::device::Devices;
use crate::status::{Feeding, RepairTally, RuleHealth, Status};
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The file's name in the textfile directory.
pub const FILE_NAME: &str = "heartwatch.prom";

/// How often the file is rewritten when nothing changed: the last-feed
/// time is then at most this (plus a feed interval) behind.
pub const REWRITE_EVERY: Duration = Duration::from_secs(15);

/// What the metrics say of a device, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMetric {
    pub path: String,
    /// Whether the driver says the last reset was its own (WDIOF_CARDRESET);
    /// `None` when it does not say.
    pub last_boot_reset: Option<bool>,
}

/// The metrics file and what it is rendered from besides the status.
pub struct Metrics {
    /// Rendered into straight (`Writer::offer_with`).
    writer: Writer,
    devices: Vec<DeviceMetric>,
    /// Wall-clock seconds of the last feed every device took.
    last_fed: Option<i64>,
    next: Instant,
}

impl Metrics {
    /// Starts the file's writer in `dir` (not heartwatch's directory: see
    /// [`Writer::start_foreign`]).
    pub fn start(dir: &Path, devices: &Devices, now: Instant) -> std::io::Result<Metrics> {
        let devices = devices
            .iter()
            .map(|d| DeviceMetric {
                path: d.path().display().to_string(),
                last_boot_reset: d.last_reset_was_watchdog(),
            })
            .collect();
        Ok(Metrics {
            writer: Writer::start_foreign(dir, FILE_NAME)?,
            devices,
            last_fed: None,
            next: now,
        })
    }

    /// Room for the metrics of `rules` rules whose longest name is
    /// `longest_name` bytes, so that rendering and writing never allocate.
    pub fn reserve(&mut self, rules: usize, longest_name: usize) {
        let capacity = capacity(rules, longest_name, &self.devices);
        self.writer.reserve(capacity);
    }

    /// Every device took a keepalive at `wall`.
    pub fn fed(&mut self, wall: i64) {
        self.last_fed = Some(wall);
    }

    /// When the file is next to be rewritten even if nothing changed.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Renders `status` and hands it to the writer (which logs a failure).
    pub fn publish(&mut self, status: &Status, now: Instant) {
        let (devices, last_fed) = (&self.devices, self.last_fed);
        self.writer
            .offer_with(|out| render(out, status, devices, last_fed));
        self.next = now + REWRITE_EVERY;
    }

    /// Waits at most `bound` for the last content to be written.
    pub fn flush(&self, bound: Duration) -> bool {
        self.writer.flush(bound)
    }
}

/// A buffer size that holds the metrics of `rules` rules.
fn capacity(rules: usize, longest_name: usize, devices: &[DeviceMetric]) -> usize {
    // Each rule has 3 state lines, its since, its failures and a line per
    // repair outcome, each under 100 bytes besides its labels; a label
    // value escaped is at most twice as long.
    let per_rule = (5 + RepairTally::ALL.len()) * (100 + 2 * longest_name);
    let per_device: usize = devices.iter().map(|d| 2 * (100 + 2 * d.path.len())).sum();
    8192 + rules * per_rule + per_device
}

/// A label value escaped as the exposition format wants: backslash,
/// double quote and line feed.
struct Label<'a>(&'a str);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// The metrics of `status` in the text exposition format (version 0.0.4),
/// labels in the order the node exporter serves them (by name), so that a
/// line of the file is a line of the scrape.
/// Within `out`'s capacity, allocates nothing.
pub fn render(out: &mut Vec<u8>, status: &Status, devices: &[DeviceMetric], last_fed: Option<i64>) {
    // Writing into a Vec cannot fail.
    let _ = render_into(out, status, devices, last_fed);
}

fn header(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) -> std::io::Result<()> {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

fn render_into(
    out: &mut Vec<u8>,
    status: &Status,
    devices: &[DeviceMetric],
    last_fed: Option<i64>,
) -> std::io::Result<()> {
    let flag = |b: bool| u8::from(b);
    header(
        out,
        "heartwatch_build_info",
        "gauge",
        "The version of heartwatch running; always 1.",
    )?;
    writeln!(
        out,
        "heartwatch_build_info{{version=\"{}\"}} 1",
        Label(&status.version)
    )?;
    header(
        out,
        "heartwatch_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the epoch.",
    )?;
    writeln!(out, "heartwatch_start_time_seconds {}", status.started)?;
    header(
        out,
        "heartwatch_dry_run",
        "gauge",
        "1 in dry run: repairs and reboots are logged, not taken.",
    )?;
    writeln!(out, "heartwatch_dry_run {}", flag(status.dry_run))?;
    header(
        out,
        "heartwatch_rules",
        "gauge",
        "How many rules are loaded.",
    )?;
    writeln!(out, "heartwatch_rules {}", status.rules.len())?;

    header(
        out,
        "heartwatch_rule_state",
        "gauge",
        "1 for the state the rule is in (starting, healthy, failing), 0 for the others.",
    )?;
    for r in &status.rules {
        for state in [
            RuleHealth::Starting,
            RuleHealth::Healthy,
            RuleHealth::Failing,
        ] {
            writeln!(
                out,
                "heartwatch_rule_state{{kind=\"{}\",rule=\"{}\",state=\"{}\"}} {}",
                r.kind,
                Label(&r.name),
                state.word(),
                flag(r.health == state)
            )?;
        }
    }
    header(
        out,
        "heartwatch_rule_state_since_timestamp_seconds",
        "gauge",
        "When the rule's state last changed, in seconds since the epoch.",
    )?;
    for r in &status.rules {
        writeln!(
            out,
            "heartwatch_rule_state_since_timestamp_seconds{{kind=\"{}\",rule=\"{}\"}} {}",
            r.kind,
            Label(&r.name),
            r.since
        )?;
    }
    header(
        out,
        "heartwatch_rule_failures_total",
        "counter",
        "Times the rule began failing since the daemon started.",
    )?;
    for r in &status.rules {
        writeln!(
            out,
            "heartwatch_rule_failures_total{{kind=\"{}\",rule=\"{}\"}} {}",
            r.kind,
            Label(&r.name),
            r.counts.failures
        )?;
    }
    header(
        out,
        "heartwatch_rule_repairs_total",
        "counter",
        "Repair commands of the rule that ended since the daemon started, by outcome.",
    )?;
    for r in &status.rules {
        for end in RepairTally::ALL {
            writeln!(
                out,
                "heartwatch_rule_repairs_total{{kind=\"{}\",outcome=\"{}\",rule=\"{}\"}} {}",
                r.kind,
                end.word(),
                Label(&r.name),
                r.counts.repairs[end as usize]
            )?;
        }
    }
    header(
        out,
        "heartwatch_rule_health_changes_total",
        "counter",
        "Changes of any rule's state since the daemon started.",
    )?;
    writeln!(
        out,
        "heartwatch_rule_health_changes_total {}",
        status.counts.health_changes
    )?;

    header(
        out,
        "heartwatch_reboots_decided_total",
        "counter",
        "Reboots decided since the daemon started.",
    )?;
    writeln!(
        out,
        "heartwatch_reboots_decided_total {}",
        status.counts.reboots_decided
    )?;
    header(
        out,
        "heartwatch_reboots_suppressed_total",
        "counter",
        "Reboots a ladder reached but not taken (past the budget, or in dry run) since the daemon started.",
    )?;
    writeln!(
        out,
        "heartwatch_reboots_suppressed_total {}",
        status.counts.reboots_suppressed
    )?;
    header(
        out,
        "heartwatch_reboot_suppressed",
        "gauge",
        "1 while the last reboot a ladder reached was not taken, until a healthy period starts the count again.",
    )?;
    writeln!(
        out,
        "heartwatch_reboot_suppressed {}",
        flag(status.suppressed.is_some())
    )?;
    header(
        out,
        "heartwatch_reboot_in_progress",
        "gauge",
        "1 while a reboot is under way.",
    )?;
    writeln!(
        out,
        "heartwatch_reboot_in_progress {}",
        flag(status.rebooting.is_some())
    )?;
    header(
        out,
        "heartwatch_reboot_budget_used",
        "gauge",
        "Reboots decided without a healthy period since (kept across reboots).",
    )?;
    writeln!(out, "heartwatch_reboot_budget_used {}", status.budget.used)?;
    header(
        out,
        "heartwatch_reboot_budget",
        "gauge",
        "Reboots allowed without a healthy period ([Reboot] Budget=).",
    )?;
    writeln!(out, "heartwatch_reboot_budget {}", status.budget.of)?;

    header(
        out,
        "heartwatch_watchdog_timeout_seconds",
        "gauge",
        "The timeout the watchdog driver set.",
    )?;
    for d in &status.devices {
        writeln!(
            out,
            "heartwatch_watchdog_timeout_seconds{{device=\"{}\"}} {}",
            Label(&d.path),
            d.timeout.as_secs_f64()
        )?;
    }
    header(
        out,
        "heartwatch_watchdog_feeding",
        "gauge",
        "1 while the device takes its keepalives; 0 when they fail or were stopped for a reboot.",
    )?;
    for d in &status.devices {
        writeln!(
            out,
            "heartwatch_watchdog_feeding{{device=\"{}\"}} {}",
            Label(&d.path),
            flag(d.feeding == Feeding::Fed)
        )?;
    }
    header(
        out,
        "heartwatch_watchdog_last_boot_reset",
        "gauge",
        "1 when the driver says the last reset of the host was the watchdog's.",
    )?;
    for d in devices {
        if let Some(reset) = d.last_boot_reset {
            writeln!(
                out,
                "heartwatch_watchdog_last_boot_reset{{device=\"{}\"}} {}",
                Label(&d.path),
                flag(reset)
            )?;
        }
    }
    header(
        out,
        "heartwatch_last_feed_timestamp_seconds",
        "gauge",
        "When every watchdog device last took a keepalive, in seconds since the epoch.",
    )?;
    if let Some(at) = last_fed {
        writeln!(out, "heartwatch_last_feed_timestamp_seconds {at}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Budget, Counts, DeviceStatus, RuleCounts, RuleKind, RuleStatus};

    /// The status the README's excerpt is rendered from.
    fn example() -> (Status, Vec<DeviceMetric>) {
        let mut repairs = [0; RepairTally::ALL.len()];
        repairs[RepairTally::Succeeded as usize] = 2;
        repairs[RepairTally::Failed as usize] = 1;
        let status = Status {
            version: "1.0.0".into(),
            started: 1_795_000_000,
            devices: vec![DeviceStatus {
                path: "/dev/watchdog0".into(),
                timeout: Duration::from_secs(30),
                ..DeviceStatus::default()
            }],
            budget: Budget {
                used: 1,
                of: 3,
                healthy_uptime: Duration::from_secs(3600),
                healthy_since: None,
            },
            rules: vec![
                RuleStatus {
                    name: "backup".into(),
                    kind: RuleKind::Heartbeat,
                    health: RuleHealth::Failing,
                    since: 1_795_000_600,
                    counts: RuleCounts {
                        failures: 3,
                        repairs,
                    },
                    ..RuleStatus::default()
                },
                RuleStatus {
                    name: "sshd".into(),
                    kind: RuleKind::Process,
                    health: RuleHealth::Healthy,
                    since: 1_795_000_060,
                    ..RuleStatus::default()
                },
            ],
            counts: Counts {
                reboots_decided: 0,
                reboots_suppressed: 0,
                health_changes: 5,
            },
            ..Status::default()
        };
        let devices = vec![DeviceMetric {
            path: "/dev/watchdog0".into(),
            last_boot_reset: Some(false),
        }];
        (status, devices)
    }

    #[test]
    fn the_example_is_what_is_rendered() {
        let (status, devices) = example();
        let mut out = Vec::new();
        render(&mut out, &status, &devices, Some(1_795_000_900));
        let want = include_str!("../tests/metrics/example.prom");
        let got = String::from_utf8(out).unwrap();
        assert!(
            got == want,
            "tests/metrics/example.prom differs from what is rendered; rendered:\n{got}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Label("plain-name@x:1").to_string(), "plain-name@x:1");
        assert_eq!(Label("a\\b\"c\nd\\").to_string(), "a\\\\b\\\"c\\nd\\\\");
        let (mut status, mut devices) = example();
        status.devices[0].path = "/dev/odd\"\\\nname".into();
        devices[0].path = status.devices[0].path.clone();
        let mut out = Vec::new();
        render(&mut out, &status, &devices, None);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "heartwatch_watchdog_timeout_seconds{device=\"/dev/odd\\\"\\\\\\nname\"} 30\n"
            ),
            "{text}"
        );
        assert!(!text.contains("\nheartwatch_last_feed_timestamp_seconds "));
    }

    #[test]
    fn the_reserved_capacity_holds_the_longest_names() {
        let (mut status, devices) = example();
        let name = "x".repeat(64);
        status.rules = vec![
            RuleStatus {
                name: name.clone(),
                kind: RuleKind::Interface,
                counts: RuleCounts {
                    failures: u32::MAX,
                    repairs: [u32::MAX; RepairTally::ALL.len()],
                },
                since: i64::MIN,
                ..RuleStatus::default()
            };
            50
        ];
        let capacity = capacity(50, name.len(), &devices);
        let mut out = Vec::with_capacity(capacity);
        render(&mut out, &status, &devices, Some(i64::MAX));
        assert_eq!(out.capacity(), capacity, "the buffer grew");
    }
}
