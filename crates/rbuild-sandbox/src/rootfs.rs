//! Building the RUN's root inside the sandbox's mount namespace, and
//! removing the stub mount points from the upper dir afterwards.
//!
//! Every path inside the root is resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` relative to an fd of the root, missing components
//! are created fd-relative, and mounts are attached onto the resolved fd with
//! `move_mount`: a symlink in the image (or one swapped in concurrently)
//! cannot redirect a mount outside the root (BuildKit CVE-2024-23651/23652,
//! runc CVE-2024-21626).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rbuild_snapshot::mount::{self as m, MountError};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::proto::Stub;

/// Errors while preparing the root.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what} `{path}`: {source}")]
    Path {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} `{path}`: {reason}")]
    Refused {
        what: &'static str,
        path: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
}

pub(crate) fn errno(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// Splits an absolute (or relative) path into clean components; `..` at the
/// top stays at the top, as inside a root.
pub fn clean_components(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// `openat2` for scoped lookups, retrying the `EAGAIN` the kernel returns
/// when a `..` step races any mount or rename on the machine (concurrent
/// builds mount all the time); the kernel's advice is to try again.
fn openat2_scoped(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0u32;
    loop {
        match rustix::fs::openat2(dir, path, flags, mode, resolve) {
            Err(Errno::AGAIN) if tries < 1000 => {
                tries += 1;
                if tries > 8 {
                    std::thread::yield_now();
                }
            }
            other => return other,
        }
    }
}

/// Opens `rel` inside `root` (symlinks resolved as if `root` were `/`).
pub fn resolve_in(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = if rel.is_empty() { "." } else { rel };
    openat2_scoped(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
}

/// Whether the target of a mount is a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// The root being assembled.
pub struct RootBuilder {
    root: OwnedFd,
    mountpoint: PathBuf,
    upper: Option<OwnedFd>,
    stubs: Vec<Stub>,
}

impl RootBuilder {
    /// `mountpoint` is where the rootfs is mounted; `upper` its upper dir
    /// (to tell which directories overlayfs copies up for a stub).
    pub fn new(mountpoint: &Path, upper: Option<&Path>) -> Result<Self, RootfsError> {
        let open = |p: &Path, what| {
            rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| RootfsError::Path {
                what,
                path: p.display().to_string(),
                source: errno(e),
            })
        };
        let root = open(mountpoint, "opening the root")?;
        let upper = match upper {
            Some(u) => Some(open(u, "opening the upper dir")?),
            None => None,
        };
        Ok(Self {
            root,
            mountpoint: mountpoint.to_path_buf(),
            upper,
            stubs: Vec::new(),
        })
    }

    /// The root fd.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The stubs created so far.
    pub fn take_stubs(&mut self) -> Vec<Stub> {
        std::mem::take(&mut self.stubs)
    }

    /// The path of a resolved fd relative to the root (where it really is,
    /// after symlinks).
    fn real_rel(&self, fd: BorrowedFd<'_>) -> Result<String, RootfsError> {
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
                RootfsError::Path {
                    what: "reading the path of",
                    path: format!("fd {}", fd.as_raw_fd()),
                    source: e,
                }
            })?;
        let rel = link
            .strip_prefix(&self.mountpoint)
            .map_err(|_| RootfsError::Refused {
                what: "mount target",
                path: link.display().to_string(),
                reason: "resolved outside the root",
            })?;
        Ok(rel.to_string_lossy().into_owned())
    }

    fn exists_in_upper(&self, rel: &str) -> bool {
        let Some(upper) = &self.upper else {
            return true;
        };
        openat2_scoped(
            upper.as_fd(),
            if rel.is_empty() { "." } else { rel },
            OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )
        .is_ok()
    }

    /// Resolves `path` inside the root, creating missing components
    /// (directories, and a final empty file for [`Kind::File`]), which are
    /// recorded as stubs. Returns an `O_PATH` fd of the target.
    pub fn ensure(&mut self, path: &str, kind: Kind) -> Result<OwnedFd, RootfsError> {
        self.ensure_at(path, kind, 0)
    }

    /// [`RootBuilder::ensure`], following dangling symlinks inside the root
    /// (an image's `/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`
    /// gets its target created, as runc does) up to 40 times.
    fn ensure_at(&mut self, path: &str, kind: Kind, depth: u32) -> Result<OwnedFd, RootfsError> {
        if depth > 40 {
            return Err(RootfsError::Path {
                what: "mount target",
                path: path.into(),
                source: errno(Errno::LOOP),
            });
        }
        let comps = clean_components(path);
        if comps.is_empty() {
            return Err(RootfsError::Refused {
                what: "mount target",
                path: path.into(),
                reason: "cannot mount over the root itself",
            });
        }
        let err = |source: Errno| RootfsError::Path {
            what: "mount target",
            path: path.to_string(),
            source: errno(source),
        };
        let mut parent = resolve_in(self.root.as_fd(), "", OFlags::PATH).map_err(err)?;
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let want_dir = !last || kind == Kind::Dir;
            let prefix = comps[..=i].join("/");
            let mut flags = OFlags::PATH;
            if want_dir {
                flags |= OFlags::DIRECTORY;
            }
            match resolve_in(self.root.as_fd(), &prefix, flags) {
                Ok(fd) => {
                    if last {
                        if kind == Kind::File && is_dir(fd.as_fd()) {
                            return Err(RootfsError::Refused {
                                what: "mount target",
                                path: path.into(),
                                reason: "is a directory but the mount source is a file",
                            });
                        }
                        return Ok(fd);
                    }
                    parent = fd;
                }
                Err(Errno::NOENT) => {
                    if let Ok(target) = rustix::fs::readlinkat(&parent, *comp, Vec::new()) {
                        // A dangling symlink: create what it points to instead.
                        let target = target.to_string_lossy().into_owned();
                        let rest = comps[i + 1..].join("/");
                        let base = if target.starts_with('/') {
                            target
                        } else {
                            format!("{}/{target}", self.real_rel(parent.as_fd())?)
                        };
                        return self.ensure_at(&format!("{base}/{rest}"), kind, depth + 1);
                    }
                    parent = self.create_stub(parent.as_fd(), comp, want_dir, path)?;
                    if last {
                        return Ok(parent);
                    }
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(parent)
    }

    fn create_stub(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &str,
        dir: bool,
        path: &str,
    ) -> Result<OwnedFd, RootfsError> {
        let err = |source: Errno| RootfsError::Path {
            what: "creating mount point",
            path: path.to_string(),
            source: errno(source),
        };
        let parent_rel = self.real_rel(parent)?;
        let mut copied_up = Vec::new();
        let mut anc = parent_rel.as_str();
        while !anc.is_empty() {
            if !self.exists_in_upper(anc) {
                copied_up.push(anc.to_string());
            }
            anc = anc.rsplit_once('/').map_or("", |(a, _)| a);
        }
        // O_PATH fds cannot create entries; reopen the parent as a directory.
        let pdir = rustix::fs::openat(
            parent,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let res = if dir {
            rustix::fs::mkdirat(&pdir, name, Mode::from_raw_mode(0o755))
        } else {
            rustix::fs::openat(
                &pdir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        };
        match res {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return Err(RootfsError::Refused {
                    what: "mount target",
                    path: path.into(),
                    reason: "a component is a dangling symlink",
                });
            }
            Err(e) => return Err(err(e)),
        }
        let rel = if parent_rel.is_empty() {
            name.to_string()
        } else {
            format!("{parent_rel}/{name}")
        };
        self.stubs.push(Stub {
            path: rel,
            is_dir: dir,
            copied_up,
        });
        openat2_scoped(
            pdir.as_fd(),
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(err)
    }

    /// Attaches a detached mount at `path` (created if missing).
    pub fn attach(
        &mut self,
        mount_fd: BorrowedFd<'_>,
        path: &str,
        kind: Kind,
    ) -> Result<(), RootfsError> {
        let target = self.ensure(path, kind)?;
        m::attach_at(mount_fd, target.as_fd(), path)?;
        Ok(())
    }

    /// Resolves (creating if missing, not a stub) the working directory and
    /// refuses one on procfs/sysfs (a `WORKDIR /proc/self/fd/N` must not
    /// reach a leaked fd). Returns an `O_PATH` fd to `fchdir` into.
    pub fn workdir(&mut self, cwd: &str) -> Result<OwnedFd, RootfsError> {
        let comps = clean_components(cwd);
        let refuse = |reason| RootfsError::Refused {
            what: "working directory",
            path: cwd.to_string(),
            reason,
        };
        let mut cur =
            resolve_in(self.root.as_fd(), "", OFlags::PATH | OFlags::DIRECTORY).map_err(|e| {
                RootfsError::Path {
                    what: "working directory",
                    path: cwd.into(),
                    source: errno(e),
                }
            })?;
        for i in 0..comps.len() {
            let prefix = comps[..=i].join("/");
            cur = match resolve_in(self.root.as_fd(), &prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let before = self.stubs.len();
                    let fd = self.create_stub(cur.as_fd(), comps[i], true, cwd)?;
                    // A working directory is part of the layer, not a stub.
                    self.stubs.truncate(before);
                    fd
                }
                Err(Errno::LOOP | Errno::XDEV) => {
                    return Err(refuse("leads through a magic link or out of the root"));
                }
                Err(Errno::NOTDIR) => return Err(refuse("is not a directory")),
                Err(e) => {
                    return Err(RootfsError::Path {
                        what: "working directory",
                        path: cwd.into(),
                        source: errno(e),
                    });
                }
            };
        }
        let st = rustix::fs::fstatfs(&cur).map_err(|e| RootfsError::Path {
            what: "working directory",
            path: cwd.into(),
            source: errno(e),
        })?;
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        const SYSFS_MAGIC: i64 = 0x6265_6572;
        #[allow(clippy::unnecessary_cast)]
        let t = st.f_type as i64;
        if t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC {
            return Err(refuse("is on procfs or sysfs"));
        }
        Ok(cur)
    }
}

fn is_dir(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
}

/// Writes a file into a (detached) tmpfs and returns a detached bind mount
/// of it, ready to attach. Used for secrets and the generated
/// `/etc/hosts`-style files: their bytes live in memory only.
pub fn memory_file(
    tmpfs: BorrowedFd<'_>,
    name: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    readonly: bool,
) -> Result<OwnedFd, RootfsError> {
    let err = |source: std::io::Error| RootfsError::Path {
        what: "writing in-memory file",
        path: name.to_string(),
        source,
    };
    let fd = rustix::fs::openat(
        tmpfs,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| err(errno(e)))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data).map_err(err)?;
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(
            &f,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )
        .map_err(|e| err(errno(e)))?;
    }
    rustix::fs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| err(errno(e)))?;
    drop(f);
    let tree = rustix::mount::open_tree(
        tmpfs,
        name,
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| err(errno(e)))?;
    if readonly {
        m::set_readonly(tree.as_fd(), false)?;
    }
    Ok(tree)
}

