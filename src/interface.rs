//! Interface rules: a network interface that must be up and whose receive
//! counter must move within `Within=`. The counter moving is a beat, as a
//! heartbeat file's modification is: its age is measured on the monotonic
//! clock from the moment the daemon *saw* it change, so a wall-clock step
//! never fires a rule.
//!
//! The reading (`/sys/class/net/NAME/{operstate,carrier,statistics/rx_packets}`)
//! runs in the stat workers like every look that might block, into fixed
//! buffers on the stack: it allocates nothing.
//!
//! `operstate` (RFC 2863, as the kernel reports it) decides whether the
//! interface is up: `up` is up; `unknown` is what drivers without
//! operational state report (loopback, many tun and dummy devices), so
//! there the carrier decides: up when `carrier` reads 1; `down`,
//! `lowerlayerdown`, `dormant`, `notpresent` and `testing` are down.

use crate::config::InterfaceSpec;
use crate::health::Cause;
use crate::sys::Errno;
use crate::sys::fs::read_small;
use crate::text::DurationText;
use std::ffi::CString;
use std::fmt;
use std::time::{Duration, Instant};

/// The files one interface rule reads, named once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    operstate: CString,
    carrier: CString,
    rx_packets: CString,
}

impl Paths {
    /// The files under `/sys/class/net/NAME` (`name` is validated: no `/`).
    pub fn of(name: &str) -> Paths {
        let file = |f: &str| {
            CString::new(format!("/sys/class/net/{name}/{f}")).expect("names have no NUL")
        };
        Paths {
            operstate: file("operstate"),
            carrier: file("carrier"),
            rx_packets: file("statistics/rx_packets"),
        }
    }
}

/// The kernel's `operstate` of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Up,
    Unknown,
    Down,
    LowerLayerDown,
    Dormant,
    NotPresent,
    Testing,
    /// A word this heartwatch does not know: counted as down.
    Other,
}

impl OperState {
    fn parse(text: &[u8]) -> OperState {
        match text.trim_ascii() {
            b"up" => OperState::Up,
            b"unknown" => OperState::Unknown,
            b"down" => OperState::Down,
            b"lowerlayerdown" => OperState::LowerLayerDown,
            b"dormant" => OperState::Dormant,
            b"notpresent" => OperState::NotPresent,
            b"testing" => OperState::Testing,
            _ => OperState::Other,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            OperState::Up => "up",
            OperState::Unknown => "unknown",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Dormant => "dormant",
            OperState::NotPresent => "notpresent",
            OperState::Testing => "testing",
            OperState::Other => "not one heartwatch knows",
        }
    }

    /// Whether the interface counts as up (see the module's header).
    fn is_up(self, carrier: Carrier) -> bool {
        match self {
            OperState::Up => true,
            OperState::Unknown => carrier == Carrier::Yes,
            _ => false,
        }
    }
}

/// What `carrier` says. Reading it fails (`EINVAL`) while the interface is
/// administratively down: the kernel then does not report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Yes,
    No,
    NotReported,
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Carrier::Yes => "carrier",
            Carrier::No => "no carrier",
            Carrier::NotReported => "carrier not reported",
        })
    }
}

/// What one look at an interface found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Up, having received this many packets.
    Up { rx_packets: u64 },
    Down {
        operstate: OperState,
        carrier: Carrier,
    },
    /// No such interface.
    Missing,
    /// A file under `/sys/class/net/NAME` could not be read.
    Unreadable(Errno),
}

