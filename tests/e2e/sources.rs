//! `COPY --link` and `ADD` from URLs end to end.

use crate::support::{self, events, ok, started};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{BUSYBOX_BASE as BASE, Scratch, busybox_ready as ready};

/// The layer digests of the single image in an OCI archive.
fn layers(oci_tar: &Path, scratch: &Path) -> Vec<String> {
    std::fs::create_dir_all(scratch).unwrap();
    ok(Command::new("tar").arg("-xf").arg(oci_tar).arg("-C").arg(scratch));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob = |d: &str| scratch.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index = read(&scratch.join("index.json"));
    let manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// Builds one Dockerfile on two bases as `runner`: the `--link` copy is
/// cached and its blob reused.
/// `copy_snapshotter` runs with the copy backend, where the merged layer is
/// computed again (same content, not necessarily the same blob).
fn copy_link_on_two_bases(runner: &support::Runner, copy_snapshotter: bool) {
    let work = support::open_tempdir();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("app.txt"), "app").unwrap();
    // The base makes /app a symlink: with --link the destination is not
    // resolved through it (the copied directory replaces it).
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "{BASE}FROM base\nARG V\nRUN echo $V > /version && mkdir /elsewhere && ln -s /elsewhere /app\n\
             COPY --link app.txt /app/\n\
             RUN test \"$(cat /app/app.txt)\" = app && test \"$(cat /version)\" = \"$V\" && test ! -L /app \
             && test ! -e /elsewhere/app.txt\n"
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    runner.own(&state);
    let out_dir = work.path().join("out");
    runner.own(&out_dir);
    let build = |v: &str, out: &Path| {
        let mut cmd = runner.rbuild();
        if copy_snapshotter {
            cmd.env("RBUILD_SNAPSHOTTER", "copy");
        }
        ok(cmd
            .arg(format!("--root={}", state.display()))
            .args(["build", "--progress=rawjson", "--build-arg", &format!("V={v}")])
            .arg(format!("--output=type=oci,dest={}", out.display()))
            .arg(&ctx))
    };
    let first_tar = out_dir.join("one.tar");
    build("1", &first_tar);
    let second_tar = out_dir.join("two.tar");
    let second = build("2", &second_tar);
    let ran = started(&events(&second.stderr));
    assert!(ran.iter().any(|n| n.contains("RUN echo $V")), "the base changed, so its RUN ran: {ran:?}");
    let copies: Vec<&String> = ran.iter().filter(|n| n.contains("COPY --link") && !n.contains("[internal]")).collect();
    assert!(copies.is_empty(), "the --link copy ran again on a new base: {ran:?}");
    let one = layers(&first_tar, &work.path().join("one"));
    let two = layers(&second_tar, &work.path().join("two"));
    // The last RUN only checks: its empty diff makes no layer.
    assert_eq!(one.len(), 4, "busybox, install, RUN, COPY --link: {one:?}");
    assert_eq!(two.len(), 4, "{two:?}");
    assert_ne!(one[2], two[2], "the base layers differ");
    if !copy_snapshotter {
        assert_eq!(one[3], two[3], "the --link layer is the same blob on both bases");
    }
}

#[test]
fn copy_link_layer_survives_a_new_base_unchanged() {
    if ready() {
        copy_link_on_two_bases(&support::Runner::Root, false);
    }
}

#[test]
fn copy_link_with_the_copy_snapshotter() {
    if ready() {
        copy_link_on_two_bases(&support::Runner::Root, true);
    }
}

#[test]
fn copy_link_layer_survives_a_new_base_unchanged_rootless() {
    if !Path::new("/bin/busybox").exists() {
        support::skip("needs busybox-static");
        return;
    }
    let Some(user) = support::Runner::unprivileged() else { return };
    copy_link_on_two_bases(&user, false);
}

const BODY: &str = "hello download";
/// `sha256` of [`BODY`].
fn body_sha256() -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(BODY.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_SECS: u64 = 1_445_412_480;
const PASSWORD: &str = "s3cretpw";

/// A tiny HTTP/1.0 server on 127.0.0.1 for one test: `/file.txt`, a
/// redirect to it and a redirect to `file:///etc/passwd`. Records the
/// request lines and whether they carried basic auth.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Server {
    fn start() -> Server {
        Server::serving(None)
    }

    /// Also serves the files under `root` (a dumb-HTTP git remote).
    fn serving(root: Option<std::path::PathBuf>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut auth = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    auth |= line.to_ascii_lowercase().starts_with("authorization: basic ");
                }
                let path = first.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push((path.clone(), auth));
                let reply = match path.as_str() {
                    "/file.txt" => format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\n\
                         Content-Disposition: attachment; filename=\"../evil\"\r\n\r\n{BODY}",
                        BODY.len()
                    ),
                    "/to-file" => "HTTP/1.0 302 Found\r\nLocation: /file.txt\r\nContent-Length: 0\r\n\r\n".to_string(),
                    "/to-local" => "HTTP/1.0 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n".to_string(),
                    _ => String::new(),
                };
                if !reply.is_empty() {
                    let _ = stream.write_all(reply.as_bytes());
                    continue;
                }
                let file = path.split('?').next().unwrap_or("").trim_start_matches('/').to_string();
                let data = root
                    .as_ref()
                    .filter(|_| !file.split('/').any(|c| c == ".."))
                    .and_then(|r| std::fs::read(r.join(&file)).ok());
                match data {
                    Some(d) => {
                        let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", d.len()).as_bytes());
                        let _ = stream.write_all(&d);
                    }
                    None => {
                        let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            }
        });
        Server { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn downloads(&self) -> usize {
        self.requests.lock().unwrap().iter().filter(|(p, _)| p == "/file.txt").count()
    }
}

