//! Dockerfile features end to end, each checked by RUN steps that fail the
//! build when the result is wrong.

use crate::support::{self, Scratch, busybox_context as context, ok};
use std::path::Path;
use std::process::Command;


fn rbuild(state: &Path) -> Command {
    let mut c = support::rbuild_at(state);
    c.args(["build", "--progress=plain"]);
    c
}


#[test]
fn add_extracts_local_archives_and_copies_plain_files() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "FROM base\nADD files.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n\
         RUN test \"$(cat /opt/pkg/hello.txt)\" = hello && test \"$(cat /opt/plain.txt)\" = plain\n",
    );
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("pkg")).unwrap();
    std::fs::write(src.join("pkg/hello.txt"), "hello").unwrap();
    ok(Command::new("tar").arg("-czf").arg(ctx.join("files.tar.gz")).arg("-C").arg(&src).arg("pkg"));
    std::fs::write(ctx.join("plain.txt"), "plain").unwrap();
    ok(rbuild(&state).arg(&ctx));
}

#[test]
fn heredocs_in_copy_and_run() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "FROM base\nARG WHO=world\nCOPY <<EOF /greeting.txt\nhello $WHO\nEOF\n\
         COPY <<'RAW' /raw.txt\nkeep $WHO\nRAW\n\
         RUN <<EOF\nset -e\ntest \"$(cat /greeting.txt)\" = \"hello world\"\ntest \"$(cat /raw.txt)\" = 'keep $WHO'\nEOF\n\
         RUN <<EOT\n#!/bin/sh\necho from a script > /script-ran\nEOT\n\
         RUN test \"$(cat /script-ran)\" = \"from a script\"\n",
    );
    ok(rbuild(&state).arg(&ctx));
}

#[test]
fn named_build_contexts_replace_stages_and_feed_copies() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    let extra = work.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("data.txt"), "from extra").unwrap();
    context(
        &ctx,
        "FROM base AS extra\nRUN echo from the stage > /data.txt\n\
         FROM base\nCOPY --from=extra /data.txt /\nRUN test \"$(cat /data.txt)\" = \"from extra\"\n",
    );
    ok(rbuild(&state).arg(format!("--build-context=extra={}", extra.display())).arg(&ctx));
}

#[test]
fn bad_dockerfiles_fail_with_file_line_and_hint() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUNN echo hi\n");
    let out = rbuild(&state).arg(&ctx).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:5"), "names file and line: {err}");
    assert!(err.contains("did you mean `RUN`?"), "suggests the closest keyword: {err}");
}

#[test]
fn the_copy_snapshotter_builds_what_overlay_builds() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "FROM base AS mid\nRUN mkdir -p /d && echo one > /d/a && echo two > /d/b && rm /bin/vi\n\
         FROM mid\nRUN rm /d/a && rm -rf /d && mkdir /d && echo three > /d/c\nCOPY Dockerfile /d/\n\
         RUN test ! -e /d/a && test ! -e /d/b && test \"$(cat /d/c)\" = three && test -f /d/Dockerfile && test ! -e /bin/vi\n",
    );
    let oci = work.path().join("img.tar");
    ok(rbuild(&state)
        .env("RBUILD_SNAPSHOTTER", "copy")
        .args(["-t", "copytest:latest"])
        .arg(format!("--output=type=oci,dest={}", oci.display()))
        .arg(&ctx));
    assert!(std::fs::read_to_string(state.join("snapshotter")).unwrap().starts_with("copy"));
    if support::have("umoci") {
        let layout = work.path().join("layout");
        std::fs::create_dir_all(&layout).unwrap();
        ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
        let bundle = work.path().join("bundle");
        ok(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:latest", layout.display())).arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert_eq!(std::fs::read_to_string(rootfs.join("d/c")).unwrap().trim(), "three");
        assert!(!rootfs.join("d/a").exists() && !rootfs.join("d/b").exists() && !rootfs.join("bin/vi").exists());
    }
}