/// Reads the interface's state and receive counter. Runs in a stat worker.
pub fn look(paths: &Paths) -> Reading {
    let mut buf = [0u8; 32];
    let operstate = match read_small(paths.operstate.as_bytes_with_nul(), &mut buf) {
        Ok(n) => OperState::parse(&buf[..n]),
        Err(e) => return gone_or(e),
    };
    if operstate != OperState::Up {
        // Only needed to decide `unknown`, and to say why it is down.
        let carrier = match read_small(paths.carrier.as_bytes_with_nul(), &mut buf) {
            Ok(n) => match buf[..n].trim_ascii() {
                b"1" => Carrier::Yes,
                b"0" => Carrier::No,
                _ => Carrier::NotReported,
            },
            Err(Errno::ENOENT | Errno::ENODEV) => return Reading::Missing,
            Err(_) => Carrier::NotReported,
        };
        if !operstate.is_up(carrier) {
            return Reading::Down { operstate, carrier };
        }
    }
    match read_small(paths.rx_packets.as_bytes_with_nul(), &mut buf) {
        Ok(n) => match parse_count(&buf[..n]) {
            Some(rx_packets) => Reading::Up { rx_packets },
            None => Reading::Unreadable(Errno::EINVAL),
        },
        Err(e) => gone_or(e),
    }
}

/// An interface deleted under a read reads as `ENOENT` or `ENODEV`.
fn gone_or(e: Errno) -> Reading {
    match e {
        Errno::ENOENT | Errno::ENODEV => Reading::Missing,
        e => Reading::Unreadable(e),
    }
}

