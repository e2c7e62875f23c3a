//! RUN --mount: what each mount of an exec becomes in the sandbox, and the
//! things that must live as long as the RUN (in-process overlay mounts of
//! stages, throwaway upper dirs, cache-mount locks).
//!
//! Cache mounts live in `<state>/cache-mounts/<sha256(id)>/<n>`. Instance 0
//! is the shared one; `sharing=locked` holds an exclusive lock on it for the
//! whole RUN (a concurrent build waits), `sharing=private` takes the first
//! instance nobody holds, creating a new one when all are busy, and
//! `sharing=shared` holds a shared lock so that private users go elsewhere.

use crate::solve::{Ctx, Output, Solved};
use crate::SolveError;
use rbuild_graph::{CacheSharing, ExecMountKind, ExecOp};
use rbuild_sandbox::{Mount, MountKind};
use rustix::fs::FlockOperation;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Things a RUN's mounts need kept alive until it ends. Field order is drop
/// order: mounts go before the dirs they live in.
#[derive(Default)]
pub(crate) struct MountResources {
    mounts: Vec<rbuild_snapshot::MountGuard>,
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<File>,
}

fn mount_err(target: &str, message: impl Into<String>) -> SolveError {
    SolveError::RunMount { target: target.to_string(), message: message.into() }
}

/// A directory holding `source` of an input: the context dir, or a
/// read-only (or throwaway-writable) overlay of a snapshot chain mounted in
/// this process.
fn input_root(
    ctx: &Ctx,
    input: &Solved,
    writable: bool,
    res: &mut MountResources,
) -> Result<PathBuf, SolveError> {
    let tmp = &ctx.engine.tmp;
    let tempdir = || tempfile::tempdir_in(tmp).map_err(|e| SolveError::io(tmp, e));
    match &input.output {
        Output::Directory { path, .. } if !writable => Ok(path.clone()),
        output => {
            let lowers = match output {
                Output::Snapshot(Some(id)) => ctx.engine.state.snapshots.lowers(&crate::sid(id)?)?,
                Output::Directory { path, .. } => vec![path.clone()],
                Output::Snapshot(None) => Vec::new(),
            };
            let scratch = tempdir()?;
            let target = tempdir()?;
            let empty = scratch.path().join("empty");
            std::fs::create_dir(&empty).map_err(|e| SolveError::io(&empty, e))?;
            let lowers = if lowers.is_empty() { vec![empty] } else { lowers };
            let guard = if writable {
                let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
                for d in [&upper, &work] {
                    std::fs::create_dir(d).map_err(|e| SolveError::io(d, e))?;
                }
                rbuild_snapshot::mount_overlay(&lowers, Some((&upper, &work)), target.path())?
            } else {
                rbuild_snapshot::mount_overlay(&lowers, None, target.path())?
            };
            let path = target.path().to_path_buf();
            res.mounts.push(guard);
            res.dirs.push(target);
            res.dirs.push(scratch);
            Ok(path)
        }
    }
}

/// `source` inside `root`, resolved the way the kernel resolves it with
/// `root` as `/` (a symlink to `/etc` means the root's `/etc`), so a
/// symlink can never take a bind mount outside the context or the stage.
fn resolve_source(root: &Path, source: &str, target: &str) -> Result<PathBuf, SolveError> {
    rbuild_fileop::resolve_in_root(root, source).map_err(|e| mount_err(target, format!("source `{source}`: {e}")))
}

fn lock(file: &File, op: FlockOperation) -> std::io::Result<()> {
    rustix::fs::flock(file, op).map_err(std::io::Error::from)
}

/// Picks (and locks) the cache instance for a mount; returns its directory.
fn cache_dir(
    ctx: &Ctx,
    id: &str,
    sharing: CacheSharing,
    res: &mut MountResources,
) -> Result<(PathBuf, bool), SolveError> {
    let base = ctx.engine.state.cache_mounts.join(rbuild_graph::Digest::of_bytes(id.as_bytes()).hex());
    std::fs::create_dir_all(&base).map_err(|e| SolveError::io(&base, e))?;
    let open_lock = |n: usize| -> Result<File, SolveError> {
        let p = base.join(format!("{n}.lock"));
        File::options().create(true).truncate(false).write(true).open(&p).map_err(|e| SolveError::io(&p, e))
    };
    let chosen = match sharing {
        CacheSharing::Shared => {
            let f = open_lock(0)?;
            lock(&f, FlockOperation::LockShared).map_err(|e| SolveError::io(&base, e))?;
            res.locks.push(f);
            0
        }
        CacheSharing::Locked => {
            let f = open_lock(0)?;
            lock(&f, FlockOperation::LockExclusive).map_err(|e| SolveError::io(&base, e))?;
            res.locks.push(f);
            0
        }
        CacheSharing::Private => {
            let mut n = 0;
            loop {
                let f = open_lock(n)?;
                if lock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
                    res.locks.push(f);
                    break n;
                }
                n += 1;
            }
        }
    };
    let dir = base.join(chosen.to_string());
    let created = !dir.exists();
    Ok((dir, created))
}

