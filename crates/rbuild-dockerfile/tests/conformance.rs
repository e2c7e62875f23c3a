//! BuildKit's own test data, run against our parser and expander.
//!
//! The data lives outside the repository (`/work/shared/conformance/buildkit`
//! by default, or `$RBUILD_CONFORMANCE_DIR`); each test skips with a note
//! when it is absent. See the README there for the formats.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_dockerfile::{expand_word, expand_words, parse_nodes};

fn data_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/buildkit")
        }
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: BuildKit conformance data not found at {}; skipping",
            dir.display()
        );
        None
    }
}

fn base_env() -> BTreeMap<String, String> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn env_var_test() {
    let Some(dir) = data_dir() else { return };
    let text = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    let env = base_env();
    let lookup = |k: &str| env.get(k).cloned();
    let mut failures = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "bad test line {line:?}");
        let (platform, input, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        count += 1;
        let got = expand_word(input, &lookup, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => v == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(count > 200, "only {count} cases read");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test() {
    let Some(dir) = data_dir() else { return };
    let text = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let mut env = BTreeMap::new();
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(kv) = line.strip_prefix("ENV ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        let Some((input, expected)) = line.split_once('|') else {
            continue;
        };
        let input = input.trim();
        let expected = expected.trim_start();
        let lookup = |k: &str| env.get(k).cloned();
        let got = expand_words(input, &lookup, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(words), e) => words.join(",") == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parser_testfiles() {
    let Some(dir) = data_dir() else { return };
    let mut failures = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("parser-testfiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30);
    for case in cases {
        let source = std::fs::read(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result"))
            .unwrap()
            .replace("\r\n", "\n");
        match parse_nodes(&source, "Dockerfile") {
            Ok(raw) => {
                let got: String = raw.nodes.iter().map(|n| n.dump() + "\n").collect();
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parser_testfiles_negative() {
    let Some(dir) = data_dir() else { return };
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("parser-testfiles-negative"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4);
    for case in cases {
        let source = std::fs::read(case.join("Dockerfile")).unwrap();
        let result = parse_nodes(&source, "Dockerfile");
        assert!(
            result.is_err(),
            "{} parsed but must fail: {:?}",
            case.display(),
            result.map(|r| r.nodes.len())
        );
        // The typed layer must reject it as well.
        // (typed layer checked in instructions tests)
    }
}
