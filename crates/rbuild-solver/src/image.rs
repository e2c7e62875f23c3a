//! Image sources: a base image's layers as a chain of snapshots.
//!
//! Each layer becomes one snapshot whose parent is the layer below; the
//! snapshot is found again by the layer's chain ID (the digest of the diff IDs
//! up to it), so two images that share base layers share snapshots. The pulled
//! blob is memoized as the snapshot's layer, so pushing an image built on this
//! base re-uses the original blob instead of compressing it again.

use crate::db::LayerRecord;
use crate::progress::{Event, now_ms};
use crate::solve::Ctx;
use crate::SolveError;
use rbuild_graph::{Digest as GraphDigest, ImageSource};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::layer::{ApplyOptions, WhiteoutMode, apply_layer};
use rbuild_oci::manifest::ImageManifest;
use rbuild_oci::media_types;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use std::sync::Arc;
use std::time::Instant;

/// The chain ID after `diff_id`, given the chain ID of the layers below.
pub(crate) fn next_chain_id(prev: Option<&str>, diff_id: &str) -> String {
    match prev {
        None => diff_id.to_string(),
        Some(prev) => GraphDigest::of_bytes(format!("{prev} {diff_id}").as_bytes()).to_string(),
    }
}

/// The chain ID of layers `diff_ids[..=i]`, as the OCI image spec defines it.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        out.push(next_chain_id(out.last().map(String::as_str), d));
    }
    out
}

/// Brings the image's layers into snapshots; returns the top snapshot.
pub(crate) async fn solve_image(
    ctx: &Arc<Ctx>,
    vertex: &str,
    name: &str,
    src: &ImageSource,
) -> Result<Option<String>, SolveError> {
    let engine = &ctx.engine;
    let reference = Reference::parse(&src.reference)
        .map_err(|e| SolveError::Image { reference: src.reference.clone(), message: crate::chain(&e) })?;
    let platform = Platform::parse(&src.platform)
        .map_err(|e| SolveError::Image { reference: src.reference.clone(), message: crate::chain(&e) })?;
    let image_err = |message: String| SolveError::Image { reference: src.reference.clone(), message };

    let (manifest, config) = engine.manifest_and_config(&reference, &platform).await?;
    let diff_ids: Vec<String> = config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
    if diff_ids.len() != manifest.layers.len() {
        return Err(image_err(format!(
            "the config lists {} diff IDs but the manifest {} layers",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let chains = chain_ids(&diff_ids);
    let mut parent: Option<String> = None;
    let mut announced = false;
    let started = Instant::now();
    let sink = ctx.progress().clone();
    let progress_vertex = vertex.to_string();
    let progress = move |p: rbuild_registry::ProgressEvent| {
        sink.emit(Event::Progress {
            vertex: progress_vertex.clone(),
            id: format!("pull {}", p.digest),
            current: p.done,
            total: Some(p.total),
            time_ms: now_ms(),
        })
    };
    for (i, layer) in manifest.layers.iter().enumerate() {
        let key = format!("layer:{}", chains[i]);
        if let Some(snap) = engine.cached(&key)? {
            parent = Some(snap);
            continue;
        }
        if !announced {
            ctx.progress().emit(Event::Started { vertex: vertex.into(), name: name.into(), time_ms: now_ms() });
            announced = true;
        }
        if !engine.state.content.contains(&layer.digest) {
            engine
                .registry
                .fetch_blob(&reference, layer, &engine.state.content, &progress)
                .await
                .map_err(|e| image_err(crate::chain(&e)))?;
        }
        let snap = unpack_layer(ctx, layer, &diff_ids[i], parent.as_deref(), &key).await?;
        parent = Some(snap);
    }
    if announced {
        let duration_ms = started.elapsed().as_millis() as u64;
        ctx.progress().emit(Event::Done { vertex: vertex.into(), name: name.into(), time_ms: now_ms(), duration_ms });
    } else {
        ctx.progress().emit(Event::Cached { vertex: vertex.into(), name: name.into(), time_ms: now_ms() });
    }
    Ok(parent)
}

/// Unpacks one layer blob into a new snapshot on top of `parent`, checking
/// its diff ID, and records it under `key`.
async fn unpack_layer(
    ctx: &Arc<Ctx>,
    layer: &Descriptor,
    diff_id: &str,
    parent: Option<&str>,
    key: &str,
) -> Result<String, SolveError> {
    let engine = ctx.engine.clone();
    let layer = layer.clone();
    let diff_id = diff_id.to_string();
    let parent = parent.map(str::to_string);
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        let state = &engine.state;
        let active = crate::prepare(&engine, parent.as_deref())?;
        let layer_err = |message: String| SolveError::Layer { digest: layer.digest.to_string(), message };
        let file = state.content.open_blob(&layer.digest).map_err(|e| layer_err(crate::chain(&e)))?;
        // A copy-backend snapshot is a full tree: whiteouts delete for real.
        let whiteouts = if active.is_full_tree() { WhiteoutMode::Apply } else { WhiteoutMode::Overlay };
        let opts = ApplyOptions { whiteouts, can_mknod: true, ..ApplyOptions::default() };
        let stats = apply_layer(std::io::BufReader::new(file), &layer.media_type, &active.upper, &opts)
            .map_err(|e| layer_err(crate::chain(&e)))?;
        if stats.diff_id.as_str() != diff_id {
            return Err(layer_err(format!(
                "uncompressed content is {}, but the image config says {diff_id}",
                stats.diff_id
            )));
        }
        let snapshot = state.snapshots.commit(active)?;
        let recorded = engine.record(&key, snapshot.as_str(), parent.as_deref(), false, &format!("layer {}", layer.digest), false)?;
        let compression = media_types::layer_compression(&layer.media_type)
            .map(crate::export::compression_name)
            .unwrap_or("gzip");
        let rec = LayerRecord {
            diff_id,
            digest: layer.digest.to_string(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        };
        state.db.put_layer(&recorded, compression, &rec)?;
        Ok(recorded)
    })
    .await
    .map_err(|_| SolveError::Cancelled)?
}

/// Parses a stored manifest and config.
pub(crate) fn parse_manifest_and_config(
    manifest: &[u8],
    config: &[u8],
) -> Result<(ImageManifest, ImageConfig), String> {
    let manifest = ImageManifest::from_slice(manifest).map_err(|e| e.to_string())?;
    let config: ImageConfig = serde_json::from_slice(config).map_err(|e| format!("image config: {e}"))?;
    Ok((manifest, config))
}

#[cfg(test)]
mod tests {
    use super::chain_ids;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        let expected = rbuild_graph::Digest::of_bytes(format!("{a} {b}").as_bytes()).to_string();
        assert_eq!(chains[1], expected);
    }
}
