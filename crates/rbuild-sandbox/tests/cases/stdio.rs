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
    ensure!(
        out == b"end\n",
        "stdin was not empty: {:?}",
        String::from_utf8_lossy(&out)
    );
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
            let size = WindowSize {
                rows: 50,
                cols: 132,
            };
            rbuild_sandbox::stdio::set_window_size(term.as_fd(), size)
                .map_err(|e| format!("resize: {e}"))?;
            term.write_all(b"hello\n")
                .map_err(|e| format!("typing: {e}"))?;
        }
        if !interrupted && text.contains("armed") {
            interrupted = true;
            term.write_all(b"\x03")
                .map_err(|e| format!("Ctrl-C: {e}"))?;
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
        size: Some(WindowSize {
            rows: 33,
            cols: 101,
        }),
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
    ensure!(
        lines.contains(&"got:hello"),
        "typed input not read: {shown}"
    );
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
    if c.ranged {
        pty_belongs_to_the_user(c).await?;
    }
    Ok(())
}

/// The process's user owns its terminal (it can reopen it by name).
async fn pty_belongs_to_the_user(c: &Ctx) -> R {
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        "id -u; stat -c owner=%u $(tty); : < $(tty) && echo reopened",
    );
    spec.user = "app".into();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stdio = Stdio::Tty {
        size: None,
        master: tx,
    };
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        if let Ok(master) = rx.blocking_recv() {
            let _ = std::fs::File::from(master).read_to_end(&mut seen);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let res = tokio::time::timeout(
        HANG_GUARD,
        c.executor.run_with(&spec, stdio, &mut |_, _| {}),
    )
    .await;
    let shown = reader.join().map_err(|_| "reader panicked")?;
    let res = res
        .map_err(|_| format!("the run hung; terminal: {shown}"))?
        .map_err(|e| format!("{e}; terminal: {shown}"))?;
    ensure!(res.success(), "{res:?}: {shown}");
    ensure!(
        shown.contains("owner=1000") && shown.contains("reopened"),
        "the pty is not the user's: {shown}"
    );
    Ok(())
}

/// Pids of every process descended from `root` (not `root` itself).
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// The fds of `pid` that are the file `(dev, ino)`.
fn fds_on(pid: i32, file: (u64, u64)) -> Result<Vec<String>, String> {
    let dir = format!("/proc/{pid}/fd");
    let mut hits = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(hits),
        Err(e) => return Err(format!("{dir}: {e}")),
    };
    for e in rd.flatten() {
        if let Ok(m) = std::fs::metadata(e.path()) {
            use std::os::unix::fs::MetadataExt;
            if (m.dev(), m.ino()) == file {
                hits.push(e.path().display().to_string());
            }
        }
    }
    Ok(hits)
}

/// With `-t`, the caller's own terminal (here a pty this test opened and
/// made the runner's controlling terminal and stdio) is held by no process
/// the run starts: not the helper, not the init, not the RUN's shell.
pub(crate) fn callers_terminal(c: &Ctx) -> R {
    use std::os::unix::process::CommandExt;
    let a = c.layer();
    let spec = c.spec(&a, "echo started; read x; echo bye-$x");
    let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
    // openpty's fds are inheritable: only the runner's stdio may hold them.
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| e.to_string())?;
    }
    let st = nix::sys::stat::fstat(pty.slave.as_fd()).map_err(|e| e.to_string())?;
    let terminal = (st.st_dev, st.st_ino);
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map(std::process::Stdio::from)
            .map_err(|e| e.to_string())
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__test-run-spec")
        .env(
            "RBUILD_TEST_SPEC",
            serde_json::to_string(&spec).map_err(|e| e.to_string())?,
        )
        .env("RBUILD_TEST_RUN_DIR", c.dir.path().join("run"))
        .env("RBUILD_TEST_TTY", "1")
        .stdin(dup(&pty.slave)?)
        .stdout(dup(&pty.slave)?)
        .stderr(dup(&pty.slave)?);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("started") {
        match master.read(&mut buf) {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let check = (|| -> R {
        ensure!(
            String::from_utf8_lossy(&seen).contains("started"),
            "the run did not start: {}",
            String::from_utf8_lossy(&seen)
        );
        let procs = descendants(child.id() as i32);
        // The helper, the init and the shell at least.
        ensure!(procs.len() >= 3, "sandbox processes not found: {procs:?}");
        for pid in procs {
            let hits = fds_on(pid, terminal)?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ensure!(
                hits.is_empty(),
                "the caller's terminal is held by {hits:?} ({})",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            );
        }
        Ok(())
    })();
    if check.is_err() {
        let _ = child.kill();
    } else {
        master.write_all(b"x\n").map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    drop(pty.slave);
    let _ = master.read_to_end(&mut seen);
    check?;
    ensure!(
        status.success() && String::from_utf8_lossy(&seen).contains("bye-x"),
        "the run did not finish: {status}: {}",
        String::from_utf8_lossy(&seen)
    );
    Ok(())
}
