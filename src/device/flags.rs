//! The watchdog API's option and status bits (`WDIOF_*`), by name, and
//! what a boot status says about the last reset.

use std::fmt;

/// Option and status bits (`WDIOF_*`).
pub const WDIOF_OVERHEAT: u32 = 0x0001;
pub const WDIOF_FANFAULT: u32 = 0x0002;
pub const WDIOF_EXTERN1: u32 = 0x0004;
pub const WDIOF_EXTERN2: u32 = 0x0008;
pub const WDIOF_POWERUNDER: u32 = 0x0010;
pub const WDIOF_CARDRESET: u32 = 0x0020;
pub const WDIOF_POWEROVER: u32 = 0x0040;
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;
pub const WDIOF_PRETIMEOUT: u32 = 0x0200;
pub const WDIOF_ALARMONLY: u32 = 0x0400;
pub const WDIOF_KEEPALIVEPING: u32 = 0x8000;

const FLAG_NAMES: [(u32, &str); 12] = [
    (WDIOF_OVERHEAT, "overheat"),
    (WDIOF_FANFAULT, "fanfault"),
    (WDIOF_EXTERN1, "extern1"),
    (WDIOF_EXTERN2, "extern2"),
    (WDIOF_POWERUNDER, "powerunder"),
    (WDIOF_CARDRESET, "cardreset"),
    (WDIOF_POWEROVER, "powerover"),
    (WDIOF_SETTIMEOUT, "settimeout"),
    (WDIOF_MAGICCLOSE, "magicclose"),
    (WDIOF_PRETIMEOUT, "pretimeout"),
    (WDIOF_ALARMONLY, "alarmonly"),
    (WDIOF_KEEPALIVEPING, "keepaliveping"),
];

/// Shows a set of `WDIOF_*` bits by name: `settimeout,magicclose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub u32);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in FLAG_NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A sentence about the last reset, from a boot status.
pub fn describe_boot_status(status: Option<u32>) -> String {
    match status {
        None => "the driver does not report why the host last reset".to_string(),
        Some(s) if s & WDIOF_CARDRESET != 0 => {
            format!(
                "last reset was caused by the watchdog (boot status {})",
                Flags(s)
            )
        }
        Some(0) => "last reset was not caused by the watchdog".to_string(),
        Some(s) => format!(
            "last reset was not caused by the watchdog (boot status {})",
            Flags(s)
        ),
    }
}
