//! What a command says: its report on standard output ([`Report`], `say!`),
//! complaints on standard error (`complain!`), and the exit codes shared by
//! every command.
//!
//! Exit codes: 0 success; 1 a runtime failure (device, I/O, daemon not
//! running for `status`); 2 a usage error; 3 an invalid configuration. A
//! reader that closes the output early (`heartwatch check | head -1`)
//! changes nothing: the rest of the output is dropped, the code stays.

use std::fmt;
use std::io::Write;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 3;

/// Says something on standard error. When that is closed too there is
/// nowhere left to say it, so a failed write is dropped. (`std::io::Write`
/// must be in scope where it is used.)
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use complain;

/// Writes one line of a command's report (see [`Report`]).
macro_rules! say {
    ($report:expr, $($arg:tt)*) => {
        $report.line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// Where writing standard output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Writing,
    /// The reader went away (`| head -1`): the rest is dropped quietly.
    ReaderGone,
    /// Another write error, already said on standard error.
    Failed,
}

/// Standard output for a command's report. A closed pipe ends the report
/// quietly and leaves the command's exit code as it is; any other write
/// error (a full disk) is said once and fails the command.
pub(crate) struct Report {
    out: std::io::StdoutLock<'static>,
    state: Output,
}

impl Report {
    pub(crate) fn new() -> Report {
        Report {
            out: std::io::stdout().lock(),
            state: Output::Writing,
        }
    }

    pub(crate) fn line(&mut self, args: fmt::Arguments) {
        self.text(&format!("{args}\n"));
    }

    pub(crate) fn text(&mut self, text: &str) {
        if self.state == Output::Writing {
            let written = self.out.write_all(text.as_bytes());
            self.record(written);
        }
    }

    /// Shows a line written so far in part (a progress report).
    pub(crate) fn flush(&mut self) {
        if self.state == Output::Writing {
            let flushed = self.out.flush();
            self.record(flushed);
        }
    }

    fn record(&mut self, written: std::io::Result<()>) {
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.state = Output::ReaderGone;
            }
            Err(e) => {
                complain!("heartwatch: cannot write standard output: {e}");
                self.state = Output::Failed;
            }
        }
    }

    /// The command's result, failed if its output could not be written.
    pub(crate) fn finish(mut self, result: Result<(), u8>) -> Result<(), u8> {
        self.flush();
        match self.state {
            Output::Failed => result.and(Err(EXIT_FAILURE)),
            Output::Writing | Output::ReaderGone => result,
        }
    }
}
