//! Golden snapshots of the build graph: every Dockerfile in `testdata/ok/`
//! converted with fixed base images, rendered one vertex per line (digest,
//! inputs, op). A change that moves a digest shows up here, so a cache-key
//! change is always a reviewed decision. Also: conversion is deterministic
//! and a change invalidates exactly the vertices downstream of it.

use rbuild_dockerfile::convert::{BaseImage, BuildPlan, ConvertOptions, convert, required_images};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::platform::Platform;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ok");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn options() -> ConvertOptions {
    ConvertOptions {
        target_platform: "linux/amd64".into(),
        build_platform: "linux/amd64".into(),
        created: Some("2000-01-01T00:00:00Z".into()),
        ..ConvertOptions::default()
    }
}

/// Converts with every base image pinned to a fixed fake digest.
fn plan(src: &[u8], opts: &ConvertOptions) -> BuildPlan {
    try_plan(src, opts).unwrap()
}

fn try_plan(src: &[u8], opts: &ConvertOptions) -> Result<BuildPlan, rbuild_dockerfile::convert::ConvertError> {
    let df = rbuild_dockerfile::parse(src, "Dockerfile").unwrap();
    let mut images = BTreeMap::new();
    for (name, platform) in required_images(&df, opts).unwrap() {
        let mut config = ImageConfig::new(&Platform::parse(&platform).unwrap());
        config.config.env = Some(vec!["PATH=/usr/bin:/bin".into()]);
        let reference = format!("{name}@sha256:{}", "0".repeat(64));
        images.insert((name, platform), BaseImage { reference, config });
    }
    convert(&df, opts, &images)
}

/// The graph, or the conversion error (features not converted yet show up
/// in the snapshot too).
fn render_file(src: &[u8]) -> String {
    match try_plan(src, &options()) {
        Ok(p) => render(&p),
        Err(e) => format!("conversion error: {e}\n"),
    }
}

fn render(p: &BuildPlan) -> String {
    let mut out = String::new();
    for (id, v) in p.graph.iter() {
        let inputs: Vec<String> = v.inputs.iter().map(|i| i.0.to_string()).collect();
        let op = serde_json::to_string(&v.op).unwrap();
        out.push_str(&format!("{} {} [{}] {}\n  {}\n", id.0, &v.digest().hex()[..12], inputs.join(","), v.meta.name, op));
    }
    out.push_str(&format!("target: {}\n", p.target.0));
    out
}

#[test]
fn graph_snapshots() {
    for path in files() {
        let src = std::fs::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("graph-{name}"), render_file(&src));
    }
}

#[test]
fn conversion_is_deterministic() {
    for path in files() {
        let src = std::fs::read(&path).unwrap();
        assert_eq!(render_file(&src), render_file(&src), "{}", path.display());
    }
}

#[test]
fn a_change_invalidates_exactly_the_vertices_downstream() {
    let df = |second: &str| {
        format!(
            "FROM base AS a\nRUN one\nRUN {second}\nFROM base AS b\nRUN three\n\
             FROM base\nCOPY --from=a /x /x\nCOPY --from=b /y /y\nRUN four\n"
        )
    };
    let digests = |p: &BuildPlan| -> BTreeMap<String, String> {
        p.graph.iter().map(|(_, v)| (v.meta.name.clone(), v.digest().to_string())).collect()
    };
    let (a, b) = (plan(df("two").as_bytes(), &options()), plan(df("TWO").as_bytes(), &options()));
    let (da, db) = (digests(&a), digests(&b));
    let digest_of = |d: &BTreeMap<String, String>, needle: &str| -> String {
        d.iter().find(|(k, _)| k.contains(needle)).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no step `{needle}`"))
    };
    for unchanged in ["RUN one", "RUN three"] {
        assert_eq!(digest_of(&da, unchanged), digest_of(&db, unchanged), "`{unchanged}` is not downstream of the change");
    }
    for needle in ["COPY --from=a", "COPY --from=b", "RUN four"] {
        assert_ne!(digest_of(&da, needle), digest_of(&db, needle), "`{needle}` is downstream of the change");
    }
    assert_ne!(digest_of(&da, "RUN two"), digest_of(&db, "RUN TWO"));
}
