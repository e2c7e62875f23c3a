//! PID 1 of the sandbox and the RUN's main process.
//!
//! The init runs in the new pid namespace: it builds the root in its own
//! mount namespace, pivots into it, forks the main process (which drops
//! privileges and execs the user's command), then reaps every process,
//! forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the main process, and when the
//! main process ends kills everything left in the namespace. It dies with
//! its parent (the helper) through `PR_SET_PDEATHSIG`, and the kernel kills
//! a pid namespace whose init dies: cancelling a build kills the tree.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rbuild_snapshot::mount as m;
use rustix::thread::CapabilitySet;

use crate::proto::{Event, HelperRequest, write_message};
use crate::rootfs::{Kind, RootBuilder, memory_file};
use crate::spec::{DEFAULT_PATH_ENV, MountKind, Rootfs, RunResult, RunSpec, Security};
use crate::stdio::{EXTRA_FD, StdioPlan};

/// Docker's default capability set.
pub const DEFAULT_CAPS: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Signals the helper and init handle synchronously (blocked + sigwait).
pub fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        s.add(sig);
    }
    s
}

/// Entry point of PID 1 (runs in the freshly forked child of the helper).
pub fn run_init(req: &HelperRequest, status: &mut File, lifeline: OwnedFd) -> ! {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // The helper died before the death signal was armed: its end is closed.
    let mut fds = [nix::poll::PollFd::new(
        lifeline.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(1) };
    }
    drop(lifeline);
    let code = match setup_and_start(req, status) {
        Ok(main) => {
            let _ = write_message(status, &Event::Started);
            let result = reap(main);
            let _ = write_message(status, &Event::Exited(result));
            0
        }
        Err(message) => {
            let _ = write_message(status, &Event::Error { message });
            kill_all_and_reap();
            1
        }
    };
    // SAFETY: _exit is always safe; skips destructors of a forked process.
    unsafe { libc::_exit(code) }
}

fn setup_and_start(req: &HelperRequest, status: &mut File) -> Result<Pid, String> {
    let spec = &req.spec;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;

    let (root_mnt, upper) = match &spec.rootfs {
        Rootfs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => (
            m::overlay_mount_fd(lowerdirs, Some((upperdir, workdir)))
                .map_err(|e| format!("rootfs: {e}"))?,
            Some(upperdir.as_path()),
        ),
        Rootfs::Dir(d) => (
            m::bind_mount_fd(d, false, false).map_err(|e| format!("rootfs: {e}"))?,
            None,
        ),
    };
    m::attach_path(root_mnt.as_fd(), &req.mountpoint).map_err(|e| format!("rootfs: {e}"))?;
    let mut rb = RootBuilder::new(&req.mountpoint, upper).map_err(|e| e.to_string())?;

    crate::mounts::system_mounts(&mut rb, spec).map_err(|e| e.to_string())?;
    let (secret_env, proxies) = user_mounts(&mut rb, spec).map_err(|e| e.to_string())?;
    let user = rbuild_fileop::users::resolve_user_at(rb.root(), &spec.user)
        .map_err(|e| format!("USER: {e}"))?;
    let cwd = rb.workdir(&spec.cwd).map_err(|e| e.to_string())?;
    write_message(status, &Event::Stubs(rb.take_stubs()))
        .map_err(|e| format!("reporting stubs: {e}"))?;
    let stdio = child_stdio(req.stdio, rb.root())?;

    // The helper made a new UTS namespace: the host's name is never changed.
    let hostname = if spec.hostname.is_empty() {
        "buildkitsandbox"
    } else {
        &spec.hostname
    };
    nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname `{hostname}`: {e}"))?;
    pivot(rb.root())?;
    crate::ssh::start(proxies)?;

    let exec = ExecPlan::new(spec, &user, secret_env)?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: init is single-threaded; the child only execs or _exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(err_r);
            main_child(spec, &user, cwd, &exec, &stdio, err_w)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(err_w);
            drop(cwd);
            // Only the process holds its terminal: when it and its children
            // are gone the caller's reads of the master end.
            drop(stdio);
            if req.stdio.uses_extra_fd() {
                // SAFETY: closing the fd the helper passed down for the child.
                unsafe { libc::close(EXTRA_FD) };
            }
            crate::helper::redirect_to_null(&[1, 2]);
            let mut msg = String::new();
            use std::io::Read;
            let _ = File::from(err_r).take(4096).read_to_string(&mut msg);
            if msg.is_empty() {
                Ok(child)
            } else {
                let _ = nix::sys::wait::waitpid(child, None);
                Err(msg)
            }
        }
    }
}

