//! The hardware watchdog, through the kernel's watchdog API
//! (`linux/watchdog.h`): identity, timeout, boot status, keepalive and the
//! magic close. Dropping a `Device` closes it *without* the magic close, so
//! the watchdog stays armed: once heartwatch feeds it, only an orderly stop
//! disarms. Before that, a device that fails while it is being opened, and
//! the `Devices` of a start-up that fails, are disarmed.

mod flags;

use flags::WDIOF_MAGICCLOSE;
#[cfg(feature = "test-hooks")]
use flags::WDIOF_SETTIMEOUT;
pub use flags::{Flags, WDIOF_CARDRESET, describe_boot_status};

use crate::sys::Errno;
use crate::sys::watchdog::{self, WatchdogInfo};
use crate::text::DurationText;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    NotADevice {
        path: PathBuf,
        kind: &'static str,
    },
    /// A character device of another class (a tty, `/dev/null`).
    NotAWatchdog {
        path: PathBuf,
        major: u64,
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
            DeviceError::NotADevice { path, kind } => write!(
                f,
                "watchdog {}: is not a character device ({kind}); Device= names watchdog devices such as /dev/watchdog0, or is none",
                path.display()
            ),
            DeviceError::NotAWatchdog { path, major } => write!(
                f,
                "watchdog {}: is not a watchdog (a character device of major {major}; watchdogs are misc devices, major {MISC_MAJOR}, or of the watchdog class in /proc/devices); Device= names watchdog devices such as /dev/watchdog0, or is none",
                path.display()
            ),
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
    /// Whether the driver said its timeout; if not, `timeout` is the one asked.
    timeout_known: bool,
    asked: Duration,
    boot_status: Option<u32>,
    keepalive_ioctl: bool,
}

impl Device {
    /// Opens and arms the device, sets the timeout and reads back what the
    /// driver really set. Opening a watchdog arms it, so this is the point
    /// after which the device must be fed.
    pub fn open(path: &Path, asked: Duration) -> Result<Device, DeviceError> {
        refuse_what_is_not_a_device(path)?;
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| DeviceError::Open {
            path: path.to_path_buf(),
            errno: Errno::EINVAL,
        })?;
        // O_NOCTTY: should a device that is also a terminal get this far, it
        // does not become the daemon's controlling terminal. No O_NONBLOCK:
        // the kernel's watchdog open does not block, and a driver's write
        // (the keepalive, the magic close) must be done when it returns.
        let fd = crate::sys::fs::open(&c_path, libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOCTTY)
            .map_err(|errno| DeviceError::Open {
            path: path.to_path_buf(),
            errno,
        })?;
        let mut device = Device {
            path: path.to_path_buf(),
            fd,
            info: WatchdogInfo::default(),
            timeout: asked,
            timeout_known: false,
            asked,
            boot_status: None,
            keepalive_ioctl: true,
        };
        // The open armed it: a device that then fails to answer is
        // disarmed, not left to reset the host.
        match device.configure() {
            Ok(()) => Ok(device),
            Err(e) => {
                abandon(device);
                Err(e)
            }
        }
    }

    /// Reads the driver's identity and boot status, asks for the timeout and
    /// reads back the one the driver set.
    fn configure(&mut self) -> Result<(), DeviceError> {
        let path = self.path.clone();
        let ioctl_error = |what, errno| DeviceError::Ioctl {
            path: path.clone(),
            what,
            errno,
        };
        let fd = self.fd.as_fd();
        match watchdog::get_support(fd, &mut self.info) {
            #[cfg(feature = "test-hooks")]
            Err(Errno::ENOTTY) if standin_timeout().is_some() => {
                self.info.options = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE;
                self.info.identity[..8].copy_from_slice(b"stand-in");
            }
            Ok(_) | Err(Errno::ENOTTY) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(ioctl_error("WDIOC_GETSUPPORT", e)),
        }
        if let Ok(status) = watchdog::get_boot_status(fd) {
            self.boot_status = Some(status as u32);
        }
        let seconds = self.asked.as_secs().min(i32::MAX as u64) as libc::c_int;
        match watchdog::set_timeout(fd, seconds) {
            Ok(seconds) => {
                self.timeout = Duration::from_secs(seconds.max(0) as u64);
                self.timeout_known = true;
            }
            Err(Errno::EOPNOTSUPP) | Err(Errno::ENOTTY) | Err(Errno::EINVAL) => {
                let current = get_timeout(fd).map_err(|e| ioctl_error("WDIOC_GETTIMEOUT", e))?;
                self.timeout = Duration::from_secs(current.max(0) as u64);
                self.timeout_known = true;
            }
            Err(e) => return Err(ioctl_error("WDIOC_SETTIMEOUT", e)),
        }
        if let Ok(current) = get_timeout(fd)
            && current > 0
        {
            self.timeout = Duration::from_secs(current as u64);
        }
        Ok(())
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
        let fd = self.fd.as_fd();
        if self.keepalive_ioctl {
            match watchdog::keepalive(fd) {
                Ok(_) => return Ok(()),
                Err(Errno::ENOTTY) | Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => {
                    self.keepalive_ioctl = false;
                }
                Err(e) => return Err(e),
            }
        }
        write_byte(fd, b'\0')
    }

    /// Orderly stop: the magic close disarms drivers that support it.
    pub fn disarm(self) -> Result<(), Errno> {
        write_byte(self.fd.as_fd(), b'V')
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

    /// Whether the driver says the last reset was its own (`None`: it
    /// does not say).
    pub fn last_reset_was_watchdog(&self) -> Option<bool> {
        self.boot_status.map(|s| s & flags::WDIOF_CARDRESET != 0)
    }

    pub fn has_magic_close(&self) -> bool {
        self.info.options & WDIOF_MAGICCLOSE != 0
    }
}

