//! Disk usage (`rbuild du`), prune (`rbuild prune`) and automatic GC to a
//! cap, over one state dir that other builds may be using at the same time.
//!
//! What is kept:
//! - whatever a live lease protects (see [`crate::lease`]): a running build
//!   loses nothing it looked up, made or downloaded;
//! - the blobs of local images (`rbuild images`): images are not cache, so
//!   even `--all` keeps them; `rbuild rmi` first, then prune, frees them;
//! - without `--all`: the snapshots whose layers local images use, the
//!   manifests and configs (not layers) of resolved base-image names, and cache records
//!   used within the age limit (`--filter until=`, 48 hours by default as in
//!   BuildKit, no limit when `--keep-storage` is given);
//! - cache mounts unless `--all`, and any cache mount a RUN holds.
//!
//! Everything else goes, least recently used first when there is a cap
//! (`--keep-storage`, or the config's `gc-keep-storage` after each build),
//! children before parents (see [`select`]).
//!
//! Snapshot sizes are measured here, not when a build records a snapshot:
//! each entry point first walks the snapshots recorded since the last
//! measurement ([`crate::db::UNSIZED`]) and stores their sizes, which stay
//! valid since a committed snapshot never changes.

mod select;
pub mod units;

use crate::lease::{LeaseError, LiveLease, live_leases};
use crate::{Engine, sid};
use rbuild_oci::digest::Digest;
use rbuild_oci::manifest::{self, Parsed};
use rusqlite::{Connection, OptionalExtension};
use rustix::fs::FlockOperation;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use units::{SizeUnits, UnitError, format_size, format_size_in, parse_duration, parse_size};

/// How long cache records stay without `--all`, `--filter until=` or a cap.
pub const DEFAULT_KEEP_DURATION: i64 = 48 * 3600;

/// Errors of du/prune.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("metadata database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("snapshots: {0}")]
    Snapshot(#[from] rbuild_snapshot::SnapshotError),
    #[error("content store: {0}")]
    Content(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GcError + '_ {
    move |source| GcError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A snapshot in `du` and prune reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotEntry {
    pub id: String,
    pub parent: Option<String>,
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    pub last_used: i64,
    /// The step that made it (`RUN …`, `layer sha256:…`).
    pub description: String,
    /// Cache keys that resolve to it.
    pub cache_keys: u64,
    /// Protected by a running build.
    pub in_use: bool,
    /// Known to the metadata DB (false: a directory left by a crash).
    pub recorded: bool,
}

/// A blob in `du` and prune reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlobEntry {
    pub digest: String,
    pub size: u64,
    /// Named by a snapshot's layer, a local image or a resolved base image.
    pub referenced: bool,
}

/// A `RUN --mount=type=cache` directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheMountEntry {
    /// The directory of the cache id (sha256 of the id).
    pub id: String,
    /// The instance (`0` is the shared one; more exist for `sharing=private`).
    pub instance: String,
    pub size: u64,
    /// A RUN holds it right now.
    pub in_use: bool,
}

/// What uses space in a state dir (`rbuild du`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Least recently used first.
    pub snapshots: Vec<SnapshotEntry>,
    pub blobs: Vec<BlobEntry>,
    pub cache_mounts: Vec<CacheMountEntry>,
    /// The metadata DB (cache records, stat cache) with its WAL.
    pub metadata: u64,
    pub total: u64,
    /// What `prune --all` would free now.
    pub reclaimable: u64,
}

/// What to prune.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Everything but what running builds use and local images' blobs,
    /// cache mounts included.
    pub all: bool,
    /// Only records unused for this many seconds (`--filter until=`).
    pub until: Option<i64>,
    /// Stop once usage is at most this many bytes (`--keep-storage`).
    pub keep_storage: Option<u64>,
    /// Whether this process's own lease protects what it used. The CLI's
    /// `prune` runs no build and sets it to false; automatic GC after a build
    /// sets it to true, so a daemon never collects under a running build.
    pub protect_own: bool,
}

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub snapshots: Vec<SnapshotEntry>,
    pub blobs: Vec<BlobEntry>,
    pub cache_mounts: Vec<CacheMountEntry>,
    /// Bytes freed.
    pub reclaimed: u64,
}

