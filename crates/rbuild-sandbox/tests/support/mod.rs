//! Test support: a busybox rootfs in a snapshot store, an unprivileged test
//! user with subordinate id ranges, and process-table helpers.
#![allow(dead_code, clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_sandbox::{OutputStream, Rootfs, RunResult, RunSpec, SandboxError};
use rbuild_snapshot::{Active, SnapshotId, Snapshotter};

pub const TEST_USER: &str = "rbuild-test";
/// A user without subordinate ids (single-id map).
pub const SINGLE_USER: &str = "rbuild-test1";

/// Everything a case needs.
pub struct Ctx {
    pub dir: tempfile::TempDir,
    pub store: Snapshotter,
    pub base: SnapshotId,
    pub executor: rbuild_sandbox::Executor,
    pub rootless: bool,
    pub ranged: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct Out {
    pub result: Result<RunResult, SandboxError>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> Result<(), String> {
        match &self.result {
            Ok(r) if r.success() => Ok(()),
            other => Err(format!(
                "run failed: {other:?}\nstdout: {}\nstderr: {}",
                self.stdout, self.stderr
            )),
        }
    }
}

/// Makes a rootfs with /bin/busybox and its applets, /etc/passwd and group
/// (root, app:1000 in groups app and extra:2000), and some files for the
/// whiteout tests. Deliberately no /proc, /dev, /sys, /run, /etc/hosts.
pub fn busybox_rootfs(upper: &Path) -> std::io::Result<()> {
    let bin = upper.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    std::fs::create_dir_all(upper.join("etc"))?;
    std::fs::write(
        upper.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )?;
    std::fs::write(
        upper.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )?;
    std::fs::create_dir_all(upper.join("data"))?;
    std::fs::write(upper.join("data/keep"), "keep")?;
    std::fs::write(upper.join("data/del"), "del")?;
    std::fs::create_dir_all(upper.join("dir/sub"))?;
    std::fs::write(upper.join("dir/a"), "a")?;
    std::fs::create_dir_all(upper.join("home"))?;
    // So that a bind of the host's /usr can run host binaries (merged /usr).
    std::os::unix::fs::symlink("usr/lib", upper.join("lib"))?;
    std::os::unix::fs::symlink("usr/lib64", upper.join("lib64"))?;
    Ok(())
}

impl Ctx {
    pub fn new(rootless: bool, ranged: bool) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-sandbox-test-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let store = Snapshotter::open(&dir.path().join("snapshots")).map_err(|e| e.to_string())?;
        let a = store.prepare(None).map_err(|e| e.to_string())?;
        busybox_rootfs(&a.upper).map_err(|e| format!("busybox rootfs: {e}"))?;
        let base = store.commit(a).map_err(|e| e.to_string())?;
        let helper = rbuild_sandbox::HelperCommand::current_exe().map_err(|e| e.to_string())?;
        let executor = rbuild_sandbox::Executor::new(helper).with_run_dir(dir.path().join("run"));
        Ok(Self {
            dir,
            store,
            base,
            executor,
            rootless,
            ranged,
        })
    }

    /// A fresh writable layer on top of the base.
    pub fn layer(&self) -> Active {
        self.store.prepare(Some(&self.base)).expect("prepare")
    }

    pub fn spec(&self, active: &Active, script: &str) -> RunSpec {
        RunSpec {
            rootfs: Rootfs::Overlay {
                lowerdirs: active.lowers.clone(),
                upperdir: active.upper.clone(),
                workdir: active.work.clone(),
            },
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            network: rbuild_sandbox::Network::None,
            ..RunSpec::default()
        }
    }

    /// Runs `script` on `active` with the default spec; fails unless it
    /// succeeds.
    pub async fn run_script(&self, active: &Active, script: &str) -> Result<(), String> {
        self.run(&self.spec(active, script)).await.ok()
    }

