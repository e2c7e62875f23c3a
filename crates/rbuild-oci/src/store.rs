//! The content store: blobs by digest on disk.
//!
//! Layout (OCI-layout-like, so a blob's path is obvious when debugging):
//!
//! ```text
//! <root>/blobs/sha256/<hex>   committed blobs, read-only, never rewritten
//! <root>/ingest/<random>.tmp  writes in progress, each flock()ed by its writer
//! ```
//!
//! The invariants callers rely on:
//! - a blob path exists only with its complete, verified content: writes go to
//!   a temp file that is fsynced, checked against the expected digest and size,
//!   and moved into place with a no-replace rename;
//! - concurrent ingests of one digest (threads or processes) are safe: each
//!   writes its own temp file, the first commit wins, later ones discard
//!   theirs, and the committed file is never replaced under a reader;
//! - a killed writer leaves only a temp file whose lock died with it, and
//!   [`ContentStore::open`] removes exactly those (a live writer's lock keeps
//!   its file).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, RenameFlags};

use crate::digest::{Digest, Digester};

/// Errors from the content store; each names the blob or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("content store I/O error on `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("content {0}: not found")]
    NotFound(Digest),
    /// The data written does not hash to the expected digest.
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The blob is larger than the caller is willing to hold in memory.
    #[error("content {digest}: {size} bytes is more than the {limit} allowed here")]
    TooLarge { digest: Digest, size: u64, limit: u64 },
    /// The data written has the wrong length.
    #[error("content {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
}

/// Result alias for this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