fn parse_count(text: &[u8]) -> Option<u64> {
    let digits = text.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The runtime state of one interface rule.
#[derive(Debug, Clone)]
pub struct InterfaceWatch {
    within: Duration,
    interval: Duration,
    /// The receive counter last seen while the interface was up.
    seen: Option<u64>,
    changed_at: Instant,
}

impl InterfaceWatch {
    /// Starts watching at `now`: the counter counts as moving at that moment.
    pub fn new(spec: &InterfaceSpec, now: Instant) -> InterfaceWatch {
        InterfaceWatch {
            within: spec.within,
            interval: spec.check_interval,
            seen: None,
            changed_at: now,
        }
    }

    /// Judges a reading made at `now`. Returns the verdict and when to
    /// look again. An interface that comes up (again) has `Within=` from
    /// that moment to receive its first packet: being down was its cause.
    pub fn observe(&mut self, reading: Reading, now: Instant) -> (Result<(), Cause>, Instant) {
        let verdict = match reading {
            Reading::Up { rx_packets } => {
                if self.seen != Some(rx_packets) {
                    self.seen = Some(rx_packets);
                    self.changed_at = now;
                }
                let unchanged = now.saturating_duration_since(self.changed_at);
                if unchanged >= self.within {
                    Err(Cause::NoPacket {
                        unchanged,
                        within: self.within,
                    })
                } else {
                    Ok(())
                }
            }
            Reading::Down { operstate, carrier } => {
                Err(Cause::InterfaceDown { operstate, carrier })
            }
            Reading::Missing => Err(Cause::InterfaceMissing),
            Reading::Unreadable(e) => Err(Cause::Unreadable(e)),
        };
        if !matches!(reading, Reading::Up { .. }) {
            self.seen = None;
        }
        (verdict, self.next_check(now))
    }

    /// One interval on, but never later than the deadline while the
    /// interface is up, so silence is seen when it begins.
    fn next_check(&self, now: Instant) -> Instant {
        let regular = now + self.interval;
        let deadline = self.changed_at + self.within;
        if self.seen.is_some() && deadline > now && deadline < regular {
            deadline
        } else {
            regular
        }
    }
}

/// What the rule watches, in words (`heartwatch check`).
pub fn explain(spec: &InterfaceSpec) -> String {
    format!(
        "if network interface {} is not up or receives no packet for {} (looked at every {})",
        spec.name,
        DurationText(spec.within),
        DurationText(spec.check_interval)
    )
}

/// `heartwatch check`'s warning for an interface that does not exist now.
/// A warning, not an error: interfaces come and go (a USB adapter, a VPN
/// brought up later, a container's veth), and the rule says `missing`
/// until it appears.
pub fn absent_warning(rule: &str, spec: &InterfaceSpec) -> Option<String> {
    let dir = format!("/sys/class/net/{}", spec.name);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "rule {rule}: network interface {} does not exist now ({dir}); the rule fails as missing until it appears",
            spec.name
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InterfaceSpec {
        InterfaceSpec {
            name: "eth0".into(),
            within: Duration::from_secs(10),
            check_interval: Duration::from_secs(1),
        }
    }

    fn up(rx_packets: u64) -> Reading {
        Reading::Up { rx_packets }
    }

    #[test]
    fn operstate_and_carrier_decide_up() {
        use Carrier::*;
        for (text, carrier, want) in [
            (&b"up\n"[..], Yes, true),
            (b"up\n", NotReported, true),
            (b"unknown\n", Yes, true),
            (b"unknown\n", No, false),
            (b"unknown\n", NotReported, false),
            (b"down\n", NotReported, false),
            (b"lowerlayerdown\n", No, false),
            (b"dormant\n", Yes, false),
            (b"notpresent\n", No, false),
            (b"testing\n", Yes, false),
            (b"sideways\n", Yes, false),
        ] {
            assert_eq!(
                OperState::parse(text).is_up(carrier),
                want,
                "{text:?} {carrier}"
            );
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count(b"0\n"), Some(0));
        assert_eq!(parse_count(b"18446744073709551615\n"), Some(u64::MAX));
        assert_eq!(parse_count(b"18446744073709551616\n"), None);
        assert_eq!(parse_count(b"\n"), None);
        assert_eq!(parse_count(b"12x\n"), None);
    }

    #[test]
    fn loopback_reads_as_up_and_a_missing_interface_as_missing() {
        // Every network namespace has `lo`; no name has 15 x's.
        assert!(matches!(look(&Paths::of("lo")), Reading::Up { .. }));
        assert_eq!(look(&Paths::of("xxxxxxxxxxxxxxx")), Reading::Missing);
    }

    #[test]
    fn silence_counts_from_when_the_counter_was_seen_moving() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = InterfaceWatch::new(&spec(), t0);
        assert_eq!(w.observe(up(5), t0).0, Ok(()));
        let (v, next) = w.observe(up(5), t0 + Duration::from_millis(9500));
        assert_eq!(v, Ok(()));
        assert_eq!(next, t0 + s(10));
        assert!(matches!(
            w.observe(up(5), t0 + s(10)).0,
            Err(Cause::NoPacket { .. })
        ));
        assert_eq!(w.observe(up(6), t0 + s(12)).0, Ok(()));
        assert_eq!(w.observe(up(6), t0 + s(21)).0, Ok(()));
        assert!(w.observe(up(6), t0 + s(22)).0.is_err());
    }

    #[test]
    fn down_and_missing_are_causes_and_coming_back_starts_afresh() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = InterfaceWatch::new(&spec(), t0);
        assert_eq!(w.observe(up(5), t0).0, Ok(()));
        let down = Reading::Down {
            operstate: OperState::Down,
            carrier: Carrier::NotReported,
        };
        let (v, next) = w.observe(down, t0 + s(1));
        assert_eq!(
            v,
            Err(Cause::InterfaceDown {
                operstate: OperState::Down,
                carrier: Carrier::NotReported
            })
        );
        assert_eq!(next, t0 + s(2));
        assert_eq!(
            w.observe(Reading::Missing, t0 + s(30)).0,
            Err(Cause::InterfaceMissing)
        );
        // Up again with the same count, long after: Within= from now.
        assert_eq!(w.observe(up(5), t0 + s(40)).0, Ok(()));
        assert!(w.observe(up(5), t0 + s(50)).0.is_err());
        assert_eq!(
            w.observe(Reading::Unreadable(Errno::EACCES), t0 + s(51)).0,
            Err(Cause::Unreadable(Errno::EACCES))
        );
    }
}
