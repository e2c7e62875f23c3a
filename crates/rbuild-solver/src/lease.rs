//! Leases: how a running build keeps garbage collection away from what it
//! uses, across processes that share one state dir.
//!
//! The protocol needs no bookkeeping on the build's hot path:
//! - every [`crate::Engine`] holds one lease for as long as it lives: a row
//!   in the `leases` table (`id`, `pid`, `since`) and an exclusive `flock` on
//!   `<state>/leases/<id>.lock`. The lock is taken *before* the row is
//!   written and released only after the row is deleted, so a row whose lock
//!   can be taken belongs to a dead process (the lock dies with it, whatever
//!   way it died) and GC deletes it;
//! - a live lease protects everything used or made since `since`: snapshots
//!   whose `last_used` (refreshed by every cache lookup, in the same
//!   transaction that reads the key) or `created` is at or after it, blobs
//!   and unrecorded snapshot directories whose mtime is at or after it, and
//!   every ancestor of a protected snapshot;
//! - GC decides and deletes the DB records in one `BEGIN IMMEDIATE`
//!   transaction and removes files only afterwards, so a lookup either
//!   committed first (and refreshed `last_used`, making the snapshot
//!   protected) or runs after the records are gone (a cache miss; the build
//!   makes the snapshot again).
//!
//! A long-running process (the daemon) wraps each build in a [`BuildGuard`]
//! (`Engine::begin_build`): the first build after a quiet spell renews the
//! lease, so it stops protecting what earlier builds used.

use rusqlite::{Connection, params};
use rustix::fs::FlockOperation;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Tables of the lease protocol (created with the metadata DB).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    since INTEGER NOT NULL
);
";

/// Errors taking or checking leases.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("leases table: {0}")]
    Sql(#[from] rusqlite::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LeaseError + '_ {
    move |source| LeaseError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Seconds since the epoch (the unit of every time in the metadata DB).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The directory of lease lock files in a state dir.
pub(crate) fn lease_dir(state_root: &Path) -> PathBuf {
    state_root.join("leases")
}

/// One process's lease on a state dir. Dropping it ends the lease.
#[derive(Debug)]
pub struct Lease {
    id: String,
    path: PathBuf,
    since: AtomicI64,
    /// Builds of this process running now (see [`BuildGuard`]).
    active: Mutex<usize>,
    _lock: File,
}

impl Lease {
    /// Takes a new lease: lock file first, then the row.
    pub(crate) fn acquire(state_root: &Path, conn: &Connection) -> Result<Self, LeaseError> {
        let dir = lease_dir(state_root);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // pid + a nanosecond clock + a counter: unique per state dir, and
        // `create_new` refuses a clash rather than sharing a file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{nanos:x}-{n:x}", std::process::id());
        let path = dir.join(format!("{id}.lock"));
        let file = File::options()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_err(&path)(std::io::Error::from(e)))?;
        let since = now();
        conn.execute(
            "INSERT INTO leases (id, pid, since) VALUES (?1, ?2, ?3)",
            params![id, std::process::id(), since],
        )?;
        Ok(Lease {
            id,
            path,
            since: AtomicI64::new(since),
            active: Mutex::new(0),
            _lock: file,
        })
    }

    /// The lease's id (the name of its lock file).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Since when this lease protects what its process uses.
    pub fn since(&self) -> i64 {
        self.since.load(Ordering::Relaxed)
    }

    /// Moves `since` to now: what the process used before stops being
    /// protected. Only call it when no build of this process is running.
    pub(crate) fn renew(&self, conn: &Connection) -> Result<(), LeaseError> {
        let t = now();
        conn.execute(
            "UPDATE leases SET since = ?2 WHERE id = ?1",
            params![self.id, t],
        )?;
        self.since.store(t, Ordering::Relaxed);
        Ok(())
    }

    /// A build starts: the first of a quiet spell moves `since` to now.
    fn enter(&self, conn: &Connection) -> Result<(), LeaseError> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if *active == 0 {
            self.renew(conn)?;
        }
        *active += 1;
        Ok(())
    }

    /// Whether a build of this process holds a [`BuildGuard`] now.
    pub(crate) fn building(&self) -> bool {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) > 0
    }

    fn leave(&self) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        *active = active.saturating_sub(1);
    }

    /// Ends the lease: row first, then the lock file (closing it unlocks).
    pub(crate) fn release(&self, conn: &Connection) {
        if let Err(e) = conn.execute("DELETE FROM leases WHERE id = ?1", [&self.id]) {
            tracing::debug!(lease = %self.id, error = %e, "releasing lease");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Marks one build of a long-running process (the daemon) from start to
/// end: solve, export and outputs. When a build starts while none runs, the
/// process's lease is renewed, so what earlier builds used stops being
/// protected from GC; while any build runs, nothing is renewed. A process
/// that runs one build and exits (the CLI) needs none.
#[must_use = "the build is over when the guard is dropped"]
pub struct BuildGuard {
    engine: Arc<crate::Engine>,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        self.engine.lease.leave();
    }
}

impl crate::Engine {
    /// Starts a build for the lease protocol; hold the guard until the
    /// build's outputs are written.
    pub fn begin_build(self: &Arc<Self>) -> Result<BuildGuard, LeaseError> {
        self.lease.enter(&self.state.db.conn())?;
        Ok(BuildGuard {
            engine: self.clone(),
        })
    }
}

/// A lease that another (or this) process holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveLease {
    pub id: String,
    pub pid: i64,
    pub since: i64,
}

