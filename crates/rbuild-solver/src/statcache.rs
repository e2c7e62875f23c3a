//! The persistent stat cache: file digests by stat identity, kept in the
//! metadata DB so that a no-op rebuild in a new process stats the context
//! but reads no file contents.
//!
//! One row per path (`stat_cache`): the identity the digest was computed for
//! (size, mtime, ctime, inode, device, mode) and the digest. A lookup matches
//! only when every field is equal; a changed file just replaces its row.
//! Reads go through an in-memory map, filled one directory at a time (a
//! range scan of the primary key per directory, not a query per file, so a
//! warm cache beats reading even small files); new digests are buffered and
//! written in one transaction per batch (and at the end of each solve), so
//! hashing a cold 20,000-file context costs a few transactions, not 20,000.
//! The table is bounded: past [`MAX_ENTRIES`] rows the least recently used
//! are dropped (`used` is refreshed at most once an hour per row, so hits do
//! not turn into writes).
//!
//! The cache has its own connection, so hashing never waits for the build's
//! cache lookups (and the reverse).

use rbuild_fileop::hash::{StatCache, StatKey};
use rusqlite::{Connection, params};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::lease::now;

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
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("stat cache: {0}")]
    Sql(#[from] rusqlite::Error),
}

#[derive(Default)]
struct Pending {
    new: Vec<(StatKey, [u8; 32])>,
    touched: Vec<PathBuf>,
}

/// A digest and when its row was last used (seconds since the epoch).
type Entry = ([u8; 32], i64);

/// What this process knows: digests by identity (with their last use), and
/// the directories whose rows have all been read from the DB.
#[derive(Default)]
struct Memory {
    digests: HashMap<StatKey, Entry>,
    loaded: HashSet<PathBuf>,
}

/// A [`StatCache`] backed by the metadata DB.
pub struct DbStatCache {
    conn: Mutex<Connection>,
    memory: Mutex<Memory>,
    pending: Mutex<Pending>,
    max_entries: i64,
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
        let open_err = |source| StatCacheError::Open {
            path: path.display().to_string(),
            source,
        };
        let _setup = crate::db::setup_lock(path).map_err(|e| StatCacheError::Open {
            path: path.display().to_string(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(DbStatCache {
            conn: Mutex::new(conn),
            memory: Mutex::default(),
            pending: Mutex::default(),
            max_entries,
        })
    }

    /// Reads every row under `dir` (one range scan of the primary key) into
    /// memory: one query per directory instead of one per file, which is
    /// what makes a warm cache cheaper than reading small files.
    fn load_dir(&self, dir: &Path) -> Result<Vec<(StatKey, Entry)>, StatCacheError> {
        let mut low = path_bytes(dir).to_vec();
        if !low.ends_with(b"/") {
            low.push(b'/');
        }
        // Every path that starts with `low`: `…/` up to (excluding) `…0`.
        let mut high = low.clone();
        if let Some(last) = high.last_mut() {
            *last = b'/' + 1;
        }
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT path, size, mtime_ns, ctime_ns, inode, dev, mode, hash, used FROM stat_cache
             WHERE path >= ?1 AND path < ?2",
        )?;
        let rows = stmt.query_map(params![low, high], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, u32>(6)?,
                r.get::<_, Vec<u8>>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (path, size, mtime_ns, ctime_ns, inode, dev, mode, hash, used) = row?;
            // A row with a malformed digest is a miss, never an error.
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            let path = PathBuf::from(std::ffi::OsString::from_vec(path));
            let key = StatKey {
                path,
                size: size as u64,
                mtime_ns,
                ctime_ns,
                inode: inode as u64,
                dev: dev as u64,
                mode,
            };
            out.push((key, (hash, used)));
        }
        Ok(out)
    }

    /// The digest for `key`: from memory, else from its directory's rows.
    fn lookup(&self, key: &StatKey) -> Result<Option<[u8; 32]>, StatCacheError> {
        let dir = key.path.parent().unwrap_or(Path::new("/"));
        {
            let mut mem = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = self.hit(&mut mem, key) {
                return Ok(Some(hit));
            }
            if dir.ancestors().any(|a| mem.loaded.contains(a)) {
                return Ok(None);
            }
        }
        let rows = self.load_dir(dir)?;
        let mut mem = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in rows {
            mem.digests.entry(k).or_insert(v);
        }
        mem.loaded.insert(dir.to_path_buf());
        Ok(self.hit(&mut mem, key))
    }

    /// A memory hit; a row not used for an hour is queued for a refresh.
    fn hit(&self, mem: &mut Memory, key: &StatKey) -> Option<[u8; 32]> {
        let (hash, used) = mem.digests.get_mut(key)?;
        let t = now();
        if *used < t - TOUCH_AFTER {
            *used = t;
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .touched
                .push(key.path.clone());
        }
        Some(*hash)
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

/// The key with an absolute path: a context given as `.` hashes files as
/// `./src/…`, which would name different files in different directories.
fn absolute(key: &StatKey) -> Option<std::borrow::Cow<'_, StatKey>> {
    if key.path.is_absolute() {
        return Some(std::borrow::Cow::Borrowed(key));
    }
    let path = std::path::absolute(&key.path).ok()?;
    Some(std::borrow::Cow::Owned(StatKey {
        path,
        ..key.clone()
    }))
}

impl StatCache for DbStatCache {
    fn get(&self, key: &StatKey) -> Option<[u8; 32]> {
        let key = absolute(key)?;
        match self.lookup(&key) {
            Ok(hit) => hit,
            Err(e) => {
                tracing::debug!(error = %e, "stat cache lookup");
                None
            }
        }
    }

    fn put(&self, key: StatKey, hash: [u8; 32]) {
        let Some(key) = absolute(&key).map(std::borrow::Cow::into_owned) else {
            return;
        };
        if let Ok(mut m) = self.memory.lock() {
            m.digests.insert(key.clone(), (hash, now()));
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
