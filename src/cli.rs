//! The command line: parses arguments and maps every error to an exit code.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("memtest") => crate::memtest::command(&args[1..]),
        #[cfg(feature = "test-hooks")]
        Some("crash-test") => crate::crash::crash_test_command(&args[1..]),
        _ => ExitCode::SUCCESS,
    }
}
