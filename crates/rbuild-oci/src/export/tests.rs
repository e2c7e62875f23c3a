//! Exporter tests, checked with tools we did not write (oci-image-tool,
//! umoci, skopeo, GNU tar) when they are installed.
#![allow(clippy::print_stderr)] // tests print a note when they skip

use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::config::{History, ImageConfig};
use crate::layer::{Compression, CreateOptions, create_layer};
use crate::manifest::{ManifestFormat, build_config, build_index, build_manifest};

fn tool(name: &str) -> bool {
    let ok = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
        || Command::new(name).arg("--help").output().is_ok();
    if !ok {
        eprintln!("note: `{name}` not installed; skipping that check");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds a two-layer image for `platform` in the store; returns the manifest descriptor.
fn make_image(store: &ContentStore, work: &Path, platform: &str, format: ManifestFormat) -> Descriptor {
    make_image_with(store, work, platform, format, true)
}

/// Like [`make_image`]; `zstd` picks zstd for the second layer (old tools
/// such as oci-image-tool only know gzip).
fn make_image_with(store: &ContentStore, work: &Path, platform: &str, format: ManifestFormat, zstd: bool) -> Descriptor {
    let platform = Platform::parse(platform).unwrap();
    let mut cfg = ImageConfig::new(&platform);
    cfg.created = Some(crate::config::rfc3339_utc(1_700_000_000));
    cfg.config.cmd = Some(vec!["/bin/sh".into()]);
    cfg.config.env = Some(vec!["PATH=/usr/bin:/bin".into()]);
    let mut layers = Vec::new();
    for (i, (name, body)) in [("hello.txt", "hello\n"), ("etc/motd", "welcome\n")].into_iter().enumerate() {
        let dir = work.join(format!("layer-{platform}-{i}-{zstd}").replace('/', "_"));
        fs::create_dir_all(dir.join(Path::new(name).parent().unwrap())).unwrap();
        fs::write(dir.join(name), format!("{body}{platform}")).unwrap();
        let compression = if i == 0 || !zstd { Compression::Gzip { level: 6 } } else { Compression::Zstd { level: 3 } };
        let opts = CreateOptions { compression, source_date_epoch: Some(1_700_000_000), docker_media_types: false };
        let info = create_layer(store, &dir, &opts).unwrap();
        cfg.push_layer(info.diff_id, History { created_by: Some(format!("COPY {name} /")), ..Default::default() });
        layers.push(info.descriptor);
    }
    if format == ManifestFormat::DockerV2S2 {
        layers.truncate(1); // Docker media types have no zstd
        cfg.rootfs.diff_ids.truncate(1);
        cfg.history.truncate(1);
    }
    let c = build_config(&cfg, format).unwrap();
    store.put_bytes(&c.bytes).unwrap();
    let m = build_manifest(&c.descriptor, &layers, None, format).unwrap();
    store.put_bytes(&m.bytes).unwrap();
    m.descriptor.with_platform(platform)
}

#[test]
fn oci_layout_validates_and_unpacks() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let amd = make_image(&store, t.path(), "linux/amd64", ManifestFormat::Oci);
    let arm = make_image(&store, t.path(), "linux/arm64", ManifestFormat::Oci);
    let idx = build_index(&[amd.clone(), arm], None, ManifestFormat::Oci).unwrap();
    store.put_bytes(&idx.bytes).unwrap();
    let layout = t.path().join("layout");
    let images = [ExportImage::new(idx.descriptor.clone(), Some("example.com/app:v1".into()))];
    write_oci_layout(&store, &layout, &images).unwrap();
    let index: ImageIndex = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].annotation(ANNOTATION_REF_NAME), Some("v1"));
    assert_eq!(fs::read_dir(layout.join("blobs/sha256")).unwrap().count(), 1 + 2 * 4);
    // Writing again with another image keeps the first.
    let single = ExportImage::new(amd, Some("example.com/app:amd".into()));
    write_oci_layout(&store, &layout, std::slice::from_ref(&single)).unwrap();
    let index: ImageIndex = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 2);
    // oci-image-tool and umoci 0.4 know neither zstd nor nested indexes:
    // check them on a gzip-only layout.
    let plain = make_image_with(&store, t.path(), "linux/amd64", ManifestFormat::Oci, false);
    let plain_layout = t.path().join("plain");
    let img = ExportImage::new(plain, Some("example.com/app:plain".into()));
    write_oci_layout(&store, &plain_layout, &[img]).unwrap();
    if tool("oci-image-tool") {
        run(Command::new("oci-image-tool").args(["validate", "--type", "image"]).arg(&plain_layout));
    }
    if tool("umoci") {
        let bundle = t.path().join("bundle");
        run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:plain", plain_layout.display())).arg(&bundle));
        assert_eq!(fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(), "hello\nlinux/amd64");
        assert_eq!(fs::read_to_string(bundle.join("rootfs/etc/motd")).unwrap(), "welcome\nlinux/amd64");
    }
    if tool("skopeo") {
        let out = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{}:v1", layout.display())));
        assert_eq!(out.as_bytes(), &idx.bytes[..]);
        // A full copy of the zstd image reads and verifies every blob.
        let dst = t.path().join("copied");
        run(Command::new("skopeo").args(["copy", "--quiet"]).arg(format!("oci:{}:amd", layout.display())).arg(format!("dir:{}", dst.display())));
    }
}

