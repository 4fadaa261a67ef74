//! The configuration a newcomer copies: every configuration block in the
//! Markdown files and the man pages passes the real binary's `check` as
//! written, and the documentation names no file outside the repository.
//!
//! The convention: a configuration block says which file it is on its
//! first line, `# /etc/heartwatch/heartwatch.conf` or
//! `# /etc/heartwatch/rules.d/NAME.rule`. Blocks are Markdown fences
//! (```` ``` ```` or `~~~`) and man-page `.nf`/`.fi` and `.EX`/`.EE`
//! regions. A block that looks like configuration (a fence marked `ini`, a
//! `[Section]` line or a `Key=value` line) without that first line is an
//! error, so a new example cannot slip past the check.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Which file a block is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Conf,
    Rule(String),
}

/// A configuration block found in a document.
#[derive(Debug)]
struct Block {
    /// `path:line` of the block's first line.
    at: String,
    kind: Kind,
    text: String,
}

const CONF_MARK: &str = "# /etc/heartwatch/heartwatch.conf";
const RULE_MARK: &str = "# /etc/heartwatch/rules.d/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file in the repository, and every man page in
/// `packaging/` (so a new one, such as `heartwatch.conf.5`, is read too).
fn documents() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, found);
            } else if name.ends_with(".md") || is_man_page(&path) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo(), &mut found);
    found
}

fn is_man_page(path: &Path) -> bool {
    path.parent() == Some(&repo().join("packaging"))
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.len() == 1 && ('1'..='8').contains(&e.chars().next().unwrap()))
}

/// The blocks of one document, as (first line number, info string, lines).
fn raw_blocks(path: &Path, text: &str) -> Vec<(usize, String, Vec<String>)> {
    let man = is_man_page(path);
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String, Vec<String>)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if let Some((start, fence, info, mut lines)) = open.take() {
            let closes = if man {
                trimmed == fence
            } else {
                trimmed.starts_with(&fence) && trimmed[fence.len()..].trim().is_empty()
            };
            if closes {
                blocks.push((start, info, lines));
            } else {
                if man {
                    if line.starts_with('.') || line.starts_with('\'') {
                        // A request inside the block, not a line of it.
                        open = Some((start, fence, info, lines));
                        continue;
                    }
                    lines.push(unroff(line, &format!("{}:{number}", path.display())));
                } else {
                    lines.push(line.to_string());
                }
                open = Some((start, fence, info, lines));
            }
            continue;
        }
        if man {
            match line.trim_end() {
                ".nf" => open = Some((number + 1, ".fi".into(), String::new(), Vec::new())),
                ".EX" => open = Some((number + 1, ".EE".into(), String::new(), Vec::new())),
                _ => {}
            }
        } else {
            let mark = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
            if let Some(mark) = mark {
                let width = trimmed.chars().take_while(|c| *c == mark).count();
                if width >= 3 {
                    let info = trimmed[width..].trim().to_string();
                    open = Some((number + 1, trimmed[..width].to_string(), info, Vec::new()));
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "{}: a block is never closed",
        path.display()
    );
    blocks
}

/// A line of a man page's block as the reader sees it.
fn unroff(line: &str, at: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('\\') | Some('e') => out.push('\\'),
            Some('&') => {}
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                out.push_str(match name.as_str() {
                    "aq" => "'",
                    "dq" => "\"",
                    "em" => "—",
                    "mu" => "×",
                    other => panic!("{at}: roff escape \\({other} not known to this test"),
                });
            }
            Some('f') => {
                chars.next();
            }
            other => panic!("{at}: roff escape \\{other:?} not known to this test"),
        }
    }
    out
}

/// Whether a block holds configuration, by its look.
fn looks_like_configuration(info: &str, lines: &[String]) -> bool {
    info.split_whitespace().next() == Some("ini")
        || lines.iter().any(|l| {
            let l = l.trim();
            let header = l.starts_with('[')
                && l[1..]
                    .split(']')
                    .next()
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
            // `Timeout=`, `RepairAttempts=`: capitalised words, unlike a
            // shell's `PATH=`.
            let key = l.split_once('=').is_some_and(|(k, _)| {
                let mut c = k.chars();
                c.next().is_some_and(|c| c.is_ascii_uppercase())
                    && c.next().is_some_and(|c| c.is_ascii_lowercase())
                    && k.chars().all(|c| c.is_ascii_alphanumeric())
            });
            header || key
        })
}