/// The main process's standard streams, prepared in the init.
enum ChildStdio {
    /// stdin from `/dev/null`, stdout/stderr as inherited.
    Null,
    /// stdin from [`EXTRA_FD`].
    StdinFd,
    /// The terminal side of the sandbox's pty.
    Tty(OwnedFd),
}

/// Prepares the streams of `plan`. For a pty: opens it from the sandbox's
/// own devpts (never a host terminal) and sends the master to the caller.
fn child_stdio(plan: StdioPlan, root: BorrowedFd<'_>) -> Result<ChildStdio, String> {
    match plan {
        StdioPlan::Null => Ok(ChildStdio::Null),
        StdioPlan::StdinFd => Ok(ChildStdio::StdinFd),
        StdioPlan::Tty(size) => {
            let ptmx = crate::rootfs::resolve_in(
                root,
                "dev/pts/ptmx",
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            )
            .map_err(|e| format!("opening the sandbox's /dev/pts/ptmx: {e}"))?;
            let pty = crate::stdio::open_pty(ptmx, size)?;
            // SAFETY: EXTRA_FD is the socket the helper passed down to us.
            let sock = unsafe { BorrowedFd::borrow_raw(EXTRA_FD) };
            crate::stdio::send_fd(sock, pty.master.as_fd())
                .map_err(|e| format!("handing the pty to the caller: {e}"))?;
            drop(pty.master);
            Ok(ChildStdio::Tty(pty.slave))
        }
    }
}