#[test]
fn oci_tar_is_deterministic_and_readable() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let m = make_image_with(&store, t.path(), "linux/amd64", ManifestFormat::Oci, false);
    let images = [ExportImage::new(m.clone(), Some("app:latest".into()))];
    let a = write_oci_tar(&store, Vec::new(), &images).unwrap();
    let b = write_oci_tar(&store, Vec::new(), &images).unwrap();
    assert_eq!(a, b);
    let tarfile = t.path().join("img.tar");
    fs::write(&tarfile, &a).unwrap();
    if tool("tar") {
        let x = t.path().join("x");
        fs::create_dir(&x).unwrap();
        run(Command::new("tar").arg("-xf").arg(&tarfile).arg("-C").arg(&x));
        assert!(x.join("oci-layout").is_file());
        assert!(x.join("blobs/sha256").join(m.digest.hex()).is_file());
        if tool("oci-image-tool") {
            run(Command::new("oci-image-tool").args(["validate", "--type", "image"]).arg(&x));
            // (Its tar mode fails even on GNU-tar-made archives: "unable to walk"; not used.)
        }
        if tool("umoci") {
            let bundle = t.path().join("bundle");
            run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:latest", x.display())).arg(&bundle));
            assert_eq!(fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(), "hello\nlinux/amd64");
        }
    }
    if tool("skopeo") {
        let out = run(Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci-archive:{}:latest", tarfile.display())));
        assert_eq!(Digest::sha256(out.as_bytes()), m.digest);
    }
}

