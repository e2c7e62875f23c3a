//! Deterministic, fd-relative tree walking for context transfer and hashing.
//!
//! Entries come in a fixed order (names sorted bytewise, a directory before
//! its children), so two walks of the same tree agree byte for byte. The
//! exclusion rule is a predicate `(relative path, is_dir) -> excluded` so
//! that this crate does not depend on the `.dockerignore` matcher; a
//! directory the predicate excludes is not entered (a matcher with `!`
//! exceptions below it should answer "not excluded" for that directory).
//! Symlinks are reported, never followed.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::root::{Root, join, open_subdir};

/// Errors from walking.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot open root `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` not found")]
    NotFound { path: String },
    #[error("{op} `{path}`")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` is nested more than {} directories deep", crate::MAX_DEPTH)]
    TooDeep { path: String },
    /// Returned by a visitor to stop the walk.
    #[error("walk stopped: {reason}")]
    Stopped { reason: String },
}

/// Kinds of entries, as in a tar header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl EntryKind {
    pub(crate) fn of(st: &Stat) -> EntryKind {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink,
            FileType::CharacterDevice => EntryKind::CharDevice,
            FileType::BlockDevice => EntryKind::BlockDevice,
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            _ => EntryKind::File,
        }
    }
}

/// One entry of a walk (metadata only; contents are the caller's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Path relative to the walk's start, `/`-separated (non-UTF-8 bytes
    /// replaced; use [`WalkEntry::rel_bytes`] for the exact name).
    pub rel_path: String,
    rel_raw: OsString,
    pub kind: EntryKind,
    /// Permission and set-id/sticky bits (`mode & 0o7777`).
    pub perm: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub rdev: u64,
    /// Target of a symlink.
    pub link_target: Option<OsString>,
}

impl WalkEntry {
    /// The exact relative path bytes.
    pub fn rel_bytes(&self) -> &[u8] {
        self.rel_raw.as_bytes()
    }

    pub(crate) fn from_stat(rel: OsString, st: &Stat, link_target: Option<OsString>) -> WalkEntry {
        WalkEntry {
            rel_path: rel.to_string_lossy().into_owned(),
            rel_raw: rel,
            kind: EntryKind::of(st),
            perm: st.st_mode & 0o7777,
            size: st.st_size as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime_ns: st
                .st_mtime
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_mtime_nsec as i64),
            ctime_ns: st
                .st_ctime
                .saturating_mul(1_000_000_000)
                .saturating_add(st.st_ctime_nsec as i64),
            ino: st.st_ino,
            dev: st.st_dev,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
            link_target,
        }
    }
}

/// Walk the tree below `start` (a path inside `root`, resolved inside it;
/// `""` or `/` for the whole root), calling `visit` for every entry that
/// `exclude` does not reject. The start directory itself is not reported.
pub fn walk(
    root: &Path,
    start: &str,
    exclude: &dyn Fn(&str, bool) -> bool,
    visit: &mut dyn FnMut(&WalkEntry) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    walk_with_files(root, start, exclude, &mut |e, _| visit(e))
}

/// Access to a walked regular file's contents without a path: it is opened
/// relative to its parent directory, never following a symlink, and must
/// still be the regular file that was walked (not swapped for a FIFO).
pub struct EntryFile<'a> {
    dir: BorrowedFd<'a>,
    name: &'a OsStr,
    ino: u64,
}

impl EntryFile<'_> {
    /// Open the entry for reading.
    pub fn open(&self) -> io::Result<std::fs::File> {
        let fd = rustix::fs::openat(
            self.dir,
            self.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_ino != self.ino {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "entry changed since it was walked",
            ));
        }
        Ok(std::fs::File::from(fd))
    }
}

