//! The heavy suite: a Debian base made with debootstrap, apt-get inside RUN
//! (network through the user-mode stack), cache mounts for apt, and the
//! production Dockerfile pattern; as root and as an unprivileged user.

use crate::support::{self, Registry, Runner, ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A minbase bookworm rootfs, made once per machine and reused.
fn debian_rootfs() -> Option<PathBuf> {
    let dir = PathBuf::from("/var/tmp/rbuild-e2e-bookworm");
    let done = PathBuf::from("/var/tmp/rbuild-e2e-bookworm.complete");
    if done.exists() {
        return Some(dir);
    }
    if !support::have("debootstrap") || !support::is_root() {
        support::skip("needs root and debootstrap");
        return None;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    if !out.status.success() {
        // No mirror reachable is an environment problem, not a failure of ours.
        support::skip(&format!("debootstrap failed: {}", String::from_utf8_lossy(&out.stderr)));
        return None;
    }
    std::fs::write(&done, "").ok()?;
    Some(dir)
}

/// Imports the rootfs as `<registry>/e2e/debian:bookworm` with rbuild itself,
/// as root (the rootfs has root-only files, like any base image's source).
fn push_debian(registry: &Registry, rootfs: &Path, work: &Path) -> String {
    let runner = Runner::Root;
    let state = work.join("import-state");
    let ctx = work.join("import");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY --from=rootfs / /\nCMD [\"bash\"]\n").unwrap();
    let name = format!("{}/e2e/debian:bookworm", registry.host());
    ok(runner
        .rbuild()
        .arg(format!("--root={}", state.display()))
        .args(["build", "--progress=plain", "--push", "-t", &name])
        .arg(format!("--build-context=rootfs={}", rootfs.display()))
        .arg(&ctx));
    name
}

const APP: &str = r#"ARG BASE
FROM ${BASE} AS build
WORKDIR /src
RUN echo '<h1>hello from rbuild</h1>' > index.html

FROM ${BASE} AS app
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean && \
    apt-get update -q && apt-get install -y -q --no-install-recommends busybox && \
    useradd -r -u 999 -U web
COPY --from=build --chown=web:web /src/index.html /srv/www/index.html
USER web
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["busybox", "wget", "-qO-", "http://127.0.0.1:8080/"]
CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/www"]

FROM app AS check
RUN test "$(stat -c %u:%g /srv/www/index.html)" = 999:999 && test "$(id -un)" = web && \
    busybox httpd -p 127.0.0.1:8080 -h /srv/www && \
    busybox wget -qO- http://127.0.0.1:8080/index.html | grep -q 'hello from rbuild'
"#;

fn production_pattern(runner: &Runner) {
    let Some(rootfs) = debian_rootfs() else { return };
    let Some(registry) = Registry::start() else { return };
    let work = support::open_tempdir();
    let state = work.path().join("state");
    runner.own(&state);
    let base = push_debian(&registry, &rootfs, work.path());
    let ctx = work.path().join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), APP).unwrap();
    let app = format!("{}/e2e/app:prod", registry.host());
    let build = |target: &str, extra: &[&str]| {
        ok(runner
            .rbuild()
            .arg(format!("--root={}", state.display()))
            .args(["build", "--progress=plain", "--build-arg", &format!("BASE={base}"), "--target", target])
            .args(extra)
            .arg(&ctx))
    };
    // The check stage starts the image's service and fetches from it.
    build("check", &[]);
    build("app", &["--push", "-t", &app]);
    // The image runs its service with `rbuild run` (no Docker needed).
    build("app", &["--load", "-t", "e2e-web:prod"]);
    let served = ok(runner.rbuild().arg(format!("--root={}", state.display())).args([
        "run",
        "--network",
        "none",
        "e2e-web:prod",
        "sh",
        "-c",
        "busybox httpd -p 127.0.0.1:8080 -h /srv/www && busybox wget -qO- http://127.0.0.1:8080/index.html",
    ]));
    assert!(String::from_utf8_lossy(&served.stdout).contains("hello from rbuild"), "the service did not answer");
    let raw = ok(Command::new("skopeo").args(["inspect", "--config", "--raw", "--tls-verify=false", &format!("docker://{app}")]));
    let config: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "web");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Cmd"], serde_json::json!(["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/www"]));
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
}

#[test]
fn debian_apt_and_the_production_pattern_as_root() {
    if !support::is_root() {
        support::skip("needs root");
        return;
    }
    production_pattern(&Runner::Root);
}

#[test]
fn debian_apt_and_the_production_pattern_as_unprivileged_user() {
    let Some(user) = Runner::unprivileged() else { return };
    production_pattern(&user);
}
