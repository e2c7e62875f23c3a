//! What a RUN leaves in its layer: owners, modes, whiteouts, stubs, WORKDIR,
//! snapshot stacking and the copy backend, apt-get in Debian.
#![allow(clippy::print_stdout)]

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use rbuild_sandbox::{Mount, MountKind, Network, SandboxError};

use crate::support::{self, Ctx};
use crate::{R, meta};

pub(crate) async fn files_owners_modes(c: &Ctx) -> R {
    let a = c.layer();
    let spec = c.spec(&a, "echo hi > /rootfile && chmod 640 /rootfile");
    c.run(&spec).await.ok()?;
    let m = meta(&a.upper.join("rootfile"))?;
    ensure!(
        m.uid() == 0 && m.gid() == 0 && m.mode() & 0o7777 == 0o640,
        "rootfile {}:{} {:o}",
        m.uid(),
        m.gid(),
        m.mode()
    );
    if !c.ranged {
        // Single-id map: switching to another user fails with a clear error.
        let mut spec = c.spec(&a, "true");
        spec.user = "app".into();
        return match c.run(&spec).await.result {
            Err(SandboxError::Setup(m)) if m.contains("not mapped") => Ok(()),
            other => Err(format!("USER app with a single-id map gave {other:?}")),
        };
    }
    c.run_script(
        &a,
        "mkdir -p /home/app && chown app:app /home/app && chmod 750 /home/app",
    )
    .await?;
    let m = meta(&a.upper.join("home/app"))?;
    ensure!(
        m.uid() == 1000 && m.gid() == 1000,
        "home/app owner {}:{}",
        m.uid(),
        m.gid()
    );
    // A second step on the same layer, as USER app.
    let mut spec = c.spec(
        &a,
        "echo x > /home/app/f && mkdir /home/app/d && id -u && id -G",
    );
    spec.user = "app".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(out.stdout.starts_with("1000\n"), "id -u: {}", out.stdout);
    ensure!(
        out.stdout.contains("2000"),
        "supplementary group missing: {}",
        out.stdout
    );
    let f = meta(&a.upper.join("home/app/f"))?;
    let d = meta(&a.upper.join("home/app/d"))?;
    ensure!(
        f.uid() == 1000 && f.gid() == 1000 && f.mode() & 0o777 == 0o644,
        "f {}:{} {:o}",
        f.uid(),
        f.gid(),
        f.mode()
    );
    ensure!(
        d.mode() & 0o777 == 0o755,
        "umask 022 not applied: {:o}",
        d.mode()
    );
    Ok(())
}

pub(crate) async fn chown_to_other_id(c: &Ctx) -> R {
    let a = c.layer();
    if !c.ranged {
        let out = c.run(&c.spec(&a, "touch /x && chown 4242:4343 /x")).await;
        ensure!(
            matches!(out.result, Ok(r) if !r.success()) && out.stderr.contains("Invalid argument"),
            "chown with a single-id map: {out:?}"
        );
        return Ok(());
    }
    c.run_script(&a, "touch /x && chown 4242:4343 /x").await?;
    let m = meta(&a.upper.join("x"))?;
    ensure!(
        m.uid() == 4242 && m.gid() == 4343,
        "x owned by {}:{}",
        m.uid(),
        m.gid()
    );
    Ok(())
}

pub(crate) async fn whiteouts(c: &Ctx) -> R {
    let a = c.layer();
    c.run_script(
        &a,
        "rm /data/del && rm -rf /dir && mkdir /dir && echo n > /dir/new",
    )
    .await?;
    let wh = meta(&a.upper.join("data/del"))?;
    ensure!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "data/del is not a 0:0 whiteout"
    );
    ensure!(
        !a.upper.join("data/keep").exists(),
        "untouched file copied up"
    );
    let dir = a.upper.join("dir");
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(&dir, "user.overlay.opaque", &mut buf)
        .map_err(|e| format!("opaque xattr: {e}"))?;
    ensure!(&buf[..n] == b"y", "opaque xattr value {:?}", &buf[..n]);
    let names = support::entries(&dir)?;
    ensure!(names == ["new"], "opaque dir content {names:?}");
    Ok(())
}

