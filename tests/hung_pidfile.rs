//! `check` with a pidfile on a hung mount, through the real binary. In a
//! test binary of its own: it makes this process a child subreaper, so
//! that the reader `check` leaves behind comes here to be reaped, and in a
//! binary shared with other tests it would adopt their orphans too and
//! leave them unreaped.

mod common;
use common::*;
#[path = "common/hangfs.rs"]
mod hangfs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn check_is_not_held_up_by_a_pidfile_on_a_hung_mount() {
    let s = Scratch::new("pidfile-hung");
    s.write_conf("");
    let mnt = s.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    s.write_rule(
        "hung",
        &format!("[Process]\nPidFile={}/{}\n", mnt.display(), hangfs::NAME),
    );
    // The reader that check leaves behind comes to this process when
    // check exits, in check's process group, and is reaped here by group.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let fs = hangfs::HangFs::new();
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(s.conf())
        .arg("check")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    fs.mount_in_child(&mut command, &mnt);
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut server = fs.serve();
    // The limit only stops a hang; the bound itself is 2s.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let hung = server
        .seen
        .hung_getattrs
        .load(std::sync::atomic::Ordering::SeqCst);
    // Let the reader left behind (and a hung check, on failure) go.
    server.abort();
    let status = status.unwrap_or_else(|| {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("check hung on the pidfile");
    });
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let reaped = loop {
        match nix::sys::wait::waitpid(group, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive)
                if started.elapsed() < Duration::from_secs(60) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other,
        }
    };
    assert!(
        matches!(
            reaped,
            Ok(nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..))
        ),
        "the reader left behind: {reaped:?}"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    eprintln!("check ended {took:?} after its start");
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(hung >= 1, "the read never reached the filesystem");
    assert!(
        out.contains("warning: the process rules' pidfiles were not read: reading them did not answer within 2s (a hung mount?)"),
        "{out}"
    );
    assert!(out.contains("rules: 1"), "{out}");
}
