//! In-process overlay and bind mounts built with the new mount API.
//!
//! Why the new API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`): every layer
//! is a separate `lowerdir+` parameter, so a deep stack of layers never hits
//! the one-page limit of the legacy `mount(2)` option string, and paths that
//! contain `:` or `,` need no escaping. Mounts are first created *detached*
//! (a file descriptor); the caller attaches them where it wants, which lets
//! the sandbox attach onto a directory it resolved safely inside a root.
//!
//! All overlays use the `userxattr` option: the agreed on-disk format (opaque
//! directories marked with `user.overlay.opaque`) is the same for root and
//! rootless builds.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};

/// Errors of the mount helpers; each names the path or parameter involved.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("overlay mount needs at least one lower directory or an upper directory")]
    NothingToMount,
    #[error("overlay mount: {step} `{subject}` failed: {source}{detail}")]
    Overlay {
        step: &'static str,
        subject: String,
        detail: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bind mount of `{path}` failed: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tmpfs mount failed: {source}")]
    Tmpfs {
        #[source]
        source: std::io::Error,
    },
    #[error("attaching a mount at `{target}` failed: {source}")]
    Attach {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("setting mount attributes (read-only) failed: {source}")]
    SetAttr {
        #[source]
        source: std::io::Error,
    },
}

fn io(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// Reads the messages the kernel queued on a filesystem context, so an
/// `EINVAL` from overlayfs comes with its reason ("failed to resolve ...").
fn fs_context_messages(fs_fd: BorrowedFd<'_>) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    for _ in 0..16 {
        match rustix::io::read(fs_fd, &mut buf) {
            Ok(n) if n > 0 => {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(String::from_utf8_lossy(&buf[..n]).trim());
            }
            _ => break,
        }
    }
    if out.is_empty() {
        out
    } else {
        format!(" (kernel: {out})")
    }
}

/// Creates a detached overlay mount. `lowers` are topmost first. Without an
/// upper directory the mount is read-only; with a single lower and no upper
/// this is a read-only bind (overlayfs refuses a single-layer, upper-less
/// stack on older kernels); with no lowers the upper itself is bound
/// read-write (there is nothing below it to white out).
pub fn overlay_mount_fd(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
) -> Result<OwnedFd, MountError> {
    match (lowers.len(), upper_work) {
        (0, None) => Err(MountError::NothingToMount),
        (0, Some((upper, _))) => bind_mount_fd(upper, false, false),
        (1, None) => bind_mount_fd(&lowers[0], true, false),
        _ => overlay_new_api(lowers, upper_work),
    }
}

fn overlay_new_api(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
) -> Result<OwnedFd, MountError> {
    let fs_fd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        MountError::Overlay {
            step: "fsopen",
            subject: "overlay".into(),
            detail: String::new(),
            source: io(e),
        }
    })?;
    let fail = |step: &'static str, subject: String, e: rustix::io::Errno| MountError::Overlay {
        step,
        subject,
        detail: fs_context_messages(fs_fd.as_fd()),
        source: io(e),
    };
    for (i, lower) in lowers.iter().enumerate() {
        if let Err(e) = rustix::mount::fsconfig_set_string(&fs_fd, "lowerdir+", lower.as_path()) {
            if i == 0 && e == rustix::io::Errno::INVAL {
                // Kernels before 6.8 do not know `lowerdir+`.
                return overlay_legacy_lowerdir(fs_fd, lowers, upper_work);
            }
            return Err(fail("lowerdir+", lower.display().to_string(), e));
        }
    }
    finish_overlay(fs_fd, upper_work)
}

fn overlay_legacy_lowerdir(
    fs_fd: OwnedFd,
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
) -> Result<OwnedFd, MountError> {
    let mut joined = String::new();
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            joined.push(':');
        }
        let s = l.to_string_lossy();
        for c in s.chars() {
            if c == ':' || c == '\\' {
                joined.push('\\');
            }
            joined.push(c);
        }
    }
    rustix::mount::fsconfig_set_string(&fs_fd, "lowerdir", joined.as_str()).map_err(|e| {
        MountError::Overlay {
            step: "lowerdir",
            subject: joined.clone(),
            detail: fs_context_messages(fs_fd.as_fd()),
            source: io(e),
        }
    })?;
    finish_overlay(fs_fd, upper_work)
}

fn finish_overlay(
    fs_fd: OwnedFd,
    upper_work: Option<(&Path, &Path)>,
) -> Result<OwnedFd, MountError> {
    let fail = |step: &'static str, subject: String, e: rustix::io::Errno| MountError::Overlay {
        step,
        subject,
        detail: fs_context_messages(fs_fd.as_fd()),
        source: io(e),
    };
    if let Some((upper, work)) = upper_work {
        rustix::mount::fsconfig_set_string(&fs_fd, "upperdir", upper)
            .map_err(|e| fail("upperdir", upper.display().to_string(), e))?;
        rustix::mount::fsconfig_set_string(&fs_fd, "workdir", work)
            .map_err(|e| fail("workdir", work.display().to_string(), e))?;
    }
    rustix::mount::fsconfig_set_flag(&fs_fd, "userxattr")
        .map_err(|e| fail("option", "userxattr".into(), e))?;
    rustix::mount::fsconfig_create(&fs_fd).map_err(|e| fail("create", "overlay".into(), e))?;
    let attrs = if upper_work.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    rustix::mount::fsmount(&fs_fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail("fsmount", "overlay".into(), e))
}

