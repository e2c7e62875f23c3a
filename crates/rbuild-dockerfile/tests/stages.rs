//! Stage resolution: FROM expansion, references, target, order, errors.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_dockerfile::parse;
use rbuild_dockerfile::stages::{Platform, ResolveOptions, ResolvedStages, Source, resolve};

fn run(
    src: &str,
    args: &[(&str, &str)],
    target: Option<&str>,
    contexts: &[&str],
) -> Result<ResolvedStages, String> {
    let df = parse(src.as_bytes(), "Dockerfile").map_err(|e| e.to_string())?;
    let build_args: BTreeMap<String, String> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let named: BTreeSet<String> = contexts.iter().map(|s| s.to_string()).collect();
    let opts = ResolveOptions {
        build_args: &build_args,
        target,
        build_platform: Platform::parse("linux/amd64").unwrap(),
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        named_contexts: &named,
    };
    resolve(&df, &opts).map_err(|e| e.to_string())
}

fn order(r: &ResolvedStages) -> Vec<usize> {
    r.stages.iter().map(|s| s.index).collect()
}

#[test]
fn from_expansion_uses_global_args_and_platform_args() {
    let src = "ARG REG=docker.io\nARG TAG\nARG IMG=${REG}/library/alpine\nFROM ${IMG}:${TAG:-latest}\nFROM --platform=$BUILDPLATFORM golang:1.22-$TARGETARCH AS b\n";
    let r = run(src, &[("TAG", "3.20")], None, &[]).unwrap();
    assert_eq!(r.target, 1);
    assert_eq!(order(&r), [1]);
    assert_eq!(r.stages[0].base, Source::Image("golang:1.22-arm64".into()));
    assert_eq!(r.stages[0].platform, Platform::parse("linux/amd64").ok());
    assert_eq!(r.global_args["IMG"], "docker.io/library/alpine");
    // containerd normalisation, as BuildKit: arm64's default `v8` is dropped.
    assert_eq!(r.global_args["TARGETPLATFORM"], "linux/arm64");
    assert_eq!(r.global_args["TARGETVARIANT"], "");
    let r = run(src, &[("TAG", "3.20")], Some("0"), &[]);
    assert!(
        r.unwrap_err()
            .contains("target stage `0` could not be found")
    );
    let src0 = "ARG REG=docker.io\nARG TAG\nARG IMG=${REG}/library/alpine\nFROM ${IMG}:${TAG:-latest} AS first\nFROM scratch\n";
    let r = run(src0, &[], Some("first"), &[]).unwrap();
    assert_eq!(
        r.stages[0].base,
        Source::Image("docker.io/library/alpine:latest".into())
    );
}

#[test]
fn build_args_without_global_arg_do_not_reach_from() {
    let r = run("FROM alpine:${V:-3}\n", &[("V", "9")], None, &[]).unwrap();
    assert_eq!(r.stages[0].base, Source::Image("alpine:3".into()));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.rule == "UnusedBuildArg" && w.message.contains("`V`"))
    );
}

#[test]
fn only_needed_stages_in_dependency_order() {
    let src = "FROM alpine AS base\nFROM base AS deps\nRUN x\nFROM golang AS unused\nFROM scratch AS tools\nFROM deps\nCOPY --from=tools /a /a\nRUN --mount=type=bind,from=0,target=/b true\nCOPY --from=nginx:latest /etc/nginx /n\n";
    let r = run(src, &[], None, &[]).unwrap();
    assert_eq!(order(&r), [0, 1, 3, 4]);
    let last = r.stages.last().unwrap();
    assert_eq!(last.base, Source::Stage(1));
    assert_eq!(last.deps, [0, 1, 3]);
    let sources: Vec<&Source> = last.from_refs.iter().map(|f| &f.source).collect();
    assert_eq!(
        sources,
        [
            &Source::Stage(3),
            &Source::Stage(0),
            &Source::Image("nginx:latest".into())
        ]
    );
    assert_eq!(last.from_refs[1].mount, Some(0));
    assert_eq!(r.stages[2].base, Source::Scratch);
    let r = run(src, &[], Some("DEPS"), &[]).unwrap();
    assert_eq!(order(&r), [0, 1]);
}

