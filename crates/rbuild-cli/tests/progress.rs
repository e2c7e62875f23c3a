//! `rbuild build --progress=plain` of real builds, pinned with insta
//! snapshots after timings and digests are masked. A busybox image is built
//! `FROM scratch` from the host's static busybox, so no registry is needed;
//! the sandbox needs root, so the tests skip without it. Every step writes
//! to one stream only and the stages form a chain: the output order is then
//! a property of the build, not of scheduling.

#![allow(clippy::print_stderr)] // skip notes go to the test log

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn prerequisites() -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip("building needs root on this machine (the sandbox mounts overlays)");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        skip("/bin/busybox is missing (package busybox-static)");
        return false;
    }
    true
}

const BASE: &str = "\
FROM scratch AS base
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]

";

/// A context holding busybox and a Dockerfile of `BASE` + `rest`.
fn context(dir: &Path, rest: &str) {
    std::fs::create_dir_all(dir).expect("mkdir context");
    std::fs::copy("/bin/busybox", dir.join("busybox")).expect("copy busybox");
    std::fs::write(dir.join("Dockerfile"), format!("{BASE}{rest}")).expect("write Dockerfile");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod context");
}

fn rbuild(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg(format!("--root={}", state.display()))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run rbuild")
}

/// Masks what changes from run to run: seconds (`0.123`, `1.2s`) and digests.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line.split(' ').map(mask_word).collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

fn mask_word(word: &str) -> String {
    let number = word.strip_suffix('s').unwrap_or(word);
    let is_time = number.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    });
    if is_time {
        return if word.ends_with('s') { "<t>s".into() } else { "<t>".into() };
    }
    match word.find("sha256:") {
        Some(pos) if word.len() >= pos + 7 + 64 => format!("{}sha256:<digest>{}", &word[..pos], &word[pos + 71..]),
        _ => word.to_string(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plain_output_of_a_build_and_its_cached_rebuild() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ctx = work.path().join("ctx");
    context(
        &ctx,
        "FROM base\nRUN echo one && echo two\nRUN printf 'no newline at the end'\nRUN echo err >&2\nCMD [\"/bin/sh\"]\n",
    );
    let state = work.path().join("state");
    let ctx_arg = ctx.display().to_string();

    let first = rbuild(&state, &["build", "--progress=plain", &ctx_arg]);
    assert!(first.status.success(), "build failed:\n{}", text(&first.stderr));
    let digest = text(&first.stdout);
    assert!(digest.trim().starts_with("sha256:") && digest.lines().count() == 1, "stdout is the digest: {digest}");
    insta::assert_snapshot!("plain_first_build", normalise(&text(&first.stderr)));

    let again = rbuild(&state, &["build", "--progress=plain", &ctx_arg]);
    assert!(again.status.success(), "rebuild failed:\n{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), digest, "a cached rebuild gives the same image");
    insta::assert_snapshot!("plain_cached_rebuild", normalise(&text(&again.stderr)));
}

#[test]
fn plain_failure_quotes_the_dockerfile() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ctx = work.path().join("ctx");
    context(&ctx, "FROM base AS app\nRUN echo building\nRUN echo about to fail; \\\n    exit 7\nRUN echo never\n");
    let state = work.path().join("state");
    let out = rbuild(&state, &["build", "--progress=plain", &ctx.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "no digest for a failed build");
    insta::assert_snapshot!("plain_failure", normalise(&text(&out.stderr)));
}

#[test]
fn quiet_prints_only_the_digest() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ctx = work.path().join("ctx");
    context(&ctx, "FROM base\nRUN echo hidden\n");
    let state = work.path().join("state");
    let out = rbuild(&state, &["build", "-q", &ctx.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().starts_with("sha256:"));
    assert!(!text(&out.stderr).contains("hidden"), "quiet shows no step output: {}", text(&out.stderr));
}

#[test]
fn tty_mode_off_a_terminal_draws_frames_without_color() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ctx = work.path().join("ctx");
    context(&ctx, "FROM base\nRUN echo from-the-step\n");
    let state = work.path().join("state");
    let out = rbuild(&state, &["build", "--progress=tty", &ctx.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("FINISHED"), "{err}");
    assert!(err.contains(" => [stage-1 2/2] RUN echo from-the-step"), "{err}");
    assert!(!err.contains("\x1b[0m"), "no colour off a terminal: {err:?}");
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rbuild")).args(["completion", shell]).output().expect("run rbuild");
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("rbuild"), "{shell}: {script}");
        assert!(script.contains("rawjson"), "{shell} completes --progress values");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild")).args(["completion", "tcsh"]).output().expect("run rbuild");
    assert!(!out.status.success());
}

#[test]
fn completion_needs_no_namespace_and_warns_about_none() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/bin/setpriv").exists() {
        skip("switching to an unprivileged user needs root and setpriv");
        return;
    }
    // `nobody` has no subordinate ids: a build would warn about that.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .args(["completion", "bash"])
        .output()
        .expect("run rbuild");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "nothing on stderr when sourcing completions");
    assert!(text(&out.stdout).contains("_rbuild()"));
}