/// Removes the stubs of a finished run from its upper dir: a stub directory
/// only if still empty, a stub file only if still an empty regular file,
/// then the ancestors overlayfs copied up for it if they are empty and not
/// opaque. All lookups are fd-relative without following symlinks, so a
/// symlink planted by the RUN cannot make us delete anything else
/// (BuildKit CVE-2024-23652).
pub fn remove_stubs(upper: &Path, stubs: &[Stub]) -> std::io::Result<()> {
    let root = rustix::fs::open(
        upper,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    for stub in stubs.iter().rev() {
        remove_if(
            root.as_fd(),
            &stub.path,
            if stub.is_dir {
                Expect::EmptyDir
            } else {
                Expect::EmptyFile
            },
        );
        for anc in &stub.copied_up {
            remove_if(root.as_fd(), anc, Expect::PlainEmptyDir);
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    EmptyDir,
    EmptyFile,
    PlainEmptyDir,
}

fn remove_if(root: BorrowedFd<'_>, rel: &str, expect: Expect) {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == ".." || name == "." {
        return;
    }
    let Ok(pfd) = openat2_scoped(
        root,
        if parent.is_empty() { "." } else { parent },
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
    ) else {
        return;
    };
    let Ok(st) = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return;
    };
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    let res = match expect {
        Expect::EmptyFile if ft.is_file() && st.st_size == 0 => {
            rustix::fs::unlinkat(&pfd, name, AtFlags::empty())
        }
        Expect::EmptyDir if ft.is_dir() => rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR),
        Expect::PlainEmptyDir if ft.is_dir() && !is_opaque(pfd.as_fd(), name) => {
            rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR)
        }
        _ => Ok(()),
    };
    if let Err(e) = res {
        tracing::debug!(path = rel, error = %e, "stub kept");
    }
}