/// The configuration blocks of a document; a block that looks like
/// configuration but does not name its file is an error in the list.
fn config_blocks(path: &Path, text: &str) -> (Vec<Block>, Vec<String>) {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let name = path
        .strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string();
    for (start, info, lines) in raw_blocks(path, text) {
        let at = format!("{name}:{start}");
        let first = lines.first().map(|l| l.trim()).unwrap_or_default();
        let kind = if first == CONF_MARK {
            Kind::Conf
        } else if let Some(rule) = first
            .strip_prefix(RULE_MARK)
            .and_then(|f| f.strip_suffix(".rule"))
        {
            Kind::Rule(rule.to_string())
        } else {
            if looks_like_configuration(&info, &lines) {
                errors.push(format!(
                    "{at}: a configuration block must say which file it is on its first line: {CONF_MARK:?} or \"{RULE_MARK}NAME.rule\""
                ));
            }
            continue;
        };
        blocks.push(Block {
            at,
            kind,
            text: lines.join("\n") + "\n",
        });
    }
    (blocks, errors)
}

/// Runs `check` on one block in a tree of its own; returns what is wrong.
fn check_block(block: &Block) -> Option<String> {
    // The examples repair and reboot with systemctl, and check with ping
    // and curl, which `check` looks up (tests/peers.list has them).
    for program in ["systemctl", "ping", "curl"] {
        assert!(
            heartwatch::config::COMMAND_PATH
                .split(':')
                .any(|dir| Path::new(dir).join(program).exists()),
            "the examples name {program}: tests/install-peers installs it (tests/peers.list)"
        );
    }
    let s = Scratch::new("docs");
    match &block.kind {
        Kind::Conf => std::fs::write(s.conf().join("heartwatch.conf"), &block.text).unwrap(),
        Kind::Rule(name) => {
            s.write_conf("");
            s.write_rule(name, &block.text);
        }
    }
    let (code, out, err) = heartwatch(&s.conf(), &["check"]);
    let listed = match &block.kind {
        Kind::Conf => out.contains("rules: 0"),
        Kind::Rule(name) => out.contains("rules: 1") && out.contains(&format!("  {name}: ")),
    };
    if code == 0 && err.is_empty() && listed {
        None
    } else {
        Some(format!(
            "{}: `heartwatch check` exit {code} on\n{}stdout:\n{out}stderr:\n{err}",
            block.at, block.text
        ))
    }
}

#[test]
fn every_configuration_block_in_the_documentation_passes_check() {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut per_document = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut found, mut wrong) = config_blocks(&path, &text);
        per_document.push((path, found.len()));
        blocks.append(&mut found);
        errors.append(&mut wrong);
    }
    for block in &blocks {
        errors.extend(check_block(block));
    }
    let count = |name: &str| {
        per_document
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .map_or(0, |(_, n)| *n)
    };
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));
    // The test reads what it means to: the README's heartwatch.conf and
    // its two rules, the man page's two examples.
    assert!(count("README.md") >= 3, "{per_document:?}");
    assert!(
        count("packaging/heartwatch.rules.5") >= 2,
        "{per_document:?}"
    );
    assert!(
        blocks.iter().any(|b| b.kind == Kind::Conf),
        "no heartwatch.conf block found: {per_document:?}"
    );
    eprintln!(
        "checked {} configuration blocks: {per_document:?}",
        blocks.len()
    );
}

