//! Root filesystem exports (`type=local`, `type=tar`) straight from the
//! snapshot chain, without making an image.
//!
//! Why not unpack the image: its layers would be tarred, compressed and
//! hashed into the content store only to be decompressed again into the
//! destination, and a build that asked for files has no use for an image
//! (buildx makes none for these outputs either). Instead:
//! - `type=tar` sees the chain as one read-only tree — an overlay of its
//!   layer directories, or the copy backend's full tree — and tars it once,
//!   straight into the output (no scratch tree);
//! - `type=local` streams each layer directory, bottom first, as the tar
//!   its blob would hold (uncompressed) into the layer applier, which
//!   resolves every path inside the destination: a symlink in the image or
//!   already in the destination cannot carry a write out of it.
//!
//! Either way the entries, modes, owners, times and xattrs are those the
//! unpacked image would have (the tests compare both against that path).

use crate::{Engine, ExportOptions, SolveError};
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::{Digest, DigestWriter};
use rbuild_oci::layer::{ApplyOptions, ApplyStats, LayerError, TarOptions, WhiteoutMode, apply_layer, write_layer_tar};
use rbuild_oci::media_types::OCI_LAYER_TAR;
use rbuild_snapshot::{Backend, MountGuard};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Buffer between the tree walk and the pipe or output.
const BUF: usize = 256 * 1024;
/// Pipe size asked for between the tar writer and the applier (the
/// default 64 KiB makes both threads wait on each other per file).
const PIPE_SIZE: libc::c_int = 1 << 20;

/// The merged tree of a snapshot chain, read-only, at [`RootfsView::path`].
/// Dropping it unmounts the overlay (if one was needed) and removes its
/// scratch directory.
pub(crate) struct RootfsView {
    path: PathBuf,
    // Field order is drop order: unmount before removing the mountpoint.
    _mount: Option<MountGuard>,
    _scratch: Option<tempfile::TempDir>,
}

impl RootfsView {
    /// The directory showing the root filesystem (whiteouts and opaque
    /// markers already resolved; nothing under it may be written).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn export_err(what: &str, e: impl std::error::Error) -> SolveError {
    SolveError::Export { message: format!("{what}: {}", crate::chain(&e)) }
}

impl Engine {
    /// The root filesystem of the chain under `top` (none: an empty tree)
    /// as one directory tree. With the overlay backend this is a read-only
    /// overlay of the chain's layer directories mounted in this process's
    /// mount namespace; with the copy backend the top snapshot already
    /// holds its full tree. A single layer is stacked on an empty directory
    /// so that the overlay, not a plain bind, shows it: whiteouts and opaque
    /// markers in it must stay hidden.
    pub(crate) fn rootfs_view(&self, top: Option<&str>) -> Result<RootfsView, SolveError> {
        let scratch = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(&self.tmp)
            .map_err(|e| SolveError::io(&self.tmp, e))?;
        let Some(top) = top else {
            let path = scratch.path().to_path_buf();
            return Ok(RootfsView { path, _mount: None, _scratch: Some(scratch) });
        };
        let mut lowers = self.state.snapshots.lowers(&crate::sid(top)?)?;
        if let Backend::Copy { .. } = self.state.snapshots.backend() {
            let path = lowers.pop().ok_or_else(|| SolveError::Export { message: format!("snapshot {top}: no tree") })?;
            return Ok(RootfsView { path, _mount: None, _scratch: None });
        }
        let (empty, merged) = (scratch.path().join("empty"), scratch.path().join("merged"));
        for d in [&empty, &merged] {
            std::fs::create_dir(d).map_err(|e| SolveError::io(d, e))?;
        }
        if lowers.len() == 1 {
            lowers.push(empty);
        }
        let mount = rbuild_snapshot::mount_overlay(&lowers, None, &merged)?;
        Ok(RootfsView { path: merged, _mount: Some(mount), _scratch: Some(scratch) })
    }

    /// Writes the root filesystem of the chain under `top` to `out` as one
    /// uncompressed tar (sorted, deterministic: the layer tar format), and
    /// returns its descriptor. No layer blob is made; of `opts` only
    /// `source_date_epoch` applies (file times are clamped as the image's
    /// layers would have them).
    pub fn write_rootfs_tar<W: Write>(
        &self,
        top: Option<&str>,
        out: W,
        opts: &ExportOptions,
    ) -> Result<(W, Descriptor), SolveError> {
        let view = self.rootfs_view(top)?;
        let tar_opts = TarOptions { source_date_epoch: opts.source_date_epoch };
        let hashed = DigestWriter::new(BufWriter::with_capacity(BUF, out));
        let (hashed, _) = write_layer_tar(view.path(), hashed, &tar_opts).map_err(|e| export_err("root filesystem tar", e))?;
        let (buffered, digest, size) = hashed.finish();
        let out = buffered.into_inner().map_err(|e| export_err("root filesystem tar", e.into_error()))?;
        Ok((out, Descriptor::new(OCI_LAYER_TAR, digest, size)))
    }

