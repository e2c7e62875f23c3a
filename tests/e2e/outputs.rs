//! Exporters end to end: `-o type=local` and `type=tar` (to a file and to
//! standard output), the image options of `-o` (compression, media
//! types), the export steps in the progress stream, push progress that
//! tells uploaded blobs from ones the registry had, and `login`/`logout`
//! against a registry that requires basic auth.

use crate::support::{self, Registry, busybox_ready as ready, events, ok, skip};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `rbuild --root=STATE ARGS…`, with no user config file and its own
/// Docker config dir (so a login never touches the real one).
fn rbuild(state: &Path, args: &[&str]) -> Command {
    let mut c = support::rbuild_at(state);
    c.args(args).env("DOCKER_CONFIG", state.join("docker-config"));
    c
}

/// A busybox image from scratch: a file owned by 1000, a file deleted in a
/// later layer (a whiteout), a symlink tree from `busybox --install`.
fn context(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN echo hello > /greeting && mkdir -p /data /srv && echo x > /data/f && chown -R 1000:1000 /data \
             && echo bye > /gone && echo in-srv > /srv/file\n\
         RUN rm /gone\n",
    )
    .unwrap();
}

struct Fixture {
    _work: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
    ctx: PathBuf,
}

fn fixture() -> Fixture {
    let work = support::open_tempdir();
    let dir = work.path().to_path_buf();
    let ctx = dir.join("ctx");
    context(&ctx);
    Fixture { state: dir.join("state"), ctx, dir, _work: work }
}

impl Fixture {
    fn build(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["build", "--progress=rawjson"];
        all.extend_from_slice(args);
        let ctx = self.ctx.display().to_string();
        all.push(&ctx);
        ok(&mut rbuild(&self.state, &all))
    }
}

#[test]
fn local_output_writes_the_root_filesystem_into_the_directory() {
    if !ready() {
        return;
    }
    let f = fixture();
    let out = f.dir.join("out");
    let outside = f.dir.join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // What is there already stays (as buildx); a symlink there that points
    // out of the directory does not carry the image's files with it.
    std::fs::write(out.join("keep"), "mine").unwrap();
    std::os::unix::fs::symlink(&outside, out.join("srv")).unwrap();
    let dest = format!("type=local,dest={}", out.display());
    let res = f.build(&["-o", &dest]);
    assert_eq!(std::fs::read_to_string(out.join("greeting")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(out.join("keep")).unwrap(), "mine");
    assert!(!out.join("gone").exists(), "the whiteout of the last layer must delete /gone");
    let meta = std::fs::metadata(out.join("data/f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "owners are preserved as root");
    assert!(std::fs::symlink_metadata(out.join("bin/sh")).unwrap().file_type().is_symlink());
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "nothing may be written outside dest");
    let ev = events(&res.stderr);
    assert!(ev.iter().any(|e| e["event"] == "started" && e["name"] == "exporting to client directory"));
    // As with buildx, files only: no image is made, no layer blob written.
    assert!(!ev.iter().any(|e| e["name"] == "exporting to image"), "a local-only build made an image");
    assert_eq!(blobs(&f.state), Vec::<PathBuf>::new(), "a local-only build must not write blobs");
    // The short form `-o DIR` is the same output. No image, so (as buildx)
    // an empty --iidfile and no `containerimage.*` metadata.
    let short = f.dir.join("short");
    let (iid, meta) = (f.dir.join("iid"), f.dir.join("meta.json"));
    let iid_arg = iid.display().to_string();
    let meta_arg = meta.display().to_string();
    f.build(&["-o", &short.display().to_string(), "--iidfile", &iid_arg, "--metadata-file", &meta_arg]);
    assert_eq!(std::fs::read_to_string(short.join("greeting")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), "", "no image, no image ID");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta, serde_json::json!({}), "no image, no containerimage keys");
}

/// The blobs in a state dir's content store.
fn blobs(state: &Path) -> Vec<PathBuf> {
    support::tree(&state.join("content/blobs")).into_iter().filter(|p| p.is_file()).collect()
}

/// `sha256:<hex>` of a file, by coreutils.
fn sha256_file(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path));
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default())
}

/// `tar -tv` of a tar file: (entry, owner `uid/gid`).
fn tar_entries(path: &Path) -> Vec<(String, String)> {
    let out = ok(Command::new("tar").arg("--numeric-owner").arg("-tvf").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(5)?.trim_end_matches('/').to_string(), f.get(1)?.to_string()))
        })
        .collect()
}