fn add_context(dir: &Path, add: &str) {
    add_context_checking(dir, add, "true");
}

/// [`add_context`] with one more shell check of the result.
fn add_context_checking(dir: &Path, add: &str, check: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "{BASE}FROM base\n{add}\n\
             RUN test \"$(cat /dl/file.txt)\" = \"{BODY}\" && test \"$(stat -c %a /dl/file.txt)\" = 600 \
             && test \"$(stat -c %Y /dl/file.txt)\" = {LAST_MODIFIED_SECS} && test ! -e /evil && test ! -e /dl/evil && {check}\n"
        ),
    )
    .unwrap();
}

fn rbuild(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.arg(format!("--root={}", state.display())).args(["build", "--progress=rawjson"]);
    c
}

#[test]
fn add_url_with_checksum_and_credentials() {
    let Some(Scratch { work, state, ctx }) = support::busybox_scratch() else { return };
    let server = Server::start();
    let url = server.url("/file.txt").replace("http://", &format!("http://someone:{PASSWORD}@"));
    add_context(&ctx, &format!("ADD --checksum={} {url} /dl/", body_sha256()));
    let oci = work.path().join("image.tar");
    let first = ok(rbuild(&state).arg(format!("--output=type=oci,dest={}", oci.display())).arg(&ctx));
    assert_eq!(server.downloads(), 1);
    assert!(server.requests.lock().unwrap().iter().all(|(_, auth)| *auth), "the credentials were sent");
    let output = format!("{}{}", String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(!output.contains(PASSWORD), "the password is in rbuild's output: {output}");
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(blob.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            assert!(!text.contains(PASSWORD), "the password is in a JSON blob: {text}");
            assert!(!text.contains("someone"), "the user name is in a JSON blob: {text}");
        }
    }
    // With a checksum a cached download is used without asking the server.
    let second = ok(rbuild(&state).arg(&ctx));
    assert_eq!(server.downloads(), 1, "the cached download was fetched again");
    assert!(started(&events(&second.stderr)).is_empty(), "steps ran again: {:?}", started(&events(&second.stderr)));
}

#[test]
fn add_url_without_checksum_downloads_each_build_and_reuses_unchanged_content() {
    let Some(Scratch { work: _work, state, ctx }) = support::busybox_scratch() else { return };
    let server = Server::start();
    add_context_checking(
        &ctx,
        &format!("ADD --chown=1000:2000 {} /dl/file.txt", server.url("/to-file")),
        "test \"$(stat -c %u:%g /dl/file.txt)\" = 1000:2000",
    );
    ok(rbuild(&state).arg(&ctx));
    assert_eq!(server.downloads(), 1, "the redirect was followed");
    let second = ok(rbuild(&state).arg(&ctx));
    assert_eq!(server.downloads(), 2, "without a checksum every build downloads");
    let ran = started(&events(&second.stderr));
    assert!(ran.iter().all(|n| !n.contains("RUN")), "unchanged content re-ran later steps: {ran:?}");
}

#[test]
fn add_url_checksum_mismatch_and_redirect_to_file_fail() {
    let Some(Scratch { work, state, .. }) = support::busybox_scratch() else { return };
    let server = Server::start();
    let bad = format!("sha256:{}", "0".repeat(64));
    let ctx = work.path().join("mismatch");
    add_context(&ctx, &format!("ADD --checksum={bad} {} /dl/", server.url("/file.txt")));
    let out = rbuild(&state).arg(&ctx).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checksum mismatch") && stderr.contains(&body_sha256()), "{stderr}");
    let ctx = work.path().join("redirect");
    add_context(&ctx, &format!("ADD {} /dl/file.txt", server.url("/to-local")));
    let out = rbuild(&state).arg(&ctx).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("file:") && stderr.contains("refused"), "{stderr}");
}

fn git_cmd(dir: &Path, args: &[&str]) {
    ok(Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir));
}

