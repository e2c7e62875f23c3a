//! Disk usage, prune and automatic GC end to end, and the persistent stat
//! cache seen from outside: a second process's no-op rebuild does not read
//! the context file (observed with inotify, not with a hook in our code).

use crate::support::{self, events, ok, started};
use std::io::BufRead;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{BUSYBOX_BASE as BASE, Scratch, busybox_context as context, busybox_ready as ready};

fn rbuild(state: &Path) -> Command {
    support::rbuild_at(state)
}

/// Builds `ctx`; returns the names of the steps that ran.
fn build(state: &Path, ctx: &Path) -> Vec<String> {
    let out = ok(support::rbuild_rawjson(state).arg(ctx));
    started(&events(&out.stderr))
}

fn du(state: &Path) -> serde_json::Value {
    let out = ok(rbuild(state).args(["du", "--format=json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn prune(state: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(rbuild(state)
        .args(["prune", "--force", "--format=json"])
        .args(args));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn descriptions(v: &serde_json::Value) -> Vec<String> {
    v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["description"].as_str().unwrap().to_string())
        .collect()
}

fn count(v: &serde_json::Value, what: &str) -> usize {
    v[what].as_array().unwrap().len()
}

#[test]
fn du_lists_a_build_and_prune_all_empties_the_cache_but_rebuilds_work() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUN echo hello > /hello\n");
    let first = build(&state, &ctx);
    assert!(first.iter().any(|n| n.contains("echo hello")), "{first:?}");

    let usage = du(&state);
    let described = descriptions(&usage);
    assert!(
        described.iter().any(|d| d.contains("echo hello")),
        "{described:?}"
    );
    assert!(
        count(&usage, "blobs") >= 3,
        "layers, config and manifest: {usage}"
    );
    assert!(usage["total"].as_u64().unwrap() > 0);
    let table = ok(rbuild(&state).args(["du"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("echo hello") && table.contains("Total:"),
        "{table}"
    );

    let report = prune(&state, &["--all"]);
    assert!(report["reclaimed"].as_u64().unwrap() > 0);
    let usage = du(&state);
    assert_eq!(count(&usage, "snapshots"), 0, "{usage}");
    assert_eq!(count(&usage, "blobs"), 0, "{usage}");
    assert!(
        support::tree(&state.join("snapshots")).is_empty(),
        "snapshot dirs left"
    );

    let again = build(&state, &ctx);
    assert!(
        again.iter().any(|n| n.contains("echo hello")),
        "the rebuild must run the step again: {again:?}"
    );
    assert!(build(&state, &ctx).is_empty(), "and then be cached");
}

#[test]
fn prune_while_a_build_runs_does_not_break_it() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    let other = work.path().join("other");
    context(
        &ctx,
        "FROM base\nRUN sleep 3 && echo slept > /slept\nRUN cat /slept\n",
    );
    context(&other, "FROM base\nRUN echo garbage > /garbage\n");
    // Cache that the running build will use (the base) and some it won't.
    build(&state, &other);
    // Times have a resolution of one second: make the garbage older than
    // the next build's lease.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let (mut child, mut stderr) = support::spawn_rawjson(&state, &ctx);
    let seen = wait_for_step(&mut stderr, "sleep 3");
    // The build sits in its RUN on top of the base chain now.
    let report = prune(&state, &["--all"]);
    let removed = descriptions(&report);
    assert!(
        removed.iter().any(|d| d.contains("echo garbage")),
        "{removed:?}"
    );
    assert!(
        !removed
            .iter()
            .any(|d| d.contains("busybox") || d.contains("COPY")),
        "{removed:?}"
    );
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = child.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(
        status.success(),
        "the build failed after a concurrent prune:\n{seen}{rest}"
    );
    assert!(
        build(&state, &ctx).is_empty(),
        "what the build used and made is still cached"
    );
}

#[test]
fn keep_storage_keeps_the_most_recently_used() {
    let Some(Scratch { work, state, .. }) = support::busybox_scratch() else { return };
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    context(&old, "FROM base\nRUN head -c 1048576 /bin/busybox > /old\n");
    context(&new, "FROM base\nRUN head -c 1048576 /bin/busybox > /new\n");
    build(&state, &old);
    // Last-use times have a resolution of one second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(&state, &new);
    let usage = du(&state);
    let sum = |what: &str, only_garbage: bool| -> u64 {
        usage[what]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !only_garbage || e["referenced"] == false)
            .map(|e| e["size"].as_u64().unwrap())
            .sum()
    };
    let cache = sum("snapshots", false) + sum("blobs", false);
    // Less than that minus what nothing references: one snapshot must go.
    let keep = cache - sum("blobs", true) - 1;
    let report = prune(&state, &[&format!("--keep-storage={keep}")]);
    let removed = descriptions(&report);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].contains("> /old"), "{removed:?}");
    assert!(
        build(&state, &new).is_empty(),
        "the recent build is still cached"
    );
    let rerun = build(&state, &old);
    assert_eq!(rerun.len(), 1, "only the pruned step runs again: {rerun:?}");
}

