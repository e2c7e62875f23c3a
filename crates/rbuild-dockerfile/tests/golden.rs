//! Golden snapshots: the AST of every Dockerfile in `testdata/ok/` and the
//! rendered error of every one in `testdata/errors/`. A new case is a new
//! file; review changes with `cargo insta review` (or INSTA_UPDATE=always).

use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no files in {}", root.display());
    v
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn ast_snapshots() {
    for path in files("ok") {
        let src = std::fs::read(&path).unwrap();
        let df = match rbuild_dockerfile::parse(&src, "Dockerfile") {
            Ok(df) => df,
            Err(e) => panic!("{}:\n{e}", path.display()),
        };
        insta::assert_yaml_snapshot!(format!("ast-{}", name(&path)), df);
    }
}

#[test]
fn stage_resolution_snapshots() {
    use rbuild_dockerfile::stages::{Platform, ResolveOptions, resolve};
    let args = std::collections::BTreeMap::new();
    let named = std::collections::BTreeSet::new();
    let (Ok(build), Ok(target)) = (
        Platform::parse("linux/amd64"),
        Platform::parse("linux/arm64/v8"),
    ) else {
        panic!("platforms")
    };
    let opts = ResolveOptions {
        build_args: &args,
        target: None,
        build_platform: build,
        target_platform: target,
        named_contexts: &named,
    };
    for path in files("ok") {
        let src = std::fs::read(&path).unwrap();
        let df = rbuild_dockerfile::parse(&src, "Dockerfile").unwrap();
        match resolve(&df, &opts) {
            Ok(r) => insta::assert_yaml_snapshot!(format!("stages-{}", name(&path)), r),
            Err(e) => panic!("{}:\n{e}", path.display()),
        }
    }
}

#[test]
fn error_snapshots() {
    for path in files("errors") {
        let src = std::fs::read(&path).unwrap();
        match rbuild_dockerfile::parse(&src, "Dockerfile") {
            Ok(df) => panic!("{} parsed but must fail: {df:#?}", path.display()),
            Err(e) => insta::assert_snapshot!(format!("error-{}", name(&path)), e.to_string()),
        }
    }
}