    /// Writes the root filesystem of the chain under `top` into the
    /// directory `dest` (made if missing; what it holds already is kept or
    /// overwritten, and deleted where a layer deletes it, as when the
    /// image's layers are unpacked there). Each layer's diff (the overlay
    /// upper dir, or the copy backend's recorded diff) is streamed, bottom
    /// first, as the tar its layer blob would hold (uncompressed) into the
    /// layer applier, which resolves every path inside `dest`. Why layer by
    /// layer rather than one walk of a merged overlay: walking the layer
    /// directories costs about half of walking a freshly mounted overlay,
    /// which outweighs copying twice the files a later layer rewrites.
    /// Returns the root filesystem's descriptor: the OCI ChainID of the
    /// tars applied (the image's, for layers built here), with their total
    /// size. No layer blob is made; `opts` as for
    /// [`Engine::write_rootfs_tar`].
    pub fn unpack_rootfs(
        &self,
        top: Option<&str>,
        dest: &Path,
        opts: &ExportOptions,
        apply: &ApplyOptions,
    ) -> Result<Descriptor, SolveError> {
        std::fs::create_dir_all(dest).map_err(|e| SolveError::io(dest, e))?;
        let tar_opts = TarOptions { source_date_epoch: opts.source_date_epoch };
        let apply = ApplyOptions { whiteouts: WhiteoutMode::Apply, ..apply.clone() };
        let mut dirs = Vec::new();
        for (id, row) in self.chain(top)? {
            if !row.empty {
                dirs.push(self.state.snapshots.diff_dir(&crate::sid(&id)?)?);
            }
        }
        let (mut chain_id, mut size) = (None::<String>, 0u64);
        for dir in &dirs {
            let stats = stream_into(dir, dest, &tar_opts, &apply)?;
            chain_id = Some(crate::image::next_chain_id(chain_id.as_deref(), stats.diff_id.as_str()));
            size += stats.uncompressed_size;
        }
        let digest = match chain_id {
            Some(id) => Digest::parse(&id).map_err(|e| export_err("chain ID", e))?,
            // No layer: the identity of an empty tar (two zero blocks).
            None => {
                size = 1024;
                Digest::sha256(&[0u8; 1024])
            }
        };
        Ok(Descriptor::new(OCI_LAYER_TAR, digest, size))
    }
}

/// Streams the tree `dir` as a layer tar from a helper thread through a
/// pipe into the layer applier writing `dest` on this thread.
fn stream_into(dir: &Path, dest: &Path, tar_opts: &TarOptions, apply: &ApplyOptions) -> Result<ApplyStats, SolveError> {
    let (reader, writer) = std::io::pipe().map_err(|e| SolveError::io(Path::new("pipe"), e))?;
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own; failure only leaves the default size.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&writer), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let (produced, applied) = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let (out, _) = write_layer_tar(dir, BufWriter::with_capacity(BUF, writer), tar_opts)?;
            // Flushes, then closes the pipe: the applier sees the end.
            out.into_inner().map(drop).map_err(|e| LayerError::Io {
                path: dir.display().to_string(),
                op: "write tar",
                source: e.into_error(),
            })
        });
        let applied = apply_layer(BufReader::with_capacity(BUF, reader), OCI_LAYER_TAR, dest, apply);
        (producer.join(), applied)
    });
    // The writer's error explains the reader's (a cut-off stream), and
    // the reader's explains the writer's broken pipe: report the cause.
    let dest_err = |e: LayerError| export_err(&format!("writing {}", dest.display()), e);
    match (produced, applied) {
        (Err(_), _) => Err(SolveError::Export { message: format!("tar of {}: writer panicked", dir.display()) }),
        (Ok(Err(e)), Err(applied)) if is_broken_pipe(&e) => Err(dest_err(applied)),
        (Ok(Err(e)), _) => Err(export_err(&format!("tar of {}", dir.display()), e)),
        (Ok(Ok(())), Err(e)) => Err(dest_err(e)),
        (Ok(Ok(())), Ok(stats)) => Ok(stats),
    }
}

/// Whether the tar writer stopped because the applier had gone away.
fn is_broken_pipe(e: &LayerError) -> bool {
    matches!(e, LayerError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
