//! The state directory: everything rbuild keeps between builds.
//!
//! ```text
//! <root>/content/      blobs by digest (rbuild_oci::store)
//! <root>/snapshots/    layer directories (rbuild_snapshot)
//! <root>/metadata.db   cache keys, snapshots, memoized layers, resolved images
//! <root>/cache-mounts/ RUN --mount=type=cache directories
//! <root>/tmp/          scratch space; emptied on open
//! ```
//! Writes go to a temporary name and are renamed into place, so a killed
//! build leaves nothing half-visible.

use crate::db::{Db, DbError};
use rbuild_oci::store::ContentStore;
use rbuild_snapshot::Snapshotter;
use std::path::{Path, PathBuf};

/// Errors opening a state dir.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("content store in {path}: {message}")]
    Content { path: String, message: String },
    #[error("snapshots in {path}: {message}")]
    Snapshots { path: String, message: String },
}

/// An open state dir.
pub struct State {
    pub root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    pub db: Db,
    pub cache_mounts: PathBuf,
    pub tmp: PathBuf,
}

/// Opens the snapshot store with the backend the state dir was created
/// with (recorded in `<root>/snapshotter`): overlayfs when the kernel allows
/// it here, else the copy backend. `RBUILD_SNAPSHOTTER=copy` forces the copy
/// backend for a new state dir (for tests and odd filesystems).
fn open_snapshots(root: &Path, dir: &Path) -> Result<Snapshotter, rbuild_snapshot::SnapshotError> {
    use rbuild_snapshot::Backend;
    let record = root.join("snapshotter");
    match std::fs::read_to_string(&record).ok().as_deref().map(str::trim) {
        Some("overlay") => return Snapshotter::open_with(dir, Backend::Overlay),
        Some(other) if other.starts_with("copy") => {
            let reason = other.strip_prefix("copy").unwrap_or_default().trim().to_string();
            return Snapshotter::open_with(dir, Backend::Copy { reason });
        }
        _ => {}
    }
    let snapshots = if std::env::var("RBUILD_SNAPSHOTTER").as_deref() == Ok("copy") {
        Snapshotter::open_with(dir, Backend::Copy { reason: "RBUILD_SNAPSHOTTER=copy".into() })?
    } else {
        Snapshotter::open_auto(dir)?
    };
    let text = match snapshots.backend() {
        Backend::Overlay => "overlay".to_string(),
        Backend::Copy { reason } => format!("copy {reason}"),
    };
    // Written once, through a temp name; a concurrent first open writes the
    // same answer.
    let tmp = root.join(format!(".snapshotter.{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &record);
    }
    Ok(snapshots)
}

impl State {
    /// Opens (creating on first use) the state dir at `root`.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| StateError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let content_dir = root.join("content");
        let content = ContentStore::open(&content_dir).map_err(|e| StateError::Content {
            path: content_dir.display().to_string(),
            message: crate::chain(&e),
        })?;
        let snap_dir = root.join("snapshots");
        let snapshots = open_snapshots(root, &snap_dir).map_err(|e| StateError::Snapshots {
            path: snap_dir.display().to_string(),
            message: crate::chain(&e),
        })?;
        let db = Db::open(&root.join("metadata.db"))?;
        let cache_mounts = root.join("cache-mounts");
        std::fs::create_dir_all(&cache_mounts).map_err(io(&cache_mounts))?;
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Ok(State { root: root.to_path_buf(), content, snapshots, db, cache_mounts, tmp })
    }

    /// A scratch dir for this process under `tmp/`; dirs of processes that
    /// no longer exist are removed first (a killed build leaves no litter
    /// behind for long).
    pub fn process_tmp(&self) -> std::io::Result<PathBuf> {
        if let Ok(entries) = std::fs::read_dir(&self.tmp) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix('p')).and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = self.tmp.join(format!("p{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The default state dir: `/var/lib/rbuild` for root, else
    /// `$XDG_DATA_HOME/rbuild` (or `~/.local/share/rbuild`).
    pub fn default_root(real_uid: u32) -> PathBuf {
        if real_uid == 0 {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("rbuild");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/share/rbuild")
    }
}