/// Only a character device can be a watchdog. Anything else named by
/// mistake is refused before it is opened: a FIFO without a reader would
/// hold the open for ever, and a regular file would have its first byte
/// overwritten by the magic close that a failed start writes.
fn refuse_what_is_not_a_device(path: &Path) -> Result<(), DeviceError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::metadata(path) else {
        // The open says why, with advice (no such device, permission).
        return Ok(());
    };
    let kind = meta.file_type();
    if kind.is_char_device() {
        return refuse_what_is_not_a_watchdog(path, meta.rdev());
    }
    #[cfg(feature = "test-hooks")]
    if kind.is_file() && std::env::var_os("HEARTWATCH_TEST_STANDIN_TIMEOUT").is_some() {
        return Ok(());
    }
    Err(DeviceError::NotADevice {
        path: path.to_path_buf(),
        kind: crate::sys::regular::kind(meta.mode()),
    })
}

/// The misc major, under which most watchdog drivers register
/// `/dev/watchdog` (misc minor 130).
const MISC_MAJOR: u64 = 10;

/// A character device is a watchdog if it is a misc device or of the
/// watchdog class (`/dev/watchdogN`, whose major `/proc/devices` names).
/// Any other (a tty, `/dev/null`) is refused before it is opened: open(2)
/// on a tty may make it a controlling terminal or wait for a carrier, and
/// the magic close of a failed start would be written to it.
fn refuse_what_is_not_a_watchdog(path: &Path, rdev: u64) -> Result<(), DeviceError> {
    let major = u64::from(libc::major(rdev));
    if major == MISC_MAJOR || Some(major) == watchdog_major() {
        return Ok(());
    }
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("HEARTWATCH_TEST_STANDIN_TIMEOUT").is_some() {
        return Ok(());
    }
    Err(DeviceError::NotAWatchdog {
        path: path.to_path_buf(),
        major,
    })
}

/// The major of the watchdog class, from the `Character devices:` part of
/// `/proc/devices` (`248 watchdog`).
fn watchdog_major() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/devices").ok()?;
    text.lines()
        .skip_while(|l| !l.starts_with("Character devices:"))
        .take_while(|l| !l.is_empty())
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [major, "watchdog"] => major.parse().ok(),
            _ => None,
        })
}

/// `WDIOC_GETTIMEOUT`: the timeout the driver set, in seconds.
fn get_timeout(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    match watchdog::get_timeout(fd) {
        Ok(current) => Ok(current),
        #[cfg(feature = "test-hooks")]
        Err(Errno::ENOTTY) => standin_timeout().ok_or(Errno::ENOTTY),
        Err(e) => Err(e),
    }
}

/// Tests only (`HEARTWATCH_TEST_STANDIN_TIMEOUT=SECONDS`): a file that
/// answers no watchdog ioctl (a regular file, which is then accepted as a
/// device, or `/dev/full`) stands in for a watchdog with magic close whose
/// driver set this timeout; with a value that is not a number, for one
/// whose driver answers neither `WDIOC_GETSUPPORT` nor `WDIOC_GETTIMEOUT`.
/// Its feeds are written `\0` bytes and its magic close a `V`, so a test
/// reads what the daemon did to it from the file.
#[cfg(feature = "test-hooks")]
fn standin_timeout() -> Option<libc::c_int> {
    std::env::var("HEARTWATCH_TEST_STANDIN_TIMEOUT")
        .ok()?
        .parse()
        .ok()
}

/// The open watchdog devices. Until `take_over_feeding`, heartwatch has not
/// taken on their feeding, so dropping them disarms each with the magic
/// close at once, and says so at critical priority after the cause (see
/// [`report_abandoned`]): a start-up that fails once a
/// device is open (another device missing or busy, a timeout that does not
/// fit, a refused first keepalive, anything later) must not leave the host
/// to a watchdog that nobody feeds, which would reset it at every boot.
/// Once taken over, dropping them closes them without the magic close, as
/// a crash does: the hardware stays the last line of defence, and only the
/// orderly stop disarms.
#[derive(Debug, Default)]
pub struct Devices {
    list: Vec<Device>,
    taken_over: bool,
}

