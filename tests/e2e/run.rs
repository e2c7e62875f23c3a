//! `rbuild run -i` and `-t` end to end: stdin piped into the sandbox,
//! exit codes, and an interactive shell driven through a pty this test
//! opens (as a terminal emulator would).

use crate::support::{self, ok};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A busybox image from scratch whose user is root (prompt `# `).
fn built_image(work: &Path) -> PathBuf {
    let state = work.join("state");
    let ctx = work.join("ctx");
    support::busybox_context(&ctx, "CMD [\"sh\"]\n");
    ok(support::rbuild_at(&state).args(["build", "--progress=plain", "-t", "runio"]).arg(&ctx));
    state
}

/// `rbuild run ARGS…` with `input` on its stdin; returns its output.
fn run_with_input(state: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = support::rbuild_at(state)
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A closed pipe (the process did not read it all) is not our failure.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for rbuild");
    let _ = feeder.join();
    out
}

#[test]
fn run_i_pipes_stdin_and_returns_the_exit_code() {
    if !support::busybox_ready() {
        return;
    }
    let work = support::open_tempdir();
    let state = built_image(work.path());

    let out = run_with_input(&state, &["-i", "runio", "cat"], b"data\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"data\n", "stdin reaches the process with -i");

    // Binary-safe, and larger than a pipe buffer.
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let out = run_with_input(&state, &["--interactive", "runio", "cat"], &blob);
    assert!(out.status.success(), "{:?}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == blob, "{} bytes in, {} out, not the same", blob.len(), out.stdout.len());

    // Without -i the process's stdin is empty, whatever ours holds.
    let out = run_with_input(&state, &["runio", "sh", "-c", "wc -c; exit 4"], b"ignored");
    assert_eq!(out.status.code(), Some(4), "the process's exit code is ours: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "no stdin without -i");

    let out = run_with_input(&state, &["-i", "runio", "sh", "-c", "read l; echo \"<$l>\" >&2; exit 9"], b"line\n");
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("<line>"), "stderr: {out:?}");
    let out = run_with_input(&state, &["runio", "sh", "-c", "kill -9 $$"], b"");
    assert_eq!(out.status.code(), Some(137), "128 + SIGKILL: {out:?}");

    // docker's refusal: a terminal session needs a terminal on stdin.
    let out = run_with_input(&state, &["-it", "runio", "sh"], b"echo no\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads the pty master into a shared buffer until EIO (every holder of
/// the terminal side closed it).
fn read_terminal(master: OwnedFd) -> (std::sync::Arc<std::sync::Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (seen, reader)
}

/// Waits until the terminal showed `needle` `times` times; false if
/// `child` exited first or a minute passed (a hang, not a timing check).
fn wait_for(seen: &std::sync::Mutex<Vec<u8>>, needle: &str, times: usize, child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if String::from_utf8_lossy(&seen.lock().unwrap()).matches(needle).count() >= times {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A command running on a pty this test opened, as on a user's terminal.
struct Terminal {
    child: std::process::Child,
    /// For typing.
    master: std::fs::File,
    /// Everything shown, read by `reader` until EIO.
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
    /// Kept to read the settings after the command; the master reads EIO
    /// once this is dropped and the command is gone.
    slave: OwnedFd,
    before: nix::sys::termios::Termios,
}

impl Terminal {
    fn start(mut cmd: std::process::Command, rows: u16, cols: u16) -> Self {
        let size = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let before = nix::sys::termios::tcgetattr(pty.slave.as_fd()).expect("tcgetattr");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        cmd.stdin(slave(&pty.slave)).stdout(slave(&pty.slave)).stderr(slave(&pty.slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // As a login shell has it: its own session with the pty as
                // controlling terminal (so Ctrl-C would be a SIGINT to
                // rbuild if it forgot raw mode).
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn rbuild");
        // The command holds copies of the terminal side: the master reads
        // EIO only once every copy is closed.
        drop(cmd);
        let master = std::fs::File::from(pty.master.try_clone().expect("dup master"));
        let (seen, reader) = read_terminal(pty.master);
        Terminal { child, master, seen, reader, slave: pty.slave, before }
    }
}

#[test]
fn run_it_gives_an_interactive_shell_on_a_terminal() {
    if !support::busybox_ready() {
        return;
    }
    let work = support::open_tempdir();
    let state = built_image(work.path());
    let mut cmd = support::rbuild_at(&state);
    cmd.args(["run", "-it", "runio", "sh"]);
    let term = Terminal::start(cmd, 27, 91);
    let (mut child, mut master, seen) = (term.child, term.master, term.seen);
    let shown = |seen: &std::sync::Mutex<Vec<u8>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();

    // The shell's prompt: the relay runs and our terminal is raw by now.
    if !wait_for(&seen, "# ", 1, &mut child) {
        let _ = child.kill();
        panic!("no prompt: {}", shown(&seen));
    }
    master.write_all(b"stty size\n").unwrap();
    assert!(wait_for(&seen, "27 91", 1, &mut child), "the pty has our size: {}", shown(&seen));
    // Ctrl-C goes to the shell in the sandbox (a new prompt), not to rbuild.
    // Sent at the next prompt: a Ctrl-C that arrives while the shell is
    // still between commands gives one prompt for both.
    assert!(wait_for(&seen, "# ", 2, &mut child), "no prompt after stty: {}", shown(&seen));
    master.write_all(b"\x03").unwrap();
    assert!(wait_for(&seen, "# ", 3, &mut child), "Ctrl-C did not reach the shell: {}", shown(&seen));
    // Our terminal is resized: rbuild gets SIGWINCH and resizes the pty.
    let size = libc::winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }, 0);
    // The signal and the keys travel separately: ask until it shows.
    let mut prompts = 3;
    while !shown(&seen).contains("30 100") && prompts < 50 {
        master.write_all(b"stty size\n").unwrap();
        prompts += 1;
        assert!(wait_for(&seen, "# ", prompts, &mut child), "the shell went away: {}", shown(&seen));
    }
    assert!(shown(&seen).contains("30 100"), "the new size never reached the pty: {}", shown(&seen));
    master.write_all(b"echo $((6*7)); exit 3\n").unwrap();
    let status = child.wait().expect("wait");
    // rbuild is gone: its terminal settings must be what they were.
    let after = nix::sys::termios::tcgetattr(term.slave.as_fd()).expect("tcgetattr");
    let before = term.before;
    drop(term.slave);
    drop(master);
    term.reader.join().unwrap();
    let text = shown(&seen);
    assert_eq!(status.code(), Some(3), "the shell's exit code is ours: {text}");
    assert!(text.lines().any(|l| l.trim_end() == "42"), "the command ran: {text}");
    assert_eq!(
        (after.local_flags, after.input_flags, after.output_flags),
        (before.local_flags, before.input_flags, before.output_flags),
        "the terminal was restored"
    );
}

#[test]
fn an_unprivileged_user_runs_with_i_and_t() {
    if !std::path::Path::new("/bin/busybox").exists() {
        support::skip("needs busybox-static");
        return;
    }
    let Some(user) = support::Runner::unprivileged() else { return };
    let work = support::open_tempdir();
    let state = work.path().join("state");
    user.own(&state);
    let ctx = work.path().join("ctx");
    support::busybox_context(&ctx, "CMD [\"sh\"]\n");
    let root_arg = format!("--root={}", state.display());
    ok(user.rbuild().args([&root_arg, "build", "--progress=plain", "-t", "runio"]).arg(&ctx));

    let mut child = user
        .rbuild()
        .args([&root_arg, "run", "-i", "runio", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    child.stdin.take().expect("stdin").write_all(b"as a user\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"as a user\n");

    // Typed ahead: the line waits in our terminal until the relay reads it.
    let mut cmd = user.rbuild();
    cmd.args([&root_arg, "run", "-it", "runio", "sh", "-c", "read x; echo got-$x on $(tty); exit 5"]);
    let mut term = Terminal::start(cmd, 24, 80);
    term.master.write_all(b"y\n").unwrap();
    let status = term.child.wait().expect("wait");
    let after = nix::sys::termios::tcgetattr(term.slave.as_fd()).expect("tcgetattr");
    drop(term.slave);
    term.reader.join().unwrap();
    let text = String::from_utf8_lossy(&term.seen.lock().unwrap()).into_owned();
    assert_eq!(status.code(), Some(5), "{text}");
    assert!(text.contains("got-y on /dev/pts/0"), "{text}");
    assert_eq!(after.local_flags, term.before.local_flags, "the terminal was restored");
}

#[test]
fn run_t_shows_all_a_short_command_wrote() {
    if !support::busybox_ready() {
        return;
    }
    let work = support::open_tempdir();
    let state = built_image(work.path());
    // -t without -i: no raw mode, nothing typed is forwarded; the output of
    // a command that ends at once must not be lost with the run's end.
    for _ in 0..3 {
        let mut cmd = support::rbuild_at(&state);
        cmd.args(["run", "-t", "runio", "sh", "-c", "echo short; echo to-stderr >&2; exit 2"]);
        let mut term = Terminal::start(cmd, 24, 80);
        let status = term.child.wait().expect("wait");
        drop(term.slave);
        term.reader.join().unwrap();
        let text = String::from_utf8_lossy(&term.seen.lock().unwrap()).into_owned();
        assert_eq!(status.code(), Some(2), "{text}");
        // Our terminal stays cooked as with docker: its ONLCR adds a `\r`.
        assert!(text.contains("short\r") && text.contains("to-stderr\r"), "both streams on the terminal: {text:?}");
    }
}

/// A busybox image with a web root, and two symlinks that point at
/// `escape` (absolute and through `..`): a bind target under them must stay
/// inside the image's root, never reach the host's `escape`.
fn volume_image(runner: &support::Runner, work: &Path) -> String {
    let state = work.join("state");
    runner.own(&state);
    let ctx = work.join("ctx");
    let escape = work.join("escape");
    let up = format!("../../../../../../../../../..{}", work.join("escape-up").display());
    support::busybox_context(
        &ctx,
        &format!(
            "RUN mkdir /www && echo served-by-rbuild > /www/index.html && ln -s {} /abs && ln -s {up} /up\nCMD [\"sh\"]\n",
            escape.display()
        ),
    );
    let root_arg = format!("--root={}", state.display());
    ok(runner.rbuild().args([&root_arg, "build", "--progress=plain", "-t", "runpv"]).arg(&ctx));
    root_arg
}

/// `-v` and `--mount` as `runner`: writes reach the host, `:ro` refuses
/// them, a file binds as a file, a target through the image's symlinks
/// stays in the root, a missing host path is an error naming it.
fn check_volumes(runner: &support::Runner, work: &Path, root_arg: &str) {
    let host = work.join("host");
    runner.own(&host);
    std::fs::write(host.join("in"), "from-host\n").unwrap();
    let hv = |target: &str| format!("{}:{target}", host.display());
    let run = |args: &[&str]| runner.rbuild().arg(root_arg).arg("run").args(args).output().expect("run rbuild");

    let out = run(&["-v", &hv("/data"), "runpv", "sh", "-c", "cat /data/in && echo written > /data/out"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"from-host\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "written\n", "the write reached the host");

    let out = run(&["-v", &hv("/data:ro"), "runpv", "sh", "-c", "echo no > /data/ro"]);
    assert!(!out.status.success(), "a write to a :ro bind failed: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
    assert!(!host.join("ro").exists());
    let mount = format!("type=bind,source={},target=/m,readonly", host.display());
    let out = run(&["--mount", &mount, "runpv", "sh", "-c", "cat /m/in; echo no > /m/ro"]);
    assert!(!out.status.success() && out.stdout == b"from-host\n", "{out:?}");
    assert!(!host.join("ro").exists());

    let file = format!("{}:/etc/motd:ro", host.join("in").display());
    let out = run(&["-v", &file, "runpv", "cat", "/etc/motd"]);
    assert!(out.status.success() && out.stdout == b"from-host\n", "a file binds as a file: {out:?}");

    for link in ["/abs", "/up"] {
        let target = hv(&format!("{link}/inside"));
        let script = format!("echo through > {link}/inside/t && cat {link}/inside/in");
        let out = run(&["-v", &target, "runpv", "sh", "-c", &script]);
        assert!(out.status.success() && out.stdout == b"from-host\n", "{link}: {out:?}");
        assert_eq!(std::fs::read_to_string(host.join("t")).unwrap(), "through\n");
        std::fs::remove_file(host.join("t")).unwrap();
    }
    assert!(!work.join("escape").exists(), "the bind target followed /abs out of the root");
    assert!(!work.join("escape-up").exists(), "the bind target followed /up out of the root");

    let out = run(&["-v", "/nonexistent-rbuild-e2e:/x", "runpv", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`/nonexistent-rbuild-e2e`"), "{out:?}");
}

/// Every process descended from `pid` (by /proc's parent links), with its
/// command line.
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(pp) = fields.get(1).and_then(|f| f.parse::<u32>().ok()) {
            parents.push((p, pp));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let cur = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    found[1..]
        .iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            (*p, String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string())
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.split_whitespace().next() != Some("Z")))
        .unwrap_or(false)
}

/// One HTTP/1.0 GET of `path` from 127.0.0.1:`port`; the whole reply.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// `-p 127.0.0.1:PORT:8000` as `runner`: busybox httpd in the sandbox
/// serves the test's GET; killing rbuild takes the sandbox (and
/// slirp4netns) with it.
fn check_publish(runner: &support::Runner, root_arg: &str) {
    if !support::have("slirp4netns") {
        support::skip("slirp4netns is not installed");
        return;
    }
    // A free port (the kernel's pick; released for slirp4netns to take).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:8000");
    let mut child = runner
        .rbuild()
        .args([root_arg, "run", "-p", &publish, "runpv", "httpd", "-f", "-p", "8000", "-h", "/www"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild run");
    // Until httpd listens, slirp4netns accepts and closes at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reply = None;
    while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        if let Some(r) = http_get(port, "/index.html").filter(|r| !r.is_empty()) {
            reply = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let procs = descendants(child.id());
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().expect("wait for rbuild");
    let reply = reply.unwrap_or_else(|| panic!("no reply on port {port}: {out:?}"));
    assert!(reply.starts_with("HTTP/1.") && reply.contains("served-by-rbuild"), "{reply}");
    assert!(procs.iter().any(|(_, c)| c.starts_with("httpd -f -p 8000")), "{procs:?}");
    let api = procs
        .iter()
        .find_map(|(_, c)| c.split(' ').find_map(|a| a.strip_prefix("--api-socket=")))
        .unwrap_or_else(|| panic!("no slirp4netns with an API socket: {procs:?}"));
    let api_dir = Path::new(api).parent().expect("socket dir");
    assert!(!api_dir.exists(), "the API socket outlived the forwards' setup: {}", api_dir.display());
    // The kernel tears the pid namespace down after rbuild exits: wait for
    // that (bounded), then nothing of the run may be left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && procs.iter().any(|(p, _)| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = procs.iter().filter(|(p, _)| alive(*p)).collect();
    assert!(left.is_empty(), "left running after rbuild was killed: {left:?}");
    assert!(http_get(port, "/index.html").is_none_or(|r| r.is_empty()), "the port is still served");
}

#[test]
fn run_v_binds_host_paths_inside_the_root() {
    if !support::busybox_ready() {
        return;
    }
    let work = support::open_tempdir();
    let root_arg = volume_image(&support::Runner::Root, work.path());
    check_volumes(&support::Runner::Root, work.path(), &root_arg);
}

#[test]
fn run_p_forwards_a_host_port_and_dies_with_rbuild() {
    if !support::busybox_ready() {
        return;
    }
    let work = support::open_tempdir();
    let root_arg = volume_image(&support::Runner::Root, work.path());
    check_publish(&support::Runner::Root, &root_arg);
    // With the host network -p means nothing (docker's warning); with none
    // it is an error.
    let run = |net: &str| {
        let mut c = support::Runner::Root.rbuild();
        c.args([&root_arg, "run", "--network", net, "-p", "1234:80", "runpv", "true"]);
        c.output().unwrap()
    };
    let out = run("host");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("discarded"), "{out:?}");
    let out = run("none");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--network none"), "{out:?}");
}

#[test]
fn an_unprivileged_user_runs_with_v_and_p() {
    if !std::path::Path::new("/bin/busybox").exists() {
        support::skip("needs busybox-static");
        return;
    }
    let Some(user) = support::Runner::unprivileged() else { return };
    let work = support::open_tempdir();
    let root_arg = volume_image(&user, work.path());
    check_volumes(&user, work.path(), &root_arg);
    check_publish(&user, &root_arg);
}