/// Creates a new cache dir (atomically, through a temp name) with its
/// owner and mode, seeded from `seed` when given.
fn create_cache(dir: &Path, mode: u32, uid: u32, gid: u32, seed: Option<(&Path, &str)>) -> Result<(), SolveError> {
    let parent = dir.parent().unwrap_or(dir);
    let tmp = tempfile::tempdir_in(parent).map_err(|e| SolveError::io(parent, e))?;
    if let Some((root, source)) = seed {
        let opts = rbuild_fileop::CopyOptions { dir_contents_only: true, ..rbuild_fileop::CopyOptions::dockerfile() };
        rbuild_fileop::copy(root, &[source.to_string()], tmp.path(), "/", &opts)
            .map_err(|e| SolveError::File { message: format!("seeding cache mount: {}", crate::chain(&e)) })?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(|e| SolveError::io(tmp.path(), e))?;
    nix::unistd::chown(tmp.path(), Some(uid.into()), Some(gid.into()))
        .map_err(|e| SolveError::io(tmp.path(), std::io::Error::from(e)))?;
    let kept = tmp.keep();
    if let Err(e) = std::fs::rename(&kept, dir) {
        let _ = std::fs::remove_dir_all(&kept);
        if !dir.exists() {
            return Err(SolveError::io(dir, e));
        }
    }
    Ok(())
}

/// The sandbox mounts of an exec, and what they need kept alive.
pub(crate) fn prepare(
    ctx: &Arc<Ctx>,
    exec: &ExecOp,
    inputs: &[Arc<Solved>],
) -> Result<(Vec<Mount>, MountResources), SolveError> {
    let mut res = MountResources::default();
    let mut out = Vec::new();
    for m in &exec.mounts {
        let t = m.target.as_str();
        let kind = match &m.kind {
            ExecMountKind::Tmpfs { size } => MountKind::Tmpfs { size: *size },
            ExecMountKind::Bind { input, source, readonly } => {
                let root = input_root(ctx, &inputs[*input], !readonly, &mut res)?;
                MountKind::Bind { source: resolve_source(&root, source, t)?, readonly: *readonly }
            }
            ExecMountKind::Cache { id, sharing, input, source, readonly, mode, uid, gid } => {
                let (dir, created) = cache_dir(ctx, id, *sharing, &mut res)?;
                if created {
                    let seed_root = match input {
                        Some(i) => Some(input_root(ctx, &inputs[*i], false, &mut res)?),
                        None => None,
                    };
                    create_cache(&dir, *mode, *uid, *gid, seed_root.as_deref().map(|r| (r, source.as_str())))?;
                }
                MountKind::Bind { source: dir, readonly: *readonly }
            }
            ExecMountKind::Secret { id, env, required, mode, uid, gid } => {
                let Some(data) = ctx.opts.secrets.get(id) else {
                    if *required {
                        return Err(mount_err(t, format!("secret `{id}` is required but was not provided\nhint: --secret id={id},src=FILE")));
                    }
                    continue;
                };
                match env {
                    Some(name) => MountKind::SecretEnv { name: name.clone(), data: data.clone() },
                    None => MountKind::Secret { data: data.clone(), mode: *mode, uid: *uid, gid: *gid },
                }
            }
            ExecMountKind::Ssh { id, required, mode, uid, gid } => {
                let Some(socket) = ctx.opts.ssh.get(id) else {
                    if *required {
                        return Err(mount_err(t, format!("ssh agent `{id}` is required but was not provided\nhint: --ssh {id}=SOCKET")));
                    }
                    continue;
                };
                MountKind::SshAgent { socket: socket.clone(), mode: *mode, uid: *uid, gid: *gid }
            }
        };
        out.push(Mount { target: m.target.clone(), kind });
    }
    Ok((out, res))
}
