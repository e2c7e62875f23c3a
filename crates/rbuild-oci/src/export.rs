//! Exporters: OCI image layout (directory or tar) and docker-archive tar.
//!
//! Both formats are written from the content store without decompressing
//! or re-encoding anything: the bytes in the output are the bytes that were
//! (or would be) pushed, so digests stay valid. Tars are written with our
//! deterministic tar writer (sorted paths, fixed times), so exporting the same
//! images twice gives identical files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::descriptor::{ANNOTATION_CONTAINERD_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor};
use crate::digest::Digest;
use crate::layer::{TarDirEntry, write_tar};
use crate::manifest::{self, ImageIndex, ImageManifest, ManifestError, Parsed};
use crate::media_types as mt;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{ContentStore, StoreError};

/// Errors from exporting; each names the blob, image or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading a blob failed (a missing blob is `Store(NotFound)`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest or index in the store did not parse.
    #[error("manifest {digest} in the content store is invalid")]
    Manifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    /// Writing the output failed.
    #[error("cannot write export output `{path}`")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The docker format needs one platform, and none matched.
    #[error("image {digest} has no manifest for platform `{platform}`")]
    NoPlatform { digest: Digest, platform: String },
    /// The descriptor is neither a manifest nor an index.
    #[error("cannot export {digest}: media type `{media_type}` is not an image manifest or index")]
    NotAnImage { digest: Digest, media_type: String },
    /// A manifest or index larger than [`MAX_MANIFEST_SIZE`].
    #[error("manifest {digest} is {size} bytes, more than the 4 MiB we accept")]
    TooLarge { digest: Digest, size: u64 },
    /// An existing `index.json` in the target layout is invalid.
    #[error("existing OCI layout index `{0}` is invalid")]
    BadLayoutIndex(String),
}

/// One image to export: its manifest or index, and the names
/// (`docker.io/library/app:v1`) to record for it in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportImage {
    /// Manifest or index descriptor (its blob and children must be in the store).
    pub descriptor: Descriptor,
    /// Full image names; may be empty (an unnamed image).
    pub names: Vec<String>,
}

impl ExportImage {
    /// An image with at most one name.
    pub fn new(descriptor: Descriptor, name: Option<String>) -> Self {
        ExportImage { descriptor, names: name.into_iter().collect() }
    }
}

impl From<(Descriptor, Option<String>)> for ExportImage {
    fn from((descriptor, name): (Descriptor, Option<String>)) -> Self {
        ExportImage::new(descriptor, name)
    }
}

impl From<(Descriptor, Vec<String>)> for ExportImage {
    fn from((descriptor, names): (Descriptor, Vec<String>)) -> Self {
        ExportImage { descriptor, names }
    }
}

/// Largest manifest or index we read into memory (the distribution spec
/// asks registries to accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Largest image config we read into memory.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

fn check_manifest_size(d: &Descriptor) -> Result<(), ExportError> {
    if (mt::is_index(&d.media_type) || mt::is_manifest(&d.media_type)) && d.size > MAX_MANIFEST_SIZE {
        return Err(ExportError::TooLarge { digest: d.digest.clone(), size: d.size });
    }
    Ok(())
}

fn io_err(path: impl Into<String>) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.into();
    move |source| ExportError::Io { path, source }
}

/// Every blob reachable from `root` (itself, child manifests, configs,
/// layers), deduplicated, in a stable order.
pub fn collect_blobs(store: &ContentStore, root: &Descriptor) -> Result<Vec<Descriptor>, ExportError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        if mt::is_index(&d.media_type) || mt::is_manifest(&d.media_type) {
            check_manifest_size(&d)?;
            let bytes = store.read_limited(&d.digest, MAX_MANIFEST_SIZE)?;
            let parsed = manifest::parse(&bytes, Some(&d.media_type))
                .map_err(|source| ExportError::Manifest { digest: d.digest.clone(), source })?;
            match parsed {
                Parsed::Index(idx) => todo.extend(idx.manifests.into_iter().rev()),
                Parsed::Manifest(m) => {
                    todo.extend(m.layers.into_iter().rev());
                    todo.push(m.config);
                }
            }
        } else if !store.contains(&d.digest) {
            return Err(StoreError::NotFound(d.digest.clone()).into());
        }
        out.push(d);
    }
    Ok(out)
}

