//! Content hash of exactly the files a copy selects: the context part of a
//! cache key.
//!
//! What counts, per selected entry: its kind, its path relative to the
//! selection, the permission bits (`mode & 0o7777`, so `chmod +x` changes the
//! key), a symlink's target, a device's numbers, a file's content and
//! xattrs. What does not: mtimes, atimes, and (unless asked) owners — the
//! context's uid/gid are replaced by `0:0` or `--chown` anyway. The source
//! strings and the matched names are hashed too, because they decide the
//! destination names.
//!
//! Files are hashed through a [`StatCache`] keyed by their full stat
//! identity, so a no-op rebuild stats files but reads none of them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use sha2::{Digest, Sha256};

use crate::copy::CopyError;
use crate::pattern::PatternError;
use crate::root::{Root, join, open_subdir};
use crate::walk::{EntryKind, WalkEntry, WalkError, walk_fd};

/// Errors from [`hash_selection`].
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot open root `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A bad `--exclude` or context-ignore pattern.
    #[error(transparent)]
    Exclude(#[from] rbuild_dockerfile::IgnoreError),
    /// A source is missing, a wildcard matched nothing, …
    #[error(transparent)]
    Select(#[from] CopyError),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("{op} `{path}`")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Which files an operation selects (the part of [`crate::CopyOptions`]
/// that decides what is read).
#[derive(Debug, Clone, Default)]
pub struct SelectionOptions {
    pub exclude: Vec<String>,
    pub follow_symlinks: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    /// The context's `.dockerignore` (see [`crate::CopyOptions::context_ignore`]).
    pub context_ignore: Vec<String>,
    /// `--parents` (changes what `**` matches).
    pub parents: bool,
    /// Include uid/gid (for sources whose owners are preserved, e.g. a copy
    /// from a stage without `--chown`). Off for contexts.
    pub include_owner: bool,
}

impl SelectionOptions {
    /// What a Dockerfile `COPY` from the context selects.
    pub fn dockerfile() -> Self {
        SelectionOptions {
            follow_symlinks: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            ..Default::default()
        }
    }
}

impl From<&crate::CopyOptions> for SelectionOptions {
    /// The selection a copy with these options reads. Owners count only when
    /// the copy preserves them (no `--chown`).
    fn from(o: &crate::CopyOptions) -> Self {
        SelectionOptions {
            exclude: o.exclude.clone(),
            context_ignore: o.context_ignore.clone(),
            follow_symlinks: o.follow_symlinks,
            allow_wildcard: o.allow_wildcard,
            allow_empty_wildcard: o.allow_empty_wildcard,
            parents: o.parents,
            include_owner: o.chown.is_none(),
        }
    }
}

/// Identity of a file version: if all of these are equal, the content is
/// assumed unchanged (`ctime` catches writes that restore the mtime).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatKey {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub dev: u64,
    pub mode: u32,
}

/// A cache of file digests by [`StatKey`]. The solver keeps a persistent one
/// (its database); [`MemoryStatCache`] serves tests and single builds.
pub trait StatCache {
    fn get(&self, key: &StatKey) -> Option<[u8; 32]>;
    fn put(&self, key: StatKey, hash: [u8; 32]);
}

/// An in-memory [`StatCache`] for tests and one-off hashing; the engine
/// persists its stat cache in the metadata database instead.
#[derive(Debug, Default)]
pub struct MemoryStatCache {
    map: Mutex<HashMap<StatKey, [u8; 32]>>,
}

impl MemoryStatCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StatCache for MemoryStatCache {
    fn get(&self, key: &StatKey) -> Option<[u8; 32]> {
        self.map.lock().ok()?.get(key).copied()
    }

    fn put(&self, key: StatKey, hash: [u8; 32]) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, hash);
        }
    }
}

/// Hash what `sources` select inside `src_root`; returns `sha256:<hex>`.
pub fn hash_selection(
    src_root: &Path,
    sources: &[String],
    opts: &SelectionOptions,
    cache: Option<&dyn StatCache>,
) -> Result<String, HashError> {
    let root = Root::open(src_root).map_err(|source| HashError::OpenRoot {
        path: src_root.to_path_buf(),
        source,
    })?;
    let filter = crate::select::Filter::new(&opts.exclude, &opts.context_ignore)?;
    let mut h = Hasher {
        sha: Sha256::new(),
        cache,
        root: &root,
        include_owner: opts.include_owner,
        buf: Vec::new(),
        last_dir: None,
    };
    h.sha.update(b"rbuild-selection-v1\0");
    for raw in sources {
        h.sha.update(b"S");
        h.sha.update(raw.as_bytes());
        h.sha.update(b"\0");
        let one = std::slice::from_ref(raw);
        let spec = crate::select::SelectSpec {
            allow_wildcard: opts.allow_wildcard,
            allow_empty: opts.allow_empty_wildcard,
            follow: opts.follow_symlinks,
            parents: opts.parents,
            filter: &filter,
        };
        let selected = crate::select::expand_sources(&root, one, &spec)?;
        for sel in selected {
            h.sha.update(b"M");
            h.sha.update(join(&sel.named).as_os_str().as_bytes());
            h.sha.update(b"\0");
            h.selected(&sel.canon, &filter)?;
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.sha.finalize())))
}

struct Hasher<'a> {
    sha: Sha256,
    cache: Option<&'a dyn StatCache>,
    root: &'a Root,
    include_owner: bool,
    /// The read buffer, allocated once per hash: a fresh 128 KiB buffer
    /// per file was an `mmap` + `munmap` (and page faults) per file.
    buf: Vec<u8>,
    /// The parent directory of the last selected source, kept open: the
    /// matches of a wildcard mostly share it.
    last_dir: Option<(Vec<OsString>, Rc<OwnedFd>)>,
}

/// Size of [`Hasher::buf`].
const READ_BUF: usize = 128 * 1024;

impl Hasher<'_> {
    fn selected(
        &mut self,
        canon: &[OsString],
        filter: &crate::select::Filter,
    ) -> Result<(), HashError> {
        let shown = join(canon).to_string_lossy().into_owned();
        let io = |op| {
            let shown = shown.clone();
            move |source: io::Error| HashError::Io {
                op,
                path: shown,
                source,
            }
        };
        let (parent, name) = match canon.split_last() {
            Some((n, p)) => (p, n.clone()),
            None => (&canon[..0], OsString::from(".")),
        };
        let pfd = match &self.last_dir {
            Some((path, fd)) if path == parent => fd.clone(),
            _ => {
                let fd = Rc::new(self.root.open_dir(parent).map_err(io("open directory"))?);
                self.last_dir = Some((parent.to_vec(), fd.clone()));
                fd
            }
        };
        let st = rustix::fs::statat(&pfd, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io("stat")(e.into()))?;
        let target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            let t = rustix::fs::readlinkat(&pfd, &name, Vec::new())
                .map_err(|e| io("read link")(e.into()))?;
            Some(OsStr::from_bytes(t.as_bytes()).to_os_string())
        } else {
            None
        };
        let top = WalkEntry::from_stat(OsString::new(), &st, target);
        let base = self.root_path_of(canon);
        self.record(&top, pfd.as_fd(), &name, &base)?;
        if top.kind == EntryKind::Dir {
            let dfd = open_subdir(&pfd, &name).map_err(|e| io("open directory")(e.into()))?;
            let exclude = |p: &str, is_dir: bool| filter.skip(&shown, p, is_dir);
            let mut err = None;
            let mut visit =
                |e: &WalkEntry, dir: BorrowedFd<'_>, n: &OsStr| -> Result<(), WalkError> {
                    if let Err(x) = self.record(e, dir, n, &base) {
                        err = Some(x);
                        return Err(WalkError::Stopped {
                            reason: "hash failed".into(),
                        });
                    }
                    Ok(())
                };
            let res = walk_fd(&dfd, &mut Vec::new(), &exclude, &mut visit);
            if let Some(e) = err {
                return Err(e);
            }
            res?;
        }
        Ok(())
    }

    fn root_path_of(&self, canon: &[OsString]) -> PathBuf {
        let mut p = self.root.path().to_path_buf();
        for c in canon {
            p.push(c);
        }
        p
    }

    /// Feed one entry's normalised metadata (and content digest) to the hash.
    fn record(
        &mut self,
        e: &WalkEntry,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        base: &Path,
    ) -> Result<(), HashError> {
        let tag: &[u8] = match e.kind {
            EntryKind::File => b"f",
            EntryKind::Dir => b"d",
            EntryKind::Symlink => b"l",
            EntryKind::CharDevice => b"c",
            EntryKind::BlockDevice => b"b",
            EntryKind::Fifo => b"p",
            EntryKind::Socket => return Ok(()), // never copied
        };
        self.sha.update(tag);
        self.sha.update(e.rel_bytes());
        self.sha.update(b"\0");
        let perm = if e.kind == EntryKind::Symlink {
            0o777
        } else {
            e.perm
        };
        self.sha.update(perm.to_le_bytes());
        if self.include_owner {
            self.sha.update(e.uid.to_le_bytes());
            self.sha.update(e.gid.to_le_bytes());
        }
        match e.kind {
            EntryKind::File => {
                let d = self.file_digest(e, dir, name, base)?;
                self.sha.update(d);
            }
            EntryKind::Symlink => {
                if let Some(t) = &e.link_target {
                    self.sha.update(t.as_bytes());
                }
                self.sha.update(b"\0");
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => self.sha.update(e.rdev.to_le_bytes()),
            _ => {}
        }
        Ok(())
    }

    fn file_digest(
        &mut self,
        e: &WalkEntry,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        base: &Path,
    ) -> Result<[u8; 32], HashError> {
        let path = if e.rel_path.is_empty() {
            base.to_path_buf()
        } else {
            base.join(OsStr::from_bytes(e.rel_bytes()))
        };
        let key = StatKey {
            path,
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            inode: e.ino,
            dev: e.dev,
            mode: e.perm,
        };
        if let Some(d) = self.cache.and_then(|c| c.get(&key)) {
            return Ok(d);
        }
        let shown = key.path.to_string_lossy().into_owned();
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HashError::Io {
            op: "open",
            path: shown.clone(),
            source: e.into(),
        })?;
        let st: Stat = rustix::fs::fstat(&fd).map_err(|e| HashError::Io {
            op: "stat",
            path: shown.clone(),
            source: e.into(),
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_ino != e.ino {
            return Err(HashError::Io {
                op: "file changed while hashing",
                path: shown,
                source: io::Error::from_raw_os_error(libc::ESTALE),
            });
        }
        let xattrs = crate::meta::read_xattrs(fd.as_fd()).map_err(|source| HashError::Io {
            op: "read xattrs",
            path: shown.clone(),
            source,
        })?;
        let mut content = Sha256::new();
        let mut f = std::fs::File::from(fd);
        if self.buf.len() < READ_BUF {
            self.buf.resize(READ_BUF, 0);
        }
        // Up to the size the open file has, as the copy does (it copies
        // `st_size` bytes): no extra `read` per file to see the end.
        let mut left = st.st_size as u64;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(READ_BUF);
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => break, // shrank under us
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(HashError::Io {
                        op: "read",
                        path: shown,
                        source,
                    });
                }
            };
            content.update(&self.buf[..n]);
            left -= n as u64;
        }
        let mut d = Sha256::new();
        d.update(content.finalize());
        for (k, v) in &xattrs {
            d.update((k.len() as u64).to_le_bytes());
            d.update(k);
            d.update((v.len() as u64).to_le_bytes());
            d.update(v);
        }
        let digest: [u8; 32] = d.finalize().into();
        if let Some(c) = self.cache {
            c.put(key, digest);
        }
        Ok(digest)
    }
}
