//! Git vertices (`ADD <repository>#ref:subdir`): a checkout made with the
//! `git` binary, alone in a snapshot that the ADD then copies.
//!
//! The repository is cloned on every build and the vertex's cache key is
//! the commit checked out (plus the options), so an unchanged commit keeps
//! everything after it cached. Only network protocols are allowed (no
//! `file://`, no `ext::`), as BuildKit, also for submodules, which are
//! checked out recursively (as BuildKit does); `.git` is kept only on
//! request and then without the remote's credentials.

use crate::solve::{Ctx, Output, Solved};
use crate::SolveError;
use rbuild_graph::{Digest, GitSource, Vertex};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

/// Solves a git vertex with its own progress events (its cache key is only
/// known after the clone).
pub(crate) async fn solve_git(ctx: &Arc<Ctx>, vertex: &Vertex, src: &GitSource) -> Result<Solved, SolveError> {
    let digest = vertex.digest().to_string();
    let name = vertex.meta.name.clone();
    let _permit = ctx.limit.acquire().await.map_err(|_| SolveError::Cancelled)?;
    ctx.reported(digest, name, true, checkout_into_snapshot(ctx, vertex, src)).await
}

fn git_err(src: &GitSource, message: impl Into<String>) -> SolveError {
    SolveError::Git { remote: src.remote.clone(), message: message.into() }
}

/// The remote git is given: with the credentials put back in.
fn remote_with_credentials(src: &GitSource) -> String {
    let Some(c) = &src.credentials else { return src.remote.clone() };
    let Ok(mut url) = reqwest::Url::parse(&src.remote) else { return src.remote.clone() };
    let _ = url.set_username(&c.user);
    let _ = url.set_password(c.password.as_deref());
    url.to_string()
}

/// Runs git in `dir` with a clean, prompt-free environment.
async fn git(src: &GitSource, dir: &Path, home: &Path, args: &[&str]) -> Result<String, SolveError> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| git_err(src, format!("running git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // git may quote the remote it was given, credentials included.
        let secret = src.credentials.as_ref().and_then(|c| c.password.clone()).unwrap_or_default();
        let mut shown = stderr.trim().to_string();
        if !secret.is_empty() {
            shown = shown.replace(&secret, "***");
        }
        return Err(git_err(src, format!("git {} failed: {shown}", args.first().unwrap_or(&""))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn checkout_into_snapshot(ctx: &Arc<Ctx>, vertex: &Vertex, src: &GitSource) -> Result<Solved, SolveError> {
    let engine = &ctx.engine;
    let work = tempfile::tempdir_in(&engine.tmp).map_err(|e| SolveError::io(&engine.tmp, e))?;
    let home = work.path().join("home");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&home).map_err(|e| SolveError::io(&home, e))?;
    let remote = remote_with_credentials(src);
    let repo_arg = repo.to_string_lossy().into_owned();
    let reference = src.reference.as_deref();
    let is_commit = reference.is_some_and(|r| r.len() >= 7 && r.len() <= 40 && r.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut args = vec!["clone", "--quiet", "--no-checkout"];
    if let Some(r) = reference.filter(|_| !is_commit) {
        args.extend(["--branch", r]);
    }
    args.extend(["--", remote.as_str(), repo_arg.as_str()]);
    git(src, work.path(), &home, &args).await?;
    let target = match reference.filter(|_| is_commit) {
        Some(commit) => commit.to_string(),
        None => "HEAD".to_string(),
    };
    git(src, &repo, &home, &["checkout", "--quiet", "--detach", &target, "--"]).await?;
    let commit = git(src, &repo, &home, &["rev-parse", "HEAD"]).await?;
    // Submodules are pinned by the commit, so the cache key below still
    // names the whole tree. Their URLs come from the repository: the same
    // protocol allow-list applies (no `file://`, no `ext::`).
    git(src, &repo, &home, &["submodule", "--quiet", "update", "--init", "--recursive"]).await?;
    let submodules = if src.keep_git_dir {
        Vec::new()
    } else {
        let listed = git(
            src,
            &repo,
            &home,
            &["submodule", "--quiet", "foreach", "--recursive", "printf '%s\\0' \"$displaypath\""],
        )
        .await?;
        listed.split('\0').filter(|p| !p.is_empty()).map(str::to_string).collect()
    };
    // `.git/config` names the remote it was cloned from: never with secrets.
    git(src, &repo, &home, &["remote", "set-url", "origin", &src.remote]).await?;
    let key = Digest::of_json(&("git", &src.remote, &commit, &src.subdir, src.keep_git_dir)).to_string();
    if !vertex.meta.ignore_cache
        && let Some(snapshot) = engine.cached(&key)?
    {
        return Ok(Solved { key, output: Output::Snapshot(Some(snapshot)) });
    }
    if !src.keep_git_dir {
        // A submodule's `.git` is a file naming the superproject's
        // `.git/modules/…`, which goes too.
        for path in &submodules {
            let Some(dir) = real_dir_inside(&repo, path) else { continue };
            let dot_git = dir.join(".git");
            let removed = match std::fs::symlink_metadata(&dot_git) {
                Ok(m) if m.is_dir() => rbuild_snapshot::remove_tree(&dot_git),
                Ok(_) => std::fs::remove_file(&dot_git),
                Err(_) => Ok(()),
            };
            removed.map_err(|e| SolveError::io(&dot_git, e))?;
        }
        let dot_git = repo.join(".git");
        rbuild_snapshot::remove_tree(&dot_git).map_err(|e| SolveError::io(&dot_git, e))?;
    }
    let source = match &src.subdir {
        None => repo.clone(),
        Some(d) => {
            // The subdirectory must be a real directory inside the checkout
            // (a symlink in the repository could point anywhere).
            let mut cur = repo.clone();
            for part in d.split('/') {
                cur.push(part);
                let m = std::fs::symlink_metadata(&cur)
                    .map_err(|e| git_err(src, format!("subdirectory `{d}`: {e}")))?;
                if !m.is_dir() {
                    return Err(git_err(src, format!("subdirectory `{d}` is not a directory in commit {commit}")));
                }
            }
            cur
        }
    };
    let active = crate::prepare(engine, None)?;
    let upper = active.upper.clone();
    let copied = tokio::task::spawn_blocking(move || rbuild_snapshot::native::copy_tree(&source, &upper).map_err(|e| SolveError::io(&source, e)))
        .await
        .map_err(|_| SolveError::Cancelled)?;
    if let Err(e) = copied {
        drop(active);
        return Err(e);
    }
    let snapshot = engine.commit_snapshot(active, &key, None, &vertex.meta.name, vertex.meta.ignore_cache).await?;
    Ok(Solved { key, output: Output::Snapshot(Some(snapshot)) })
}

/// `root/rel` when every component of `rel` is a real directory (no `..`,
/// no symlink) inside `root`.
fn real_dir_inside(root: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let mut cur = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return None;
        }
        cur.push(part);
        if !std::fs::symlink_metadata(&cur).ok()?.is_dir() {
            return None;
        }
    }
    Some(cur)
}
