//! The async side: starts the helper for one RUN, feeds it the spec, attaches
//! the user-mode network, streams output, and cleans up.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helper::HELPER_ARG;
use crate::proto::{Event, STATUS_FD, Stub, take_message, write_message};
use crate::qemu::{self, EmulationError};
use crate::spec::{Network, OutputStream, PortForward, Rootfs, RunResult, RunSpec};
use crate::stdio::{EXTRA_FD, Stdio, StdioPlan};

/// Errors of a sandboxed run (not the RUN's own failure, which is a
/// non-zero [`RunResult`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("starting the sandbox helper `{program}`: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error(
        "`slirp4netns` is needed for the default RUN network but was not found in PATH\nhint: install it (`apt-get install slirp4netns`) or build with `--network=none`"
    )]
    SlirpMissing,
    #[error("attaching the RUN network with slirp4netns failed: {0}")]
    Slirp(String),
    #[error(transparent)]
    Emulation(#[from] EmulationError),
    #[error("creating the sandbox run directory `{path}`: {source}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the sandbox helper: {0}")]
    Io(#[source] std::io::Error),
    #[error("the sandbox helper ended without a result ({0})")]
    NoResult(String),
}

/// How to start the helper: our own binary plus a prefix of arguments
/// (before the hidden subcommand), e.g. for a test harness.
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args_prefix: Vec<String>,
}

impl HelperCommand {
    /// The running executable, which must call
    /// [`crate::helper::run_if_requested`] first thing in `main`.
    ///
    /// `/proc/self/exe` is used when available: it still works when the
    /// binary was replaced or deleted during a long build (a reinstall).
    pub fn current_exe() -> std::io::Result<Self> {
        let proc_exe = PathBuf::from("/proc/self/exe");
        let program = if proc_exe.exists() {
            proc_exe
        } else {
            std::env::current_exe()?
        };
        Ok(Self {
            program,
            args_prefix: Vec::new(),
        })
    }
}

/// Runs RUN steps in sandboxes. Cheap to share (`&self`); runs may go on
/// concurrently.
#[derive(Debug, Clone)]
pub struct Executor {
    helper: HelperCommand,
    run_dir: PathBuf,
    binfmt_dir: PathBuf,
    pids_cgroup: Option<PathBuf>,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize)]
struct RequestOut<'a> {
    spec: &'a RunSpec,
    mountpoint: &'a Path,
    wait_for_network: bool,
    pids_cgroup: Option<PathBuf>,
    stdio: StdioPlan,
}

/// The executor's side of a run's streams (see [`Stdio`]).
#[derive(Default)]
struct Streams {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Becomes the helper's [`EXTRA_FD`]: the caller's stdin or the
    /// sandbox's end of the pty socket.
    extra: Option<OwnedFd>,
    /// Our end of the pty socket, and where its master goes.
    tty: Option<(OwnedFd, tokio::sync::oneshot::Sender<OwnedFd>)>,
}

impl Streams {
    fn new(stdio: Stdio) -> Result<(StdioPlan, Self), SandboxError> {
        Ok(match stdio {
            Stdio::Captured => (StdioPlan::Null, Self::default()),
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                let plan = if stdin.is_some() {
                    StdioPlan::StdinFd
                } else {
                    StdioPlan::Null
                };
                (
                    plan,
                    Self {
                        stdout,
                        stderr,
                        extra: stdin,
                        tty: None,
                    },
                )
            }
            Stdio::Tty { size, master } => {
                use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
                let (ours, theirs) = socketpair(
                    AddressFamily::Unix,
                    SockType::Stream,
                    None,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                )
                .map_err(|e| SandboxError::Io(e.into()))?;
                // The init sends on a blocking socket.
                nix::fcntl::fcntl(
                    &theirs,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                )
                .map_err(|e| SandboxError::Io(e.into()))?;
                (
                    StdioPlan::Tty(size),
                    Self {
                        extra: Some(theirs),
                        tty: Some((ours, master)),
                        ..Self::default()
                    },
                )
            }
        })
    }
}

impl Executor {
    /// An executor whose helper is `helper`; mount points go to a directory
    /// under the system temp dir (see [`Executor::with_run_dir`]).
    pub fn new(helper: HelperCommand) -> Self {
        Self {
            helper,
            run_dir: std::env::temp_dir().join(format!("rbuild-sandbox-{}", outer_uid())),
            binfmt_dir: PathBuf::from("/proc/sys/fs/binfmt_misc"),
            pids_cgroup: detect_pids_cgroup(),
        }
    }