/// The state dir as GC sees it at one moment.
struct Inventory {
    snapshots: Vec<SnapshotEntry>,
    /// Snapshot id → its layer blobs.
    layers: HashMap<String, Vec<String>>,
    /// digest → (size, mtime).
    blobs: BTreeMap<String, (u64, i64)>,
    /// Blobs of local images (manifests, configs, layers).
    local_image_blobs: BTreeSet<String>,
    /// Manifests and configs of resolved base-image names.
    resolved_blobs: BTreeSet<String>,
    live: Vec<LiveLease>,
}

/// Disk facts gathered before the transaction (walks can be slow).
struct DiskFacts {
    /// id → (parent, mtime).
    snapshots: BTreeMap<String, (Option<String>, i64)>,
    blobs: BTreeMap<String, (u64, i64)>,
}

fn mtime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.mtime())
        .unwrap_or(0)
}

impl Engine {
    fn disk_facts(&self) -> Result<DiskFacts, GcError> {
        let snaps = &self.state.snapshots;
        let mut snapshots = BTreeMap::new();
        for id in snaps.list()? {
            let parent = match snaps.parent(&id) {
                Ok(p) => p.map(|p| p.to_string()),
                Err(rbuild_snapshot::SnapshotError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let at = mtime(&snaps.root().join(id.as_str()));
            snapshots.insert(id.to_string(), (parent, at));
        }
        let content = &self.state.content;
        let mut blobs = BTreeMap::new();
        for (d, size) in content
            .list()
            .map_err(|e| GcError::Content(crate::chain(&e)))?
        {
            let at = mtime(&content.path(&d));
            blobs.insert(d.to_string(), (size, at));
        }
        Ok(DiskFacts { snapshots, blobs })
    }

    /// Reads the DB side of the inventory inside the caller's transaction
    /// and merges it with what is on disk.
    fn inventory(&self, conn: &Connection, disk: DiskFacts) -> Result<Inventory, GcError> {
        let live = live_leases(&self.state.root, conn)?;
        let mut keys: HashMap<String, u64> = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT snapshot, COUNT(*) FROM cache GROUP BY snapshot")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (s, n) = row?;
                keys.insert(s, n as u64);
            }
        }
        let mut layers: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT snapshot, digest FROM layers")?;
            for row in
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            {
                let (s, d) = row?;
                layers.entry(s).or_default().push(d);
            }
        }
        let since = live.iter().map(|l| l.since).min();
        let leased = |t: i64| since.is_some_and(|s| t >= s);
        let mut snapshots = Vec::new();
        let mut late_sizes = Vec::new();
        let mut on_disk = disk.snapshots;
        {
            let mut stmt = conn.prepare(
                "SELECT id, parent, size, created, last_used, description FROM snapshots ORDER BY last_used, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            for row in rows {
                let (id, db_parent, size, created, last_used, description) = row?;
                let disk_entry = on_disk.remove(&id);
                // Committed after the disk listing: it exists, and is new.
                let exists =
                    disk_entry.is_some() || sid(&id).is_ok_and(|s| self.state.snapshots.exists(&s));
                let parent = disk_entry.and_then(|(p, _)| p).or(db_parent);
                let size = if !exists {
                    0
                } else if let Ok(known) = u64::try_from(size) {
                    known
                } else {
                    // Recorded after `measure_unsized` ran (rare): walk it
                    // now, inside the transaction.
                    let measured = self.measure(&id);
                    if let Some(n) = measured {
                        late_sizes.push((id.clone(), n));
                    }
                    measured.unwrap_or(0)
                };
                snapshots.push(SnapshotEntry {
                    cache_keys: keys.get(&id).copied().unwrap_or(0),
                    in_use: leased(last_used) || leased(created),
                    recorded: true,
                    id,
                    parent,
                    size,
                    created,
                    last_used,
                    description,
                });
            }
        }
        crate::db::store_sizes(conn, &late_sizes)?;
        for (id, (parent, at)) in on_disk {
            let size = sid(&id)
                .ok()
                .and_then(|s| self.state.snapshots.usage(&s).ok())
                .unwrap_or(0);
            snapshots.push(SnapshotEntry {
                id,
                parent,
                size,
                created: at,
                last_used: at,
                description: "(not recorded: left by an interrupted build)".into(),
                cache_keys: 0,
                in_use: leased(at),
                recorded: false,
            });
        }
        let local_image_blobs = self.image_closure(
            conn,
            "SELECT manifest_digest FROM local_images",
            "local_images",
            true,
        )?;
        // A resolved base image keeps only its manifest and config: its
        // layers live on as snapshots (with their blobs) as long as those
        // are kept, and are pulled again when not.
        let resolved_blobs =
            self.image_closure(conn, "SELECT manifest_digest FROM images", "images", false)?;
        Ok(Inventory {
            snapshots,
            layers,
            blobs: disk.blobs,
            local_image_blobs,
            resolved_blobs,
            live,
        })
    }

    /// The blobs the manifests listed by `query` name: configs, and layers
    /// when `layers` is set (indexes followed, to a small depth). A table
    /// that does not exist (an older DB) names none; a manifest that is
    /// missing or unreadable names only itself.
    fn image_closure(
        &self,
        conn: &Connection,
        query: &str,
        table: &str,
        layers: bool,
    ) -> Result<BTreeSet<String>, GcError> {
        let exists: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        let mut out = BTreeSet::new();
        if exists.is_none() {
            return Ok(out);
        }
        let roots: Vec<String> = {
            let mut stmt = conn.prepare(query)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut stack: Vec<(String, usize)> = roots.into_iter().map(|d| (d, 0)).collect();
        while let Some((digest, depth)) = stack.pop() {
            if !out.insert(digest.clone()) || depth > 4 {
                continue;
            }
            let Ok(d) = Digest::parse(&digest) else {
                continue;
            };
            let Ok(bytes) = self.state.content.read_all(&d) else {
                continue;
            };
            match manifest::parse(&bytes, None) {
                Ok(Parsed::Manifest(m)) => {
                    out.insert(m.config.digest.to_string());
                    if layers {
                        out.extend(m.layers.iter().map(|l| l.digest.to_string()));
                    }
                }
                Ok(Parsed::Index(i)) => stack.extend(
                    i.manifests
                        .iter()
                        .map(|m| (m.digest.to_string(), depth + 1)),
                ),
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Measures the recorded snapshots whose size is not known yet and
    /// stores their sizes. Snapshots measured before are not walked again;
    /// the walks run without holding the DB (they can take a while).
    fn measure_unsized(&self) -> Result<(), GcError> {
        let ids = self.state.db.unsized_snapshots()?;
        let sizes: Vec<(String, u64)> =
            ids.into_iter().filter_map(|id| self.measure(&id).map(|n| (id, n))).collect();
        self.state.db.set_snapshot_sizes(&sizes)?;
        Ok(())
    }

    /// The allocated bytes of a recorded snapshot's own layer; `None` when
    /// it cannot be measured (gone, or an id that is not one), which GC
    /// then counts as empty, as it did before sizes were lazy.
    fn measure(&self, id: &str) -> Option<u64> {
        let valid = sid(id).ok()?;
        match self.state.snapshots.usage(&valid) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(snapshot = %id, error = %e, "cannot measure snapshot");
                None
            }
        }
    }

    /// What uses space in the state dir.
    pub fn disk_usage(&self) -> Result<DiskUsage, GcError> {
        self.measure_unsized()?;
        let disk = self.disk_facts()?;
        let (inv, plan) = {
            let mut conn = self.state.db.conn();
            // Immediate: reading the leases may delete dead ones, and a
            // deferred read that upgrades to a write can fail outright
            // (SQLITE_BUSY_SNAPSHOT) when a build wrote in between.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut inv = self.inventory(&tx, disk)?;
            // This process's lease counts only while it runs a build: the
            // `rbuild du` process itself uses nothing.
            if !self.lease.building() {
                without_lease(&mut inv, self.lease.id());
            }
            let all = PruneOptions {
                all: true,
                ..PruneOptions::default()
            };
            let plan = plan(&inv, &all, crate::lease::now());
            tx.commit()?;
            (inv, plan)
        };
        let referenced: BTreeSet<&str> = inv
            .layers
            .values()
            .flatten()
            .map(String::as_str)
            .chain(inv.local_image_blobs.iter().map(String::as_str))
            .chain(inv.resolved_blobs.iter().map(String::as_str))
            .collect();
        let blobs: Vec<BlobEntry> = inv
            .blobs
            .iter()
            .map(|(d, (size, _))| BlobEntry {
                digest: d.clone(),
                size: *size,
                referenced: referenced.contains(d.as_str()),
            })
            .collect();
        let cache_mounts = self.cache_mounts(false)?;
        let reclaimable = plan_size(&inv, &plan)
            + cache_mounts
                .iter()
                .filter(|c| !c.in_use)
                .map(|c| c.size)
                .sum::<u64>();
        let metadata: u64 = ["metadata.db", "metadata.db-wal", "metadata.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.state.root.join(f)).ok())
            .map(|m| m.len())
            .sum();
        let total = inv.snapshots.iter().map(|s| s.size).sum::<u64>()
            + blobs.iter().map(|b| b.size).sum::<u64>()
            + cache_mounts.iter().map(|c| c.size).sum::<u64>()
            + metadata;
        let mut snapshots = inv.snapshots;
        snapshots.sort_by(|a, b| (a.last_used, &a.id).cmp(&(b.last_used, &b.id)));
        Ok(DiskUsage {
            snapshots,
            blobs,
            cache_mounts,
            metadata,
            total,
            reclaimable,
        })
    }

    /// Removes what `opts` selects; safe while other builds run on the same
    /// state dir (the lease protocol: `lease.rs`, `docs/architecture.md`).
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, GcError> {
        self.measure_unsized()?;
        let disk = self.disk_facts()?;
        let own = self.lease.id().to_string();
        let mut report = PruneReport::default();
        let (inv, plan) = {
            let mut conn = self.state.db.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut inv = self.inventory(&tx, disk)?;
            if !opts.protect_own {
                without_lease(&mut inv, &own);
            }
            let plan = plan(&inv, opts, crate::lease::now());
            for id in &plan.snapshots {
                tx.execute("DELETE FROM cache WHERE snapshot = ?1", [id])?;
                tx.execute("DELETE FROM layers WHERE snapshot = ?1", [id])?;
                tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
            }
            // Blobs go before the commit: a build whose lookup misses after
            // it (and that would then use a blob it finds in the store, such
            // as a base layer to unpack) finds the blob gone and fetches it,
            // instead of losing it half-way.
            self.remove_blobs(&inv, &plan.blobs, &mut report)?;
            tx.commit()?;
            (inv, plan)
        };
        let by_id: HashMap<&str, &SnapshotEntry> =
            inv.snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
        for id in self.remove_snapshot_dirs(&plan.snapshots)? {
            let Some(entry) = by_id.get(id.as_str()) else {
                continue;
            };
            report.reclaimed += entry.size;
            report.snapshots.push((*entry).clone());
        }
        if opts.all {
            report.cache_mounts = self.cache_mounts(true)?;
            report.reclaimed += report.cache_mounts.iter().map(|c| c.size).sum::<u64>();
        }
        Ok(report)
    }

    /// Removes snapshot directories in the given (children-first) order;
    /// returns the ids that are gone. `Snapshotter::remove` rescans the whole
    /// store for children on every call (quadratic: seconds for a few hundred
    /// snapshots), so this takes one fresh listing instead and keeps its
    /// child counts up to date: a snapshot that still has a child on disk
    /// (one made after the plan, which the lease rules make impossible for
    /// an unprotected parent, or one we failed to remove) is kept. Each
    /// directory leaves view with one rename to the snapshotter's hidden
    /// `.remove-` prefix (which `Snapshotter::open` cleans up after a crash)
    /// and is then deleted.
    fn remove_snapshot_dirs(&self, order: &[String]) -> Result<Vec<String>, GcError> {
        let snaps = &self.state.snapshots;
        let mut parent_of: HashMap<String, Option<String>> = HashMap::new();
        let mut children: HashMap<String, usize> = HashMap::new();
        for id in snaps.list()? {
            let parent = match snaps.parent(&id) {
                Ok(p) => p.map(|p| p.to_string()),
                Err(_) => None,
            };
            if let Some(p) = &parent {
                *children.entry(p.clone()).or_default() += 1;
            }
            parent_of.insert(id.to_string(), parent);
        }
        let mut gone = Vec::new();
        for id in order {
            let Some(parent) = parent_of.get(id) else {
                // Recorded but without a directory: only its records went.
                gone.push(id.clone());
                continue;
            };
            if children.get(id).copied().unwrap_or(0) > 0 {
                tracing::debug!(snapshot = %id, "prune: keeping a snapshot that still has children");
                continue;
            }
            let Ok(valid) = sid(id) else { continue };
            let dir = snaps.root().join(valid.as_str());
            let hidden = snaps.root().join(format!(".remove-gc-{id}"));
            if let Err(e) = std::fs::rename(&dir, &hidden) {
                tracing::debug!(snapshot = %id, error = %e, "prune: cannot move snapshot out of view");
                continue;
            }
            // Out of view now; `Snapshotter::open` in another process may be
            // deleting it at the same time, so a failure here is not ours.
            if let Err(e) = rbuild_snapshot::remove_tree(&hidden) {
                tracing::debug!(dir = %hidden.display(), error = %e, "prune: removing snapshot tree");
            }
            if let Some(p) = parent
                && let Some(n) = children.get_mut(p)
            {
                *n = n.saturating_sub(1);
            }
            gone.push(id.clone());
        }
        Ok(gone)
    }

    fn remove_blobs(
        &self,
        inv: &Inventory,
        blobs: &[String],
        report: &mut PruneReport,
    ) -> Result<(), GcError> {
        for digest in blobs {
            let Some((size, _)) = inv.blobs.get(digest) else {
                continue;
            };
            let Ok(d) = Digest::parse(digest) else {
                continue;
            };
            match self.state.content.remove(&d) {
                Ok(()) | Err(rbuild_oci::store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(GcError::Content(crate::chain(&e))),
            }
            report.reclaimed += size;
            report.blobs.push(BlobEntry {
                digest: digest.clone(),
                size: *size,
                referenced: false,
            });
        }
        Ok(())
    }

    /// Automatic GC: when snapshots and blobs use more than `cap` bytes,
    /// prunes least recently used records (never what a build of this
    /// process or another uses, nor local images) until usage is under it.
    /// Returns `None` when usage was already under the cap. Runs after every
    /// build, so it walks only the snapshots not measured before (those the
    /// build made) and sums stored sizes for the rest.
    pub fn gc_to_cap(&self, cap: u64) -> Result<Option<PruneReport>, GcError> {
        self.measure_unsized()?;
        let used = self.usage_estimate()?;
        if used <= cap {
            return Ok(None);
        }
        let opts = PruneOptions {
            keep_storage: Some(cap),
            protect_own: true,
            ..PruneOptions::default()
        };
        self.prune(&opts).map(Some)
    }

    /// Stored snapshot sizes plus blob sizes (cheap: no tree walks; the
    /// caller has measured what was unsized, and what still is counts as 0).
    fn usage_estimate(&self) -> Result<u64, GcError> {
        let snapshots: i64 = self.state.db.conn().query_row(
            "SELECT COALESCE(SUM(size), 0) FROM snapshots WHERE size > 0",
            [],
            |r| r.get(0),
        )?;
        let blobs: u64 = self
            .state
            .content
            .list()
            .map_err(|e| GcError::Content(crate::chain(&e)))?
            .iter()
            .map(|(_, s)| s)
            .sum();
        Ok(snapshots.max(0) as u64 + blobs)
    }

    /// Moves this process's lease forward: what its earlier builds used is no
    /// longer protected. For long-running processes, between builds.
    pub fn renew_lease(&self) -> Result<(), GcError> {
        Ok(self.lease.renew(&self.state.db.conn())?)
    }

    /// The cache-mount instances; with `remove`, deletes every one that no
    /// RUN holds (under its lock, so a RUN that comes later waits and then
    /// finds it gone) and returns those.
    fn cache_mounts(&self, remove: bool) -> Result<Vec<CacheMountEntry>, GcError> {
        let root = &self.state.cache_mounts;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(root)(e)),
        };
        for id_dir in entries {
            let id_dir = id_dir.map_err(io_err(root))?;
            let Some(id) = id_dir.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !id_dir.file_type().map_err(io_err(root))?.is_dir() {
                continue;
            }
            let base = id_dir.path();
            for inst in std::fs::read_dir(&base).map_err(io_err(&base))? {
                let inst = inst.map_err(io_err(&base))?;
                let Some(name) = inst.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.parse::<u32>().is_err()
                    || !inst.file_type().map_err(io_err(&base))?.is_dir()
                {
                    continue;
                }
                let lock_path = base.join(format!("{name}.lock"));
                let lock = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path);
                let held = match &lock {
                    Ok(f) => {
                        rustix::fs::flock(f, FlockOperation::NonBlockingLockExclusive).is_err()
                    }
                    Err(_) => true,
                };
                let dir = inst.path();
                let size = dir_usage(&dir);
                let entry = CacheMountEntry {
                    id: id.clone(),
                    instance: name,
                    size,
                    in_use: held,
                };
                if remove {
                    if held {
                        continue;
                    }
                    rbuild_snapshot::remove_tree(&dir).map_err(io_err(&dir))?;
                }
                out.push(entry);
                drop(lock);
            }
        }
        Ok(out)
    }
}

