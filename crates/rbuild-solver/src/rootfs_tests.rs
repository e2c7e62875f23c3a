//! The root filesystem outputs made from snapshots against the image path
//! they replace (layers into the content store, then unpacked): the same
//! tree, the same tar bytes, and no blob written. Layers are made as RUN
//! steps make them — through an overlay mount of the chain (the kernel
//! writes the whiteouts and opaque markers) or, with the copy backend, in
//! the full tree — so runs in a child process in a private mount namespace.

use super::*;
use rbuild_oci::config::ImageConfig;
use rbuild_registry::{ClientOptions, RegistryClient};
use rbuild_sandbox::{Executor, HelperCommand};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

const WORK_ENV: &str = "RBUILD_SOLVER_ROOTFS_WORK";

fn engine(root: &Path, copy_backend: bool) -> Arc<Engine> {
    fs::create_dir_all(root).unwrap();
    if copy_backend {
        fs::write(root.join("snapshotter"), "copy (test)").unwrap();
    }
    let registry = RegistryClient::new(ClientOptions::default()).unwrap();
    let helper = HelperCommand { program: "/bin/false".into(), args_prefix: vec![] };
    Engine::open(root, registry, Executor::new(helper)).unwrap()
}

/// Commits a snapshot on `parent` whose changes `change` makes in the
/// tree it is given (the merged view, as a RUN step sees it).
fn layer(e: &Engine, parent: Option<&str>, change: impl FnOnce(&Path)) -> String {
    let active = crate::prepare(e, parent).unwrap();
    if active.is_full_tree() || active.lowers.is_empty() {
        change(&active.upper);
    } else {
        let mnt = tempfile::tempdir().unwrap();
        let guard = rbuild_snapshot::mount_overlay(&active.lowers, Some((&active.upper, &active.work)), mnt.path()).unwrap();
        change(mnt.path());
        guard.unmount().unwrap();
    }
    let id = e.state.snapshots.commit(active).unwrap();
    let diff = e.state.snapshots.diff_dir(&id).unwrap();
    let empty = fs::read_dir(&diff).unwrap().next().is_none();
    e.record(&format!("key-{id}"), id.as_str(), parent, empty, "RUN change", false).unwrap()
}