#[test]
fn copy_from_may_point_forward() {
    let r = run(
        "FROM alpine\nCOPY --from=later /x /x\nFROM busybox AS later\n",
        &[],
        Some("0"),
        &[],
    );
    assert!(r.is_err()); // `0` is not a stage name
    let df = "FROM alpine AS a\nCOPY --from=later /x /x\nFROM busybox AS later\n";
    let r = run(df, &[], Some("a"), &[]).unwrap();
    assert_eq!(order(&r), [1, 0]);
}

#[test]
fn named_contexts_override_stages_and_images() {
    let src = "FROM alpine AS base\nRUN build\nFROM base\nCOPY --from=tools /t /t\n";
    let r = run(src, &[], None, &["base", "tools"]).unwrap();
    assert_eq!(order(&r), [1]);
    assert_eq!(r.stages[0].base, Source::Context("base".into()));
    assert_eq!(
        r.stages[0].from_refs[0].source,
        Source::Context("tools".into())
    );
    let r = run("FROM alpine\n", &[], None, &["alpine"]).unwrap();
    assert_eq!(r.stages[0].base, Source::Context("alpine".into()));
}

#[test]
fn errors() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n",
            None,
            "circular dependency",
        ),
        (
            "FROM a AS x\nCOPY --from=x /a /a\n",
            None,
            "circular dependency",
        ),
        (
            "FROM a\nCOPY --from=3 /a /a\n",
            None,
            "invalid stage index `3`",
        ),
        (
            "FROM a\nCOPY --from=-1 /a /a\n",
            None,
            "invalid stage index `-1`",
        ),
        (
            "FROM later\nFROM x AS later\n",
            None,
            "used before it is defined",
        ),
        ("FROM a AS build\n", Some("biuld"), "did you mean `build`?"),
        ("ARG B\nFROM ${B}\n", None, "should not be blank"),
        (
            "FROM --platform=linux/arm/v7/x a\n",
            None,
            "invalid platform `linux/arm/v7/x`",
        ),
        ("FROM ${X:?must be set}\n", None, "must be set"),
    ];
    for (src, target, needle) in cases {
        let e = run(src, &[], *target, &[]).unwrap_err();
        assert!(e.contains(needle), "{src:?}: {e}");
    }
    let e = run(
        "FROM a AS x\nRUN true\nCOPY --from=x /a /a\n",
        &[],
        None,
        &[],
    )
    .unwrap_err();
    assert!(e.starts_with("Dockerfile:3:1: circular dependency"), "{e}");
}

#[test]
fn unused_build_args() {
    let src = "ARG USED_GLOBAL\nFROM a AS one\nARG IN_ONE\nFROM b AS two\nARG IN_TWO\n";
    let r = run(
        src,
        &[
            ("USED_GLOBAL", "1"),
            ("IN_ONE", "1"),
            ("IN_TWO", "1"),
            ("HTTP_PROXY", "x"),
            ("NOPE", "1"),
        ],
        None,
        &[],
    )
    .unwrap();
    let unused: Vec<&str> = r.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(unused.len(), 2, "{unused:?}");
    assert!(unused.iter().any(|m| m.contains("`IN_ONE`")));
    assert!(unused.iter().any(|m| m.contains("`NOPE`")));
}

#[test]
fn undefined_arg_in_from_is_reported() {
    let r = run(
        "ARG A=x\nFROM img:${A}-${B:-b}\nFROM --platform=$BUILDPLATFORM img2\n",
        &[],
        None,
        &[],
    )
    .unwrap();
    let msgs: Vec<&str> = r
        .warnings
        .iter()
        .filter(|w| w.rule == "UndefinedArgInFrom")
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("`$B`"));
}
