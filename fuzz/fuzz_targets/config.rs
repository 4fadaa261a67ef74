//! Fuzzes the configuration parser: any bytes, read the way a rule file or
//! `heartwatch.conf` is read (UTF-8 or refused), through the INI reader, the
//! rule parser and the settings parser. Beyond "never panics", what parses
//! must be valid: absolute paths, checks no rarer than the maximum age,
//! durations that print back as themselves.
#![no_main]

use heartwatch::config::{self, DurationText, Watch};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/heartwatch/rules.d/fuzz.rule");
    if let Ok(sections) = config::parse_ini(text) {
        for entry in sections.iter().flat_map(|s| &s.entries) {
            assert!(!entry.key.is_empty() && !entry.value.is_empty());
            // No value carries a comment: comments go on their own line.
            assert_eq!(config::comment_start(&entry.value), None);
            if let Ok(d) = config::parse_duration(&entry.value) {
                let shown = DurationText(d).to_string();
                assert_eq!(config::parse_duration(&shown), Ok(d), "{shown}");
            }
        }
    }
    match config::parse_rule(path, "fuzz", text) {
        Ok(rule) => match rule.watch {
            Watch::Heartbeat(hb) => {
                assert!(hb.file.is_absolute());
                assert!(!hb.max_age.is_zero());
                assert!(hb.check_interval <= hb.max_age);
            }
            Watch::Process(p) => assert!(!p.check_interval.is_zero()),
            Watch::Interface(i) => {
                assert!((1..=15).contains(&i.name.len()));
                assert!(!i.name.contains('/'));
                assert!(!i.check_interval.is_zero());
                assert!(i.check_interval <= i.within);
            }
            Watch::System(s) => {
                assert!(!s.check_interval.is_zero());
                assert!(s.hold.is_zero() || s.hold >= s.check_interval);
            }
            Watch::Command(c) => {
                assert!(c.run.program.is_absolute());
                assert!(!c.timeout.is_zero());
                assert!(c.timeout <= c.interval);
            }
        },
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(!e.message.is_empty());
            }
        }
    }
    if let Ok((watchdog, daemon, _reboot)) = config::parse_settings(path, text) {
        assert!(watchdog.feed_interval <= watchdog.timeout / 2);
        assert!(!watchdog.feed_interval.is_zero());
        assert!(daemon.state_dir.is_absolute() && daemon.runtime_dir.is_absolute());
    }
});
