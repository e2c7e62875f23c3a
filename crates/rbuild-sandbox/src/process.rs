//! Entering the build namespace, before any thread exists.
//!
//! Everything rbuild does with mounts (overlay rootfs, snapshot views) needs
//! a private mount namespace, and a rootless build needs a user namespace in
//! which it is "root" so it can mount overlayfs and chown. A user namespace
//! can only be entered by a single-threaded process, so `main()` calls
//! [`enter_build_namespace`] before starting tokio:
//!
//! - as real root: `unshare(CLONE_NEWNS)` and make `/` recursively private,
//!   so our mounts are invisible to the host and die with us;
//! - unprivileged: fork; the child unshares a user + mount namespace, the
//!   parent writes its uid/gid maps with `newuidmap`/`newgidmap` (the whole
//!   `/etc/subuid` range: own id → 0, range → 1..N) or, without a range, a
//!   single-id map; the child re-execs our binary with a marker in the
//!   environment, and the parent waits and exits with the child's status,
//!   forwarding SIGINT/SIGTERM.

use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::CloneFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

/// Environment marker set on the re-executed child (value: `range:N` or `single:<user>`).
const MARKER: &str = "_RBUILD_USERNS";

/// How the build process is isolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceMode {
    /// Real root: private mount namespace, no user namespace.
    Root,
    /// Unprivileged with a subordinate id range: `ids` uids/gids are mapped
    /// (own id → 0, the range → 1..ids).
    Rootless { ids: u32 },
    /// Unprivileged without a range: only our own id, mapped to 0.
    RootlessSingleId,
}

/// The result of [`enter_build_namespace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub mode: NamespaceMode,
    /// A warning for the user (not printed here): what will not work and
    /// how to fix it.
    pub warning: Option<String>,
}

/// Errors while entering the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("`{call}` failed: {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(
        "writing the uid/gid map of the build namespace with `{tool}` failed: {detail}\nhint: check `/etc/subuid` and `/etc/subgid` (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)"
    )]
    IdMap {
        tool: String,
        detail: String,
        user: String,
    },
    #[error("the namespace child failed before exec: {0}")]
    Child(String),
    #[error("cannot find our own executable: {0}")]
    CurrentExe(#[source] std::io::Error),
}

fn sys(call: &'static str) -> impl FnOnce(nix::Error) -> NamespaceError {
    move |source| NamespaceError::Sys { call, source }
}

/// Puts the process into its build namespace; see the module docs. Must be
/// called before any thread is started. In the unprivileged case the
/// original process never returns from here (it exits with the child's
/// status); the re-executed child returns.
pub fn enter_build_namespace() -> Result<NamespaceInfo, NamespaceError> {
    if let Some(marker) = std::env::var_os(MARKER) {
        // SAFETY: called before any other thread exists (documented contract).
        unsafe { std::env::remove_var(MARKER) };
        make_root_private()?;
        let mode = if let Some(n) = marker.to_str().and_then(|m| m.strip_prefix("range:")) {
            NamespaceMode::Rootless {
                ids: n.parse().unwrap_or(1),
            }
        } else {
            NamespaceMode::RootlessSingleId
        };
        // The user name is only known outside (inside we are "root").
        let outer_name = marker
            .to_str()
            .and_then(|m| m.strip_prefix("single:"))
            .unwrap_or("<user>")
            .to_string();
        let warning =
            (mode == NamespaceMode::RootlessSingleId).then(|| single_id_warning(&outer_name));
        return Ok(NamespaceInfo { mode, warning });
    }
    if nix::unistd::geteuid().is_root() {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare(CLONE_NEWNS)"))?;
        make_root_private()?;
        return Ok(NamespaceInfo {
            mode: NamespaceMode::Root,
            warning: None,
        });
    }
    reexec_in_user_namespace()
}

fn make_root_private() -> Result<(), NamespaceError> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("mount --make-rprivate /"))
}

fn single_id_warning(user: &str) -> String {
    format!(
        "no subordinate id range for `{user}` in /etc/subuid and /etc/subgid: running with a single-id map. \
         RUN steps cannot chown files to other users and tools that switch users (apt's `_apt`, USER with another id) fail. \
         hint: `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`"
    )
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// Finds the first range for `name` or numeric `id` in a subid file's text.
pub fn parse_subid(text: &str, name: &str, id: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let who = parts.next()?;
        let start = parts.next()?.trim().parse().ok()?;
        let count: u32 = parts.next()?.trim().parse().ok()?;
        let matches = who == name || who.parse::<u32>().ok() == Some(id);
        (matches && count > 0).then_some(IdRange { start, count })
    })
}

fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn read_range(path: &str, name: &str, id: u32) -> Option<IdRange> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    parse_subid(&text, name, id)
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn reexec_in_user_namespace() -> Result<NamespaceInfo, NamespaceError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = user_name();
    let ranges = (
        read_range("/etc/subuid", &name, uid),
        read_range("/etc/subgid", &name, gid),
    );
    let tools = (find_tool("newuidmap"), find_tool("newgidmap"));
    let mapping = match (ranges, tools) {
        ((Some(u), Some(g)), (Some(nu), Some(ng))) => Some((u, g, nu, ng)),
        _ => None,
    };
    let marker = match &mapping {
        Some((u, g, _, _)) => format!("range:{}", 1 + u.count.min(g.count)),
        None => format!("single:{name}"),
    };

    // Everything the child needs is prepared before fork.
    let exe = CString::new("/proc/self/exe").map_err(|e| NamespaceError::Child(e.to_string()))?;
    let argv: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    envp.push(
        CString::new(format!("{MARKER}={marker}"))
            .map_err(|e| NamespaceError::Child(e.to_string()))?,
    );

    let (to_parent_r, to_parent_w) = nix::unistd::pipe().map_err(sys("pipe"))?;
    let (to_child_r, to_child_w) = nix::unistd::pipe().map_err(sys("pipe"))?;

    // SAFETY: the process is single-threaded (documented contract); the
    // child only makes raw syscalls before execve.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(to_parent_r);
            drop(to_child_w);
            child_before_exec(&to_parent_w, &to_child_r, &exe, &argv, &envp)
        }
        ForkResult::Parent { child } => {
            drop(to_parent_w);
            drop(to_child_r);
            parent_map_and_wait(child, to_parent_r, to_child_w, mapping, uid, gid, &name)
        }
    }
}

fn child_before_exec(
    to_parent: &OwnedFd,
    from_parent: &OwnedFd,
    exe: &CString,
    argv: &[CString],
    envp: &[CString],
) -> ! {
    let report = |msg: &[u8]| {
        let _ = nix::unistd::write(to_parent, msg);
    };
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        report(format!("Eunshare(CLONE_NEWUSER|CLONE_NEWNS): {e}").as_bytes());
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(1) };
    }
    report(b"U");
    let mut b = [0u8; 1];
    match nix::unistd::read(from_parent, &mut b) {
        Ok(1) if b[0] == b'M' => {}
        // SAFETY: _exit is always safe.
        _ => unsafe { libc::_exit(1) },
    }
    let e = nix::unistd::execve(exe, argv, envp).err();
    report(format!("Eexec /proc/self/exe: {e:?}").as_bytes());
    // SAFETY: _exit is always safe.
    unsafe { libc::_exit(127) }
}

fn write_map(pid: Pid, file: &str, content: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/{file}"))?
        .write_all(content.as_bytes())
}

fn run_map_tool(
    tool: &Path,
    pid: Pid,
    own: u32,
    range: IdRange,
    user: &str,
) -> Result<(), NamespaceError> {
    let out = std::process::Command::new(tool)
        .arg(pid.to_string())
        .args([
            "0",
            &own.to_string(),
            "1",
            "1",
            &range.start.to_string(),
            &range.count.to_string(),
        ])
        .output()
        .map_err(|e| NamespaceError::IdMap {
            tool: tool.display().to_string(),
            detail: e.to_string(),
            user: user.to_string(),
        })?;
    if !out.status.success() {
        return Err(NamespaceError::IdMap {
            tool: tool.display().to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            user: user.to_string(),
        });
    }
    Ok(())
}

fn parent_map_and_wait(
    child: Pid,
    from_child: OwnedFd,
    to_child: OwnedFd,
    mapping: Option<(IdRange, IdRange, PathBuf, PathBuf)>,
    uid: u32,
    gid: u32,
    user: &str,
) -> Result<NamespaceInfo, NamespaceError> {
    let mut from_child = std::fs::File::from(from_child);
    let mut first = [0u8; 1];
    let kill_child = || {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
    };
    if from_child.read(&mut first).unwrap_or(0) != 1 || first[0] != b'U' {
        let mut rest = String::new();
        let _ = from_child.read_to_string(&mut rest);
        kill_child();
        return Err(NamespaceError::Child(rest));
    }
    let mapped = match &mapping {
        Some((ur, gr, nu, ng)) => run_map_tool(nu, child, uid, *ur, user)
            .and_then(|()| run_map_tool(ng, child, gid, *gr, user)),
        None => write_map(child, "uid_map", &format!("0 {uid} 1\n"))
            .and_then(|()| write_map(child, "setgroups", "deny"))
            .and_then(|()| write_map(child, "gid_map", &format!("0 {gid} 1\n")))
            .map_err(|e| NamespaceError::IdMap {
                tool: "/proc/<pid>/uid_map".into(),
                detail: e.to_string(),
                user: user.to_string(),
            }),
    };
    if let Err(e) = mapped {
        kill_child();
        return Err(e);
    }
    let to_child = std::fs::File::from(to_child);
    if (&to_child).write_all(b"M").is_err() {
        kill_child();
        return Err(NamespaceError::Child(
            "the child exited before its maps were written".into(),
        ));
    }
    drop(to_child);
    CHILD_PID.store(child.as_raw(), Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only calls kill(2), which is async-signal-safe.
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }
    // The child closes its end on exec; an `E` message means exec failed.
    let mut rest = Vec::new();
    let _ = from_child.read_to_end(&mut rest);
    if rest.first() == Some(&b'E') {
        kill_child();
        return Err(NamespaceError::Child(
            String::from_utf8_lossy(&rest[1..]).into_owned(),
        ));
    }
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                // Die the same way, so our parent sees the signal.
                // SAFETY: resetting a handler and raising are plain syscalls.
                unsafe {
                    libc::signal(sig as libc::c_int, libc::SIG_DFL);
                    libc::raise(sig as libc::c_int);
                }
                std::process::exit(128 + sig as i32);
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("waitpid")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lookup_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(
            parse_subid(text, "alice", 1000),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(text, "carol", 1001),
            Some(IdRange {
                start: 200000,
                count: 1000
            })
        );
        assert_eq!(parse_subid(text, "bob", 7), None, "empty range is no range");
        assert_eq!(parse_subid("garbage\n::\n", "x", 0), None);
    }
}
