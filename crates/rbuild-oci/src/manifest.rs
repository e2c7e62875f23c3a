//! Image manifests and indexes: parsing what registries return and
//! building what we push.
//!
//! Parsed documents are for reading only; their original bytes are what
//! gets stored and re-pushed (re-serialising would change the digest).
//! Built documents go through [`crate::json`] so equal inputs give equal
//! digests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::media_types as mt;
use crate::platform::Platform;

/// Errors from parsing or building manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON for the detected document kind.
    #[error("invalid {kind} JSON")]
    Json {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The media type is not a manifest or index we understand.
    #[error("unsupported manifest media type `{0}`")]
    UnsupportedMediaType(String),
    /// schemaVersion is not 2.
    #[error("unsupported manifest schemaVersion {0} (only 2 is supported)")]
    SchemaVersion(u64),
    /// The `mediaType` field disagrees with what the registry said.
    #[error("manifest mediaType `{inner}` disagrees with content type `{outer}`")]
    MediaTypeMismatch { inner: String, outer: String },
    /// Neither a mediaType nor a recognisable shape.
    #[error("cannot tell whether the document is a manifest or an index")]
    Unrecognised,
    /// A layer or config descriptor has a media type that does not fit.
    #[error("descriptor {digest} has media type `{media_type}` where {expected} was expected")]
    WrongDescriptorType { digest: Digest, media_type: String, expected: &'static str },
}

/// Which family of media types to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestFormat {
    /// OCI image-spec media types (BuildKit's default).
    #[default]
    Oci,
    /// Docker v2 schema 2 (`oci-mediatypes=false`).
    DockerV2S2,
}

impl ManifestFormat {
    /// The manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => mt::OCI_MANIFEST,
            ManifestFormat::DockerV2S2 => mt::DOCKER_MANIFEST,
        }
    }
    /// The index media type.
    pub fn index_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => mt::OCI_INDEX,
            ManifestFormat::DockerV2S2 => mt::DOCKER_MANIFEST_LIST,
        }
    }
    /// The config media type.
    pub fn config_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => mt::OCI_CONFIG,
            ManifestFormat::DockerV2S2 => mt::DOCKER_CONFIG,
        }
    }
    /// Whether this is the OCI family.
    pub fn is_oci(self) -> bool {
        self == ManifestFormat::Oci
    }

    /// The format to actually use for these layers: Docker v2s2 has no zstd
    /// layer type, so zstd layers force OCI media types (as BuildKit does for
    /// `compression=zstd`). Apply it to the index as well, so that an index
    /// and its manifests agree.
    pub fn for_layers(self, layers: &[Descriptor]) -> ManifestFormat {
        let zstd = layers.iter().any(|l| mt::layer_compression(&l.media_type) == Some(mt::LayerCompression::Zstd));
        if zstd { ManifestFormat::Oci } else { self }
    }
}

/// An image manifest (OCI or Docker v2s2; same JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u64,
    /// Required by Docker, recommended by OCI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Referrers API subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index / Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u64,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The per-platform manifests (or nested indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Referrers API subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest or index.
#[allow(clippy::large_enum_variant)] // short-lived; boxing would only add noise at call sites
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A single-platform image.
    Manifest(ImageManifest),
    /// A list of manifests.
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u64>,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

/// Parses a manifest or index. The kind is taken from the document's
/// `mediaType`, else from `content_type` (the registry's Content-Type header),
/// else from its shape (`manifests` vs `config`). A `mediaType` that
/// contradicts a specific content type is refused: a registry must not be
/// able to make us read an index as a manifest or vice versa.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { kind: "manifest", source })?;
    if let Some(v) = probe.schema_version
        && v != 2
    {
        return Err(ManifestError::SchemaVersion(v));
    }
    let outer = content_type.map(|c| c.split(';').next().unwrap_or(c).trim()).filter(|c| is_known(c));
    let kind = match (&probe.media_type, outer) {
        // Only a disagreement on the *kind* matters; some registries label an
        // OCI manifest with the Docker type or vice versa.
        (Some(inner), Some(outer)) if mt::is_index(inner) != mt::is_index(outer) => {
            return Err(ManifestError::MediaTypeMismatch { inner: inner.clone(), outer: outer.to_owned() });
        }
        (Some(inner), _) => inner.clone(),
        (None, Some(outer)) => outer.to_owned(),
        (None, None) => match (probe.manifests.is_some(), probe.config.is_some()) {
            (true, false) => mt::OCI_INDEX.to_owned(),
            (false, true) => mt::OCI_MANIFEST.to_owned(),
            _ => return Err(ManifestError::Unrecognised),
        },
    };
    if mt::is_index(&kind) {
        let idx: ImageIndex =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { kind: "index", source })?;
        Ok(Parsed::Index(idx))
    } else if mt::is_manifest(&kind) {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json { kind: "manifest", source })?;
        Ok(Parsed::Manifest(m))
    } else {
        Err(ManifestError::UnsupportedMediaType(kind))
    }
}

