//! Sandbox start-up overhead: `RUN true` over an overlay of a busybox
//! rootfs, with `--network=none` and with the default slirp4netns network.
//! `cargo bench -p rbuild-sandbox --bench start` (root or unprivileged).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use rbuild_sandbox::{Executor, HelperCommand, Network, Rootfs, RunSpec};
use rbuild_snapshot::Snapshotter;

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "{name}: mean {:.2} ms, median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
        mean.as_secs_f64() * 1e3,
        v[v.len() / 2].as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    );
}

fn main() {
    rbuild_sandbox::helper::run_if_requested();
    let info = match rbuild_sandbox::enter_build_namespace() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("note: cannot enter a build namespace ({e}); benchmark skipped");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Snapshotter::open(&dir.path().join("snapshots")).expect("store");
    let a = store.prepare(None).expect("prepare");
    let bin = a.upper.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox");
    for applet in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    let base = store.commit(a).expect("commit");
    let layer = store.prepare(Some(&base)).expect("prepare");
    let with_cg = Executor::new(HelperCommand::current_exe().expect("exe"))
        .with_run_dir(dir.path().join("run"));
    let without_cg = with_cg.clone().without_pids_cgroup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut spec = RunSpec {
        rootfs: Rootfs::Overlay {
            lowerdirs: layer.lowers.clone(),
            upperdir: layer.upper.clone(),
            workdir: layer.work.clone(),
        },
        args: vec!["/bin/true".into()],
        network: Network::None,
        ..RunSpec::default()
    };
    println!("mode: {:?}", info.mode);
    let mut cases = vec![
        ("RUN true, network=none", &without_cg, Network::None, 50),
        (
            "RUN true, network=sandbox (slirp4netns)",
            &without_cg,
            Network::Sandbox,
            20,
        ),
    ];
    if with_cg.uses_pids_cgroup() {
        cases.push((
            "RUN true, network=none, pids cgroup",
            &with_cg,
            Network::None,
            50,
        ));
    }
    for (name, executor, network, runs) in cases {
        spec.network = network;
        let mut times = Vec::new();
        for i in 0..runs + 3 {
            let t = Instant::now();
            let r = rt.block_on(executor.run(&spec, &mut |_, _| {}));
            let el = t.elapsed();
            match r {
                Ok(r) if r.success() => {}
                other => {
                    eprintln!("{name}: run failed: {other:?}");
                    break;
                }
            }
            if i >= 3 {
                times.push(el);
            }
        }
        if !times.is_empty() {
            stats(name, times);
        }
    }
}
