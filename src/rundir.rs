//! The runtime directory (`RuntimeDirectory=`): the status file, written by
//! a thread of its own, and `next-stop`, through which the package scripts
//! ask the next stop to keep the watchdog armed (upgrade) or to disarm it
//! (removal), whatever `KeepArmedOnStop=` says.

use crate::atomic::{Dir, DirError, Writer};
use crate::config::DurationText;
use std::ffi::CStr;
use std::path::Path;
use std::time::Duration;

const NEXT_STOP: &CStr = c"next-stop";

/// What `next-stop` asks of the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStop {
    KeepArmed,
    Disarm,
}

/// Starts the status file's writer, waiting at most `bound` for the
/// directory. The writer first removes `next-stop`: a request is for the
/// stop that follows it, not for a later one. A directory others can write
/// in is refused; one that does not answer in time is logged at critical
/// priority, and the status reaches it if it answers.
pub fn open_status_file(dir: &Path, bound: Duration) -> std::io::Result<Writer> {
    let (writer, opened) = Writer::start(dir, "status", remove_next_stop)?;
    match opened.recv_timeout(bound) {
        Ok(Ok(())) => Ok(writer),
        Ok(Err(DirError::Refused(why))) => {
            Err(std::io::Error::other(format!("{}: {why}", dir.display())))
        }
        Ok(Err(DirError::Io(e))) => Err(e),
        Err(_) => {
            crate::critical!(
                "runtime directory {}: no answer within {}; starting without a status file (written when it answers)",
                dir.display(),
                DurationText(bound)
            );
            Ok(writer)
        }
    }
}

fn remove_next_stop(dir: &Dir) {
    let path = dir.path().join("next-stop");
    match dir.remove(NEXT_STOP) {
        Ok(true) => log::info!("{}: removed (it was for an earlier stop)", path.display()),
        Ok(false) => {}
        Err(e) => log::error!(
            "{}: cannot remove it: {e}; if it holds a request, the next stop follows it instead of KeepArmedOnStop=",
            path.display()
        ),
    }
}

/// What `next-stop` asks of this stop, read within `bound`; None when it
/// asks nothing. Its absence is the normal case; every other failure to
/// read it is logged with what is done instead (`keep_armed_on_stop`
/// decides).
pub fn read_next_stop(
    status_file: &Writer,
    bound: Duration,
    keep_armed_on_stop: bool,
) -> Option<NextStop> {
    let path = status_file.path().with_file_name("next-stop");
    let fallback = if keep_armed_on_stop {
        "KeepArmedOnStop=yes: left armed"
    } else {
        "KeepArmedOnStop=no: disarmed"
    };
    let Some(dir) = status_file.dir() else {
        log::error!(
            "{}: not read, the runtime directory never answered; {fallback}",
            path.display()
        );
        return None;
    };
    let text = match dir.read_within(NEXT_STOP, bound) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            log::error!("{}: {e}; ignored, {fallback}", path.display());
            return None;
        }
    };
    match String::from_utf8_lossy(&text).trim() {
        "keep-armed" => Some(NextStop::KeepArmed),
        "disarm" => Some(NextStop::Disarm),
        other => {
            log::warn!(
                "{}: unknown request {other:?} (keep-armed or disarm); ignored, {fallback}",
                path.display()
            );
            None
        }
    }
}
