//! Probes — stats of heartbeat files, process look-ups, the readings of
//! system rules, reads of network interfaces — run off the feeding path. A
//! `stat` on a hung NFS or FUSE mount can block for ever; here it blocks a
//! worker thread,
//! never the loop that feeds the watchdog. The loop submits a request,
//! goes on, and learns of the answer through an eventfd it polls; a request
//! that is not answered in time is the loop's to call a failure.
//!
//! Queues are allocated when the configuration is loaded and never grow in
//! the steady state: at most one request per rule is in flight, and the
//! engine hands over at most `MAX_LOOKS` (256) at once
//! (`engine/rules/looks.rs`), so that they are never filled to one entry
//! a rule and that memory is not touched.

use crate::heartbeat::Fallback;
use crate::interface::{self, Reading};
use crate::process::{self, Lookup, Target};
use crate::sys::eventfd::EventFd;
use crate::sys::inotify::{self, Inotify};
use crate::sys::stat::{Outcome, stat};
use crate::system;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex};

/// What to look at.
#[derive(Debug)]
pub enum Subject {
    /// `stat` a heartbeat file (the counts and the path in one allocation).
    File(Arc<CStr>),
    /// Find a process; `bool`: open a pidfd on it.
    Process(Arc<Target>, bool),
    /// Read a network interface's state and receive counter.
    Interface(Arc<interface::Paths>),
    /// Read a `[System]` rule's source (`/proc`, `/sys`, `statvfs`).
    System(Arc<system::Source>),
    /// Decide whether a heartbeat directory's events can be trusted
    /// (statfs) and watch it: off the loop, as statfs can hang on NFS.
    WatchDir(Arc<Inotify>, Arc<CString>),
}

/// What was found.
#[derive(Debug)]
pub enum Finding {
    File(Outcome),
    Process(Lookup),
    Interface(Reading),
    System(Result<system::Reading, system::Unread>),
    /// The directory's watch descriptor, or why it is not watched.
    Watch(Result<i32, Fallback>),
}

/// A finished probe, tagged with the ticket it was submitted under.
#[derive(Debug)]
pub struct Answer {
    pub ticket: u64,
    pub finding: Finding,
}

struct Request {
    ticket: u64,
    subject: Subject,
}

struct Shared {
    requests: Mutex<VecDeque<Request>>,
    wake_worker: Condvar,
    answers: Mutex<VecDeque<Answer>>,
    /// Readable when `answers` is not empty.
    answered: EventFd,
}

/// A pool of stat workers.
pub struct Prober {
    shared: Arc<Shared>,
    /// Requests of this turn, handed to the workers together (`flush`).
    staged: VecDeque<Request>,
    workers: usize,
    stuck: usize,
}

/// Workers started with the pool.
const BASE_WORKERS: usize = 2;
/// Workers never exceed this, however many mounts hang.
const MAX_WORKERS: usize = 64;
/// Worker stacks are small: a worker only calls `stat`.
const WORKER_STACK: usize = 64 * 1024;