/// [`walk`], with a handle to open each entry's contents (the daemon's
/// context transfer sends the files whose metadata changed).
pub fn walk_with_files(
    root: &Path,
    start: &str,
    exclude: &dyn Fn(&str, bool) -> bool,
    visit: &mut dyn FnMut(&WalkEntry, &EntryFile<'_>) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    let r = Root::open(root).map_err(|source| WalkError::OpenRoot {
        path: root.to_path_buf(),
        source,
    })?;
    let (canon, exists) =
        r.canonicalize(OsStr::new(start), true)
            .map_err(|source| WalkError::Io {
                op: "resolve",
                path: start.to_string(),
                source,
            })?;
    if !exists {
        return Err(WalkError::NotFound {
            path: start.to_string(),
        });
    }
    let fd = r
        .open_canonical(&canon, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|source| WalkError::Io {
            op: "open directory",
            path: start.to_string(),
            source,
        })?;
    let mut visit_fd = |e: &WalkEntry, dir: BorrowedFd<'_>, name: &OsStr| {
        visit(
            e,
            &EntryFile {
                dir,
                name,
                ino: e.ino,
            },
        )
    };
    walk_fd(&fd, &mut Vec::new(), exclude, &mut visit_fd)
}

/// The walker proper: `visit` also gets the parent directory fd and the
/// entry's name, so contents can be opened without a path.
pub(crate) fn walk_fd(
    dir: &OwnedFd,
    prefix: &mut Vec<OsString>,
    exclude: &dyn Fn(&str, bool) -> bool,
    visit: &mut dyn FnMut(&WalkEntry, BorrowedFd<'_>, &OsStr) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    let shown = || join(prefix).to_string_lossy().into_owned();
    if prefix.len() > crate::MAX_DEPTH {
        return Err(WalkError::TooDeep { path: shown() });
    }
    let names = crate::copy::read_dir_sorted(dir).map_err(|source| WalkError::Io {
        op: "read directory",
        path: shown(),
        source,
    })?;
    for name in names {
        prefix.push(name.clone());
        let rel = join(prefix).into_os_string();
        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            WalkError::Io {
                op: "stat",
                path: rel.to_string_lossy().into_owned(),
                source: e.into(),
            }
        })?;
        let kind = EntryKind::of(&st);
        if exclude(&rel.to_string_lossy(), kind == EntryKind::Dir) {
            prefix.pop();
            continue;
        }
        let target = if kind == EntryKind::Symlink {
            let t = rustix::fs::readlinkat(dir, &name, Vec::new()).map_err(|e| WalkError::Io {
                op: "read link",
                path: rel.to_string_lossy().into_owned(),
                source: e.into(),
            })?;
            Some(OsStr::from_bytes(t.as_bytes()).to_os_string())
        } else {
            None
        };
        let entry = WalkEntry::from_stat(rel, &st, target);
        visit(&entry, dir.as_fd(), &name)?;
        if kind == EntryKind::Dir {
            let sub = open_subdir(dir, &name).map_err(|e| WalkError::Io {
                op: "open directory",
                path: entry.rel_path.clone(),
                source: e.into(),
            })?;
            walk_fd(&sub, prefix, exclude, visit)?;
        }
        prefix.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn walk_is_sorted_preorder_and_filters() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in ["b/2", "b/1", "a", "c/skip/x", "c/keep", ".dot"] {
            let p = r.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        std::os::unix::fs::symlink("/etc", r.join("l")).unwrap();
        let mut seen = Vec::new();
        walk(r, "/", &|p, is_dir| is_dir && p == "c/skip", &mut |e| {
            seen.push(format!("{}:{:?}", e.rel_path, e.kind));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ".dot:File",
                "a:File",
                "b:Dir",
                "b/1:File",
                "b/2:File",
                "c:Dir",
                "c/keep:File",
                "l:Symlink"
            ]
        );
        let mut sub = Vec::new();
        walk(r, "b", &|_, _| false, &mut |e| {
            sub.push(e.rel_path.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(sub, ["1", "2"]);
        assert!(matches!(
            walk(r, "missing", &|_, _| false, &mut |_| Ok(())),
            Err(WalkError::NotFound { .. })
        ));
        // Walking through the symlink stays inside the root (`/etc` of the root does not exist).
        assert!(walk(r, "l", &|_, _| false, &mut |_| Ok(())).is_err());
        let mut contents = Vec::new();
        walk_with_files(r, "b", &|_, _| false, &mut |e, f| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f.open().unwrap(), &mut s).unwrap();
            contents.push(format!("{}={s}", e.rel_path));
            Ok(())
        })
        .unwrap();
        assert_eq!(contents, ["1=x", "2=x"]);
    }
}