fn pivot(root: BorrowedFd<'_>) -> Result<(), String> {
    nix::unistd::fchdir(root).map_err(|e| format!("chdir to the root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("detaching the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Mounts requested by `RUN --mount`, shallowest target first. Returns the
/// secret environment variables.
type UserMounts = (Vec<CString>, Vec<crate::ssh::AgentProxy>);

fn user_mounts(
    rb: &mut RootBuilder,
    spec: &RunSpec,
) -> Result<UserMounts, crate::rootfs::RootfsError> {
    let mut order: Vec<_> = spec.mounts.iter().collect();
    order.sort_by_key(|mnt| crate::rootfs::clean_components(&mnt.target).len());
    let mut env = Vec::new();
    let mut proxies = Vec::new();
    let mut secrets: Option<OwnedFd> = None;
    for (i, mnt) in order.into_iter().enumerate() {
        match &mnt.kind {
            MountKind::Bind { source, readonly } => {
                let is_dir = std::fs::symlink_metadata(source).is_ok_and(|m| m.is_dir());
                let kind = if is_dir { Kind::Dir } else { Kind::File };
                let fd = m::bind_mount_fd(source, *readonly, true)?;
                rb.attach(fd.as_fd(), &mnt.target, kind)?;
            }
            MountKind::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => {
                let fd = m::overlay_mount_fd(lowerdirs, Some((upperdir, workdir)))?;
                rb.attach(fd.as_fd(), &mnt.target, Kind::Dir)?;
            }
            MountKind::Tmpfs { size } => {
                let size = size.map(|s| s.to_string());
                let mut opts = vec![("mode", "1777")];
                if let Some(s) = &size {
                    opts.push(("size", s.as_str()));
                }
                let fd = m::tmpfs_mount_fd(&opts)?;
                rb.attach(fd.as_fd(), &mnt.target, Kind::Dir)?;
            }
            MountKind::Secret {
                data,
                mode,
                uid,
                gid,
            } => {
                let tmp = private_tmpfs(&mut secrets)?;
                let f = memory_file(tmp, &format!("s{i}"), data, *mode, Some((*uid, *gid)), true)?;
                rb.attach(f.as_fd(), &mnt.target, Kind::File)?;
            }
            MountKind::SecretEnv { name, data } => {
                let mut kv = name.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(data);
                env.push(
                    CString::new(kv).map_err(|_| crate::rootfs::RootfsError::Refused {
                        what: "secret environment variable",
                        path: name.clone(),
                        reason: "contains a NUL byte",
                    })?,
                );
            }
            MountKind::SshAgent {
                socket,
                mode,
                uid,
                gid,
            } => {
                let tmp = private_tmpfs(&mut secrets)?;
                let (fd, proxy) =
                    crate::ssh::prepare(tmp, &format!("ssh{i}"), socket, *mode, *uid, *gid)?;
                rb.attach(fd.as_fd(), &mnt.target, Kind::File)?;
                proxies.push(proxy);
            }
        }
    }
    Ok((env, proxies))
}

/// The detached tmpfs holding secrets and agent sockets (created on first use).
fn private_tmpfs(slot: &mut Option<OwnedFd>) -> Result<BorrowedFd<'_>, crate::rootfs::RootfsError> {
    if slot.is_none() {
        *slot = Some(m::tmpfs_mount_fd(&[("mode", "0700")])?);
    }
    slot.as_ref()
        .map(AsFd::as_fd)
        .ok_or(crate::rootfs::RootfsError::Refused {
            what: "private tmpfs",
            path: String::new(),
            reason: "could not be created",
        })
}

/// What the main process execs, prepared before fork.
struct ExecPlan {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    arg0: String,
}

impl ExecPlan {
    fn new(
        spec: &RunSpec,
        user: &rbuild_fileop::users::ResolvedUser,
        secret_env: Vec<CString>,
    ) -> Result<Self, String> {
        let arg0 = spec.args.first().ok_or("RUN has an empty command")?.clone();
        let cs = |s: &str, what: &str| {
            CString::new(s)
                .map_err(|_| format!("{what} `{}` contains a NUL byte", s.escape_debug()))
        };
        let argv = spec
            .args
            .iter()
            .map(|a| cs(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envp = spec
            .env
            .iter()
            .map(|e| cs(e, "environment entry"))
            .collect::<Result<Vec<_>, _>>()?;
        let has = |k: &str| {
            spec.env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(n, _)| n == k))
        };
        if !has("PATH") {
            envp.push(cs(DEFAULT_PATH_ENV, "PATH")?);
        }
        if !has("HOME") {
            envp.push(cs(
                &format!("HOME={}", user.home.as_deref().unwrap_or("/")),
                "HOME",
            )?);
        }
        envp.extend(secret_env);
        let path = spec
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(&DEFAULT_PATH_ENV[5..]);
        let candidates = if arg0.contains('/') {
            vec![cs(&arg0, "command")?]
        } else {
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cs(&format!("{}/{arg0}", d.trim_end_matches('/')), "command"))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Self {
            candidates,
            argv,
            envp,
            arg0,
        })
    }
}

fn main_child(
    spec: &RunSpec,
    user: &rbuild_fileop::users::ResolvedUser,
    cwd: OwnedFd,
    exec: &ExecPlan,
    stdio: &ChildStdio,
    err: OwnedFd,
) -> ! {
    let fail = |msg: String| -> ! {
        let _ = nix::unistd::write(&err, msg.as_bytes());
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(127) }
    };
    if let Err(e) = drop_privileges_and_enter(spec, user, cwd.as_fd(), stdio) {
        fail(e);
    }
    drop(cwd);
    // Every fd above 2 closes on exec (the error pipe is already CLOEXEC).
    // SAFETY: plain syscall.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let mut last = nix::Error::ENOENT;
    for c in &exec.candidates {
        let e = nix::unistd::execve(c, &exec.argv, &exec.envp)
            .err()
            .unwrap_or(nix::Error::ENOENT);
        if e != nix::Error::ENOENT && e != nix::Error::ENOTDIR {
            last = e;
        }
    }
    if last == nix::Error::ENOENT && !exec.arg0.contains('/') {
        fail(format!(
            "`{}`: executable file not found in $PATH",
            exec.arg0
        ));
    }
    fail(format!("exec `{}`: {}", exec.arg0, last.desc()))
}