/// Whether the git tests can run here (they skip cleanly otherwise).
fn git_ready() -> bool {
    if !ready() {
        return false;
    }
    if !support::have("git") {
        support::skip("git is not installed");
        return false;
    }
    true
}

/// A new repository at `dir` with `files` (path, content) in its first
/// commit.
fn git_repo(dir: &Path, files: &[(&str, &str)], message: &str) {
    for (path, content) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    git_cmd(dir, &["init", "-q"]);
    git_cmd(dir, &["add", "."]);
    git_cmd(dir, &["commit", "-qm", message]);
}

/// Publishes the repository `work/name` as `work/srv/bare` for a dumb-HTTP
/// server of `work/srv`.
fn publish(work: &Path, name: &str, bare: &str) {
    git_cmd(work, &["clone", "-q", "--bare", name, &format!("srv/{bare}")]);
    git_cmd(&work.join("srv").join(bare), &["update-server-info"]);
}

#[test]
fn add_git_repository_with_ref_subdir_submodules_and_kept_git_dir() {
    if !git_ready() {
        return;
    }
    let work = support::open_tempdir();
    let srv = work.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let server = Server::serving(Some(srv.clone()));
    // A repository used as a submodule, served over (dumb) HTTP too.
    git_repo(&work.path().join("lib"), &[("lib.txt", "from the submodule")], "lib");
    publish(work.path(), "lib", "lib.git");
    let src = work.path().join("src");
    git_repo(&src, &[("sub/hello.txt", "from git"), ("top.txt", "top")], "one");
    git_cmd(&src, &["tag", "v1"]);
    std::fs::write(src.join("sub/hello.txt"), "changed later").unwrap();
    git_cmd(&src, &["submodule", "--quiet", "add", &server.url("/lib.git"), "libdir"]);
    git_cmd(&src, &["commit", "-qam", "two"]);
    publish(work.path(), "src", "repo.git");
    let repo = server.url("/repo.git");
    let with_credentials = repo.replace("http://", &format!("http://someone:{PASSWORD}@"));
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "{BASE}FROM base\nADD {repo}#v1:sub /from-tag/\nADD --keep-git-dir=true {with_credentials} /full\n\
             ADD {repo} /plain\n\
             RUN test \"$(cat /from-tag/hello.txt)\" = \"from git\" && test ! -e /from-tag/.git \
             && test \"$(cat /full/sub/hello.txt)\" = \"changed later\" && test -f /full/top.txt && test -d /full/.git \
             && test \"$(cat /full/libdir/lib.txt)\" = \"from the submodule\" && test -f /full/libdir/.git \
             && test \"$(cat /plain/libdir/lib.txt)\" = \"from the submodule\" && test ! -e /plain/libdir/.git \
             && test ! -e /plain/.git && ! grep -r \"{}\"\"{}\" /full/.git\n",
            &PASSWORD[..3],
            &PASSWORD[3..]
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    let first = ok(rbuild(&state).arg(&ctx));
    let output = String::from_utf8_lossy(&first.stderr);
    assert!(!output.contains(PASSWORD), "the password is in rbuild's output: {output}");
    // The same commits again: cloned, but nothing after the clones runs.
    let lib_fetches = || server.requests.lock().unwrap().iter().filter(|(p, _)| p.starts_with("/lib.git")).count();
    let fetched = lib_fetches();
    assert!(fetched > 0, "the submodule was fetched by the first build");
    let second = ok(rbuild(&state).arg(&ctx));
    let ran = started(&events(&second.stderr));
    assert!(ran.iter().all(|n| !n.contains("RUN") && !n.contains("ADD")), "unchanged commits re-ran steps: {ran:?}");
    // The commit is the key: a cache hit needs no submodule.
    assert_eq!(lib_fetches(), fetched, "a cached rebuild fetched the submodule again");
}

/// A submodule URL comes from the repository, so it is hostile input: a
/// `file://` submodule (which would copy a directory of the build machine
/// into the image) fails the build.
#[test]
fn add_git_refuses_a_file_submodule() {
    if !git_ready() {
        return;
    }
    let work = support::open_tempdir();
    let srv = work.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let server = Server::serving(Some(srv.clone()));
    let host_secret = work.path().join("host-secret");
    git_repo(&host_secret, &[("key", "machine secret")], "secret");
    let src = work.path().join("src");
    git_repo(&src, &[("a.txt", "a")], "one");
    let url = format!("file://{}", host_secret.display());
    git_cmd(&src, &["-c", "protocol.file.allow=always", "submodule", "--quiet", "add", &url, "stolen"]);
    git_cmd(&src, &["commit", "-qm", "two"]);
    publish(work.path(), "src", "repo.git");
    let ctx = work.path().join("ctx");
    add_context(&ctx, &format!("ADD {} /repo", server.url("/repo.git")));
    let out = rbuild(&work.path().join("state")).arg(&ctx).output().unwrap();
    assert!(!out.status.success(), "a file:// submodule was checked out");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("submodule") && stderr.contains("file"), "{stderr}");
}

