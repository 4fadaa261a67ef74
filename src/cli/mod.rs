//! The command line: parses arguments (`args`), runs a command (one file
//! each: `run`, `check`, `status`, `beat`, `memtest`, `import`, `agent`),
//! and maps every error
//! to an exit code in one place (the codes are in `report`).

mod agent;
mod args;
mod beat;
mod check;
mod check_watches;
mod files;
mod import;
mod memtest;
mod run;
mod status;

pub use beat::touch;
pub use files::OpenError;

use crate::config::{self, Config};
use crate::report::{EXIT_CONFIG, EXIT_USAGE, Report, complain};
use crate::text::Count;
use args::USAGE;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn main() -> ExitCode {
    // Nothing is assumed of what the parent left (process.rs).
    if let Err(e) = crate::process::default_sigchld() {
        complain!("heartwatch: cannot reset SIGCHLD to its default: {e}");
    }
    // Arguments that are not UTF-8 (a --config directory, say) are a usage
    // error, not a panic: the configuration's paths are all UTF-8 text.
    let raw: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(raw) => raw,
        Err(bad) => {
            complain!("heartwatch: argument {bad:?} is not UTF-8\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let args = match args::parse_args(&raw) {
        Ok(args) => args,
        Err(message) => {
            complain!("heartwatch: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args::words_wanted(&args.command).is_some_and(|n| n != args.words.len()) {
        complain!(
            "heartwatch: wrong number of arguments for {}\n{USAGE}",
            args.command
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match args.command.as_str() {
        "help" => {
            let mut report = Report::new();
            report.text(USAGE);
            report.finish(Ok(()))
        }
        "run" => run::run(&args),
        "check" => check::check(&args.root),
        "status" => status::status(&args.root, args.json),
        "beat" => beat::beat(&args.root, &args.words[0]),
        "memtest" => memtest::memtest(&args.words),
        "import-watchdog-conf" => import::import(&args),
        "agent" => agent::agent(&args.root),
        #[cfg(feature = "test-hooks")]
        "crash-test" => return crate::crash::crash_test_command(&args.words),
        other => {
            complain!("heartwatch: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// The configuration, or its errors said on standard error.
fn load(root: &Path) -> Result<Config, u8> {
    config::load(root).map_err(|errors| {
        for e in &errors {
            complain!("{e}");
        }
        complain!(
            "heartwatch: {}: the configuration has {}",
            root.display(),
            Count::of(errors.len(), "error")
        );
        EXIT_CONFIG
    })
}
