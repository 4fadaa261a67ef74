//! The daemon's identity in its status file: the line the daemon writes
//! and `heartwatch status` reads to know whether the process that wrote
//! the status still runs.

/// The status file's line by which `status` knows the daemon that wrote
/// it: the PID, that PID's start time (clock ticks after boot, as in
/// `/proc/PID/stat`) and the boot. A PID that another process took since,
/// in this boot or a later one, is then not taken for the daemon.
pub fn line() -> String {
    let pid = std::process::id() as i32;
    let start = crate::process::start_time(pid).map_or("unknown".into(), |s| s.to_string());
    format!("identity: pid {pid} start {start} boot {}", boot_id())
}

/// This boot's random ID, or `unknown`.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What an identity line (see [`line`]) says, as written.
#[derive(Debug, PartialEq, Eq)]
pub struct Written<'a> {
    pub pid: &'a str,
    pub start: &'a str,
    pub boot: &'a str,
}

/// The identity line of a status file, if it has one in the form `line`
/// writes.
pub fn read(text: &str) -> Option<Written<'_>> {
    let line = text.lines().find_map(|l| l.strip_prefix("identity: "))?;
    match line.split(' ').collect::<Vec<_>>()[..] {
        ["pid", pid, "start", start, "boot", boot] => Some(Written { pid, start, boot }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let text = format!("heartwatch\n{}\nrules: 0\n", line());
        let written = read(&text).unwrap();
        assert_eq!(written.pid, std::process::id().to_string());
        assert_eq!(written.boot, boot_id());
        assert_eq!(read("identity: pid 1 start\n"), None);
    }
}
