//! RUN --mount end to end: cache, secret, tmpfs, bind, and locked sharing
//! between two builds on one state dir.

use crate::support::{self, Scratch, busybox_context, events, ok, rbuild_rawjson as rbuild};
use std::path::Path;
use std::process::Command;

/// A context whose Dockerfile builds FROM the busybox `base` stage.
fn context(dir: &Path, rest: &str) {
    busybox_context(dir, &format!("FROM base\n{rest}"));
}

/// Everything a build's RUN steps printed.
fn logs(stderr: &[u8]) -> String {
    events(stderr).iter().filter(|e| e["event"] == "log").filter_map(|e| e["data"].as_str()).collect()
}


#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_the_image() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "ARG N\nRUN --mount=type=cache,target=/cache echo \"run $N\" >> /cache/log && cat /cache/log && ls /cache > /listing\n");
    ok(rbuild(&state).args(["--build-arg", "N=1"]).arg(&ctx));
    let oci = work.path().join("img.tar");
    let second = ok(rbuild(&state).args(["--build-arg", "N=2", "-t", "cachetest:latest"]).arg(format!("--output=type=oci,dest={}", oci.display())).arg(&ctx));
    let out = logs(&second.stderr);
    assert!(out.contains("run 1") && out.contains("run 2"), "the cache kept the first build's file: {out}");
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
    if support::have("umoci") {
        let bundle = work.path().join("bundle");
        ok(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:latest", layout.display())).arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert_eq!(std::fs::read_to_string(rootfs.join("listing")).unwrap().trim(), "log");
        assert!(!rootfs.join("cache/log").exists(), "cache contents leaked into the image");
    }
}

#[test]
fn secret_reaches_the_run_and_nothing_else() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    let secret = "s3cr3t-7f1e9b2c-never-stored";
    let secret_file = work.path().join("token");
    std::fs::write(&secret_file, secret).unwrap();
    // The Dockerfile names only the secret's digest, so any appearance of
    // the value itself in an output is a leak.
    let sum = ok(Command::new("sha256sum").arg(&secret_file));
    let digest = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    context(
        &ctx,
        &format!(
            "RUN --mount=type=secret,id=tok test \"$(sha256sum /run/secrets/tok | cut -d' ' -f1)\" = {digest} && ls -l /run/secrets/tok > /proof\n\
             RUN --mount=type=secret,id=tok,env=TOKEN test \"$(printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1)\" = {digest}\n"
        ),
    );
    let oci = work.path().join("img.tar");
    let out = ok(rbuild(&state)
        .arg(format!("--secret=id=tok,src={}", secret_file.display()))
        .arg(format!("--output=type=oci,dest={}", oci.display()))
        .arg(&ctx));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret), "the secret is in the progress output");
    let grep = Command::new("grep").args(["-r", "-a", "-l", secret]).arg(&state).arg(&oci).output().unwrap();
    assert!(grep.stdout.is_empty(), "the secret was written to: {}", String::from_utf8_lossy(&grep.stdout));
    // Without the secret the build fails clearly (secrets are optional by
    // default: the RUN itself fails its test), and with required=true the
    // error names the secret.
    context(&ctx, "RUN --mount=type=secret,id=tok,required=true true\n");
    let missing = rbuild(&state).arg(&ctx).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("secret `tok` is required"));
}

#[test]
fn tmpfs_and_bind_mounts_are_visible_and_leave_no_trace() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "RUN --mount=type=tmpfs,target=/scratch grep -q ' /scratch tmpfs' /proc/mounts && echo data > /scratch/x\n\
         RUN --mount=type=bind,source=busybox,target=/mnt/bb cmp /mnt/bb /bin/busybox && ! touch /mnt/bb 2>/dev/null\n\
         RUN --mount=type=bind,from=base,source=/bin,target=/basebin,rw touch /basebin/new && test -e /basebin/new\n\
         RUN test ! -e /scratch/x && test ! -e /bin/new\n",
    );
    ok(rbuild(&state).arg(&ctx));
}

#[test]
fn locked_cache_mounts_serialize_two_concurrent_builds() {
    let Some(Scratch { work, state, .. }) = support::busybox_scratch() else { return };
    let run = "RUN --mount=type=cache,target=/c,sharing=locked \
               if [ -e /c/busy ]; then echo CONFLICT; exit 1; fi; touch /c/busy; sleep 1; rm /c/busy\n";
    let builds: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            let ctx = work.path().join(n);
            context(&ctx, &format!("ARG WHO={n}\n{run}"));
            rbuild(&state).arg(&ctx).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for b in builds {
        let out = b.wait_with_output().unwrap();
        assert!(out.status.success(), "a build failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}
