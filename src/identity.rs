//! The daemon's identity in its status: who wrote it, so that `heartwatch
//! status` knows whether the process that wrote the status still runs.

use crate::status::Identity;

/// This process: its PID, that PID's start time (clock ticks after boot,
/// as in `/proc/PID/stat`) and the boot. A PID that another process took
/// since, in this boot or a later one, is then not taken for the daemon.
pub fn this_process() -> Identity {
    let pid = std::process::id();
    Identity {
        pid,
        start_time: crate::process::start_time(pid as i32),
        boot_id: boot_id(),
    }
}

/// This boot's random ID, if it can be read.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_known_by_its_start_time_and_boot() {
        let me = this_process();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_time.is_some());
        assert_eq!(me.boot_id, boot_id());
    }
}
