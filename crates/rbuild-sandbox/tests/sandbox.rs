//! End-to-end sandbox tests, run as root and again as an unprivileged user
//! with a subordinate id range (the root run re-executes this binary as
//! `rbuild-test` through `setpriv`). `harness = false` because the process
//! must enter its namespace before any thread exists.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use rbuild_sandbox::{Mount, MountKind, NamespaceMode, Network, RunResult, SandboxError};
use support::{Ctx, ensure_test_user, tree_contains, wait_gone};

type R = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

const CASES: &[&str] = &[
    "files_owners_modes",
    "chown_to_other_id",
    "whiteouts_and_opaque_dirs",
    "no_stub_left_in_upper",
    "exit_codes_propagate",
    "network_none_has_no_route",
    "network_sandbox_isolates_host_loopback",
    "orphans_are_killed",
    "pids_limit_contains_fork_storm",
    "cancel_kills_everything",
    "secrets_never_hit_disk",
    "fds_are_closed",
    "workdir_checks",
    "mount_kinds",
    "identity_files_and_caps",
    "foreign_arch_needs_binfmt",
    "overlay_many_lowers_in_process",
    "ssh_agent_is_forwarded",
    "apt_get_install_in_debian",
    "copy_backend_runs_on_plain_dirs",
    "build_process_death_kills_sandbox",
];

fn main() {
    rbuild_sandbox::helper::run_if_requested();
    test_client_if_requested();
    test_runner_if_requested();
    let info = match rbuild_sandbox::enter_build_namespace() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("note: skipping sandbox tests, cannot enter a build namespace: {e}");
            return;
        }
    };
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rootless = info.mode != NamespaceMode::Root;
    let ranged = matches!(
        info.mode,
        NamespaceMode::Root | NamespaceMode::Rootless { .. }
    );
    let label = match info.mode {
        NamespaceMode::Root => "root",
        NamespaceMode::Rootless { .. } => "unprivileged",
        NamespaceMode::RootlessSingleId => "single-id",
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if heavy()
        && !rootless
        && let Err(e) = support::ensure_debian_tarball()
    {
        println!("note: no Debian rootfs ({e}); the apt-get case will be skipped");
    }
    let ctx = match Ctx::new(rootless, ranged) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[{label}] fixture failed: {e}");
            std::process::exit(1);
        }
    };
    let mut failed = 0;
    for name in CASES {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let res = rt.block_on(run_case(name, &ctx));
        match res {
            Ok(()) => println!("[{label}] {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("[{label}] {name} ... FAILED\n{e}\n");
            }
        }
    }
    drop(ctx);
    if let Some(w) = &info.warning {
        println!("[{label}] namespace warning: {w}");
        if !w.contains("usermod") {
            println!("[{label}] warning does not say how to fix it");
            failed += 1;
        }
    } else if !ranged {
        println!("[{label}] single-id map without a warning");
        failed += 1;
    }
    if !rootless && std::env::var_os("RBUILD_TEST_NO_UNPRIV").is_none() {
        failed += run_unprivileged(support::TEST_USER, filter.as_deref());
        if support::ensure_single_id_user() {
            failed += run_unprivileged(support::SINGLE_USER, filter.as_deref());
        }
    }
    if failed > 0 {
        println!("{failed} failed");
        std::process::exit(1);
    }
}

/// Re-runs this binary as the unprivileged test user; returns failures.
fn run_unprivileged(user: &str, filter: Option<&str>) -> i32 {
    if user == support::TEST_USER && !ensure_test_user() {
        println!("note: cannot create `{user}`; unprivileged run skipped");
        return 0;
    }
    let Ok(exe) = std::env::current_exe() else {
        return 1;
    };
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--init-groups",
        "--",
    ])
    .arg(&exe)
    .env("HOME", format!("/home/{user}"))
    .env("TMPDIR", "/tmp")
    .env_remove("XDG_RUNTIME_DIR");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    match cmd.status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            println!("unprivileged run failed: {s}");
            1
        }
        Err(e) => {
            println!("note: setpriv unavailable ({e}); unprivileged run skipped");
            0
        }
    }
}