/// The leases whose owners are alive; rows of dead owners are deleted (with
/// their lock files). Runs inside the caller's transaction.
pub(crate) fn live_leases(
    state_root: &Path,
    conn: &Connection,
) -> Result<Vec<LiveLease>, LeaseError> {
    let rows: Vec<LiveLease> = {
        let mut stmt = conn.prepare("SELECT id, pid, since FROM leases")?;
        let rows = stmt.query_map([], |r| {
            Ok(LiveLease {
                id: r.get(0)?,
                pid: r.get(1)?,
                since: r.get(2)?,
            })
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let dir = lease_dir(state_root);
    let mut live = Vec::new();
    for lease in rows {
        if is_alive(&dir, &lease.id) {
            live.push(lease);
        } else {
            tracing::debug!(lease = %lease.id, "removing the lease of a dead process");
            conn.execute("DELETE FROM leases WHERE id = ?1", [&lease.id])?;
            if valid_id(&lease.id) {
                let _ = std::fs::remove_file(dir.join(format!("{}.lock", lease.id)));
            }
        }
    }
    remove_stray_lock_files(&dir, &live);
    Ok(live)
}

/// Lock files without a row: left by a process that died between creating
/// the file and writing its row. Only old ones go (a lease being taken
/// right now has a file and no row yet), and only when nobody holds them.
fn remove_stray_lock_files(dir: &Path, live: &[LiveLease]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        if !valid_id(id) || live.iter().any(|l| l.id == id) {
            continue;
        }
        let is_old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < old);
        if is_old && !is_alive(dir, id) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Lease ids name files: only `[0-9a-f-]` is accepted from the DB.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Whether the owner of a lease still holds its lock. A missing or
/// lockable file means the owner is gone; a file we cannot open is treated
/// as alive (never delete on doubt).
fn is_alive(dir: &Path, id: &str) -> bool {
    if !valid_id(id) {
        return false;
    }
    let path = dir.join(format!("{id}.lock"));
    match File::open(&path) {
        Ok(f) => rustix::fs::flock(&f, FlockOperation::NonBlockingLockShared).is_err(),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> Connection {
        let conn = Connection::open(dir.join("m.db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    #[test]
    fn a_held_lease_is_live_and_a_released_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        let lease = Lease::acquire(dir.path(), &conn).unwrap();
        let live = live_leases(dir.path(), &conn).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].id, lease.id());
        lease.release(&conn);
        drop(lease);
        assert!(live_leases(dir.path(), &conn).unwrap().is_empty());
    }

    #[test]
    fn the_row_of_a_dead_owner_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        let lease = Lease::acquire(dir.path(), &conn).unwrap();
        let id = lease.id().to_string();
        // The process "dies": its lock goes away, its row stays.
        drop(lease);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        assert!(live_leases(dir.path(), &conn).unwrap().is_empty());
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        assert!(!lease_dir(dir.path()).join(format!("{id}.lock")).exists());
    }

    #[test]
    fn the_first_build_of_a_quiet_spell_renews_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        let lease = Lease::acquire(dir.path(), &conn).unwrap();
        conn.execute("UPDATE leases SET since = 5", []).unwrap();
        lease.since.store(5, Ordering::Relaxed);
        lease.enter(&conn).unwrap();
        let first = lease.since();
        assert!(first > 5);
        conn.execute("UPDATE leases SET since = 6", []).unwrap();
        lease.since.store(6, Ordering::Relaxed);
        lease.enter(&conn).unwrap();
        assert_eq!(
            lease.since(),
            6,
            "a build that starts while another runs renews nothing"
        );
        lease.leave();
        lease.leave();
        lease.enter(&conn).unwrap();
        assert!(lease.since() > 6);
        let row: i64 = conn
            .query_row("SELECT since FROM leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!(row, lease.since());
    }

    #[test]
    fn old_stray_lock_files_go_and_new_or_held_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        let leases = lease_dir(dir.path());
        std::fs::create_dir_all(&leases).unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let stray = leases.join("1-aa-0.lock");
        File::create(&stray)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let fresh = leases.join("2-bb-0.lock");
        File::create(&fresh).unwrap();
        let held_path = leases.join("3-cc-0.lock");
        let held = File::create(&held_path).unwrap();
        held.set_modified(long_ago).unwrap();
        rustix::fs::flock(&held, FlockOperation::LockExclusive).unwrap();
        live_leases(dir.path(), &conn).unwrap();
        assert!(!stray.exists());
        assert!(fresh.exists() && held_path.exists());
    }

    #[test]
    fn hostile_ids_never_name_files() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db(dir.path());
        conn.execute(
            "INSERT INTO leases (id, pid, since) VALUES ('../../etc/passwd', 1, 0)",
            [],
        )
        .unwrap();
        assert!(live_leases(dir.path(), &conn).unwrap().is_empty());
    }
}
