//! End-to-end tests of the walking skeleton: real registry, real sandbox,
//! checked with tools we did not write (skopeo, umoci).

mod cache;
mod gc;
mod debian;
mod images;
mod language;
mod mounts;
mod outputs;
mod platform;
mod run;
mod parity;
mod sources;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::{Registry, Runner, events, ok, skip, started};

/// A context for the busybox base image: the static binary + Dockerfile.
fn base_context(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(support::repo().join("examples/base/Dockerfile"), dir.join("Dockerfile")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn prerequisites() -> bool {
    for tool in ["skopeo", "umoci"] {
        if !support::have(tool) {
            skip(&format!("{tool} is not installed (scripts/setup-deps installs it)"));
            return false;
        }
    }
    if !Path::new("/bin/busybox").exists() {
        skip("/bin/busybox is missing (package busybox-static)");
        return false;
    }
    true
}

/// Builds and pushes the base and the example app as `runner`, checks the
/// results with skopeo and umoci, then rebuilds and checks nothing ran and
/// nothing was uploaded.
fn walking_skeleton(runner: &Runner) {
    if !prerequisites() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let work = support::open_tempdir();
    let state = work.path().join("state");
    runner.own(&state);
    let out_dir = work.path().join("out");
    runner.own(&out_dir);
    let base_ctx = work.path().join("base");
    base_context(&base_ctx);
    let host = registry.host();
    let base_ref = format!("{host}/e2e/base:latest");
    let app_ref = format!("{host}/e2e/app:latest");

    let root_arg = format!("--root={}", state.display());
    ok(runner.rbuild().args([&root_arg, "build", "--progress=plain", "-t", &base_ref, "--push"]).arg(&base_ctx));

    let app_ctx = support::repo().join("examples/app");
    let oci_tar = out_dir.join("app.tar");
    let build_app = |extra: &[&str]| {
        let mut c = runner.rbuild();
        c.args([&root_arg, "build", "--progress=rawjson", "--build-arg", &format!("BASE={base_ref}"), "-t", &app_ref, "--push"])
            .args(extra)
            .arg(&app_ctx);
        ok(&mut c)
    };
    let first = build_app(&[&format!("--output=type=oci,dest={}", oci_tar.display())]);
    let digest = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "rbuild printed `{digest}` instead of a digest");
    let ran = started(&events(&first.stderr));
    assert!(ran.iter().any(|n| n.contains("RUN id -u")), "the first build ran no RUN: {ran:?}");

    // skopeo reads what we pushed.
    let inspect = ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{app_ref}")]));
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let raw_config =
        ok(Command::new("skopeo").args(["inspect", "--config", "--raw", "--tls-verify=false", &format!("docker://{app_ref}")]));
    let config: serde_json::Value = serde_json::from_slice(&raw_config.stdout).unwrap();
    assert_eq!(config["config"]["User"], "1000");
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/app/greet.sh"]));
    let env: Vec<String> = serde_json::from_value(config["config"]["Env"].clone()).unwrap();
    assert!(env.contains(&"APP_HOME=/app".to_string()), "{env:?}");
    assert!(env.contains(&"GREETING=hello from rbuild".to_string()), "{env:?}");

    // umoci unpacks the OCI tar and the rootfs holds what the Dockerfile made.
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    ok(Command::new("tar").arg("-xf").arg(&oci_tar).arg("-C").arg(&layout));
    let bundle = work.path().join("bundle");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("index.json names the image")
        .to_string();
    ok(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:{tag}", layout.display())).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let greeting = std::fs::read_to_string(rootfs.join("app/greeting.txt")).unwrap();
    assert!(greeting.starts_with("hello"), "greeting.txt: {greeting}");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/data/made-by")).unwrap().trim(), "1000");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/data/greeting")).unwrap().trim(), "hello from rbuild");
    let made_by = std::fs::metadata(rootfs.join("app/data/made-by")).unwrap();
    // Docker's rule: a numeric USER without a passwd entry runs with gid 0.
    assert_eq!((made_by.uid(), made_by.gid()), (1000, 0), "a file made by USER 1000 is owned by 1000");
    let script = std::fs::metadata(rootfs.join("app/greet.sh")).unwrap();
    assert_eq!(script.mode() & 0o7777, 0o755);
    assert_eq!((script.uid(), script.gid()), (0, 0));
    let sh = std::fs::symlink_metadata(rootfs.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink(), "busybox --install -s made /bin/sh a symlink");

    // Rebuilding runs no RUN step and uploads nothing.
    let blobs_before = registry.blob_files();
    let second = build_app(&[]);
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), digest, "the rebuild made a different image");
    let ran = started(&events(&second.stderr));
    assert!(ran.is_empty(), "the rebuild ran steps: {ran:?}");
    assert_eq!(registry.blob_files(), blobs_before, "the rebuild uploaded blobs");
}

#[test]
fn walking_skeleton_as_root() {
    if !support::is_root() {
        skip("run as root to test the root mode");
        return;
    }
    walking_skeleton(&Runner::Root);
}

#[test]
fn walking_skeleton_as_unprivileged_user() {
    let Some(user) = Runner::unprivileged() else { return };
    walking_skeleton(&user);
}

#[test]
fn failing_run_reports_step_exit_code_and_output_and_leaves_nothing() {
    if !prerequisites() || !support::is_root() {
        return;
    }
    let work = support::open_tempdir();
    let state = work.path().join("state");
    let root_arg = format!("--root={}", state.display());
    let ctx = work.path().join("ctx");
    base_context(&ctx);
    // A first successful build, so the state dir has content to compare.
    ok(Command::new(env!("CARGO_BIN_EXE_rbuild")).args([&root_arg, "build", "-q"]).arg(&ctx));
    let top = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let snapshots_before = top(&state.join("snapshots"));
    let blobs_before = support::tree(&state.join("content"));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo first line; echo boom >&2; exit 3\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild")).args([&root_arg, "build", "--progress=plain"]).arg(&ctx).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUN [\"/bin/busybox\""), "names the step: {stderr}");
    assert!(stderr.contains("exit code: 3"), "gives the exit code: {stderr}");
    assert!(stderr.contains("boom"), "quotes the last output: {stderr}");
    // The COPY before it is cached from the first build; the failed RUN
    // left no snapshot, and nothing is left in tmp.
    assert_eq!(top(&state.join("snapshots")), snapshots_before, "the failed step left a snapshot");
    assert_eq!(support::tree(&state.join("content")), blobs_before, "blobs were written");
    let litter: Vec<_> = support::tree(&state.join("tmp")).into_iter().filter(|p| p.is_file()).collect();
    assert!(litter.is_empty(), "files left in tmp: {litter:?}");
}
