//! Path resolution confined to a root directory.
//!
//! [`Root::canonicalize`] resolves a hostile path the way the kernel's
//! `RESOLVE_IN_ROOT` does (absolute symlinks restart at the root, `..` stops
//! at the root) but one component at a time with `fstatat`/`readlinkat` on
//! directory fds, so it can also report where a *missing* tail would be
//! created — what BuildKit's `fs.RootPath` computes by string joining.
//! The result contains no symlinks; it is then opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` so that a symlink swapped
//! in afterwards fails the open instead of being followed.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Every scoped `openat2` lookup (`RESOLVE_IN_ROOT`) goes through this
/// one helper, shared with the layer code: it retries the `EAGAIN` the
/// kernel returns when a `..` step races a mount or rename anywhere on the
/// machine, which concurrent builds cause all the time.
pub(crate) use rbuild_oci::layer::openat2_scoped;

/// Flags of a lookup that treats the root as `/`: symlinks (absolute ones
/// included) and `..` stay inside it, and `/proc/self/fd/N`-style magic
/// links are refused, since they could lead anywhere.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Where `path` really is when looked up inside the directory `root` as if
/// `root` were `/`: symlinks are followed (the last one too) but cannot lead
/// out of `root`, and `..` stops at it. The answer is the host path of what
/// was found, with every symlink resolved, for APIs that want a path (a bind
/// mount's source) rather than an fd.
///
/// The kernel does the resolution (`openat2(RESOLVE_IN_ROOT)`), so the whole
/// path must exist; [`crate::ops`] and [`mod@crate::copy`] handle missing
/// tails themselves.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let fd = Root::open(root)?.open_in(path, OFlags::PATH)?;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Deepest directory a resolution may descend through (4 × [`crate::MAX_DEPTH`]).
const MAX_RESOLVE_DEPTH: usize = 4 * crate::MAX_DEPTH;

/// How many symlinks one resolution may traverse (Linux uses 40 too).
const MAX_SYMLINKS: usize = 40;

