//! The conversion's view of stage resolution: [`crate::stages::resolve`]
//! decides which stages the target needs, their bases, platforms and the
//! global ARG values; this module maps its answer onto what the converter
//! needs (bases with named image contexts substituted, the base images to
//! resolve) and answers `--from` lookups the same way.

use super::{ConvertError, ConvertOptions, ImageKey, NamedContext};
use crate::stages::{ResolveOptions, Source};
use rbuild_oci::platform::Platform;
use crate::Dockerfile;
use std::collections::{BTreeMap, BTreeSet};

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image name (expanded, as written).
    Image(String),
    /// A local named build context (`--build-context name=DIR`).
    Context(String),
}

/// A needed stage after FROM expansion.
#[derive(Clone, Debug)]
pub(crate) struct StageInfo {
    pub base: Base,
    pub platform: String,
    /// `name` or `stage-N`, for progress output.
    pub display: String,
}

/// The outcome of stage resolution.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// Needed stages by index.
    pub stages: BTreeMap<usize, StageInfo>,
    pub target: usize,
    /// Global ARG values (build args applied, automatic platform args
    /// included), visible to stages that re-declare them.
    pub global_args: BTreeMap<String, String>,
    pub images: Vec<ImageKey>,
    /// Rendered warnings (unused build args, undefined ARGs in FROM, …).
    pub warnings: Vec<String>,
}

fn base_of(opts: &ConvertOptions, source: &Source) -> Base {
    match source {
        Source::Scratch => Base::Scratch,
        Source::Stage(j) => Base::Stage(*j),
        Source::Image(name) => Base::Image(name.clone()),
        Source::Context(name) => match opts.named_contexts.get(name) {
            Some(NamedContext::Image(r)) => Base::Image(r.clone()),
            _ => Base::Context(name.clone()),
        },
    }
}

/// What a `--from` name means: a named context, then a stage (name or
/// index), else an image name — the order BuildKit uses.
pub(crate) fn lookup_name(df: &Dockerfile, opts: &ConvertOptions, name: &str) -> Base {
    match opts.named_contexts.get(name) {
        Some(NamedContext::Local) => return Base::Context(name.to_string()),
        Some(NamedContext::Image(r)) => return Base::Image(r.clone()),
        None => {}
    }
    if let Some(s) = df.stage_by_name(name) {
        return Base::Stage(s.index);
    }
    match name.parse::<usize>() {
        Ok(i) if i < df.stages.len() => Base::Stage(i),
        _ => Base::Image(name.to_string()),
    }
}

fn platform(s: &str, what: &str, file: &str) -> Result<Platform, ConvertError> {
    Platform::parse(s)
        .map_err(|_| ConvertError::File { file: file.to_string(), message: format!("invalid {what} platform `{s}`") })
}

pub(crate) fn resolve(df: &Dockerfile, opts: &ConvertOptions) -> Result<Resolved, ConvertError> {
    let file = df.file_name.clone();
    let named: BTreeSet<String> = opts.named_contexts.keys().cloned().collect();
    let ropts = ResolveOptions {
        build_args: &opts.build_args,
        target: opts.target.as_deref(),
        build_platform: platform(&opts.build_platform, "build", &file)?,
        target_platform: platform(&opts.target_platform, "target", &file)?,
        named_contexts: &named,
    };
    let r = crate::stages::resolve(df, &ropts).map_err(|e| ConvertError::Parse(e.to_string()))?;
    let mut stages = BTreeMap::new();
    let mut images: Vec<ImageKey> = Vec::new();
    let mut add = |k: ImageKey| {
        if !images.contains(&k) {
            images.push(k);
        }
    };
    for s in &r.stages {
        let base = base_of(opts, &s.base);
        let platform = match (&s.platform, &base) {
            (Some(p), _) => p.to_string(),
            // A stage built on another inherits its platform.
            (None, Base::Stage(j)) => stages.get(j).map(|i: &StageInfo| i.platform.clone()).unwrap_or_else(|| opts.target_platform.clone()),
            (None, _) => opts.target_platform.clone(),
        };
        if let Base::Image(name) = &base {
            add((name.clone(), platform.clone()));
        }
        for f in &s.from_refs {
            if let Base::Image(name) = base_of(opts, &f.source) {
                add((name, platform.clone()));
            }
        }
        let display = s.name.clone().unwrap_or_else(|| format!("stage-{}", s.index));
        stages.insert(s.index, StageInfo { base, platform, display });
    }
    let warnings = r.warnings.iter().map(|w| w.message.clone()).collect();
    Ok(Resolved { stages, target: r.target, global_args: r.global_args, images, warnings })
}
