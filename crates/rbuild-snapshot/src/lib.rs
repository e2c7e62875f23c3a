//! Layer snapshots on disk and overlay stacking.
//!
//! A snapshot is a directory tree (`<root>/<id>/fs`) plus the id of its
//! parent (`<root>/<id>/parent`). Mounting a snapshot for a RUN means an
//! overlay whose lower directories are the `fs` dirs of the parent chain and
//! whose upper directory is a fresh, empty `fs`: whatever the RUN changes
//! lands in that upper directory, which *is* the layer diff (whiteouts as
//! 0:0 character devices, opaque directories marked `user.overlay.opaque`).
//!
//! Life cycle (the model of containerd's snapshotter, reduced):
//! - [`Snapshotter::prepare`] creates an in-progress snapshot in a hidden
//!   `.prepare-*` directory and returns an [`Active`] with its upper/work
//!   dirs and the parent's lowers. Importing a pulled layer is the same call
//!   with no parent: the caller unpacks into `upper`.
//! - [`Snapshotter::commit`] makes it visible under a new id with one
//!   `rename`, so a crash never leaves a half-written snapshot visible.
//!   Dropping an `Active` without committing removes it.
//! - In-progress directories hold an `flock` for their lifetime; `open`
//!   removes those whose lock is free (their owner died), and never touches
//!   those of another live build sharing the state dir.

pub mod mount;
pub mod native;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use mount::{MountError, MountGuard, mount_overlay};

/// How deep a parent chain may be; overlayfs itself stops at 500 layers.
pub const MAX_DEPTH: usize = 500;

const PREPARE_PREFIX: &str = ".prepare-";
const REMOVE_PREFIX: &str = ".remove-";

/// Errors of the snapshotter, each naming the snapshot or path involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot id `{0}` is not valid (expected 1-128 characters of [A-Za-z0-9_.-], not starting with `.`)"
    )]
    InvalidId(String),
    #[error("snapshot `{0}`: not found")]
    NotFound(String),
    #[error("snapshot `{0}`: has children (remove them first)")]
    HasChildren(String),
    #[error("snapshot `{id}`: parent chain is longer than {MAX_DEPTH} or loops")]
    ChainTooDeep { id: String },
    #[error("snapshot store `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SnapshotError>;

fn ioe(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An opaque snapshot identifier. Validated so that it can never name a path
/// outside the store (`..`, `/`) or a hidden in-progress directory.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    /// Validates an id read from elsewhere (a database, a file).
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Ok(Self(s))
        } else {
            Err(SnapshotError::InvalidId(s))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = SnapshotError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An in-progress snapshot: mount `lowers` (topmost first) with `upper` and
/// `work` as an overlay, run something, then [`Snapshotter::commit`] it.
/// Dropped without commit, it is removed.
#[derive(Debug)]
pub struct Active {
    /// The writable directory; after the run it holds the layer diff.
    pub upper: PathBuf,
    /// Overlayfs work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// The parent chain's `fs` directories, topmost first (empty without parent).
    pub lowers: Vec<PathBuf>,
    dir: PathBuf,
    parent: Option<SnapshotId>,
    lock: Option<File>,
    full_tree: bool,
}

impl Active {
    /// True with the copy backend: `upper` holds the whole tree (use it as
    /// a plain directory rootfs; `lowers` is empty), not just the changes.
    pub fn is_full_tree(&self) -> bool {
        self.full_tree
    }

    /// The parent this snapshot was prepared on.
    pub fn parent(&self) -> Option<&SnapshotId> {
        self.parent.as_ref()
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.lock.is_some()
            && let Err(e) = remove_tree(&self.dir)
        {
            tracing::debug!(dir = %self.dir.display(), error = %e, "removing aborted snapshot");
        }
    }
}

/// How snapshots are stacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Each snapshot holds only its own layer; a view is an overlay of the
    /// parent chain. The upper dir is the diff.
    Overlay,
    /// Overlayfs is unavailable (`reason`): each snapshot holds its full
    /// tree, copied from its parent at prepare time; the diff is computed
    /// at commit and kept in `<id>/diff` in upper-dir format.
    Copy { reason: String },
}

/// The snapshot store rooted at one directory (`<state>/snapshots`).
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
    backend: Backend,
}