/// A dropbear ssh server on 127.0.0.1, run by the test in the foreground
/// with its own host key. Dropbear reads `~/.ssh/authorized_keys` of the
/// login user only, so it runs in a private mount namespace where the
/// user's home is a directory of the test (the real one is never touched).
struct SshServer {
    child: std::process::Child,
    port: u16,
}

impl SshServer {
    fn start(dir: &Path, authorized_key: &str) -> Option<SshServer> {
        let passwd = ok(Command::new("getent").args(["passwd", "0"]));
        let line = String::from_utf8_lossy(&passwd.stdout).trim().to_string();
        let real_home = line.split(':').nth(5).filter(|h| h.starts_with('/'))?.to_string();
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/authorized_keys"), authorized_key).unwrap();
        let host_key = dir.join("host_key");
        ok(Command::new("dropbearkey").args(["-t", "ed25519", "-f"]).arg(&host_key));
        // A port that was free a moment ago; another try when it was taken.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" \"$1\" && exec dropbear -F -E -e -s -m -j -k -r \"$2\" -p \"$3\" -P \"$4\"")
                .arg(&home)
                .arg(&real_home)
                .arg(&host_key)
                .arg(format!("127.0.0.1:{port}"))
                .arg(dir.join("dropbear.pid"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(SshServer { child, port });
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `ssh-agent` of the test, holding one new key.
struct Agent {
    pid: String,
    socket: std::path::PathBuf,
    public_key: String,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let out = ok(Command::new("ssh-agent").arg("-a").arg(&socket).arg("-s"));
        let text = String::from_utf8_lossy(&out.stdout);
        let pid = text
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID="))
            .expect("ssh-agent prints its pid")
            .to_string();
        let key = dir.join("id_ed25519");
        ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test", "-f"]).arg(&key));
        ok(Command::new("ssh-add").arg("-q").arg(&key).env("SSH_AUTH_SOCK", &socket));
        // Only the agent holds the key now.
        std::fs::remove_file(&key).unwrap();
        let public_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        Agent { pid, socket, public_key }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// `ADD ssh://…` clones with the build's `default` ssh agent (as BuildKit
/// does) and without it fails at once with the fix, never prompting. No
/// known hosts are given on the command line, so the server's unknown host
/// key is accepted, as BuildKit's Dockerfile frontend does; the agent's
/// socket reaches neither the image nor the output.
#[test]
fn add_git_over_ssh_with_the_builds_agent() {
    if !support::is_root() {
        support::skip("the ssh server runs in a private mount namespace: needs root");
        return;
    }
    for tool in ["git", "dropbear", "dropbearkey", "ssh", "ssh-agent", "ssh-add", "ssh-keygen", "unshare", "getent"] {
        if !support::have(tool) {
            support::skip(&format!("{tool} is not installed (dropbear-bin, openssh-client)"));
            return;
        }
    }
    let work = support::open_tempdir();
    let agent = Agent::start(work.path());
    let Some(server) = SshServer::start(work.path(), &agent.public_key) else {
        support::skip("dropbear did not start");
        return;
    };
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/hello.txt"), "over ssh").unwrap();
    git_cmd(&src, &["init", "-q"]);
    git_cmd(&src, &["add", "."]);
    git_cmd(&src, &["commit", "-qm", "one"]);
    git_cmd(&src, &["tag", "v1"]);
    git_cmd(work.path(), &["clone", "-q", "--bare", "src", "repo.git"]);
    let remote = format!("ssh://root@127.0.0.1:{}{}/repo.git", server.port, work.path().display());
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM scratch\nADD {remote}#v1:sub /src\n")).unwrap();
    let state = work.path().join("state");
    let out_dir = work.path().join("out");

    let without = rbuild(&state).arg(&ctx).env_remove("SSH_AUTH_SOCK").output().unwrap();
    assert!(!without.status.success(), "an ssh remote was cloned without an agent");
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains(&remote) && stderr.contains("--ssh default"), "{stderr}");

    let with = ok(rbuild(&state)
        .arg(format!("--ssh=default={}", agent.socket.display()))
        .arg(format!("--output=type=local,dest={}", out_dir.display()))
        .arg(&ctx)
        .env_remove("SSH_AUTH_SOCK"));
    assert_eq!(std::fs::read_to_string(out_dir.join("src/hello.txt")).unwrap(), "over ssh");
    assert!(!out_dir.join("src/.git").exists());
    let output = String::from_utf8_lossy(&with.stderr);
    assert!(!output.contains("agent.sock"), "the agent's socket is in rbuild's output: {output}");
}