#[test]
fn automatic_gc_prunes_to_the_configured_cap_after_a_build() {
    let Some(Scratch { work, state, .. }) = support::busybox_scratch() else { return };
    let config_home = work.path().join("config");
    std::fs::create_dir_all(config_home.join("rbuild")).unwrap();
    std::fs::write(
        config_home.join("rbuild/config.toml"),
        "gc-keep-storage = \"1KB\"\n",
    )
    .unwrap();
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    context(&old, "FROM base\nRUN echo old > /old\n");
    context(&new, "FROM base\nRUN echo new > /new\n");
    build(&state, &old);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let usage_before = du(&state);
    assert!(
        descriptions(&usage_before)
            .iter()
            .any(|d| d.contains("echo old"))
    );
    ok(rbuild(&state)
        .env("XDG_CONFIG_HOME", &config_home)
        .args(["build", "--progress=plain"])
        .arg(&new));
    let usage = du(&state);
    let described = descriptions(&usage);
    assert!(
        !described.iter().any(|d| d.contains("echo old")),
        "over the cap, older cache goes: {described:?}"
    );
}

/// An inotify watch for reads of one file.
struct ReadWatch(OwnedFd);

impl ReadWatch {
    fn new(path: &Path) -> Option<Self> {
        // SAFETY: a plain syscall; the fd is owned right away.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid C string for the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_ACCESS) };
        (wd >= 0).then_some(ReadWatch(fd))
    }

    /// Whether the file was read since the last call.
    fn was_read(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        // SAFETY: `buf` is writable for its length.
        while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
            any = true;
        }
        any
    }
}

#[test]
fn a_no_op_rebuild_in_a_new_process_reads_no_context_file() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nCOPY data /data\nRUN cat /data\n");
    let data: PathBuf = ctx.join("data");
    std::fs::write(&data, vec![b'd'; 100_000]).unwrap();
    let Some(watch) = ReadWatch::new(&data) else {
        support::skip("inotify is not available");
        return;
    };
    assert!(!build(&state, &ctx).is_empty());
    assert!(
        watch.was_read(),
        "the first build reads the file (so the watch works)"
    );
    let second = build(&state, &ctx);
    assert!(
        second.is_empty(),
        "nothing changed, nothing runs: {second:?}"
    );
    assert!(
        !watch.was_read(),
        "the second process hashed `data` without reading it"
    );
    // Changing the file is still noticed.
    std::fs::write(&data, vec![b'e'; 100_000]).unwrap();
    let third = build(&state, &ctx);
    assert!(third.iter().any(|n| n.contains("COPY data")), "{third:?}");
}