async fn run_case(name: &str, c: &Ctx) -> R {
    match name {
        "files_owners_modes" => files_owners_modes(c).await,
        "chown_to_other_id" => chown_to_other_id(c).await,
        "whiteouts_and_opaque_dirs" => whiteouts(c).await,
        "no_stub_left_in_upper" => no_stub_left(c).await,
        "exit_codes_propagate" => exit_codes(c).await,
        "network_none_has_no_route" => network_none(c).await,
        "network_sandbox_isolates_host_loopback" => network_sandbox(c).await,
        "orphans_are_killed" => orphans(c).await,
        "pids_limit_contains_fork_storm" => pids_limit(c).await,
        "cancel_kills_everything" => cancel(c).await,
        "secrets_never_hit_disk" => secrets(c).await,
        "fds_are_closed" => fds_closed(c).await,
        "workdir_checks" => workdir(c).await,
        "mount_kinds" => mount_kinds(c).await,
        "identity_files_and_caps" => identity(c).await,
        "foreign_arch_needs_binfmt" => foreign_arch(c).await,
        "overlay_many_lowers_in_process" => many_lowers(c),
        "ssh_agent_is_forwarded" => ssh_agent(c).await,
        "apt_get_install_in_debian" => apt_get(c).await,
        "copy_backend_runs_on_plain_dirs" => copy_backend(c).await,
        "build_process_death_kills_sandbox" => build_process_death(c).await,
        other => Err(format!("unknown case {other}")),
    }
}

fn meta(p: &std::path::Path) -> Result<std::fs::Metadata, String> {
    std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))
}

async fn files_owners_modes(c: &Ctx) -> R {
    let a = c.layer();
    let spec = c.spec(&a, "echo hi > /rootfile && chmod 640 /rootfile");
    c.run(&spec).await.ok()?;
    let m = meta(&a.upper.join("rootfile"))?;
    ensure!(
        m.uid() == 0 && m.gid() == 0 && m.mode() & 0o7777 == 0o640,
        "rootfile {}:{} {:o}",
        m.uid(),
        m.gid(),
        m.mode()
    );
    if !c.ranged {
        // Single-id map: switching to another user fails with a clear error.
        let mut spec = c.spec(&a, "true");
        spec.user = "app".into();
        return match c.run(&spec).await.result {
            Err(SandboxError::Setup(m)) if m.contains("not mapped") => Ok(()),
            other => Err(format!("USER app with a single-id map gave {other:?}")),
        };
    }
    c.run(&c.spec(
        &a,
        "mkdir -p /home/app && chown app:app /home/app && chmod 750 /home/app",
    ))
    .await
    .ok()?;
    let m = meta(&a.upper.join("home/app"))?;
    ensure!(
        m.uid() == 1000 && m.gid() == 1000,
        "home/app owner {}:{}",
        m.uid(),
        m.gid()
    );
    // A second step on the same layer, as USER app.
    let mut spec = c.spec(
        &a,
        "echo x > /home/app/f && mkdir /home/app/d && id -u && id -G",
    );
    spec.user = "app".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(out.stdout.starts_with("1000\n"), "id -u: {}", out.stdout);
    ensure!(
        out.stdout.contains("2000"),
        "supplementary group missing: {}",
        out.stdout
    );
    let f = meta(&a.upper.join("home/app/f"))?;
    let d = meta(&a.upper.join("home/app/d"))?;
    ensure!(
        f.uid() == 1000 && f.gid() == 1000 && f.mode() & 0o777 == 0o644,
        "f {}:{} {:o}",
        f.uid(),
        f.gid(),
        f.mode()
    );
    ensure!(
        d.mode() & 0o777 == 0o755,
        "umask 022 not applied: {:o}",
        d.mode()
    );
    Ok(())
}

