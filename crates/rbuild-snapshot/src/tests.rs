use super::*;

fn store() -> (tempfile::TempDir, Snapshotter) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Snapshotter::open(&dir.path().join("snapshots")).expect("open");
    (dir, s)
}

#[test]
fn prepare_commit_and_lowers_chain() {
    let (_d, s) = store();
    let a = s.prepare(None).expect("prepare");
    assert!(a.lowers.is_empty());
    fs::write(a.upper.join("base"), b"1").expect("write");
    let base = s.commit(a).expect("commit");
    let b = s.prepare(Some(&base)).expect("prepare b");
    assert_eq!(b.lowers, vec![s.fs_dir(&base).expect("fs")]);
    let top = s.commit(b).expect("commit b");
    let lowers = s.lowers(&top).expect("lowers");
    assert_eq!(lowers.len(), 2);
    assert_eq!(lowers[0], s.fs_dir(&top).expect("fs"));
    assert_eq!(lowers[1], s.fs_dir(&base).expect("fs"));
    assert!(lowers[1].join("base").exists());
    assert_eq!(s.parent(&top).expect("parent"), Some(base.clone()));
    // the work dir is scratch and not kept
    assert!(!s.root().join(top.as_str()).join("work").exists());
    assert_eq!(s.list().expect("list").len(), 2);
}

#[test]
fn dropping_active_removes_it() {
    let (_d, s) = store();
    let a = s.prepare(None).expect("prepare");
    let upper = a.upper.clone();
    fs::write(upper.join("x"), b"x").expect("write");
    drop(a);
    assert!(!upper.exists());
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn open_cleans_only_dead_in_progress_dirs() {
    let (_d, s) = store();
    let live = s.prepare(None).expect("prepare");
    // A dead build's leftover: a prepare dir whose lock nobody holds.
    let dead = s.root().join(".prepare-deadbeef");
    fs::create_dir_all(dead.join("fs")).expect("mkdir");
    fs::write(dead.join("lock"), b"").expect("lock");
    let s2 = Snapshotter::open(s.root()).expect("reopen");
    assert!(!dead.exists(), "stale dir must be removed");
    assert!(live.upper.exists(), "a live build's dir must survive");
    let id = s2.commit(live).expect("commit still works");
    assert!(s2.exists(&id));
}

#[test]
fn remove_refuses_parents_and_removes_leaves() {
    let (_d, s) = store();
    let base = s.commit(s.prepare(None).expect("p")).expect("c");
    let child = s.commit(s.prepare(Some(&base)).expect("p")).expect("c");
    assert!(matches!(
        s.remove(&base),
        Err(SnapshotError::HasChildren(_))
    ));
    s.remove(&child).expect("remove child");
    s.remove(&base).expect("remove base");
    assert!(matches!(s.remove(&base), Err(SnapshotError::NotFound(_))));
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn remove_handles_unwritable_dirs() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, s) = store();
    let a = s.prepare(None).expect("p");
    let locked = a.upper.join("locked");
    fs::create_dir(&locked).expect("mkdir");
    fs::write(locked.join("f"), b"x").expect("write");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    let id = s.commit(a).expect("commit");
    s.remove(&id).expect("remove");
    assert!(!s.exists(&id));
}

#[test]
fn ids_are_validated() {
    for bad in ["", "..", "../x", "a/b", ".prepare-1", "x\0y"] {
        assert!(SnapshotId::new(bad).is_err(), "{bad:?} accepted");
    }
    assert!(SnapshotId::new("abc-DEF_1.2").is_ok());
    let (_d, s) = store();
    let missing = SnapshotId::new("nope").expect("valid");
    assert!(matches!(
        s.lowers(&missing),
        Err(SnapshotError::NotFound(_))
    ));
    assert!(matches!(
        s.prepare(Some(&missing)),
        Err(SnapshotError::NotFound(_))
    ));
}

#[test]
fn parent_loop_is_an_error_not_a_hang() {
    let (_d, s) = store();
    let a = s.commit(s.prepare(None).expect("p")).expect("c");
    // Corrupt the store: make `a` its own parent.
    fs::write(s.root().join(a.as_str()).join("parent"), a.as_str()).expect("write");
    assert!(matches!(
        s.lowers(&a),
        Err(SnapshotError::ChainTooDeep { .. })
    ));
}

#[test]
fn usage_counts_hardlinks_once() {
    let (_d, s) = store();
    let a = s.prepare(None).expect("p");
    fs::write(a.upper.join("big"), vec![7u8; 64 * 1024]).expect("write");
    fs::hard_link(a.upper.join("big"), a.upper.join("link")).expect("link");
    let id = s.commit(a).expect("c");
    let u = s.usage(&id).expect("usage");
    assert!(u >= 64 * 1024, "usage {u}");
    assert!(u < 2 * 64 * 1024, "hardlink counted twice: {u}");
}

#[test]
fn copy_backend_keeps_full_trees_and_writes_overlay_style_diffs() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Snapshotter::open_with(
        &dir.path().join("s"),
        Backend::Copy {
            reason: "test".into(),
        },
    )
    .expect("open");
    let a = s.prepare(None).expect("p");
    fs::create_dir_all(a.upper.join("etc/sub")).expect("mkdir");
    fs::write(a.upper.join("etc/keep"), b"k").expect("w");
    fs::write(a.upper.join("etc/change"), b"old").expect("w");
    fs::write(a.upper.join("etc/gone"), b"g").expect("w");
    fs::create_dir_all(a.upper.join("dir/x")).expect("mkdir");
    fs::hard_link(a.upper.join("etc/keep"), a.upper.join("etc/keep-link")).expect("link");
    std::os::unix::fs::symlink("/etc/keep", a.upper.join("sl")).expect("symlink");
    fs::set_permissions(a.upper.join("etc/keep"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let base = s.commit(a).expect("c");
    assert_eq!(
        s.diff_dir(&base).expect("diff"),
        s.fs_dir(&base).expect("fs")
    );

    let b = s.prepare(Some(&base)).expect("p");
    assert!(b.is_full_tree() && b.lowers.is_empty());
    let m = fs::metadata(b.upper.join("etc/keep")).expect("copied");
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(
        m.ino(),
        fs::metadata(b.upper.join("etc/keep-link"))
            .expect("link")
            .ino(),
        "hardlink kept"
    );
    assert_eq!(
        fs::read_link(b.upper.join("sl")).expect("sl"),
        Path::new("/etc/keep")
    );
    fs::write(b.upper.join("etc/change"), b"new!").expect("w");
    fs::remove_file(b.upper.join("etc/gone")).expect("rm");
    fs::remove_dir_all(b.upper.join("dir")).expect("rm");
    fs::write(b.upper.join("added"), b"a").expect("w");
    let top = s.commit(b).expect("c");
    let diff = s.diff_dir(&top).expect("diff");
    let mut names: Vec<String> = Vec::new();
    let mut stack = vec![diff.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("rd").flatten() {
            let p = e.path();
            names.push(p.strip_prefix(&diff).expect("rel").display().to_string());
            if fs::symlink_metadata(&p).expect("m").is_dir() {
                stack.push(p);
            }
        }
    }
    names.sort();
    assert_eq!(names, ["added", "dir", "etc", "etc/change", "etc/gone"]);
    for wh in ["dir", "etc/gone"] {
        let m = fs::symlink_metadata(diff.join(wh)).expect("wh");
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{wh} is not a whiteout"
        );
    }
    assert_eq!(
        s.lowers(&top).expect("lowers"),
        vec![s.fs_dir(&top).expect("fs")]
    );
}