/// `index.json` entries for an image: one per name (BuildKit's shape:
/// the full name for containerd, the tag as the OCI ref name), or one bare
/// entry when it has no name.
fn index_entries(img: &ExportImage) -> Vec<Descriptor> {
    if img.names.is_empty() {
        return vec![img.descriptor.clone()];
    }
    img.names
        .iter()
        .map(|name| {
            let ref_name = Reference::parse(name).ok().and_then(|r| r.tag).unwrap_or_else(|| name.clone());
            img.descriptor
                .clone()
                .with_annotation(ANNOTATION_CONTAINERD_IMAGE_NAME, name.clone())
                .with_annotation(ANNOTATION_REF_NAME, ref_name)
        })
        .collect()
}

fn layout_index(entries: Vec<Descriptor>) -> Result<Vec<u8>, ExportError> {
    let idx = ImageIndex {
        schema_version: 2,
        media_type: Some(mt::OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests: entries,
        subject: None,
        annotations: None,
    };
    crate::json::to_canonical_vec(&idx).map_err(|e| io_err("index.json")(io::Error::other(e)))
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes (or adds to) an OCI image layout directory. Existing entries of
/// `index.json` are kept unless an exported image has the same ref name.
pub fn write_oci_layout(store: &ContentStore, dir: &Path, images: &[ExportImage]) -> Result<(), ExportError> {
    let blobs_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir).map_err(io_err(blobs_dir.display().to_string()))?;
    for img in images {
        for d in collect_blobs(store, &img.descriptor)? {
            let dst = blobs_dir.join(d.digest.hex());
            if dst.exists() {
                continue;
            }
            let tmp = blobs_dir.join(format!(".{}.tmp-{}", d.digest.hex(), std::process::id()));
            let mut src = store.open_blob(&d.digest)?;
            let mut f = fs::File::create(&tmp).map_err(io_err(tmp.display().to_string()))?;
            io::copy(&mut src, &mut f).map_err(io_err(tmp.display().to_string()))?;
            f.sync_all().map_err(io_err(tmp.display().to_string()))?;
            fs::rename(&tmp, &dst).map_err(io_err(dst.display().to_string()))?;
        }
    }
    let index_path = dir.join("index.json");
    let mut entries: Vec<Descriptor> = match fs::read(&index_path) {
        Ok(bytes) => {
            ImageIndex::from_slice(&bytes).map_err(|_| ExportError::BadLayoutIndex(index_path.display().to_string()))?.manifests
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(index_path.display().to_string())(e)),
    };
    for entry in images.iter().flat_map(index_entries) {
        let name = entry.annotation(ANNOTATION_CONTAINERD_IMAGE_NAME).map(str::to_owned);
        entries.retain(|e| name.is_none() || e.annotation(ANNOTATION_CONTAINERD_IMAGE_NAME) != name.as_deref());
        entries.push(entry);
    }
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&index_path, &layout_index(entries)?)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(io_err(tmp.display().to_string()))?;
    fs::rename(&tmp, path).map_err(io_err(path.display().to_string()))
}

/// A file to put in an export tar: in-memory bytes or a store blob.
enum Source {
    Bytes(Vec<u8>),
    Blob(Digest, u64),
}

