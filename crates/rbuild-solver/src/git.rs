//! Git vertices (`ADD <repository>#ref:subdir`): a checkout made with the
//! `git` binary, alone in a snapshot that the ADD then copies.
//!
//! The repository is cloned on every build and the vertex's cache key is
//! the commit checked out (plus the options), so an unchanged commit keeps
//! everything after it cached. Only network protocols are allowed (no
//! `file://`, no `ext::`), as BuildKit, also for submodules, which are
//! checked out recursively (as BuildKit does); `.git` is kept only on
//! request and then without the remote's credentials.
//!
//! ssh remotes (`ssh://`, `git@host:path`) are cloned with the build's
//! `default` ssh agent, the id BuildKit gives git sources of a Dockerfile.
//! ssh runs in batch mode without the building user's ssh config,
//! identities or known hosts. Host keys: BuildKit checks them only when
//! its git source is given known hosts, which the Dockerfile frontend never
//! does, so by default any host key is accepted (and nothing recorded);
//! [`SolveOptions::ssh_known_hosts`](crate::SolveOptions::ssh_known_hosts)
//! turns on the strict check.

use crate::solve::{Ctx, Output, Solved};
use crate::SolveError;
use rbuild_graph::{Digest, GitSource, Vertex};
use std::path::{Path, PathBuf};
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

/// The ssh agent id git uses: BuildKit mounts the `default` agent for the
/// ssh remotes of a Dockerfile's `ADD`.
const SSH_AGENT_ID: &str = "default";

/// What every git process of one checkout is given: a private `HOME` and
/// the ssh policy. The agent socket only ever goes into `SSH_AUTH_SOCK`
/// (never into a name, a cache key or a message).
struct GitEnv {
    home: PathBuf,
    ssh_command: String,
    agent: Option<PathBuf>,
}

/// Whether git would reach `remote` over ssh: `ssh://` (and git's
/// `git+ssh://` / `ssh+git://` spellings) or the scp-like `[user@]host:path`.
fn is_ssh_remote(remote: &str) -> bool {
    if let Some((scheme, _)) = remote.split_once("://") {
        return matches!(scheme.to_ascii_lowercase().as_str(), "ssh" | "git+ssh" | "ssh+git");
    }
    // scp-like: a colon before any slash (git's own rule for local paths).
    remote.split_once(':').is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'))
}

/// `s` as one word for the shell git runs `GIT_SSH_COMMAND` with.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The ssh command git runs: no configuration, identity or known-hosts
/// file of the user running the build is read (ssh finds `~/.ssh` through
/// the password database, not `HOME`), no prompt can block the build
/// (`BatchMode`), and keys come from the agent only. With `known_hosts`
/// the server's key must be in it; without, any key is accepted and
/// nothing is recorded, as BuildKit does when no known hosts are given.
fn ssh_command(dir: &Path, known_hosts: Option<&Path>) -> String {
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    // An explicit identity file (which does not exist) keeps ssh from
    // trying the default `~/.ssh/id_*` files.
    let mut cmd = format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=no -o IdentityFile={} -o ControlPath=none \
         -o UpdateHostKeys=no -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR",
        q(&dir.join("no-identity"))
    );
    match known_hosts {
        Some(file) => cmd.push_str(&format!(" -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes", q(file))),
        None => cmd.push_str(" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"),
    }
    cmd
}

/// The environment of a checkout made in `dir`. An ssh remote without
/// the `default` agent fails here, with the fix, instead of in ssh.
fn git_env(ctx: &Ctx, src: &GitSource, dir: &Path) -> Result<GitEnv, SolveError> {
    let agent = ctx.opts.ssh.get(SSH_AGENT_ID).cloned();
    git_env_with(src, dir, agent, ctx.opts.ssh_known_hosts.as_deref())
}

fn git_env_with(src: &GitSource, dir: &Path, agent: Option<PathBuf>, known_hosts: Option<&str>) -> Result<GitEnv, SolveError> {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).map_err(|e| SolveError::io(&home, e))?;
    if agent.is_none() && is_ssh_remote(&src.remote) {
        return Err(git_err(
            src,
            format!(
                "an ssh remote needs the build's ssh agent `{SSH_AGENT_ID}`, which was not given\n\
                 hint: --ssh {SSH_AGENT_ID} (the agent of $SSH_AUTH_SOCK) or --ssh {SSH_AGENT_ID}=SOCKET"
            ),
        ));
    }
    if let Some(socket) = &agent
        && is_ssh_remote(&src.remote)
    {
        use std::os::unix::fs::FileTypeExt;
        // Said here: ssh would only report a failed login. The path is
        // not shown (the agent stays out of messages and logs).
        if !std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
            return Err(git_err(
                src,
                format!("the ssh agent `{SSH_AGENT_ID}` given with --ssh is not a socket (is the agent running?)"),
            ));
        }
    }
    let known_hosts = match known_hosts {
        None => None,
        Some(lines) => {
            let file = dir.join("known_hosts");
            std::fs::write(&file, lines).map_err(|e| SolveError::io(&file, e))?;
            Some(file)
        }
    };
    Ok(GitEnv { home, ssh_command: ssh_command(dir, known_hosts.as_deref()), agent })
}

