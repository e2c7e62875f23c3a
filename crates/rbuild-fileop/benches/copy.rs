//! Timing of the hot paths on a 20,000-file tree (no criterion: one run of
//! each, best of three where cheap). Run with
//! `cargo bench -p rbuild-fileop --bench copy`.
#![allow(clippy::print_stdout)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rbuild_fileop::{CopyOptions, MemoryStatCache, SelectionOptions, copy, hash_selection};

const DIRS: usize = 200;
const FILES_PER_DIR: usize = 100;

fn make_tree(root: &Path) -> u64 {
    let mut bytes = 0u64;
    for d in 0..DIRS {
        let dir = root.join(format!("pkg{d:03}/src"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            // 200 B .. 4 KiB, deterministic content.
            let len = 200 + (d * 131 + f * 37) % 3900;
            let body: Vec<u8> = (0..len).map(|i| ((i * 7 + d + f) % 251) as u8).collect();
            bytes += len as u64;
            fs::write(dir.join(format!("file{f:03}.rs")), body).unwrap();
        }
    }
    bytes
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    // RBUILD_BENCH_DIR picks the filesystem (e.g. /dev/shm to leave the disk out).
    let base = std::env::var_os("RBUILD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let ctx = tempfile::tempdir_in(&base).unwrap();
    let (bytes, made) = time(|| make_tree(ctx.path()));
    let files = DIRS * FILES_PER_DIR;
    println!(
        "tree: {files} files in {DIRS} dirs, {:.1} MiB, created in {made:.2?}",
        bytes as f64 / 1048576.0
    );

    let srcs = vec![".".to_string()];
    let mut opts = CopyOptions::dockerfile();
    opts.chown = Some((0, 0));
    let mut copy_times = Vec::new();
    for _ in 0..3 {
        let dst = tempfile::tempdir_in(&base).unwrap();
        let (stats, t) = time(|| copy(ctx.path(), &srcs, dst.path(), "/app/", &opts).unwrap());
        assert_eq!(stats.files as usize, files);
        copy_times.push(t);
    }
    let best = copy_times.iter().min().copied().unwrap_or_default();
    println!(
        "copy into empty dest: best {best:.2?} of {copy_times:.2?} ({:.0} files/s)",
        files as f64 / best.as_secs_f64()
    );

    let sel = SelectionOptions::dockerfile();
    let (cold_hash, cold) = time(|| hash_selection(ctx.path(), &srcs, &sel, None).unwrap());
    println!("hash_selection, no stat cache: {cold:.2?}");
    let cache = MemoryStatCache::new();
    let (_, fill) = time(|| hash_selection(ctx.path(), &srcs, &sel, Some(&cache)).unwrap());
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (h, t) = time(|| hash_selection(ctx.path(), &srcs, &sel, Some(&cache)).unwrap());
        assert_eq!(h, cold_hash);
        warm.push(t);
    }
    println!("hash_selection, filling the stat cache: {fill:.2?}");
    println!(
        "hash_selection, warm stat cache: best {:.2?} of {warm:.2?}",
        warm.iter().min().copied().unwrap_or_default()
    );

    // One-file edit: only that file is read again.
    let edited = ctx.path().join("pkg100/src/file050.rs");
    fs::write(&edited, "changed").unwrap();
    let (h, t) = time(|| hash_selection(ctx.path(), &srcs, &sel, Some(&cache)).unwrap());
    assert_ne!(h, cold_hash);
    println!("hash_selection after a one-file edit (warm): {t:.2?}");
}
