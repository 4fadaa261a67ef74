//! The status as a record for programs: what the daemon writes to the
//! runtime directory's `status` file and `heartwatch status` reads.
//!
//! The first line is `heartwatch-status 2` (the format's version), then one
//! `key value` line per field, one `device` line per watchdog device and
//! one `rule` line per rule, with tab-separated fields, and a last line
//! `end`, so a record cut short is known. In values, `\`, tab, newline and
//! the other control characters are escaped (`\\`, `\t`, `\n`, `\r`,
//! `\xHH`). Durations are in nanoseconds, times in seconds since the epoch.
//! An optional field is a line left out (a key line) or an empty field (in
//! a tab-separated line). Any change to the format changes its version.
//! Format 2 added each rule's kind, ladder step and repair attempts, each
//! repair's ending, each device's boot status, the budget's healthy-since
//! and the reboot history (`history` lines, oldest first).

use super::{
    Agent, Answer, Budget, DeviceStatus, Feeding, LadderStep, LastRepair, RepairEnd, RuleHealth,
    RuleKind, RuleStatus, Status,
};
use crate::history::Entry;
use crate::reboot::Reason;
use std::fmt;
use std::time::Duration;

/// The version of the record's format, its first line's second word.
pub const FORMAT: u32 = 2;
/// The record's first word.
const MAGIC: &str = "heartwatch-status";

impl Status {
    /// The record for programs: what the daemon writes to its status file.
    /// Writes within `out`'s capacity allocate nothing.
    pub fn write_record(&self, out: &mut Vec<u8>) {
        let mut w = Record(out);
        w.key(MAGIC);
        w.num(FORMAT);
        w.key("\nversion");
        w.text(&self.version);
        w.key("\npid");
        w.num(self.identity.pid);
        if let Some(start) = self.identity.start_time {
            w.key("\nstart-time");
            w.num(start);
        }
        if let Some(boot) = &self.identity.boot_id {
            w.key("\nboot-id");
            w.text(boot);
        }
        w.key("\nstarted");
        w.num(self.started);
        w.key("\nupdated");
        w.num(self.updated);
        if let Some(stopped) = self.stopped {
            w.key("\nstopped");
            w.num(stopped);
        }
        w.key("\nroot");
        w.text(&self.root);
        w.key("\ndry-run");
        w.raw(if self.dry_run { "yes" } else { "no" });
        for d in &self.devices {
            w.key("\ndevice");
            w.text(&d.path);
            w.tab();
            w.text(&d.identity);
            w.tab();
            w.num(d.timeout.as_nanos());
            w.tab();
            w.num(d.feed_interval.as_nanos());
            w.tab();
            w.raw(match d.feeding {
                Feeding::Fed => "fed",
                Feeding::Fails => "fails",
                Feeding::Stopped => "stopped",
            });
            w.tab();
            if let Some(flags) = d.boot_status {
                w.num(flags);
            }
        }
        if !self.boot_status.is_empty() {
            w.key("\nboot-status");
            w.text(&self.boot_status);
        }
        if let Some(r) = &self.last_reboot {
            w.key("\nlast-reboot");
            w.reason(r);
        }
        w.key("\nbudget");
        w.num(self.budget.used);
        w.tab();
        w.num(self.budget.of);
        w.tab();
        w.num(self.budget.healthy_uptime.as_nanos());
        w.tab();
        if let Some(since) = self.budget.healthy_since {
            w.num(since);
        }
        if let Some(r) = &self.rebooting {
            w.key("\nrebooting");
            w.reason(r);
        }
        if let Some(text) = &self.suppressed {
            w.key("\nsuppressed");
            w.text(text);
        }
        if let Some(agent) = &self.agent {
            w.key("\nagent");
            w.raw(agent.answer.word());
            w.tab();
            w.text(&agent.reason);
        }
        for r in &self.rules {
            w.key("\nrule");
            w.text(&r.name);
            w.tab();
            w.raw(r.kind.word());
            w.tab();
            w.raw(r.health.word());
            w.tab();
            w.int(r.since);
            w.tab();
            w.text(&r.cause);
            w.tab();
            w.raw(r.step.word());
            w.tab();
            w.text(&r.ladder);
            w.tab();
            w.int(i64::from(r.repair_attempts));
            w.tab();
            if let Some(repair) = &r.last_repair {
                w.text(&repair.text);
                w.tab();
                w.raw(repair.end.word());
                w.tab();
                w.num(repair.at);
            } else {
                w.tab();
                w.tab();
            }
        }
        for e in &self.history {
            w.key("\nhistory");
            e.write_fields(w.0);
        }
        w.raw("\nend\n");
    }
}

