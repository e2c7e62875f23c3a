//! The metadata database: what the cache knows, in SQLite (WAL mode).
//!
//! Several processes may share one state dir, so every write is a short
//! transaction and every insert of a result is idempotent: when two builds
//! compute the same key at once, the first commit wins and the second build
//! discards its own snapshot and uses the recorded one.

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use crate::lease::now;

/// Errors from the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("metadata database {path}: {source}")]
    Open { path: String, #[source] source: rusqlite::Error },
    #[error("metadata database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// A memoized layer blob of a snapshot: the tar of the snapshot's own diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// A resolved image reference (`name:tag` → manifest digest + config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub manifest_digest: String,
    pub config: Vec<u8>,
}

/// A recorded snapshot's parent, whether its own diff is empty (no layer is
/// emitted for it) and when it was made (seconds since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    pub parent: Option<String>,
    pub empty: bool,
    pub created: i64,
}

/// A recorded snapshot as the DB knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotUsage {
    pub id: String,
    pub parent: Option<String>,
    /// Allocated bytes of its own layer; `None` until garbage collection or
    /// `du` first measures it (see [`UNSIZED`]).
    pub size: Option<u64>,
    pub last_used: i64,
    pub description: String,
}

/// The `snapshots.size` of a snapshot nobody has measured yet. Recording a
/// snapshot does not walk it (after a large `COPY` that walk was a `stat` per
/// file on every build's critical path); only GC and `du` need sizes, and
/// they measure the unsized ones once and store the result, which stays
/// valid because a committed snapshot never changes.
///
/// A sentinel rather than NULL keeps the column `NOT NULL`, so state dirs
/// made before lazy sizes need no migration (all their rows hold measured
/// sizes) and an older rbuild sharing the state dir reads a -1 as an empty
/// snapshot instead of failing on a NULL.
pub const UNSIZED: i64 = -1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_snapshot ON cache(snapshot);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    parent TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    empty INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    snapshot TEXT NOT NULL,
    compression TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (snapshot, compression)
);
CREATE TABLE IF NOT EXISTS images (
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    config BLOB NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (name, platform)
);
-- The local image store (`rbuild images`): one row per name. Its manifests
-- (and everything they reference) are GC roots; see images.rs.
CREATE TABLE IF NOT EXISTS local_images (
    name TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    manifest_size INTEGER NOT NULL,
    config_digest TEXT NOT NULL,
    platform TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT,
    tagged INTEGER NOT NULL
);
";

/// Serialises opening the database between processes. Two processes that
/// switch a fresh database to WAL and create its tables at the same moment
/// can get `SQLITE_BUSY` without the busy handler being consulted; holding
/// an exclusive `flock` on `<db>.lock` around the setup avoids that race.
pub(crate) fn setup_lock(db: &Path) -> Result<std::fs::File, DbError> {
    let path = db.with_extension("lock");
    let io = |e: std::io::Error| DbError::Open {
        path: path.display().to_string(),
        source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
    };
    let f = std::fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(io)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io(e.into()))?;
    Ok(f)
}