    /// Where per-run empty mount-point directories are made (e.g.
    /// `<state>/tmp`). Nothing else is ever written there.
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = dir.into();
        self
    }

    /// Where binfmt_misc handlers are looked up (tests).
    pub fn with_binfmt_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.binfmt_dir = dir.into();
        self
    }

    /// Turns the cgroup-v1 `pids` limit off (it costs a cgroup migration,
    /// i.e. an RCU grace period, per run); `RLIMIT_NPROC` still applies where
    /// it can (not to real root).
    pub fn without_pids_cgroup(mut self) -> Self {
        self.pids_cgroup = None;
        self
    }

    /// Whether process limits use a cgroup (else `RLIMIT_NPROC`).
    pub fn uses_pids_cgroup(&self) -> bool {
        self.pids_cgroup.is_some()
    }

    /// Runs one step. Output chunks go to `output` as they come. Dropping
    /// the future kills the whole sandbox; its mounts live only in its own
    /// mount namespace and vanish with it.
    pub async fn run(
        &self,
        spec: &RunSpec,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<RunResult, SandboxError> {
        self.run_with(spec, Stdio::Captured, output).await
    }

    /// [`Executor::run`] with the streams connected as `stdio` says (the
    /// caller's fds, or a pty for `rbuild run -t`); `output` gets what
    /// still goes through pipes. The run ends when the sandbox is gone, not
    /// when the caller's fds close.
    pub async fn run_with(
        &self,
        spec: &RunSpec,
        stdio: Stdio,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<RunResult, SandboxError> {
        if let Some(arch) = &spec.platform_arch {
            qemu::check_arch(arch, &self.binfmt_dir)?;
        }
        let slirp = match spec.network {
            Network::Sandbox => {
                Some(find_in_path("slirp4netns").ok_or(SandboxError::SlirpMissing)?)
            }
            _ if !spec.port_forwards.is_empty() => {
                return Err(SandboxError::Slirp(
                    "port forwards need the default (slirp4netns) network".into(),
                ));
            }
            _ => None,
        };
        std::fs::create_dir_all(&self.run_dir).map_err(|source| SandboxError::RunDir {
            path: self.run_dir.clone(),
            source,
        })?;
        // Canonical, so that paths the kernel reports inside it compare equal.
        let run_dir =
            std::fs::canonicalize(&self.run_dir).map_err(|source| SandboxError::RunDir {
                path: self.run_dir.clone(),
                source,
            })?;
        let mountpoint = tempfile::Builder::new()
            .prefix("root-")
            .tempdir_in(&run_dir)
            .map_err(|source| SandboxError::RunDir {
                path: self.run_dir.clone(),
                source,
            })?;
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let (plan, streams) = Streams::new(stdio)?;
        let req = RequestOut {
            spec,
            mountpoint: mountpoint.path(),
            wait_for_network: slirp.is_some(),
            pids_cgroup: self
                .pids_cgroup
                .as_ref()
                .map(|p| p.join(format!("rbuild-{}-{n}", std::process::id()))),
            stdio: plan,
        };
        let mut msg = Vec::new();
        write_message(&mut msg, &req).map_err(SandboxError::Io)?;
        let cgroup_guard = CgroupGuard(req.pids_cgroup.clone());
        let mut stubs = Vec::new();
        let res = self
            .run_helper(
                &mut msg,
                slirp.as_deref().map(|p| (p, spec.port_forwards.as_slice())),
                streams,
                output,
                &mut stubs,
            )
            .await;
        drop(cgroup_guard);
        // Also after a failed setup (say, a command not found): the stubs
        // were made before the failure.
        let upper = match &spec.rootfs {
            Rootfs::Overlay { upperdir, .. } => upperdir,
            Rootfs::Dir(d) => d,
        };
        if !stubs.is_empty()
            && let Err(e) = crate::rootfs::remove_stubs(upper, &stubs)
        {
            tracing::debug!(upper = %upper.display(), error = %e, "stub cleanup failed");
        }
        drop(mountpoint);
        res
    }

    async fn run_helper(
        &self,
        msg: &mut [u8],
        slirp: Option<(&Path, &[PortForward])>,
        streams: Streams,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
        stubs: &mut Vec<Stub>,
    ) -> Result<RunResult, SandboxError> {
        let Helper {
            mut child,
            status: status_r,
            tty,
        } = self.spawn_helper(streams)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| SandboxError::Setup("no helper stdin".into()))?;
        // A stream given as an fd has no pipe here.
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let (out_open, err_open) = (stdout.is_some(), stderr.is_some());
        let (mut tty_sock, mut tty_master) = match tty {
            Some((sock, tx)) => (Some(sock), Some(tx)),
            None => (None, None),
        };
        let write_res = stdin.write_all(msg).await;
        // The request may hold secret bytes: do not keep them around.
        msg.fill(0);
        let mut status =
            tokio::net::unix::pipe::Receiver::from_owned_fd(status_r).map_err(SandboxError::Io)?;

        let (mut out_open, mut err_open, mut st_open) = (out_open, err_open, true);
        let mut out_buf = vec![0u8; 32 * 1024];
        let mut err_buf = vec![0u8; 32 * 1024];
        let mut st_buf = vec![0u8; 4096];
        let mut pending = Vec::new();
        let mut slirp_child = None;
        let (mut result, mut error) = (None, None);
        // The status pipe closes when the helper (and so init) is gone: by
        // then the overlay is unmounted and the upper dir may be reused. A
        // pty master sent just before that is still taken from the socket.
        while out_open || err_open || st_open || tty_sock.is_some() {
            tokio::select! {
                r = read_some(&mut stdout, &mut out_buf), if out_open => match r {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => output(OutputStream::Stdout, &out_buf[..n]),
                },
                r = read_some(&mut stderr, &mut err_buf), if err_open => match r {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => output(OutputStream::Stderr, &err_buf[..n]),
                },
                r = recv_master(tty_sock.as_ref()), if tty_sock.is_some() => {
                    // One fd, then the init closes its end.
                    tty_sock = None;
                    match (r, tty_master.take()) {
                        (Ok(Some(fd)), Some(tx)) => {
                            let _ = tx.send(fd);
                        }
                        (Ok(_), _) => {}
                        (Err(e), _) => {
                            error.get_or_insert(format!("receiving the pty: {e}"));
                        }
                    }
                },
                r = status.read(&mut st_buf), if st_open => match r {
                    Ok(0) | Err(_) => st_open = false,
                    Ok(n) => {
                        pending.extend_from_slice(&st_buf[..n]);
                        while let Some(ev) = take_message::<Event>(&mut pending).map_err(SandboxError::Io)? {
                            match ev {
                                Event::NetnsReady { pid } => {
                                    let Some((path, forwards)) = slirp else { continue };
                                    match start_slirp(path, pid, forwards).await {
                                        Ok(c) => {
                                            slirp_child = Some(c);
                                            if let Err(e) = stdin.write_all(b"g").await {
                                                error.get_or_insert(format!("resuming the helper: {e}"));
                                            }
                                        }
                                        Err(e) => {
                                            let _ = child.start_kill();
                                            return Err(SandboxError::Slirp(e));
                                        }
                                    }
                                }
                                Event::Stubs(s) => *stubs = s,
                                Event::Started => {}
                                Event::Exited(r) => result = Some(r),
                                Event::Error { message } => {
                                    error.get_or_insert(message);
                                }
                            }
                        }
                    }
                },
            }
        }
        if let Some(mut s) = slirp_child {
            // Its exit unregisters the tap device (RCU grace periods, tens of
            // ms): tokio reaps it in the background instead of us waiting.
            let _ = s.child.start_kill();
            drop(s);
        }
        if let Some(e) = error {
            return Err(SandboxError::Setup(e));
        }
        let exit = child.wait().await.map_err(SandboxError::Io)?;
        if let Some(r) = result {
            return Ok(r);
        }
        match write_res {
            Err(e) => Err(SandboxError::NoResult(format!(
                "writing the request: {e}; helper {exit}"
            ))),
            Ok(()) => Err(SandboxError::NoResult(exit.to_string())),
        }
    }
}

