//! End-to-end sandbox tests, run as root and again as an unprivileged user
//! with a subordinate id range (the root run re-executes this binary as
//! `rbuild-test` through `setpriv`). `harness = false` because the process
//! must enter its namespace before any thread exists.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `ensure!(cond, "fmt", args)`: fail the case with a message.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

mod cases;
mod support;

use std::process::Command;

use rbuild_sandbox::NamespaceMode;
use support::{Ctx, ensure_test_user};

pub(crate) type R = Result<(), String>;

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
    "umoci_applies_run_layer",
    "seccomp_refuses_namespaces",
    "dangling_symlink_mount_target",
    "parallel_runs_do_not_interfere",
    "network_host_shares_the_host_network",
    "stdio_fds_pass_through",
    "stdio_pty_is_the_sandboxs_own",
    "stdio_pty_keeps_the_callers_terminal_out",
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
    if cases::layers::heavy()
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
        "files_owners_modes" => cases::layers::files_owners_modes(c).await,
        "chown_to_other_id" => cases::layers::chown_to_other_id(c).await,
        "whiteouts_and_opaque_dirs" => cases::layers::whiteouts(c).await,
        "no_stub_left_in_upper" => cases::layers::no_stub_left(c).await,
        "exit_codes_propagate" => cases::process::exit_codes(c).await,
        "network_none_has_no_route" => cases::io::network_none(c).await,
        "network_sandbox_isolates_host_loopback" => cases::io::network_sandbox(c).await,
        "orphans_are_killed" => cases::process::orphans(c).await,
        "pids_limit_contains_fork_storm" => cases::process::pids_limit(c).await,
        "cancel_kills_everything" => cases::process::cancel(c).await,
        "secrets_never_hit_disk" => cases::io::secrets(c).await,
        "fds_are_closed" => cases::process::fds_closed(c).await,
        "workdir_checks" => cases::layers::workdir(c).await,
        "mount_kinds" => cases::io::mount_kinds(c).await,
        "identity_files_and_caps" => cases::process::identity(c).await,
        "foreign_arch_needs_binfmt" => cases::process::foreign_arch(c).await,
        "overlay_many_lowers_in_process" => cases::layers::many_lowers(c),
        "ssh_agent_is_forwarded" => cases::io::ssh_agent(c).await,
        "apt_get_install_in_debian" => cases::layers::apt_get(c).await,
        "copy_backend_runs_on_plain_dirs" => cases::layers::copy_backend(c).await,
        "network_host_shares_the_host_network" => cases::io::network_host(c).await,
        "parallel_runs_do_not_interfere" => cases::process::parallel_runs(c).await,
        "dangling_symlink_mount_target" => cases::layers::dangling_symlink_target(c).await,
        "seccomp_refuses_namespaces" => cases::process::seccomp_filter(c).await,
        "umoci_applies_run_layer" => cases::layers::umoci_applies_run_layer(c).await,
        "build_process_death_kills_sandbox" => cases::process::build_process_death(c).await,
        "stdio_fds_pass_through" => cases::stdio::fds_pass_through(c).await,
        "stdio_pty_is_the_sandboxs_own" => cases::stdio::pty(c).await,
        "stdio_pty_keeps_the_callers_terminal_out" => cases::stdio::callers_terminal(c),
        other => Err(format!("unknown case {other}")),
    }
}

pub(crate) fn meta(p: &std::path::Path) -> Result<std::fs::Metadata, String> {
    std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))
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
        if std::env::var_os("RBUILD_TEST_TTY").is_some() {
            return run_spec_on_a_pty(&rt, &ex, &spec);
        }
        rt.block_on(ex.run(&spec, &mut |_, d| {
            let _ = std::io::stdout().write_all(d);
            let _ = std::io::stdout().flush();
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })();
    std::process::exit(i32::from(code.is_err()));
}

/// The runner's `-t` mode: a pty in the sandbox, relayed to our stdin and
/// stdout (as `rbuild run -it` does, without raw mode).
fn run_spec_on_a_pty(
    rt: &tokio::runtime::Runtime,
    ex: &rbuild_sandbox::Executor,
    spec: &rbuild_sandbox::RunSpec,
) -> Result<(), String> {
    use std::io::{Read, Write};
    let (tx, rx) = tokio::sync::oneshot::channel::<std::os::fd::OwnedFd>();
    let relay = std::thread::spawn(move || {
        let Ok(master) = rx.blocking_recv() else {
            return;
        };
        if let Ok(input) = master.try_clone() {
            // Ends with the process (exit), blocked on our stdin or not.
            std::thread::spawn(move || {
                let mut to = std::fs::File::from(input);
                let mut buf = [0u8; 1024];
                while let Ok(n) = std::io::stdin().read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let mut from = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = std::io::stdout().write_all(&buf[..n]);
            let _ = std::io::stdout().flush();
        }
    });
    let stdio = rbuild_sandbox::Stdio::Tty {
        size: None,
        master: tx,
    };
    let res = rt
        .block_on(ex.run_with(spec, stdio, &mut |_, _| {}))
        .map_err(|e| e.to_string());
    let _ = relay.join();
    res.map(drop)
}