fn is_opaque(parent: BorrowedFd<'_>, name: &str) -> bool {
    let Ok(fd) = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return true; // unknown: keep it
    };
    let mut buf = [0u8; 8];
    rustix::fs::fgetxattr(&fd, "user.overlay.opaque", &mut buf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_cleaned_inside_the_root() {
        assert_eq!(clean_components("/a/./b//c/"), vec!["a", "b", "c"]);
        assert_eq!(clean_components("/../../etc"), vec!["etc"]);
        assert_eq!(clean_components("a/b/../c"), vec!["a", "c"]);
        assert!(clean_components("/").is_empty());
    }

    #[test]
    fn stub_removal_keeps_changed_entries_and_ignores_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path();
        std::fs::create_dir_all(up.join("run/secrets")).expect("mkdir");
        std::fs::write(up.join("run/secrets/token"), b"").expect("stub file");
        std::fs::create_dir_all(up.join("etc")).expect("mkdir");
        std::fs::write(up.join("etc/hosts"), b"").expect("stub");
        std::fs::write(up.join("etc/keep"), b"user data").expect("user file");
        std::fs::create_dir(up.join("mnt")).expect("mkdir");
        std::fs::write(up.join("mnt/written"), b"x").expect("user wrote into a stub dir");
        // A RUN replaced a stub with a symlink pointing at a host file.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"").expect("victim");
        std::os::unix::fs::symlink(&victim, up.join("cache")).expect("symlink");
        let stubs = vec![
            Stub {
                path: "run".into(),
                is_dir: true,
                copied_up: vec![],
            },
            Stub {
                path: "run/secrets".into(),
                is_dir: true,
                copied_up: vec![],
            },
            Stub {
                path: "run/secrets/token".into(),
                is_dir: false,
                copied_up: vec![],
            },
            Stub {
                path: "etc/hosts".into(),
                is_dir: false,
                copied_up: vec!["etc".into()],
            },
            Stub {
                path: "mnt".into(),
                is_dir: true,
                copied_up: vec![],
            },
            Stub {
                path: "cache".into(),
                is_dir: false,
                copied_up: vec![],
            },
        ];
        remove_stubs(up, &stubs).expect("remove");
        assert!(!up.join("run").exists());
        assert!(!up.join("etc/hosts").exists());
        assert!(up.join("etc/keep").exists(), "non-empty copied-up dir kept");
        assert!(up.join("mnt/written").exists());
        assert!(victim.exists(), "symlink target untouched");
    }
}