/// Text with `\\`, tab, newline and every other control character
/// escaped, so that it stays within its field.
pub fn escape(out: &mut Vec<u8>, s: &str) {
    // Most text (rule names, ladders) has nothing to escape: copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..0x20 | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            }
            _ => out.push(b),
        }
    }
}

/// Writes the record's lines into a caller's buffer.
struct Record<'a>(&'a mut Vec<u8>);

impl Record<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A key and the space after it.
    fn key(&mut self, key: &str) {
        self.raw(key);
        self.0.push(b' ');
    }

    fn tab(&mut self) {
        self.0.push(b'\t');
    }

    fn num(&mut self, n: impl fmt::Display) {
        use std::io::Write as _;
        let _ = write!(self.0, "{n}");
    }

    /// [`num`](Self::num) without the formatting machinery, for the
    /// numbers of every rule's line (at 10 000 rules `write!` was a third
    /// of the first record's instructions).
    fn int(&mut self, n: i64) {
        if n < 0 {
            self.0.push(b'-');
        }
        let mut digits = [0u8; 20];
        self.0
            .extend_from_slice(crate::sys::decimal(n.unsigned_abs(), &mut digits));
    }

    fn text(&mut self, s: &str) {
        escape(self.0, s);
    }

    fn reason(&mut self, r: &Reason) {
        self.text(&r.rule);
        self.tab();
        self.text(&r.cause);
        self.tab();
        self.text(&r.step);
        self.tab();
        self.num(r.uptime.as_nanos());
        self.tab();
        self.num(r.wall);
        self.tab();
        self.text(&r.boot_id);
    }
}

/// The largest status file `heartwatch status` reads (about 30 000 rules).
pub const MAX_RECORD: usize = 16 << 20;

/// Reads a record that [`Status::write_record`] wrote. What is not such a
/// record (cut short, another format, damaged) is an error that says so.
pub fn parse(bytes: &[u8]) -> Result<Status, String> {
    if bytes.is_empty() {
        return Err("is empty, not a status record".into());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "is not text (not valid UTF-8), not a status record".to_string())?;
    // A record cut just after a line ends is cut short all the same.
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    let first = lines.next().unwrap_or("");
    match first.split_once(' ') {
        Some((MAGIC, version)) => match version.parse::<u32>() {
            Ok(FORMAT) => {}
            Ok(older @ 1..FORMAT) => {
                return Err(format!(
                    "is in status format {older}, written by an older heartwatch daemon; this one reads format {FORMAT}: restart the daemon (systemctl restart heartwatch)"
                ));
            }
            Ok(newer) if newer > FORMAT => {
                return Err(format!(
                    "is in status format {newer}, written by a newer heartwatch; this one reads format {FORMAT}: run the heartwatch command that came with the running daemon"
                ));
            }
            _ => {
                return Err(format!(
                    "has an unknown format on its first line: {first:?}"
                ));
            }
        },
        Some(("heartwatch", rest)) => {
            let version = rest.split(' ').next().unwrap_or("");
            return Err(format!(
                "was written by an older heartwatch daemon ({version}), whose status is text this heartwatch does not read; restart the daemon (systemctl restart heartwatch) to have it write its status as a record"
            ));
        }
        _ => {
            return Err(format!(
                "does not begin with `{MAGIC} {FORMAT}`: not a status record"
            ));
        }
    }
    let mut status = Status::default();
    let mut seen = Seen::default();
    let mut ended = false;
    for (i, line) in lines.enumerate() {
        let at = |why: String| format!("line {}: {why}", i + 2);
        if ended {
            if line.is_empty() {
                continue;
            }
            return Err(at("text after the end line".into()));
        }
        if line == "end" {
            ended = true;
            continue;
        }
        let (key, value) = line
            .split_once(' ')
            .ok_or_else(|| at(format!("not `key value`: {line:?}")))?;
        read_line(&mut status, &mut seen, key, value).map_err(|why| at(format!("{key}: {why}")))?;
    }
    if !ended {
        return Err("is cut short (no end line): not a whole status record".into());
    }
    for (key, was_seen) in [
        ("version", seen.version),
        ("pid", seen.pid),
        ("started", seen.started),
        ("updated", seen.updated),
        ("root", seen.root),
        ("dry-run", seen.dry_run),
        ("budget", seen.budget),
    ] {
        if !was_seen {
            return Err(format!("has no {key} line: not a whole status record"));
        }
    }
    Ok(status)
}

