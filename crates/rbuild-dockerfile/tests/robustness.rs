//! Hostile input never panics: arbitrary bytes through the parser, the
//! expander, the mount parser and the `.dockerignore` matcher.

use proptest::prelude::*;

use rbuild_dockerfile::{ShellLexer, expand_word, expand_words, parse};

/// Bytes biased towards Dockerfile syntax so the fuzzing reaches deep.
fn dockerfile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"FROM ".to_vec()),
        Just(b"RUN ".to_vec()),
        Just(b"COPY ".to_vec()),
        Just(b"ONBUILD ".to_vec()),
        Just(b"HEALTHCHECK ".to_vec()),
        Just(b"ENV ".to_vec()),
        Just(b"ARG ".to_vec()),
        Just(b" AS ".to_vec()),
        Just(b"--mount=".to_vec()),
        Just(b"--from=".to_vec()),
        Just(b"<<EOF".to_vec()),
        Just(b"<<-'E'".to_vec()),
        Just(b"EOF".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\\\n".to_vec()),
        Just(b"`".to_vec()),
        Just(b"# escape=`\n".to_vec()),
        Just(b"[\"a\", ".to_vec()),
        Just(b"]".to_vec()),
        Just(b"${".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\t".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just(vec![0xff]),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

fn word() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("$".to_string()),
        Just("${".to_string()),
        Just("}".to_string()),
        Just(":-".to_string()),
        Just(":+".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("%%".to_string()),
        Just("/".to_string()),
        Just("//".to_string()),
        Just("*".to_string()),
        Just("\\".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("A".to_string()),
        Just("X".to_string()),
        Just(" ".to_string()),
        Just("한".to_string()),
        "[a-z0-9_]{0,3}",
    ];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

fn lookup(name: &str) -> Option<String> {
    match name {
        "A" => Some("a b*c".into()),
        "X" => Some(String::new()),
        _ => None,
    }
}

proptest! {
    // PROPTEST_CASES raises the count for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parser_never_panics(src in dockerfile_bytes()) {
        rbuild_dockerfile::fuzzing::dockerfile(&src);
    }

    #[test]
    fn raw_bytes_never_panic(src in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&src, "Dockerfile");
    }

    #[test]
    fn expander_never_panics(w in word()) {
        let _ = expand_word(&w, &lookup, '\\');
        let _ = expand_words(&w, &lookup, '`');
        let raw = ShellLexer { raw_quotes: true, raw_escapes: true, skip_unset_env: true, ..ShellLexer::new('\\') };
        let _ = raw.process(&w, &lookup);
        rbuild_dockerfile::fuzzing::shell_word(w.as_bytes());
    }

    #[test]
    fn matcher_never_panics(patterns in prop::collection::vec("[a-c*?!/\\[\\]^\\\\. -]{0,8}", 0..6), path in "[a-c*/. ]{0,12}") {
        rbuild_dockerfile::fuzzing::dockerignore(format!("{path}\n{}", patterns.join("\n")).as_bytes());
    }
}
