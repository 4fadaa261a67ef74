//! Fuzzes the `/proc` parsers: `/proc/PID/stat` (state and start time), a
//! pidfile's PID, and `/proc/self/maps` split into lines the way the crash
//! memory test splits it. Beyond "never panics": a PID is positive and a
//! mapping never ends before it starts.
#![no_main]

use heartwatch::parsers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parsers::parse_stat(data);
    if let Some(pid) = parsers::parse_pid(data) {
        assert!(pid > 0);
    }
    for line in data.split(|&b| b == b'\n') {
        if let Some(m) = parsers::parse_maps_line(line) {
            assert!(m.start <= m.end, "{m:?}");
        }
    }
});