/// Which of the lines that must be there were.
#[derive(Default)]
struct Seen {
    version: bool,
    pid: bool,
    started: bool,
    updated: bool,
    root: bool,
    dry_run: bool,
    budget: bool,
}

fn read_line(status: &mut Status, seen: &mut Seen, key: &str, value: &str) -> Result<(), String> {
    let once = |seen: &mut bool| {
        if std::mem::replace(seen, true) {
            Err("given twice".to_string())
        } else {
            Ok(())
        }
    };
    let once_opt = |present: bool| {
        if present {
            Err("given twice".to_string())
        } else {
            Ok(())
        }
    };
    match key {
        "version" => {
            once(&mut seen.version)?;
            status.version = unescape(value)?;
        }
        "pid" => {
            once(&mut seen.pid)?;
            let pid: u32 = number(value)?;
            if pid == 0 || pid > i32::MAX as u32 {
                return Err(format!("not a process ID: {value}"));
            }
            status.identity.pid = pid;
        }
        "start-time" => {
            once_opt(status.identity.start_time.is_some())?;
            status.identity.start_time = Some(number(value)?);
        }
        "boot-id" => {
            once_opt(status.identity.boot_id.is_some())?;
            status.identity.boot_id = Some(unescape(value)?);
        }
        "started" => {
            once(&mut seen.started)?;
            status.started = number(value)?;
        }
        "updated" => {
            once(&mut seen.updated)?;
            status.updated = number(value)?;
        }
        "stopped" => {
            once_opt(status.stopped.is_some())?;
            status.stopped = Some(number(value)?);
        }
        "root" => {
            once(&mut seen.root)?;
            status.root = unescape(value)?;
        }
        "dry-run" => {
            once(&mut seen.dry_run)?;
            status.dry_run = match value {
                "yes" => true,
                "no" => false,
                _ => return Err(format!("not yes or no: {value:?}")),
            };
        }
        "device" => {
            let [path, identity, timeout, feed, feeding, boot] = fields(value)?;
            status.devices.push(DeviceStatus {
                path: unescape(path)?,
                identity: unescape(identity)?,
                timeout: nanos(timeout)?,
                feed_interval: nanos(feed)?,
                feeding: match feeding {
                    "fed" => Feeding::Fed,
                    "fails" => Feeding::Fails,
                    "stopped" => Feeding::Stopped,
                    _ => return Err(format!("unknown feeding state {feeding:?}")),
                },
                boot_status: optional(boot)?,
            });
        }
        "boot-status" => {
            once_opt(!status.boot_status.is_empty())?;
            status.boot_status = unescape(value)?;
        }
        "last-reboot" => {
            once_opt(status.last_reboot.is_some())?;
            status.last_reboot = Some(reason(value)?);
        }
        "budget" => {
            once(&mut seen.budget)?;
            let [used, of, healthy, since] = fields(value)?;
            status.budget = Budget {
                used: number(used)?,
                of: number(of)?,
                healthy_uptime: nanos(healthy)?,
                healthy_since: optional(since)?,
            };
        }
        "rebooting" => {
            once_opt(status.rebooting.is_some())?;
            status.rebooting = Some(reason(value)?);
        }
        "suppressed" => {
            once_opt(status.suppressed.is_some())?;
            status.suppressed = Some(unescape(value)?);
        }
        "agent" => {
            once_opt(status.agent.is_some())?;
            let [answer, why] = fields(value)?;
            status.agent = Some(Agent {
                answer: Answer::from_word(answer)
                    .ok_or_else(|| format!("unknown answer {answer:?}"))?,
                reason: unescape(why)?,
            });
        }
        "rule" => {
            let [
                name,
                kind,
                health,
                since,
                cause,
                step,
                ladder,
                attempts,
                repair,
                end,
                repair_at,
            ] = fields(value)?;
            let last_repair = match (repair, end, repair_at) {
                ("", "", "") => None,
                (text, end, at) => Some(Box::new(LastRepair {
                    text: unescape(text)?,
                    end: RepairEnd::from_word(end)
                        .ok_or_else(|| format!("unknown repair ending {end:?}"))?,
                    at: number(at)?,
                })),
            };
            status.rules.push(RuleStatus {
                name: unescape(name)?,
                kind: RuleKind::from_word(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?,
                health: RuleHealth::from_word(health)
                    .ok_or_else(|| format!("unknown health {health:?}"))?,
                since: number(since)?,
                cause: unescape(cause)?,
                step: LadderStep::from_word(step)
                    .ok_or_else(|| format!("unknown ladder step {step:?}"))?,
                ladder: unescape(ladder)?,
                repair_attempts: number(attempts)?,
                last_repair,
                ..RuleStatus::default()
            });
        }
        "history" => {
            if status.history.len() == crate::history::MAX_ENTRIES {
                return Err("more history lines than the history keeps".into());
            }
            status.history.push(Entry::read_fields(value)?);
        }
        _ => return Err("unknown key".into()),
    }
    Ok(())
}

/// The `N` tab-separated fields of a value, exactly.
fn fields<const N: usize>(value: &str) -> Result<[&str; N], String> {
    let mut out = [""; N];
    let mut parts = value.split('\t');
    for slot in &mut out {
        *slot = parts
            .next()
            .ok_or_else(|| format!("fewer than {N} tab-separated fields"))?;
    }
    if parts.next().is_some() {
        return Err(format!("more than {N} tab-separated fields"));
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("not a number in range: {value:?}"))
}

/// A number, or nothing (an empty field).
fn optional<T: std::str::FromStr>(value: &str) -> Result<Option<T>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        number(value).map(Some)
    }
}