async fn chown_to_other_id(c: &Ctx) -> R {
    let a = c.layer();
    if !c.ranged {
        let out = c.run(&c.spec(&a, "touch /x && chown 4242:4343 /x")).await;
        ensure!(
            matches!(out.result, Ok(r) if !r.success()) && out.stderr.contains("Invalid argument"),
            "chown with a single-id map: {out:?}"
        );
        return Ok(());
    }
    c.run(&c.spec(&a, "touch /x && chown 4242:4343 /x"))
        .await
        .ok()?;
    let m = meta(&a.upper.join("x"))?;
    ensure!(
        m.uid() == 4242 && m.gid() == 4343,
        "x owned by {}:{}",
        m.uid(),
        m.gid()
    );
    Ok(())
}

async fn whiteouts(c: &Ctx) -> R {
    let a = c.layer();
    c.run(&c.spec(
        &a,
        "rm /data/del && rm -rf /dir && mkdir /dir && echo n > /dir/new",
    ))
    .await
    .ok()?;
    let wh = meta(&a.upper.join("data/del"))?;
    ensure!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "data/del is not a 0:0 whiteout"
    );
    ensure!(
        !a.upper.join("data/keep").exists(),
        "untouched file copied up"
    );
    let dir = a.upper.join("dir");
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(&dir, "user.overlay.opaque", &mut buf)
        .map_err(|e| format!("opaque xattr: {e}"))?;
    ensure!(&buf[..n] == b"y", "opaque xattr value {:?}", &buf[..n]);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(names == ["new"], "opaque dir content {names:?}");
    Ok(())
}