impl Devices {
    pub fn with_capacity(capacity: usize) -> Devices {
        Devices {
            list: Vec::with_capacity(capacity),
            taken_over: false,
        }
    }

    /// Keeps a device just opened (and so armed).
    pub fn hold(&mut self, device: Device) -> &Device {
        self.list.push(device);
        &self.list[self.list.len() - 1]
    }

    /// Start-up is complete: from here on the daemon feeds the devices.
    pub fn take_over_feeding(&mut self) {
        self.taken_over = true;
    }

    /// The orderly stop: hands the devices over to the caller, which
    /// decides for each whether to disarm it. They are then no longer
    /// disarmed when dropped.
    pub fn into_orderly_stop(mut self) -> Vec<Device> {
        std::mem::take(&mut self.list)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Device> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Device> {
        self.list.iter_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        if self.taken_over {
            return;
        }
        for device in self.list.drain(..) {
            abandon(device);
        }
    }
}

/// What failed starts did to their devices, said once the cause is: see
/// [`report_abandoned`].
static ABANDONED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Disarms a device heartwatch opened but never took on feeding at once,
/// and keeps what that means for the host to be said after the cause.
fn abandon(device: Device) {
    let path = device.path.display().to_string();
    let within = if device.timeout_known {
        format!("within {}", DurationText(device.timeout))
    } else {
        "when its timeout runs out (its timeout is unknown: the driver did not say it)".to_string()
    };
    let magic_close = device.has_magic_close();
    const WHY: &str =
        "heartwatch failed to start after opening it (the cause is logged before this)";
    const FIX: &str = "fix the cause and restart heartwatch (systemctl restart heartwatch)";
    let said = match device.disarm() {
        Ok(()) if magic_close => format!(
            "watchdog {path}: disarmed (magic close): {WHY}, and nothing else feeds it; this host runs without it until heartwatch starts: {FIX}"
        ),
        Ok(()) => format!(
            "watchdog {path}: closed after writing the magic close, but the driver does not announce magic close: {WHY}; if it stays armed, it resets this host {within}: {FIX}"
        ),
        Err(e) => format!(
            "watchdog {path}: the magic close failed ({e}): {WHY}; the watchdog may reset this host {within}: {FIX}"
        ),
    };
    ABANDONED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(said);
}

/// Says at critical priority what failed starts did to their devices. The
/// caller says the failure's cause first, so the log reads in causal order.
pub fn report_abandoned() {
    let said = std::mem::take(
        &mut *ABANDONED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for line in said {
        crate::critical!("{line}");
    }
}

fn write_byte(fd: BorrowedFd<'_>, byte: u8) -> Result<(), Errno> {
    match crate::sys::fs::write(fd, &[byte]) {
        Ok(1) => Ok(()),
        Ok(_) => Err(Errno::last()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::flags::{WDIOF_CARDRESET, WDIOF_SETTIMEOUT};
    use super::*;

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

    /// A regular file in the place of a device: feeds and the magic close
    /// are written bytes.
    fn standin(path: &Path) -> Device {
        let file = std::fs::File::create(path).unwrap();
        Device {
            path: path.to_path_buf(),
            fd: file.into(),
            info: WatchdogInfo {
                options: WDIOF_MAGICCLOSE,
                ..WatchdogInfo::default()
            },
            timeout: Duration::from_secs(10),
            timeout_known: true,
            asked: Duration::from_secs(10),
            boot_status: None,
            keepalive_ioctl: false,
        }
    }

    /// A temporary directory, removed when dropped (also when a test fails).
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn devices_are_disarmed_when_dropped_only_before_the_take_over() {
        let temp = TempDir(std::env::temp_dir().join(format!("hw-devices-{}", std::process::id())));
        let dir = temp.0.clone();
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        let mut failed_start = Devices::with_capacity(2);
        failed_start.hold(standin(&a));
        failed_start.hold(standin(&b));
        drop(failed_start);
        let mut started = Devices::with_capacity(1);
        started.hold(standin(&c));
        started.take_over_feeding();
        for device in started.iter_mut() {
            device.feed().unwrap();
        }
        drop(started);
        let mut handed_over = Devices::with_capacity(1);
        handed_over.hold(standin(&dir.join("d")));
        let devices = handed_over.into_orderly_stop();
        drop(devices);
        let read = |p: &Path| std::fs::read(p).unwrap();
        assert_eq!((read(&a), read(&b)), (b"V".to_vec(), b"V".to_vec()));
        assert_eq!(read(&c), b"\0".to_vec(), "fed, then closed armed");
        assert_eq!(read(&dir.join("d")), b"".to_vec(), "the new owner decides");
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