#[test]
fn docker_tar_has_manifest_json_and_loads_with_skopeo() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let amd = make_image(&store, t.path(), "linux/amd64", ManifestFormat::DockerV2S2);
    let arm = make_image(&store, t.path(), "linux/arm64", ManifestFormat::DockerV2S2);
    let idx = build_index(&[amd.clone(), arm], None, ManifestFormat::DockerV2S2).unwrap();
    store.put_bytes(&idx.bytes).unwrap();
    let names = vec!["docker.io/library/app:v2".to_owned(), "localhost:5000/x/y:t".to_owned()];
    let images = [ExportImage::from((idx.descriptor.clone(), names))];
    let bytes = write_docker_tar(&store, Vec::new(), &images, Some(&Platform::parse("linux/amd64").unwrap())).unwrap();
    let tarfile = t.path().join("docker.tar");
    fs::write(&tarfile, &bytes).unwrap();
    // manifest.json shape.
    let mut tr = crate::layer::tarfmt_reader_for_tests(&bytes[..]);
    let mj = tr.remove("manifest.json").expect("manifest.json in tar");
    let v: serde_json::Value = serde_json::from_slice(&mj).unwrap();
    assert_eq!(v[0]["RepoTags"], serde_json::json!(["app:v2", "localhost:5000/x/y:t"]));
    let m = ImageManifest::from_slice(&store.read_all(&amd.digest).unwrap()).unwrap();
    assert_eq!(v[0]["Config"], format!("blobs/sha256/{}", m.config.digest.hex()));
    assert_eq!(v[0]["Layers"].as_array().unwrap().len(), 1);
    assert!(tr.contains_key(&format!("blobs/sha256/{}", m.layers[0].digest.hex())));
    if tool("skopeo") {
        let out = run(Command::new("skopeo").args(["inspect", "--config"]).arg(format!("docker-archive:{}", tarfile.display())));
        let cfg: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(cfg["architecture"], "amd64");
        // A full copy verifies every layer against the config's diff_ids.
        let dst = t.path().join("copied");
        run(Command::new("skopeo").args(["copy", "--quiet"]).arg(format!("docker-archive:{}", tarfile.display())).arg(format!("oci:{}:x", dst.display())));
        if tool("umoci") {
            let bundle = t.path().join("bundle");
            run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:x", dst.display())).arg(&bundle));
            assert_eq!(fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(), "hello\nlinux/amd64");
        }
    }
    let err = write_docker_tar(&store, Vec::new(), &images, Some(&Platform::parse("linux/s390x").unwrap())).unwrap_err();
    assert!(matches!(err, ExportError::NoPlatform { .. }), "{err}");
}

#[test]
fn missing_blob_is_reported_by_digest() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let m = make_image(&store, t.path(), "linux/amd64", ManifestFormat::Oci);
    let parsed = ImageManifest::from_slice(&store.read_all(&m.digest).unwrap()).unwrap();
    store.remove(&parsed.layers[1].digest).unwrap();
    let err = write_oci_tar(&store, Vec::new(), &[ExportImage::new(m, None)]).unwrap_err();
    assert!(err.to_string().contains(parsed.layers[1].digest.as_str()), "{err}");
}

#[test]
fn unpack_image_flattens_layers_and_checks_diff_ids() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let amd = make_image(&store, t.path(), "linux/amd64", ManifestFormat::Oci);
    let arm = make_image(&store, t.path(), "linux/arm64", ManifestFormat::Oci);
    let idx = build_index(&[amd, arm], None, ManifestFormat::Oci).unwrap();
    store.put_bytes(&idx.bytes).unwrap();
    let dest = t.path().join("rootfs");
    let arm64 = Platform::parse("linux/arm64").unwrap();
    let stats = unpack_image(&store, &idx.descriptor, Some(&arm64), &dest, &crate::layer::ApplyOptions::default()).unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(fs::read_to_string(dest.join("hello.txt")).unwrap(), "hello\nlinux/arm64");
    assert_eq!(fs::read_to_string(dest.join("etc/motd")).unwrap(), "welcome\nlinux/arm64");
    // A config whose diff_ids lie is caught.
    let m = ImageManifest::from_slice(&store.read_all(&resolve_platform(&store, &idx.descriptor, &arm64).unwrap().digest).unwrap()).unwrap();
    let mut cfg = crate::config::ImageConfig::from_slice(&store.read_all(&m.config.digest).unwrap()).unwrap();
    cfg.rootfs.diff_ids[1] = Digest::sha256(b"lie");
    let c = build_config(&cfg, ManifestFormat::Oci).unwrap();
    store.put_bytes(&c.bytes).unwrap();
    let bad = build_manifest(&c.descriptor, &m.layers, None, ManifestFormat::Oci).unwrap();
    store.put_bytes(&bad.bytes).unwrap();
    let err = unpack_image(&store, &bad.descriptor, None, &t.path().join("bad"), &crate::layer::ApplyOptions::default()).unwrap_err();
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
}

