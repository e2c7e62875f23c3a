//! Root filesystem exports (`type=local`, `type=tar`) straight from the
//! snapshot chain, without making an image.
//!
//! Why not unpack the image: its layers would be tarred, compressed and
//! hashed into the content store only to be decompressed again into the
//! destination, and a build that asked for files has no use for an image
//! (buildx makes none for these outputs either). Instead the chain is seen
//! as one read-only tree — an overlay of its `fs` directories, or the top
//! snapshot's own full tree with the copy backend — and that tree is
//! written once: as a tar stream for `type=tar`, and for `type=local`
//! through the same tar stream into the layer applier, which resolves every
//! path inside the destination (a symlink in the image or already in the
//! destination cannot carry a write out of it). Both outputs therefore have
//! exactly the entries, modes, owners, times and xattrs the unpacked image
//! would have.

use crate::{Engine, ExportOptions, SolveError};
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::DigestWriter;
use rbuild_oci::layer::{ApplyOptions, LayerError, TarOptions, WhiteoutMode, apply_layer, write_layer_tar};
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
    /// overwritten). The tree is streamed as a tar from one thread into the
    /// layer applier on this one, so every path is resolved inside `dest`
    /// exactly as when an image layer is unpacked there. Returns the
    /// descriptor of that tar stream (the same as [`Engine::write_rootfs_tar`]
    /// gives). No layer blob is made; `opts` as for [`Engine::write_rootfs_tar`].
    pub fn unpack_rootfs(
        &self,
        top: Option<&str>,
        dest: &Path,
        opts: &ExportOptions,
        apply: &ApplyOptions,
    ) -> Result<Descriptor, SolveError> {
        let view = self.rootfs_view(top)?;
        std::fs::create_dir_all(dest).map_err(|e| SolveError::io(dest, e))?;
        let (reader, writer) = std::io::pipe().map_err(|e| SolveError::io(Path::new("pipe"), e))?;
        // SAFETY: F_SETPIPE_SZ on a pipe fd we own; failure only leaves the default size.
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&writer), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let tar_opts = TarOptions { source_date_epoch: opts.source_date_epoch };
        let apply = ApplyOptions { whiteouts: WhiteoutMode::Apply, ..apply.clone() };
        let tree = view.path();
        let (produced, applied) = std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let (out, _) = write_layer_tar(tree, BufWriter::with_capacity(BUF, writer), &tar_opts)?;
                // Flushes, then closes the pipe: the applier sees the end.
                out.into_inner().map(drop).map_err(|e| LayerError::Io {
                    path: tree.display().to_string(),
                    op: "write tar",
                    source: e.into_error(),
                })
            });
            let applied = apply_layer(BufReader::with_capacity(BUF, reader), OCI_LAYER_TAR, dest, &apply);
            (producer.join(), applied)
        });
        // The writer's error explains the reader's (a cut-off stream), and
        // the reader's explains the writer's broken pipe: report the cause.
        let dest_err = |e: LayerError| export_err(&dest.display().to_string(), e);
        match (produced, applied) {
            (Err(_), _) => Err(SolveError::Export { message: "root filesystem tar writer panicked".into() }),
            (Ok(Err(e)), Err(applied)) if is_broken_pipe(&e) => Err(dest_err(applied)),
            (Ok(Err(e)), _) => Err(export_err("root filesystem tar", e)),
            (Ok(Ok(())), Err(e)) => Err(dest_err(e)),
            (Ok(Ok(())), Ok(stats)) => Ok(Descriptor::new(OCI_LAYER_TAR, stats.diff_id, stats.uncompressed_size)),
        }
    }
}

/// Whether the tar writer stopped because the applier had gone away.
fn is_broken_pipe(e: &LayerError) -> bool {
    matches!(e, LayerError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