/// Runs `rbuild` with standard error on a new 100x30 pseudo-terminal and
/// returns its exit status and everything it drew there.
fn rbuild_on_a_terminal(state: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let size = nix::pty::Winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(&size, None).expect("openpty");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.arg(format!("--root={}", state.display()))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("TERM")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(pty.slave));
    let child = cmd.spawn().expect("run rbuild");
    // Our copy of the terminal's slave side goes with `cmd`.
    drop(cmd);
    let exited = Arc::new(AtomicBool::new(false));
    let reader = {
        let exited = exited.clone();
        let master = pty.master;
        std::thread::spawn(move || {
            let mut drawn = Vec::new();
            let mut file = std::fs::File::from(master);
            loop {
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
                let ready = poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0);
                if ready == 0 {
                    if exited.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                let mut chunk = [0u8; 4096];
                match file.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drawn.extend_from_slice(&chunk[..n]),
                }
            }
            drawn
        })
    };
    let out = child.wait_with_output().expect("wait for rbuild");
    exited.store(true, Ordering::SeqCst);
    let drawn = reader.join().expect("reader thread");
    (out.status.success(), text(&drawn))
}

#[test]
fn auto_progress_on_a_terminal_is_the_live_view() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let ctx = work.path().join("ctx");
    context(&ctx, "FROM base\nRUN echo on-a-terminal\n");
    let state = work.path().join("state");
    let ctx_arg = ctx.display().to_string();

    let (ok, drawn) = rbuild_on_a_terminal(&state, &["build", &ctx_arg], &[("TERM", "xterm")]);
    assert!(ok, "{drawn}");
    assert!(drawn.contains("[+] Building"), "{drawn:?}");
    assert!(drawn.contains("\x1b[34m[+] Building") && drawn.contains("FINISHED"), "coloured last frame: {drawn:?}");
    assert!(drawn.contains(" => [stage-1 2/2] RUN echo on-a-terminal"), "{drawn:?}");
    assert!(!drawn.contains("#1 "), "not the plain format: {drawn:?}");

    let (ok, drawn) = rbuild_on_a_terminal(&state, &["build", &ctx_arg], &[("TERM", "xterm"), ("NO_COLOR", "1")]);
    assert!(ok, "{drawn}");
    assert!(drawn.contains("FINISHED"), "{drawn:?}");
    assert!(!drawn.contains("\x1b[34m"), "NO_COLOR: {drawn:?}");
    assert!(drawn.contains(" => CACHED [stage-1 2/2] RUN echo on-a-terminal"), "{drawn:?}");

    let (ok, drawn) = rbuild_on_a_terminal(&state, &["build", &ctx_arg], &[("TERM", "dumb")]);
    assert!(ok, "{drawn}");
    assert!(drawn.contains("#3 [stage-1 2/2] RUN echo on-a-terminal"), "TERM=dumb gets plain output: {drawn:?}");
    assert!(!drawn.contains("[+] Building"), "{drawn:?}");
}
