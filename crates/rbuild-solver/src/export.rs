//! Image assembly: the layers of a snapshot chain, the config and the
//! manifest, written to the content store.
//!
//! A snapshot's layer is created once per compression and memoized in the
//! metadata DB; layers pulled with a base image keep their original blob.

use crate::db::{LayerRecord, SnapshotRow};
use crate::{Engine, SolveError};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::layer::{Compression, CreateOptions, create_layer};
use rbuild_oci::manifest::{self, ManifestFormat};
use rbuild_oci::media_types::{self, LayerCompression};
use std::sync::Arc;

/// How to write an image.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub compression: Compression,
    /// Recompress layers that already exist in another compression.
    pub force_compression: bool,
    /// OCI media types (default) or Docker v2 schema 2.
    pub oci_mediatypes: bool,
    /// Clamp file times and `created` to this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            compression: Compression::Gzip { level: 6 },
            force_compression: false,
            oci_mediatypes: true,
            source_date_epoch: None,
        }
    }
}

/// An image written to the content store.
#[derive(Clone, Debug)]
pub struct ExportedImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
}

/// The DB name of a compression.
pub fn compression_name(c: LayerCompression) -> &'static str {
    match c {
        LayerCompression::None => "none",
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
    }
}

fn compression_of(c: &Compression) -> LayerCompression {
    match c {
        Compression::None => LayerCompression::None,
        Compression::Gzip { .. } => LayerCompression::Gzip,
        Compression::Zstd { .. } => LayerCompression::Zstd,
    }
}

impl Engine {
    /// The snapshots of a chain with their records, bottom first (one DB
    /// query per snapshot).
    fn chain(&self, top: Option<&str>) -> Result<Vec<(String, SnapshotRow)>, SolveError> {
        let mut chain = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(id) = cur {
            let row = self.state.db.snapshot_row(&id)?.unwrap_or(SnapshotRow { parent: None, empty: false, created: 0 });
            cur = row.parent.clone();
            chain.push((id, row));
        }
        chain.reverse();
        Ok(chain)
    }

    /// The layer blob of one snapshot, created (once) when missing.
    fn layer_for(&self, snapshot: &str, opts: &ExportOptions) -> Result<LayerRecord, SolveError> {
        // A `COPY --link` layer stacked onto this chain is the blob of the
        // snapshot it was made as, whatever it was stacked onto.
        // Recorded for the merged snapshot too, so that garbage collection
        // sees the blob in use while either snapshot lives.
        if let Some(source) = self.merge_layer_source(snapshot)? {
            let rec = self.layer_for(&source, opts)?;
            let compression = media_types::layer_compression(&rec.media_type).map(compression_name).unwrap_or("gzip");
            self.state.db.put_layer(snapshot, compression, &rec)?;
            return Ok(rec);
        }
        let wanted = compression_name(compression_of(&opts.compression));
        let db = &self.state.db;
        if let Some(rec) = db.layer(snapshot, wanted)?
            && self.state.content.contains(&parse_digest(&rec.digest)?)
        {
            return Ok(rec);
        }
        if !opts.force_compression {
            for other in ["gzip", "zstd", "none"] {
                if let Some(rec) = db.layer(snapshot, other)?
                    && self.state.content.contains(&parse_digest(&rec.digest)?)
                {
                    return Ok(rec);
                }
            }
        }
        let upper = self.state.snapshots.diff_dir(&crate::sid(snapshot)?)?;
        let create = CreateOptions {
            compression: opts.compression,
            source_date_epoch: opts.source_date_epoch,
            docker_media_types: !opts.oci_mediatypes,
        };
        let info = create_layer(&self.state.content, &upper, &create)
            .map_err(|e| SolveError::Export { message: format!("layer of snapshot {snapshot}: {e}") })?;
        let rec = LayerRecord {
            diff_id: info.diff_id.to_string(),
            digest: info.descriptor.digest.to_string(),
            size: info.descriptor.size,
            media_type: info.descriptor.media_type.clone(),
        };
        db.put_layer(snapshot, wanted, &rec)?;
        Ok(rec)
    }