/// Creates a detached bind mount of `source` (a clone of its mount).
/// `recursive` also clones the mounts below it. The final component of
/// `source` is not followed if it is a symlink.
pub fn bind_mount_fd(
    source: &Path,
    readonly: bool,
    recursive: bool,
) -> Result<OwnedFd, MountError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_SYMLINK_NOFOLLOW;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let fd = rustix::mount::open_tree(CWD, source, flags).map_err(|e| MountError::Bind {
        path: source.to_path_buf(),
        source: io(e),
    })?;
    if readonly {
        set_readonly(fd.as_fd(), recursive)?;
    }
    Ok(fd)
}

/// Creates a detached tmpfs with the given options (`size=...`, `mode=...`).
pub fn tmpfs_mount_fd(options: &[(&str, &str)]) -> Result<OwnedFd, MountError> {
    let err = |e: rustix::io::Errno| MountError::Tmpfs { source: io(e) };
    let fs_fd = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(err)?;
    for (k, v) in options {
        rustix::mount::fsconfig_set_string(&fs_fd, *k, *v).map_err(err)?;
    }
    rustix::mount::fsconfig_create(&fs_fd).map_err(err)?;
    rustix::mount::fsmount(
        &fs_fd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(err)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Marks a (detached or attached) mount read-only with `mount_setattr`,
/// which unlike a `MS_REMOUNT` keeps the flags locked by a more privileged
/// namespace (nosuid, nodev) without having to restate them.
pub fn set_readonly(mount_fd: BorrowedFd<'_>, recursive: bool) -> Result<(), MountError> {
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: valid fd, NUL-terminated empty path, `attr` lives across the call
    // and its size is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount_fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(MountError::SetAttr {
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Attaches a detached mount onto the object `target_fd` refers to (an
/// `O_PATH` fd the caller resolved safely). No path is looked up again, so a
/// concurrent symlink swap cannot redirect the mount.
pub fn attach_at(
    mount_fd: BorrowedFd<'_>,
    target_fd: BorrowedFd<'_>,
    what: &str,
) -> Result<(), MountError> {
    rustix::mount::move_mount(
        mount_fd,
        "",
        target_fd,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| MountError::Attach {
        target: what.to_string(),
        source: io(e),
    })
}

/// Attaches a detached mount at a trusted host path.
pub fn attach_path(mount_fd: BorrowedFd<'_>, target: &Path) -> Result<(), MountError> {
    rustix::mount::move_mount(
        mount_fd,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| MountError::Attach {
        target: target.display().to_string(),
        source: io(e),
    })
}

/// A mount attached at `target`; unmounted when dropped.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    active: bool,
}

impl MountGuard {
    /// Where the mount is attached.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now and reports failure (drop only logs it).
    pub fn unmount(mut self) -> Result<(), std::io::Error> {
        self.active = false;
        unmount_path(&self.target)
    }

    /// Keeps the mount attached after the guard is gone (e.g. a mount that
    /// dies with its mount namespace).
    pub fn leak(mut self) {
        self.active = false;
    }
}

fn unmount_path(target: &Path) -> Result<(), std::io::Error> {
    match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
                .map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.active
            && let Err(e) = unmount_path(&self.target)
        {
            tracing::debug!(target = %self.target.display(), error = %e, "unmount failed");
        }
    }
}

/// Mounts an overlay of `lowers` (topmost first) with an optional writable
/// upper/work pair at `target`, in the calling process's mount namespace
/// (the build process is root in its own namespace). Read-only without an
/// upper. Unmounted when the guard drops.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<MountGuard, MountError> {
    let fd = overlay_mount_fd(lowers, upper_work)?;
    attach_path(fd.as_fd(), target)?;
    Ok(MountGuard {
        target: target.to_path_buf(),
        active: true,
    })
}

/// Checks whether overlayfs (with `userxattr`) can be mounted here, by
/// mounting a two-layer overlay of empty directories under `scratch` and
/// throwing it away. Used to pick the copy-based fallback once, up front.
pub fn probe_overlay(scratch: &Path) -> Result<(), MountError> {
    let dir = tempfile::Builder::new()
        .prefix(".probe-")
        .tempdir_in(scratch)
        .map_err(|e| MountError::Overlay {
            step: "probe",
            subject: scratch.display().to_string(),
            detail: String::new(),
            source: e,
        })?;
    let mk = |n: &str| -> Result<PathBuf, MountError> {
        let p = dir.path().join(n);
        std::fs::create_dir(&p).map_err(|e| MountError::Overlay {
            step: "probe",
            subject: p.display().to_string(),
            detail: String::new(),
            source: e,
        })?;
        Ok(p)
    };
    let (l1, l2, up, wk) = (mk("l1")?, mk("l2")?, mk("u")?, mk("w")?);
    overlay_mount_fd(&[l1, l2], Some((&up, &wk))).map(drop)
}