#[test]
fn a_configuration_block_without_its_file_name_is_refused() {
    let markdown = "text\n\n```ini\n[Heartbeat]\nFile=/a\nMaxAge=1s\n```\n\n```\nnot: configuration\n```\n\n```\nTimeout=30s\n```\n\n```sh\nRUSTFLAGS=-g cargo build\n```\n";
    let (blocks, errors) = config_blocks(Path::new("/x/NEW.md"), markdown);
    assert!(blocks.is_empty(), "{blocks:?}");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("/x/NEW.md:4: a configuration block must say which file"));
    assert!(errors[1].starts_with("/x/NEW.md:14: "));
    let man = repo().join("packaging/new.5");
    let page = ".SH EXAMPLES\n.nf\n[Process]\nPidFile=/run/a.pid\n.fi\n.EX\n# /etc/heartwatch/rules.d/b.rule\n.\\\" a comment\n[Process]\nExecutable=/usr/sbin/a\\-b\n.EE\n";
    let (blocks, errors) = config_blocks(&man, page);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("new.5:3: "), "{errors:?}");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].kind, Kind::Rule("b".into()));
    assert!(
        blocks[0]
            .text
            .ends_with("[Process]\nExecutable=/usr/sbin/a-b\n")
    );
    // And a marked block that does not pass is reported with its place.
    let bad = Block {
        at: "NEW.md:3".into(),
        kind: Kind::Rule("bad".into()),
        text: "[Heartbeat]\nFile=/a   # a comment\nMaxAge=1s\n".into(),
    };
    let wrong = check_block(&bad).expect("the comment is an error");
    assert!(wrong.contains("bad.rule:2: File=: "), "{wrong}");
}

#[test]
fn the_shipped_heartwatch_conf_and_example_rules_pass_check() {
    let packaging = repo().join("packaging");
    let conf = std::fs::read_to_string(packaging.join("heartwatch.conf")).unwrap();
    // As shipped, and with every setting uncommented: each commented line
    // is an example a user will uncomment.
    let uncommented: String = conf
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric())
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        uncommented.lines().filter(|l| l.contains('=')).count() >= 10,
        "{uncommented}"
    );
    let mut blocks = vec![
        Block {
            at: "packaging/heartwatch.conf".into(),
            kind: Kind::Conf,
            text: conf.clone(),
        },
        Block {
            at: "packaging/heartwatch.conf, every setting uncommented".into(),
            kind: Kind::Conf,
            text: uncommented,
        },
    ];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(packaging.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rule"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty());
    for path in examples {
        blocks.push(Block {
            at: path.display().to_string(),
            kind: Kind::Rule(path.file_stem().unwrap().to_string_lossy().into_owned()),
            text: std::fs::read_to_string(&path).unwrap(),
        });
    }
    let errors: Vec<String> = blocks.iter().filter_map(check_block).collect();
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));
}

/// Every Markdown file a document names exists in the repository: the
/// repository stands on its own.
#[test]
fn the_documentation_names_no_file_outside_the_repository() {
    let mut errors = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = path.parent().unwrap();
        for (index, line) in text.lines().enumerate() {
            let words = line.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)));
            for word in words.filter(|w| w.ends_with(".md") && w.len() > 3) {
                let at = format!(
                    "{}:{}",
                    path.strip_prefix(repo()).unwrap().display(),
                    index + 1
                );
                if word.starts_with('/') {
                    errors.push(format!("{at}: {word} is outside the repository"));
                } else if !dir.join(word).exists() && !repo().join(word).exists() {
                    errors.push(format!("{at}: {word} is not in the repository"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

/// The lines of the `n`th fenced block (from 0) under the README heading
/// `heading`, before the next heading.
fn readme_block(heading: &str, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let section = &text[start + heading.len() + 2..];
    // The next heading; `# HELP` lines of a block are not one.
    let end = [section.find("\n## "), section.find("\n### ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(section.len());
    let blocks = raw_blocks(Path::new("README.md"), &section[..end]);
    blocks
        .into_iter()
        .nth(n)
        .unwrap_or_else(|| panic!("README.md {heading}: no block {n}"))
        .2
}

#[test]
fn the_readme_fleets_section_shows_the_tested_files() {
    // The metrics: an excerpt of tests/metrics/example.prom, in its order.
    let example = std::fs::read_to_string(repo().join("tests/metrics/example.prom")).unwrap();
    let shown = readme_block("### Metrics", 1);
    let mut lines = example.lines();
    for line in &shown {
        assert!(
            lines.any(|l| l == line),
            "README.md ### Metrics: {line:?} is not in tests/metrics/example.prom (or out of its order)"
        );
    }
    assert!(shown.len() > 10, "{shown:?}");
    // The alerts: the whole shipped file.
    let alerts = std::fs::read_to_string(repo().join("packaging/heartwatch.alerts.yml")).unwrap();
    let shown = readme_block("### Alerts", 0);
    assert_eq!(
        shown,
        alerts.lines().map(str::to_string).collect::<Vec<_>>(),
        "README.md ### Alerts differs from packaging/heartwatch.alerts.yml"
    );
}
