//! A foreign-architecture build: an arm64 RUN under QEMU (binfmt_misc with
//! the F flag, registered by scripts/setup-deps) on an amd64 host.

use crate::support::{self, Runner, ok};
use std::path::Path;
use std::process::Command;

const ARM_BUSYBOX: &str = "/var/cache/rbuild-test/busybox-arm64";

fn arm64_run_reports_aarch64(runner: &Runner) {
    if std::env::consts::ARCH != "x86_64" {
        support::skip("the QEMU test is written for an amd64 host");
        return;
    }
    if !Path::new(ARM_BUSYBOX).exists() || !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        support::skip("needs busybox-static:arm64 and a qemu-aarch64 binfmt handler (scripts/setup-deps sets both up)");
        return;
    }
    let work = support::open_tempdir();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(ARM_BUSYBOX, ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         ARG TARGETARCH\nRUN test \"$(uname -m)\" = aarch64 && test \"$TARGETARCH\" = arm64 && uname -m\n",
    )
    .unwrap();
    let state = work.path().join("state");
    runner.own(&state);
    let out_dir = work.path().join("out");
    runner.own(&out_dir);
    let oci = out_dir.join("arm.tar");
    let out = ok(runner
        .rbuild()
        .arg(format!("--root={}", state.display()))
        .args(["build", "--progress=plain", "--platform", "linux/arm64"])
        .arg(format!("--output=type=oci,dest={}", oci.display()))
        .arg(&ctx));
    assert!(String::from_utf8_lossy(&out.stderr).contains("aarch64"), "the RUN did not report aarch64");
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(manifest_digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(config_digest)).unwrap()).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
}

#[test]
fn arm64_run_under_qemu_as_root() {
    if !support::is_root() {
        support::skip("needs root");
        return;
    }
    arm64_run_reports_aarch64(&Runner::Root);
}

#[test]
fn arm64_run_under_qemu_as_unprivileged_user() {
    let Some(user) = Runner::unprivileged() else { return };
    arm64_run_reports_aarch64(&user);
}
