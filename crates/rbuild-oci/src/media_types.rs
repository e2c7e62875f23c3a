//! Media types of OCI and Docker v2 schema 2 artifacts.
//!
//! Registries and tools decide how to read a blob from its media type, so
//! these strings must be exact; keeping them in one place avoids typos.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform list).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer tar.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable gzip layer (deprecated, still seen on Windows images).
pub const OCI_LAYER_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI empty JSON descriptor (`{}`), used by artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker container image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (rare, but valid).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 signed manifest (legacy; recognised only to refuse it clearly).
pub const DOCKER_MANIFEST_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Compression a layer media type implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// Whether `mt` names a manifest (single image) of either family.
pub fn is_manifest(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// Whether `mt` names an index / manifest list of either family.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

/// Whether `mt` names an image config of either family.
pub fn is_config(mt: &str) -> bool {
    mt == OCI_CONFIG || mt == DOCKER_CONFIG
}

/// The compression of a layer media type, or `None` when `mt` is not a
/// layer type we can unpack.
pub fn layer_compression(mt: &str) -> Option<LayerCompression> {
    match mt {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Some(LayerCompression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Some(LayerCompression::Gzip)
        }
        OCI_LAYER_ZSTD => Some(LayerCompression::Zstd),
        _ => None,
    }
}

/// Whether `mt` is a layer type.
pub fn is_layer(mt: &str) -> bool {
    layer_compression(mt).is_some()
}

/// The layer media type for a compression in the chosen family. Docker v2s2
/// has no zstd type; like BuildKit we then use the OCI one.
pub fn layer_type(compression: LayerCompression, oci: bool) -> &'static str {
    match (compression, oci) {
        (LayerCompression::None, true) => OCI_LAYER_TAR,
        (LayerCompression::None, false) => DOCKER_LAYER_TAR,
        (LayerCompression::Gzip, true) => OCI_LAYER_GZIP,
        (LayerCompression::Gzip, false) => DOCKER_LAYER_GZIP,
        (LayerCompression::Zstd, _) => OCI_LAYER_ZSTD,
    }
}

/// Converts a layer media type between the OCI and Docker families,
/// keeping its compression; unknown types are returned unchanged.
pub fn convert_layer_type(mt: &str, oci: bool) -> &str {
    match layer_compression(mt) {
        Some(c) => layer_type(c, oci),
        None => mt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_type_conversion_keeps_compression() {
        assert_eq!(convert_layer_type(OCI_LAYER_GZIP, false), DOCKER_LAYER_GZIP);
        assert_eq!(convert_layer_type(DOCKER_LAYER_GZIP, true), OCI_LAYER_GZIP);
        assert_eq!(convert_layer_type(OCI_LAYER_ZSTD, false), OCI_LAYER_ZSTD);
        assert_eq!(convert_layer_type("text/plain", true), "text/plain");
        assert_eq!(layer_compression(DOCKER_LAYER_FOREIGN_GZIP), Some(LayerCompression::Gzip));
        assert!(is_index(DOCKER_MANIFEST_LIST) && is_manifest(OCI_MANIFEST) && is_config(DOCKER_CONFIG));
    }
}