fn tar_out<W: Write>(store: &ContentStore, out: W, files: BTreeMap<String, Source>) -> Result<W, ExportError> {
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    for name in files.keys() {
        let mut acc = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(p);
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    for d in dirs {
        entries.push(TarDirEntry::Dir(d));
    }
    for (name, src) in files {
        entries.push(match src {
            Source::Bytes(b) => TarDirEntry::Bytes(name, b),
            Source::Blob(d, size) => TarDirEntry::Reader(name, size, Box::new(LazyBlob { store: store.clone(), digest: d, file: None })),
        });
    }
    write_tar(out, entries).map_err(io_err("export tar"))
}

/// Opens the blob only when the tar writer reaches it (one open fd at a time).
struct LazyBlob {
    store: ContentStore,
    digest: Digest,
    file: Option<fs::File>,
}

impl Read for LazyBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(self.store.open_blob(&self.digest).map_err(io::Error::other)?);
        }
        match self.file.as_mut() {
            Some(f) => f.read(buf),
            None => Ok(0),
        }
    }
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes an OCI image layout as a tar (`--output type=oci`).
pub fn write_oci_tar<W: Write>(store: &ContentStore, out: W, images: &[ExportImage]) -> Result<W, ExportError> {
    let mut files = BTreeMap::new();
    for img in images {
        for d in collect_blobs(store, &img.descriptor)? {
            files.insert(blob_name(&d.digest), Source::Blob(d.digest.clone(), d.size));
        }
    }
    files.insert("oci-layout".to_owned(), Source::Bytes(OCI_LAYOUT.to_vec()));
    files.insert("index.json".to_owned(), Source::Bytes(layout_index(images.iter().flat_map(index_entries).collect())?));
    tar_out(store, out, files)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Resolves an index to the manifest for `platform` (or returns a manifest as is).
pub fn resolve_platform(store: &ContentStore, desc: &Descriptor, platform: &Platform) -> Result<Descriptor, ExportError> {
    let mut d = desc.clone();
    for _ in 0..4 {
        if mt::is_manifest(&d.media_type) {
            return Ok(d);
        }
        if !mt::is_index(&d.media_type) {
            return Err(ExportError::NotAnImage { digest: d.digest.clone(), media_type: d.media_type.clone() });
        }
        let bytes = store.read_limited(&d.digest, MAX_MANIFEST_SIZE)?;
        let idx = ImageIndex::from_slice(&bytes).map_err(|source| ExportError::Manifest { digest: d.digest.clone(), source })?;
        d = idx
            .select(platform)
            .cloned()
            .ok_or_else(|| ExportError::NoPlatform { digest: desc.digest.clone(), platform: platform.to_string() })?;
    }
    Err(ExportError::NotAnImage { digest: d.digest.clone(), media_type: d.media_type.clone() })
}

/// Writes a docker-archive tar that `docker load` accepts: `manifest.json`
/// (Config / RepoTags / Layers pointing at `blobs/sha256/<hex>`, as Docker
/// 25+ writes it) plus an OCI layout in the same tar. Indexes are resolved
/// to `platform` (the host's when `None`). Layers are stored as they are
/// in the store (Docker decompresses on load).
pub fn write_docker_tar<W: Write>(
    store: &ContentStore,
    out: W,
    images: &[ExportImage],
    platform: Option<&Platform>,
) -> Result<W, ExportError> {
    let host = Platform::host();
    let platform = platform.unwrap_or(&host);
    let mut files = BTreeMap::new();
    let mut manifest_json = Vec::new();
    let mut index = Vec::new();
    for img in images {
        let mdesc = resolve_platform(store, &img.descriptor, platform)?;
        let bytes = store.read_limited(&mdesc.digest, MAX_MANIFEST_SIZE)?;
        let m = ImageManifest::from_slice(&bytes).map_err(|source| ExportError::Manifest { digest: mdesc.digest.clone(), source })?;
        for d in collect_blobs(store, &mdesc)? {
            files.insert(blob_name(&d.digest), Source::Blob(d.digest.clone(), d.size));
        }
        let repo_tags = img
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .filter(|r| r.tag.is_some())
            .map(|r| Reference { digest: None, ..r }.familiar())
            .collect();
        manifest_json.push(DockerManifestEntry {
            config: blob_name(&m.config.digest),
            repo_tags,
            layers: m.layers.iter().map(|l| blob_name(&l.digest)).collect(),
        });
        index.extend(index_entries(&ExportImage { descriptor: mdesc, names: img.names.clone() }));
    }
    let mj = crate::json::to_canonical_vec(&manifest_json).map_err(|e| io_err("manifest.json")(io::Error::other(e)))?;
    files.insert("manifest.json".to_owned(), Source::Bytes(mj));
    files.insert("oci-layout".to_owned(), Source::Bytes(OCI_LAYOUT.to_vec()));
    files.insert("index.json".to_owned(), Source::Bytes(layout_index(index)?));
    tar_out(store, out, files)
}

/// Unpacks an image's layers, in order, into `dest` as one flattened root
/// filesystem: whiteouts delete, opaque directories are cleared, and every
/// layer's diffID is checked against the config. (A build's own
/// `--output type=local|tar` is written from its snapshots instead, without
/// making blobs; this is the image-side reference those are tested against.)
/// Returns the per-layer statistics.
pub fn unpack_image(
    store: &ContentStore,
    image: &Descriptor,
    platform: Option<&Platform>,
    dest: &Path,
    opts: &crate::layer::ApplyOptions,
) -> Result<Vec<crate::layer::ApplyStats>, UnpackError> {
    let host = Platform::host();
    let mdesc = resolve_platform(store, image, platform.unwrap_or(&host))?;
    let bytes = store.read_limited(&mdesc.digest, MAX_MANIFEST_SIZE).map_err(ExportError::from)?;
    let m = ImageManifest::from_slice(&bytes).map_err(|source| ExportError::Manifest { digest: mdesc.digest.clone(), source })?;
    let config_bytes = store.read_limited(&m.config.digest, MAX_CONFIG_SIZE).map_err(ExportError::from)?;
    let config = crate::config::ImageConfig::from_slice(&config_bytes)
        .map_err(|source| UnpackError::Config { digest: m.config.digest.clone(), source })?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(UnpackError::LayerCount { manifest: m.layers.len(), config: config.rootfs.diff_ids.len() });
    }
    let opts = crate::layer::ApplyOptions { whiteouts: crate::layer::WhiteoutMode::Apply, ..opts.clone() };
    fs::create_dir_all(dest).map_err(io_err(dest.display().to_string()))?;
    let mut all = Vec::with_capacity(m.layers.len());
    for (layer, want) in m.layers.iter().zip(&config.rootfs.diff_ids) {
        let blob = store.open_blob(&layer.digest).map_err(ExportError::from)?;
        let stats = crate::layer::apply_layer(blob, &layer.media_type, dest, &opts)
            .map_err(|source| UnpackError::Layer { digest: layer.digest.clone(), source })?;
        if stats.diff_id != *want {
            return Err(UnpackError::DiffId { digest: layer.digest.clone(), expected: want.clone(), actual: stats.diff_id });
        }
        all.push(stats);
    }
    Ok(all)
}

