//! Hot-path figures without a benchmark framework: parsing a 1,000-line
//! Dockerfile, and matching a 100,000-path context against 50
//! `.dockerignore` patterns. Run with `cargo bench -p rbuild-dockerfile`.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use rbuild_dockerfile::stages::{Platform, ResolveOptions, resolve};
use rbuild_dockerfile::{IgnoreMatcher, expand_word, parse};

fn dockerfile(lines: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine:3.20\n");
    let mut stage = 0;
    while s.lines().count() < lines {
        s.push_str(&format!("FROM ${{BASE}} AS stage{stage}\n"));
        s.push_str("ARG VERSION=1.0\nENV APP_HOME=/opt/app PATH=\"/opt/app/bin:${PATH}\"\nWORKDIR $APP_HOME\n");
        s.push_str("RUN --mount=type=cache,target=/var/cache/apk \\\n    apk add --no-cache curl git \\\n    && rm -rf /tmp/*\n");
        let from = if stage == 0 {
            "busybox".to_string()
        } else {
            format!("stage{}", stage - 1)
        };
        s.push_str(&format!(
            "COPY --from={from} --chown=app:app /opt/app /opt/app\n"
        ));
        s.push_str("LABEL org.opencontainers.image.version=\"${VERSION}\" maintainer=\"team@example.com\"\n");
        s.push_str("RUN <<EOF\nset -eux\necho building\nEOF\n");
        s.push_str("HEALTHCHECK --interval=30s CMD [\"/bin/true\"]\nEXPOSE 8080\nUSER app\nCMD [\"app\", \"serve\"]\n");
        stage += 1;
    }
    s
}

fn paths(count: usize) -> Vec<String> {
    let dirs = [
        "src",
        "src/api",
        "src/api/v1",
        "node_modules/lodash",
        "node_modules/react/cjs",
        "docs",
        "target/debug/deps",
        "tests/fixtures",
        ".git/objects/ab",
        "assets/img",
    ];
    let exts = [
        "rs", "js", "md", "png", "json", "log", "tmp", "o", "txt", "go",
    ];
    (0..count)
        .map(|i| {
            format!(
                "{}/file{}.{}",
                dirs[i % dirs.len()],
                i / 7,
                exts[(i / 3) % exts.len()]
            )
        })
        .collect()
}

const PATTERNS: &str = "\
.git
node_modules
target
**/*.log
**/*.tmp
*.md
!README.md
docs/**
!docs/api/**
**/.DS_Store
**/__pycache__
*.pyc
.env
.env.*
coverage
dist
build
**/*.o
**/*.a
*.swp
.idea
.vscode
tmp/
**/tmp/**
assets/**/*.psd
**/*.bak
!important.bak
vendor/**/testdata
**/testdata/large*
*.tar.gz
**/*.zip
.cache
**/.cache
bazel-*
out
**/out/**
*.iml
Thumbs.db
**/Thumbs.db
npm-debug.log*
yarn-error.log
.terraform
*.tfstate
*.tfstate.backup
secrets/**
!secrets/README
**/fixtures/*.json
src/**/*.snap
src/api/v1/generated_*
logs
";

fn time<F: FnMut()>(mut f: F, min: Duration) -> (Duration, u32) {
    let start = Instant::now();
    let mut iters = 0;
    while start.elapsed() < min || iters == 0 {
        f();
        iters += 1;
    }
    (start.elapsed() / iters, iters)
}

fn main() {
    let src = dockerfile(1_000);
    let lines = src.lines().count();
    let (per, iters) = time(
        || {
            drop(black_box(
                parse(black_box(src.as_bytes()), "Dockerfile").unwrap(),
            ))
        },
        Duration::from_secs(2),
    );
    println!(
        "parse {lines}-line Dockerfile: {:.3} ms/iter ({iters} iters)",
        per.as_secs_f64() * 1e3
    );

    let df = parse(src.as_bytes(), "Dockerfile").unwrap();
    let args = Default::default();
    let named = Default::default();
    let opts = ResolveOptions {
        build_args: &args,
        target: None,
        build_platform: Platform::parse("linux/amd64").unwrap(),
        target_platform: Platform::parse("linux/arm64").unwrap(),
        named_contexts: &named,
    };
    let (per, iters) = time(
        || drop(black_box(resolve(&df, &opts).unwrap())),
        Duration::from_secs(1),
    );
    println!(
        "resolve {} stages: {:.3} ms/iter ({iters} iters)",
        df.stages.len(),
        per.as_secs_f64() * 1e3
    );

    let env = |k: &str| (k == "PATH").then(|| "/usr/bin:/bin".to_string());
    let word = "\"/opt/app/bin:${PATH}\" ${VERSION:-1.0} ${APP_HOME%/*}";
    let (per, _) = time(
        || drop(black_box(expand_word(black_box(word), &env, '\\'))),
        Duration::from_secs(1),
    );
    println!("expand_word: {:.2} µs/word", per.as_secs_f64() * 1e6);

    let matcher = IgnoreMatcher::from_dockerignore(PATTERNS).unwrap();
    assert_eq!(matcher.patterns().count(), 50);
    let paths = paths(100_000);
    let mut excluded = 0;
    let (per, iters) = time(
        || {
            excluded = paths.iter().filter(|p| matcher.matches(p, false)).count();
        },
        Duration::from_secs(2),
    );
    println!(
        "match 100000 paths x 50 patterns: {:.1} ms/iter ({iters} iters, {excluded} excluded, {:.0} ns/path)",
        per.as_secs_f64() * 1e3,
        per.as_secs_f64() * 1e9 / 100_000.0
    );
}