/// Forgets one lease: what only it protected is no longer in use.
fn without_lease(inv: &mut Inventory, id: &str) {
    inv.live.retain(|l| l.id != id);
    let since = inv.live.iter().map(|l| l.since).min();
    for s in &mut inv.snapshots {
        s.in_use = since.is_some_and(|t| s.last_used >= t || s.created >= t);
    }
}

/// Applies the keep rules to an inventory and runs the selection.
fn plan(inv: &Inventory, opts: &PruneOptions, now: i64) -> select::Selection {
    let since = inv.live.iter().map(|l| l.since).min();
    let leased = |t: i64| since.is_some_and(|s| t >= s);
    let until = match (opts.until, opts.all, opts.keep_storage) {
        (Some(u), _, _) => Some(u),
        (None, false, None) => Some(DEFAULT_KEEP_DURATION),
        _ => None,
    };
    let image_layers: &BTreeSet<String> = &inv.local_image_blobs;
    let nodes: Vec<select::Node> = inv
        .snapshots
        .iter()
        .map(|s| {
            let blobs = inv.layers.get(&s.id).cloned().unwrap_or_default();
            let for_image = !opts.all && blobs.iter().any(|b| image_layers.contains(b));
            let young = s.recorded && until.is_some_and(|u| s.last_used > now.saturating_sub(u));
            select::Node {
                id: s.id.clone(),
                parent: s.parent.clone(),
                size: s.size,
                last_used: s.last_used,
                keep: s.in_use || for_image || young,
                blobs,
            }
        })
        .collect();
    let blobs: BTreeMap<String, select::Blob> = inv
        .blobs
        .iter()
        .map(|(d, (size, at))| {
            let keep = leased(*at)
                || inv.local_image_blobs.contains(d)
                || (!opts.all && inv.resolved_blobs.contains(d));
            (d.clone(), select::Blob { size: *size, keep })
        })
        .collect();
    select::select(&nodes, &blobs, opts.keep_storage)
}

/// Bytes a selection frees.
fn plan_size(inv: &Inventory, plan: &select::Selection) -> u64 {
    let sizes: HashMap<&str, u64> = inv
        .snapshots
        .iter()
        .map(|s| (s.id.as_str(), s.size))
        .collect();
    plan.snapshots
        .iter()
        .filter_map(|id| sizes.get(id.as_str()))
        .sum::<u64>()
        + plan
            .blobs
            .iter()
            .filter_map(|d| inv.blobs.get(d))
            .map(|(s, _)| s)
            .sum::<u64>()
}

/// Allocated bytes under `dir` (hardlinks once, symlinks not followed).
/// Unreadable parts count as empty: `du` reports, it does not fail.
pub(crate) fn dir_usage(dir: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests;
