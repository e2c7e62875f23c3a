//! Content descriptors: what a manifest or index says about a blob.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

/// Annotation key naming an image inside an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation key for an image's creation time.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// containerd's annotation carrying the full image name in an OCI layout.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// An OCI content descriptor (media type, digest, size and optional
/// metadata), with the OCI JSON field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// How to interpret the blob.
    pub media_type: String,
    /// Digest of the blob's bytes.
    pub digest: Digest,
    /// Exact size of the blob in bytes (verified on fetch).
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// For index entries: the platform the manifest is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// For artifacts: the artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded base64 content (rarely used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A plain descriptor with no optional fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// The descriptor of an in-memory blob.
    pub fn for_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::sha256(bytes), bytes.len() as u64)
    }

    /// Adds (or replaces) one annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }

    /// Sets the platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Looks up one annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_oci_field_names_and_skips_empty() {
        let d = Descriptor::for_bytes("application/x", b"abc").with_annotation("k", "v");
        let j = crate::json::to_canonical_string(&d).unwrap();
        assert_eq!(
            j,
            format!(r#"{{"annotations":{{"k":"v"}},"digest":"{}","mediaType":"application/x","size":3}}"#, d.digest)
        );
        let back: Descriptor = serde_json::from_str(&j).unwrap();
        assert_eq!(back, d);
        let bad = r#"{"mediaType":"x","digest":"sha256:../../etc","size":1}"#;
        assert!(serde_json::from_str::<Descriptor>(bad).is_err());
    }
}
