//! `RUN --mount=type=ssh`: a forwarding proxy for the build's ssh agent.
//!
//! Bind-mounting the agent's socket would expose the host inode: its owner
//! and mode could not be set to what the step asks for without changing the
//! host's socket. Instead a new socket, with the requested `mode`, `uid` and
//! `gid`, is created on the sandbox's private tmpfs and bind-mounted at the
//! target; a small proxy process inside the sandbox (not dumpable, without
//! capabilities) relays each connection to the agent through an `O_PATH` fd
//! of the host socket (connecting via `/proc/self/fd/N`, since the host path
//! is not reachable after `pivot_root`). It is killed with the rest of the
//! sandbox when the main process ends.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::rootfs::{RootfsError, errno};

/// One forwarded agent: the listening socket in the sandbox and the host
/// socket to relay to.
pub struct AgentProxy {
    listener: OwnedFd,
    upstream: OwnedFd,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Path {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Creates socket `name` on the detached tmpfs `tmpfs` with the given
/// ownership and mode, and returns a detached bind mount of it plus the
/// proxy to start later.
pub fn prepare(
    tmpfs: BorrowedFd<'_>,
    name: &str,
    socket: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(OwnedFd, AgentProxy), RootfsError> {
    let upstream = rustix::fs::open(socket, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| err("opening the ssh agent socket", socket)(errno(e)))?;
    let st = rustix::fs::fstat(&upstream).map_err(|e| err("ssh agent socket", socket)(errno(e)))?;
    if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_socket() {
        return Err(RootfsError::Refused {
            what: "ssh agent",
            path: socket.display().to_string(),
            reason: "is not a socket",
        });
    }
    let io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
    let listener = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("creating the ssh proxy socket", socket)(io(e)))?;
    let path = format!("/proc/self/fd/{}/{name}", tmpfs.as_raw_fd());
    let addr = UnixAddr::new(path.as_str()).map_err(|e| err("ssh proxy socket", socket)(io(e)))?;
    nix::sys::socket::bind(listener.as_raw_fd(), &addr)
        .map_err(|e| err("binding the ssh proxy socket", socket)(io(e)))?;
    rustix::fs::chownat(
        tmpfs,
        name,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("chown of the ssh proxy socket", socket)(errno(e)))?;
    rustix::fs::chmodat(
        tmpfs,
        name,
        Mode::from_raw_mode(mode & 0o777),
        AtFlags::empty(),
    )
    .map_err(|e| err("chmod of the ssh proxy socket", socket)(errno(e)))?;
    nix::sys::socket::listen(
        &listener,
        nix::sys::socket::Backlog::new(32).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )
    .map_err(|e| err("listening on the ssh proxy socket", socket)(io(e)))?;
    let tree = rustix::mount::open_tree(
        tmpfs,
        name,
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| err("bind of the ssh proxy socket", socket)(errno(e)))?;
    Ok((tree, AgentProxy { listener, upstream }))
}

/// Forks the proxy processes (from init, after `pivot_root`).
pub fn start(proxies: Vec<AgentProxy>) -> Result<(), String> {
    for p in proxies {
        // SAFETY: init is single-threaded; the child never returns.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork ssh proxy: {e}"))? {
            nix::unistd::ForkResult::Child => serve(&p),
            nix::unistd::ForkResult::Parent { .. } => {}
        }
    }
    Ok(())
}

fn serve(p: &AgentProxy) -> ! {
    // SAFETY: plain prctl/signal calls in a fresh single-threaded child.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    let _ = rustix::thread::set_no_new_privs(true);
    let _ = rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: rustix::thread::CapabilitySet::empty(),
            permitted: rustix::thread::CapabilitySet::empty(),
            inheritable: rustix::thread::CapabilitySet::empty(),
        },
    );
    let upstream_path = format!("/proc/self/fd/{}", p.upstream.as_raw_fd());
    loop {
        let conn = match nix::sys::socket::accept4(p.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new fd that we own.
            Ok(fd) => unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
            Err(nix::Error::EINTR | nix::Error::ECONNABORTED) => continue,
            // SAFETY: _exit is always safe.
            Err(_) => unsafe { libc::_exit(1) },
        };
        // SAFETY: single-threaded; the child relays one connection and exits.
        if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
            let code = relay(conn.as_fd(), &upstream_path);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) };
        }
    }
}

fn relay(client: BorrowedFd<'_>, upstream_path: &str) -> i32 {
    let Ok(up) = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return 1;
    };
    let Ok(addr) = UnixAddr::new(upstream_path) else {
        return 1;
    };
    if nix::sys::socket::connect(up.as_raw_fd(), &addr).is_err() {
        return 1;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut fds = [
            nix::poll::PollFd::new(client, nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(up.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).is_err() {
            return 1;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        for (i, is_ready) in ready.into_iter().enumerate() {
            if !is_ready {
                continue;
            }
            let (from, to) = if i == 0 {
                (client, up.as_fd())
            } else {
                (up.as_fd(), client)
            };
            match nix::unistd::read(from, &mut buf) {
                Ok(0) | Err(_) => return 0,
                Ok(n) => {
                    let mut off = 0;
                    while off < n {
                        match nix::unistd::write(to, &buf[off..n]) {
                            Ok(w) => off += w,
                            Err(nix::Error::EINTR) => {}
                            Err(_) => return 0,
                        }
                    }
                }
            }
        }
    }
}
