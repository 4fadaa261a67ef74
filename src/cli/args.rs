//! The command line's words: the command, its arguments and the shared
//! flags, and the usage text that says them.

use crate::config;
use std::path::PathBuf;

pub(super) const USAGE: &str = "\
usage: heartwatch [--config DIR] COMMAND
commands:
  run [--dry-run] [--syslog] [--verbose]   the daemon (what the systemd unit starts)
  check                                    validate the configuration and rules
  status [--json]                          the running daemon's view of its rules
  beat [--] NAME                           touch heartbeat rule NAME's file
  memtest SIZE [--passes N]                test SIZE of fresh memory (e.g. 64M, 1G)
  import-watchdog-conf [FILE] --to DIR [--force]
                                           translate watchdog.conf (default
                                           /etc/watchdog.conf) into DIR
  agent                                    one answer to HAProxy's agent check (socket-activated)
options:
  --config DIR   configuration root (default /etc/heartwatch)
  --to DIR       where import-watchdog-conf writes (inside /etc only if named so)
  --force        let import-watchdog-conf replace files that exist
  --             what follows are words, not options (a rule named -x)
";

/// Parsed arguments: the command, its words, and the shared flags.
pub(super) struct Args {
    pub command: String,
    pub words: Vec<String>,
    pub root: PathBuf,
    pub dry_run: bool,
    pub syslog: bool,
    pub verbose: bool,
    /// `import-watchdog-conf`'s directory, as written.
    pub to: Option<String>,
    pub force: bool,
    /// `status --json`.
    pub json: bool,
}

/// `--config`'s directory made absolute (against the working directory,
/// without following symlinks), so that what the daemon writes and what
/// `check` and `status` print names it wherever they are read.
fn absolute(dir: &str) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir))
}

pub(super) fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        words: Vec::new(),
        root: PathBuf::from(config::DEFAULT_ROOT),
        dry_run: false,
        syslog: false,
        verbose: false,
        to: None,
        force: false,
        json: false,
    };
    let mut iter = raw.iter();
    let mut only_words = false;
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            s if only_words && args.command.is_empty() => args.command = s.to_string(),
            s if only_words => args.words.push(s.to_string()),
            "--" => only_words = true,
            "--config" | "-c" => {
                let dir = iter.next().ok_or("--config needs a directory")?;
                args.root = absolute(dir);
            }
            s if s.starts_with("--config=") => args.root = absolute(&s[9..]),
            "--to" => args.to = Some(iter.next().ok_or("--to needs a directory")?.clone()),
            s if s.starts_with("--to=") => args.to = Some(s[5..].to_string()),
            "--force" => args.force = true,
            "--dry-run" => args.dry_run = true,
            "--syslog" => args.syslog = true,
            "--verbose" | "-v" => args.verbose = true,
            "--json" => args.json = true,
            "--help" | "-h" => args.command = "help".into(),
            s if s.starts_with('-') && s.len() > 1 && args.command != "memtest" => {
                return Err(format!("unknown option {s}"));
            }
            s if args.command.is_empty() => args.command = s.to_string(),
            s => args.words.push(s.to_string()),
        }
    }
    if args.command.is_empty() {
        return Err("no command given".into());
    }
    if (args.to.is_some() || args.force) && args.command != "import-watchdog-conf" {
        return Err("--to and --force are options of import-watchdog-conf".into());
    }
    if args.json && args.command != "status" {
        return Err(format!("--json is for status, not {}", args.command));
    }
    Ok(args)
}

/// How many words `command` takes, where that is fixed.
pub(super) fn words_wanted(command: &str) -> Option<usize> {
    match command {
        "run" | "check" | "status" | "agent" => Some(0),
        "beat" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(raw: &[&str]) -> Result<(String, Vec<String>), String> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        parse_args(&raw).map(|a| (a.command, a.words))
    }

    #[test]
    fn a_double_dash_ends_the_options() {
        assert_eq!(
            words(&["beat", "--", "-x"]),
            Ok(("beat".into(), vec!["-x".into()]))
        );
        assert_eq!(
            words(&["--", "beat", "-x"]),
            Ok(("beat".into(), vec!["-x".into()]))
        );
        assert_eq!(
            words(&["beat", "--", "--config"]),
            Ok(("beat".into(), vec!["--config".into()]))
        );
        assert!(words(&["beat", "-x"]).is_err());
        assert!(words(&["check", "--force"]).is_err());
        assert!(words(&["import-watchdog-conf", "--to", "/d", "--force"]).is_ok());
        assert!(words(&["--"]).is_err());
    }
}
