//! The single-threaded sandbox helper: a re-exec of our own binary with a
//! hidden first argument.
//!
//! Why a separate process: `fork` in a tokio process is unsafe and new
//! namespaces must be created from a single-threaded process. The helper
//! reads its request from stdin, unshares the pid, uts, ipc and
//! (unless host networking) net namespaces, optionally waits for the
//! executor to attach slirp4netns, and forks PID 1 of the new pid namespace
//! (see the `init` module). It forwards termination signals to it and exits
//! when it is gone; the outcome is reported on fd 3 by the init itself.

use std::fs::File;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;

use crate::proto::{Event, HelperRequest, STATUS_FD, read_message, write_message};
use crate::spec::{DEFAULT_PIDS_LIMIT, Network, RunSpec};

/// The hidden subcommand that selects the helper.
pub const HELPER_ARG: &str = "__rbuild-sandbox";

/// Call first in `main()`: if this process was started as the sandbox
/// helper, run it and exit; otherwise return and let `main` go on.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(HELPER_ARG)) {
        std::process::exit(helper_main());
    }
}

/// Set when the helper joined a `pids` cgroup (inherited by init over fork).
static IN_CGROUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The process limit that applies when no cgroup could be used.
pub(crate) fn nproc_limit(spec: &RunSpec) -> Option<u64> {
    if IN_CGROUP.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    Some(spec.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT))
}

fn helper_main() -> i32 {
    // Only fds 0-4 are ours; anything else the build process leaked
    // without CLOEXEC (a terminal, a socket) must not live on in the
    // helper and the init for the whole run.
    // SAFETY: plain syscall; no Rust object owns an fd above EXTRA_FD yet.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (crate::stdio::EXTRA_FD + 1) as u32,
            u32::MAX,
            0u32,
        )
    };
    // SAFETY: fd 3 was set up by the executor for us alone.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    // SAFETY: fd 0 is our stdin pipe; ManuallyDrop keeps it open for init.
    let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let req: HelperRequest = match read_message(&mut *input) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_message(
                &mut status,
                &Event::Error {
                    message: format!("reading the sandbox request: {e}"),
                },
            );
            return 1;
        }
    };
    match run(&req, &mut status, &mut input) {
        Ok(()) => 0,
        Err(message) => {
            let _ = write_message(&mut status, &Event::Error { message });
            1
        }
    }
}

fn run(req: &HelperRequest, status: &mut File, input: &mut File) -> Result<(), String> {
    let cgroup = req
        .pids_cgroup
        .as_deref()
        .and_then(|cg| join_pids_cgroup(cg, &req.spec).ok());
    if cgroup.is_some() {
        IN_CGROUP.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if req.spec.network != Network::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare namespaces: {e}"))?;
    if req.spec.network != Network::Host {
        loopback_up().map_err(|e| format!("bringing up `lo`: {e}"))?;
    }
    if req.wait_for_network {
        write_message(
            status,
            &Event::NetnsReady {
                pid: std::process::id() as i32,
            },
        )
        .map_err(|e| format!("reporting the netns: {e}"))?;
        let mut go = [0u8; 1];
        match input.read(&mut go) {
            Ok(1) if go[0] == b'g' => {}
            _ => return Err("the executor did not attach the network".into()),
        }
    }
    let set = crate::init::handled_signals();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    // The init must not outlive us: PR_SET_PDEATHSIG covers our death after
    // it is set; this pipe (closed when we die) covers the moment before.
    let (life_r, life_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the helper is single-threaded.
    let init = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(life_w);
            crate::init::run_init(req, status, life_r)
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(life_r);
    // Only init and the RUN write the output pipes; their EOF then means
    // "the RUN's processes are gone", not "the helper is gone".
    redirect_to_null(&[1, 2]);
    if req.stdio.uses_extra_fd() {
        // The caller's stdin or the pty socket: the init has its copy.
        // SAFETY: closing an fd the executor set up for us alone.
        unsafe { libc::close(crate::stdio::EXTRA_FD) };
    }
    let outcome = supervise(init, &set, input);
    drop(life_w);
    let outcome = outcome?;
    // The cgroup is removed by the executor once we are gone: leaving it
    // would cost one more cgroup migration (an RCU grace period).
    drop(cgroup);
    match outcome {
        Ok(0 | 1) => Ok(()),
        Ok(code) => Err(format!("the sandbox init exited with status {code}")),
        Err(sig) => Err(format!("the sandbox init was killed by {sig}")),
    }
}

/// Waits for init, forwarding termination signals to it. If the executor
/// goes away (our stdin closes: its process died or dropped the run), the
/// sandbox is killed.
fn supervise(
    init: nix::unistd::Pid,
    set: &nix::sys::signal::SigSet,
    input: &File,
) -> Result<Result<i32, Signal>, String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        set,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| format!("signalfd: {e}"))?;
    let mut watch_input = true;
    loop {
        match nix::sys::wait::waitpid(init, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Ok(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Err(sig)),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the sandbox init: {e}")),
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if watch_input {
            fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let input_ready = fds
            .get(1)
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty());
        if input_ready {
            let mut b = [0u8; 64];
            if matches!(nix::unistd::read(input, &mut b), Ok(0) | Err(_)) {
                watch_input = false;
                let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            }
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) | Err(_) => {}
                Ok(sig) => {
                    let _ = nix::sys::signal::kill(init, sig);
                }
            }
        }
    }
}

/// Creates `cg` (a cgroup-v1 `pids` directory), limits it and moves us in;
/// the init and everything it starts inherit it.
fn join_pids_cgroup(cg: &Path, spec: &RunSpec) -> std::io::Result<PathBuf> {
    std::fs::create_dir(cg)?;
    let limit = spec.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    let res = std::fs::write(cg.join("pids.max"), limit.to_string())
        .and_then(|()| std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string()));
    if let Err(e) = res {
        let _ = std::fs::remove_dir(cg);
        return Err(e);
    }
    Ok(cg.to_path_buf())
}

/// Points the given fds at `/dev/null`.
pub(crate) fn redirect_to_null(fds: &[i32]) {
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        for fd in fds {
            // SAFETY: dup2 onto one of our own standard fds.
            unsafe { libc::dup2(null.as_raw_fd(), *fd) };
        }
    }
}

/// `ip link set lo up` with one ioctl.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = File::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