/// Copies the images of an OCI layout directory into the store, verifying
/// every blob's digest and size, and returns the `index.json` entries (with
/// their names, if annotated). Only blobs reachable from `index.json` are
/// read, and only by digest-derived names.
pub fn import_oci_layout(store: &ContentStore, dir: &Path) -> Result<Vec<ExportImage>, ExportError> {
    let index_path = dir.join("index.json");
    let mut bytes = Vec::new();
    open_in_layout(dir, "index.json")?
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(io_err(index_path.display().to_string()))?;
    let index = ImageIndex::from_slice(&bytes).map_err(|_| ExportError::BadLayoutIndex(index_path.display().to_string()))?;
    let mut todo: Vec<Descriptor> = index.manifests.clone();
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        check_manifest_size(&d)?;
        if !store.contains(&d.digest) {
            let f = open_in_layout(dir, &format!("blobs/{}/{}", d.digest.algorithm(), d.digest.hex()))?;
            store.put_reader(f, Some((&d.digest, Some(d.size))))?;
        }
        if mt::is_index(&d.media_type) || mt::is_manifest(&d.media_type) {
            let bytes = store.read_limited(&d.digest, MAX_MANIFEST_SIZE)?;
            match manifest::parse(&bytes, Some(&d.media_type)).map_err(|source| ExportError::Manifest { digest: d.digest.clone(), source })? {
                Parsed::Index(idx) => todo.extend(idx.manifests),
                Parsed::Manifest(m) => {
                    todo.push(m.config);
                    todo.extend(m.layers);
                }
            }
        }
    }
    Ok(index
        .manifests
        .into_iter()
        .map(|d| {
            // The full name when it agrees with the OCI ref name; tools that
            // only manage ref names (umoci, skopeo) may leave a stale one.
            let ref_name = d.annotation(ANNOTATION_REF_NAME);
            let full = d.annotation(ANNOTATION_CONTAINERD_IMAGE_NAME).filter(|n| {
                let tag = Reference::parse(n).ok().and_then(|r| r.tag);
                ref_name.is_none() || tag.as_deref() == ref_name
            });
            let name = full.or(ref_name).map(str::to_owned);
            ExportImage::new(d, name)
        })
        .collect())
}

/// Opens a regular file of a (possibly hostile, e.g. unpacked from an
/// archive) layout: no symlinks anywhere in the path, nothing outside `dir`,
/// and no FIFOs or devices that could block or never end.
fn open_in_layout(dir: &Path, rel: &str) -> Result<fs::File, ExportError> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let shown = dir.join(rel).display().to_string();
    let root = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(dir.display().to_string())(e.into()))?;
    let fd = crate::layer::openat2_scoped(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| io_err(shown.clone())(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(shown.clone())(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io_err(shown)(io::Error::other("not a regular file")));
    }
    Ok(fs::File::from(fd))
}

/// Errors from [`unpack_image`].
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the image from the store failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The config blob is invalid.
    #[error("image config {digest} is invalid")]
    Config {
        digest: Digest,
        #[source]
        source: crate::config::ConfigError,
    },
    /// Manifest and config disagree on the number of layers.
    #[error("manifest lists {manifest} layers but the config has {config} diff_ids")]
    LayerCount { manifest: usize, config: usize },
    /// A layer failed to apply.
    #[error("cannot apply layer {digest}")]
    Layer {
        digest: Digest,
        #[source]
        source: crate::layer::LayerError,
    },
    /// A layer's uncompressed digest is not the one the config names.
    #[error("layer {digest}: uncompressed digest {actual} does not match the config's diff_id {expected}")]
    DiffId { digest: Digest, expected: Digest, actual: Digest },
}

#[cfg(test)]
mod tests;
