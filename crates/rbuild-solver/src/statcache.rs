//! The persistent stat cache: file digests by stat identity, kept in the
//! metadata DB so that a no-op rebuild in a new process stats the context
//! but reads no file contents.
//!
//! One row per path (`stat_cache`): the identity the digest was computed for
//! (size, mtime, ctime, inode, device, mode) and the digest. A lookup matches
//! only when every field is equal; a changed file just replaces its row.
//! Reads go through an in-memory map first; new digests are buffered and
//! written in one transaction per batch (and at the end of each solve), so
//! hashing a cold 20,000-file context costs a few transactions, not 20,000.
//! The table is bounded: past [`MAX_ENTRIES`] rows the least recently used
//! are dropped (`used` is refreshed at most once an hour per row, so hits do
//! not turn into writes).
//!
//! The cache has its own connection, so hashing never waits for the build's
//! cache lookups (and the reverse).

use rbuild_fileop::hash::{StatCache, StatKey};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Rows kept at most; trimming goes down to 90% of it.
pub const MAX_ENTRIES: i64 = 200_000;
/// Buffered new digests written per transaction.
const BATCH: usize = 2048;
/// How stale `used` may get before a hit refreshes it (seconds).
const TOUCH_AFTER: i64 = 3600;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stat_cache (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    hash BLOB NOT NULL,
    used INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stat_cache_used ON stat_cache(used);
";

/// Errors of the stat cache (never fatal to a build: a failing cache only
/// means files are read again).
#[derive(Debug, thiserror::Error)]
pub enum StatCacheError {
    #[error("stat cache {path}: {source}")]
    Open { path: String, #[source] source: rusqlite::Error },
    #[error("stat cache: {0}")]
    Sql(#[from] rusqlite::Error),
}

#[derive(Default)]
struct Pending {
    new: Vec<(StatKey, [u8; 32])>,
    touched: Vec<PathBuf>,
}

/// A [`StatCache`] backed by the metadata DB.
pub struct DbStatCache {
    conn: Mutex<Connection>,
    memory: Mutex<HashMap<StatKey, [u8; 32]>>,
    pending: Mutex<Pending>,
    max_entries: i64,
}

fn now() -> i64 {
    crate::lease::now()
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

impl DbStatCache {
    /// Opens the cache in the DB file at `path` (creating its table).
    pub fn open(path: &Path) -> Result<Self, StatCacheError> {
        Self::open_with_limit(path, MAX_ENTRIES)
    }

    /// [`DbStatCache::open`] with another bound on the number of rows.
    pub(crate) fn open_with_limit(path: &Path, max_entries: i64) -> Result<Self, StatCacheError> {
        let open_err = |source| StatCacheError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(DbStatCache { conn: Mutex::new(conn), memory: Mutex::default(), pending: Mutex::default(), max_entries })
    }

    fn lookup(&self, key: &StatKey) -> Result<Option<[u8; 32]>, StatCacheError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row: Option<(Vec<u8>, i64)> = conn
            .query_row(
                "SELECT hash, used FROM stat_cache WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3
                 AND ctime_ns = ?4 AND inode = ?5 AND dev = ?6 AND mode = ?7",
                params![
                    path_bytes(&key.path),
                    key.size as i64,
                    key.mtime_ns,
                    key.ctime_ns,
                    key.inode as i64,
                    key.dev as i64,
                    key.mode
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((hash, used)) = row else { return Ok(None) };
        let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else { return Ok(None) };
        if used < now() - TOUCH_AFTER {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).touched.push(key.path.clone());
        }
        Ok(Some(hash))
    }

    /// Writes buffered digests and refreshed use times; trims the table when
    /// it grew past its bound.
    pub fn flush(&self) -> Result<(), StatCacheError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.new.is_empty() && pending.touched.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let t = now();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO stat_cache (path, size, mtime_ns, ctime_ns, inode, dev, mode, hash, used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (k, h) in &pending.new {
                insert.execute(params![
                    path_bytes(&k.path),
                    k.size as i64,
                    k.mtime_ns,
                    k.ctime_ns,
                    k.inode as i64,
                    k.dev as i64,
                    k.mode,
                    &h[..],
                    t
                ])?;
            }
            let mut touch = tx.prepare_cached("UPDATE stat_cache SET used = ?2 WHERE path = ?1")?;
            for p in &pending.touched {
                touch.execute(params![path_bytes(p), t])?;
            }
        }
        if !pending.new.is_empty() {
            let rows: i64 = tx.query_row("SELECT COUNT(*) FROM stat_cache", [], |r| r.get(0))?;
            if rows > self.max_entries {
                let excess = rows - self.max_entries * 9 / 10;
                tx.execute(
                    "DELETE FROM stat_cache WHERE path IN (SELECT path FROM stat_cache ORDER BY used LIMIT ?1)",
                    [excess],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Rows in the table (for tests and `du`).
    pub fn len(&self) -> Result<i64, StatCacheError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn.query_row("SELECT COUNT(*) FROM stat_cache", [], |r| r.get(0))?)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> Result<bool, StatCacheError> {
        Ok(self.len()? == 0)
    }
}

impl StatCache for DbStatCache {
    fn get(&self, key: &StatKey) -> Option<[u8; 32]> {
        if let Some(h) = self.memory.lock().ok()?.get(key) {
            return Some(*h);
        }
        match self.lookup(key) {
            Ok(Some(h)) => {
                if let Ok(mut m) = self.memory.lock() {
                    m.insert(key.clone(), h);
                }
                Some(h)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "stat cache lookup");
                None
            }
        }
    }

    fn put(&self, key: StatKey, hash: [u8; 32]) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key.clone(), hash);
        }
        let full = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.new.push((key, hash));
            p.new.len() >= BATCH
        };
        if full && let Err(e) = self.flush() {
            tracing::debug!(error = %e, "stat cache flush");
        }
    }
}

impl Drop for DbStatCache {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::debug!(error = %e, "stat cache flush");
        }
    }
}

#[cfg(test)]
mod tests;
