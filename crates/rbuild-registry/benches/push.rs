//! Push/pull throughput of a ~100 MB layer against Debian's `docker-registry`
//! on loopback. A small timing main (no criterion):
//!
//! ```sh
//! cargo bench -p rbuild-registry --bench push            # 100 MB
//! RBUILD_BENCH_MB=20 cargo bench -p rbuild-registry --bench push
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/support/registry.rs"]
#[allow(dead_code)]
mod registry;

use std::io::Write;
use std::time::Instant;

use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::manifest::{ManifestFormat, build_config, build_manifest};
use rbuild_oci::media_types as mt;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_oci::store::ContentStore;
use rbuild_registry::{ClientOptions, PushOptions, RegistryClient, no_progress};

/// Incompressible bytes from xorshift64, written straight into the store.
fn random_blob(store: &ContentStore, size: usize, seed: u64) -> Descriptor {
    let mut ingest = store.ingest(None).expect("ingest");
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len());
        ingest.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    let (digest, size) = ingest.commit().expect("commit");
    Descriptor::new(mt::OCI_LAYER_GZIP, digest, size)
}

fn image(store: &ContentStore, layer: &Descriptor) -> Descriptor {
    let mut config = ImageConfig::new(&Platform::parse("linux/amd64").expect("platform"));
    config.rootfs.diff_ids.push(layer.digest.clone());
    let cfg = build_config(&config, ManifestFormat::Oci).expect("config");
    store.put_bytes(&cfg.bytes).expect("put");
    let man = build_manifest(
        &cfg.descriptor,
        std::slice::from_ref(layer),
        None,
        ManifestFormat::Oci,
    )
    .expect("manifest");
    store.put_bytes(&man.bytes).expect("put");
    man.descriptor
}

/// Baseline: the same kind of push with skopeo (Go's containers/image)
/// from an OCI layout whose blobs are hard links into our store.
fn skopeo_baseline(store: &ContentStore, dir: &std::path::Path, addr: &str, size: usize) {
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skopeo not installed; no baseline");
        return;
    }
    let layer = random_blob(store, size, 0x5eed);
    let top = image(store, &layer);
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout");
    for (d, _) in store.list().expect("list") {
        std::fs::hard_link(store.path(&d), blobs.join(d.hex())).expect("link");
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"bench"}}}}]}}"#,
        top.media_type, top.digest, top.size
    );
    std::fs::write(layout.join("index.json"), index).expect("index");
    let t = Instant::now();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("docker://{addr}/bench/skopeo:1"))
        .output()
        .expect("skopeo");
    let secs = t.elapsed().as_secs_f64();
    if out.status.success() {
        println!(
            "baseline skopeo copy oci: -> registry: {:.2} s, {:.0} MB/s",
            secs,
            mbps(layer.size, secs)
        );
    } else {
        println!(
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() {
    let mb: usize = std::env::var("RBUILD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Some(reg) = registry::TestRegistry::start() else {
        eprintln!("docker-registry not installed; nothing to measure");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ContentStore::open(&dir.path().join("src")).expect("store");
    let size = mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "layer: {mb} MiB of incompressible data, registry at {}",
        reg.addr
    );

    for (name, chunked) in [("monolithic PUT", false), ("chunked PATCH (16 MiB)", true)] {
        // A fresh blob per run so the registry has to take every byte.
        let layer = random_blob(&store, size, 0x9e37_79b9 + u64::from(chunked));
        let top = image(&store, &layer);
        let client = RegistryClient::new(ClientOptions {
            chunk_threshold: chunked.then_some(0),
            chunk_size: 16 << 20,
            ..ClientOptions::default()
        })
        .expect("client");
        let reference = Reference::parse(&format!("{}/bench/push:{}", reg.addr, u8::from(chunked)))
            .expect("ref");
        let t = Instant::now();
        let s = rt
            .block_on(client.push(
                &reference,
                &top,
                &store,
                &PushOptions::default(),
                &no_progress,
            ))
            .expect("push");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "push {name}: {:.2} s, {:.0} MB/s ({} blobs, {} bytes)",
            secs,
            mbps(s.bytes_uploaded, secs),
            s.uploaded,
            s.bytes_uploaded
        );
        let t = Instant::now();
        let again = rt
            .block_on(client.push(
                &reference,
                &top,
                &store,
                &PushOptions::default(),
                &no_progress,
            ))
            .expect("push again");
        println!(
            "push again (HEAD hits, {} uploaded): {:.3} s",
            again.uploaded,
            t.elapsed().as_secs_f64()
        );

        let dst = ContentStore::open(&dir.path().join(format!("dst{}", u8::from(chunked))))
            .expect("store");
        let t = Instant::now();
        rt.block_on(client.pull(
            &reference,
            &Platform::parse("linux/amd64").expect("platform"),
            &dst,
            &no_progress,
        ))
        .expect("pull");
        let secs = t.elapsed().as_secs_f64();
        println!("pull: {:.2} s, {:.0} MB/s", secs, mbps(layer.size, secs));
    }
    skopeo_baseline(&store, dir.path(), &reg.addr, size);
}