#[test]
fn a_context_tar_on_standard_input_builds_and_cannot_escape() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nCOPY data.txt /\nRUN test \"$(cat /data.txt)\" = from-stdin\n");
    std::fs::write(ctx.join("data.txt"), "from-stdin").unwrap();
    let tar = work.path().join("ctx.tar.gz");
    ok(Command::new("tar").arg("-czf").arg(&tar).arg("-C").arg(&ctx).arg("."));
    ok(rbuild(&state).arg("-").stdin(std::fs::File::open(&tar).unwrap()));
    // A hostile context tar: an entry climbing out of the context.
    let evil = work.path().join("evil.tar");
    std::fs::write(ctx.join("escaped.txt"), "x").unwrap();
    let made = Command::new("tar")
        .args(["-cf"])
        .arg(&evil)
        .arg("-P")
        .arg("--transform=s|^.*/escaped.txt$|../../escaped.txt|")
        .arg(ctx.join("escaped.txt"))
        .status()
        .unwrap();
    assert!(made.success());
    let res = rbuild(&state).arg("-").stdin(std::fs::File::open(&evil).unwrap()).output().unwrap();
    assert!(!res.status.success(), "a context tar escaping its directory must be refused");
    assert!(!Path::new("/tmp/escaped.txt").exists() && !work.path().join("escaped.txt").exists());
}

#[test]
fn proxy_build_args_reach_run_without_declaration_and_stay_out_of_history_and_cache_keys() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    // The Dockerfile never spells the value out, so finding it in the image
    // means it leaked.
    context(&ctx, "FROM base\nRUN test \"${HTTP_PROXY#http://proxy}\" = .invalid:3128 && echo ok > /ok\n");
    let oci = work.path().join("img.tar");
    // NOT_DECLARED is reported unused; the proxy arg never is.
    let first = ok(support::rbuild_rawjson(&state)
        .args(["--build-arg", "HTTP_PROXY=http://proxy.invalid:3128", "--build-arg", "NOT_DECLARED=1"])
        .arg(format!("--output=type=oci,dest={}", oci.display()))
        .arg(&ctx));
    let warnings: Vec<String> = support::events(&first.stderr)
        .iter()
        .filter(|e| e["event"] == "warning")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    assert!(warnings.iter().any(|w| w.contains("`NOT_DECLARED`") && w.contains("not consumed")), "{warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("HTTP_PROXY")), "proxy args are never unused: {warnings:?}");
    let grep = Command::new("grep").args(["-c", "-a", "proxy.invalid"]).arg(&oci).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&grep.stdout).trim(), "0", "the proxy leaked into the image");
    // Another proxy value: the RUN is still cached (and would fail if rerun).
    let second = ok(support::rbuild_rawjson(&state).args(["--build-arg", "HTTP_PROXY=http://other.invalid"]).arg(&ctx));
    assert!(support::started(&support::events(&second.stderr)).is_empty(), "a proxy change invalidated the cache");
}

#[test]
fn the_network_flag_sets_the_default_for_run_steps_and_host_needs_the_entitlement() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    // With --network=none the RUN sees only a loopback interface.
    context(&ctx, "FROM base\nRUN test \"$(ls /sys/class/net | tr '\\n' ' ')\" = \"lo \"\n");
    ok(rbuild(&state).arg("--network=none").arg(&ctx));
    context(&ctx, "FROM base\nRUN true\n");
    let refused = rbuild(&state).arg("--network=host").arg("--no-cache").arg(&ctx).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("network.host"), "names the entitlement");
    ok(rbuild(&state).args(["--network=host", "--allow=network.host", "--no-cache"]).arg(&ctx));
}

#[test]
fn iidfile_and_metadata_file_describe_the_image() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUN echo hi > /hi\n");
    let (iid, meta) = (work.path().join("iid"), work.path().join("meta.json"));
    let out = ok(rbuild(&state)
        .args(["-t", "meta-test:1", "--load"])
        .arg(format!("--iidfile={}", iid.display()))
        .arg(format!("--metadata-file={}", meta.display()))
        .arg(&ctx));
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest.as_str());
    assert_eq!(meta["containerimage.config.digest"], std::fs::read_to_string(&iid).unwrap().trim());
    assert!(meta["image.name"].as_str().unwrap().contains("meta-test:1"), "{meta}");
}
