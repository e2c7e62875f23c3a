//! Layer create + compress + digest throughput, against the shell pipeline
//! `tar | gzip | sha256sum` on the same tree.
//!
//! Run: `cargo bench -p rbuild-oci --bench layer` (set `RBUILD_BENCH_MB` to
//! change the tree size, default 128). A timing main, not a statistics
//! harness: each case runs twice and the faster run is reported.
#![allow(clippy::print_stdout)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild_oci::digest::DigestWriter;
use rbuild_oci::layer::{ApplyOptions, Compression, CreateOptions, TarOptions, apply_layer, create_layer, write_layer_tar};
use rbuild_oci::store::ContentStore;

/// A tree of `mb` MiB: source-like text (compresses well) and binary-like
/// noise (compresses badly), in files from 1 KiB to 4 MiB.
fn build_tree(root: &Path, mb: usize) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words: Vec<&str> = "fn let mut impl struct pub use match return self where trait async await loop break"
        .split(' ')
        .collect();
    let total = mb << 20;
    let mut written = 0;
    let mut i = 0;
    while written < total {
        let dir = root.join(format!("d{}", i % 37)).join(format!("s{}", i % 5));
        fs::create_dir_all(&dir).unwrap();
        let size = 1024usize << (next() % 13);
        let mut data = Vec::with_capacity(size);
        let text = i % 2 == 0;
        while data.len() < size {
            let r = next();
            if text {
                data.extend_from_slice(words[(r % words.len() as u64) as usize].as_bytes());
                data.push(if r % 11 == 0 { b'\n' } else { b' ' });
            } else {
                data.extend_from_slice(&r.to_le_bytes());
            }
        }
        data.truncate(size);
        fs::write(dir.join(format!("f{i}")), &data).unwrap();
        written += size;
        i += 1;
    }
}

/// CPU time (user + system) of this process and its reaped children.
fn cpu_time() -> Duration {
    let get = |who| {
        // SAFETY: getrusage only writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

static LAST_CPU: std::sync::Mutex<Duration> = std::sync::Mutex::new(Duration::ZERO);

/// Runs `f` twice; returns the faster wall time and remembers that run's
/// CPU time (read it with [`last_cpu`]): CPU / wall above 1 means more
/// than one core was busy.
fn best_of_two(mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let c = cpu_time();
        let t = Instant::now();
        f();
        let wall = t.elapsed();
        if wall < best {
            best = wall;
            if let Ok(mut l) = LAST_CPU.lock() {
                *l = cpu_time() - c;
            }
        }
    }
    best
}

fn cores_used(wall: Duration) -> f64 {
    LAST_CPU.lock().map_or(0.0, |c| c.as_secs_f64() / wall.as_secs_f64())
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() {
    let mb: usize = std::env::var("RBUILD_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree, mb);
    let (_, stats) = write_layer_tar(&tree, std::io::sink(), &TarOptions::default()).unwrap();
    let mut counter = DigestWriter::new(std::io::sink());
    write_layer_tar(&tree, &mut counter, &TarOptions::default()).unwrap();
    let tar_size = counter.size();
    println!("tree: {} entries, tar {:.1} MiB, {} cores", stats.entries, tar_size as f64 / (1 << 20) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()));

    let cases = [
        ("none", Compression::None),
        ("gzip-6", Compression::Gzip { level: 6 }),
        ("gzip-1", Compression::Gzip { level: 1 }),
        ("zstd-3", Compression::Zstd { level: 3 }),
    ];
    for (name, compression) in cases {
        let mut size = 0;
        let d = best_of_two(|| {
            let store = ContentStore::open(&tmp.path().join(format!("store-{name}"))).unwrap();
            let info = create_layer(&store, &tree, &CreateOptions { compression, ..Default::default() }).unwrap();
            size = info.descriptor.size;
            store.remove(&info.descriptor.digest).unwrap();
        });
        println!(
            "rbuild create_layer {name:7}: {:7.1} MiB/s  ratio {:.3}  cores busy {:.2}",
            mbps(tar_size, d),
            size as f64 / tar_size as f64,
            cores_used(d)
        );
    }

    // Apply (pull side): unpack the gzip layer into a fresh directory each run.
    let store = ContentStore::open(&tmp.path().join("store-apply")).unwrap();
    let info = create_layer(&store, &tree, &CreateOptions { compression: Compression::Gzip { level: 6 }, ..Default::default() }).unwrap();
    let mut run = 0;
    let d = best_of_two(|| {
        run += 1;
        let dest = tmp.path().join(format!("apply-{run}"));
        fs::create_dir(&dest).unwrap();
        let blob = store.open_blob(&info.descriptor.digest).unwrap();
        apply_layer(blob, &info.descriptor.media_type, &dest, &ApplyOptions::default()).unwrap();
    });
    println!("rbuild apply_layer gzip-6   : {:7.1} MiB/s", mbps(tar_size, d));
    let blob_path = store.path(&info.descriptor.digest);
    let d = best_of_two(|| {
        run += 1;
        let dest = tmp.path().join(format!("apply-{run}"));
        fs::create_dir(&dest).unwrap();
        let st = Command::new("tar").arg("-xzf").arg(&blob_path).arg("-C").arg(&dest).status().unwrap();
        assert!(st.success());
    });
    println!("shell tar -xzf              : {:7.1} MiB/s", mbps(tar_size, d));

    // Single-stream gzip on one thread (what the block encoder improves on).
    let d = best_of_two(|| {
        let gz = flate2::write::GzEncoder::new(DigestWriter::new(std::io::sink()), flate2::Compression::new(6));
        let hashed = std::io::BufWriter::with_capacity(256 << 10, DigestWriter::new(gz));
        let (hashed, _) = write_layer_tar(&tree, hashed, &TarOptions::default()).unwrap();
        let (gz, _, _) = hashed.into_inner().ok().unwrap().finish();
        let mut inner = gz.finish().unwrap();
        inner.flush().unwrap();
    });
    println!("rbuild 1-thread gzip-6      : {:7.1} MiB/s  cores busy {:.2}", mbps(tar_size, d), cores_used(d));

    for (name, cmd) in [("gzip -6", "gzip -6"), ("zstd -3", "zstd -3 -q -c"), ("cat", "cat")] {
        let shell = format!("tar -C '{}' -cf - . | {cmd} | sha256sum > /dev/null", tree.display());
        let ok = Command::new("sh").arg("-c").arg("command -v tar && command -v sha256sum").output().is_ok_and(|o| o.status.success());
        if !ok {
            println!("(tar/sha256sum not available; skipping shell baseline)");
            break;
        }
        let d = best_of_two(|| {
            let st = Command::new("sh").arg("-c").arg(&shell).status().unwrap();
            assert!(st.success());
        });
        println!("shell tar | {name:7} | sha256sum: {:7.1} MiB/s  cores busy {:.2}", mbps(tar_size, d), cores_used(d));
    }
}
