//! The agreed overlay format against the real kernel: layers applied in
//! Overlay mode work as overlayfs lowerdirs, and the upperdir of a mount
//! turns into a layer that, flattened, gives what the mount showed.
//! Runs in a child process inside a private mount namespace (`unshare -m`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use super::tarfmt::{Entry, Kind, TarWriter};
use super::*;

fn tar(entries: &[(&str, Kind, &[u8])]) -> Vec<u8> {
    let mut tw = TarWriter::new(Vec::new());
    for (path, kind, data) in entries {
        let mut e = Entry::new(path.as_bytes().to_vec(), *kind);
        e.mode = if *kind == Kind::Dir { 0o755 } else { 0o644 };
        e.size = data.len() as u64;
        tw.append(&e, Some(&mut &data[..])).unwrap();
    }
    tw.finish().unwrap()
}

/// Relative path → file contents (`None` for directories), symlinks not followed.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir).unwrap() {
            let p = ent.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn apply(tar: &[u8], dir: &Path, whiteouts: WhiteoutMode) {
    fs::create_dir_all(dir).unwrap();
    let opts = ApplyOptions { whiteouts, ..ApplyOptions::default() };
    apply_layer(tar, crate::media_types::OCI_LAYER_TAR, dir, &opts).unwrap();
}

/// Child half of `overlay_format_round_trip` (private mount namespace).
#[test]
fn child_overlay_round_trip() {
    let Ok(work) = std::env::var("RBUILD_OCI_OVERLAY_WORK") else { return };
    let w = Path::new(&work);
    let l1 = tar(&[
        ("a.txt", Kind::File, b"a"),
        ("hello.txt", Kind::File, b"hello"),
        ("d/", Kind::Dir, b""),
        ("d/old", Kind::File, b"old"),
        ("d/keep", Kind::File, b"keep"),
    ]);
    let l2 = tar(&[
        (".wh.hello.txt", Kind::File, b""),
        ("d/", Kind::Dir, b""),
        ("d/.wh..wh..opq", Kind::File, b""),
        ("d/new", Kind::File, b"new"),
    ]);
    apply(&l1, &w.join("l1"), WhiteoutMode::Overlay);
    apply(&l2, &w.join("l2"), WhiteoutMode::Overlay);
    for d in ["upper", "work", "merged"] {
        fs::create_dir_all(w.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={},userxattr",
        w.join("l2").display(),
        w.join("l1").display(),
        w.join("upper").display(),
        w.join("work").display()
    );
    let opts = CString::new(opts).unwrap();
    rustix::mount::mount("overlay", w.join("merged").as_path(), "overlay", rustix::mount::MountFlags::empty(), opts.as_c_str())
        .expect("mount overlay");
    let merged = w.join("merged");
    // Our whiteout and opaque markers work as lowerdirs.
    assert!(!merged.join("hello.txt").exists(), "whiteout in a lowerdir must hide the file");
    assert_eq!(fs::read_dir(merged.join("d")).unwrap().count(), 1, "opaque dir must hide lower entries");
    // Change things through the mount.
    fs::remove_file(merged.join("a.txt")).unwrap();
    fs::create_dir(merged.join("e")).unwrap();
    fs::write(merged.join("e/f"), b"f").unwrap();
    fs::remove_dir_all(merged.join("d")).unwrap();
    fs::create_dir(merged.join("d")).unwrap();
    fs::write(merged.join("d/fresh"), b"fresh").unwrap();
    let want = tree(&merged);
    rustix::mount::unmount(merged.as_path(), rustix::mount::UnmountFlags::empty()).unwrap();
    // The upperdir becomes a layer; flattening all three gives the mount's view.
    let (l3, _) = write_layer_tar(&w.join("upper"), Vec::new(), &TarOptions::default()).unwrap();
    let flat = w.join("flat");
    for l in [&l1, &l2, &l3] {
        apply(l, &flat, WhiteoutMode::Apply);
    }
    assert_eq!(tree(&flat), want);
    fs::write(w.join("ok"), b"ok").unwrap();
}

#[test]
#[allow(clippy::print_stderr)] // tests print a note when they skip
fn overlay_format_round_trip() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: needs root for overlay mounts; skipping");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args(["--exact", "layer::overlay_tests::child_overlay_round_trip", "--test-threads=1", "--nocapture"])
        .env("RBUILD_OCI_OVERLAY_WORK", t.path())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("note: `unshare` not available ({e}); skipping");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if (stdout.contains("mount overlay") || stderr.contains("mount overlay")) && !t.path().join("ok").exists() {
        eprintln!("note: overlay mount refused here; skipping\n{stdout}");
        return;
    }
    assert!(out.status.success() && t.path().join("ok").exists(), "child failed:\n{stdout}\n{stderr}");
}
