//! Conversion of a parsed Dockerfile into a build graph plus the image config
//! of the target stage.
//!
//! Two phases keep this module free of I/O: [`required_images`] lists the base
//! images the target needs; the caller resolves them (registry, local cache)
//! and passes their pinned references and configs to [`convert`]. Base image
//! configs matter for conversion: their `Env`, `WorkingDir`, `User` and
//! `OnBuild` change what later instructions mean.

mod dispatch;
mod remote;
mod stages;

use crate::Dockerfile;
use rbuild_graph::{Graph, VertexId};
use rbuild_oci::config::ImageConfig;
use std::collections::BTreeMap;

pub use stages::Base;

/// What a conversion needs besides the Dockerfile.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`; default: the last stage.
    pub target: Option<String>,
    /// `os/arch[/variant]` the image is for.
    pub target_platform: String,
    /// `os/arch[/variant]` of the machine building.
    pub build_platform: String,
    /// `--label` values, applied to the target image.
    pub labels: BTreeMap<String, String>,
    /// `--network`: the network of RUN steps that do not say (`default`
    /// when `None`).
    pub default_network: Option<rbuild_graph::Network>,
    /// `--no-cache`: every vertex runs again.
    pub no_cache: bool,
    /// `--no-cache-filter`: the vertices of these stages (by name or
    /// index) run again.
    pub no_cache_filter: Vec<String>,
    /// `.dockerignore` patterns of the build context.
    pub context_excludes: Vec<String>,
    /// `--build-context name=…`: these names win over stages and images of
    /// the same name in FROM, `COPY --from` and `RUN --mount from=`.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// RFC 3339 time for new history entries (`SOURCE_DATE_EPOCH`). When
    /// `None`, the exporter dates each entry by the step that made it, so a
    /// fully cached rebuild gives the same image digest.
    pub created: Option<String>,
}

/// What a `--build-context` name stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory, handed to the solver as context `name`.
    Local,
    /// An image reference (`docker-image://…`).
    Image(String),
}

/// A resolved base image.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// Pinned reference (`name@sha256:…`).
    pub reference: String,
    pub config: ImageConfig,
}

/// A base image the build needs: (name as written after expansion, platform).
pub type ImageKey = (String, String);

/// The result of a conversion.
#[derive(Debug)]
pub struct BuildPlan {
    pub graph: Graph,
    /// The vertex whose filesystem is the target image's.
    pub target: VertexId,
    /// The target image's config, history included; `rootfs.diff_ids` is
    /// filled in by the exporter.
    pub config: ImageConfig,
    pub warnings: Vec<String>,
}

/// Errors of the conversion, with the place in the Dockerfile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{file}:{line}: {message}")]
    At { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{0}")]
    Parse(String),
    #[error("base image `{0}` ({1}) was not resolved by the caller")]
    Unresolved(String, String),
}

/// The base images the target needs, in a stable order.
pub fn required_images(df: &Dockerfile, opts: &ConvertOptions) -> Result<Vec<ImageKey>, ConvertError> {
    let resolved = stages::resolve(df, opts)?;
    Ok(resolved.images)
}

/// Converts the stages the target needs into a graph.
pub fn convert(
    df: &Dockerfile,
    opts: &ConvertOptions,
    images: &BTreeMap<ImageKey, BaseImage>,
) -> Result<BuildPlan, ConvertError> {
    let resolved = stages::resolve(df, opts)?;
    dispatch::run(df, opts, images, resolved)
}

#[cfg(test)]
mod tests;
