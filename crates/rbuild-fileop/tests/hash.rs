//! `hash_selection`: what changes a cache key and what must not.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::build;
use rbuild_fileop::{MemoryStatCache, SelectionOptions, StatCache, StatKey, hash_selection};

const CTX: &[&str] = &[
    "f requirements.txt flask",
    "f app/main.py print(1)",
    "f app/util.py x=1",
    "f app/data/blob.bin bytes",
    "f README.md readme",
    "f notes.log log",
    "l app/link main.py",
];

fn h(root: &Path, srcs: &[&str], opts: &SelectionOptions) -> String {
    let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
    hash_selection(root, &srcs, opts, None).unwrap()
}

fn ctx() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    build(d.path(), CTX);
    d
}

/// Each row: a mutation of the context and whether the hash of the selection
/// must change.
#[test]
fn hash_sensitivity_table() {
    type Mutation = fn(&Path);
    let rows: &[(&str, &[&str], Mutation, bool)] = &[
        (
            "edit unselected file",
            &["requirements.txt"],
            |r| fs::write(r.join("README.md"), "new").unwrap(),
            false,
        ),
        (
            "edit selected file",
            &["requirements.txt"],
            |r| fs::write(r.join("requirements.txt"), "django").unwrap(),
            true,
        ),
        (
            "touch selected file (mtime only)",
            &["requirements.txt"],
            |r| {
                let f = fs::File::options()
                    .write(true)
                    .open(r.join("requirements.txt"))
                    .unwrap();
                f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
                    .unwrap();
            },
            false,
        ),
        (
            "chmod +x selected file",
            &["requirements.txt"],
            |r| {
                fs::set_permissions(
                    r.join("requirements.txt"),
                    fs::Permissions::from_mode(0o755),
                )
                .unwrap()
            },
            true,
        ),
        (
            "chmod unselected file",
            &["requirements.txt"],
            |r| {
                fs::set_permissions(r.join("README.md"), fs::Permissions::from_mode(0o600)).unwrap()
            },
            false,
        ),
        (
            "add file in selected dir",
            &["app"],
            |r| fs::write(r.join("app/new.py"), "").unwrap(),
            true,
        ),
        (
            "add file outside selected dir",
            &["app"],
            |r| fs::write(r.join("other.py"), "").unwrap(),
            false,
        ),
        (
            "rename in selected dir",
            &["app"],
            |r| fs::rename(r.join("app/util.py"), r.join("app/utils.py")).unwrap(),
            true,
        ),
        (
            "edit nested file",
            &["app"],
            |r| fs::write(r.join("app/data/blob.bin"), "other").unwrap(),
            true,
        ),
        (
            "retarget symlink",
            &["app"],
            |r| {
                fs::remove_file(r.join("app/link")).unwrap();
                symlink("util.py", r.join("app/link")).unwrap();
            },
            true,
        ),
        (
            "chmod selected dir",
            &["app"],
            |r| fs::set_permissions(r.join("app"), fs::Permissions::from_mode(0o700)).unwrap(),
            true,
        ),
        (
            "new wildcard match",
            &["*.txt"],
            |r| fs::write(r.join("more.txt"), "").unwrap(),
            true,
        ),
        (
            "non-matching new file",
            &["*.txt"],
            |r| fs::write(r.join("more.md"), "").unwrap(),
            false,
        ),
        (
            "edit excluded file",
            &["."],
            |r| fs::write(r.join("notes.log"), "changed").unwrap(),
            false,
        ),
        (
            "edit included file under exclusion",
            &["."],
            |r| fs::write(r.join("README.md"), "changed").unwrap(),
            true,
        ),
        (
            "same content rewritten",
            &["app"],
            |r| fs::write(r.join("app/main.py"), "print(1)").unwrap(),
            false,
        ),
        (
            "empty dir added",
            &["app"],
            |r| fs::create_dir(r.join("app/empty")).unwrap(),
            true,
        ),
        (
            "setuid bit",
            &["app"],
            |r| {
                fs::set_permissions(r.join("app/main.py"), fs::Permissions::from_mode(0o4644))
                    .unwrap()
            },
            true,
        ),
    ];
    let mut opts = SelectionOptions::dockerfile();
    opts.exclude = vec!["*.log".into()];
    let mut failures = Vec::new();
    for (name, srcs, mutate, changes) in rows {
        let d = ctx();
        let before = h(d.path(), srcs, &opts);
        mutate(d.path());
        let after = h(d.path(), srcs, &opts);
        if (before != after) != *changes {
            failures.push(format!(
                "{name}: changed={} want {changes}",
                before != after
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hash_is_stable_across_copies_and_owners() {
    let a = ctx();
    let b = ctx();
    let srcs = &["app", "requirements.txt"];
    let o = SelectionOptions::dockerfile();
    assert_eq!(
        h(a.path(), srcs, &o),
        h(b.path(), srcs, &o),
        "same tree, different inodes and mtimes"
    );
    assert!(h(a.path(), srcs, &o).starts_with("sha256:"));
    // Source order and names are part of the key (they decide destinations).
    assert_ne!(
        h(a.path(), &["app", "requirements.txt"], &o),
        h(a.path(), &["requirements.txt", "app"], &o)
    );
    if common::is_root() {
        std::os::unix::fs::lchown(b.path().join("app/main.py"), Some(1234), Some(1234)).unwrap();
        assert_eq!(
            h(a.path(), srcs, &o),
            h(b.path(), srcs, &o),
            "context owners do not count"
        );
        let mut with_owner = o.clone();
        with_owner.include_owner = true;
        assert_ne!(
            h(a.path(), srcs, &with_owner),
            h(b.path(), srcs, &with_owner)
        );
    }
}

#[test]
fn symlink_escape_is_hashed_as_a_link() {
    let d = ctx();
    symlink("/etc/passwd", d.path().join("app/pw")).unwrap();
    let o = SelectionOptions::dockerfile();
    let before = h(d.path(), &["app"], &o);
    // Nothing outside the context is read: the link's target text counts, not
    // the host file's content. Following it at the top stays in the context.
    let srcs = vec!["app/pw".to_string()];
    assert!(
        hash_selection(d.path(), &srcs, &o, None).is_err(),
        "/etc/passwd inside the context does not exist"
    );
    fs::create_dir(d.path().join("etc")).unwrap();
    fs::write(d.path().join("etc/passwd"), "ctx").unwrap();
    assert!(hash_selection(d.path(), &srcs, &o, None).is_ok());
    assert_eq!(before, h(d.path(), &["app"], &o));
}

/// A cache that counts lookups and stores, to show warm runs read nothing.
#[derive(Default)]
struct Counting {
    inner: MemoryStatCache,
    hits: std::sync::atomic::AtomicUsize,
    puts: std::sync::atomic::AtomicUsize,
}

impl StatCache for Counting {
    fn get(&self, key: &StatKey) -> Option<[u8; 32]> {
        let r = self.inner.get(key);
        if r.is_some() {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
    fn put(&self, key: StatKey, hash: [u8; 32]) {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.put(key, hash);
    }
}

#[test]
fn stat_cache_makes_noop_rehash_read_nothing() {
    let d = ctx();
    let srcs = vec![".".to_string()];
    let o = SelectionOptions::dockerfile();
    let cache = Counting::default();
    let cold = hash_selection(d.path(), &srcs, &o, Some(&cache)).unwrap();
    let files = 6; // regular files in CTX
    assert_eq!(cache.puts.load(std::sync::atomic::Ordering::Relaxed), files);
    let warm = hash_selection(d.path(), &srcs, &o, Some(&cache)).unwrap();
    assert_eq!(cold, warm);
    assert_eq!(
        cache.puts.load(std::sync::atomic::Ordering::Relaxed),
        files,
        "no file re-read"
    );
    assert_eq!(cache.hits.load(std::sync::atomic::Ordering::Relaxed), files);

    // An edit that keeps size and mtime is still caught (ctime/inode differ).
    let p = d.path().join("requirements.txt");
    let mtime = fs::metadata(&p).unwrap().modified().unwrap();
    fs::write(&p, "FLASK").unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let edited = hash_selection(d.path(), &srcs, &o, Some(&cache)).unwrap();
    assert_ne!(edited, warm);
    assert_eq!(
        edited,
        hash_selection(d.path(), &srcs, &o, None).unwrap(),
        "cached and uncached agree"
    );
}

#[test]
fn missing_source_and_bad_pattern_are_errors() {
    let d = ctx();
    let o = SelectionOptions::dockerfile();
    assert!(hash_selection(d.path(), &["nope".to_string()], &o, None).is_err());
    assert!(hash_selection(d.path(), &["[x".to_string()], &o, None).is_err());
    // An empty wildcard is allowed (and differs from another pattern).
    let a = hash_selection(d.path(), &["*.none".to_string()], &o, None).unwrap();
    let b = hash_selection(d.path(), &["*.nothing".to_string()], &o, None).unwrap();
    assert_ne!(a, b);
}

#[test]
fn dockerignored_files_do_not_count() {
    let d = ctx();
    let mut o = SelectionOptions::dockerfile();
    o.context_ignore = vec!["app/data".into(), "*.log".into()];
    let before = h(d.path(), &["."], &o);
    fs::write(d.path().join("app/data/blob.bin"), "changed").unwrap();
    fs::write(d.path().join("notes.log"), "changed").unwrap();
    fs::write(d.path().join("new.log"), "new").unwrap();
    assert_eq!(before, h(d.path(), &["."], &o));
    fs::write(d.path().join("app/main.py"), "changed").unwrap();
    assert_ne!(before, h(d.path(), &["."], &o));
    // Relative to the context root, not to the selected source.
    let app = h(d.path(), &["app"], &o);
    fs::write(d.path().join("app/data/blob.bin"), "again").unwrap();
    assert_eq!(app, h(d.path(), &["app"], &o));
}