fn is_known(c: &str) -> bool {
    mt::is_index(c) || mt::is_manifest(c) || c == mt::DOCKER_MANIFEST_V1_SIGNED
}

impl ImageManifest {
    /// Parses bytes that must be a manifest.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ManifestError> {
        match parse(bytes, None)? {
            Parsed::Manifest(m) => Ok(m),
            Parsed::Index(i) => Err(ManifestError::UnsupportedMediaType(i.media_type.unwrap_or_else(|| mt::OCI_INDEX.into()))),
        }
    }

    /// Checks that config and layers carry config/layer media types
    /// (foreign types are left to the caller; this guards against a registry
    /// serving an index where a layer should be).
    pub fn check_types(&self) -> Result<(), ManifestError> {
        if !mt::is_config(&self.config.media_type) {
            return Err(ManifestError::WrongDescriptorType {
                digest: self.config.digest.clone(),
                media_type: self.config.media_type.clone(),
                expected: "an image config",
            });
        }
        for l in &self.layers {
            if !mt::is_layer(&l.media_type) {
                return Err(ManifestError::WrongDescriptorType {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    expected: "a layer",
                });
            }
        }
        Ok(())
    }
}

impl ImageIndex {
    /// Parses bytes that must be an index.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ManifestError> {
        match parse(bytes, None)? {
            Parsed::Index(i) => Ok(i),
            Parsed::Manifest(m) => {
                Err(ManifestError::UnsupportedMediaType(m.media_type.unwrap_or_else(|| mt::OCI_MANIFEST.into())))
            }
        }
    }

    /// The best manifest for `platform` (containerd's ordering: exact match
    /// first, then compatible variants). Attestation manifests are skipped.
    /// When no entry names a matching platform, the first manifest entry
    /// without a `platform` is returned, as containerd does; the caller
    /// should then check the platform in that image's config.
    pub fn select(&self, platform: &Platform) -> Option<&Descriptor> {
        let usable = || {
            self.manifests
                .iter()
                .filter(|d| d.annotation("vnd.docker.reference.type") != Some("attestation-manifest"))
        };
        let candidates: Vec<&Descriptor> = usable().filter(|d| d.platform.is_some()).collect();
        let best = platform.select_best(candidates.iter().filter_map(|d| d.platform.as_ref()));
        match best.and_then(|i| candidates.get(i)) {
            Some(d) => Some(*d),
            None => usable().find(|d| d.platform.is_none() && (mt::is_manifest(&d.media_type) || mt::is_index(&d.media_type))),
        }
    }
}

/// A document we built: its canonical bytes and its descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The exact bytes to store and push.
    pub bytes: Vec<u8>,
    /// Media type, digest and size of `bytes`.
    pub descriptor: Descriptor,
}

fn built<T: Serialize>(value: &T, media_type: &str, kind: &'static str) -> Result<Built, ManifestError> {
    let bytes = crate::json::to_canonical_vec(value).map_err(|source| ManifestError::Json { kind, source })?;
    let descriptor = Descriptor::for_bytes(media_type, &bytes);
    Ok(Built { bytes, descriptor })
}

/// Serialises a config canonically with the format's config media type.
pub fn build_config(config: &crate::config::ImageConfig, format: ManifestFormat) -> Result<Built, ManifestError> {
    built(config, format.config_type(), "config")
}

/// Builds a manifest. Config and layer media types are converted to the
/// chosen family, so a caller can pass descriptors straight from
/// [`crate::layer`]. Zstd layers force OCI media types (see
/// [`ManifestFormat::for_layers`]); the returned descriptor says which.
pub fn build_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: Option<BTreeMap<String, String>>,
    format: ManifestFormat,
) -> Result<Built, ManifestError> {
    let format = format.for_layers(layers);
    let mut config = config.clone();
    config.media_type = format.config_type().to_owned();
    let layers = layers
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l.media_type = mt::convert_layer_type(&l.media_type, format.is_oci()).to_owned();
            l
        })
        .collect();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(format.manifest_type().to_owned()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: annotations.filter(|a| !a.is_empty() && format.is_oci()),
    };
    built(&m, format.manifest_type(), "manifest")
}