fn nanos(value: &str) -> Result<Duration, String> {
    let n: u128 = number(value)?;
    let secs = u64::try_from(n / 1_000_000_000).map_err(|_| format!("too long: {value}"))?;
    Ok(Duration::new(secs, (n % 1_000_000_000) as u32))
}

fn reason(value: &str) -> Result<Reason, String> {
    let [rule, cause, step, uptime, wall, boot_id] = fields(value)?;
    Ok(Reason {
        rule: unescape(rule)?,
        cause: unescape(cause)?,
        step: unescape(step)?,
        uptime: nanos(uptime)?,
        wall: number(wall)?,
        boot_id: unescape(boot_id)?,
    })
}

/// The inverse of [`escape`].
pub fn unescape(value: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b < 0x20 || b == 0x7f {
            return Err(format!("an unescaped control character in {value:?}"));
        }
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escaped = match bytes.next() {
            Some(b'\\') => b'\\',
            Some(b't') => b'\t',
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let digits = match hex {
                    [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                        .ok()
                        .and_then(|d| u8::from_str_radix(d, 16).ok()),
                    _ => None,
                };
                match digits {
                    Some(c) if c < 0x20 || c == 0x7f => c,
                    _ => return Err(format!("a bad \\x escape in {value:?}")),
                }
            }
            _ => return Err(format!("a bad escape in {value:?}")),
        };
        out.push(escaped);
    }
    // Only ASCII was put in or taken out of valid UTF-8.
    String::from_utf8(out).map_err(|_| format!("not text: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::full;

    fn record(status: &Status) -> Vec<u8> {
        let mut out = Vec::new();
        status.write_record(&mut out);
        out
    }

    #[test]
    fn numbers_are_written_as_formatted_and_text_escaped() {
        for n in [0, 7, -1, 10, 1_700_000_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            Record(&mut out).int(n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for (text, want) in [
            ("plain-rule.name", "plain-rule.name"),
            ("a\\b", "a\\\\b"),
            ("tab\there", "tab\\there"),
            ("\u{7f}x\u{1}", "\\x7fx\\x01"),
            ("é\r\n", "é\\r\\n"),
            ("", ""),
        ] {
            let mut out = Vec::new();
            escape(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn a_record_reads_back_as_what_was_written() {
        let status = full();
        assert_eq!(parse(&record(&status)), Ok(status.clone()));
        let mut sparse = full();
        sparse.identity.start_time = None;
        sparse.identity.boot_id = None;
        sparse.stopped = Some(1_795_000_200);
        sparse.devices.clear();
        sparse.boot_status.clear();
        sparse.last_reboot = None;
        sparse.rebooting = None;
        sparse.suppressed = None;
        sparse.agent = None;
        sparse.rules.clear();
        sparse.history.clear();
        sparse.budget.healthy_since = None;
        assert_eq!(parse(&record(&sparse)), Ok(sparse.clone()));
        assert_eq!(
            parse(&record(&Status::default())),
            Err("line 3: pid: not a process ID: 0".into())
        );
    }

    #[test]
    fn hostile_text_stays_within_its_field() {
        let mut status = full();
        let hostile = "a\tb\nrule x\thealthy\\t\\\r\u{1b}[31m\u{7f}\u{0}é\u{fffd}end";
        status.rules[0].name = hostile.into();
        status.rules[1].cause = hostile.into();
        status.rules[1].ladder = "\n".into();
        status.suppressed = Some(format!("{hostile}\nend\n"));
        status.root = "\\".into();
        status.rebooting.as_mut().unwrap().cause = hostile.into();
        status.devices[0].identity = "\t\t".into();
        status.agent.as_mut().unwrap().reason = hostile.into();
        status.history[0].cause = hostile.into();
        let bytes = record(&status);
        let text = String::from_utf8(bytes.clone()).unwrap();
        // One line per field: the hostile ones added none.
        assert_eq!(
            text.lines().count(),
            record(&full()).split(|&b| b == b'\n').count() - 1,
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(parse(&bytes), Ok(status));
    }

    #[test]
    fn what_is_not_a_whole_record_says_so() {
        let whole = record(&full());
        assert_eq!(parse(b""), Err("is empty, not a status record".into()));
        let err = parse(b"\xff\xfe\0binary").unwrap_err();
        assert!(err.contains("not text"), "{err}");
        // Cut anywhere short of its end line.
        let end = whole.len() - "end\n".len();
        for cut in (1..end).step_by(7).chain([end - 1, end]) {
            assert!(parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            parse(&whole[..end]),
            Err("is cut short (no end line): not a whole status record".into())
        );
        assert_eq!(parse(&whole[..whole.len() - 1]), Ok(full()));
        let text = String::from_utf8(whole.clone()).unwrap();
        for (from, to, needle) in [
            (
                "heartwatch-status 2\n",
                "heartwatch-status 3\n",
                "newer heartwatch",
            ),
            (
                "heartwatch-status 2\n",
                "heartwatch-status 1\n",
                "older heartwatch daemon",
            ),
            (
                "heartwatch-status 2\n",
                "heartwatch-status x\n",
                "unknown format",
            ),
            ("heartwatch-status 2\n", "", "does not begin with"),
            ("\tcommand\t", "\tsensor\t", "unknown kind"),
            ("\twaiting\t", "\twondering\t", "unknown ladder step"),
            ("\tsucceeded\t", "\tsort of\t", "unknown repair ending"),
            ("\tsuppressed\t", "\tskipped\t", "unknown kind"),
            ("\nbudget ", "\nbudgie ", "unknown key"),
            ("\nbudget 1\t3\t", "\nbudget 1\t", "fewer than 4"),
            ("\tfed\t32\n", "\tfed\t32\textra\n", "more than 6"),
            ("\tfailing\t", "\tworried\t", "unknown health"),
            ("\nagent drain\t", "\nagent maybe\t", "unknown answer"),
            ("\nagent drain\t", "\nagent drain\n", "fewer than 2"),
            ("\npid 4321\n", "\npid -1\n", "not a number"),
            ("\npid 4321\n", "\npid 4321\npid 4321\n", "given twice"),
            ("\npid 4321\n", "\n\npid 4321\n", "line 3: not `key value`"),
            ("\npid 4321\n", "\n", "has no pid line"),
            ("\npid 4321\n", "\nstarted 1\n", "given twice"),
            ("\nversion 0.2.0\n", "\n", "has no version line"),
            ("\nroot /etc/heartwatch\n", "\nroot \\q\n", "bad escape"),
            (
                "\nroot /etc/heartwatch\n",
                "\nroot \\x41\n",
                "bad \\x escape",
            ),
            (
                "\nroot /etc/heartwatch\n",
                "\nroot a\rb\n",
                "unescaped control",
            ),
            ("\nend\n", "\nend\nrule x\n", "after the end line"),
        ] {
            let damaged = text.replacen(from, to, 1);
            let err = parse(damaged.as_bytes()).unwrap_err();
            assert!(err.contains(needle), "{from:?} -> {to:?}: {err}");
        }
        let missing = text.replacen("\nroot /etc/heartwatch\n", "\n", 1);
        assert_eq!(
            parse(missing.as_bytes()),
            Err("has no root line: not a whole status record".into())
        );
    }

    #[test]
    fn a_prose_status_of_heartwatch_0_2_0_asks_for_a_restart() {
        let old = "heartwatch 0.2.0 pid 812 running since 2026-11-24 14:05:03 UTC, updated 2026-11-24 14:05:04 UTC\n\
identity: pid 812 start 4711 boot 0b5e6b3c-1b1c-4e3e-9e62-8c1a8f0e8a11\n\
configuration /etc/heartwatch\n\
watchdog: none (Device=none)\n\
last reboot by heartwatch: none recorded\n\
reboot budget: 0 of 3 used (starts again after 1h healthy)\n\
rules: 1 (1 healthy, 0 failing, 0 starting)\n\
  job  healthy  since 2026-11-24 14:05:03 UTC\n";
        let err = parse(old.as_bytes()).unwrap_err();
        assert!(err.contains("older heartwatch daemon (0.2.0)"), "{err}");
        assert!(err.contains("restart the daemon"), "{err}");
    }
}