#[test]
fn rootfs_tar_contains_the_flattened_tree() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let m = make_image(&store, t.path(), "linux/amd64", ManifestFormat::Oci);
    let scratch = t.path().join("scratch");
    unpack_image(&store, &m, None, &scratch, &crate::layer::ApplyOptions::default()).unwrap();
    let (tar, _) = crate::layer::write_layer_tar(&scratch, Vec::new(), &crate::layer::TarOptions::default()).unwrap();
    let files = crate::layer::tarfmt_reader_for_tests(&tar);
    assert_eq!(files.get("hello.txt").map(Vec::as_slice), Some(&b"hello\nlinux/amd64"[..]));
    assert_eq!(files.get("etc/motd").map(Vec::as_slice), Some(&b"welcome\nlinux/amd64"[..]));
    assert!(files.contains_key("etc/"));
}

/// umoci computes a layer from a modified bundle (whiteouts for deletions);
/// importing its layout and unpacking with our code gives umoci's tree.
#[test]
fn umoci_repacked_whiteouts_apply_like_umoci() {
    if !tool("umoci") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let base = make_image_with(&store, t.path(), "linux/amd64", ManifestFormat::Oci, false);
    let layout = t.path().join("layout");
    write_oci_layout(&store, &layout, &[ExportImage::new(base, Some("localhost/x:base".into()))]).unwrap();
    let bundle = t.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:base", layout.display())).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    fs::remove_file(rootfs.join("hello.txt")).unwrap();
    fs::remove_file(rootfs.join("etc/motd")).unwrap();
    fs::write(rootfs.join("etc/new"), b"new").unwrap();
    run(Command::new("umoci").args(["repack", "--image"]).arg(format!("{}:next", layout.display())).arg(&bundle));
    let store2 = ContentStore::open(&t.path().join("store2")).unwrap();
    let images = import_oci_layout(&store2, &layout).unwrap();
    let next = images.iter().find(|i| i.names == ["next"]).expect("next in index.json");
    let dest = t.path().join("ours");
    unpack_image(&store2, &next.descriptor, None, &dest, &crate::layer::ApplyOptions::default()).unwrap();
    assert!(!dest.join("hello.txt").exists());
    assert!(!dest.join("etc/motd").exists());
    assert_eq!(fs::read(dest.join("etc/new")).unwrap(), b"new");
}

#[test]
fn import_verifies_blobs() {
    let t = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    let m = make_image_with(&store, t.path(), "linux/amd64", ManifestFormat::Oci, false);
    let layout = t.path().join("layout");
    write_oci_layout(&store, &layout, &[ExportImage::new(m.clone(), Some("x:y".into()))]).unwrap();
    let parsed = ImageManifest::from_slice(&store.read_all(&m.digest).unwrap()).unwrap();
    let victim = layout.join("blobs/sha256").join(parsed.layers[0].digest.hex());
    let mut bytes = fs::read(&victim).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let store2 = ContentStore::open(&t.path().join("store2")).unwrap();
    let err = import_oci_layout(&store2, &layout).unwrap_err();
    assert!(matches!(err, ExportError::Store(StoreError::DigestMismatch { .. })), "{err}");
    assert!(!store2.contains(&parsed.layers[0].digest));
    // A blob that is a symlink (to a file with the right content, even) or a
    // FIFO is refused rather than followed or blocked on.
    fs::remove_file(&victim).unwrap();
    std::os::unix::fs::symlink(store.path(&parsed.layers[0].digest), &victim).unwrap();
    assert!(matches!(import_oci_layout(&store2, &layout), Err(ExportError::Io { .. })));
    fs::remove_file(&victim).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, victim.as_path(), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0).unwrap();
    assert!(matches!(import_oci_layout(&store2, &layout), Err(ExportError::Io { .. })));
}

#[test]
fn import_refuses_huge_manifests_before_reading_them() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let d = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"x"), MAX_MANIFEST_SIZE + 1);
    let idx = build_index(&[d], None, ManifestFormat::Oci).unwrap();
    fs::write(layout.join("index.json"), &idx.bytes).unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    assert!(matches!(import_oci_layout(&store, &layout), Err(ExportError::TooLarge { .. })));
}