/// Builds an index over manifests (each descriptor should carry its
/// platform). Docker manifest lists cannot carry annotations, so they are
/// dropped in that format.
pub fn build_index(
    manifests: &[Descriptor],
    annotations: Option<BTreeMap<String, String>>,
    format: ManifestFormat,
) -> Result<Built, ManifestError> {
    let idx = ImageIndex {
        schema_version: 2,
        media_type: Some(format.index_type().to_owned()),
        artifact_type: None,
        manifests: manifests.to_vec(),
        subject: None,
        annotations: annotations.filter(|a| !a.is_empty() && format.is_oci()),
    };
    built(&idx, format.index_type(), "index")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageConfig;

    fn layer() -> Descriptor {
        Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256(b"layer"), 5)
    }

    #[test]
    fn build_then_parse_round_trip_is_deterministic() {
        let cfg = build_config(&ImageConfig::new(&Platform::parse("linux/amd64").unwrap()), ManifestFormat::Oci).unwrap();
        let a = build_manifest(&cfg.descriptor, &[layer()], None, ManifestFormat::Oci).unwrap();
        let b = build_manifest(&cfg.descriptor, &[layer()], None, ManifestFormat::Oci).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.descriptor.media_type, mt::OCI_MANIFEST);
        assert_eq!(a.descriptor.digest, Digest::sha256(&a.bytes));
        match parse(&a.bytes, Some(mt::OCI_MANIFEST)).unwrap() {
            Parsed::Manifest(m) => {
                assert_eq!(m.layers, vec![layer()]);
                m.check_types().unwrap();
            }
            Parsed::Index(_) => panic!("expected manifest"),
        }
    }

    #[test]
    fn docker_format_converts_media_types() {
        let cfg = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(b"c"), 1);
        let zstd = Descriptor::new(mt::OCI_LAYER_ZSTD, Digest::sha256(b"z"), 1);
        let m = build_manifest(&cfg, &[layer()], None, ManifestFormat::DockerV2S2).unwrap();
        let parsed = ImageManifest::from_slice(&m.bytes).unwrap();
        assert_eq!(parsed.media_type.as_deref(), Some(mt::DOCKER_MANIFEST));
        assert_eq!(parsed.config.media_type, mt::DOCKER_CONFIG);
        assert_eq!(parsed.layers[0].media_type, mt::DOCKER_LAYER_GZIP);
        // zstd has no Docker type: the whole manifest switches to OCI.
        let m = build_manifest(&cfg, &[layer(), zstd], None, ManifestFormat::DockerV2S2).unwrap();
        assert_eq!(m.descriptor.media_type, mt::OCI_MANIFEST);
        let parsed = ImageManifest::from_slice(&m.bytes).unwrap();
        assert_eq!(parsed.config.media_type, mt::OCI_CONFIG);
        assert_eq!(parsed.layers[0].media_type, mt::OCI_LAYER_GZIP);
        assert_eq!(parsed.layers[1].media_type, mt::OCI_LAYER_ZSTD);
    }

    #[test]
    fn index_selection_and_detection() {
        let m1 = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"1"), 1).with_platform(Platform::parse("linux/amd64").unwrap());
        let m2 = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"2"), 1).with_platform(Platform::parse("linux/arm/v7").unwrap());
        let att = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"3"), 1)
            .with_platform(Platform { os: "unknown".into(), architecture: "unknown".into(), variant: None })
            .with_annotation("vnd.docker.reference.type", "attestation-manifest");
        let idx = build_index(&[m1.clone(), m2.clone(), att], None, ManifestFormat::Oci).unwrap();
        let parsed = ImageIndex::from_slice(&idx.bytes).unwrap();
        assert_eq!(parsed.select(&Platform::parse("linux/amd64").unwrap()), Some(&m1));
        assert_eq!(parsed.select(&Platform::parse("linux/arm64").unwrap()), Some(&m2));
        assert_eq!(parsed.select(&Platform::parse("linux/s390x").unwrap()), None);
        // An entry without a platform is the fallback.
        let bare_m = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"4"), 1);
        let idx2 = build_index(&[m1.clone(), bare_m.clone()], None, ManifestFormat::Oci).unwrap();
        let parsed2 = ImageIndex::from_slice(&idx2.bytes).unwrap();
        assert_eq!(parsed2.select(&Platform::parse("linux/s390x").unwrap()), Some(&bare_m));
        assert_eq!(parsed2.select(&Platform::parse("linux/amd64").unwrap()), Some(&m1));
        // Shape detection without mediaType.
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(bare, None).unwrap(), Parsed::Index(_)));
        // A registry claiming a manifest for an index document is refused.
        assert!(matches!(parse(&idx.bytes, Some(mt::OCI_MANIFEST)), Err(ManifestError::MediaTypeMismatch { .. })));
        assert!(matches!(parse(&idx.bytes, Some(mt::DOCKER_MANIFEST_LIST)), Ok(Parsed::Index(_))));
        assert!(matches!(parse(&idx.bytes, Some("application/json; charset=utf-8")), Ok(Parsed::Index(_))));
        assert!(matches!(parse(br#"{"schemaVersion":1}"#, None), Err(ManifestError::SchemaVersion(1))));
        assert!(matches!(parse(b"[]", None), Err(ManifestError::Json { .. })));
        assert!(matches!(ImageManifest::from_slice(&idx.bytes), Err(ManifestError::UnsupportedMediaType(_))));
    }
}
