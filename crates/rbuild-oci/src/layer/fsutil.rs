//! fd-relative filesystem helpers shared by layer create and apply.
//!
//! Nothing here builds a path by joining strings and handing it to a
//! path-following syscall: directories are resolved with
//! `openat2(RESOLVE_IN_ROOT)` and final components are handled with `*at`
//! calls on a parent fd, never following a symlink in the last component.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a tar path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// A `..` component.
    DotDot,
}

/// Splits a tar path into normal components: leading `/`, empty and `.`
/// components are dropped (tar paths are relative to the root whatever they
/// say); `..` is refused outright, as no legitimate layer contains it.
pub(crate) fn clean_components(path: &[u8]) -> Result<Vec<&[u8]>, PathProblem> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(PathProblem::DotDot),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Joins components with `/`.
pub(crate) fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c);
    }
    v
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// `openat2` inside `root`.
fn openat2_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    openat2_scoped(root, path, flags, Mode::empty(), in_root())
}

/// `openat2` for scoped lookups (`RESOLVE_IN_ROOT`, `RESOLVE_BENEATH`),
/// retrying the `EAGAIN` the kernel returns when a `..` step races any
/// mount or rename on the machine: with many builds mounting overlays at
/// once that is not rare, and the kernel's advice is to try again.
pub fn openat2_scoped<Fd: AsFd, P: rustix::path::Arg + Copy>(
    dir: Fd,
    path: P,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0u32;
    loop {
        match rustix::fs::openat2(dir.as_fd(), path, flags, mode, resolve) {
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

/// A fresh fd for `root` itself.
pub(crate) fn dup_dir(root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(root, ".", dir_flags(), Mode::empty())?)
}

/// Opens the directory `comps` inside `root`, following symlinks only
/// within `root` (as if `root` were `/`). With `create`, missing components
/// are made (mode 0755) one at a time in their resolved parents; without it a
/// missing directory gives `Ok(None)`.
pub(crate) fn resolve_dir(root: BorrowedFd<'_>, comps: &[&[u8]], create: bool) -> io::Result<Option<OwnedFd>> {
    if comps.is_empty() {
        return dup_dir(root).map(Some);
    }
    match openat2_in_root(root, &join(comps), dir_flags()) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::NOENT) if create => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut cur = dup_dir(root)?;
    for i in 0..comps.len() {
        let prefix = join(&comps[..=i]);
        match openat2_in_root(root, &prefix, dir_flags()) {
            Ok(fd) => cur = fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&cur, comps[i], Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                cur = openat2_in_root(root, &prefix, dir_flags())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(cur))
}

/// Opens `path` inside `root` as a directory without following a symlink
/// in its last component (used to fix up directory metadata at the end).
pub(crate) fn open_dir_nofollow(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    if path.is_empty() {
        return dup_dir(root);
    }
    Ok(openat2_in_root(root, path, dir_flags() | OFlags::NOFOLLOW)?)
}

/// lstat of `name` in `dir`; `None` if absent.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The names in a directory (without `.` and `..`), sorted bytewise.
pub(crate) fn list_sorted(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut d = Dir::read_from(dir)?;
    d.rewind();
    let mut names = Vec::new();
    for ent in d {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it,
/// without following symlinks and without recursion (depth is bounded by
/// open fds, not the stack). Absent is fine.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let first = match rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(first, name.to_vec())];
    while let Some((top, _)) = stack.last() {
        let mut descend = None;
        for child in list_sorted(top.as_fd())? {
            match rustix::fs::unlinkat(top, &child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) | Err(Errno::PERM) => {
                    let sub = rustix::fs::openat(top, &child, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
                    descend = Some((sub, child));
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(next) = descend {
            stack.push(next);
            continue;
        }
        let Some((_, done_name)) = stack.pop() else { break };
        let parent = match stack.last() {
            Some((fd, _)) => fd.as_fd(),
            None => dir,
        };
        match rustix::fs::unlinkat(parent, &done_name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a stat describes a directory.
pub(crate) fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Reads all xattrs of an open file (names and values), sorted by name.
pub(crate) fn fd_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let need = rustix::fs::flistxattr_query(fd)?;
                names.resize(need.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) | Err(Errno::BADF) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::fgetxattr(fd, name, &mut val[..]) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) => {
                    let need = rustix::fs::fgetxattr_query(fd, name)?;
                    val.resize(need.max(val.len() * 2), 0);
                }
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            val.truncate(len);
            out.push((name.to_vec(), val));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether an xattr name is overlayfs-internal (never put in or taken from a tar).
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn clean_components_refuses_dotdot() {
        assert_eq!(clean_components(b"/a/./b//c/").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert!(clean_components(b"./").unwrap().is_empty());
        assert_eq!(clean_components(b"a/../b"), Err(PathProblem::DotDot));
        assert_eq!(clean_components(b".."), Err(PathProblem::DotDot));
    }

    #[test]
    fn resolve_dir_stays_in_root_and_creates() {
        let t = tempfile::tempdir().unwrap();
        let root_path = t.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/", root_path.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root_path.join("dots")).unwrap();
        let root = rustix::fs::open(&root_path, dir_flags(), Mode::empty()).unwrap();
        let fd = resolve_dir(root.as_fd(), &[b"up", b"etc2"], true).unwrap().unwrap();
        drop(fd);
        assert!(root_path.join("etc2").is_dir(), "`up/etc2` must land in root/etc2");
        resolve_dir(root.as_fd(), &[b"dots", b"x"], true).unwrap();
        assert!(root_path.join("x").is_dir());
        assert!(!t.path().join("x").exists());
        assert!(resolve_dir(root.as_fd(), &[b"missing"], false).unwrap().is_none());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let root_path = t.path().join("root");
        std::fs::create_dir_all(root_path.join("d/e/f")).unwrap();
        std::fs::write(root_path.join("d/e/f/file"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("d/link")).unwrap();
        let root = rustix::fs::open(&root_path, dir_flags(), Mode::empty()).unwrap();
        remove_all_at(root.as_fd(), b"d").unwrap();
        assert!(!root_path.join("d").exists());
        assert!(outside.join("keep").exists());
        remove_all_at(root.as_fd(), b"absent").unwrap();
    }
}
