//! Test support: a real registry on loopback, an unprivileged user with
//! subordinate id ranges, and a way to run `rbuild` as root or as that user.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Prints why a test does nothing and lets it pass.
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// A temp dir that other users can read (tempfile makes 0700 dirs).
pub fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("rbuild-e2e.").tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
    d
}

/// Debian's docker-registry on a free 127.0.0.1 port with its own storage.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Option<Registry> {
        if !have("docker-registry") {
            skip("docker-registry is not installed (scripts/setup-deps installs it)");
            return None;
        }
        let dir = open_tempdir();
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new(repo().join("scripts/registry"))
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Registry { child, port, dir })
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Files in the registry's blob storage: a count that grows with every
    /// blob a push uploads.
    pub fn blob_files(&self) -> usize {
        fn count(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(&self.dir.path().join("storage/docker/registry/v2/blobs"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who runs `rbuild`.
#[derive(Clone, Debug)]
pub enum Runner {
    Root,
    /// An unprivileged user (uid, gid, home).
    User { name: String, uid: u32, gid: u32, home: PathBuf },
}

const TEST_USER: &str = "rbuild-e2e";

impl Runner {
    /// An unprivileged user with subordinate uid/gid ranges, as a CI runner
    /// would have (created on first use; needs root).
    pub fn unprivileged() -> Option<Runner> {
        if !is_root() {
            skip("creating the test user needs root");
            return None;
        }
        if !have("newuidmap") {
            skip("newuidmap is not installed (package uidmap)");
            return None;
        }
        let exists = Command::new("id").arg(TEST_USER).output().map(|o| o.status.success()).unwrap_or(false);
        if !exists {
            let st = Command::new("useradd").args(["-m", "-s", "/bin/sh", TEST_USER]).status().expect("useradd");
            assert!(st.success(), "useradd {TEST_USER} failed");
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{TEST_USER}:"))) {
                let line = format!("{TEST_USER}:231072:65536\n");
                let mut all = text;
                all.push_str(&line);
                std::fs::write(file, all).expect("write subordinate ids");
            }
        }
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, TEST_USER]).output().expect("id");
            String::from_utf8_lossy(&o.stdout).trim().parse().expect("numeric id")
        };
        let home = PathBuf::from(format!("/home/{TEST_USER}"));
        Some(Runner::User { name: TEST_USER.into(), uid: id("-u"), gid: id("-g"), home })
    }

    /// Makes `dir` usable as this runner's state dir.
    pub fn own(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        if let Runner::User { uid, gid, .. } = self {
            nix::unistd::chown(dir, Some((*uid).into()), Some((*gid).into())).expect("chown state dir");
        }
    }

    /// A `rbuild` command for this runner.
    pub fn rbuild(&self) -> Command {
        let bin = env!("CARGO_BIN_EXE_rbuild");
        match self {
            Runner::Root => Command::new(bin),
            Runner::User { uid, gid, home, .. } => {
                let mut c = Command::new("setpriv");
                c.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--init-groups", "--"])
                    .arg(bin)
                    .env_clear()
                    .env("HOME", home)
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
                    .env("USER", TEST_USER);
                if let Ok(v) = std::env::var("RBUILD_LOG") {
                    c.env("RBUILD_LOG", v);
                }
                c
            }
        }
    }
}

/// Runs a command, returning its output; panics with everything it printed
/// when it fails.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Parses `--progress=rawjson` output.
pub fn events(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

/// Names of the build steps that ran (not cached) in a rawjson event
/// stream; the export steps that every build shows (`exporting to image`,
/// `pushing …`) are not build steps.
pub fn started(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "started")
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .filter(|n| !n.starts_with("exporting ") && !n.starts_with("pushing ") && !n.starts_with("writing "))
        .collect()
}

/// Entries under `dir`, recursively (for "nothing left behind" checks).
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(tree(&p));
            }
        }
    }
    out.sort();
    out
}

/// A `base` stage with busybox, built from scratch: the start of most
/// e2e Dockerfiles (no registry needed).
pub const BUSYBOX_BASE: &str =
    "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

/// Root and `/bin/busybox`, which the busybox-based tests need; prints why
/// a test is skipped otherwise.
pub fn busybox_ready() -> bool {
    if !is_root() || !Path::new("/bin/busybox").exists() {
        skip("needs root and busybox-static");
        return false;
    }
    true
}

/// A context holding `busybox` and a Dockerfile of [`BUSYBOX_BASE`]
/// followed by `rest`.
pub fn busybox_context(dir: &Path, rest: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("{BUSYBOX_BASE}{rest}")).unwrap();
}

/// `rbuild --root=STATE` (as root), with no user or system config file
/// changing what the test sees.
pub fn rbuild_at(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.arg(format!("--root={}", state.display()));
    c.env("XDG_CONFIG_HOME", state.join("no-config"));
    c
}

/// `rbuild --root=STATE build --progress=rawjson`, as [`rbuild_at`]: the
/// start of every build whose steps a test reads from [`events`].
pub fn rbuild_rawjson(state: &Path) -> Command {
    let mut c = rbuild_at(state);
    c.args(["build", "--progress=rawjson"]);
    c
}

/// A busybox test's scratch space: a temp dir and the `state` and `ctx`
/// paths in it (neither is made yet).
pub struct Scratch {
    pub work: tempfile::TempDir,
    pub state: PathBuf,
    pub ctx: PathBuf,
}

/// [`busybox_ready`], then a fresh [`Scratch`]; `None` (the test is
/// skipped) otherwise. Bind `work` even when unused: dropping it removes
/// the directory.
pub fn busybox_scratch() -> Option<Scratch> {
    if !busybox_ready() {
        return None;
    }
    let work = open_tempdir();
    let (state, ctx) = (work.path().join("state"), work.path().join("ctx"));
    Some(Scratch { work, state, ctx })
}

/// Starts [`rbuild_rawjson`] on `ctx` in the background, stdout discarded;
/// returns the child and its event stream (stderr).
pub fn spawn_rawjson(state: &Path, ctx: &Path) -> (Child, std::io::BufReader<std::process::ChildStderr>) {
    let mut child =
        rbuild_rawjson(state).arg(ctx).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start rbuild build");
    let stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    (child, stderr)
}
