//! `mkdir`, `mkfile` and `rm` file actions inside a root (BuildKit's
//! `FileActionMkDir`, `FileActionMkFile`, `FileActionRm`), used for WORKDIR,
//! heredoc files and cleanups. Paths resolve inside the root like every other
//! operation of this crate.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};

use crate::pattern::PatternError;
use crate::root::{Root, clean, join, open_subdir};

/// Errors from [`mkdir`], [`mkfile`] and [`rm`].
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("cannot open root `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}`: the operation needs a path below the root")]
    EmptyPath { path: String },
    #[error("`{path}` not found")]
    NotFound { path: String },
    #[error("`{path}` exists and is not a directory")]
    NotADirectory { path: String },
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("{op} `{path}`")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &str) -> impl FnOnce(io::Error) -> OpError + use<> {
    let path = path.to_string();
    move |source| OpError::Io { op, path, source }
}

fn errno(op: &'static str, path: &str) -> impl FnOnce(rustix::io::Errno) -> OpError + use<> {
    let path = path.to_string();
    move |e| OpError::Io {
        op,
        path,
        source: e.into(),
    }
}

fn open_root(root: &Path) -> Result<Root, OpError> {
    Root::open(root).map_err(|source| OpError::OpenRoot {
        path: root.to_path_buf(),
        source,
    })
}

/// Set owner (when given), exact mode and times (when given) on an open fd.
fn finish(
    fd: &OwnedFd,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
    ts: Option<SystemTime>,
) -> io::Result<()> {
    if let Some((u, g)) = owner {
        rustix::fs::fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))?;
    }
    if let Some(m) = mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(m & 0o7777))?;
    }
    if let Some(t) = ts {
        rustix::fs::futimens(fd, &crate::meta::timestamps(t))?;
    }
    Ok(())
}

/// Create directory `path` with `mode`. With `parents`, missing parents are
/// created too (same mode, owner and time); an existing directory is fine
/// either way, as in BuildKit.
pub fn mkdir(
    root: &Path,
    path: &str,
    mode: u32,
    parents: bool,
    owner: Option<(u32, u32)>,
    timestamp: Option<SystemTime>,
) -> Result<(), OpError> {
    let root = open_root(root)?;
    let (canon, _) = root
        .canonicalize(OsStr::new(path), true)
        .map_err(io_err("resolve", path))?;
    let Some((name, parent)) = canon.split_last() else {
        return Ok(()); // the root exists
    };
    let pfd = if parents {
        let mut on_create =
            |dir: std::os::fd::BorrowedFd<'_>, n: &OsStr, _: usize| -> io::Result<()> {
                let fd = open_subdir(dir, n)?;
                finish(&fd, Some(mode), owner, timestamp)
            };
        root.mkdir_all(parent, mode, &mut on_create)
            .map_err(io_err("create directory", path))?
    } else {
        root.open_dir(parent).map_err(|_| OpError::NotFound {
            path: join(parent).to_string_lossy().into_owned(),
        })?
    };
    match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(mode & 0o7777)) {
        Ok(()) => {
            let fd = open_subdir(&pfd, name).map_err(|e| io_err("open", path)(e.into()))?;
            finish(&fd, Some(mode), owner, timestamp).map_err(io_err("set metadata", path))
        }
        Err(rustix::io::Errno::EXIST) => {
            let st = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno("stat", path))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory || !parents {
                Ok(())
            } else {
                Err(OpError::NotADirectory {
                    path: path.to_string(),
                })
            }
        }
        Err(e) => Err(errno("create directory", path)(e)),
    }
}

