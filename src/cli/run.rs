//! `heartwatch run`: the daemon, with its errors logged and mapped to an
//! exit code.

use super::args::Args;
use crate::daemon::{self, DaemonError};
use crate::report::{EXIT_CONFIG, EXIT_FAILURE};
use crate::text::Count;

pub(super) fn run(args: &Args) -> Result<(), u8> {
    crate::logger::init(args.verbose, args.syslog);
    let options = daemon::Options {
        dry_run: args.dry_run,
    };
    daemon::run(&args.root, options).map_err(|e| {
        match &e {
            DaemonError::Config(errors) => {
                for error in errors {
                    log::error!("{error}");
                }
                log::error!(
                    "not starting: the configuration has {}",
                    Count::of(errors.len(), "error")
                );
            }
            other => log::error!("{other}"),
        }
        crate::device::report_abandoned();
        match e {
            DaemonError::Config(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    })
}
