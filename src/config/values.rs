//! The value parsers: one key's text to a typed value (a duration, a
//! yes/no, a count in a range, an absolute path, a list of devices, a
//! command resolved to its program). They know no key names; the schema
//! puts the key in front of their messages.

use super::types::Argv;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `PATH` repair commands are looked up in and run with.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) fn parse_devices(value: &str) -> Result<Vec<PathBuf>, String> {
    if value == "none" {
        return Ok(Vec::new());
    }
    let mut devices: Vec<PathBuf> = Vec::new();
    for word in value.split_whitespace() {
        if word == "none" {
            return Err("`none` cannot be combined with devices".into());
        }
        let path = parse_absolute_path(word)?;
        if devices.contains(&path) {
            return Err(format!("{word} is listed twice"));
        }
        devices.push(path);
    }
    Ok(devices)
}

/// A duration: one or more `<integer><unit>` with units ms, s, min, h, d,
/// e.g. `500ms`, `10s`, `1min30s`. A bare number is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration (examples: 500ms, 10s, 5min, 2h, 1d)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "{text:?} has no unit; write e.g. {number}s or {number}min"
                ));
            }
            "m" => return Err(format!("{text:?}: `m` is ambiguous; write `min` or `ms`")),
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (ms, s, min, h, d)"
                ));
            }
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .filter(|m| *m <= 365 * 86_400_000)
            .ok_or_else(|| format!("{text:?} is longer than a year"))?;
        total += Duration::from_millis(millis);
    }
    if total > Duration::from_secs(365 * 86_400) {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(total)
}

pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not yes or no")),
    }
}

pub(super) fn parse_count(text: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

pub(super) fn parse_absolute_path(text: &str) -> Result<PathBuf, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not an absolute path"));
    }
    if text
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|part| part == b"..")
    {
        return Err(format!("{text:?} contains `..`"));
    }
    // Byte by byte where the path is ASCII (most are): the same test as
    // `char::is_whitespace` there, without decoding.
    let white = if text.is_ascii() {
        text.bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
    } else {
        text.contains(char::is_whitespace)
    };
    if white {
        return Err(format!("{text:?} contains white space"));
    }
    Ok(PathBuf::from(text))
}

/// Splits a command line into words the way a shell would for plain words,
/// 'single' and "double" quotes and backslashes, with no expansion at all,
/// and resolves the program in [`COMMAND_PATH`].
pub(super) fn parse_argv(text: &str) -> Result<Argv, String> {
    let words = split_words(text)?;
    let (first, args) = words.split_first().ok_or("empty command")?;
    let program = if first.contains('/') {
        let path = parse_absolute_path(first)?;
        if !is_executable(&path) {
            return Err(format!("{first} is not an executable file"));
        }
        path
    } else {
        COMMAND_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(first))
            .find(|p| is_executable(p))
            .ok_or_else(|| format!("command {first:?} not found in {COMMAND_PATH}"))?
    };
    Ok(Argv {
        program,
        args: args.to_vec(),
        text: text.to_string(),
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("trailing backslash")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::super::types::DurationText;
    use super::*;

    #[test]
    fn a_path_with_any_white_space_or_dot_dot_is_refused_ascii_or_not() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let path = format!("/srv/a{c}b");
            let refused = parse_absolute_path(&path).is_err();
            assert_eq!(refused, c.is_whitespace(), "{c:?}");
        }
        assert!(parse_absolute_path("/srv/../etc").is_err());
        assert!(parse_absolute_path("/srv/..").is_err());
        assert!(parse_absolute_path("/srv/é/../x").is_err());
        assert!(parse_absolute_path("/srv/..a/b.. /").is_err());
        assert!(parse_absolute_path("/srv/..a/b../c").is_ok());
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1min30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("5m").unwrap_err().contains("ambiguous"));
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(
            parse_duration("5parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("400d").unwrap_err().contains("year"));
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn durations_print_as_written() {
        for text in ["500ms", "10s", "1min30s", "2h", "1d", "1h1min1s1ms", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(DurationText(d).to_string(), text);
        }
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_words(r#"sh -c 'echo "$HOME" | wc' "a b" c\ d"#).unwrap(),
            vec!["sh", "-c", r#"echo "$HOME" | wc"#, "a b", "c d"]
        );
        assert!(split_words("echo 'oops").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn commands_resolve_in_the_fixed_path() {
        let argv = parse_argv("sh -c 'exit 3'").unwrap();
        assert!(argv.program.is_absolute());
        assert_eq!(argv.args, vec!["-c", "exit 3"]);
        assert!(parse_argv("no-such-command-here").is_err());
        assert!(parse_argv("./relative").is_err());
        assert!(parse_argv("").is_err());
    }
}