#[test]
fn an_unprivileged_user_can_see_and_prune_its_cache() {
    if !Path::new("/bin/busybox").exists() {
        support::skip("needs busybox-static");
        return;
    }
    let Some(user) = support::Runner::unprivileged() else {
        return;
    };
    let work = support::open_tempdir();
    let (state, ctx) = (work.path().join("state"), work.path().join("ctx"));
    user.own(&state);
    // Files owned by ids of the user's subordinate range, and a dir they
    // cannot write: removal happens inside the user namespace.
    context(
        &ctx,
        "FROM base\nRUN mkdir -p /locked/in && echo x > /locked/in/f && chown -R 1000:1000 /locked && chmod 500 /locked\n",
    );
    std::fs::set_permissions(&ctx, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root_arg = format!("--root={}", state.display());
    ok(user
        .rbuild()
        .args([&root_arg, "build", "--progress=plain"])
        .arg(&ctx));
    let usage: serde_json::Value =
        serde_json::from_slice(&ok(user.rbuild().args([&root_arg, "du", "--format=json"])).stdout)
            .unwrap();
    assert!(count(&usage, "snapshots") >= 2, "{usage}");
    ok(user.rbuild().args([&root_arg, "prune", "--all", "--force"]));
    let usage: serde_json::Value =
        serde_json::from_slice(&ok(user.rbuild().args([&root_arg, "du", "--format=json"])).stdout)
            .unwrap();
    assert_eq!(count(&usage, "snapshots"), 0, "{usage}");
    assert_eq!(count(&usage, "blobs"), 0, "{usage}");
}

#[test]
fn local_images_survive_prune_all_until_rmi() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUN echo kept > /kept\n");
    ok(rbuild(&state)
        .args(["build", "--progress=plain", "-t", "gc-app:1"])
        .arg(&ctx));
    let report = prune(&state, &["--all"]);
    assert!(count(&report, "snapshots") > 0, "the cache goes: {report}");
    assert!(
        count(&report, "blobs") == 0,
        "the image's blobs stay: {report}"
    );
    // The image still runs: its layers are unpacked again from its blobs.
    let out = ok(rbuild(&state).args(["run", "--rm", "gc-app:1", "cat", "/kept"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept");
    ok(rbuild(&state).args(["rmi", "gc-app:1"]));
    let report = prune(&state, &["--all"]);
    assert!(
        count(&report, "blobs") >= 3,
        "untagged, its blobs go: {report}"
    );
    let usage = du(&state);
    assert_eq!(count(&usage, "blobs"), 0, "{usage}");
    assert_eq!(count(&usage, "snapshots"), 0, "{usage}");
}

/// Waits until the rawjson stream of a running build reports that the step
/// whose name contains `needle` started; returns what it read.
fn wait_for_step(stderr: &mut impl BufRead, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the build ended before `{needle}` started:\n{seen}");
        }
        seen.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "started" && v["name"].as_str().is_some_and(|n| n.contains(needle)) {
            return seen;
        }
    }
}

#[test]
fn prune_all_during_a_build_on_a_pulled_base_and_pulling_again_afterwards() {
    if !ready() {
        return;
    }
    let Some(registry) = support::Registry::start() else {
        return;
    };
    let work = support::open_tempdir();
    let base_ctx = work.path().join("base");
    std::fs::create_dir_all(&base_ctx).unwrap();
    std::fs::copy("/bin/busybox", base_ctx.join("busybox")).unwrap();
    std::fs::write(base_ctx.join("Dockerfile"), BASE.replace(" AS base", "")).unwrap();
    let base_ref = format!("{}/gc/base:1", registry.host());
    ok(rbuild(&work.path().join("pusher"))
        .args(["build", "--progress=plain", "--push", "-t", &base_ref])
        .arg(&base_ctx));

    let state = work.path().join("state");
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base_ref}\nRUN sleep 3 && echo pulled > /p\n"),
    )
    .unwrap();
    let (mut child, mut stderr) = support::spawn_rawjson(&state, &ctx);
    let seen = wait_for_step(&mut stderr, "sleep 3");
    let during = prune(&state, &["--all"]);
    assert_eq!(
        count(&during, "snapshots"),
        0,
        "everything belongs to the running build: {during}"
    );
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(
        child.wait().unwrap().success(),
        "the build failed after a concurrent prune:\n{seen}{rest}"
    );

    // Nobody builds now: everything goes, and the next build pulls again.
    prune(&state, &["--all"]);
    let usage = du(&state);
    assert_eq!(
        (count(&usage, "snapshots"), count(&usage, "blobs")),
        (0, 0),
        "{usage}"
    );
    let ran = build(&state, &ctx);
    assert!(ran.iter().any(|n| n.contains("sleep 3")), "{ran:?}");
    let usage = du(&state);
    assert!(
        descriptions(&usage).iter().any(|d| d.starts_with("layer ")),
        "the base was pulled again: {usage}"
    );
}

#[test]
fn prune_without_force_and_without_a_terminal_removes_nothing() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUN echo keep > /keep\n");
    build(&state, &ctx);
    let out = rbuild(&state)
        .args(["prune", "--all"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(build(&state, &ctx).is_empty(), "nothing was removed");
    let bad = rbuild(&state)
        .args(["prune", "--force", "--filter", "type=regular"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`type=regular`"));
}
