//! Merge vertices (`COPY --link`): a layer made on an empty filesystem is
//! stacked onto another chain without being made again.
//!
//! The merged snapshot's own directory is a copy of the linked snapshot's
//! diff, and it remembers which snapshot it was copied from, so export uses
//! the linked snapshot's layer blob: rebasing onto a new base image makes no
//! new blob and pushes none.

use crate::solve::{Ctx, Solved};
use crate::{Engine, SolveError};
use rbuild_graph::Vertex;
use std::path::Path;
use std::sync::Arc;

/// The metadata-DB key under which a merged snapshot names the snapshot
/// whose layer it reuses.
pub(crate) fn layer_source_key(snapshot: &str) -> String {
    format!("merge-layer-of:{snapshot}")
}

/// Stacks input 1 (a single snapshot made on scratch) onto input 0.
pub(crate) async fn solve_merge(
    ctx: &Arc<Ctx>,
    vertex: &Vertex,
    key: &str,
    inputs: &[Arc<Solved>],
) -> Result<Option<String>, SolveError> {
    let engine = &ctx.engine;
    let parent = inputs.first().and_then(|i| i.snapshot()).map(str::to_string);
    let Some(linked) = inputs.get(1).and_then(|i| i.snapshot()).map(str::to_string) else {
        // Nothing was made on scratch: the result is the parent as it is.
        return Ok(parent);
    };
    if engine.state.db.snapshot_parent(&linked)?.is_some() {
        return Err(SolveError::File {
            message: format!("merge: snapshot `{linked}` is not a single layer made on scratch"),
        });
    }
    let Some(parent) = parent else {
        // Onto an empty filesystem the linked snapshot is the result.
        engine.state.db.alias(key, &linked)?;
        return Ok(Some(linked));
    };
    let active = crate::prepare(engine, Some(&parent))?;
    let source = engine.state.snapshots.diff_dir(&crate::sid(&linked)?)?;
    let upper = active.upper.clone();
    let full_tree = active.is_full_tree();
    let staged = tokio::task::spawn_blocking(move || stage(&source, &upper, full_tree))
        .await
        .map_err(|_| SolveError::Cancelled)?;
    if let Err(e) = staged {
        drop(active);
        return Err(e);
    }
    let snapshot = engine
        .commit_snapshot(active, key, Some(&parent), &vertex.meta.name, vertex.meta.ignore_cache)
        .await?;
    if !full_tree {
        // Only an overlay diff is byte-for-byte the linked diff; the copy
        // backend recomputes diffs, which may differ (e.g. a directory over
        // a base's symlink), so it makes its own blob.
        engine.state.db.alias(&layer_source_key(&snapshot), &linked)?;
    }
    Ok(Some(snapshot))
}

/// Puts the linked diff into the new snapshot's directory.
fn stage(source: &Path, upper: &Path, full_tree: bool) -> Result<(), SolveError> {
    if !full_tree {
        // The upper dir is empty and becomes exactly the linked diff; the
        // overlay stacks it onto the parent without resolving any path
        // through the parent's symlinks.
        return rbuild_snapshot::native::copy_tree(source, upper).map_err(|e| SolveError::io(source, e));
    }
    // Copy backend: the whole tree is writable in place; lay the linked
    // diff over it as an overlay would show it.
    overlay_onto(source, upper).map_err(|e| SolveError::io(source, e))
}

/// Lays the tree `src` over the tree `dst` as overlayfs shows an upper dir
/// over a lower one: directories merge, anything else replaces what is
/// there (a directory replaces a symlink instead of being written through
/// it). Every directory descended into in `dst` was checked to be a real
/// directory, so no write leaves `dst`.
fn overlay_onto(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let sm = std::fs::symlink_metadata(&s)?;
        let existing = std::fs::symlink_metadata(&d).ok();
        let is_whiteout = sm.file_type().is_char_device() && sm.rdev() == 0;
        if sm.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir()) {
            overlay_onto(&s, &d)?;
            copy_meta(&sm, &d)?;
            continue;
        }
        match existing {
            Some(m) if m.is_dir() => rbuild_snapshot::remove_tree(&d)?,
            Some(_) => std::fs::remove_file(&d)?,
            None => {}
        }
        if is_whiteout {
            continue;
        }
        let ft = sm.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&d)?;
            rbuild_snapshot::native::copy_tree(&s, &d)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
            copy_meta(&sm, &d)?;
        } else if ft.is_file() {
            std::fs::copy(&s, &d)?;
            copy_meta(&sm, &d)?;
        } else {
            return Err(std::io::Error::other(format!("{}: special file in a --link layer", s.display())));
        }
    }
    Ok(())
}

/// Owner, mode (not for symlinks) and modification time of `m` onto `path`.
fn copy_meta(m: &std::fs::Metadata, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: m.atime(), tv_nsec: m.atime_nsec() as _ },
        last_modification: rustix::fs::Timespec { tv_sec: m.mtime(), tv_nsec: m.mtime_nsec() as _ },
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(std::io::Error::from)
}

impl Engine {
    /// The snapshot whose layer blob a merged snapshot reuses, if it still
    /// exists.
    pub(crate) fn merge_layer_source(&self, snapshot: &str) -> Result<Option<String>, SolveError> {
        match self.state.db.lookup(&layer_source_key(snapshot))? {
            Some(s) if self.state.snapshots.exists(&crate::sid(&s)?) => Ok(Some(s)),
            _ => Ok(None),
        }
    }
}
