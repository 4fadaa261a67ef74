//! `heartwatch memtest SIZE`: the crash handler's memory test on demand
//! (the test itself is `crate::memtest`).

use crate::report::Report;

pub(super) fn memtest(words: &[String]) -> Result<(), u8> {
    let mut report = Report::new();
    let result = crate::memtest::command(words, &mut report);
    report.finish(result)
}
