//! `COPY --link` (and later ADD from URLs and git) end to end.

use crate::support::{self, events, ok, started};
use std::path::Path;
use std::process::Command;

const BASE: &str = "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

fn ready() -> bool {
    if !support::is_root() || !Path::new("/bin/busybox").exists() {
        support::skip("needs root and busybox-static");
        return false;
    }
    true
}

/// The layer digests of the single image in an OCI archive.
fn layers(oci_tar: &Path, scratch: &Path) -> Vec<String> {
    std::fs::create_dir_all(scratch).unwrap();
    ok(Command::new("tar").arg("-xf").arg(oci_tar).arg("-C").arg(scratch));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &str| scratch.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index = read(&scratch.join("index.json"));
    let manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn copy_link_layer_survives_a_new_base_unchanged() {
    if !ready() {
        return;
    }
    let work = support::open_tempdir();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("app.txt"), "app").unwrap();
    // The base makes /app a symlink: with --link the destination is not
    // resolved through it (the copied directory replaces it).
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "{BASE}FROM base\nARG V\nRUN echo $V > /version && mkdir /elsewhere && ln -s /elsewhere /app\n\
             COPY --link app.txt /app/\n\
             RUN test \"$(cat /app/app.txt)\" = app && test \"$(cat /version)\" = \"$V\" && test ! -L /app \
             && test ! -e /elsewhere/app.txt\n"
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    let build = |v: &str, out: &Path| {
        ok(Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg(format!("--root={}", state.display()))
            .args(["build", "--progress=rawjson", "--build-arg", &format!("V={v}")])
            .arg(format!("--output=type=oci,dest={}", out.display()))
            .arg(&ctx))
    };
    let first_tar = work.path().join("one.tar");
    build("1", &first_tar);
    let second_tar = work.path().join("two.tar");
    let second = build("2", &second_tar);
    let ran = started(&events(&second.stderr));
    assert!(ran.iter().any(|n| n.contains("RUN echo $V")), "the base changed, so its RUN ran: {ran:?}");
    let copies: Vec<&String> = ran.iter().filter(|n| n.contains("COPY --link") && !n.contains("[internal]")).collect();
    assert!(copies.is_empty(), "the --link copy ran again on a new base: {ran:?}");
    let one = layers(&first_tar, &work.path().join("one"));
    let two = layers(&second_tar, &work.path().join("two"));
    // The last RUN only checks: its empty diff makes no layer.
    assert_eq!(one.len(), 4, "busybox, install, RUN, COPY --link: {one:?}");
    assert_eq!(two.len(), 4, "{two:?}");
    assert_ne!(one[2], two[2], "the base layers differ");
    assert_eq!(one[3], two[3], "the --link layer is the same blob on both bases");
}
