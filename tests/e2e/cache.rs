//! Scheduling and caching end to end: parallel stages, unneeded stages,
//! precise invalidation, `.dockerignore`, concurrent builds on one state dir.

use crate::support::{self, Scratch, busybox_context as context, events, ok, started};
use std::path::Path;
use std::process::{Command, Stdio};


fn build(state: &Path, ctx: &Path) -> Vec<serde_json::Value> {
    let out = ok(support::rbuild_rawjson(state).arg(ctx));
    events(&out.stderr)
}


/// (start, end) in ms of the step whose name contains `needle`.
fn interval(events: &[serde_json::Value], needle: &str) -> (u64, u64) {
    let at = |kind: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind && e["name"].as_str().is_some_and(|n| n.contains(needle)))
            .and_then(|e| e["time_ms"].as_u64())
            .unwrap_or_else(|| panic!("no `{kind}` event for `{needle}`"))
    };
    (at("started"), at("done"))
}

#[test]
fn independent_stages_overlap_and_unneeded_stages_never_run() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    let mut df = String::new();
    for s in ["a", "b", "c", "d"] {
        df.push_str(&format!("FROM base AS {s}\nRUN sleep 1 && echo {s} > /{s}\n"));
    }
    df.push_str("FROM base AS unused\nRUN echo never-needed\nFROM base\n");
    for s in ["a", "b", "c", "d"] {
        df.push_str(&format!("COPY --from={s} /{s} /\n"));
    }
    context(&ctx, &df);
    let ev = build(&state, &ctx);
    let spans: Vec<(u64, u64)> = ["a > /a", "b > /b", "c > /c", "d > /d"].iter().map(|n| interval(&ev, n)).collect();
    let last_start = spans.iter().map(|s| s.0).max().unwrap();
    let first_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(last_start < first_end, "the four sleeping stages did not all run at once: {spans:?}");
    assert!(!started(&ev).iter().any(|n| n.contains("never-needed")), "an unneeded stage ran");
}

#[test]
fn edits_rerun_exactly_the_steps_after_them_and_ignored_files_or_mtimes_nothing() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "FROM base\nCOPY early.txt /\nRUN cat /early.txt > /e\nCOPY late.txt /\nRUN cat /late.txt > /l\nCOPY . /all/\n",
    );
    std::fs::write(ctx.join(".dockerignore"), "ignored.txt\n").unwrap();
    for (f, text) in [("early.txt", "e1"), ("late.txt", "l1"), ("ignored.txt", "i1")] {
        std::fs::write(ctx.join(f), text).unwrap();
    }
    build(&state, &ctx);
    std::fs::write(ctx.join("late.txt"), "l2").unwrap();
    let ran = started(&build(&state, &ctx));
    assert_eq!(ran.len(), 3, "expected COPY late.txt, its RUN and COPY . to rerun: {ran:?}");
    assert!(ran[0].contains("COPY late.txt") && ran[1].contains("RUN cat /late.txt") && ran[2].contains("COPY . /all/"), "{ran:?}");
    std::fs::write(ctx.join("ignored.txt"), "i2").unwrap();
    let ran = started(&build(&state, &ctx));
    assert!(ran.is_empty(), "editing an ignored file reran {ran:?}");
    let st = Command::new("touch").arg("-d").arg("2001-01-01").arg(ctx.join("early.txt")).status().unwrap();
    assert!(st.success());
    let ran = started(&build(&state, &ctx));
    assert!(ran.is_empty(), "touching mtimes reran {ran:?}");
    std::fs::set_permissions(ctx.join("early.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ran = started(&build(&state, &ctx));
    assert!(ran.first().is_some_and(|n| n.contains("COPY early.txt")), "a mode change must rerun the COPY: {ran:?}");
}

#[test]
fn two_builds_on_one_state_dir_at_once_both_succeed_and_share_steps() {
    let Some(Scratch { work, state, .. }) = support::busybox_scratch() else { return };
    let children: Vec<_> = (0..2)
        .map(|i| {
            let ctx = work.path().join(format!("ctx{i}"));
            // The same base (shared vertices) and one step of their own.
            // The shared step is slow, so both builds want it at once.
            context(
                &ctx,
                &format!("FROM base\nRUN sleep 1; cat /proc/sys/kernel/random/uuid > /shared\nRUN echo {i} > /own\n"),
            );
            Command::new(env!("CARGO_BIN_EXE_rbuild"))
                .arg(format!("--root={}", state.display()))
                .args(["build", "--progress=rawjson"])
                .arg(&ctx)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut shared_runs = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent build failed: {}", String::from_utf8_lossy(&out.stderr));
        let ran = started(&events(&out.stderr));
        shared_runs += ran.iter().filter(|n| n.contains("random/uuid")).count();
        assert!(ran.iter().any(|n| n.contains("> /own")), "each build runs its own step: {ran:?}");
    }
    // One build ran the shared step; the other waited for it and used its
    // result (never both: the result would differ, the uuid is random).
    assert_eq!(shared_runs, 1, "the shared step ran in both builds");
    // Afterwards the shared steps are cached for a third build.
    let ctx = work.path().join("ctx0");
    assert!(started(&build(&state, &ctx)).is_empty());
    assert_eq!(std::fs::read_dir(state.join("locks")).unwrap().count(), 0, "lock files left behind");
}

#[test]
fn no_cache_filter_reruns_a_stage_and_what_depends_on_it_and_the_result_is_cached() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(
        &ctx,
        "FROM base AS stamp\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n\
         FROM base AS other\nRUN echo stable > /other\n\
         FROM base\nCOPY --from=stamp /stamp /\nCOPY --from=other /other /\nRUN cat /stamp > /copy\n",
    );
    build(&state, &ctx);
    let run = |extra: &[&str]| {
        let out = ok(Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg(format!("--root={}", state.display()))
            .args(["build", "--progress=rawjson"])
            .args(extra)
            .arg(&ctx));
        started(&events(&out.stderr))
    };
    let ran = run(&["--no-cache-filter", "stamp"]);
    assert!(ran.iter().any(|n| n.contains("random/uuid")), "the filtered stage did not rerun: {ran:?}");
    assert!(ran.iter().any(|n| n.contains("COPY --from=stamp")), "its dependents did not rerun: {ran:?}");
    assert!(ran.iter().any(|n| n.contains("cat /stamp")), "its dependents did not rerun: {ran:?}");
    assert!(!ran.iter().any(|n| n.contains("echo stable")), "an unfiltered stage reran: {ran:?}");
    let ran = run(&[]);
    assert!(ran.is_empty(), "the rerun's results were not cached: {ran:?}");
    let ran = run(&["--no-cache"]);
    assert!(ran.iter().any(|n| n.contains("echo stable")) && ran.iter().any(|n| n.contains("random/uuid")), "{ran:?}");
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_no_process_mount_or_half_result() {
    use std::io::BufRead;
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    context(&ctx, "FROM base\nRUN echo started-31337 && sleep 31337\n");
    let (mut child, stderr) = support::spawn_rawjson(&state, &ctx);
    let mut seen = false;
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("started-31337") && line.contains("\"log\"") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the RUN never started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted build must not succeed");
    // Give the kernel a moment to reap the sandbox's pid namespace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = Command::new("pgrep").args(["-f", "sleep 31337"]).output().unwrap();
        if left.stdout.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the RUN's process survived the cancelled build");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&state.display().to_string()), "a mount survived the cancelled build");
    // The cache is consistent: the same build, minus the sleep, works.
    context(&ctx, "FROM base\nRUN echo started-31337\n");
    build(&state, &ctx);
}