    pub async fn run(&self, spec: &RunSpec) -> Out {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let result = self
            .executor
            .run(spec, &mut |s, d| match s {
                OutputStream::Stdout => stdout.extend_from_slice(d),
                OutputStream::Stderr => stderr.extend_from_slice(d),
            })
            .await;
        Out {
            result,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Pids of all processes (as seen from here; none if /proc cannot be read).
fn pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// Names of the entries of `dir`, in the order the directory lists them.
pub fn entries(dir: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect())
}

/// Pids of processes whose command line contains `needle` (as seen from here).
pub fn processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for pid in pids() {
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Polls (up to ~10 s) until no process matches; returns the survivors.
pub fn wait_gone(needle: &str) -> Vec<i32> {
    for _ in 0..100 {
        let left = processes_with(needle);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    processes_with(needle)
}

/// Whether any file under `dir` contains `needle` (symlinks not followed;
/// unreadable entries skipped).
pub fn tree_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file()
                && let Ok(data) = std::fs::read(&p)
                && data.windows(needle.len()).any(|w| w == needle)
            {
                return Some(p);
            }
        }
    }
    None
}

/// Creates the unprivileged test user with subordinate id ranges (root
/// only; idempotent). Returns false when that is not possible.
pub fn ensure_test_user() -> bool {
    let exists = Command::new("id")
        .arg(TEST_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", TEST_USER])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return false;
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.starts_with(&format!("{TEST_USER}:")))
        {
            let mut t = text;
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&format!("{TEST_USER}:300000:65536\n"));
            if std::fs::write(file, t).is_err() {
                return false;
            }
        }
    }
    true
}

/// Creates a user with no `/etc/subuid`/`/etc/subgid` entries (root only;
/// idempotent). Returns false when that is not possible.
pub fn ensure_single_id_user() -> bool {
    let exists = Command::new("id")
        .arg(SINGLE_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists
        && !Command::new("useradd")
            .args([
                "-m",
                "-s",
                "/bin/sh",
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                SINGLE_USER,
            ])
            .status()
            .is_ok_and(|s| s.success())
    {
        return false;
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let prefix = format!("{SINGLE_USER}:");
        if text.lines().any(|l| l.starts_with(&prefix)) {
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(|l| format!("{l}\n"))
                .collect();
            if std::fs::write(file, kept).is_err() {
                return false;
            }
        }
    }
    true
}

/// A Debian bookworm minbase rootfs as a tarball with numeric owners, made
/// once with debootstrap (root only; needs network). Readable by everyone
/// so that the unprivileged run can unpack it with its own id mapping.
pub const DEBIAN_TAR: &str = "/var/tmp/rbuild-sandbox-test-bookworm.tar";

pub fn ensure_debian_tarball() -> Result<(), String> {
    if Path::new(DEBIAN_TAR).exists() {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("rbuild-debootstrap-")
        .tempdir_in("/var/tmp")
        .map_err(|e| e.to_string())?;
    let st = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(dir.path())
        .arg("http://deb.debian.org/debian")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("debootstrap: {e}"))?;
    if !st.success() {
        return Err(format!("debootstrap failed: {st}"));
    }
    let tmp = format!("{DEBIAN_TAR}.tmp");
    let st = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "-cf",
            &tmp,
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "-C",
        ])
        .arg(dir.path())
        .arg(".")
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    if !st.success() {
        return Err(format!("tar failed: {st}"));
    }
    std::fs::rename(&tmp, DEBIAN_TAR).map_err(|e| e.to_string())
}

/// Unpacks the Debian tarball as a base snapshot of `store`.
pub fn import_debian(store: &Snapshotter) -> Result<SnapshotId, String> {
    let a = store.prepare(None).map_err(|e| e.to_string())?;
    let out = Command::new("tar")
        .args(["--numeric-owner", "-xpf", DEBIAN_TAR, "-C"])
        .arg(&a.upper)
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {DEBIAN_TAR}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    store.commit(a).map_err(|e| e.to_string())
}

/// Whether slirp4netns is installed.
pub fn has_slirp() -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("slirp4netns").is_file())
}

/// Pids of the children of `parent` whose command is `name`.
pub fn children_named(parent: i32, name: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for pid in pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm_part, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = comm_part.split_once(" (").map_or("", |(_, c)| c);
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        if comm == name && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}
