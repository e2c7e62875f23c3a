#![allow(clippy::print_stderr)] // tests print a note when they skip
//! A copy creates its entries first and looks at the destination only when
//! something is in the way (`EEXIST`), skips a chown the kernel made
//! unnecessary, and remembers when `copy_file_range` is refused. These
//! tests pin that the shortcuts change nothing a user can see: whatever is
//! in the way is replaced (or refused) exactly as before, deep inside a
//! copied directory too, and owners and contents come out right.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{build, copy_dockerfile, is_root, list, owner, s};
use rbuild_fileop::{CopyOptions, copy};

#[test]
fn entries_in_the_way_inside_a_merged_directory_are_replaced() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious"), "keep").unwrap();
    let out = outside.path().join("precious");
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "f app/a new-a",
            "f app/sub/b new-b",
            "f app/sub/c new-c",
            "l app/sub/link a-target",
            "f app/sub/fifo not-a-fifo",
            "f app/sub/h1 linked",
            "h app/sub/h2 app/sub/h1",
        ],
    );
    let dst = tempfile::tempdir().unwrap();
    build(
        dst.path(),
        &[
            "f srv/a old-a",
            &format!("l srv/sub/b {}", out.display()),
            "l srv/sub/c ../../../../../../precious",
            "f srv/sub/link old-link",
            "f srv/sub/h2 old-h2",
            "f srv/untouched u",
        ],
    );
    nix::unistd::mkfifo(
        &dst.path().join("srv/sub/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let stats = copy_dockerfile(ctx.path(), &["app"], dst.path(), "/srv").unwrap();
    assert_eq!(
        list(&dst.path().join("srv")),
        [
            "a=new-a",
            "sub/",
            "sub/b=new-b",
            "sub/c=new-c",
            "sub/fifo=not-a-fifo",
            "sub/h1=linked",
            "sub/h2=linked",
            "sub/link->a-target",
            "untouched=u",
        ]
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "keep", "link target untouched");
    let h1 = fs::metadata(dst.path().join("srv/sub/h1")).unwrap();
    let h2 = fs::metadata(dst.path().join("srv/sub/h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "hard link replaced what was in its way");
    assert_eq!((stats.files, stats.hardlinks, stats.symlinks), (5, 1, 1));
}

#[test]
fn directories_in_the_way_are_refused_deep_inside_a_copy() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f app/sub/x new", "d app/sub/d"]);
    let dst = tempfile::tempdir().unwrap();
    build(dst.path(), &["d srv/sub/x"]);
    let err = copy_dockerfile(ctx.path(), &["app"], dst.path(), "/srv").unwrap_err();
    assert!(
        err.to_string().contains("cannot replace directory `srv/sub/x`"),
        "{err}"
    );
    let dst = tempfile::tempdir().unwrap();
    build(dst.path(), &["f srv/sub/d file"]);
    let err = copy_dockerfile(ctx.path(), &["app"], dst.path(), "/srv").unwrap_err();
    assert!(
        err.to_string().contains("non-directory `srv/sub/d`"),
        "{err}"
    );
}

/// A set-group-ID destination directory gives new entries its group: the
/// chown to the wanted owner must not be skipped there.
#[test]
fn setgid_destination_still_gets_the_wanted_owner() {
    if !is_root() {
        eprintln!("note: not root; skipping set-group-ID owner test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f app/a x", "f app/sub/b y", "l app/l a"]);
    let dst = tempfile::tempdir().unwrap();
    build(dst.path(), &["d srv"]);
    let srv = dst.path().join("srv");
    std::os::unix::fs::chown(&srv, Some(0), Some(4321)).unwrap();
    fs::set_permissions(&srv, fs::Permissions::from_mode(0o2775)).unwrap();
    let mut o = CopyOptions::dockerfile();
    o.chown = Some((0, 0));
    copy(ctx.path(), &s(&["app"]), dst.path(), "/srv/", &o).unwrap();
    for p in ["srv/a", "srv/sub", "srv/sub/b", "srv/l"] {
        assert_eq!(owner(&dst.path().join(p)), (0, 0), "{p}");
    }
    assert_eq!(owner(&srv), (0, 4321), "the existing directory keeps its owner");
}

/// Onto another filesystem (`copy_file_range` says `EXDEV`, the case of
/// every COPY onto an overlay mount), many files of assorted sizes still
/// arrive whole after the first refusal switches the copy to `sendfile`.
#[test]
fn contents_arrive_whole_across_filesystems() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("note: no /dev/shm; skipping cross-filesystem copy test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for i in 0..40usize {
        let len = (i * 7919) % 300_000;
        let body: Vec<u8> = (0..len).map(|j| ((i + j * 31) % 251) as u8).collect();
        let name = format!("f{i:02}");
        fs::write(ctx.path().join(&name), &body).unwrap();
        want.push((name, body));
    }
    for dest in [tempfile::tempdir_in(shm).unwrap(), tempfile::tempdir().unwrap()] {
        let stats = copy_dockerfile(ctx.path(), &["."], dest.path(), "/out/").unwrap();
        assert_eq!(stats.files, 40);
        for (name, body) in &want {
            let got = fs::read(dest.path().join("out").join(name)).unwrap();
            assert!(got == *body, "{name}: {} bytes, want {}", got.len(), body.len());
        }
    }
}

/// Wildcard matches share their parents: the copy keeps the last source
/// and destination directory open and takes a non-symlink match as its own
/// canonical path. Symlink matches are still resolved inside the root, and
/// ignored matches still skipped.
#[test]
fn wildcard_matches_resolve_as_before() {
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "f etc/passwd ctx-passwd",
            "f src/a.txt A",
            "f src/b.txt B",
            "f src/dir/x X",
            "l src/ldir dir",
            "l src/lesc ../../../../etc",
            "f src/ign/y Y",
        ],
    );
    let dst = tempfile::tempdir().unwrap();
    build(dst.path(), &["l out/old.txt /etc/passwd"]);
    let mut o = CopyOptions::dockerfile();
    o.context_ignore = s(&["src/ign"]);
    let stats = copy(ctx.path(), &s(&["src/*", "src/*.txt"]), dst.path(), "/out/", &o).unwrap();
    assert_eq!(
        list(&dst.path().join("out")),
        ["a.txt=A", "b.txt=B", "old.txt->/etc/passwd", "passwd=ctx-passwd", "x=X"]
    );
    assert_eq!(stats.files, 7, "a, b, x twice, passwd, a and b again");
    // The hash reads what the copy reads: through a matched symlink (to the
    // root's own /etc), never an ignored match.
    let h = || {
        rbuild_fileop::hash_selection(
            ctx.path(),
            &s(&["src/*"]),
            &rbuild_fileop::SelectionOptions::from(&o),
            None,
        )
        .unwrap()
    };
    let before = h();
    fs::write(ctx.path().join("src/ign/y"), "changed").unwrap();
    assert_eq!(h(), before, "an ignored match does not count");
    fs::write(ctx.path().join("etc/passwd"), "changed").unwrap();
    assert_ne!(h(), before, "a followed symlink match counts its target");
}
