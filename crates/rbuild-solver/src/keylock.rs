//! Per-cache-key locks: a vertex that two builds need at once (two stages
//! of concurrent builds in one engine, or two `rbuild` processes on one
//! state dir) runs once. The first to miss the cache takes the key's lock
//! and runs; the others wait, then find its result in the cache.
//!
//! A lock is an exclusive `flock` on `locks/<key hex>` in the state dir.
//! `flock` locks belong to an open file description, so two opens in one
//! process exclude each other as two processes do, and the kernel drops
//! the lock of a process that dies. The holder removes the file when it is
//! done, before unlocking, so the directory stays small; a waiter that wins
//! the lock of a removed file sees that the path now names another inode
//! (or nothing) and tries again on the current one. Correctness never
//! depends on the lock: the DB keeps the first result recorded for a key,
//! so at worst (a lock dir on a filesystem without `flock`) work is done
//! twice, as before.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::FlockOperation;

/// A held key lock; dropping it removes the lock file and unlocks.
#[derive(Debug)]
pub(crate) struct KeyLock {
    path: PathBuf,
    // Closed (so unlocked) after the file is removed: see `Drop`.
    _file: File,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lock file of `key` (`sha256:<hex>`) in `dir`: the hex part, checked,
/// so a key can never name a path elsewhere.
fn lock_path(dir: &Path, key: &str) -> Option<PathBuf> {
    let hex = key.rsplit(':').next()?;
    (!hex.is_empty() && hex.len() <= 128 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| dir.join(hex))
}

/// Whether `file` is still what `path` names (the previous holder may have
/// removed it between our open and our lock).
fn still_current(file: &File, path: &Path) -> bool {
    let (Ok(held), Ok(now)) = (rustix::fs::fstat(file.as_fd()), rustix::fs::stat(path)) else {
        return false;
    };
    (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
}

/// Waits for the lock of `key` in `dir` (created if missing). Polls rather
/// than blocking a thread, so a cancelled build stops waiting at once.
/// `None` when the key cannot name a lock file or the lock dir cannot be
/// used: the caller then runs unlocked.
pub(crate) async fn lock(dir: &Path, key: &str) -> Option<KeyLock> {
    let path = lock_path(dir, key)?;
    std::fs::create_dir_all(dir).ok()?;
    let mut pause = Duration::from_millis(5);
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) if still_current(&file, &path) => return Some(KeyLock { path, _file: file }),
            Ok(()) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(_) => return None,
        }
        drop(file);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sha256:00ff";

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first_and_the_file_goes_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), KEY).await.unwrap();
        let waiting = tokio::spawn({
            let dir = dir.path().to_path_buf();
            async move { lock(&dir, KEY).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second lock did not wait for the first");
        drop(first);
        let second = waiting.await.unwrap();
        assert!(dir.path().join("00ff").exists(), "the new holder's file");
        drop(second);
        assert!(!dir.path().join("00ff").exists(), "the lock file stays after the last holder");
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _a = lock(dir.path(), "sha256:aa").await.unwrap();
        let b = tokio::time::timeout(Duration::from_secs(30), lock(dir.path(), "sha256:bb")).await;
        assert!(b.unwrap().is_some());
    }

    #[test]
    fn keys_never_name_other_paths() {
        let dir = Path::new("/state/locks");
        assert_eq!(lock_path(dir, "sha256:abc1"), Some(dir.join("abc1")));
        assert_eq!(lock_path(dir, "sha256:../../etc/passwd"), None);
        assert_eq!(lock_path(dir, "sha256:"), None);
        assert_eq!(lock_path(dir, "sha256:a/b"), None);
    }
}