/// The metadata database of one state dir.
pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (and creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let _setup = setup_lock(path)?;
        let open_err = |source| DbError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.execute_batch(crate::lease::SCHEMA).map_err(open_err)?;
        Ok(Db { conn: Mutex::new(conn) })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a usable connection.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshot recorded for a cache key, refreshing its last use. Read
    /// and refresh are one write transaction: garbage collection (which
    /// protects what live leases used since they began) either sees the new
    /// `last_used` or has already removed the record (see lease.rs).
    pub fn lookup(&self, key: &str) -> Result<Option<String>, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let snap: Option<String> = tx
            .query_row("SELECT snapshot FROM cache WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if let Some(s) = &snap {
            let t = now();
            tx.execute("UPDATE cache SET last_used = ?2 WHERE key = ?1", params![key, t])?;
            tx.execute("UPDATE snapshots SET last_used = ?2 WHERE id = ?1", params![s, t])?;
        }
        tx.commit()?;
        Ok(snap)
    }

    /// Records a committed snapshot (its size [`UNSIZED`]) and the key that
    /// produced it. Returns the snapshot that is recorded for the key
    /// afterwards: `snapshot` itself, or the one a concurrent build recorded
    /// first (the caller then removes its own).
    pub fn record(
        &self,
        key: &str,
        snapshot: &str,
        parent: Option<&str>,
        empty: bool,
        description: &str,
        replace: bool,
    ) -> Result<String, DbError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let t = now();
        let existing: Option<String> = tx
            .query_row("SELECT snapshot FROM cache WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if existing.is_some() && replace {
            // A step run again on purpose (`--no-cache`): its fresh result
            // becomes the cached one; the old snapshot is left to GC.
            tx.execute(
                "INSERT OR IGNORE INTO snapshots (id, parent, size, empty, description, created, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![snapshot, parent, UNSIZED, empty, description, t],
            )?;
            tx.execute("UPDATE cache SET snapshot = ?2, last_used = ?3 WHERE key = ?1", params![key, snapshot, t])?;
            tx.commit()?;
            return Ok(snapshot.to_string());
        }
        if let Some(e) = existing {
            // The caller uses the recorded snapshot from now on: refresh it
            // as a lookup would, so that its lease protects it.
            tx.execute("UPDATE cache SET last_used = ?2 WHERE key = ?1", params![key, t])?;
            tx.execute("UPDATE snapshots SET last_used = ?2 WHERE id = ?1", params![e, t])?;
            tx.commit()?;
            return Ok(e);
        }
        tx.execute(
            "INSERT OR IGNORE INTO snapshots (id, parent, size, empty, description, created, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![snapshot, parent, UNSIZED, empty, description, t],
        )?;
        tx.execute(
            "INSERT INTO cache (key, snapshot, created, last_used) VALUES (?1, ?2, ?3, ?3)",
            params![key, snapshot, t],
        )?;
        tx.commit()?;
        Ok(snapshot.to_string())
    }

    /// Records `key` for an existing snapshot unless the key is taken (used
    /// for layer chain IDs, which several snapshots may equally satisfy).
    pub fn alias(&self, key: &str, snapshot: &str) -> Result<(), DbError> {
        let t = now();
        self.conn().execute(
            "INSERT OR IGNORE INTO cache (key, snapshot, created, last_used) VALUES (?1, ?2, ?3, ?3)",
            params![key, snapshot, t],
        )?;
        Ok(())
    }

    /// What the export needs of a recorded snapshot, in one query.
    pub fn snapshot_row(&self, id: &str) -> Result<Option<SnapshotRow>, DbError> {
        Ok(self
            .conn()
            .query_row("SELECT parent, empty, created FROM snapshots WHERE id = ?1", [id], |r| {
                Ok(SnapshotRow { parent: r.get(0)?, empty: r.get(1)?, created: r.get(2)? })
            })
            .optional()?)
    }

    /// The parent of a recorded snapshot.
    pub fn snapshot_parent(&self, id: &str) -> Result<Option<String>, DbError> {
        Ok(self.snapshot_row(id)?.and_then(|r| r.parent))
    }

    /// The memoized layer of a snapshot for a compression.
    pub fn layer(&self, snapshot: &str, compression: &str) -> Result<Option<LayerRecord>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT diff_id, digest, size, media_type FROM layers WHERE snapshot = ?1 AND compression = ?2",
                params![snapshot, compression],
                |r| {
                    Ok(LayerRecord {
                        diff_id: r.get(0)?,
                        digest: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        media_type: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Memoizes a snapshot's layer blob.
    pub fn put_layer(&self, snapshot: &str, compression: &str, layer: &LayerRecord) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO layers (snapshot, compression, diff_id, digest, size, media_type)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![snapshot, compression, layer.diff_id, layer.digest, layer.size as i64, layer.media_type],
        )?;
        Ok(())
    }

    /// The recorded resolution of an image name for a platform.
    pub fn image(&self, name: &str, platform: &str) -> Result<Option<ImageRecord>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT manifest_digest, config FROM images WHERE name = ?1 AND platform = ?2",
                params![name, platform],
                |r| Ok(ImageRecord { manifest_digest: r.get(0)?, config: r.get(1)? }),
            )
            .optional()?)
    }

    /// Records the resolution of an image name.
    pub fn put_image(&self, name: &str, platform: &str, rec: &ImageRecord) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO images (name, platform, manifest_digest, config, updated)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, platform, rec.manifest_digest, rec.config, now()],
        )?;
        Ok(())
    }

    /// Every recorded snapshot, for `du` and garbage collection.
    pub fn snapshots(&self) -> Result<Vec<SnapshotUsage>, DbError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, parent, size, last_used, description FROM snapshots ORDER BY last_used")?;
        let rows = stmt.query_map([], |r| {
            Ok(SnapshotUsage {
                id: r.get(0)?,
                parent: r.get(1)?,
                size: u64::try_from(r.get::<_, i64>(2)?).ok(),
                last_used: r.get(3)?,
                description: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The recorded snapshots whose size is not measured yet.
    pub fn unsized_snapshots(&self) -> Result<Vec<String>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM snapshots WHERE size < 0 ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores measured sizes in one transaction. A size already stored is
    /// kept (a concurrent measurement found the same), and a snapshot pruned
    /// meanwhile stays gone.
    pub fn set_snapshot_sizes(&self, sizes: &[(String, u64)]) -> Result<(), DbError> {
        if sizes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        store_sizes(&tx, sizes)?;
        tx.commit()?;
        Ok(())
    }
}

/// Stores measured sizes inside the caller's transaction (see
/// [`Db::set_snapshot_sizes`]).
pub(crate) fn store_sizes(conn: &Connection, sizes: &[(String, u64)]) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare("UPDATE snapshots SET size = ?2 WHERE id = ?1 AND size < 0")?;
    for (id, size) in sizes {
        stmt.execute(params![id, i64::try_from(*size).unwrap_or(i64::MAX)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_record_of_a_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db")).unwrap();
        assert_eq!(db.lookup("k").unwrap(), None);
        assert_eq!(db.record("k", "s1", None, false, "", false).unwrap(), "s1");
        assert_eq!(db.record("k", "s2", None, false, "", false).unwrap(), "s1");
        assert_eq!(db.lookup("k").unwrap().as_deref(), Some("s1"));
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        {
            let db = Db::open(&path).unwrap();
            db.record("k", "s1", Some("p"), true, "RUN x", false).unwrap();
            let layer = LayerRecord {
                diff_id: "sha256:a".into(),
                digest: "sha256:b".into(),
                size: 3,
                media_type: "m".into(),
            };
            db.put_layer("s1", "gzip", &layer).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.lookup("k").unwrap().as_deref(), Some("s1"));
        assert!(db.snapshot_row("s1").unwrap().unwrap().empty);
        assert_eq!(db.snapshot_parent("s1").unwrap().as_deref(), Some("p"));
        assert_eq!(db.layer("s1", "gzip").unwrap().unwrap().size, 3);
        assert_eq!(db.layer("s1", "zstd").unwrap(), None);
    }

    #[test]
    fn sizes_are_unknown_until_stored_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db")).unwrap();
        db.record("k1", "s1", None, false, "", false).unwrap();
        db.record("k2", "s2", Some("s1"), false, "", true).unwrap();
        assert_eq!(db.unsized_snapshots().unwrap(), vec!["s1".to_string(), "s2".to_string()]);
        assert!(db.snapshots().unwrap().iter().all(|s| s.size.is_none()));
        db.set_snapshot_sizes(&[("s1".into(), 4096), ("gone".into(), 1)]).unwrap();
        assert_eq!(db.unsized_snapshots().unwrap(), vec!["s2".to_string()]);
        // A second measurement does not overwrite the first.
        db.set_snapshot_sizes(&[("s1".into(), 8192)]).unwrap();
        let sizes: Vec<_> = db.snapshots().unwrap().into_iter().map(|s| (s.id, s.size)).collect();
        assert!(sizes.contains(&("s1".to_string(), Some(4096))), "{sizes:?}");
        assert!(sizes.contains(&("s2".to_string(), None)), "{sizes:?}");
    }

    #[test]
    fn rows_of_a_db_written_with_eager_sizes_keep_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        {
            // What an rbuild before lazy sizes wrote: the measured size.
            let db = Db::open(&path).unwrap();
            db.conn()
                .execute(
                    "INSERT INTO snapshots (id, parent, size, empty, description, created, last_used)
                     VALUES ('old', NULL, 12288, 0, 'RUN x', 1, 1)",
                    [],
                )
                .unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert!(db.unsized_snapshots().unwrap().is_empty());
        assert_eq!(db.snapshots().unwrap()[0].size, Some(12288));
    }

    #[test]
    fn concurrent_connections_on_one_file_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let a = Db::open(&path).unwrap();
        let b = Db::open(&path).unwrap();
        let handles: Vec<_> = [(a, "sa"), (b, "sb")]
            .into_iter()
            .map(|(db, s)| std::thread::spawn(move || db.record("same", s, None, false, "", false).unwrap()))
            .collect();
        let winners: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(winners[0], winners[1]);
    }
}
