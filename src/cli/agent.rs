//! `heartwatch agent`: one answer to HAProxy's agent check, then exit.
//!
//! systemd starts it per connection (`heartwatch-agent.socket`,
//! `Accept=yes`), with the accepted socket as standard input and output;
//! the daemon itself stays free of network code. The answer is the one
//! the engine put in the status record's `agent` line, said in HAProxy's
//! words (its configuration manual, "agent-check"):
//!
//! - `up ready`: the server is up, and a drain the agent asked for before
//!   ends (`ready` is what ends an administrative DRAIN or MAINT);
//! - `drain #REASON`: no new connections but persistent ones (a rule with
//!   `[Escalate] Drain=yes` fails, or a reboot waits out `[Reboot] Drain=`);
//! - `down #REASON`: the reboot is past its drain, or there is no daemon
//!   to vouch for the host: no record, a damaged one, or one whose writer
//!   no longer runs (judged as `heartwatch status` does: its PID, that
//!   PID's start time and the boot).
//!
//! The agent never blocks for long: it reads nothing before it answers
//! (HAProxy may send nothing), it reads only a regular file on the
//! runtime directory's tmpfs, and a guard thread answers `down` and exits
//! if the whole run takes longer than [`BOUND`]. After the answer it reads
//! and drops what the peer sent until the peer closes (at most
//! [`LINGER`]), so that closing does not reset the connection under an
//! answer not yet read.

use super::files::{read_regular, read_regular_bounded};
use super::status::{Verdict, judge, runtime_dir_of};
use crate::config;
use crate::regular::Symlink;
use crate::report::{EXIT_FAILURE, complain};
use crate::status::{self, Answer};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest a run may take before the guard answers `down` and exits.
pub const BOUND: Duration = Duration::from_secs(2);
/// How long the agent waits for the peer to close after the answer.
const LINGER: Duration = Duration::from_millis(500);
/// The longest reason said to HAProxy, in bytes.
const REASON_MAX: usize = 120;

/// Whether an answer was written: only one ever is.
static ANSWERED: AtomicBool = AtomicBool::new(false);

pub(super) fn agent(root: &Path) -> Result<(), u8> {
    std::thread::spawn(|| {
        std::thread::sleep(BOUND);
        complain!(
            "heartwatch agent: no answer within {}s; answering down",
            BOUND.as_secs()
        );
        let _ = answer(Answer::Down, "heartwatch agent timed out");
        std::process::exit(EXIT_FAILURE.into());
    });
    let (word, reason) = decide(root);
    answer(word, &reason).map_err(|e| {
        complain!("heartwatch agent: cannot write the answer: {e}");
        EXIT_FAILURE
    })?;
    linger();
    Ok(())
}

/// The answer and its reason, from the status record.
fn decide(root: &Path) -> (Answer, String) {
    let path = runtime_dir(root).join("status");
    let bytes = match read_regular_bounded(&path, Symlink::Refuse, status::MAX_RECORD) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            complain!("heartwatch agent: {}: too large", path.display());
            return down("heartwatch status record is damaged");
        }
        Err(e) => {
            complain!(
                "heartwatch agent: {}: {}",
                path.display(),
                e.explain("the agent reads only a regular file")
            );
            return down("no heartwatch status (is heartwatch running?)");
        }
    };
    let record = match status::parse(&bytes) {
        Ok(record) => record,
        Err(why) => {
            complain!("heartwatch agent: {}: {why}", path.display());
            return down("heartwatch status record is damaged");
        }
    };
    match judge(&record) {
        Verdict::Running => {}
        Verdict::Unverified(why) => complain!("heartwatch agent: {why}"),
        Verdict::NotRunning(why) => {
            complain!("heartwatch agent: {why}");
            return down(if record.stopped.is_some() {
                "heartwatch stopped"
            } else {
                "heartwatch is not running"
            });
        }
    }
    match record.agent {
        Some(agent) => (agent.answer, agent.reason),
        None => down("heartwatch status has no agent answer"),
    }
}

fn down(reason: &str) -> (Answer, String) {
    (Answer::Down, reason.to_string())
}

/// One line of the agent-check protocol for `word` and `reason`.
pub fn line(word: Answer, reason: &str) -> String {
    let mut out = String::from(match word {
        Answer::Up => "up ready",
        Answer::Drain => "drain",
        Answer::Down => "down",
    });
    let reason = reason.trim();
    if !reason.is_empty() {
        out.push_str(" #");
        let mut end = 0;
        for (i, c) in reason.char_indices() {
            if i + c.len_utf8() > REASON_MAX {
                break;
            }
            end = i + c.len_utf8();
        }
        // No control character (a newline ends the answer) reaches HAProxy.
        out.extend(
            reason[..end]
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c }),
        );
    }
    out.push('\n');
    out
}

/// Writes the answer, unless one was written already.
fn answer(word: Answer, reason: &str) -> std::io::Result<()> {
    if ANSWERED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(line(word, reason).as_bytes())?;
    out.flush()
}

/// Reads and drops what the peer sends until it closes, for [`LINGER`] at
/// most and 64 KiB at most, never blocking in a read.
fn linger() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let until = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < 64 << 10 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        // POLLIN, POLLHUP or POLLERR: the read does not block.
        match stdin.lock().read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// `RuntimeDirectory=` of heartwatch.conf, read as `status` reads it but
/// without loading the rules (the agent needs none, and must be quick).
fn runtime_dir(root: &Path) -> PathBuf {
    let default = PathBuf::from("/run/heartwatch");
    let conf = root.join("heartwatch.conf");
    let text = match read_regular(&conf, Symlink::Follow) {
        Ok(text) => text,
        Err(e) => {
            complain!(
                "heartwatch agent: {}: {}; looking in {}",
                conf.display(),
                e.explain("heartwatch reads only a regular file"),
                default.display()
            );
            return default;
        }
    };
    match config::parse_settings(&conf, &text) {
        Ok((_, daemon, _)) => daemon.runtime_dir,
        Err(_) => runtime_dir_of(&text).unwrap_or(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_one_line_in_haproxys_words() {
        assert_eq!(line(Answer::Up, ""), "up ready\n");
        assert_eq!(line(Answer::Up, "  "), "up ready\n");
        assert_eq!(
            line(Answer::Drain, "rule web: stale"),
            "drain #rule web: stale\n"
        );
        assert_eq!(
            line(Answer::Down, "a\nb\r\tc\u{1b}"),
            "down #a b  c \n",
            "no control character gets through"
        );
        let long = "é".repeat(100);
        let l = line(Answer::Down, &long);
        assert_eq!(l.lines().count(), 1);
        assert!(l.len() <= "down #".len() + REASON_MAX + 1, "{}", l.len());
        assert!(l.ends_with("é\n"), "cut at a character boundary: {l}");
    }
}