async fn no_stub_left(c: &Ctx) -> R {
    let a = c.layer();
    let mut spec = c.spec(&a, "cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && test -f /run/secrets/tok && ls /proc/self >/dev/null && test -c /dev/null && echo x > /mnt/t/y");
    spec.mounts = vec![
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                data: b"s".to_vec(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        },
        Mount {
            target: "/mnt/t".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    c.run(&spec).await.ok()?;
    let left: Vec<_> = std::fs::read_dir(&a.upper)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(left.is_empty(), "upper dir is not empty: {left:?}");
    Ok(())
}

async fn exit_codes(c: &Ctx) -> R {
    let a = c.layer();
    let r = c
        .run(&c.spec(&a, "exit 3"))
        .await
        .result
        .map_err(|e| e.to_string())?;
    ensure!(r == RunResult::Exited(3), "exit 3 gave {r:?}");
    let r = c
        .run(&c.spec(&a, "kill -9 $$"))
        .await
        .result
        .map_err(|e| e.to_string())?;
    ensure!(r == RunResult::Signaled(9), "kill -9 gave {r:?}");
    let mut spec = c.spec(&a, "");
    spec.args = vec!["no-such-command".into()];
    match c.run(&spec).await.result {
        Err(SandboxError::Setup(m)) if m.contains("not found") => Ok(()),
        other => Err(format!("missing command gave {other:?}")),
    }
}

async fn network_none(c: &Ctx) -> R {
    let a = c.layer();
    let out = c
        .run(&c.spec(
            &a,
            "ip route; ip -o link | cut -d: -f2; nc -w 2 192.0.2.1 80 </dev/null 2>&1; true",
        ))
        .await;
    out.ok()?;
    ensure!(
        out.stdout.lines().any(|l| l.trim() == "lo"),
        "no lo: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.lines().any(|l| l.trim() == "tap0"),
        "an interface besides lo: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.contains("default"),
        "a route exists: {}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("unreachable"),
        "connect did not fail as unreachable: {}",
        out.stdout
    );
    Ok(())
}

/// This host's address on its default route (no packet is sent).
fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn network_sandbox(c: &Ctx) -> R {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    // Accept and immediately close every connection, counting them.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let external = host_address();
    let mut script = format!(
        "ip -o addr show tap0 | grep -q 10.0.2.100 && echo tap-ok; ip route | grep -q default && echo route-ok; \
         for h in 127.0.0.1 10.0.2.2; do timeout 5 nc -w 2 $h {port} </dev/null >/dev/null 2>&1 && echo reached-$h; done; "
    );
    if let Some(ip) = external {
        script.push_str(&format!(
            "echo hello | timeout 5 nc -w 2 {ip} {port} && echo outbound-ok; "
        ));
    }
    script.push_str("true");
    let a = c.layer();
    let mut spec = c.spec(&a, &script);
    spec.network = Network::Sandbox;
    let out = c.run(&spec).await;
    if let Err(SandboxError::SlirpMissing) = out.result {
        println!("note: slirp4netns missing, network test skipped");
        return Ok(());
    }
    out.ok()?;
    ensure!(
        out.stdout.contains("tap-ok") && out.stdout.contains("route-ok"),
        "slirp network not configured: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.contains("reached"),
        "host loopback reachable: {}",
        out.stdout
    );
    if external.is_some() {
        ensure!(
            out.stdout.contains("outbound-ok"),
            "no outbound connection through slirp4netns: {}",
            out.stdout
        );
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        ensure!(
            n == 1,
            "the host server saw {n} connections, expected only the outbound one"
        );
    } else {
        println!("note: no non-loopback host address; outbound check skipped");
    }
    Ok(())
}

async fn orphans(c: &Ctx) -> R {
    let a = c.layer();
    let tag = format!("{}", 7000 + std::process::id() % 1000);
    let out = c
        .run(&c.spec(&a, &format!("sleep {tag}1 & sleep {tag}2 & echo started")))
        .await;
    out.ok()?;
    let left = wait_gone(&format!("sleep {tag}"));
    ensure!(left.is_empty(), "background processes survived: {left:?}");
    Ok(())
}

async fn pids_limit(c: &Ctx) -> R {
    let a = c.layer();
    let tag = format!("{}", 5000 + std::process::id() % 1000);
    // The shell forks until the limit stops it ("can't fork") and exits.
    let mut spec = c.spec(
        &a,
        &format!("i=0; while [ $i -lt 200 ]; do sleep {tag}3 & i=$((i+1)); done; echo all-spawned"),
    );
    spec.pids_limit = Some(32);
    let out = c.run(&spec).await;
    let r = out.result.as_ref().map_err(|e| e.to_string())?;
    ensure!(
        !r.success() && !out.stdout.contains("all-spawned"),
        "200 processes started despite a limit of 32: {r:?}"
    );
    ensure!(
        out.stderr.contains("fork"),
        "no fork failure reported: {}",
        out.stderr
    );
    let left = wait_gone(&format!("sleep {tag}3"));
    ensure!(left.is_empty(), "processes survived: {}", left.len());
    Ok(())
}

async fn cancel(c: &Ctx) -> R {
    let a = c.layer();
    let tag = format!("{}", 3000 + std::process::id() % 1000);
    let spec = c.spec(&a, &format!("sleep {tag}4 & sleep {tag}5"));
    let r = tokio::time::timeout(std::time::Duration::from_millis(1500), c.run(&spec)).await;
    ensure!(r.is_err(), "run finished instead of being cancelled");
    let left = wait_gone(&format!("sleep {tag}"));
    ensure!(left.is_empty(), "processes survived cancellation: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let run_dir = c.dir.path().join("run");
    ensure!(
        !mounts.contains(&*run_dir.to_string_lossy()),
        "a mount survived"
    );
    let leftover: Vec<_> = std::fs::read_dir(&run_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(leftover.is_empty(), "run dir not cleaned: {leftover:?}");
    if c.executor.uses_pids_cgroup() {
        let prefix = format!("rbuild-{}-", std::process::id());
        let mut left = Vec::new();
        for _ in 0..100 {
            left = std::fs::read_dir("/sys/fs/cgroup/pids")
                .map_err(|e| e.to_string())?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.file_name())
                .collect();
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ensure!(left.is_empty(), "pids cgroups left behind: {left:?}");
    }
    // The layer can be discarded (not busy).
    drop(a);
    Ok(())
}

async fn secrets(c: &Ctx) -> R {
    let secret = format!("S3CRET-{}-{}", std::process::id(), c.rootless);
    let a = c.layer();
    let mut spec = c.spec(&a, &format!("test \"$(cat /run/secrets/tok)\" = {secret} && test \"$TOKEN\" = {secret} && stat -c '%a %u' /run/secrets/tok && ! echo x > /run/secrets/tok 2>/dev/null && echo done > /out"));
    spec.mounts = vec![
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                data: secret.as_bytes().to_vec(),
                mode: 0o440,
                uid: 0,
                gid: 0,
            },
        },
        Mount {
            target: "/ignored".into(),
            kind: MountKind::SecretEnv {
                name: "TOKEN".into(),
                data: secret.as_bytes().to_vec(),
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.trim() == "440 0",
        "secret mode/owner: {}",
        out.stdout
    );
    ensure!(a.upper.join("out").exists(), "step did not run");
    if let Some(p) = tree_contains(c.dir.path(), secret.as_bytes()) {
        return Err(format!("secret found on disk in {}", p.display()));
    }
    if let Some(p) = tree_contains(&std::env::temp_dir(), secret.as_bytes()) {
        return Err(format!("secret found on disk in {}", p.display()));
    }
    Ok(())
}

async fn fds_closed(c: &Ctx) -> R {
    // Leak an fd without CLOEXEC into everything we start.
    let leak = c.dir.path().join("leaked-file");
    std::fs::write(&leak, b"x").map_err(|e| e.to_string())?;
    let f = std::fs::File::open(&leak).map_err(|e| e.to_string())?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(|e| e.to_string())?;
    let a = c.layer();
    let out = c
        .run(&c.spec(
            &a,
            &format!("ls -l /proc/$$/fd/; if test -e /proc/$$/fd/{fd}; then echo LEAKED; fi"),
        ))
        .await;
    out.ok()?;
    ensure!(
        !out.stdout.contains("LEAKED") && !out.stdout.contains("leaked-file"),
        "fd leaked: {}",
        out.stdout
    );
    let n = out.stdout.lines().filter(|l| l.contains(" -> ")).count();
    ensure!(n <= 4, "more than stdio open: {}", out.stdout);
    drop(f);
    Ok(())
}

async fn workdir(c: &Ctx) -> R {
    let a = c.layer();
    for bad in ["/proc/self/fd/3", "/proc/1/cwd", "/proc", "/sys"] {
        let mut spec = c.spec(&a, "pwd");
        spec.cwd = bad.into();
        match c.run(&spec).await.result {
            Err(SandboxError::Setup(m)) if m.contains("working directory") => {}
            other => return Err(format!("WORKDIR {bad} gave {other:?}")),
        }
    }
    let mut spec = c.spec(&a, "pwd");
    spec.cwd = "/new/work/dir".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(out.stdout.trim() == "/new/work/dir", "pwd: {}", out.stdout);
    ensure!(
        a.upper.join("new/work/dir").is_dir(),
        "WORKDIR not kept in the layer"
    );
    // A symlinked WORKDIR resolves inside the root.
    c.run(&c.spec(&a, "mkdir /hostdir && ln -s /../../../../hostdir /esc"))
        .await
        .ok()?;
    let mut spec = c.spec(&a, "pwd; touch inside");
    spec.cwd = "/esc/x".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        a.upper.join("hostdir/x/inside").exists(),
        "symlinked WORKDIR escaped: {}",
        out.stdout
    );
    Ok(())
}

async fn mount_kinds(c: &Ctx) -> R {
    let host = c.dir.path().join("host-src");
    let rw = c.dir.path().join("host-rw");
    for d in [&host, &rw] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(host.join("file"), "from-host").map_err(|e| e.to_string())?;
    // An overlay mount whose writes go to its own (throwaway) upper.
    let stage = c.store.prepare(Some(&c.base)).map_err(|e| e.to_string())?;
    let scratch = c.store.prepare(Some(&c.base)).map_err(|e| e.to_string())?;
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        "cat /src/file && ! touch /src/new 2>/dev/null && echo w > /cache/w && df /tmpfs | grep -q tmpfs && echo t > /tmpfs/t && echo o > /stage/bin/o && test -x /stage/bin/busybox && echo OK",
    );
    spec.mounts = vec![
        Mount {
            target: "/src".into(),
            kind: MountKind::Bind {
                source: host.clone(),
                readonly: true,
            },
        },
        Mount {
            target: "/cache".into(),
            kind: MountKind::Bind {
                source: rw.clone(),
                readonly: false,
            },
        },
        Mount {
            target: "/tmpfs".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
        Mount {
            target: "/stage".into(),
            kind: MountKind::Overlay {
                lowerdirs: stage.lowers.clone(),
                upperdir: scratch.upper.clone(),
                workdir: scratch.work.clone(),
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.contains("from-host") && out.stdout.contains("OK"),
        "{}",
        out.stdout
    );
    ensure!(rw.join("w").exists(), "rw bind write lost");
    ensure!(
        scratch.upper.join("bin/o").exists(),
        "overlay mount write not in its upper"
    );
    let left: Vec<_> = std::fs::read_dir(&a.upper)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(left.is_empty(), "mounts leaked into the layer: {left:?}");
    Ok(())
}

async fn identity(c: &Ctx) -> R {
    let a = c.layer();
    let mut spec = c.spec(&a, "hostname; cat /etc/hostname; grep -c myhost /etc/hosts; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; echo $HOME; ls /dev");
    spec.hostname = "myhost".into();
    let out = c.run(&spec).await;
    out.ok()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.len() > 6 && lines[0] == "myhost" && lines[1] == "myhost" && lines[2] == "1",
        "identity: {}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("00000000a80425fb"),
        "not Docker's default caps: {}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("NoNewPrivs:\t1"),
        "no_new_privs not set: {}",
        out.stdout
    );
    ensure!(lines.contains(&"/root"), "HOME from passwd: {}", out.stdout);
    for dev in ["null", "zero", "urandom", "pts", "shm", "ptmx"] {
        ensure!(lines.contains(&dev), "/dev/{dev} missing: {}", out.stdout);
    }
    Ok(())
}

async fn foreign_arch(c: &Ctx) -> R {
    let foreign = if rbuild_sandbox::qemu::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let a = c.layer();
    let mut spec = c.spec(&a, "uname -m");
    spec.platform_arch = Some(foreign.into());
    match c.run(&spec).await.result {
        Err(SandboxError::Emulation(e)) => {
            ensure!(e.to_string().contains("binfmt"), "unclear error: {e}");
            println!("note: no binfmt handler for {foreign}; checked the error only");
            Ok(())
        }
        Ok(r) => {
            ensure!(r.success(), "foreign run failed: {r:?}");
            Ok(())
        }
        Err(e) => Err(format!("foreign arch: {e}")),
    }
}

fn many_lowers(c: &Ctx) -> R {
    // 80 layers with long paths: more than a page of legacy mount options.
    let mut parent = c.base.clone();
    for i in 0..80 {
        let a = c.store.prepare(Some(&parent)).map_err(|e| e.to_string())?;
        std::fs::write(a.upper.join(format!("layer-{i}")), i.to_string())
            .map_err(|e| e.to_string())?;
        parent = c.store.commit(a).map_err(|e| e.to_string())?;
    }
    let lowers = c.store.lowers(&parent).map_err(|e| e.to_string())?;
    let joined: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    ensure!(joined > 4096, "test stack too small ({joined} bytes)");
    let target = c.dir.path().join("view");
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let guard =
        rbuild_snapshot::mount_overlay(&lowers, None, &target).map_err(|e| e.to_string())?;
    ensure!(
        target.join("layer-0").exists()
            && target.join("layer-79").exists()
            && target.join("bin/busybox").exists(),
        "merged view incomplete"
    );
    ensure!(
        std::fs::write(target.join("w"), "x").is_err(),
        "read-only view is writable"
    );
    guard.unmount().map_err(|e| e.to_string())?;
    ensure!(!target.join("layer-0").exists(), "not unmounted");
    // A single lower is a read-only bind.
    let one = vec![c.store.fs_dir(&c.base).map_err(|e| e.to_string())?];
    {
        let _g = rbuild_snapshot::mount_overlay(&one, None, &target).map_err(|e| e.to_string())?;
        ensure!(target.join("bin/busybox").exists(), "single-lower view");
        ensure!(
            std::fs::write(target.join("w"), "x").is_err(),
            "single-lower view is writable"
        );
    }
    ensure!(!target.join("bin").exists(), "guard drop did not unmount");
    Ok(())
}

/// Inside a sandbox (with the host's /usr bound in), this binary doubles as
/// a unix-socket client: `__test-connect <path>` sends `ping`, prints the reply.
fn test_client_if_requested() {
    use std::io::{BufRead, Write};
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("__test-connect") {
        return;
    }
    let code = (|| -> std::io::Result<()> {
        let mut s =
            std::os::unix::net::UnixStream::connect(args.get(2).map_or("", String::as_str))?;
        s.write_all(b"ping\n")?;
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line)?;
        print!("{line}");
        Ok(())
    })();
    if let Err(e) = code {
        eprintln!("connect: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

async fn ssh_agent(c: &Ctx) -> R {
    let sock = c.dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&conn);
            if r.read_line(&mut line).is_ok() && line == "ping\n" {
                let _ = (&conn).write_all(b"pong\n");
            }
        }
    });
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (user, id) = if c.ranged { ("app", 1000) } else { ("", 0) };
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        "stat -c '%a %u %g' /run/agent.sock && /t __test-connect /run/agent.sock",
    );
    spec.user = user.into();
    spec.mounts = vec![
        Mount {
            target: "/usr".into(),
            kind: MountKind::Bind {
                source: "/usr".into(),
                readonly: true,
            },
        },
        Mount {
            target: "/t".into(),
            kind: MountKind::Bind {
                source: exe,
                readonly: true,
            },
        },
        Mount {
            target: "/run/agent.sock".into(),
            kind: MountKind::SshAgent {
                socket: sock,
                mode: 0o600,
                uid: id,
                gid: id,
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout == format!("600 {id} {id}\npong\n"),
        "agent proxy: {out:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&a.upper)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(
        left.is_empty(),
        "mount points leaked into the layer: {left:?}"
    );
    Ok(())
}

/// The heavy cases (debootstrap + apt-get over the network) run only with
/// `RBUILD_TEST_HEAVY=1` (`.ci/run` sets it).
fn heavy() -> bool {
    std::env::var_os("RBUILD_TEST_HEAVY").is_some_and(|v| v == "1")
}

async fn apt_get(c: &Ctx) -> R {
    if !heavy() {
        println!("note: set RBUILD_TEST_HEAVY=1 to run apt-get in a debootstrap'd Debian");
        return Ok(());
    }
    if !c.ranged {
        println!("note: apt-get needs its `_apt` user: skipped with a single-id map");
        return Ok(());
    }
    if !std::path::Path::new(support::DEBIAN_TAR).exists() {
        println!("note: no Debian rootfs tarball; apt-get case skipped");
        return Ok(());
    }
    let base = support::import_debian(&c.store)?;
    let a = c.store.prepare(Some(&base)).map_err(|e| e.to_string())?;
    let mut spec = c.spec(&a, "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null && hello && stat -c '%U' /var/cache/apt/archives/partial");
    spec.network = Network::Sandbox;
    spec.env.push("DEBIAN_FRONTEND=noninteractive".into());
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.contains("Hello, world!"),
        "hello did not run: {out:?}"
    );
    ensure!(
        out.stdout.contains("_apt"),
        "apt's download user not in place: {}",
        out.stdout
    );
    ensure!(
        a.upper.join("usr/bin/hello").exists(),
        "the package is not in the layer"
    );
    for path in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        ensure!(
            std::fs::symlink_metadata(a.upper.join(path)).is_err(),
            "{path} leaked into the layer"
        );
    }
    Ok(())
}

/// The fallback for hosts without overlayfs: full-tree snapshots, the RUN on
/// a plain directory, and an overlay-format diff computed at commit.
async fn copy_backend(c: &Ctx) -> R {
    use rbuild_snapshot::{Backend, Snapshotter};
    let store = Snapshotter::open_with(
        &c.dir.path().join("copy-store"),
        Backend::Copy {
            reason: "test".into(),
        },
    )
    .map_err(|e| e.to_string())?;
    let a = store.prepare(None).map_err(|e| e.to_string())?;
    support::busybox_rootfs(&a.upper).map_err(|e| e.to_string())?;
    let base = store.commit(a).map_err(|e| e.to_string())?;
    let a = store.prepare(Some(&base)).map_err(|e| e.to_string())?;
    ensure!(a.is_full_tree(), "copy backend must give a full tree");
    let mut spec = c.spec(
        &a,
        "rm /data/del && echo new > /data/new && test -c /dev/null",
    );
    spec.rootfs = rbuild_sandbox::Rootfs::Dir(a.upper.clone());
    c.run(&spec).await.ok()?;
    let id = store.commit(a).map_err(|e| e.to_string())?;
    let diff = store.diff_dir(&id).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = std::fs::read_dir(diff.join("data"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    ensure!(names == ["del", "new"], "diff/data: {names:?}");
    let wh = meta(&diff.join("data/del"))?;
    ensure!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "deletion is not a whiteout"
    );
    let top: Vec<_> = std::fs::read_dir(&diff)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(
        top == ["data"],
        "stub mount points or untouched files in the diff: {top:?}"
    );
    Ok(())
}

/// `__test-run-spec`: runs the RunSpec from `RBUILD_TEST_SPEC` in a fresh
/// build process, echoing its output (used to kill a build process mid-RUN).
fn test_runner_if_requested() {
    use std::io::Write;
    if std::env::args().nth(1).as_deref() != Some("__test-run-spec") {
        return;
    }
    let code = (|| -> Result<(), String> {
        let spec: rbuild_sandbox::RunSpec =
            serde_json::from_str(&std::env::var("RBUILD_TEST_SPEC").map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        rbuild_sandbox::enter_build_namespace().map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let helper = rbuild_sandbox::HelperCommand::current_exe().map_err(|e| e.to_string())?;
        let run_dir = std::env::var("RBUILD_TEST_RUN_DIR").map_err(|e| e.to_string())?;
        let ex = rbuild_sandbox::Executor::new(helper).with_run_dir(run_dir);
        rt.block_on(ex.run(&spec, &mut |_, d| {
            let _ = std::io::stdout().write_all(d);
            let _ = std::io::stdout().flush();
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })();
    std::process::exit(i32::from(code.is_err()));
}

async fn build_process_death(c: &Ctx) -> R {
    use std::io::BufRead;
    let tag = format!("{}", 2000 + std::process::id() % 1000);
    let a = c.layer();
    let mut spec = c.spec(&a, &format!("echo started; sleep {tag}6"));
    let slirp = support::has_slirp();
    if slirp {
        spec.network = Network::Sandbox;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("__test-run-spec")
        .env(
            "RBUILD_TEST_SPEC",
            serde_json::to_string(&spec).map_err(|e| e.to_string())?,
        )
        .env("RBUILD_TEST_RUN_DIR", c.dir.path().join("run"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_default();
    if line.trim() != "started" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the RUN did not start: {line:?}"));
    }
    let slirps = support::children_named(child.id() as i32, "slirp4netns");
    ensure!(!slirp || !slirps.is_empty(), "no slirp4netns for the RUN");
    // SIGKILL: no destructor, no kill_on_drop runs in the build process.
    child.kill().map_err(|e| e.to_string())?;
    let _ = child.wait();
    let left = wait_gone(&format!("sleep {tag}6"));
    ensure!(
        left.is_empty(),
        "the RUN outlived its build process: {left:?}"
    );
    for pid in slirps {
        let mut alive = true;
        for _ in 0..100 {
            alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| !st.contains(") Z "));
            if !alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ensure!(!alive, "slirp4netns {pid} outlived its build process");
    }
    Ok(())
}