fn touch(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec { tv_sec: secs, tv_nsec: 700_000_000 };
    let ts = rustix::fs::Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn write(root: &Path, rel: &str, data: &str, mode: u32) {
    let p = root.join(rel);
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    touch(&p, 1_600_000_000);
}

/// A base with every kind of entry, an empty layer, a layer of deletions
/// and replacements, and a small top layer.
fn chain(e: &Engine) -> (String, String) {
    let base = layer(e, None, |r| {
        for d in ["etc", "bin", "data", "keep", "gone-dir", "emptied", "opaque/sub", "dir-then-file"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        write(r, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644);
        write(r, "bin/tool", "#!/bin/sh\necho tool\n", 0o4755);
        std::os::unix::fs::symlink("tool", r.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("/etc/../../outside", r.join("escape")).unwrap();
        write(r, "data/f", "shared\n", 0o640);
        fs::hard_link(r.join("data/f"), r.join("data/f2")).unwrap();
        std::os::unix::fs::lchown(r.join("data/f"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::lchown(r.join("data"), Some(1000), Some(1000)).unwrap();
        rustix::fs::setxattr(r.join("etc/passwd"), "user.rbuild-test", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
        for f in ["keep/a", "keep/b", "gone", "gone-dir/x", "emptied/x", "emptied/y", "opaque/old", "opaque/sub/old", "dir-then-file/c", "file-then-dir"] {
            write(r, f, f, 0o644);
        }
        rustix::fs::mknodat(rustix::fs::CWD, r.join("fifo"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        touch(&r.join("keep"), 1_500_000_000);
    });
    let empty = layer(e, Some(&base), |_| {});
    let changed = layer(e, Some(&empty), |r| {
        fs::remove_file(r.join("gone")).unwrap();
        fs::remove_dir_all(r.join("gone-dir")).unwrap();
        fs::remove_file(r.join("emptied/x")).unwrap();
        fs::remove_file(r.join("emptied/y")).unwrap();
        fs::remove_dir_all(r.join("opaque")).unwrap();
        fs::create_dir(r.join("opaque")).unwrap();
        write(r, "opaque/new", "new\n", 0o600);
        fs::remove_dir_all(r.join("dir-then-file")).unwrap();
        write(r, "dir-then-file", "now a file\n", 0o644);
        fs::remove_file(r.join("file-then-dir")).unwrap();
        fs::create_dir(r.join("file-then-dir")).unwrap();
        write(r, "file-then-dir/inside", "inside\n", 0o644);
        fs::set_permissions(r.join("keep"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::lchown(r.join("keep/a"), Some(2000), Some(2000)).unwrap();
        fs::write(r.join("data/f2"), "changed\n").unwrap();
    });
    let top = layer(e, Some(&changed), |r| write(r, "top", "top\n", 0o644));
    (base, top)
}

/// Everything an export must reproduce, per path: type, mode, owner,
/// whole-second mtime, contents or link target, user xattrs, and which
/// earlier path it is a hard link of.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("symlink {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                format!("file {:?}", String::from_utf8_lossy(&fs::read(&p).unwrap()))
            } else {
                format!("special {:o} rdev {}", m.mode() & 0o170000, m.rdev())
            };
            let mut xattrs = Vec::new();
            if !ft.is_symlink() {
                let mut names = vec![0u8; 4096];
                let n = rustix::fs::llistxattr(&p, &mut names[..]).unwrap_or(0);
                xattrs = names[..n].split(|&b| b == 0).filter(|s| s.starts_with(b"user.")).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
            }
            let link = if !ft.is_dir() && m.nlink() > 1 { inodes.entry(m.ino()).or_insert(rel.clone()).clone() } else { String::new() };
            let line = format!(
                "{what} mode {:o} owner {}:{} mtime {} xattrs {xattrs:?} link {link}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime()
            );
            out.insert(rel, line);
        }
    }
    out
}

fn blob_count(e: &Engine) -> usize {
    let dir = e.state.root.join("content/blobs/sha256");
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn apply_opts() -> ApplyOptions {
    ApplyOptions { can_mknod: true, preserve_owners: true, ..ApplyOptions::default() }
}

/// New path against old for the chain under `top`.
fn compare(e: &Engine, top: &str, work: &Path, label: &str) {
    let opts = ExportOptions::default();
    let blobs = blob_count(e);
    let new_dir = work.join(format!("{label}-new"));
    let unpacked = e.unpack_rootfs(Some(top), &new_dir, &opts, &apply_opts()).unwrap();
    let (tar, described) = e.write_rootfs_tar(Some(top), Vec::new(), &opts).unwrap();
    assert_eq!(blob_count(e), blobs, "{label}: a root filesystem export must not write blobs");
    assert_eq!(described.digest, rbuild_oci::digest::Digest::sha256(&tar), "{label}");
    assert_eq!(described.size, tar.len() as u64, "{label}");

    let image = e.export_image_blocking(Some(top), ImageConfig::default(), &opts).unwrap();
    let config: ImageConfig = serde_json::from_slice(&e.state.content.read_all(&image.config.digest).unwrap()).unwrap();
    let mut chain_id: Option<String> = None;
    for d in &config.rootfs.diff_ids {
        chain_id = Some(crate::image::next_chain_id(chain_id.as_deref(), d.as_str()));
    }
    assert_eq!(Some(unpacked.digest.to_string()), chain_id, "{label}: type=local is described by the image's ChainID");
    let old_dir = work.join(format!("{label}-old"));
    rbuild_oci::export::unpack_image(&e.state.content, &image.manifest, None, &old_dir, &apply_opts()).unwrap();
    let (old, new) = (listing(&old_dir), listing(&new_dir));
    assert!(!new.is_empty());
    for (path, line) in &old {
        assert_eq!(new.get(path), Some(line), "{label}: `{path}` differs");
    }
    assert_eq!(old.len(), new.len(), "{label}: extra entries: {:?}", new.keys().filter(|k| !old.contains_key(*k)).collect::<Vec<_>>());
    let scratch = work.join(format!("{label}-scratch"));
    fs::create_dir(&scratch).unwrap();
    rbuild_oci::export::unpack_image(&e.state.content, &image.manifest, None, &scratch, &apply_opts()).unwrap();
    let (old_tar, _) =
        rbuild_oci::layer::write_layer_tar(&scratch, Vec::new(), &rbuild_oci::layer::TarOptions::default()).unwrap();
    assert!(old_tar == tar, "{label}: the tar output differs from the image path's");
}

fn check_backend(work: &Path, copy_backend: bool) {
    let label = if copy_backend { "copy" } else { "overlay" };
    let e = engine(&work.join(format!("state-{label}")), copy_backend);
    let (base, top) = chain(&e);
    compare(&e, &top, work, label);
    compare(&e, &base, work, &format!("{label}-single"));
    let new = listing(&work.join(format!("{label}-new")));
    for gone in ["gone", "gone-dir", "emptied/x", "opaque/old", "opaque/sub", "dir-then-file/c"] {
        assert!(!new.contains_key(gone), "{label}: `{gone}` was deleted in a later layer");
    }
    assert!(new["emptied"].starts_with("dir"), "{label}: an emptied directory stays");
    assert!(new["dir-then-file"].starts_with("file"), "{label}");
    assert!(new["data/f2"].contains("changed"), "{label}");

    // Nothing at all (`FROM scratch` and no step): an empty tree.
    let empty_dir = work.join(format!("{label}-empty"));
    e.unpack_rootfs(None, &empty_dir, &ExportOptions::default(), &apply_opts()).unwrap();
    assert!(listing(&empty_dir).is_empty());

    // SOURCE_DATE_EPOCH clamps times as it would in the image's layers.
    let clamped = ExportOptions { source_date_epoch: Some(1_550_000_000), ..ExportOptions::default() };
    let dir = work.join(format!("{label}-epoch"));
    e.unpack_rootfs(Some(&top), &dir, &clamped, &apply_opts()).unwrap();
    let m = fs::symlink_metadata(dir.join("etc/passwd")).unwrap();
    assert_eq!(m.mtime(), 1_550_000_000, "{label}");
    assert_eq!(fs::symlink_metadata(dir.join("keep")).unwrap().mtime(), 1_500_000_000, "{label}: older times stay");
}

/// A destination the applier cannot write (a read-only tmpfs): the export
/// fails with the applier's error, naming the entry, and does not hang on
/// the tar writer blocked on a full pipe.
fn unwritable_dest_fails_cleanly(work: &Path) {
    use rbuild_snapshot::mount;
    use std::os::fd::AsFd;
    let e = engine(&work.join("state-readonly"), false);
    let top = layer(&e, None, |r| {
        for i in 0..2000 {
            write(r, &format!("f{i}"), &"x".repeat(1000), 0o644);
        }
    });
    let dest = work.join("readonly-dest");
    fs::create_dir(&dest).unwrap();
    let fd = mount::tmpfs_mount_fd(&[("size", "1m")]).unwrap();
    mount::set_readonly(fd.as_fd(), false).unwrap();
    mount::attach_path(fd.as_fd(), &dest).unwrap();
    drop(fd);
    let err = e.unpack_rootfs(Some(&top), &dest, &ExportOptions::default(), &apply_opts()).unwrap_err();
    rustix::mount::unmount(&dest, rustix::mount::UnmountFlags::empty()).unwrap();
    let msg = crate::chain(&err);
    assert!(msg.contains("writing") && msg.contains("readonly-dest") && msg.contains("f0"), "{msg}");
    assert!(!msg.contains("Broken pipe"), "the cause, not the writer's broken pipe: {msg}");
}

/// The child half: runs only inside the private mount namespace the
/// parent test made (the env var names its work dir).
#[test]
fn child_rootfs_export_matches_the_image_path() {
    let Some(work) = std::env::var_os(WORK_ENV) else { return };
    let work = PathBuf::from(work);
    check_backend(&work, false);
    check_backend(&work, true);
    unwritable_dest_fails_cleanly(&work);
    fs::write(work.join("ok"), b"ok").unwrap();
}

#[test]
#[allow(clippy::print_stderr)] // tests print a note when they skip
fn rootfs_export_matches_the_image_path() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: needs root for overlay mounts; skipping");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args(["--exact", "export::rootfs::tests::child_rootfs_export_matches_the_image_path", "--test-threads=1", "--nocapture"])
        .env(WORK_ENV, t.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("note: `unshare` not available ({e}); skipping");
            return;
        }
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && t.path().join("ok").exists(), "child failed:\n{stdout}\n{stderr}");
}
