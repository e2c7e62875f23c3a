//! rbuild-oci: the image half of rbuild.
//!
//! Digests, references, platforms, media types, image config / manifest /
//! index assembly, the content store, layer tar creation and extraction, and
//! exporters to OCI layouts and docker-archive tars. No networking lives here
//! (that is `rbuild-registry`); everything is synchronous `std` I/O so that
//! async callers wrap it in `spawn_blocking`.
//!
//! How the pieces meet when an image is built:
//!
//! 1. [`layer::create_layer`] tars an overlay upperdir into the
//!    [`store::ContentStore`] and returns its diffID and blob descriptor;
//! 2. the frontend's [`config::ImageConfig`] gets the diffIDs and history;
//!    [`manifest::build_config`], [`manifest::build_manifest`] and
//!    [`manifest::build_index`] produce canonical bytes to `put_bytes`;
//! 3. the manifest (or index) descriptor goes to `rbuild-registry` for a
//!    push, or to [`export`] for an OCI layout, an OCI or docker-archive tar,
//!    or a flattened root filesystem ([`export::unpack_image`]).
//!
//! When an image is pulled, `rbuild-registry` stores the raw blobs and
//! [`layer::apply_layer`] unpacks each layer into a snapshot directory; its
//! [`layer::ApplyStats::diff_id`] is checked against the config.

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
