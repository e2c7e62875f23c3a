//! rbuild-oci: the image half of rbuild.
//!
//! Digests, references, platforms, media types, image config / manifest /
//! index assembly, the content store, layer tar creation and extraction, and
//! exporters to OCI layouts and docker-archive tars. No networking lives here
//! (that is `rbuild-registry`); everything is synchronous `std` I/O so that
//! async callers wrap it in `spawn_blocking`.

pub mod config;
pub mod descriptor;
pub mod digest;
pub mod export;
pub mod json;
pub mod layer;
pub mod manifest;
pub mod media_types;
pub mod platform;
pub mod reference;
pub mod store;

pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use descriptor::Descriptor;
pub use digest::{Digest, DigestReader, DigestWriter, Digester};
pub use manifest::{Built, ImageIndex, ImageManifest, ManifestFormat, Parsed};
pub use platform::Platform;
pub use reference::Reference;
pub use store::{ContentStore, Ingest};
