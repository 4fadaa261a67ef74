//! `heartwatch memtest SIZE`: the crash handler's memory test on demand
//! (the test itself is `crate::memtest`).

use crate::memtest::Failure;
use crate::report::{EXIT_FAILURE, EXIT_USAGE, Report, complain};
use std::io::Write;

pub(super) fn memtest(words: &[String]) -> Result<(), u8> {
    let mut report = Report::new();
    let result = crate::memtest::command(words, &mut |piece| {
        report.text(piece);
        report.flush();
    });
    let result = result.map_err(|failure| match failure {
        Failure::Usage(_) => {
            complain!("{failure}");
            EXIT_USAGE
        }
        Failure::Map { .. } => {
            complain!("{failure}");
            EXIT_FAILURE
        }
        Failure::Errors(_) => EXIT_FAILURE,
    });
    report.finish(result)
}