    /// Writes layers, config and manifest of the image whose filesystem is
    /// the chain under `top` and whose config (with history) the frontend
    /// made. Layers of empty diffs are left out and their history entries
    /// marked `empty_layer`, as BuildKit does.
    pub async fn export_image(
        self: &Arc<Self>,
        top: Option<String>,
        config: ImageConfig,
        opts: ExportOptions,
    ) -> Result<ExportedImage, SolveError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.export_image_blocking(top.as_deref(), config, &opts))
            .await
            .map_err(|_| SolveError::Cancelled)?
    }

    fn export_image_blocking(
        &self,
        top: Option<&str>,
        mut config: ImageConfig,
        opts: &ExportOptions,
    ) -> Result<ExportedImage, SolveError> {
        let chain = self.chain(top)?;
        let mut layers: Vec<Descriptor> = Vec::new();
        let mut diff_ids: Vec<Digest> = Vec::new();
        let mut empties: Vec<(bool, Option<String>)> = Vec::new();
        let mut chain_id: Option<String> = None;
        for (snap, row) in &chain {
            let empty = row.empty;
            let created = (row.created > 0).then(|| rbuild_oci::config::rfc3339_utc(row.created));
            empties.push((empty, created));
            if empty {
                continue;
            }
            let rec = self.layer_for(snap, opts)?;
            let media_type = media_types::convert_layer_type(&rec.media_type, opts.oci_mediatypes).to_string();
            layers.push(Descriptor::new(media_type, parse_digest(&rec.digest)?, rec.size));
            diff_ids.push(parse_digest(&rec.diff_id)?);
            // Known by chain ID too: building FROM (or running) this image
            // later finds these snapshots instead of unpacking the layers.
            // Only while no empty snapshot lies below: an image built FROM
            // this one must pair its history entries with layers, and an
            // empty snapshot in the reused chain would break the pairing.
            if empties.iter().all(|(e, _)| !e) {
                let next = crate::image::next_chain_id(chain_id.as_deref(), &rec.diff_id);
                self.state.db.alias(&format!("layer:{next}"), snap)?;
                chain_id = Some(next);
            }
        }
        fill_history(&mut config, &empties);
        if config.created.is_none() {
            config.created = config.history.iter().rev().find_map(|h| h.created.clone());
        }
        config.rootfs.diff_ids = diff_ids;
        let format = if opts.oci_mediatypes { ManifestFormat::Oci } else { ManifestFormat::DockerV2S2 };
        let export_err = |e: manifest::ManifestError| SolveError::Export { message: e.to_string() };
        let config = manifest::build_config(&config, format).map_err(export_err)?;
        self.state.content.put_bytes(&config.bytes).map_err(store_err)?;
        let manifest =
            manifest::build_manifest(&config.descriptor, &layers, None, format).map_err(export_err)?;
        self.state.content.put_bytes(&manifest.bytes).map_err(store_err)?;
        Ok(ExportedImage { manifest: manifest.descriptor, config: config.descriptor })
    }
}

fn store_err(e: impl std::fmt::Display) -> SolveError {
    SolveError::Export { message: format!("content store: {e}") }
}

fn parse_digest(s: &str) -> Result<Digest, SolveError> {
    Digest::parse(s).map_err(|e| SolveError::Export { message: e.to_string() })
}

/// History entries that claim a layer pair up, in order, with the snapshots
/// of the chain: the entry of an empty snapshot is marked `empty_layer`, and
/// an undated entry gets the time its snapshot was made (entries without a
/// layer get the time of the entry before them), as BuildKit dates them, so
/// a fully cached rebuild reproduces the same config. When the counts
/// disagree (a base image without history) only the dates are filled.
fn fill_history(config: &mut ImageConfig, chain: &[(bool, Option<String>)]) {
    let claiming: Vec<usize> = config
        .history
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    if claiming.len() == chain.len() {
        for (idx, (empty, created)) in claiming.into_iter().zip(chain) {
            let h = &mut config.history[idx];
            if *empty {
                h.empty_layer = true;
            }
            if h.created.is_none() {
                h.created = created.clone();
            }
        }
    }
    let mut last: Option<String> = None;
    for h in &mut config.history {
        match &h.created {
            Some(c) => last = Some(c.clone()),
            None => h.created = last.clone(),
        }
    }
}

// Root filesystem outputs made from the snapshot chain rather than an image.
#[path = "rootfs.rs"]
mod rootfs;
