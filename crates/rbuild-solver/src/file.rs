//! File vertices (COPY, ADD, WORKDIR's mkdir): the actions run against the
//! input chain mounted as an overlay in this process; the upper dir becomes
//! the vertex's snapshot.

use crate::solve::{Ctx, Output, Solved};
use crate::SolveError;
use rbuild_fileop::copy::CopyOptions;
use rbuild_fileop::meta::Chmod;
use rbuild_fileop::hash::SelectionOptions;
use rbuild_graph::{Chown, CopyAction, ExecMountKind, FileAction, FileOp, Op, Vertex};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a copy action reads and how (owner and mode aside, which need the
/// destination): shared by the copy itself and its cache-key hash, so the
/// two can never disagree about which files count.
fn copy_options(c: &CopyAction, input: &Solved) -> CopyOptions {
    let context_ignore = match &input.output {
        Output::Directory { ignore, .. } => ignore.to_vec(),
        Output::Snapshot(_) => Vec::new(),
    };
    CopyOptions {
        exclude: c.exclude.clone(),
        context_ignore,
        parents: c.parents,
        follow_symlinks: c.follow_symlinks,
        allow_wildcard: c.allow_wildcard,
        allow_empty_wildcard: c.allow_empty_wildcard,
        create_dest_path: c.create_dest_path,
        unpack_archives: c.unpack_archives,
        ..CopyOptions::dockerfile()
    }
}

/// For each input that is a local directory, the content hash of exactly
/// what this vertex reads from it (its cache-key contribution).
pub(crate) async fn context_selections(
    ctx: &Arc<Ctx>,
    vertex: &Vertex,
    inputs: &[Arc<Solved>],
) -> Result<Vec<(usize, String)>, SolveError> {
    let mut wanted: Vec<(usize, Vec<String>, SelectionOptions)> = Vec::new();
    match &vertex.op {
        Op::File(f) => {
            for a in &f.actions {
                if let FileAction::Copy(c) = a {
                    let opts = SelectionOptions::from(&copy_options(c, &inputs[c.source]));
                    wanted.push((c.source, c.paths.clone(), opts));
                }
            }
        }
        Op::Exec(e) => {
            for m in &e.mounts {
                if let ExecMountKind::Bind { input, source, .. } = &m.kind {
                    let Output::Directory { ignore, .. } = &inputs[*input].output else { continue };
                    let opts = SelectionOptions { context_ignore: ignore.to_vec(), ..SelectionOptions::dockerfile() };
                    wanted.push((*input, vec![source.clone()], opts));
                }
            }
        }
        _ => {}
    }
    let mut out = Vec::new();
    for (input, paths, opts) in wanted {
        let Output::Directory { path, .. } = &inputs[input].output else { continue };
        // Absolute once here: the stat cache keys on absolute paths and
        // would otherwise resolve a relative context (`rbuild build .`)
        // against the working directory for every file it looks up.
        let dir = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let cache = ctx.engine.stat_cache.clone();
        let hash = tokio::task::spawn_blocking(move || {
            rbuild_fileop::hash::hash_selection(&dir, &paths, &opts, Some(cache.as_ref()))
        })
        .await
        .map_err(|_| SolveError::Cancelled)?
        .map_err(|e| SolveError::Context { message: crate::chain(&e) })?;
        out.push((input, hash));
    }
    Ok(out)
}

/// A source root for a copy: a directory, or a read-only overlay mount of a
/// snapshot chain that lives as long as this value.
enum SourceRoot {
    Dir(PathBuf),
    /// Field order matters: the mount is dropped (unmounted) before its dir.
    Mounted { _mount: rbuild_snapshot::MountGuard, dir: tempfile::TempDir },
    Empty(tempfile::TempDir),
}

impl SourceRoot {
    fn path(&self) -> &Path {
        match self {
            SourceRoot::Dir(p) => p,
            SourceRoot::Mounted { dir: t, .. } | SourceRoot::Empty(t) => t.path(),
        }
    }
}

fn source_root(ctx: &Ctx, input: &Solved) -> Result<SourceRoot, SolveError> {
    let state = &ctx.engine.state;
    match &input.output {
        Output::Directory { path, .. } => Ok(SourceRoot::Dir(path.clone())),
        Output::Snapshot(None) => {
            Ok(SourceRoot::Empty(tempfile::tempdir_in(&ctx.engine.tmp).map_err(|e| SolveError::io(&ctx.engine.tmp, e))?))
        }
        Output::Snapshot(Some(id)) => {
            let lowers = state.snapshots.lowers(&crate::sid(id)?)?;
            let target = tempfile::tempdir_in(&ctx.engine.tmp).map_err(|e| SolveError::io(&ctx.engine.tmp, e))?;
            let guard = rbuild_snapshot::mount_overlay(&lowers, None, target.path())?;
            Ok(SourceRoot::Mounted { _mount: guard, dir: target })
        }
    }
}

fn owner(root: &Path, chown: &Option<Chown>) -> Result<Option<(u32, u32)>, SolveError> {
    match chown {
        None => Ok(None),
        Some(Chown(spec)) => rbuild_fileop::users::resolve_chown(root, spec)
            .map(Some)
            .map_err(|e| SolveError::File { message: crate::chain(&e) }),
    }
}

fn parse_chmod(chmod: &Option<String>) -> Result<Option<Chmod>, SolveError> {
    chmod
        .as_deref()
        .map(Chmod::parse)
        .transpose()
        .map_err(|e| SolveError::File { message: format!("--chmod: {e}") })
}

fn copy(ctx: &Ctx, dest_root: &Path, c: &CopyAction, inputs: &[Arc<Solved>]) -> Result<(), SolveError> {
    let input = &inputs[c.source];
    let src = source_root(ctx, input)?;
    // Files from a context belong to root unless --chown says otherwise;
    // files from a stage or image keep their owners.
    let default_owner = matches!(input.output, Output::Directory { .. }).then_some((0, 0));
    let opts = CopyOptions {
        chown: owner(dest_root, &c.chown)?.or(default_owner),
        chmod: parse_chmod(&c.chmod)?,
        ..copy_options(c, input)
    };
    rbuild_fileop::copy::copy(src.path(), &c.paths, dest_root, &c.dest, &opts)
        .map_err(|e| SolveError::File { message: crate::chain(&e) })?;
    Ok(())
}

fn apply(ctx: &Ctx, root: &Path, file: &FileOp, inputs: &[Arc<Solved>]) -> Result<(), SolveError> {
    let ferr = |e: rbuild_fileop::ops::OpError| SolveError::File { message: crate::chain(&e) };
    for action in &file.actions {
        match action {
            FileAction::Copy(c) => copy(ctx, root, c, inputs)?,
            FileAction::Mkdir { path, mode, parents, chown } => {
                rbuild_fileop::ops::mkdir(root, path, *mode, *parents, owner(root, chown)?, None).map_err(ferr)?
            }
            FileAction::Mkfile { path, mode, data, chown } => {
                rbuild_fileop::ops::mkfile(root, path, *mode, data, owner(root, chown)?, None).map_err(ferr)?
            }
            FileAction::Rm { path, allow_not_found } => {
                rbuild_fileop::ops::rm(root, path, *allow_not_found, false).map_err(ferr)?
            }
        }
    }
    Ok(())
}

/// Runs the file actions; returns the committed snapshot.
pub(crate) async fn solve_file(
    ctx: &Arc<Ctx>,
    vertex: &Vertex,
    key: &str,
    file: &FileOp,
    inputs: &[Arc<Solved>],
) -> Result<Option<String>, SolveError> {
    let engine = &ctx.engine;
    let parent = inputs.first().and_then(|i| i.snapshot()).map(str::to_string);
    let active = crate::prepare(engine, parent.as_deref())?;
    let outcome = {
        let ctx2 = ctx.clone();
        let file = file.clone();
        let inputs = inputs.to_vec();
        let (lowers, upper, work) = (active.lowers.clone(), active.upper.clone(), active.work.clone());
        let full_tree = active.is_full_tree();
        tokio::task::spawn_blocking(move || -> Result<(), SolveError> {
            if full_tree {
                // Copy backend: the snapshot already holds the whole tree.
                return apply(&ctx2, &upper, &file, &inputs);
            }
            let target = tempfile::tempdir_in(&ctx2.engine.tmp).map_err(|e| SolveError::io(&ctx2.engine.tmp, e))?;
            let _guard = rbuild_snapshot::mount_overlay(&lowers, Some((&upper, &work)), target.path())?;
            apply(&ctx2, target.path(), &file, &inputs)
        })
        .await
        .map_err(|_| SolveError::Cancelled)?
    };
    if let Err(e) = outcome {
        drop(active);
        return Err(e);
    }
    let snapshot = engine.commit_snapshot(active, key, parent.as_deref(), &vertex.meta.name, vertex.meta.ignore_cache).await?;
    Ok(Some(snapshot))
}