#[test]
fn tar_output_to_a_file_and_to_standard_output() {
    if !ready() {
        return;
    }
    let f = fixture();
    let file = f.dir.join("rootfs.tar");
    let dest = format!("type=tar,dest={}", file.display());
    let res = f.build(&["-o", &dest]);
    let entries = tar_entries(&file);
    assert!(entries.iter().any(|(p, _)| p == "greeting"), "{entries:?}");
    assert!(entries.iter().any(|(p, o)| p == "data/f" && o == "1000/1000"), "{entries:?}");
    assert!(!entries.iter().any(|(p, _)| p == "gone" || p.contains(".wh.")), "{entries:?}");
    // No image was made: the digest on stdout (when stdout is free) is the
    // tar's own, and no blob was written.
    assert_eq!(String::from_utf8_lossy(&res.stdout).trim(), sha256_file(&file));
    assert_eq!(blobs(&f.state), Vec::<PathBuf>::new(), "a tar-only build must not write blobs");
    assert!(events(&res.stderr).iter().any(|e| e["name"] == "exporting to client tarball"));

    // dest=- : the tar is standard output, and nothing else is.
    let res = f.build(&["-o", "type=tar,dest=-"]);
    let piped = f.dir.join("piped.tar");
    std::fs::write(&piped, &res.stdout).unwrap();
    assert_eq!(tar_entries(&piped), entries);
    // `-o -` is the same.
    let res = f.build(&["-o", "-"]);
    std::fs::write(&piped, &res.stdout).unwrap();
    assert_eq!(tar_entries(&piped), entries);
}