/// An open root directory and the path it was opened from (for messages).
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Split a path into normal components, dropping `.` and empty ones but
/// keeping `..` for the resolver to clamp.
pub(crate) fn split(path: &OsStr) -> Vec<OsString> {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// Lexically clean a path relative to a root: `..` never climbs above it.
pub(crate) fn clean(path: &OsStr) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in split(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// Join components into a relative path (`.` when empty).
pub(crate) fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// Opens the subdirectory `name` of `dir` for reading, refusing a symlink
/// there (`O_NOFOLLOW`): how every walk in this crate steps down one level.
pub(crate) fn open_subdir(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Root {
    /// Open `path` as a root. The root itself may be reached through symlinks
    /// (it is chosen by the caller, not by hostile input).
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Use an already open directory as a root (e.g. the target of an
    /// archive extraction); `shown` names it in messages.
    pub(crate) fn from_fd(fd: OwnedFd, shown: &str) -> Root {
        Root {
            fd,
            path: PathBuf::from(shown),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Resolve `path` inside the root, following symlinks (also in the last
    /// component when `follow_last`). Components after the first missing one
    /// are kept lexically. Returns the symlink-free components and whether
    /// the full path exists.
    pub(crate) fn canonicalize(
        &self,
        path: &OsStr,
        follow_last: bool,
    ) -> io::Result<(Vec<OsString>, bool)> {
        self.resolve(path, follow_last, false)
    }

    /// [`Root::canonicalize`], except that climbing above the root (by `..`,
    /// directly or through a symlink) is an error instead of being clamped:
    /// what BuildKit does for archive entries.
    pub(crate) fn canonicalize_strict(
        &self,
        path: &OsStr,
        follow_last: bool,
    ) -> io::Result<(Vec<OsString>, bool)> {
        self.resolve(path, follow_last, true)
    }

    fn resolve(
        &self,
        path: &OsStr,
        follow_last: bool,
        strict: bool,
    ) -> io::Result<(Vec<OsString>, bool)> {
        let escape = || io::Error::new(io::ErrorKind::InvalidInput, "path leads outside the root");
        let mut queue: Vec<OsString> = split(path);
        queue.reverse(); // pop from the end = next component
        let mut stack: Vec<OsString> = Vec::new();
        let mut fds: Vec<OwnedFd> = Vec::new(); // fds[i] = directory of stack[..=i]
        let mut links = 0usize;
        while let Some(comp) = queue.pop() {
            if comp == ".." {
                if strict && stack.is_empty() {
                    return Err(escape());
                }
                stack.pop();
                fds.pop();
                continue;
            }
            let dir = fds.last().map_or(self.fd.as_fd(), |f| f.as_fd());
            let st = match rustix::fs::statat(dir, &comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => {
                    stack.push(comp);
                    stack.extend(queue.into_iter().rev());
                    if strict {
                        let mut depth = 0usize;
                        for c in &stack {
                            if c == ".." {
                                depth = depth.checked_sub(1).ok_or_else(escape)?;
                            } else {
                                depth += 1;
                            }
                        }
                    }
                    return Ok((clean(join(&stack).as_os_str()), false));
                }
                Err(e) => return Err(e.into()),
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let is_last = queue.is_empty();
            if ft == FileType::Symlink && (!is_last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = rustix::fs::readlinkat(dir, &comp, Vec::new())?;
                let target = OsStr::from_bytes(target.as_bytes()).to_os_string();
                if target.as_bytes().starts_with(b"/") {
                    stack.clear();
                    fds.clear();
                }
                let mut t = split(&target);
                t.reverse();
                queue.extend(t);
                continue;
            }
            if ft == FileType::Directory && !is_last {
                let fd = rustix::fs::openat(
                    dir,
                    &comp,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                fds.push(fd);
                // One fd per level is held for `..`; a hostile path naming a
                // very deep existing tree gets an error, not fd exhaustion.
                if fds.len() > MAX_RESOLVE_DEPTH {
                    return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                }
            } else if !is_last {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            stack.push(comp);
        }
        Ok((stack, true))
    }

    /// Open `path` with the kernel resolving it inside the root (see
    /// [`resolve_in_root`]). Absolute and relative paths both start at the
    /// root; `/` and the empty path name the root itself.
    pub(crate) fn open_in(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        Ok(openat2_scoped(
            self.fd.as_fd(),
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?)
    }

    /// Open a canonical (symlink-free) path; fails if a symlink appeared.
    pub(crate) fn open_canonical(&self, comps: &[OsString], flags: OFlags) -> io::Result<OwnedFd> {
        Ok(openat2_scoped(
            self.fd.as_fd(),
            join(comps).as_path(),
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )?)
    }

    /// Open the directory at canonical `comps` (as an `O_PATH` fd usable as a
    /// `dirfd` for `*at` calls).
    pub(crate) fn open_dir(&self, comps: &[OsString]) -> io::Result<OwnedFd> {
        self.open_canonical(comps, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Create every missing directory of canonical `comps`, calling
    /// `on_create(dirfd_of_parent, name, index_in_comps)` for each one made (to set owner and
    /// times). Returns an fd for the final directory.
    pub(crate) fn mkdir_all(
        &self,
        comps: &[OsString],
        mode: u32,
        on_create: &mut dyn FnMut(BorrowedFd<'_>, &OsStr, usize) -> io::Result<()>,
    ) -> io::Result<OwnedFd> {
        let mut cur = self.open_dir(&[])?;
        for (i, comp) in comps.iter().enumerate() {
            let next = match rustix::fs::openat(
                cur.as_fd(),
                comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(cur.as_fd(), comp, Mode::from_raw_mode(mode)) {
                        Ok(()) => on_create(cur.as_fd(), comp, i)?,
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(
                        cur.as_fd(),
                        comp,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?
                }
                Err(e) => return Err(e.into()),
            };
            cur = next;
        }
        Ok(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(v: &[OsString]) -> String {
        join(v).to_string_lossy().into_owned()
    }

    #[test]
    fn canonicalize_clamps_and_follows_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("data/x")).unwrap();
        symlink("/etc", r.join("app")).unwrap();
        symlink("../../../../data", r.join("up")).unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        symlink("/nonexistent/dir", r.join("dangling")).unwrap();
        let root = Root::open(r).unwrap();
        let cases: &[(&str, &str, bool)] = &[
            ("/app", "etc", true),
            ("/app/passwd", "etc/passwd", false),
            ("/up/x", "data/x", true),
            ("/slash/etc", "etc", true),
            ("/../../etc", "etc", true),
            ("/dangling/a", "nonexistent/dir/a", false),
            ("/new/../etc", "etc", false),
            ("/", ".", true),
        ];
        for (input, want, exists) in cases {
            let (got, ex) = root.canonicalize(OsStr::new(input), true).unwrap();
            assert_eq!(names(&got), *want, "{input}");
            assert_eq!(ex, *exists, "{input} exists");
        }
        let (got, _) = root.canonicalize(OsStr::new("/app"), false).unwrap();
        assert_eq!(names(&got), "app");
        assert!(root.canonicalize(OsStr::new("/loop"), true).is_err());
    }
    #[test]
    fn resolve_in_root_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/conf")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../etc/passwd", r.join("climb")).unwrap();
        symlink("/proc/self/root/etc", r.join("magic")).unwrap();
        symlink("/nonexistent", r.join("dangling")).unwrap();
        let real = std::fs::canonicalize(r).unwrap();
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("/", ""),
            ("etc", "etc"),
            ("/abs/conf", "etc/conf"),
            ("abs/../../..", ""),
            ("climb", "etc/passwd"),
            ("/etc/conf/../passwd", "etc/passwd"),
        ];
        for (input, want) in cases {
            let got = resolve_in_root(r, input).unwrap();
            assert_eq!(got, real.join(want), "{input:?}");
        }
        // The host's /proc/self/root/etc exists; inside the root it does not.
        for bad in ["magic", "dangling", "missing/file", "etc/passwd/x"] {
            assert!(resolve_in_root(r, bad).is_err(), "{bad:?} resolved");
        }
        assert!(resolve_in_root(&r.join("missing"), "etc").is_err());
    }

    /// Differential test against the kernel: for random trees of directories
    /// and symlinks (absolute, relative, dangling, looping, climbing) and
    /// random paths, our resolution must land on the same inode as
    /// `openat2(RESOLVE_IN_ROOT)`, and agree on whether the path exists.
    /// `root/comps…` as real directories, created where missing; `None`
    /// when any component exists as something else (a symlink above all).
    fn real_dirs_inside(root: &Path, comps: &[&str]) -> Option<PathBuf> {
        let mut cur = root.to_path_buf();
        for c in comps {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => return None,
                Err(_) => std::fs::create_dir(&cur).ok()?,
            }
        }
        Some(cur)
    }

    #[test]
    fn canonicalize_agrees_with_resolve_in_root() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = ["a", "b", "c"];
        let pieces = ["a", "b", "c", "..", ".", ""];
        let mut checked = 0;
        for _ in 0..60 {
            let d = tempfile::tempdir().unwrap();
            let r = d.path();
            for _ in 0..12 {
                let depth = 1 + rnd(3) as usize;
                let p: Vec<&str> = (0..depth).map(|_| names[rnd(3) as usize]).collect();
                // Build the tree without ever following the symlinks it
                // holds: they point at `/` and `..`, and following one would
                // write into the host's root.
                let Some(parent) = real_dirs_inside(r, &p[..p.len() - 1]) else { continue };
                let path = parent.join(p[p.len() - 1]);
                if rnd(3) == 0 {
                    let mut t: Vec<&str> =
                        (0..1 + rnd(4)).map(|_| pieces[rnd(6) as usize]).collect();
                    if rnd(2) == 0 {
                        t.insert(0, "");
                    }
                    let target = t.join("/");
                    let target = if target.is_empty() {
                        "/".to_string()
                    } else {
                        target
                    };
                    let _ = symlink(&target, &path);
                } else {
                    let _ = std::fs::create_dir(&path);
                }
            }
            let root = Root::open(r).unwrap();
            for _ in 0..40 {
                let n = 1 + rnd(5);
                let mut p: Vec<&str> = (0..n).map(|_| pieces[rnd(6) as usize]).collect();
                if rnd(2) == 0 {
                    p.insert(0, "");
                }
                let path = p.join("/");
                let kernel = openat2_scoped(
                    root.fd(),
                    if path.is_empty() { "." } else { path.as_str() },
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT,
                )
                .and_then(|fd| rustix::fs::fstat(&fd));
                let ours = root.canonicalize(OsStr::new(&path), true);
                match (&kernel, &ours) {
                    (Ok(k), Ok((comps, true))) => {
                        let fd = root.open_canonical(comps, OFlags::PATH).unwrap();
                        let st = rustix::fs::fstat(&fd).unwrap();
                        assert_eq!(
                            (st.st_dev, st.st_ino),
                            (k.st_dev, k.st_ino),
                            "path {path:?} -> {comps:?}"
                        );
                        checked += 1;
                    }
                    (Err(_), Ok((_, false))) | (Err(_), Err(_)) => {}
                    (Err(rustix::io::Errno::NOTDIR), Ok(_)) => {}
                    _ => panic!("path {path:?}: kernel {kernel:?}, ours {ours:?}"),
                }
            }
        }
        assert!(checked > 100, "only {checked} existing paths compared");
    }
}
