//! Build-loop benchmarks of the `rbuild` binary (run as root: `cargo bench -p
//! rbuild-cli --bench rebuild`). Prints one line per case; nothing is
//! asserted.
//!
//! - no-op rebuild of a 500-file app (target: ≤ 50 ms)
//! - rebuild after a one-file edit
//! - cold COPY of a 20,000-file context

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BASE: &str = "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

fn build(state: &Path, ctx: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg(format!("--root={}", state.display()))
        .args(["build", "-q"])
        .arg(ctx)
        .output()
        .expect("run rbuild");
    assert!(out.status.success(), "build failed: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

fn tree(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("src/d{}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n").repeat(20)).unwrap();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, d: Duration) {
    println!("{name:<42} {:>9.1} ms", d.as_secs_f64() * 1000.0);
}

fn main() {
    if !nix_is_root() || !Path::new("/bin/busybox").exists() {
        println!("skipped: needs root and /bin/busybox");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let app = work.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy("/bin/busybox", app.join("busybox")).unwrap();
    tree(&app, 500);
    std::fs::write(app.join("Dockerfile"), format!("{BASE}FROM base\nWORKDIR /app\nCOPY src/ ./src/\nRUN ls -R src | wc -l > /count\n")).unwrap();
    report("first build, 500-file app", build(&state, &app));
    report("no-op rebuild, 500-file app (median of 10)", median((0..10).map(|_| build(&state, &app)).collect()));
    let mut edits = Vec::new();
    for i in 0..5 {
        std::fs::write(app.join("src/d7/f7.txt"), format!("edit {i}\n")).unwrap();
        edits.push(build(&state, &app));
    }
    report("rebuild after a one-file edit (median of 5)", median(edits));

    let big = work.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::copy("/bin/busybox", big.join("busybox")).unwrap();
    tree(&big, 20_000);
    std::fs::write(big.join("Dockerfile"), format!("{BASE}FROM base\nCOPY src/ /src/\n")).unwrap();
    build(&state, &app); // base cached
    report("cold COPY of a 20,000-file context", build(&state, &big));
    report("no-op rebuild, 20,000-file context", build(&state, &big));
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