/// The helper process of a run and our ends of its channels.
struct Helper {
    child: tokio::process::Child,
    /// The read end of the status pipe (fd 3 in the helper).
    status: OwnedFd,
    /// The socket the pty master comes back on, and where it goes.
    tty: Option<(
        tokio::net::UnixStream,
        tokio::sync::oneshot::Sender<OwnedFd>,
    )>,
}

impl Executor {
    /// Starts the helper with its streams: pipes (or the caller's fds) on
    /// 0-2, the status pipe on 3, the caller's stdin or the pty socket on 4.
    fn spawn_helper(&self, streams: Streams) -> Result<Helper, SandboxError> {
        use std::process::Stdio as P;
        let (status_r, status_w) = cloexec_pipe()?;
        let mut cmd = tokio::process::Command::new(&self.helper.program);
        cmd.args(&self.helper.args_prefix)
            .arg(HELPER_ARG)
            .stdin(P::piped())
            .stdout(streams.stdout.map_or_else(P::piped, P::from))
            .stderr(streams.stderr.map_or_else(P::piped, P::from))
            .kill_on_drop(true);
        let mut fds = vec![(&status_w, STATUS_FD)];
        if let Some(extra) = &streams.extra {
            fds.push((extra, EXTRA_FD));
        }
        pass_fds(&mut cmd, &fds);
        let spawned = cmd.spawn();
        // Our copies must go, or the caller's stdin and the pty socket
        // would not see the sandbox's end close.
        drop(cmd);
        drop(streams.extra);
        let child = spawned.map_err(|source| SandboxError::Spawn {
            program: self.helper.program.clone(),
            source,
        })?;
        drop(status_w);
        let tty = match streams.tty {
            Some((sock, tx)) => {
                let sock = std::os::unix::net::UnixStream::from(sock);
                Some((
                    tokio::net::UnixStream::from_std(sock).map_err(SandboxError::Io)?,
                    tx,
                ))
            }
            None => None,
        };
        Ok(Helper {
            child,
            status: status_r,
            tty,
        })
    }
}

