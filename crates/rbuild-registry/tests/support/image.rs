//! Small images built into a temp content store with rbuild-oci.

use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::manifest::{ManifestFormat, build_config, build_index, build_manifest};
use rbuild_oci::media_types as mt;
use rbuild_oci::platform::Platform;
use rbuild_oci::store::ContentStore;

/// A store in a temp dir that lives as long as the value.
pub struct TempStore {
    pub store: ContentStore,
    _dir: tempfile::TempDir,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(&dir.path().join("content")).expect("store");
        TempStore { store, _dir: dir }
    }

    /// The bytes of blob `digest`, which the test expects to be there.
    pub fn blob(&self, digest: &Digest) -> Vec<u8> {
        self.store
            .read_all(digest)
            .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
    }
}

/// What [`build_image`] made.
pub struct TestImage {
    /// The manifest (or index) to push.
    pub top: Descriptor,
    /// The platform manifests.
    pub manifests: Vec<Descriptor>,
    /// Config blobs.
    pub configs: Vec<Descriptor>,
    /// Layer blobs.
    pub layers: Vec<Descriptor>,
}

/// A tar with one file `name` holding `content`, gzip-compressed.
/// Returns (gzip bytes, diffID).
pub fn tar_gz(name: &str, content: &[u8]) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, content).expect("tar");
    let raw = tar.into_inner().expect("tar");
    let diff_id = Digest::sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

/// One platform image with `layer_contents.len()` layers, each a tar.gz
/// holding one file.
pub fn build_platform_image(
    store: &ContentStore,
    platform: &str,
    layer_contents: &[&[u8]],
) -> (Descriptor, Descriptor, Vec<Descriptor>) {
    build_platform_image_as(store, platform, layer_contents, ManifestFormat::Oci)
}

/// Like [`build_platform_image`] in a chosen manifest format.
pub fn build_platform_image_as(
    store: &ContentStore,
    platform: &str,
    layer_contents: &[&[u8]],
    format: ManifestFormat,
) -> (Descriptor, Descriptor, Vec<Descriptor>) {
    let platform = Platform::parse(platform).expect("platform");
    let mut config = ImageConfig::new(&platform);
    let mut layers = Vec::new();
    for (i, content) in layer_contents.iter().enumerate() {
        let (gz, diff_id) = tar_gz(&format!("file{i}"), content);
        let d = store.put_bytes(&gz).expect("put layer");
        config.rootfs.diff_ids.push(diff_id);
        layers.push(Descriptor::new(mt::OCI_LAYER_GZIP, d, gz.len() as u64));
    }
    config.config.cmd = Some(vec!["/bin/sh".into()]);
    let cfg = build_config(&config, format).expect("config");
    store.put_bytes(&cfg.bytes).expect("put config");
    let man = build_manifest(&cfg.descriptor, &layers, None, format).expect("manifest");
    store.put_bytes(&man.bytes).expect("put manifest");
    let mut desc = man.descriptor;
    desc.platform = Some(platform);
    (desc, cfg.descriptor, layers)
}

/// A single-platform image (linux/amd64) with the given layers.
pub fn build_image(store: &ContentStore, layer_contents: &[&[u8]]) -> TestImage {
    let (m, c, l) = build_platform_image(store, "linux/amd64", layer_contents);
    TestImage {
        top: Descriptor {
            platform: None,
            ..m.clone()
        },
        manifests: vec![m],
        configs: vec![c],
        layers: l,
    }
}

/// An index over linux/amd64 and linux/arm64 images that share one layer.
pub fn build_multi_platform(store: &ContentStore) -> TestImage {
    build_multi_platform_as(store, ManifestFormat::Oci)
}

/// Like [`build_multi_platform`] in a chosen format (Docker: a manifest list).
pub fn build_multi_platform_as(store: &ContentStore, format: ManifestFormat) -> TestImage {
    let (m1, c1, l1) = build_platform_image_as(
        store,
        "linux/amd64",
        &[&b"shared base"[..], b"amd64 only"],
        format,
    );
    let (m2, c2, l2) = build_platform_image_as(
        store,
        "linux/arm64",
        &[&b"shared base"[..], b"arm64 only"],
        format,
    );
    let idx = build_index(&[m1.clone(), m2.clone()], None, format).expect("index");
    store.put_bytes(&idx.bytes).expect("put index");
    let mut layers = l1;
    let extra: Vec<Descriptor> = l2.into_iter().filter(|d| !layers.contains(d)).collect();
    layers.extend(extra);
    TestImage {
        top: idx.descriptor,
        manifests: vec![m1, m2],
        configs: vec![c1, c2],
        layers,
    }
}
