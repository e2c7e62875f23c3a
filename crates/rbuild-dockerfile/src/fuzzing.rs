//! The bodies of the fuzz targets in `fuzz/`, kept here so that every
//! `cargo test` compiles them (a target outside the workspace rots when an
//! API changes) and the proptests in `tests/robustness.rs` run the very same
//! properties with fewer cases. Each function must never panic, overflow the
//! stack or hang, whatever the input.

use std::collections::BTreeMap;

use crate::convert::{BaseImage, ConvertOptions, convert, required_images};
use crate::{IgnoreMatcher, InstructionKind, MountSpec, ShellLexer, parse, parse_nodes};

/// Half the variables are set, to values with spaces and a glob.
fn lookup(name: &str) -> Option<String> {
    name.len().is_multiple_of(2).then(|| format!("v {name} *"))
}

/// Arbitrary bytes as a Dockerfile: parser, stage resolution, RUN mounts
/// and heredoc scripts, then conversion into a build graph for a foreign
/// target platform with every base image resolved to a fixed config.
pub fn dockerfile(data: &[u8]) {
    let _ = parse_nodes(data, "Dockerfile");
    let Ok(df) = parse(data, "Dockerfile") else { return };
    for stage in &df.stages {
        for inst in &stage.instructions {
            if let InstructionKind::Run(run) = &inst.kind {
                let _ = run.resolve_mounts(&lookup, df.escape);
                let _ = run.script();
            }
        }
    }
    let opts = ConvertOptions {
        target_platform: "linux/arm64".into(),
        build_platform: "linux/amd64".into(),
        created: Some("2000-01-01T00:00:00Z".into()),
        ..ConvertOptions::default()
    };
    let Ok(keys) = required_images(&df, &opts) else { return };
    let mut images = BTreeMap::new();
    for (name, platform) in keys {
        let Ok(p) = rbuild_oci::Platform::parse(&platform) else { return };
        let mut config = rbuild_oci::ImageConfig::new(&p);
        config.config.env = Some(vec!["PATH=/usr/bin:/bin".into()]);
        config.config.on_build = Some(vec!["RUN true".into()]);
        let reference = format!("{name}@sha256:{}", "0".repeat(64));
        images.insert((name, platform), BaseImage { reference, config });
    }
    let _ = convert(&df, &opts, &images);
}

/// Arbitrary text as a word, expanded in every lexer mode with both escape
/// characters, and as a `--mount` value.
pub fn shell_word(data: &[u8]) {
    let Ok(word) = std::str::from_utf8(data) else { return };
    for escape in ['\\', '`'] {
        let mut lexer = ShellLexer::new(escape);
        let _ = lexer.process(word, &lookup);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        lexer.skip_unset_env = true;
        let _ = lexer.process(word, &lookup);
        lexer.skip_process_quotes = true;
        let _ = lexer.process(word, &lookup);
    }
    let _ = MountSpec::parse(word, None);
    let _ = MountSpec::parse_deferred(word);
}

/// Arbitrary `.dockerignore` text; its first line is the path to test.
pub fn dockerignore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, patterns) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(m) = IgnoreMatcher::from_dockerignore(patterns) {
        let _ = m.matches(path, false);
        let _ = m.can_skip_dir(path);
    }
}
