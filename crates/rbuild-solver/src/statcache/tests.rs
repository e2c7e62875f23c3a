//! The persistent stat cache across "processes" (separate instances on one
//! DB file), observed with inotify: a cached file is never read.

use super::*;
use rbuild_fileop::hash::{SelectionOptions, hash_selection};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An inotify watch for reads of one file.
struct ReadWatch {
    fd: OwnedFd,
}

impl ReadWatch {
    fn new(path: &Path) -> Option<Self> {
        // SAFETY: plain syscalls; the fd is owned right away.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid C string for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_ACCESS) };
        (wd >= 0).then_some(ReadWatch { fd })
    }

    /// Whether the file was read since the last call.
    fn was_read(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut read_any = false;
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return read_any;
            }
            read_any = true;
        }
    }
}

fn hash(ctx: &Path, cache: Option<&dyn StatCache>) -> String {
    hash_selection(
        ctx,
        &["data".to_string()],
        &SelectionOptions::dockerfile(),
        cache,
    )
    .unwrap()
}

/// A temporary directory with a context holding `data` (`contents`);
/// returns it, the context and where the metadata DB goes.
fn context(contents: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("data"), contents).unwrap();
    let db = dir.path().join("metadata.db");
    (dir, ctx, db)
}

#[test]
#[allow(clippy::print_stderr)] // the skip note
fn a_new_process_hashes_an_unchanged_file_without_reading_it() {
    let (_dir, ctx, db) = context(b"contents that matter");
    let Some(watch) = ReadWatch::new(&ctx.join("data")) else {
        eprintln!("skipped: inotify is not available");
        return;
    };
    let first = {
        let cache = DbStatCache::open(&db).unwrap();
        let h = hash(&ctx, Some(&cache));
        cache.flush().unwrap();
        h
    };
    assert!(
        watch.was_read(),
        "the first hash reads the file (the watch works)"
    );
    let second = DbStatCache::open(&db).unwrap();
    assert_eq!(hash(&ctx, Some(&second)), first);
    assert!(!watch.was_read(), "a cached file must not be read");
    // Without the cache the file is read again, and gives the same digest.
    assert_eq!(hash(&ctx, None), first);
    assert!(watch.was_read());
}

#[test]
fn a_changed_file_is_hashed_again() {
    let (_dir, ctx, db) = context(b"one");
    let before = {
        let cache = DbStatCache::open(&db).unwrap();
        hash(&ctx, Some(&cache))
    };
    std::fs::write(ctx.join("data"), b"two").unwrap();
    let cache = DbStatCache::open(&db).unwrap();
    let after = hash(&ctx, Some(&cache));
    assert_ne!(before, after);
    assert_eq!(after, hash(&ctx, None));
    drop(cache);
    assert_eq!(
        DbStatCache::open(&db).unwrap().len().unwrap(),
        1,
        "one row per path"
    );
}

#[test]
fn the_table_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DbStatCache::open_with_limit(&dir.path().join("m.db"), 100).unwrap();
    for i in 0..250u64 {
        let key = StatKey {
            path: PathBuf::from(format!("/ctx/f{i}")),
            size: i,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: i,
            dev: 1,
            mode: 0o644,
        };
        cache.put(key, [i as u8; 32]);
        if i % 50 == 49 {
            cache.flush().unwrap();
        }
    }
    cache.flush().unwrap();
    let rows = cache.len().unwrap();
    assert!(rows <= 100, "{rows} rows");
    assert!(rows >= 50, "{rows} rows");
}

#[test]
fn a_row_with_a_bad_hash_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = DbStatCache::open(&dir.path().join("m.db")).unwrap();
    cache
        .conn
        .lock()
        .unwrap()
        .execute(
            "INSERT INTO stat_cache (path, size, mtime_ns, ctime_ns, inode, dev, mode, hash, used)
             VALUES (X'2f78', 1, 0, 0, 1, 1, 420, X'00', 0)",
            [],
        )
        .unwrap();
    let key = StatKey {
        path: "/x".into(),
        size: 1,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        dev: 1,
        mode: 420,
    };
    assert_eq!(cache.get(&key), None);
}

#[test]
fn files_in_the_root_directory_and_relative_paths_are_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let key = |p: &str| StatKey {
        path: p.into(),
        size: 1,
        mtime_ns: 2,
        ctime_ns: 3,
        inode: 4,
        dev: 5,
        mode: 0o644,
    };
    {
        let cache = DbStatCache::open(&db).unwrap();
        cache.put(key("/top"), [1; 32]);
        cache.put(key("relative/file"), [2; 32]);
    }
    let cache = DbStatCache::open(&db).unwrap();
    assert_eq!(cache.get(&key("/top")), Some([1; 32]));
    assert_eq!(cache.get(&key("relative/file")), Some([2; 32]));
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        cache.get(&StatKey {
            path: cwd.join("relative/file"),
            ..key("")
        }),
        Some([2; 32])
    );
    assert_eq!(cache.get(&key("/other")), None);
    assert_eq!(
        cache.get(&StatKey {
            size: 9,
            ..key("/top")
        }),
        None,
        "another identity is a miss"
    );
}

#[test]
fn a_directory_is_read_from_the_db_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let key = |i: u64| StatKey {
        path: format!("/ctx/d/f{i}").into(),
        size: i,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: i,
        dev: 1,
        mode: 0o644,
    };
    {
        let cache = DbStatCache::open(&db).unwrap();
        for i in 0..10 {
            cache.put(key(i), [i as u8; 32]);
        }
    }
    let cache = DbStatCache::open(&db).unwrap();
    assert_eq!(cache.get(&key(0)), Some([0; 32]));
    // Rows added behind its back are not seen: the directory is loaded.
    DbStatCache::open(&db).unwrap().put(key(99), [9; 32]);
    for i in 1..10 {
        assert_eq!(cache.get(&key(i)), Some([i as u8; 32]));
    }
    assert_eq!(cache.get(&key(99)), None);
}