/// Reads from an optional helper pipe (`None`: the stream is not ours).
async fn read_some<R: AsyncReadExt + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => Ok(0),
    }
}

/// Waits for the pty master the init sends (`None` if it closed first).
async fn recv_master(sock: Option<&tokio::net::UnixStream>) -> std::io::Result<Option<OwnedFd>> {
    let Some(sock) = sock else {
        return Ok(None);
    };
    loop {
        sock.readable().await?;
        match sock.try_io(tokio::io::Interest::READABLE, || {
            crate::stdio::recv_fd(sock.as_fd())
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}

/// Removes a run's `pids` cgroup if the helper could not (it was killed by
/// a cancellation). The cgroup empties only once the kernel has finished
/// killing the sandbox, so a short-lived thread retries for a while.
struct CgroupGuard(Option<PathBuf>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let Some(cg) = self.0.take() else { return };
        if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("rbuild-cgroup-rm".into())
            .spawn(move || {
                for _ in 0..200 {
                    match std::fs::remove_dir(&cg) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        _ => return,
                    }
                }
                tracing::debug!(cgroup = %cg.display(), "cgroup still busy; left behind");
            });
    }
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(|e| SandboxError::Io(e.into()))
        .and_then(|(r, w)| {
            // Only our read end is non-blocking; the child's write end blocks.
            nix::fcntl::fcntl(
                &w,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )
            .map_err(|e| SandboxError::Io(e.into()))?;
            Ok((r, w))
        })
}

/// Makes each `fd` appear as its `target` number in the child (and only
/// there). At most 4 pairs (no allocation after fork).
fn pass_fds(cmd: &mut tokio::process::Command, fds: &[(&OwnedFd, i32)]) {
    let mut pairs = [(-1i32, -1i32); 4];
    for (slot, (fd, target)) in pairs.iter_mut().zip(fds) {
        *slot = (fd.as_raw_fd(), *target);
    }
    // SAFETY: the closure only calls async-signal-safe fcntl/dup2 and does
    // not allocate.
    unsafe {
        cmd.pre_exec(move || {
            // First move every source out of the way of every target.
            let mut moved = [-1i32; 4];
            for (i, (raw, _)) in pairs.iter().enumerate() {
                if *raw >= 0 {
                    moved[i] = libc::fcntl(*raw, libc::F_DUPFD_CLOEXEC, 64);
                    if moved[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            for (i, (_, target)) in pairs.iter().enumerate() {
                if moved[i] >= 0 && libc::dup2(moved[i], *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A running slirp4netns. It exits by itself when `_exit_w` closes (we are
/// done, or our process died), and is killed on drop.
struct Slirp {
    child: tokio::process::Child,
    _exit_w: OwnedFd,
}

/// Starts slirp4netns for the netns of `pid`. With `forwards`, it also gets
/// an API socket (in a fresh 0700 directory: only we may talk to it) and
/// each forward is added through it before the run is resumed, so a
/// forward that fails (a port in use) fails the run before it starts. The
/// socket is removed right after: nothing is left in the temp dir even if
/// we are killed, and nobody can change the forwards later.
async fn start_slirp(path: &Path, pid: i32, forwards: &[PortForward]) -> Result<Slirp, String> {
    let api_dir = if forwards.is_empty() {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("rbuild-slirp-")
                .tempdir()
                .map_err(|e| format!("creating the API socket directory: {e}"))?,
        )
    };
    let api_sock = api_dir.as_ref().map(|d| d.path().join("api.sock"));
    let (ready_r, ready_w) = cloexec_pipe().map_err(|e| e.to_string())?;
    let (exit_r, exit_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(path);
    cmd.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--ready-fd=3",
        "--exit-fd=4",
    ])
    .args(api_sock.iter().map(|p| {
        let mut a = std::ffi::OsString::from("--api-socket=");
        a.push(p);
        a
    }))
    .arg(pid.to_string())
    .arg("tap0")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    pass_fds(&mut cmd, &[(&ready_w, 3), (&exit_r, 4)]);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    drop(ready_w);
    drop(exit_r);
    let mut ready =
        tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    match ready.read(&mut b).await {
        Ok(1) => {
            let slirp = Slirp {
                child,
                _exit_w: exit_w,
            };
            if let Some(sock) = &api_sock {
                for fwd in forwards {
                    add_hostfwd(sock, fwd).await?;
                }
            }
            drop(api_dir);
            Ok(slirp)
        }
        _ => {
            let _ = child.start_kill();
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err).await;
            }
            Err(err.trim().to_string())
        }
    }
}

/// Asks slirp4netns (through its API socket, one request per connection)
/// to forward `fwd`; its error reply (say, the port is in use) is ours.
async fn add_hostfwd(sock: &Path, fwd: &PortForward) -> Result<(), String> {
    let what = format!(
        "forwarding {}:{} to port {}/{}",
        fwd.host_addr,
        fwd.host_port,
        fwd.guest_port,
        fwd.protocol.as_str()
    );
    let req = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": fwd.protocol.as_str(),
            "host_addr": fwd.host_addr.to_string(),
            "host_port": fwd.host_port,
            "guest_port": fwd.guest_port,
        }
    });
    let mut conn = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| format!("{what}: connecting to `{}`: {e}", sock.display()))?;
    conn.write_all(req.to_string().as_bytes())
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let _ = conn.shutdown().await;
    let mut reply = Vec::new();
    // A reply is a few dozen bytes; a bound keeps a broken peer harmless.
    (&mut conn)
        .take(64 * 1024)
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("{what}: reading the reply: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(&reply).map_err(|e| {
        format!(
            "{what}: unexpected reply `{}`: {e}",
            String::from_utf8_lossy(&reply)
        )
    })?;
    if value.get("return").is_some() {
        return Ok(());
    }
    let desc = value
        .pointer("/error/desc")
        .and_then(|d| d.as_str())
        .map_or_else(|| value.to_string(), str::to_string);
    Err(format!("{what}: {desc}"))
}

/// Our uid outside the user namespace (the first line of `uid_map`), so
/// that a rootless build and real root never share a default run dir.
fn outer_uid() -> u32 {
    std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|m| {
            let mut it = m.split_whitespace();
            let inside: u32 = it.next()?.parse().ok()?;
            let outside: u32 = it.next()?.parse().ok()?;
            (inside == 0).then_some(outside)
        })
        .unwrap_or_else(|| nix::unistd::getuid().as_raw())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// The cgroup-v1 `pids` directory of this process, when we may create
/// children in it (real root on a v1/hybrid host).
fn detect_pids_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrl.split(',')
            .any(|c| c == "pids")
            .then(|| path.trim_start_matches('/').to_string())
    })?;
    let dir = Path::new("/sys/fs/cgroup/pids").join(rel);
    nix::unistd::access(&dir.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).ok()?;
    Some(dir)
}