impl Snapshotter {
    /// Opens (creating if needed) the store at `root` and removes in-progress
    /// snapshots left by builds that died.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, Backend::Overlay)
    }

    /// Like [`Snapshotter::open`], but checks once whether overlayfs can be
    /// mounted here and falls back to the copy backend if not (see
    /// [`Snapshotter::backend`] to report it). Needs the process to be root
    /// in its mount namespace, as after `enter_build_namespace`.
    pub fn open_auto(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).map_err(ioe(root))?;
        let backend = match mount::probe_overlay(root) {
            Ok(()) => Backend::Overlay,
            Err(e) => Backend::Copy {
                reason: e.to_string(),
            },
        };
        Self::open_with(root, backend)
    }

    /// Opens the store with an explicit backend. A store must always be
    /// opened with the backend it was created with.
    pub fn open_with(root: &Path, backend: Backend) -> Result<Self> {
        fs::create_dir_all(root).map_err(ioe(root))?;
        let s = Self {
            root: root.to_path_buf(),
            backend,
        };
        s.clean_stale()?;
        Ok(s)
    }

    /// The backend in use (report a [`Backend::Copy`] fallback to the user).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    fn is_copy(&self) -> bool {
        matches!(self.backend, Backend::Copy { .. })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_stale(&self) -> Result<()> {
        for entry in fs::read_dir(&self.root).map_err(ioe(&self.root))? {
            let entry = entry.map_err(ioe(&self.root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name.starts_with(REMOVE_PREFIX) {
                remove_tree(&path).map_err(ioe(&path))?;
            } else if name.starts_with(PREPARE_PREFIX) {
                let lock_path = path.join("lock");
                let stale = match File::open(&lock_path) {
                    Ok(f) => {
                        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                            .is_ok()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(ioe(&lock_path)(e)),
                };
                if stale {
                    tracing::debug!(dir = %path.display(), "removing stale in-progress snapshot");
                    remove_tree(&path).map_err(ioe(&path))?;
                }
            }
        }
        Ok(())
    }

    fn dir_of(&self, id: &SnapshotId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// The directory tree of a committed snapshot (its own layer only).
    pub fn fs_dir(&self, id: &SnapshotId) -> Result<PathBuf> {
        let fs_dir = self.dir_of(id).join("fs");
        match fs::symlink_metadata(&fs_dir) {
            Ok(m) if m.is_dir() => Ok(fs_dir),
            Ok(_) => Err(SnapshotError::NotFound(id.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SnapshotError::NotFound(id.to_string()))
            }
            Err(e) => Err(ioe(&fs_dir)(e)),
        }
    }

    /// Whether a committed snapshot exists.
    pub fn exists(&self, id: &SnapshotId) -> bool {
        self.fs_dir(id).is_ok()
    }

    /// The parent of a committed snapshot.
    pub fn parent(&self, id: &SnapshotId) -> Result<Option<SnapshotId>> {
        let dir = self.dir_of(id);
        if !self.exists(id) {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        read_parent(&dir)
    }

    /// Starts a new snapshot on top of `parent` (or empty).
    pub fn prepare(&self, parent: Option<&SnapshotId>) -> Result<Active> {
        let lowers = match parent {
            Some(p) if !self.is_copy() => self.lowers(p)?,
            Some(p) => {
                self.fs_dir(p)?;
                Vec::new()
            }
            None => Vec::new(),
        };
        if lowers.len() >= MAX_DEPTH {
            return Err(SnapshotError::ChainTooDeep {
                id: parent.map(ToString::to_string).unwrap_or_default(),
            });
        }
        let dir = self
            .root
            .join(format!("{PREPARE_PREFIX}{}", random_hex(12)));
        fs::create_dir(&dir).map_err(ioe(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(ioe(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| ioe(&lock_path)(std::io::Error::from_raw_os_error(e.raw_os_error())))?;
        let mut active = Active {
            upper: dir.join("fs"),
            work: dir.join("work"),
            lowers,
            dir,
            parent: parent.cloned(),
            lock: Some(lock),
            full_tree: false,
        };
        for d in [&active.upper, &active.work] {
            fs::create_dir(d).map_err(ioe(d))?;
        }
        // Layer roots are 0755 regardless of umask, like an unpacked image.
        set_mode(&active.upper, 0o755)?;
        if let Some(p) = parent {
            let pfile = active.dir.join("parent");
            write_file(&pfile, p.as_str().as_bytes())?;
            if self.is_copy() {
                let src = self.fs_dir(p)?;
                native::copy_tree(&src, &active.upper).map_err(ioe(&src))?;
            }
        }
        active.full_tree = self.is_copy();
        Ok(active)
    }

    /// Makes an in-progress snapshot visible under a new id (one rename).
    pub fn commit(&self, mut active: Active) -> Result<SnapshotId> {
        // The overlay work dir is scratch; it must not be kept.
        remove_tree(&active.work).map_err(ioe(&active.work))?;
        if self.is_copy()
            && let Some(p) = &active.parent
        {
            let diff = active.dir.join("diff");
            fs::create_dir(&diff).map_err(ioe(&diff))?;
            let parent_fs = self.fs_dir(p)?;
            native::diff_trees(&parent_fs, &active.upper, &diff).map_err(ioe(&diff))?;
        }
        let lock_path = active.dir.join("lock");
        fs::remove_file(&lock_path).map_err(ioe(&lock_path))?;
        loop {
            let id = SnapshotId(random_hex(16));
            let dest = self.dir_of(&id);
            match rename_noreplace(&active.dir, &dest) {
                Ok(()) => {
                    // Disarm the drop-removal; the lock fd closes here.
                    active.lock = None;
                    return Ok(id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ioe(&dest)(e)),
            }
        }
    }

    /// The snapshot's own changes in overlay upper-dir format (whiteouts as
    /// 0:0 character devices): what its layer tar is made from.
    pub fn diff_dir(&self, id: &SnapshotId) -> Result<PathBuf> {
        let fs_dir = self.fs_dir(id)?;
        let diff = self.dir_of(id).join("diff");
        if diff.is_dir() { Ok(diff) } else { Ok(fs_dir) }
    }

    /// The `fs` directories of `id` and its ancestors, topmost first: the
    /// lowerdirs of an overlay that shows the snapshot's full tree (with the
    /// copy backend, only the snapshot's own full tree).
    pub fn lowers(&self, id: &SnapshotId) -> Result<Vec<PathBuf>> {
        if self.is_copy() {
            return Ok(vec![self.fs_dir(id)?]);
        }
        let mut out = Vec::new();
        let mut cur = Some(id.clone());
        while let Some(c) = cur {
            if out.len() >= MAX_DEPTH {
                return Err(SnapshotError::ChainTooDeep { id: id.to_string() });
            }
            out.push(self.fs_dir(&c)?);
            cur = read_parent(&self.dir_of(&c))?;
        }
        Ok(out)
    }

    /// All committed snapshot ids.
    pub fn list(&self) -> Result<Vec<SnapshotId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(ioe(&self.root))? {
            let entry = entry.map_err(ioe(&self.root))?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(id) = SnapshotId::new(name)
                && self.exists(&id)
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes a committed snapshot. Refused while another snapshot has it
    /// as parent. The directory disappears from view atomically (renamed to a
    /// hidden name first), then its tree is deleted.
    pub fn remove(&self, id: &SnapshotId) -> Result<()> {
        if !self.exists(id) {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        for other in self.list()? {
            if other != *id && read_parent(&self.dir_of(&other))?.as_ref() == Some(id) {
                return Err(SnapshotError::HasChildren(id.to_string()));
            }
        }
        let src = self.dir_of(id);
        let hidden = self.root.join(format!("{REMOVE_PREFIX}{}", random_hex(12)));
        fs::rename(&src, &hidden).map_err(ioe(&src))?;
        remove_tree(&hidden).map_err(ioe(&hidden))
    }

    /// Disk usage of the snapshot's own layer in bytes (allocated blocks,
    /// hardlinked files counted once).
    pub fn usage(&self, id: &SnapshotId) -> Result<u64> {
        let dir = self.fs_dir(id)?;
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(ioe(&d))? {
                let entry = entry.map_err(ioe(&d))?;
                let path = entry.path();
                let m = fs::symlink_metadata(&path).map_err(ioe(&path))?;
                if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                    continue;
                }
                total += m.blocks() * 512;
                if m.is_dir() {
                    stack.push(path);
                }
            }
        }
        Ok(total)
    }
}

fn read_parent(dir: &Path) -> Result<Option<SnapshotId>> {
    let pfile = dir.join("parent");
    let f = match File::open(&pfile) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ioe(&pfile)(e)),
    };
    let mut s = String::new();
    f.take(256).read_to_string(&mut s).map_err(ioe(&pfile))?;
    SnapshotId::new(s.trim().to_string()).map(Some)
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(ioe(path))?;
    f.write_all(data).map_err(ioe(path))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ioe(path))
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
}

/// Removes a tree that may contain read-only directories (a layer made by a
/// RUN can hold `chmod 000` dirs): permissions are opened up as needed.
/// Symlinks are removed, never followed.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            // Likely a directory without write/search permission and no
            // CAP_DAC_OVERRIDE: make directories writable, retry once.
            make_dirs_writable(path);
            fs::remove_dir_all(path).map_err(|_| first)
        }
    }
}

fn make_dirs_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            make_dirs_writable(&e.path());
        }
    }
}

/// Random lowercase hex from the kernel's CSPRNG (ids must not collide
/// across processes sharing a store).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable `rest` slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        // getrandom does not fail for small requests once the pool is up;
        // fall back to time+pid rather than panic.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in rest.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
        filled = bytes;
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