/// The manifest of the single image in an OCI layout tar.
fn oci_manifest(tar_bytes: &[u8], scratch: &Path) -> serde_json::Value {
    std::fs::create_dir_all(scratch).unwrap();
    let mut child = Command::new("tar").arg("-x").arg("-C").arg(scratch).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), tar_bytes).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(scratch.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(scratch.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

fn layer_types(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect()
}

#[test]
fn output_options_choose_compression_and_media_types() {
    if !ready() {
        return;
    }
    let f = fixture();
    let res = f.build(&["-o", "type=oci,dest=-"]);
    let m = oci_manifest(&res.stdout, &f.dir.join("x1"));
    assert!(layer_types(&m).iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar+gzip"), "{m}");

    // Layers that exist in another compression are reused, as BuildKit does…
    let res = f.build(&["-o", "type=oci,dest=-,compression=zstd"]);
    let m = oci_manifest(&res.stdout, &f.dir.join("x2"));
    assert!(layer_types(&m).iter().all(|t| t.ends_with("+gzip")), "{m}");
    // …unless force-compression asks for them to be recompressed.
    let res = f.build(&["-o", "type=oci,dest=-,compression=zstd,compression-level=5,force-compression=true"]);
    let m = oci_manifest(&res.stdout, &f.dir.join("x3"));
    assert!(layer_types(&m).iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar+zstd"), "{m}");
    let res = f.build(&["-o", "type=oci,dest=-,compression=uncompressed,force-compression=true"]);
    let m = oci_manifest(&res.stdout, &f.dir.join("x4"));
    assert!(layer_types(&m).iter().all(|t| t == "application/vnd.oci.image.layer.v1.tar"), "{m}");

    // Docker media types on request.
    let res = f.build(&["-o", "type=oci,dest=-,oci-mediatypes=false"]);
    let m = oci_manifest(&res.stdout, &f.dir.join("x5"));
    assert_eq!(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{m}");
    assert!(layer_types(&m).iter().all(|t| t.starts_with("application/vnd.docker.image.rootfs.")), "{m}");

    // `name=` names the image in the archive.
    let res = f.build(&["-o", "type=oci,dest=-,name=named:v2"]);
    let scratch = f.dir.join("x6");
    oci_manifest(&res.stdout, &scratch);
    let index = std::fs::read_to_string(scratch.join("index.json")).unwrap();
    assert!(index.contains("docker.io/library/named:v2"), "{index}");

    // Bad values are refused before anything runs.
    for bad in [
        "type=oci,dest=-,compression=lz4",
        "type=oci,dest=-,compression=gzip,compression-level=99",
        "type=oci,dest=-,force-compression=maybe",
        "type=nonsense",
    ] {
        let out = rbuild(&f.state, &["build", "-o", bad, &f.ctx.display().to_string()]).output().unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad.rsplit(',').next().unwrap().split('=').next_back().unwrap()), "{bad}: {err}");
    }
    // Two outputs cannot share standard output.
    let out = rbuild(&f.state, &["build", "-o", "type=tar,dest=-", "-o", "type=oci,dest=-", &f.ctx.display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn export_steps_and_push_progress_show_in_the_event_stream() {
    if !ready() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let f = fixture();
    let name = format!("{}/exporters/app:1", registry.host());
    let res = f.build(&["-t", &name, "--push", "--load"]);
    let ev = events(&res.stderr);
    let full = format!("pushing {name}");
    assert!(ev.iter().any(|e| e["event"] == "started" && e["name"] == full.as_str()), "no push step");
    assert!(ev.iter().any(|e| e["event"] == "done" && e["name"] == full.as_str()), "push step not done");
    let push_ids: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "progress" && e["vertex"] == format!("export:{full}").as_str())
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(push_ids.iter().any(|id| id.starts_with("push sha256:")), "{push_ids:?}");
    assert!(push_ids.iter().any(|id| id.starts_with("pushing manifest for ")), "{push_ids:?}");
    let image_ids: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "progress" && e["vertex"] == "export:exporting to image")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(image_ids.contains(&format!("naming to {name}").as_str()), "{image_ids:?}");
    assert!(image_ids.contains(&"exporting layers"), "{image_ids:?}");

    // Again (buildx's spelling): every blob is already there, and the
    // stream says so.
    let res = f.build(&["-o", &format!("type=registry,name={name}")]);
    let ids: Vec<String> = events(&res.stderr)
        .iter()
        .filter(|e| e["event"] == "progress")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    assert!(ids.iter().any(|id| id.ends_with(" already exists")), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("push sha256:")), "nothing should be uploaded: {ids:?}");
}

/// `s3cret` hashed with bcrypt (cost 5), as in the registry crate's tests.
const BCRYPT_S3CRET: &str = "$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK";

/// Debian's docker-registry requiring basic auth (alice / s3cret).
struct AuthRegistry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    fn start() -> Option<AuthRegistry> {
        if !support::have("docker-registry") {
            skip("docker-registry is not installed");
            return None;
        }
        let dir = support::open_tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("alice:{BCRYPT_S3CRET}\n")).unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd.display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "docker-registry did not start on port {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(AuthRegistry { child, port, _dir: dir })
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rbuild login … --password-stdin` with `password` on stdin.
fn login(state: &Path, host: &str, password: &str) -> std::process::Output {
    let mut child = rbuild(state, &["login", "--username", "alice", "--password-stdin", host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{password}\n").as_bytes()).unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn login_and_logout_against_a_basic_auth_registry() {
    if !ready() {
        return;
    }
    let Some(registry) = AuthRegistry::start() else { return };
    let work = support::open_tempdir();
    let state = work.path().join("state");
    let host = format!("127.0.0.1:{}", registry.port);
    let config = state.join("docker-config/config.json");

    // A wrong password is refused by the registry and nothing is saved.
    let out = login(&state, &host, "wrong");
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(!config.exists(), "a refused login must not be saved");

    let out = login(&state, &host, "s3cret");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    // base64("alice:s3cret"), as docker writes it.
    assert_eq!(doc["auths"][host.as_str()]["auth"], "YWxpY2U6czNjcmV0", "{doc}");
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o600);

    // The saved login is what a push uses.
    {
        let ctx = work.path().join("ctx");
        context(&ctx);
        let name = format!("{host}/private/app:1");
        let push = |state: &Path| {
            rbuild(state, &["build", "--progress=plain", "-t", &name, "--push", &ctx.display().to_string()]).output().unwrap()
        };
        let out = push(&state);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ok(&mut rbuild(&state, &["logout", &host]));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        assert!(doc["auths"].get(host.as_str()).is_none(), "{doc}");
        let out = push(&state);
        assert!(!out.status.success(), "a push after logout must be refused");
    }
    // Logging out twice is not an error.
    let out = ok(&mut rbuild(&state, &["logout", &host]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Not logged in"));
}

#[test]
fn local_output_as_an_unprivileged_user_gives_the_user_the_files() {
    if !ready() {
        return;
    }
    let Some(runner) = support::Runner::unprivileged() else { return };
    let support::Runner::User { uid, .. } = &runner else { return };
    let f = fixture();
    runner.own(&f.state);
    let out = f.dir.join("out");
    runner.own(&out);
    let dest = format!("type=local,dest={}", out.display());
    let tar = f.dir.join("tar");
    runner.own(&tar);
    let tar_dest = format!("type=tar,dest={}", tar.join("rootfs.tar").display());
    let root_arg = format!("--root={}", f.state.display());
    ok(runner.rbuild().args([&root_arg, "build", "--progress=plain", "-o", &dest, "-o", &tar_dest]).arg(&f.ctx));
    assert_eq!(std::fs::read_to_string(out.join("greeting")).unwrap(), "hello\n");
    assert!(!out.join("gone").exists());
    for p in ["greeting", "data", "data/f", "bin"] {
        assert_eq!(std::fs::symlink_metadata(out.join(p)).unwrap().uid(), *uid, "{p} should be the user's");
    }
    // The tar still records the image's owners.
    let entries = tar_entries(&tar.join("rootfs.tar"));
    assert!(entries.iter().any(|(p, o)| p == "data/f" && o == "1000/1000"), "{entries:?}");
}

/// Per path under `root` (the root itself left out): type, mode, owner,
/// contents or link target, and the mtime of non-directories.
fn listing(root: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for p in support::tree(root) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.is_dir() {
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("-> {} mtime {}", std::fs::read_link(&p).unwrap().display(), m.mtime())
        } else {
            format!("{:?} mtime {}", String::from_utf8_lossy(&std::fs::read(&p).unwrap()), m.mtime())
        };
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        out.insert(rel, format!("{what} mode {:o} owner {}:{}", m.mode() & 0o7777, m.uid(), m.gid()));
    }
    out
}

/// Files deleted, a directory emptied and one replaced (opaque) in later
/// layers: `type=local` and `type=tar`, written from the snapshots, give
/// the tree an independent tool (umoci) unpacks from the image's OCI
/// export, with both snapshotters, and write no blob.
#[test]
fn rootfs_outputs_match_the_image_across_deleting_layers() {
    if !ready() {
        return;
    }
    if !support::have("umoci") {
        skip("umoci is not installed");
        return;
    }
    let work = support::open_tempdir();
    let ctx = work.path().join("ctx");
    support::busybox_context(
        &ctx,
        "FROM base\n\
         RUN mkdir -p /emptied /opaque/sub /d && echo a > /emptied/a && echo b > /emptied/b \
             && echo o > /opaque/sub/o && echo gone > /gone && echo x > /d/x && ln /d/x /d/x-link \
             && chown 1000:1000 /d/x /d && chmod 4750 /d/x && ln -s ../d/x /opaque/sub/link\n\
         RUN rm /gone /emptied/a /emptied/b && rm -rf /opaque && mkdir /opaque && echo new > /opaque/new && chmod 700 /opaque\n",
    );
    for backend in ["overlay", "copy"] {
        let state = work.path().join(format!("state-{backend}"));
        let build = |args: &[&str]| {
            let mut c = rbuild(&state, &["build", "--progress=plain"]);
            c.args(args).arg(&ctx).env("RBUILD_SNAPSHOTTER", backend);
            ok(&mut c)
        };
        let local = work.path().join(format!("local-{backend}"));
        let tar = work.path().join(format!("rootfs-{backend}.tar"));
        build(&["-o", &format!("type=local,dest={}", local.display()), "-o", &format!("type=tar,dest={}", tar.display())]);
        assert_eq!(blobs(&state), Vec::<PathBuf>::new(), "{backend}: a rootfs-only build must not write blobs");
        let got = listing(&local);
        for gone in ["gone", "emptied/a", "opaque/sub"] {
            assert!(!got.contains_key(gone), "{backend}: `{gone}` was deleted in a later layer");
        }
        assert!(got["emptied"].starts_with("dir"), "{backend}: {got:?}");
        assert!(got["opaque/new"].contains("new"), "{backend}");
        assert!(got["d/x"].contains("mode 4750 owner 1000:1000"), "{backend}: {}", got["d/x"]);
        let x = std::fs::metadata(local.join("d/x")).unwrap();
        assert_eq!(x.ino(), std::fs::metadata(local.join("d/x-link")).unwrap().ino(), "{backend}: hard link kept");

        // The tar holds the same tree.
        let from_tar = work.path().join(format!("from-tar-{backend}"));
        std::fs::create_dir_all(&from_tar).unwrap();
        ok(Command::new("tar").arg("-xpf").arg(&tar).arg("-C").arg(&from_tar).arg("--numeric-owner"));
        assert_eq!(listing(&from_tar), got, "{backend}: type=tar and type=local differ");

        // The image path, unpacked by umoci, agrees.
        let oci = work.path().join(format!("image-{backend}.tar"));
        build(&["-o", &format!("type=oci,dest={},name=rootfs-check:latest", oci.display())]);
        let layout = work.path().join(format!("layout-{backend}"));
        std::fs::create_dir_all(&layout).unwrap();
        ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
        let bundle = work.path().join(format!("umoci-{backend}"));
        ok(Command::new("umoci").args(["raw", "unpack", "--image"]).arg(format!("{}:latest", layout.display())).arg(&bundle));
        assert_eq!(listing(&bundle), got, "{backend}: the image unpacked by umoci differs");
    }
}