pub(crate) async fn no_stub_left(c: &Ctx) -> R {
    let a = c.layer();
    let mut spec = c.spec(&a, "cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && test -f /run/secrets/tok && ls /proc/self >/dev/null && test -c /dev/null && echo x > /mnt/t/y");
    spec.mounts = vec![
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                data: b"s".to_vec(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        },
        Mount {
            target: "/mnt/t".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    c.run(&spec).await.ok()?;
    let left = support::entries(&a.upper)?;
    ensure!(left.is_empty(), "upper dir is not empty: {left:?}");
    // A failed setup (command not found) cleans up too.
    let b = c.layer();
    let mut spec = c.spec(&b, "");
    spec.args = vec!["no-such-command".into()];
    spec.mounts = vec![Mount {
        target: "/run/secrets/tok".into(),
        kind: MountKind::Secret {
            data: b"s".to_vec(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    }];
    ensure!(
        matches!(c.run(&spec).await.result, Err(SandboxError::Setup(_))),
        "missing command did not fail"
    );
    let left = support::entries(&b.upper)?;
    ensure!(
        left.is_empty(),
        "upper dir not empty after a failed setup: {left:?}"
    );
    Ok(())
}

pub(crate) async fn workdir(c: &Ctx) -> R {
    let a = c.layer();
    for bad in ["/proc/self/fd/3", "/proc/1/cwd", "/proc", "/sys"] {
        let mut spec = c.spec(&a, "pwd");
        spec.cwd = bad.into();
        match c.run(&spec).await.result {
            Err(SandboxError::Setup(m)) if m.contains("working directory") => {}
            other => return Err(format!("WORKDIR {bad} gave {other:?}")),
        }
    }
    let mut spec = c.spec(&a, "pwd");
    spec.cwd = "/new/work/dir".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(out.stdout.trim() == "/new/work/dir", "pwd: {}", out.stdout);
    ensure!(
        a.upper.join("new/work/dir").is_dir(),
        "WORKDIR not kept in the layer"
    );
    // A symlinked WORKDIR resolves inside the root.
    c.run_script(&a, "mkdir /hostdir && ln -s /../../../../hostdir /esc")
        .await?;
    let mut spec = c.spec(&a, "pwd; touch inside");
    spec.cwd = "/esc/x".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        a.upper.join("hostdir/x/inside").exists(),
        "symlinked WORKDIR escaped: {}",
        out.stdout
    );
    Ok(())
}

pub(crate) fn many_lowers(c: &Ctx) -> R {
    // 80 layers with long paths: more than a page of legacy mount options.
    let mut parent = c.base.clone();
    for i in 0..80 {
        let a = c.store.prepare(Some(&parent)).map_err(|e| e.to_string())?;
        std::fs::write(a.upper.join(format!("layer-{i}")), i.to_string())
            .map_err(|e| e.to_string())?;
        parent = c.store.commit(a).map_err(|e| e.to_string())?;
    }
    let lowers = c.store.lowers(&parent).map_err(|e| e.to_string())?;
    let joined: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    ensure!(joined > 4096, "test stack too small ({joined} bytes)");
    let target = c.dir.path().join("view");
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let guard =
        rbuild_snapshot::mount_overlay(&lowers, None, &target).map_err(|e| e.to_string())?;
    ensure!(
        target.join("layer-0").exists()
            && target.join("layer-79").exists()
            && target.join("bin/busybox").exists(),
        "merged view incomplete"
    );
    ensure!(
        std::fs::write(target.join("w"), "x").is_err(),
        "read-only view is writable"
    );
    guard.unmount().map_err(|e| e.to_string())?;
    ensure!(!target.join("layer-0").exists(), "not unmounted");
    // A single lower is a read-only bind.
    let one = vec![c.store.fs_dir(&c.base).map_err(|e| e.to_string())?];
    {
        let _g = rbuild_snapshot::mount_overlay(&one, None, &target).map_err(|e| e.to_string())?;
        ensure!(target.join("bin/busybox").exists(), "single-lower view");
        ensure!(
            std::fs::write(target.join("w"), "x").is_err(),
            "single-lower view is writable"
        );
    }
    ensure!(!target.join("bin").exists(), "guard drop did not unmount");
    Ok(())
}

/// The fallback for hosts without overlayfs: full-tree snapshots, the RUN on
/// a plain directory, and an overlay-format diff computed at commit.
pub(crate) async fn copy_backend(c: &Ctx) -> R {
    use rbuild_snapshot::{Backend, Snapshotter};
    let store = Snapshotter::open_with(
        &c.dir.path().join("copy-store"),
        Backend::Copy {
            reason: "test".into(),
        },
    )
    .map_err(|e| e.to_string())?;
    let a = store.prepare(None).map_err(|e| e.to_string())?;
    support::busybox_rootfs(&a.upper).map_err(|e| e.to_string())?;
    let base = store.commit(a).map_err(|e| e.to_string())?;
    let a = store.prepare(Some(&base)).map_err(|e| e.to_string())?;
    ensure!(a.is_full_tree(), "copy backend must give a full tree");
    let mut spec = c.spec(
        &a,
        "rm /data/del && echo new > /data/new && test -c /dev/null",
    );
    spec.rootfs = rbuild_sandbox::Rootfs::Dir(a.upper.clone());
    c.run(&spec).await.ok()?;
    let id = store.commit(a).map_err(|e| e.to_string())?;
    let diff = store.diff_dir(&id).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = std::fs::read_dir(diff.join("data"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    ensure!(names == ["del", "new"], "diff/data: {names:?}");
    let wh = meta(&diff.join("data/del"))?;
    ensure!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "deletion is not a whiteout"
    );
    let top = support::entries(&diff)?;
    ensure!(
        top == ["data"],
        "stub mount points or untouched files in the diff: {top:?}"
    );
    Ok(())
}

/// The heavy cases (debootstrap + apt-get over the network) run only with
/// `RBUILD_TEST_HEAVY=1` (`.ci/run` sets it).
pub(crate) fn heavy() -> bool {
    std::env::var_os("RBUILD_TEST_HEAVY").is_some_and(|v| v == "1")
}

pub(crate) async fn apt_get(c: &Ctx) -> R {
    if !heavy() {
        println!("note: set RBUILD_TEST_HEAVY=1 to run apt-get in a debootstrap'd Debian");
        return Ok(());
    }
    if !c.ranged {
        println!("note: apt-get needs its `_apt` user: skipped with a single-id map");
        return Ok(());
    }
    if !std::path::Path::new(support::DEBIAN_TAR).exists() {
        println!("note: no Debian rootfs tarball; apt-get case skipped");
        return Ok(());
    }
    let base = support::import_debian(&c.store)?;
    let a = c.store.prepare(Some(&base)).map_err(|e| e.to_string())?;
    let mut spec = c.spec(&a, "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null && hello && stat -c '%U' /var/cache/apt/archives/partial");
    spec.network = Network::Sandbox;
    spec.env.push("DEBIAN_FRONTEND=noninteractive".into());
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.contains("Hello, world!"),
        "hello did not run: {out:?}"
    );
    ensure!(
        out.stdout.contains("_apt"),
        "apt's download user not in place: {}",
        out.stdout
    );
    ensure!(
        a.upper.join("usr/bin/hello").exists(),
        "the package is not in the layer"
    );
    for path in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        ensure!(
            std::fs::symlink_metadata(a.upper.join(path)).is_err(),
            "{path} leaked into the layer"
        );
    }
    Ok(())
}

/// Writes the OCI layer tar of an upper dir (rbuild-oci's exporter).
fn layer_tar(dir: &std::path::Path, out: &std::path::Path) -> R {
    let f = std::fs::File::create(out).map_err(|e| e.to_string())?;
    rbuild_oci::layer::write_layer_tar(dir, f, &Default::default()).map_err(|e| e.to_string())?;
    Ok(())
}

fn sh(cmd: &mut Command) -> R {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A RUN that deletes a file, empties a directory and replaces another
/// gives a layer that `umoci unpack` applies to the expected tree.
pub(crate) async fn umoci_applies_run_layer(c: &Ctx) -> R {
    if which("umoci").is_none() {
        println!("note: umoci missing; layer check skipped");
        return Ok(());
    }
    let a = c.layer();
    let script = "rm /data/del && rm -rf /dir/* && rm -rf /home && mkdir /home && echo n > /home/new && echo c > /data/keep2";
    c.run_script(&a, script).await?;
    let work = tempfile::tempdir_in(c.dir.path()).map_err(|e| e.to_string())?;
    let (base_tar, run_tar) = (work.path().join("base.tar"), work.path().join("run.tar"));
    layer_tar(
        &c.store.fs_dir(&c.base).map_err(|e| e.to_string())?,
        &base_tar,
    )?;
    layer_tar(&a.upper, &run_tar)?;
    let layout = work.path().join("layout");
    let image = format!("{}:t", layout.display());
    sh(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout))?;
    sh(Command::new("umoci").args(["new", "--image", &image]))?;
    for t in [&base_tar, &run_tar] {
        sh(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(t))?;
    }
    let bundle = work.path().join("bundle");
    let mut unpack = Command::new("umoci");
    unpack.args(["unpack", "--image", &image]);
    if !c.ranged {
        unpack.arg("--rootless");
    }
    sh(unpack.arg(&bundle))?;
    let root = bundle.join("rootfs");
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(d))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    ensure!(
        names("data") == ["keep", "keep2"],
        "data: {:?}",
        names("data")
    );
    ensure!(
        names("dir").is_empty(),
        "dir not emptied: {:?}",
        names("dir")
    );
    ensure!(names("home") == ["new"], "home: {:?}", names("home"));
    ensure!(root.join("bin/busybox").is_file(), "base layer missing");
    Ok(())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// An image whose `/etc/resolv.conf` is a dangling symlink (systemd-resolved
/// style) still gets a working file there, and nothing is left behind.
pub(crate) async fn dangling_symlink_target(c: &Ctx) -> R {
    let a = c.layer();
    // As an earlier layer would have it (a RUN itself sees our bind mount there).
    std::fs::create_dir_all(a.upper.join("etc")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        a.upper.join("etc/resolv.conf"),
    )
    .map_err(|e| e.to_string())?;
    let out = c
        .run(&c.spec(
            &a,
            "grep -c nameserver /etc/resolv.conf; readlink /etc/resolv.conf",
        ))
        .await;
    out.ok()?;
    ensure!(
        out.stdout.starts_with('1') || out.stdout.starts_with('2'),
        "no resolv.conf content: {}",
        out.stdout
    );
    let link = std::fs::read_link(a.upper.join("etc/resolv.conf")).map_err(|e| e.to_string())?;
    ensure!(
        link.to_string_lossy() == "../run/systemd/resolve/stub-resolv.conf",
        "the image's symlink changed: {link:?}"
    );
    ensure!(
        !a.upper.join("run").exists(),
        "stub directories of the symlink target left in the layer"
    );
    Ok(())
}