impl Prober {
    /// Starts the pool with room for `capacity` requests in flight.
    pub fn new(capacity: usize) -> std::io::Result<Prober> {
        let answered = EventFd::new()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(VecDeque::with_capacity(capacity)),
            wake_worker: Condvar::new(),
            answers: Mutex::new(VecDeque::with_capacity(capacity)),
            answered,
        });
        let mut prober = Prober {
            shared,
            staged: VecDeque::with_capacity(capacity),
            workers: 0,
            stuck: 0,
        };
        for _ in 0..BASE_WORKERS {
            prober.spawn_worker()?;
        }
        Ok(prober)
    }

    /// Makes room for `capacity` requests in flight (on reload).
    pub fn reserve(&mut self, capacity: usize) {
        let more = capacity.saturating_sub(self.staged.len());
        self.staged.reserve(more);
        let mut requests = lock(&self.shared.requests);
        let more = capacity.saturating_sub(requests.len());
        requests.reserve(more);
        drop(requests);
        let mut answers = lock(&self.shared.answers);
        let more = capacity.saturating_sub(answers.len());
        answers.reserve(more);
    }

    /// The descriptor the event loop polls for answers.
    pub fn fd(&self) -> RawFd {
        self.shared.answered.raw_fd()
    }

    /// Queues a probe of `subject` at once; the answer comes back with `ticket`.
    #[cfg(test)]
    pub fn submit(&self, ticket: u64, subject: Subject) {
        let mut requests = lock(&self.shared.requests);
        requests.push_back(Request { ticket, subject });
        drop(requests);
        self.shared.wake_worker.notify_one();
    }

    /// Stages a probe of `subject`, for the next `flush`.
    pub fn queue(&mut self, ticket: u64, subject: Subject) {
        self.staged.push_back(Request { ticket, subject });
    }

    /// Hands the staged requests to the workers: one lock, one wake-up
    /// (a worker that leaves requests behind wakes another; workers take
    /// one request at a time, so that a hung stat holds up no other).
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let mut requests = lock(&self.shared.requests);
        requests.extend(self.staged.drain(..));
        drop(requests);
        self.shared.wake_worker.notify_one();
    }

    /// Moves up to `out.len()` answers into `out` under one lock and
    /// returns how many; the eventfd is cleared (one read) once none is
    /// left.
    pub fn take_answers(&self, out: &mut [Option<Answer>]) -> usize {
        let mut answers = lock(&self.shared.answers);
        let n = answers.len().min(out.len());
        for slot in out.iter_mut().take(n) {
            *slot = answers.pop_front();
        }
        if answers.is_empty() {
            crate::sys::memory::rewind(&mut answers);
            self.shared.answered.clear();
        }
        n
    }

    /// Takes the next answer, if any.
    #[cfg(test)]
    pub fn next_answer(&self) -> Option<Answer> {
        let mut answers = lock(&self.shared.answers);
        let answer = answers.pop_front();
        if answers.is_empty() {
            self.shared.answered.clear();
        }
        answer
    }

    /// The loop gave up waiting for a request: the worker holding it may be
    /// stuck for ever, so another one takes its place.
    pub fn request_timed_out(&mut self) {
        self.stuck += 1;
        if self.workers.saturating_sub(self.stuck) < BASE_WORKERS
            && self.workers < MAX_WORKERS
            && let Err(e) = self.spawn_worker()
        {
            log::error!("cannot start another stat worker: {e}");
        }
    }

    /// A request that had timed out was answered after all.
    pub fn late_answer(&mut self) {
        self.stuck = self.stuck.saturating_sub(1);
    }

    fn spawn_worker(&mut self) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("stat".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                // A crash on this thread is reported like one on the loop's.
                // Without its own stack the worker still does its job, but
                // the crash handler would run on the Rust runtime's small
                // alternate stack, where its report may be lost: say so.
                let _stack = crate::crash::prepare_thread()
                    .inspect_err(|e| {
                        log::warn!(
                            "stat worker: {e}; a crash on this thread would run the crash handler on the Rust runtime's small alternate stack, and its report may be lost"
                        )
                    })
                    .ok();
                work(&shared)
            })?;
        self.workers += 1;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker only panics if the process is already crashing; the data
    // under the lock is plain and stays usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn work(shared: &Shared) {
    loop {
        // One request at a time: a stat that hangs must hold no other
        // rule's request. The loop's batch wakes one worker; a worker that
        // leaves requests behind wakes another, so a batch costs as many
        // wake-ups as workers it needs, not one per request.
        let request = {
            let mut requests = lock(&shared.requests);
            let request = loop {
                if let Some(r) = requests.pop_front() {
                    break r;
                }
                requests = shared
                    .wake_worker
                    .wait(requests)
                    .unwrap_or_else(|p| p.into_inner());
            };
            if !requests.is_empty() {
                shared.wake_worker.notify_one();
            }
            crate::sys::memory::rewind(&mut requests);
            request
        };
        let finding = look(&request.subject);
        drop(request.subject);
        let mut answers = lock(&shared.answers);
        let first = answers.is_empty();
        answers.push_back(Answer {
            ticket: request.ticket,
            finding,
        });
        drop(answers);
        if first {
            shared.answered.raise();
        }
    }
}

fn look(subject: &Subject) -> Finding {
    match subject {
        Subject::File(path) => Finding::File(stat(path)),
        Subject::Process(target, pidfd) => Finding::Process(process::lookup(target, *pidfd)),
        Subject::Interface(paths) => Finding::Interface(interface::look(paths)),
        Subject::System(source) => Finding::System(system::read(source)),
        Subject::WatchDir(ino, dir) => Finding::Watch(watch_dir(ino, dir)),
    }
}

/// Watches a heartbeat directory if its filesystem delivers events.
pub(crate) fn watch_dir(ino: &Inotify, dir: &CString) -> Result<i32, Fallback> {
    use nix::errno::Errno;
    let gone = |e: Errno| match e {
        Errno::ENOENT | Errno::ENOTDIR => Fallback::NoDirectory,
        Errno::ENOSPC => Fallback::WatchLimit,
        e => Fallback::Error(e),
    };
    #[cfg(feature = "test-hooks")]
    if crate::daemon::test_watch_limit() {
        return Err(Fallback::WatchLimit);
    }
    match inotify::untrusted_filesystem(dir) {
        Err(e) => Err(gone(e)),
        Ok(Some(kind)) => Err(Fallback::Filesystem(kind)),
        Ok(None) => ino.add_watch(dir, inotify::DIR_MASK).map_err(gone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn answers_come_back_with_their_ticket() {
        let prober = Prober::new(4).unwrap();
        let here = Arc::from(c"/");
        let gone = Arc::from(c"/no/such/file/here");
        prober.submit(7, Subject::File(here));
        prober.submit(9, Subject::File(gone));
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < 2 && start.elapsed() < Duration::from_secs(10) {
            match prober.next_answer() {
                Some(a) => got.push(a),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got.sort_by_key(|a| a.ticket);
        assert_eq!(got[0].ticket, 7);
        assert!(matches!(got[0].finding, Finding::File(Outcome::Found(_))));
        assert_eq!(got[1].ticket, 9);
        assert!(matches!(got[1].finding, Finding::File(Outcome::Missing)));
    }
}
