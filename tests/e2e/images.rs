//! The local image store end to end: `build -t` keeps the image, `images`
//! lists it, `FROM` finds it without a registry, `run` runs it, `save`
//! writes archives skopeo reads, `tag`/`rmi` manage names, `push` sends a
//! stored image to a registry.

use crate::support::{self, Registry, busybox_ready as ready, ok, skip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `rbuild --root=STATE ARGS…`.
fn rbuild(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.arg(format!("--root={}", state.display())).args(args);
    c
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox image from scratch (no registry needed) with a file, an env,
/// a workdir, a user and a default command.
fn app_context(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN echo 'hello from the image' > /greeting && mkdir -p /srv && chmod 777 /srv\n\
         ENV GREETING=hi WHO=world\n\
         WORKDIR /srv\n\
         USER 1000\n\
         CMD [\"sh\", \"-c\", \"echo $GREETING $WHO from $(pwd) as $(id -u)\"]\n",
    )
    .unwrap();
}

struct Fixture {
    _work: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
}

/// Builds `app` (tagged `app` and `app:1`) into a fresh state dir.
fn built_app() -> Fixture {
    let work = support::open_tempdir();
    let dir = work.path().to_path_buf();
    let state = dir.join("state");
    let ctx = dir.join("app");
    app_context(&ctx);
    let out = ok(rbuild(&state, &["build", "--progress=plain", "-t", "app", "-t", "app:1"]).arg(&ctx));
    assert!(stdout(&out).trim().starts_with("sha256:"), "build prints the digest: {}", stdout(&out));
    Fixture { _work: work, dir, state }
}

#[test]
fn build_with_a_tag_keeps_the_image_and_images_lists_it() {
    if !ready() {
        return;
    }
    let f = built_app();
    let table = stdout(&ok(&mut rbuild(&f.state, &["images"])));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("SIZE"), "a header: {table}");
    assert!(lines.iter().any(|l| l.starts_with("app:latest ")), "app:latest is listed: {table}");
    assert!(lines.iter().any(|l| l.starts_with("app:1 ")), "app:1 is listed: {table}");

    let json = stdout(&ok(&mut rbuild(&f.state, &["images", "--format", "json"])));
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{json}");
    let latest = rows.iter().find(|r| r["Tag"] == "latest").expect("a latest row");
    assert_eq!(latest["Name"], "docker.io/library/app:latest");
    assert_eq!(latest["Repository"], "app");
    assert!(latest["Digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(latest["Size"].as_u64().unwrap() > 500_000, "busybox is in a layer: {latest}");
    assert_eq!(rows[0]["Digest"], rows[1]["Digest"], "both tags name one image");
    let only = stdout(&ok(&mut rbuild(&f.state, &["images", "app:1"])));
    assert_eq!(only.lines().count(), 2, "a header and app:1: {only}");
    assert!(only.lines().nth(1).unwrap().starts_with("app:1 "), "{only}");
    let ids = stdout(&ok(&mut rbuild(&f.state, &["images", "-q"])));
    assert_eq!(ids.lines().count(), 1, "one image under two names: {ids}");
    let id = ids.trim().to_string();
    assert!(latest["ID"].as_str().unwrap().contains(&id), "{id} is the config digest's prefix");
    let by_id = stdout(&ok(&mut rbuild(&f.state, &["run", &id, "cat", "/greeting"])));
    assert_eq!(by_id, "hello from the image\n", "an ID prefix names the image");

    // Without a tag there is nothing to name; `--load` says how to fix it.
    let untagged = rbuild(&f.state, &["build", "--progress=plain", "--load"]).arg(f.dir.join("app")).output().unwrap();
    assert!(!untagged.status.success());
    assert!(String::from_utf8_lossy(&untagged.stderr).contains("hint: add -t NAME"));
    // `-o type=image,name=` names it without -t.
    ok(rbuild(&f.state, &["build", "--progress=plain", "-o", "type=image,name=other:2"]).arg(f.dir.join("app")));
    let json = stdout(&ok(&mut rbuild(&f.state, &["images", "--format", "json"])));
    assert!(json.contains("\"docker.io/library/other:2\""), "{json}");
}

#[test]
fn run_uses_the_image_config_streams_output_and_propagates_the_exit_code() {
    if !ready() {
        return;
    }
    let f = built_app();
    let out = ok(&mut rbuild(&f.state, &["run", "--rm", "app"]));
    assert_eq!(stdout(&out), "hi world from /srv as 1000\n", "Cmd, Env, WorkingDir and User apply");

    let out = ok(&mut rbuild(&f.state, &["run", "app", "cat", "/greeting"]));
    assert_eq!(stdout(&out), "hello from the image\n");

    let out = rbuild(&f.state, &["run", "app", "sh", "-c", "echo out; echo err >&2; exit 7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "the exit code is ours");
    assert_eq!(stdout(&out), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"), "stderr goes to stderr");

    let script = "echo $GREETING $WHO $NEW $PASSED ${RBUILD_E2E_UNSET-unset} $(pwd) $(id -u)";
    let out = ok(rbuild(
        &f.state,
        &["run", "-e", "WHO=tests", "-e", "NEW=1", "-e", "PASSED", "-e", "RBUILD_E2E_UNSET", "-u", "0", "-w", "/", "app"],
    )
    .args(["sh", "-c", script])
    .env("PASSED", "from-us")
    .env_remove("RBUILD_E2E_UNSET"));
    assert_eq!(stdout(&out), "hi tests 1 from-us unset / 0\n", "-e, -u and -w override the image");

    // Writes are discarded: a second run sees the image as built.
    ok(&mut rbuild(&f.state, &["run", "-u", "0", "app", "sh", "-c", "echo changed > /srv/new && rm /greeting"]));
    let out = ok(&mut rbuild(&f.state, &["run", "app", "sh", "-c", "cat /greeting; ls /srv"]));
    assert_eq!(stdout(&out), "hello from the image\n");

    // No network: only loopback is up.
    let out = ok(&mut rbuild(&f.state, &["run", "--network", "none", "app", "sh", "-c", "ls /sys/class/net"]));
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    // Host network: the host's interfaces.
    let out = ok(&mut rbuild(&f.state, &["run", "--network", "host", "app", "ls", "/sys/class/net"]));
    let mut host: Vec<String> =
        std::fs::read_dir("/sys/class/net").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    host.sort();
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), host);

    let missing = rbuild(&f.state, &["run", "nosuch"]).output().unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("`nosuch`") && err.contains("hint:"), "{err}");
}

#[test]
fn from_a_local_image_needs_no_registry() {
    if !ready() {
        return;
    }
    let f = built_app();
    let ctx = f.dir.join("child");
    std::fs::create_dir_all(&ctx).unwrap();
    // `app:1` would be asked of Docker Hub, which this machine cannot reach.
    std::fs::write(ctx.join("Dockerfile"), "FROM app:1\nUSER 0\nRUN cat /greeting > /child\nCMD [\"cat\", \"/child\"]\n").unwrap();
    ok(rbuild(&f.state, &["build", "--progress=plain", "-t", "child"]).arg(&ctx));
    let out = ok(&mut rbuild(&f.state, &["run", "child"]));
    assert_eq!(stdout(&out), "hello from the image\n");
    // The base's config carries over (ENV from `app`).
    let out = ok(&mut rbuild(&f.state, &["run", "child", "sh", "-c", "echo $GREETING"]));
    assert_eq!(stdout(&out), "hi\n");
    // `--pull` asks the registry (Docker Hub has no `library/app`; this
    // machine may not even reach it) and says the local image was skipped.
    let pulled = rbuild(&f.state, &["build", "--progress=plain", "--pull", "-t", "child2"]).arg(&ctx).output().unwrap();
    assert!(!pulled.status.success(), "--pull must not use the local image");
    let err = String::from_utf8_lossy(&pulled.stderr);
    assert!(err.contains("hint: `app:1` is a local image; build without --pull"), "{err}");
}

#[test]
fn save_writes_archives_that_skopeo_reads() {
    if !ready() {
        return;
    }
    if !support::have("skopeo") {
        skip("skopeo is not installed");
        return;
    }
    let f = built_app();
    let digest = {
        let json = stdout(&ok(&mut rbuild(&f.state, &["images", "--format", "json"])));
        let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        row["Digest"].as_str().unwrap().to_string()
    };
    let docker_tar = f.dir.join("out/app-docker.tar");
    ok(rbuild(&f.state, &["save", "app", "-o"]).arg(&docker_tar));
    let inspect = ok(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", docker_tar.display())));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let env: Vec<String> = serde_json::from_value(v["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hi".to_string()), "the config is in the archive: {env:?}");
    let manifest = ok(Command::new("tar").arg("-xOf").arg(&docker_tar).arg("manifest.json"));
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["app:latest"]), "docker load gets the name");

    let oci_tar = f.dir.join("out/app-oci.tar");
    ok(rbuild(&f.state, &["save", "app:1", "--format", "oci", "-o"]).arg(&oci_tar));
    let inspect = ok(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", oci_tar.display())));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str(), "the OCI archive holds the stored manifest");

    let missing = rbuild(&f.state, &["save", "nosuch", "-o"]).arg(f.dir.join("out/x.tar")).output().unwrap();
    assert!(!missing.status.success());
    assert!(!f.dir.join("out/x.tar").exists(), "a failed save leaves no file");
}

#[test]
fn tag_and_rmi_manage_names_only() {
    if !ready() {
        return;
    }
    let f = built_app();
    ok(&mut rbuild(&f.state, &["tag", "app", "registry.example:5000/team/app:v2"]));
    let names = |state: &Path| -> Vec<String> {
        let json = stdout(&ok(&mut rbuild(state, &["images", "--format", "json"])));
        json.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&f.state),
        ["docker.io/library/app:1", "docker.io/library/app:latest", "registry.example:5000/team/app:v2"]
    );
    let out = ok(&mut rbuild(&f.state, &["rmi", "app"]));
    assert_eq!(stdout(&out), "Untagged: app:latest\n");
    assert_eq!(names(&f.state), ["docker.io/library/app:1", "registry.example:5000/team/app:v2"]);
    // The blobs stay for prune: the other names still run.
    let out = ok(&mut rbuild(&f.state, &["run", "registry.example:5000/team/app:v2", "cat", "/greeting"]));
    assert_eq!(stdout(&out), "hello from the image\n");
    let gone = rbuild(&f.state, &["rmi", "app"]).output().unwrap();
    assert!(!gone.status.success(), "a removed name is gone");
    let run_gone = rbuild(&f.state, &["run", "app"]).output().unwrap();
    assert!(!run_gone.status.success());
    assert!(String::from_utf8_lossy(&run_gone.stderr).contains("no local image `app`"));
    // By image ID: refused while two names remain, then --force removes both.
    let id = stdout(&ok(&mut rbuild(&f.state, &["images", "-q"]))).trim().to_string();
    let refused = rbuild(&f.state, &["rmi", &id]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("hint:"), "{}", String::from_utf8_lossy(&refused.stderr));
    let out = ok(&mut rbuild(&f.state, &["rmi", "-f", &id]));
    assert_eq!(stdout(&out), "Untagged: app:1\nUntagged: registry.example:5000/team/app:v2\n");
    assert!(names(&f.state).is_empty());
}

#[test]
fn push_sends_a_stored_image_to_its_registry() {
    if !ready() || !support::have("skopeo") {
        skip("needs root, busybox-static and skopeo");
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let f = built_app();
    let name = format!("{}/e2e/stored:1", registry.host());
    ok(&mut rbuild(&f.state, &["tag", "app", &name]));
    let out = ok(&mut rbuild(&f.state, &["push", &name]));
    let digest = stdout(&out).trim().to_string();
    let inspect = ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{name}")]));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str(), "the registry has the stored manifest");
}

#[test]
fn an_unprivileged_user_builds_runs_and_saves_to_stdout() {
    if !Path::new("/bin/busybox").exists() {
        skip("needs busybox-static");
        return;
    }
    let Some(user) = support::Runner::unprivileged() else { return };
    let work = support::open_tempdir();
    let state = work.path().join("state");
    user.own(&state);
    let ctx = work.path().join("app");
    app_context(&ctx);
    let root_arg = format!("--root={}", state.display());
    ok(user.rbuild().args([&root_arg, "build", "--progress=plain", "-t", "app"]).arg(&ctx));
    let out = ok(user.rbuild().args([&root_arg, "run", "app"]));
    assert_eq!(stdout(&out), "hi world from /srv as 1000\n");
    let out = user.rbuild().args([&root_arg, "run", "app", "sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = ok(user.rbuild().args([&root_arg, "save", "app"]).stdout(std::process::Stdio::piped()));
    let tar = work.path().join("from-stdout.tar");
    std::fs::write(&tar, &out.stdout).unwrap();
    let listing = ok(Command::new("tar").arg("-tf").arg(&tar));
    let names = stdout(&listing);
    assert!(names.lines().any(|l| l == "manifest.json"), "a docker archive on stdout: {names}");
}

/// Processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

#[test]
fn a_terminated_run_takes_its_sandbox_with_it() {
    if !ready() {
        return;
    }
    let f = built_app();
    // A sleep no other test runs, to find the sandbox's process by.
    let marker = ["sleep", "3171"];
    let mut child = rbuild(&f.state, &["run", "app", marker[0], marker[1]])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut started = false;
    for _ in 0..600 {
        if !processes_running(&marker).is_empty() {
            started = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started, "the sandboxed sleep never started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    let mut gone = false;
    for _ in 0..600 {
        if processes_running(&marker).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gone, "the sandboxed process outlived `rbuild run`");
}

/// Debian's dockerd on a private socket with its own data root, stopped
/// (SIGTERM, so it unmounts what it mounted) when dropped.
struct Dockerd {
    child: std::process::Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        if !support::have("dockerd") || !support::have("docker") {
            skip("dockerd or docker is not installed (package docker.io)");
            return None;
        }
        let dir = support::open_tempdir();
        let sock = dir.path().join("docker.sock");
        let ns = format!("rbuild-e2e-{}", std::process::id());
        let child = Command::new("dockerd")
            .arg(format!("--host=unix://{}", sock.display()))
            .arg(format!("--data-root={}", dir.path().join("root").display()))
            .arg(format!("--exec-root={}", dir.path().join("exec").display()))
            .arg(format!("--pidfile={}", dir.path().join("dockerd.pid").display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg(format!("--containerd-namespace={ns}"))
            .arg(format!("--containerd-plugins-namespace={ns}-plugins"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dockerd.log")).ok()?)
            .spawn()
            .ok()?;
        let d = Dockerd { child, sock, _dir: dir };
        for _ in 0..600 {
            if d.docker().arg("version").output().is_ok_and(|o| o.status.success()) {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        skip("dockerd did not start on its private socket");
        None
    }

    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg(format!("--host=unix://{}", self.sock.display())).env("DOCKER_CONFIG", self._dir.path());
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

#[test]
fn docker_loads_and_runs_a_saved_image() {
    if !ready() {
        return;
    }
    let Some(dockerd) = Dockerd::start() else { return };
    let f = built_app();
    let tar = f.dir.join("app.tar");
    ok(rbuild(&f.state, &["save", "app", "-o"]).arg(&tar));
    let loaded = ok(dockerd.docker().arg("load").arg("-i").arg(&tar));
    assert!(stdout(&loaded).contains("Loaded image: app:latest"), "{}", stdout(&loaded));
    let json = stdout(&ok(&mut rbuild(&f.state, &["images", "--format", "json", "app"])));
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let id = stdout(&ok(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", "app:latest"])));
    assert_eq!(id.trim(), row["ID"].as_str().unwrap(), "docker has the same image ID");
    let out = ok(dockerd.docker().args(["run", "--rm", "--network=none", "app:latest"]));
    assert_eq!(stdout(&out), "hi world from /srv as 1000\n", "docker runs it as rbuild run does");
}

#[test]
fn load_reads_what_save_wrote_in_either_format() {
    if !ready() {
        return;
    }
    let f = built_app();
    let docker_tar = f.dir.join("app.tar");
    ok(rbuild(&f.state, &["save", "app", "app:1", "-o"]).arg(&docker_tar));

    let fresh = f.dir.join("fresh");
    let out = ok(rbuild(&fresh, &["load", "-i"]).arg(&docker_tar));
    assert_eq!(stdout(&out), "Loaded image: app:latest\nLoaded image: app:1\n");
    let out = ok(&mut rbuild(&fresh, &["run", "app:1", "cat", "/greeting"]));
    assert_eq!(stdout(&out), "hello from the image\n", "a loaded image runs");

    // An OCI archive on standard input, gzip-compressed.
    let oci_tar = f.dir.join("app-oci.tar");
    std::fs::write(&oci_tar, ok(&mut rbuild(&f.state, &["save", "--format", "oci", "app"])).stdout).unwrap();
    let gz = f.dir.join("app-oci.tar.gz");
    std::fs::write(&gz, ok(Command::new("gzip").arg("-c").arg(&oci_tar)).stdout).unwrap();
    let other = f.dir.join("other");
    let out = ok(rbuild(&other, &["load"]).stdin(std::fs::File::open(&gz).unwrap()));
    assert_eq!(stdout(&out), "Loaded image: app:latest\n");

    // Not an OCI layout (a pre-25 `docker save` has only manifest.json).
    let old = f.dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("manifest.json"), "[]").unwrap();
    let old_tar = f.dir.join("old.tar");
    ok(Command::new("tar").arg("-cf").arg(&old_tar).arg("-C").arg(&old).arg("manifest.json"));
    let refused = rbuild(&other, &["load", "-i"]).arg(&old_tar).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("`index.json`") && err.contains("hint:"), "{err}");
}