/// Runs git in `dir` with a clean, prompt-free environment.
async fn git(src: &GitSource, dir: &Path, env: &GitEnv, args: &[&str]) -> Result<String, SolveError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("HOME", &env.home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .env("GIT_SSH_COMMAND", &env.ssh_command)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(agent) = &env.agent {
        cmd.env("SSH_AUTH_SOCK", agent);
    }
    let out = cmd.output().await.map_err(|e| git_err(src, format!("running git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // git may quote the remote it was given, credentials included.
        let secret = src.credentials.as_ref().and_then(|c| c.password.clone()).unwrap_or_default();
        let mut shown = stderr.trim().to_string();
        if !secret.is_empty() {
            shown = shown.replace(&secret, "***");
        }
        if shown.contains("Host key verification failed") {
            shown.push_str("\nhint: the server's host key is not in the known hosts given to the build");
        }
        return Err(git_err(src, format!("git {} failed: {shown}", args.first().unwrap_or(&""))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn checkout_into_snapshot(ctx: &Arc<Ctx>, vertex: &Vertex, src: &GitSource) -> Result<Solved, SolveError> {
    let engine = &ctx.engine;
    let work = tempfile::tempdir_in(&engine.tmp).map_err(|e| SolveError::io(&engine.tmp, e))?;
    let repo = work.path().join("repo");
    let env = &git_env(ctx, src, work.path())?;
    let remote = remote_with_credentials(src);
    let repo_arg = repo.to_string_lossy().into_owned();
    let reference = src.reference.as_deref();
    let is_commit = reference.is_some_and(|r| r.len() >= 7 && r.len() <= 40 && r.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut args = vec!["clone", "--quiet", "--no-checkout"];
    if let Some(r) = reference.filter(|_| !is_commit) {
        args.extend(["--branch", r]);
    }
    args.extend(["--", remote.as_str(), repo_arg.as_str()]);
    git(src, work.path(), env, &args).await?;
    let target = match reference.filter(|_| is_commit) {
        Some(commit) => commit.to_string(),
        None => "HEAD".to_string(),
    };
    git(src, &repo, env, &["checkout", "--quiet", "--detach", &target, "--"]).await?;
    let commit = git(src, &repo, env, &["rev-parse", "HEAD"]).await?;
    // Submodules are pinned by the commit, so the commit names the whole
    // tree. ("submodules" in the key: results cached before submodules
    // were checked out lack them.)
    let key = Digest::of_json(&("git", &src.remote, &commit, &src.subdir, src.keep_git_dir, "submodules")).to_string();
    if !vertex.meta.ignore_cache
        && let Some(snapshot) = engine.cached(&key)?
    {
        return Ok(Solved { key, output: Output::Snapshot(Some(snapshot)) });
    }
    // Their URLs come from the repository: the same protocol allow-list
    // applies (no `file://`, no `ext::`). No `.gitmodules`, no git runs.
    let has_submodules = std::fs::symlink_metadata(repo.join(".gitmodules")).is_ok_and(|m| m.is_file());
    let submodules: Vec<String> = if has_submodules {
        git(src, &repo, env, &["submodule", "--quiet", "update", "--init", "--recursive"]).await?;
        let listed = git(
            src,
            &repo,
            env,
            &["submodule", "--quiet", "foreach", "--recursive", "printf '%s\\0' \"$displaypath\""],
        )
        .await?;
        listed.split('\0').filter(|p| !p.is_empty()).map(str::to_string).collect()
    } else {
        Vec::new()
    };
    // `.git/config` names the remote it was cloned from: never with secrets.
    git(src, &repo, env, &["remote", "set-url", "origin", &src.remote]).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_remotes_are_recognised() {
        for r in ["ssh://git@host/org/repo.git", "SSH://host:2222/r", "git+ssh://h/r", "git@github.com:org/repo.git", "host:repo"] {
            assert!(is_ssh_remote(r), "{r}");
        }
        for r in ["https://host/org/repo.git", "git://host/r", "http://h:80/r", "./dir:x", "/abs/path:x", ":x"] {
            assert!(!is_ssh_remote(r), "{r}");
        }
    }

    #[test]
    fn ssh_command_checks_known_hosts_only_when_given_and_quotes_paths() {
        let dir = Path::new("/tmp/it's here");
        let open = ssh_command(dir, None);
        assert!(open.contains("-F /dev/null") && open.contains("BatchMode=yes"), "{open}");
        assert!(open.contains("UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"), "{open}");
        assert!(open.contains(r"IdentityFile='/tmp/it'\''s here/no-identity'"), "{open}");
        let strict = ssh_command(dir, Some(&dir.join("known_hosts")));
        assert!(strict.ends_with(r"UserKnownHostsFile='/tmp/it'\''s here/known_hosts' -o StrictHostKeyChecking=yes"), "{strict}");
    }

    /// A dropbear server on a free port of 127.0.0.1 with a new host key
    /// (no login is needed: host keys are checked before authentication).
    struct Dropbear {
        child: std::process::Child,
        port: u16,
        host_key: String,
    }

    impl Drop for Dropbear {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn have(tool: &str) -> bool {
        std::process::Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
    }

    fn public_key(dir: &Path, name: &str) -> String {
        let key = dir.join(name);
        let made = std::process::Command::new("dropbearkey").args(["-t", "ed25519", "-f"]).arg(&key).output().unwrap();
        assert!(made.status.success());
        let out = std::process::Command::new("dropbearkey").arg("-y").arg("-f").arg(&key).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with("ssh-ed25519 ")).expect("dropbearkey -y prints the public key");
        line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    fn dropbear(dir: &Path) -> Option<Dropbear> {
        let host_key = public_key(dir, "host_key");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = std::process::Command::new("dropbear")
                .args(["-F", "-E", "-s", "-r"])
                .arg(dir.join("host_key"))
                .arg("-p")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-P")
                .arg(dir.join("dropbear.pid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Dropbear { child, port, host_key });
                }
                if child.try_wait().ok()?.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }

    /// Known hosts given: a server whose key is not in them is refused
    /// before any key is offered; its own key gets past the check (and then
    /// fails to log in, with no agent). Without known hosts any key passes.
    #[tokio::test]
    #[allow(clippy::print_stderr)] // the test prints a note when it skips
    async fn known_hosts_are_checked_strictly_when_given() {
        if !["git", "ssh", "dropbear", "dropbearkey"].iter().all(|t| have(t)) {
            eprintln!("skipped: git, ssh or dropbear (dropbear-bin) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let Some(server) = dropbear(dir.path()) else {
            eprintln!("skipped: dropbear did not start");
            return;
        };
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock")).unwrap());
        let other = public_key(dir.path(), "other_key");
        let remote = format!("ssh://nobody@127.0.0.1:{}/repo.git", server.port);
        let src = GitSource { remote: remote.clone(), reference: None, subdir: None, keep_git_dir: false, credentials: None };
        let attempt = |known: Option<String>| {
            let (src, dir) = (src.clone(), dir.path().to_path_buf());
            async move {
                let work = tempfile::tempdir_in(&dir).unwrap();
                // An agent socket nobody listens on: ssh gets past it to the host key.
                let env = git_env_with(&src, work.path(), Some(dir.join("agent.sock")), known.as_deref()).unwrap();
                let err = git(&src, work.path(), &env, &["ls-remote", "--", &src.remote]).await.unwrap_err();
                err.to_string()
            }
        };
        let wrong = attempt(Some(format!("[127.0.0.1]:{} {other}\n", server.port))).await;
        assert!(wrong.contains("Host key verification failed") && wrong.contains("hint:"), "{wrong}");
        let right = attempt(Some(format!("[127.0.0.1]:{} {}\n", server.port, server.host_key))).await;
        assert!(!right.contains("Host key verification failed") && right.contains("Permission denied"), "{right}");
        let none = attempt(None).await;
        assert!(!none.contains("Host key verification failed") && none.contains("Permission denied"), "{none}");
    }

    #[test]
    fn an_ssh_remote_without_an_agent_socket_names_the_remote_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let src = GitSource { remote: "git@example.com:org/repo.git".into(), reference: None, subdir: None, keep_git_dir: false, credentials: None };
        let Err(e) = git_env_with(&src, dir.path(), None, None) else { panic!("no error") };
        let e = e.to_string();
        assert!(e.contains("git@example.com:org/repo.git") && e.contains("--ssh default"), "{e}");
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "").unwrap();
        let Err(e) = git_env_with(&src, dir.path(), Some(file.clone()), None) else { panic!("no error") };
        let e = e.to_string();
        assert!(e.contains("is not a socket") && !e.contains("not-a-socket"), "{e}");
        let https = GitSource { remote: "https://example.com/r.git".into(), ..src };
        assert!(git_env_with(&https, dir.path(), Some(file), None).is_ok());
        assert!(git_env_with(&https, dir.path(), None, None).is_ok());
    }
}
