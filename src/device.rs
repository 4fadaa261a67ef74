//! The hardware watchdog, through the kernel's watchdog API
//! (`linux/watchdog.h`): identity, timeout, boot status, keepalive and the
//! magic close. Dropping a `Device` closes it *without* the magic close, so
//! the watchdog stays armed: only an orderly stop disarms.

use crate::config::DurationText;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `struct watchdog_info` from `linux/watchdog.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchdogInfo {
    pub options: u32,
    pub firmware_version: u32,
    pub identity: [u8; 32],
}

// The ioctl numbers come from the generic encoding (`_IOR`/`_IOWR`), so they
// are right on every architecture.
nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

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

/// What went wrong with a device, with advice where there is some.
#[derive(Debug)]
pub enum DeviceError {
    Open {
        path: PathBuf,
        errno: Errno,
    },
    Ioctl {
        path: PathBuf,
        what: &'static str,
        errno: Errno,
    },
    TimeoutTooShort {
        path: PathBuf,
        actual: Duration,
        feed: Duration,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Open { path, errno } => {
                let p = path.display();
                match errno {
                    Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => write!(
                        f,
                        "watchdog {p}: no such device ({errno}); load the driver for your hardware (or `modprobe softdog`), or set Device=none in heartwatch.conf to run the checks without one"
                    ),
                    Errno::EACCES | Errno::EPERM if nix::unistd::geteuid().is_root() => write!(
                        f,
                        "watchdog {p}: permission denied ({errno}) although heartwatch runs as root: a device cgroup or security module refuses it (under systemd, DeviceAllow= is resolved when the unit starts, so a driver loaded later is not covered: restart the unit)"
                    ),
                    Errno::EACCES | Errno::EPERM => write!(
                        f,
                        "watchdog {p}: permission denied ({errno}); run heartwatch as root (the systemd unit does)"
                    ),
                    Errno::EBUSY => write!(
                        f,
                        "watchdog {p}: busy ({errno}): another process holds it, most likely systemd itself (RuntimeWatchdogSec= in /etc/systemd/system.conf or system.conf.d) or the `watchdog`/`wd_keepalive` service; free it or point Device= at another watchdog"
                    ),
                    _ => write!(f, "watchdog {p}: cannot open: {errno}"),
                }
            }
            DeviceError::Ioctl { path, what, errno } => {
                write!(f, "watchdog {}: {what} failed: {errno}", path.display())
            }
            DeviceError::TimeoutTooShort { path, actual, feed } => write!(
                f,
                "watchdog {}: the driver set a timeout of {}, too short for FeedInterval={}; feed at most every {} or ask for a longer Timeout=",
                path.display(),
                DurationText(*actual),
                DurationText(*feed),
                DurationText(*actual / 2)
            ),
        }
    }
}

impl std::error::Error for DeviceError {}

/// How long start-up waits for a configured device node that is not there
/// yet. udev loads watchdog drivers at boot in parallel with the services
/// (the unit does not wait for `systemd-udev-settle`), so the node may
/// appear a moment after the daemon starts. The bound keeps a host whose
/// driver never comes from waiting long, and keeps a failed start short
/// enough that systemd's start limit (5 starts in 1 min, with RestartSec=2s)
/// still gives up on a device that never appears.
pub const NODE_WAIT: Duration = Duration::from_secs(5);

/// How often the wait looks again.
const NODE_POLL: Duration = Duration::from_millis(100);

/// Waits at most `bound` until every path in `paths` exists, before any is
/// opened: opening arms a device, and an armed device must not wait for the
/// next one. Returns early when `interrupt` (the signalfd) is readable, so a
/// stop is not held up. A node still missing afterwards fails in
/// [`Device::open`] with the usual advice.
pub fn wait_for_nodes(paths: &[PathBuf], bound: Duration, interrupt: BorrowedFd<'_>) {
    let mut missing: Vec<&Path> = paths
        .iter()
        .map(PathBuf::as_path)
        .filter(|p| !p.exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    for path in &missing {
        log::info!(
            "watchdog {}: not there yet; waiting up to {} for its driver to load",
            path.display(),
            DurationText(bound)
        );
    }
    let started = Instant::now();
    let deadline = started + bound;
    while !missing.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let step = (deadline - now).min(NODE_POLL);
        let mut fds = [PollFd::new(interrupt, PollFlags::POLLIN)];
        let millis = u16::try_from(step.as_millis()).unwrap_or(u16::MAX);
        if matches!(poll(&mut fds, PollTimeout::from(millis)), Ok(n) if n > 0) {
            log::info!("a signal arrived while waiting for the watchdog devices");
            break;
        }
        missing.retain(|path| {
            if path.exists() {
                log::info!(
                    "watchdog {}: appeared after {:.1}s",
                    path.display(),
                    started.elapsed().as_secs_f64()
                );
                false
            } else {
                true
            }
        });
    }
}

/// An open, armed hardware watchdog.
#[derive(Debug)]
pub struct Device {
    path: PathBuf,
    fd: OwnedFd,
    info: WatchdogInfo,
    timeout: Duration,
    asked: Duration,
    boot_status: Option<u32>,
    keepalive_ioctl: bool,
}

impl Device {
    /// Opens and arms the device, sets the timeout and reads back what the
    /// driver really set. Opening a watchdog arms it, so this is the point
    /// after which the device must be fed.
    pub fn open(path: &Path, asked: Duration) -> Result<Device, DeviceError> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| DeviceError::Open {
            path: path.to_path_buf(),
            errno: Errno::EINVAL,
        })?;
        // SAFETY: `c_path` is a valid NUL-terminated string for the call's duration.
        let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(DeviceError::Open {
                path: path.to_path_buf(),
                errno: Errno::last(),
            });
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut device = Device {
            path: path.to_path_buf(),
            fd,
            info: WatchdogInfo::default(),
            timeout: asked,
            asked,
            boot_status: None,
            keepalive_ioctl: true,
        };
        let ioctl_error = |what, errno| DeviceError::Ioctl {
            path: path.to_path_buf(),
            what,
            errno,
        };
        let raw = device.fd.as_raw_fd();
        // SAFETY: `raw` is an open watchdog descriptor and `info` a valid
        // `struct watchdog_info` the kernel fills in.
        match unsafe { wdioc_getsupport(raw, &mut device.info) } {
            Ok(_) | Err(Errno::ENOTTY) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(ioctl_error("WDIOC_GETSUPPORT", e)),
        }
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid int for the kernel to write.
        if unsafe { wdioc_getbootstatus(raw, &mut status) }.is_ok() {
            device.boot_status = Some(status as u32);
        }
        let mut seconds = asked.as_secs().min(i32::MAX as u64) as libc::c_int;
        // SAFETY: `seconds` is a valid int; the driver reads it and writes back
        // the timeout it chose.
        match unsafe { wdioc_settimeout(raw, &mut seconds) } {
            Ok(_) => device.timeout = Duration::from_secs(seconds.max(0) as u64),
            Err(Errno::EOPNOTSUPP) | Err(Errno::ENOTTY) | Err(Errno::EINVAL) => {
                let mut current: libc::c_int = 0;
                // SAFETY: `current` is a valid int for the kernel to write.
                unsafe { wdioc_gettimeout(raw, &mut current) }
                    .map_err(|e| ioctl_error("WDIOC_GETTIMEOUT", e))?;
                device.timeout = Duration::from_secs(current.max(0) as u64);
            }
            Err(e) => return Err(ioctl_error("WDIOC_SETTIMEOUT", e)),
        }
        let mut current: libc::c_int = 0;
        // SAFETY: as above.
        if unsafe { wdioc_gettimeout(raw, &mut current) }.is_ok() && current > 0 {
            device.timeout = Duration::from_secs(current as u64);
        }
        Ok(device)
    }

    /// Refuses a feed interval above half the timeout the driver set.
    pub fn check_feed_interval(&self, feed: Duration) -> Result<(), DeviceError> {
        if feed > self.timeout / 2 {
            return Err(DeviceError::TimeoutTooShort {
                path: self.path.clone(),
                actual: self.timeout,
                feed,
            });
        }
        Ok(())
    }

    /// One keepalive: the ioctl, or a write where the driver lacks it.
    pub fn feed(&mut self) -> Result<(), Errno> {
        let raw = self.fd.as_raw_fd();
        if self.keepalive_ioctl {
            let mut dummy: libc::c_int = 0;
            // SAFETY: `raw` is an open watchdog descriptor; the argument is unused.
            match unsafe { wdioc_keepalive(raw, &mut dummy) } {
                Ok(_) => return Ok(()),
                Err(Errno::ENOTTY) | Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => {
                    self.keepalive_ioctl = false;
                }
                Err(e) => return Err(e),
            }
        }
        write_byte(raw, b'\0')
    }

    /// Orderly stop: the magic close disarms drivers that support it.
    pub fn disarm(self) -> Result<(), Errno> {
        write_byte(self.fd.as_raw_fd(), b'V')
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn identity(&self) -> &str {
        let end = self
            .info
            .identity
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(32);
        std::str::from_utf8(&self.info.identity[..end]).unwrap_or("?")
    }

    pub fn options(&self) -> Flags {
        Flags(self.info.options)
    }

    pub fn firmware_version(&self) -> u32 {
        self.info.firmware_version
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn asked_timeout(&self) -> Duration {
        self.asked
    }

    /// `WDIOC_GETBOOTSTATUS`, when the driver answers it.
    pub fn boot_status(&self) -> Option<u32> {
        self.boot_status
    }

    pub fn has_magic_close(&self) -> bool {
        self.info.options & WDIOF_MAGICCLOSE != 0
    }
}

fn write_byte(fd: RawFd, byte: u8) -> Result<(), Errno> {
    let buf = [byte];
    // SAFETY: `buf` is a valid one-byte buffer for the duration of the call.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), 1) };
    if n == 1 { Ok(()) } else { Err(Errno::last()) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // From linux/watchdog.h on x86_64, as printed by a C program.
        assert_eq!(wdioc_getsupport_number(), 0x8028_5700);
        assert_eq!(wdioc_settimeout_number(), 0xc004_5706);
        assert_eq!(wdioc_keepalive_number(), 0x8004_5705);
    }

    fn wdioc_getsupport_number() -> u64 {
        nix::request_code_read!(b'W', 0, std::mem::size_of::<WatchdogInfo>()) as u64
    }
    fn wdioc_settimeout_number() -> u64 {
        nix::request_code_readwrite!(b'W', 6, std::mem::size_of::<libc::c_int>()) as u64
    }
    fn wdioc_keepalive_number() -> u64 {
        nix::request_code_read!(b'W', 5, std::mem::size_of::<libc::c_int>()) as u64
    }

    #[test]
    fn flags_print_by_name() {
        assert_eq!(
            Flags(WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE).to_string(),
            "settimeout,magicclose"
        );
        assert_eq!(Flags(0).to_string(), "none");
        assert!(describe_boot_status(Some(WDIOF_CARDRESET)).contains("caused by the watchdog"));
        assert!(describe_boot_status(Some(0)).contains("not caused"));
    }

    #[test]
    fn open_errors_say_what_to_do() {
        let busy = DeviceError::Open {
            path: "/dev/watchdog0".into(),
            errno: Errno::EBUSY,
        };
        assert!(busy.to_string().contains("RuntimeWatchdogSec="));
        let missing =
            Device::open(Path::new("/nonexistent/watchdog"), Duration::from_secs(10)).unwrap_err();
        assert!(missing.to_string().contains("Device=none"), "{missing}");
    }
}