/// Write `data` to file `path` (created or truncated) with exactly `mode`.
/// A final symlink is followed inside the root; the parent must exist.
pub fn mkfile(
    root: &Path,
    path: &str,
    mode: u32,
    data: &[u8],
    owner: Option<(u32, u32)>,
    timestamp: Option<SystemTime>,
) -> Result<(), OpError> {
    let root = open_root(root)?;
    let (canon, _) = root
        .canonicalize(OsStr::new(path), true)
        .map_err(io_err("resolve", path))?;
    let Some((name, parent)) = canon.split_last() else {
        return Err(OpError::EmptyPath {
            path: path.to_string(),
        });
    };
    let pfd = root.open_dir(parent).map_err(|_| OpError::NotFound {
        path: join(parent).to_string_lossy().into_owned(),
    })?;
    let fd = rustix::fs::openat(
        &pfd,
        name,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(errno("create", path))?;
    let st = rustix::fs::fstat(&fd).map_err(errno("stat", path))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(OpError::Io {
            op: "write to non-regular file",
            path: path.to_string(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    let mut f = std::fs::File::from(fd);
    f.write_all(data).map_err(io_err("write", path))?;
    let fd = OwnedFd::from(f);
    finish(&fd, Some(mode), owner, timestamp).map_err(io_err("set metadata", path))
}

/// Remove `path` (recursively for directories). The last component is never
/// followed: removing a symlink removes the link. With `allow_wildcard`,
/// every match of the pattern is removed.
pub fn rm(
    root: &Path,
    path: &str,
    allow_not_found: bool,
    allow_wildcard: bool,
) -> Result<(), OpError> {
    let root = open_root(root)?;
    let targets: Vec<Vec<OsString>> = if allow_wildcard && crate::pattern::has_wildcard(path) {
        let filter = crate::select::Filter::default();
        let spec = crate::select::SelectSpec {
            allow_wildcard: true,
            allow_empty: true,
            follow: false,
            parents: false,
            filter: &filter,
        };
        let sel =
            crate::select::expand_sources(&root, &[path.to_string()], &spec).map_err(|e| {
                OpError::Io {
                    op: "expand",
                    path: path.to_string(),
                    source: io::Error::other(e.to_string()),
                }
            })?;
        sel.into_iter().map(|s| s.canon).collect()
    } else {
        let comps = clean(OsStr::new(path));
        if comps.is_empty() {
            return Err(OpError::EmptyPath {
                path: path.to_string(),
            });
        }
        let (canon, _) = root
            .canonicalize(OsStr::new(path), false)
            .map_err(io_err("resolve", path))?;
        vec![canon]
    };
    for canon in targets {
        let Some((name, parent)) = canon.split_last() else {
            return Err(OpError::EmptyPath {
                path: path.to_string(),
            });
        };
        let pfd = match root.open_dir(parent) {
            Ok(fd) => fd,
            Err(_) if allow_not_found => continue,
            Err(_) => {
                return Err(OpError::NotFound {
                    path: path.to_string(),
                });
            }
        };
        match remove_all(&pfd, name) {
            Ok(true) => {}
            Ok(false) if allow_not_found => {}
            Ok(false) => {
                return Err(OpError::NotFound {
                    path: path.to_string(),
                });
            }
            Err(e) => {
                return Err(OpError::Io {
                    op: "remove",
                    path: path.to_string(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Remove `dir/name` and everything below it without following symlinks.
/// Returns whether it existed.
pub(crate) fn remove_all(dir: &impl AsFd, name: &OsStr) -> io::Result<bool> {
    remove_all_at(dir, name, 0)
}

fn remove_all_at(dir: &impl AsFd, name: &OsStr, depth: usize) -> io::Result<bool> {
    if depth > crate::MAX_DEPTH {
        return Err(io::Error::other(format!(
            "nested more than {} directories deep",
            crate::MAX_DEPTH
        )));
    }
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        return Ok(true);
    }
    let sub = open_subdir(dir, name)?;
    for child in crate::copy::read_dir_sorted(&sub)? {
        remove_all_at(&sub, &child, depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn mkdir_table() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("etc")).unwrap();
        symlink("/etc", r.join("app")).unwrap();
        symlink("../../..", r.join("up")).unwrap();
        mkdir(r, "/a/b/c", 0o750, true, None, None).unwrap();
        assert_eq!(
            fs::metadata(r.join("a/b/c")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(fs::metadata(r.join("a")).unwrap().mode() & 0o7777, 0o750);
        mkdir(r, "/a/b/c", 0o700, true, None, None).unwrap(); // exists: fine
        assert!(matches!(
            mkdir(r, "/x/y", 0o755, false, None, None),
            Err(OpError::NotFound { .. })
        ));
        mkdir(r, "/app/inside", 0o755, false, None, None).unwrap();
        assert!(r.join("etc/inside").is_dir());
        mkdir(r, "/up/up/escaped", 0o755, true, None, None).unwrap();
        assert!(
            r.join("escaped").is_dir(),
            "`..` through a symlink stays in the root"
        );
        fs::write(r.join("file"), "x").unwrap();
        assert!(matches!(
            mkdir(r, "/file", 0o755, true, None, None),
            Err(OpError::NotADirectory { .. })
        ));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        mkdir(r, "/timed", 0o755, false, None, Some(t)).unwrap();
        assert_eq!(fs::metadata(r.join("timed")).unwrap().mtime(), 1_000_000);
    }

    #[test]
    fn mkfile_table() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("etc")).unwrap();
        symlink("/etc/target", r.join("link")).unwrap();
        mkfile(r, "/etc/hello", 0o640, b"hi", None, None).unwrap();
        assert_eq!(fs::read(r.join("etc/hello")).unwrap(), b"hi");
        assert_eq!(
            fs::metadata(r.join("etc/hello")).unwrap().mode() & 0o7777,
            0o640
        );
        mkfile(r, "/etc/hello", 0o600, b"x", None, None).unwrap();
        assert_eq!(fs::read(r.join("etc/hello")).unwrap(), b"x", "truncated");
        mkfile(r, "/link", 0o644, b"via link", None, None).unwrap();
        assert_eq!(fs::read(r.join("etc/target")).unwrap(), b"via link");
        assert!(matches!(
            mkfile(r, "/nodir/f", 0o644, b"", None, None),
            Err(OpError::NotFound { .. })
        ));
        assert!(mkfile(r, "/", 0o644, b"", None, None).is_err());
        nix::unistd::mkfifo(
            &r.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(
            mkfile(r, "/fifo", 0o644, b"x", None, None).is_err(),
            "a FIFO is refused, not a hang"
        );
    }

    #[test]
    fn rm_table() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "x").unwrap();
        fs::create_dir_all(r.join("dir/sub")).unwrap();
        fs::write(r.join("dir/sub/f"), "x").unwrap();
        fs::write(r.join("a.log"), "x").unwrap();
        fs::write(r.join("b.log"), "x").unwrap();
        symlink(outside.path(), r.join("out")).unwrap();
        rm(r, "/dir", false, false).unwrap();
        assert!(!r.join("dir").exists());
        assert!(matches!(
            rm(r, "/dir", false, false),
            Err(OpError::NotFound { .. })
        ));
        rm(r, "/dir", true, false).unwrap();
        rm(r, "/*.log", false, true).unwrap();
        assert!(!r.join("a.log").exists() && !r.join("b.log").exists());
        rm(r, "/out", false, false).unwrap();
        assert!(
            outside.path().join("precious").exists(),
            "symlink removed, not its target"
        );
        assert!(fs::symlink_metadata(r.join("out")).is_err());
        assert!(matches!(
            rm(r, "/", false, false),
            Err(OpError::EmptyPath { .. })
        ));
        assert!(matches!(
            rm(r, "/../..", false, false),
            Err(OpError::EmptyPath { .. })
        ));
    }
}
