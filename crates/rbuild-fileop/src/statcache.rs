//! Persistence for [`MemoryStatCache`]: one file, read at start and written
//! (atomically: temporary file, then rename) at the end of a build.
//!
//! Why a file and not one database row per lookup: a warm rebuild of a
//! 20,000-file context does 20,000 lookups; an in-memory map loaded in one
//! read keeps them at hash-map speed. The file is only a cache: a missing,
//! truncated or foreign file yields an error the caller answers by starting
//! empty, and every entry is still validated by its full stat identity.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::hash::{MemoryStatCache, StatKey};

const MAGIC: &[u8] = b"rbuild-statcache-v1\n";
/// Longest path accepted from the file (Linux `PATH_MAX` is 4096).
const MAX_PATH: usize = 64 * 1024;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("stat cache: {what}"))
}

impl MemoryStatCache {
    /// Load a cache saved by [`MemoryStatCache::save`]. Entries start out
    /// unused; any format problem is an `InvalidData` error.
    pub fn load(path: &Path) -> io::Result<MemoryStatCache> {
        let mut r = BufReader::new(std::fs::File::open(path)?);
        let mut magic = [0u8; MAGIC.len()];
        r.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(bad("unknown format"));
        }
        let mut map = HashMap::new();
        loop {
            let mut len = [0u8; 4];
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes(len) as usize;
            if len > MAX_PATH {
                return Err(bad("path too long"));
            }
            let mut p = vec![0u8; len];
            r.read_exact(&mut p)?;
            let mut rec = [0u8; 8 * 5 + 4 + 32];
            r.read_exact(&mut rec)
                .map_err(|_| bad("truncated record"))?;
            let u64_at =
                |i: usize| u64::from_le_bytes(rec[i..i + 8].try_into().unwrap_or_default());
            let key = StatKey {
                path: PathBuf::from(std::ffi::OsString::from_vec(p)),
                size: u64_at(0),
                mtime_ns: u64_at(8) as i64,
                ctime_ns: u64_at(16) as i64,
                inode: u64_at(24),
                dev: u64_at(32),
                mode: u32::from_le_bytes(rec[40..44].try_into().unwrap_or_default()),
            };
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&rec[44..76]);
            map.insert(key, (digest, false));
        }
        Ok(MemoryStatCache {
            map: Mutex::new(map),
        })
    }

    /// Write the cache to `path` (temporary file + rename). With
    /// `used_only`, entries this run did not touch (deleted or renamed files,
    /// other contexts) are dropped, so the file does not grow forever.
    pub fn save(&self, path: &Path, used_only: bool) -> io::Result<()> {
        let map = self
            .map
            .lock()
            .map_err(|_| io::Error::other("stat cache lock poisoned"))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            for (k, (digest, used)) in map.iter() {
                if used_only && !used {
                    continue;
                }
                let p = k.path.as_os_str().as_bytes();
                if p.len() > MAX_PATH {
                    continue;
                }
                w.write_all(&(p.len() as u32).to_le_bytes())?;
                w.write_all(p)?;
                for v in [k.size, k.mtime_ns as u64, k.ctime_ns as u64, k.inode, k.dev] {
                    w.write_all(&v.to_le_bytes())?;
                }
                w.write_all(&k.mode.to_le_bytes())?;
                w.write_all(digest)?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::StatCache;

    fn key(p: &str, size: u64) -> StatKey {
        StatKey {
            path: PathBuf::from(p),
            size,
            mtime_ns: -5,
            ctime_ns: 7,
            inode: 9,
            dev: 11,
            mode: 0o755,
        }
    }

    #[test]
    fn round_trip_and_pruning() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("stat.cache");
        let c = MemoryStatCache::new();
        c.put(key("/ctx/a", 1), [1; 32]);
        c.put(key("/ctx/b", 2), [2; 32]);
        c.save(&f, false).unwrap();
        let loaded = MemoryStatCache::load(&f).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get(&key("/ctx/a", 1)), Some([1; 32]));
        assert_eq!(
            loaded.get(&key("/ctx/a", 2)),
            None,
            "any stat difference misses"
        );
        // Only `/ctx/a` was used since loading.
        loaded.save(&f, true).unwrap();
        let pruned = MemoryStatCache::load(&f).unwrap();
        assert_eq!(pruned.len(), 1);
        assert_eq!(pruned.get(&key("/ctx/a", 1)), Some([1; 32]));
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("stat.cache");
        assert!(MemoryStatCache::load(&f).is_err(), "missing");
        std::fs::write(&f, b"something else entirely").unwrap();
        assert!(MemoryStatCache::load(&f).is_err(), "foreign");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&f, &bytes).unwrap();
        assert!(MemoryStatCache::load(&f).is_err(), "absurd length");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"/ab");
        bytes.extend_from_slice(&[0u8; 10]);
        std::fs::write(&f, &bytes).unwrap();
        assert!(MemoryStatCache::load(&f).is_err(), "truncated");
    }
}
