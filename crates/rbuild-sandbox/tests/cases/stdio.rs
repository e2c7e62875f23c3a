//! The streams of `rbuild run`: the caller's fds passed straight through
//! (`-i`), and a pty made inside the sandbox (`-t`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rbuild_sandbox::{OutputStream, RunResult, Stdio, WindowSize};

use crate::R;
use crate::support::Ctx;

/// A safety net for a test that would otherwise hang on a bug: the run is
/// dropped (which kills the sandbox) after this long. Not an assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Reads `fd` to its end in a thread.
fn drain(fd: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = std::fs::File::from(fd).read_to_end(&mut data);
        data
    })
}

pub(crate) async fn fds_pass_through(c: &Ctx) -> R {
    let a = c.layer();
    // Every byte value, more than a pipe buffer holds: streamed, unmodified.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let feed = {
        let input = input.clone();
        std::thread::spawn(move || {
            let _ = std::fs::File::from(in_w).write_all(&input);
        })
    };
    let (out, err) = (drain(out_r), drain(err_r));
    let spec = c.spec(
        &a,
        "if test -t 0; then echo stdin-is-a-tty >&2; fi; cat; echo done >&2; exit 6",
    );
    let stdio = Stdio::Fds {
        stdin: Some(in_r),
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    let mut called = false;
    let res = tokio::time::timeout(
        HANG_GUARD,
        c.executor.run_with(&spec, stdio, &mut |_, _| called = true),
    )
    .await
    .map_err(|_| "the run hung".to_string())?
    .map_err(|e| e.to_string())?;
    let _ = feed.join();
    let (out, err) = (
        out.join().map_err(|_| "reader")?,
        err.join().map_err(|_| "reader")?,
    );
    ensure!(res == RunResult::Exited(6), "exit status {res:?}");
    ensure!(
        out.len() == input.len() && out == input,
        "stdout differs from stdin: {} bytes in, {} out",
        input.len(),
        out.len()
    );
    ensure!(
        err == b"done\n",
        "stderr: {:?}",
        String::from_utf8_lossy(&err)
    );
    ensure!(!called, "passed-through output reached the callback");

    // stdin not given: /dev/null; stderr not given: the callback.
    let (out_r, out_w) = pipe()?;
    let out = drain(out_r);
    let spec = c.spec(&a, "cat; echo end; echo to-callback >&2");
    let stdio = Stdio::Fds {
        stdin: None,
        stdout: Some(out_w),
        stderr: None,
    };
    let mut captured = Vec::new();
    let res = c
        .executor
        .run_with(&spec, stdio, &mut |s, d| {
            if s == OutputStream::Stderr {
                captured.extend_from_slice(d);
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let out = out.join().map_err(|_| "reader")?;
    ensure!(res.success(), "{res:?}");
    ensure!(out == b"end\n", "stdin was not empty: {:?}", String::from_utf8_lossy(&out));
    ensure!(
        captured == b"to-callback\n",
        "stderr: {:?}",
        String::from_utf8_lossy(&captured)
    );
    Ok(())
}

/// The caller's side of a pty run: once the process waits for input,
/// resizes the terminal and types a line; once it says `armed`, sends
/// Ctrl-C. Returns everything the terminal showed.
fn drive_terminal(master: OwnedFd) -> Result<String, String> {
    let mut term = std::fs::File::from(master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let (mut typed, mut interrupted) = (false, false);
    loop {
        match term.read(&mut buf) {
            // EIO: every holder of the terminal side is gone.
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&seen);
        if !typed && text.contains("waiting") {
            typed = true;
            let size = WindowSize { rows: 50, cols: 132 };
            rbuild_sandbox::stdio::set_window_size(term.as_fd(), size)
                .map_err(|e| format!("resize: {e}"))?;
            term.write_all(b"hello\n").map_err(|e| format!("typing: {e}"))?;
        }
        if !interrupted && text.contains("armed") {
            interrupted = true;
            term.write_all(b"\x03").map_err(|e| format!("Ctrl-C: {e}"))?;
        }
    }
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

pub(crate) async fn pty(c: &Ctx) -> R {
    let a = c.layer();
    let script = "test -t 0 && test -t 1 && test -t 2 && echo all-ttys; tty; \
        echo fds: $(for f in 0 1 2; do readlink /proc/$$/fd/$f; done | sort -u); \
        echo pts: $(ls /dev/pts); stty size; echo waiting; read line; stty size; echo \"got:$line\"; \
        trap 'echo INT-caught; exit 5' INT; echo armed; while :; do sleep 1; done";
    let spec = c.spec(&a, script);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stdio = Stdio::Tty {
        size: Some(WindowSize { rows: 33, cols: 101 }),
        master: tx,
    };
    let driver = std::thread::spawn(move || match rx.blocking_recv() {
        Ok(master) => drive_terminal(master),
        Err(_) => Err("no pty master was handed over".to_string()),
    });
    let mut piped = Vec::new();
    let res = tokio::time::timeout(
        HANG_GUARD,
        c.executor
            .run_with(&spec, stdio, &mut |_, d| piped.extend_from_slice(d)),
    )
    .await;
    let shown = driver.join().map_err(|_| "driver panicked")??;
    let res = res
        .map_err(|_| format!("the run hung; terminal: {shown}"))?
        .map_err(|e| format!("{e}; terminal: {shown}"))?;
    let lines: Vec<&str> = shown.lines().map(str::trim_end).collect();
    ensure!(lines.contains(&"all-ttys"), "0, 1, 2 are not ttys: {shown}");
    ensure!(
        lines.contains(&"/dev/pts/0"),
        "`tty` does not name the sandbox's pty: {shown}"
    );
    ensure!(
        lines.contains(&"fds: /dev/pts/0"),
        "0, 1 and 2 are not all the pty: {shown}"
    );
    // Its own devpts instance: no host terminal is visible in it.
    ensure!(lines.contains(&"pts: 0 ptmx"), "/dev/pts: {shown}");
    ensure!(lines.contains(&"33 101"), "initial size not set: {shown}");
    ensure!(lines.contains(&"50 132"), "resize not seen: {shown}");
    ensure!(lines.contains(&"got:hello"), "typed input not read: {shown}");
    // The terminal echoes the key as `^C` before the trap's output.
    ensure!(
        lines.iter().any(|l| l.ends_with("INT-caught")),
        "Ctrl-C was not a SIGINT: {shown}"
    );
    ensure!(res == RunResult::Exited(5), "exit status {res:?}: {shown}");
    ensure!(
        piped.is_empty(),
        "output bypassed the pty: {}",
        String::from_utf8_lossy(&piped)
    );
    Ok(())
}