fn drop_privileges_and_enter(
    spec: &RunSpec,
    user: &rbuild_fileop::users::ResolvedUser,
    cwd: BorrowedFd<'_>,
    stdio: &ChildStdio,
) -> Result<(), String> {
    let _ = nix::unistd::setsid();
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: resetting dispositions to default in a fresh child.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    )
    .map_err(|e| format!("sigprocmask: {e}"))?;
    connect_stdio(stdio, user.uid)?;
    if let Some(n) = crate::helper::nproc_limit(spec) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, n, n);
    }
    let sandboxed = spec.security == Security::Sandbox;
    if sandboxed {
        for cap in 0..64u32 {
            if DEFAULT_CAPS.bits() & (1u64 << cap) == 0 {
                // SAFETY: prctl; EINVAL for caps the kernel doesn't know is fine.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            }
        }
    }
    let mut groups: Vec<nix::unistd::Gid> = user
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    groups.dedup();
    if let Err(e) = nix::unistd::setgroups(&groups)
        && !(e == nix::Error::EPERM && groups.iter().all(|g| g.as_raw() == user.gid))
    {
        return Err(id_error(
            "groups",
            &format!("{:?}", user.additional_gids),
            e,
        ));
    }
    let gid = nix::unistd::Gid::from_raw(user.gid);
    let uid = nix::unistd::Uid::from_raw(user.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| id_error("gid", &user.gid.to_string(), e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| id_error("uid", &user.uid.to_string(), e))?;
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if sandboxed {
        if let Ok(cur) = rustix::thread::capabilities(None) {
            let _ = rustix::thread::set_capabilities(
                None,
                rustix::thread::CapabilitySets {
                    effective: cur.effective & DEFAULT_CAPS,
                    permitted: cur.permitted & DEFAULT_CAPS,
                    inheritable: CapabilitySet::empty(),
                },
            );
        }
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
        crate::seccomp::install().map_err(|e| format!("seccomp filter: {e}"))?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::unistd::fchdir(cwd)
        .map_err(|e| format!("chdir to working directory `{}`: {e}", spec.cwd))?;
    // runc CVE-2024-21626: the cwd must be reachable from our root.
    match nix::unistd::getcwd() {
        Ok(p) if p.starts_with("/") => Ok(()),
        _ => Err(format!(
            "working directory `{}` is outside the root",
            spec.cwd
        )),
    }
}

/// Points fds 0-2 where [`ChildStdio`] says (after `setsid`, so that a pty
/// can become the controlling terminal). A pty is given to the user who
/// runs the process (as runc does), so that tools which reopen it by name
/// can; with a single-id map that uid may not exist and the pty stays root's.
fn connect_stdio(stdio: &ChildStdio, uid: u32) -> Result<(), String> {
    let dup_to = |from: i32, to: &[i32]| -> Result<(), String> {
        for fd in to {
            // SAFETY: dup2 onto one of this process's standard fds.
            if unsafe { libc::dup2(from, *fd) } < 0 {
                return Err(format!("dup2 onto fd {fd}: {}", nix::Error::last()));
            }
        }
        Ok(())
    };
    match stdio {
        ChildStdio::Null => {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("open /dev/null: {e}"))?;
            dup_to(null.as_raw_fd(), &[0])
        }
        ChildStdio::StdinFd => dup_to(EXTRA_FD, &[0]),
        ChildStdio::Tty(slave) => {
            rustix::process::ioctl_tiocsctty(slave)
                .map_err(|e| format!("making the pty the controlling terminal: {e}"))?;
            let _ = rustix::fs::fchown(slave, Some(rustix::fs::Uid::from_raw(uid)), None);
            dup_to(slave.as_raw_fd(), &[0, 1, 2])
        }
    }
}

fn id_error(what: &str, id: &str, e: nix::Error) -> String {
    // EINVAL: unmapped id; EPERM from setgroups: a single-id map denies it.
    if e == nix::Error::EINVAL || (what == "groups" && e == nix::Error::EPERM) {
        format!(
            "set{what} {id}: not mapped in the build's user namespace (add a subordinate id range: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 <user>`)"
        )
    } else {
        format!("set{what} {id}: {e}")
    }
}

/// Waits for the main process, forwarding signals and reaping orphans; when
/// it ends, kills what is left and returns its status.
fn reap(main: Pid) -> RunResult {
    let set = handled_signals();
    let mut result = None;
    loop {
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                    result = Some(RunResult::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => {
                    result = Some(RunResult::Signaled(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(r) = result {
            kill_all_and_reap();
            return r;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(main, sig);
            }
        }
    }
}

/// Kills every other process of the pid namespace and reaps them all; loops
/// so that processes forked concurrently are caught too.
fn kill_all_and_reap() {
    loop {
        // SAFETY: kill(-1) from PID 1 signals every other process in the namespace.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        if let Err(nix::Error::ECHILD) = nix::sys::wait::waitpid(Pid::from_raw(-1), None) {
            return;
        }
    }
}