/// A directory of blobs addressed by digest. Cheap to clone; all methods
/// take `&self` and are safe to call from many threads and processes.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) a store at `root`, and removes temp files
    /// left by writers that died (those whose flock can be taken).
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        fs::create_dir_all(&ingest).map_err(io_err(&ingest))?;
        let store = ContentStore { root: root.to_owned(), blobs, ingest };
        store.remove_stale_ingests()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn remove_stale_ingests(&self) -> Result<()> {
        let entries = fs::read_dir(&self.ingest).map_err(io_err(&self.ingest))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.ingest))?;
            let path = entry.path();
            let Ok(file) = File::open(&path) else { continue };
            // A live writer holds the lock; only orphans are removable.
            if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                tracing::debug!(path = %path.display(), "removing stale ingest");
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
        }
        Ok(())
    }

    /// Where the blob lives (whether or not it exists). Safe to build from
    /// any [`Digest`]: the type admits only fixed-length hex names.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// The blob's size.
    pub fn size(&self, d: &Digest) -> Result<u64> {
        match fs::metadata(self.path(d)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(d.clone())),
            Err(e) => Err(io_err(self.path(d))(e)),
        }
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let path = self.path(d);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(d.clone())),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Reads a whole blob (for small things: configs, manifests).
    pub fn read_all(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(d)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(io_err(self.path(d)))?;
        Ok(buf)
    }

    /// Reads a whole blob only if it is at most `limit` bytes (configs and
    /// manifests from registries are hostile input: a 10 GB "config" must
    /// not be read into memory).
    pub fn read_limited(&self, d: &Digest, limit: u64) -> Result<Vec<u8>> {
        let f = self.open_blob(d)?;
        let size = f.metadata().map_err(io_err(self.path(d)))?.len();
        if size > limit {
            return Err(StoreError::TooLarge { digest: d.clone(), size, limit });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.take(limit).read_to_end(&mut buf).map_err(io_err(self.path(d)))?;
        Ok(buf)
    }

    /// Stores bytes; returns their digest (a no-op if already present).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256(bytes);
        if self.contains(&d) {
            return Ok(d);
        }
        let mut ing = self.ingest(Some((&d, Some(bytes.len() as u64))))?;
        ing.write_all(bytes).map_err(io_err(ing.temp_path().to_owned()))?;
        ing.commit()?;
        Ok(d)
    }

    /// Streams a reader into the store, verifying `expected` if given.
    pub fn put_reader(&self, mut r: impl Read, expected: Option<(&Digest, Option<u64>)>) -> Result<(Digest, u64)> {
        let mut ing = self.ingest(expected)?;
        let tmp = ing.temp_path().to_owned();
        io::copy(&mut r, &mut ing).map_err(io_err(tmp))?;
        ing.commit()
    }

    /// Starts writing a blob. With `expected`, the commit verifies digest
    /// (and size), and writing more than the expected size fails at once,
    /// so a hostile server cannot fill the disk through us.
    pub fn ingest(&self, expected: Option<(&Digest, Option<u64>)>) -> Result<Ingest> {
        loop {
            let tmp = tempfile::Builder::new()
                .prefix("ingest-")
                .suffix(".tmp")
                .tempfile_in(&self.ingest)
                .map_err(io_err(&self.ingest))?;
            // Lock, then check the name still points at our inode: a
            // concurrent `open()` may have judged the file stale between its
            // creation and our lock. If so, start over with a new name.
            if rustix::fs::flock(tmp.as_file(), FlockOperation::NonBlockingLockExclusive).is_err() {
                continue;
            }
            let ours = rustix::fs::fstat(tmp.as_file()).map_err(|e| io_err(tmp.path())(e.into()))?;
            match rustix::fs::stat(tmp.path()) {
                Ok(named) if named.st_ino == ours.st_ino && named.st_dev == ours.st_dev => {}
                _ => continue,
            }
            return Ok(Ingest {
                store: self.clone(),
                file: Some(tmp),
                digester: Digester::new(),
                expected: expected.map(|(d, s)| (d.clone(), s)),
            });
        }
    }

    /// Re-hashes a stored blob and checks it still matches its name (for
    /// `fsck`-style checks after a crash or disk trouble). A corrupt blob is
    /// reported, not removed.
    pub fn verify(&self, d: &Digest) -> Result<u64> {
        let f = self.open_blob(d)?;
        let (actual, size) = Digest::sha256_reader(f).map_err(io_err(self.path(d)))?;
        if actual != *d {
            return Err(StoreError::DigestMismatch { expected: d.clone(), actual });
        }
        Ok(size)
    }

    /// Deletes a blob. Readers holding it open keep reading the old inode.
    pub fn remove(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.path(d)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(d.clone())),
            Err(e) => Err(io_err(self.path(d))(e)),
        }
    }

    /// All blobs with their sizes, sorted by digest. Files whose names are
    /// not valid digests are ignored.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err(&self.blobs))? {
            let entry = entry.map_err(io_err(&self.blobs))?;
            let Some(name) = entry.file_name().to_str().map(|n| format!("sha256:{n}")) else { continue };
            let Ok(d) = Digest::parse(&name) else { continue };
            let meta = entry.metadata().map_err(io_err(entry.path()))?;
            if meta.is_file() {
                out.push((d, meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A blob being written. Implements [`Write`]; call [`Ingest::commit`] to
/// verify and publish it. Dropping it without committing deletes the temp file.
pub struct Ingest {
    store: ContentStore,
    file: Option<tempfile::NamedTempFile>,
    digester: Digester,
    expected: Option<(Digest, Option<u64>)>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("temp", &self.temp_path()).field("written", &self.written()).finish()
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.size()
    }

    /// The temp file's path (for error messages).
    pub fn temp_path(&self) -> &Path {
        self.file.as_ref().map_or(Path::new(""), |f| f.path())
    }

    /// Verifies, fsyncs and atomically publishes the blob. If the blob is
    /// already present (another writer won), the temp file is discarded and
    /// the existing blob is kept untouched.
    pub fn commit(mut self) -> Result<(Digest, u64)> {
        let Some(tmp) = self.file.take() else {
            return Err(io_err(&self.store.ingest)(io::Error::other("ingest already finished")));
        };
        let size = self.digester.size();
        let actual = std::mem::take(&mut self.digester).finish();
        if let Some((expected, exp_size)) = &self.expected {
            if let Some(s) = exp_size
                && *s != size
            {
                return Err(StoreError::SizeMismatch { digest: expected.clone(), expected: *s, actual: size });
            }
            if *expected != actual {
                return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
            }
        }
        let file = tmp.as_file();
        file.sync_all().map_err(io_err(tmp.path()))?;
        file.set_permissions(fs::Permissions::from_mode(0o444)).map_err(io_err(tmp.path()))?;
        let target = self.store.path(&actual);
        match rustix::fs::renameat_with(rustix::fs::CWD, tmp.path(), rustix::fs::CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => {
                // The temp name is gone; make sure drop does not unlink a reused name.
                let _ = tmp.into_temp_path().keep();
            }
            Err(rustix::io::Errno::EXIST) => {
                tracing::debug!(digest = %actual, "blob already present; discarding duplicate ingest");
                drop(tmp);
            }
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                // Filesystem without RENAME_NOREPLACE: link() also never replaces.
                match fs::hard_link(tmp.path(), &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&target)(e)),
                }
                drop(tmp);
            }
            Err(e) => return Err(io_err(&target)(e.into())),
        }
        if let Ok(dir) = File::open(&self.store.blobs) {
            let _ = dir.sync_all();
        }
        Ok((actual, size))
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((d, Some(limit))) = &self.expected
            && self.digester.size() + buf.len() as u64 > *limit
        {
            return Err(io::Error::other(format!("content {d}: more data than the expected {limit} bytes")));
        }
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("ingest already finished"))?;
        let n = file.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    fn ingest_files(root: &Path) -> Vec<PathBuf> {
        fs::read_dir(root.join("ingest")).unwrap().map(|e| e.unwrap().path()).collect()
    }

    #[test]
    fn put_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = s.put_bytes(b"hello").unwrap();
        assert_eq!(d, Digest::sha256(b"hello"));
        assert!(s.contains(&d));
        assert_eq!(s.size(&d).unwrap(), 5);
        assert_eq!(s.read_all(&d).unwrap(), b"hello");
        assert_eq!(s.read_limited(&d, 5).unwrap(), b"hello");
        assert!(matches!(s.read_limited(&d, 4), Err(StoreError::TooLarge { size: 5, limit: 4, .. })));
        assert_eq!(s.put_bytes(b"hello").unwrap(), d);
        assert_eq!(s.list().unwrap(), vec![(d.clone(), 5)]);
        assert_eq!(s.verify(&d).unwrap(), 5);
        let mut perms = fs::metadata(s.path(&d)).unwrap().permissions();
        perms.set_mode(0o644);
        fs::set_permissions(s.path(&d), perms).unwrap();
        fs::write(s.path(&d), b"rot").unwrap();
        assert!(matches!(s.verify(&d), Err(StoreError::DigestMismatch { .. })));
        s.remove(&d).unwrap();
        assert!(!s.contains(&d));
        assert!(matches!(s.read_all(&d), Err(StoreError::NotFound(_))));
        assert!(matches!(s.remove(&d), Err(StoreError::NotFound(_))));
        assert!(ingest_files(dir.path()).is_empty());
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let claimed = Digest::sha256(b"good");
        let mut ing = s.ingest(Some((&claimed, None))).unwrap();
        ing.write_all(b"evil").unwrap();
        let err = ing.commit().unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(s.list().unwrap().is_empty());
        assert!(ingest_files(dir.path()).is_empty());
        // Wrong size, right digest is also refused.
        let mut ing = s.ingest(Some((&claimed, Some(3)))).unwrap();
        assert!(ing.write_all(b"good").is_err(), "writing past the expected size must fail");
        drop(ing);
        let mut ing = s.ingest(Some((&claimed, Some(5)))).unwrap();
        ing.write_all(b"good").unwrap();
        assert!(matches!(ing.commit(), Err(StoreError::SizeMismatch { .. })));
        assert!(s.list().unwrap().is_empty());
        assert!(ingest_files(dir.path()).is_empty());
        let (d, n) = s.put_reader(&b"good"[..], Some((&claimed, Some(4)))).unwrap();
        assert_eq!((d, n), (claimed, 4));
    }

    #[test]
    fn dropped_ingest_removes_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let mut ing = s.ingest(None).unwrap();
        ing.write_all(b"partial").unwrap();
        assert_eq!(ingest_files(dir.path()).len(), 1);
        drop(ing);
        assert!(ingest_files(dir.path()).is_empty());
    }

    #[test]
    fn concurrent_ingests_of_one_digest_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(ContentStore::open(dir.path()).unwrap());
        let data: Arc<Vec<u8>> = Arc::new((0..200_000u32).flat_map(|i| i.to_le_bytes()).collect());
        let want = Digest::sha256(&data);
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (s, data, want, barrier) = (s.clone(), data.clone(), want.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut ing = s.ingest(Some((&want, Some(data.len() as u64)))).unwrap();
                    barrier.wait();
                    for chunk in data.chunks(4096) {
                        ing.write_all(chunk).unwrap();
                    }
                    ing.commit().unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().0, want);
        }
        assert_eq!(s.read_all(&want).unwrap(), *data);
        assert_eq!(s.list().unwrap().len(), 1);
        assert!(ingest_files(dir.path()).is_empty());
    }

    #[test]
    fn open_removes_orphans_but_keeps_live_ingests() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let mut live = s.ingest(None).unwrap();
        live.write_all(b"in progress").unwrap();
        let orphan = dir.path().join("ingest").join("ingest-dead.tmp");
        fs::write(&orphan, b"left by a killed writer").unwrap();
        let s2 = ContentStore::open(dir.path()).unwrap();
        assert!(!orphan.exists());
        assert!(live.temp_path().exists());
        let (d, _) = live.commit().unwrap();
        assert!(s2.contains(&d));
    }

    /// Runs as a child process (see `killed_process_ingest_is_cleaned`).
    #[test]
    fn child_ingest_then_hang() {
        let Ok(root) = std::env::var("RBUILD_OCI_TEST_STORE_CHILD") else { return };
        let s = ContentStore::open(Path::new(&root)).unwrap();
        let mut ing = s.ingest(None).unwrap();
        ing.write_all(b"half a blob").unwrap();
        ing.flush().unwrap();
        fs::write(Path::new(&root).join("ready"), b"").unwrap();
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn killed_process_ingest_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "store::tests::child_ingest_then_hang", "--nocapture", "--test-threads=1"])
            .env("RBUILD_OCI_TEST_STORE_CHILD", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ready = dir.path().join("ready");
        while !ready.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited early: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // While the writer lives, its temp file is kept.
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(ingest_files(dir.path()).len(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        // After it died, the next open removes it.
        let s = ContentStore::open(dir.path()).unwrap();
        assert!(ingest_files(dir.path()).is_empty());
        assert!(s.list().unwrap().is_empty());
    }
}
