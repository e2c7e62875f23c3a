#![allow(clippy::print_stderr)] // tests print a note when they skip
//! COPY metadata (owners, modes, times, hard links, xattrs, special files)
//! and hostile inputs that must stay inside their roots.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::time::{Duration, SystemTime};

use common::{build, copy_dockerfile, is_root, list, mode, owner, s};
use rbuild_fileop::{Chmod, CopyOptions, copy};

#[test]
fn chown_applies_to_everything_and_created_parents() {
    if !is_root() {
        eprintln!("note: not root; skipping chown test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f dir/a x", "f dir/sub/b y", "l dir/l a"]);
    let dst = tempfile::tempdir().unwrap();
    build(dst.path(), &["d existing 755"]);
    let mut o = CopyOptions::dockerfile();
    o.chown = Some((1000, 1001));
    copy(
        ctx.path(),
        &s(&["dir"]),
        dst.path(),
        "/existing/new/deep/",
        &o,
    )
    .unwrap();
    let d = dst.path();
    assert_eq!(
        owner(&d.join("existing")),
        (0, 0),
        "pre-existing parent untouched"
    );
    for p in [
        "existing/new",
        "existing/new/deep",
        "existing/new/deep/a",
        "existing/new/deep/sub",
        "existing/new/deep/sub/b",
        "existing/new/deep/l",
    ] {
        assert_eq!(owner(&d.join(p)), (1000, 1001), "{p}");
    }
    assert_eq!(
        mode(&d.join("existing/new")),
        0o755,
        "created parents are 0755"
    );
}

#[test]
fn source_owner_kept_without_chown() {
    if !is_root() {
        eprintln!("note: not root; skipping owner test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f f x"]);
    std::os::unix::fs::lchown(ctx.path().join("f"), Some(42), Some(43)).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let o = CopyOptions::dockerfile();
    copy(ctx.path(), &s(&["f"]), dst.path(), "/f", &o).unwrap();
    assert_eq!(owner(&dst.path().join("f")), (42, 43));
}

#[test]
fn modes_preserved_and_chmod_applied() {
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "f d/x.sh X 755",
            "f d/ro R 400",
            "d d/priv 700",
            "f d/priv/f F 600",
        ],
    );
    let dst = tempfile::tempdir().unwrap();
    let o = CopyOptions::dockerfile();
    copy(ctx.path(), &s(&["d"]), dst.path(), "/plain", &o).unwrap();
    let p = dst.path().join("plain");
    assert_eq!(mode(&p.join("x.sh")), 0o755);
    assert_eq!(mode(&p.join("ro")), 0o400);
    assert_eq!(mode(&p.join("priv")), 0o700);
    assert_eq!(
        mode(&p),
        0o755,
        "the created top directory is 0755 (BuildKit)"
    );

    let mut o = CopyOptions::dockerfile();
    // (750, not 640: `--chmod` applies to directories too, and an unprivileged
    // test could not look inside a directory without its x bit.)
    o.chmod = Some(Chmod::parse("750").unwrap());
    copy(ctx.path(), &s(&["d"]), dst.path(), "/octal", &o).unwrap();
    let p = dst.path().join("octal");
    for f in ["x.sh", "ro", "priv", "priv/f"] {
        assert_eq!(mode(&p.join(f)), 0o750, "{f}");
    }

    let mut o = CopyOptions::dockerfile();
    o.chmod = Some(Chmod::parse("u=rwX,go=rX").unwrap());
    copy(ctx.path(), &s(&["d"]), dst.path(), "/sym", &o).unwrap();
    let p = dst.path().join("sym");
    assert_eq!(mode(&p.join("x.sh")), 0o755);
    assert_eq!(mode(&p.join("ro")), 0o644);
    assert_eq!(mode(&p.join("priv")), 0o755);
    assert_eq!(mode(&p.join("priv/f")), 0o644);
}

#[test]
fn mtimes_preserved_or_forced() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f d/sub/f x", "f top y"]);
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for p in ["d/sub/f", "top"] {
        fs::File::options()
            .write(true)
            .open(ctx.path().join(p))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let set_dir_mtime = |p: &std::path::Path| {
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_400_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_400_000_000,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::empty()).unwrap();
    };
    set_dir_mtime(&ctx.path().join("d/sub"));
    let dst = tempfile::tempdir().unwrap();
    let o = CopyOptions::dockerfile();
    copy(ctx.path(), &s(&["d", "top"]), dst.path(), "/o/", &o).unwrap();
    assert_eq!(
        fs::metadata(dst.path().join("o/sub/f")).unwrap().mtime(),
        1_500_000_000
    );
    assert_eq!(
        fs::metadata(dst.path().join("o/top")).unwrap().mtime(),
        1_500_000_000
    );
    assert_eq!(
        fs::metadata(dst.path().join("o/sub")).unwrap().mtime(),
        1_400_000_000,
        "dir mtime set after children"
    );

    let mut o = CopyOptions::dockerfile();
    o.timestamp = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86400));
    copy(ctx.path(), &s(&["d"]), dst.path(), "/forced/x/", &o).unwrap();
    for p in ["forced", "forced/x", "forced/x/sub", "forced/x/sub/f"] {
        assert_eq!(
            fs::metadata(dst.path().join(p)).unwrap().mtime(),
            86400,
            "{p}"
        );
    }
}

#[test]
fn hardlinks_preserved_within_a_copy() {
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "f d/a content",
            "h d/b d/a",
            "h d/sub/c d/a",
            "f d/single s",
        ],
    );
    let dst = tempfile::tempdir().unwrap();
    let stats = copy_dockerfile(ctx.path(), &["d"], dst.path(), "/o").unwrap();
    let ino = |p: &str| fs::metadata(dst.path().join(p)).unwrap().ino();
    assert_eq!(ino("o/a"), ino("o/b"));
    assert_eq!(ino("o/a"), ino("o/sub/c"));
    assert_ne!(ino("o/a"), ino("o/single"));
    assert_eq!(fs::metadata(dst.path().join("o/a")).unwrap().nlink(), 3);
    assert_eq!((stats.files, stats.hardlinks), (2, 2));
}

#[test]
fn xattrs_copied_but_not_overlay_ones() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f f x"]);
    let f = ctx.path().join("f");
    if rustix::fs::setxattr(&f, "user.note", b"hello", rustix::fs::XattrFlags::empty()).is_err() {
        eprintln!("note: user xattrs unsupported here; skipping");
        return;
    }
    // `user.overlay.*` can be set by anyone on a plain filesystem: it must not travel.
    rustix::fs::setxattr(
        &f,
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let dst = tempfile::tempdir().unwrap();
    copy_dockerfile(ctx.path(), &["f"], dst.path(), "/f").unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(dst.path().join("f"), "user.note", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(
        rustix::fs::getxattr(dst.path().join("f"), "user.overlay.opaque", &mut buf[..]).is_err()
    );
}

#[test]
fn special_files_copied_without_opening_them() {
    if !is_root() {
        eprintln!("note: not root; skipping device test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["d d"]);
    nix::unistd::mkfifo(
        &ctx.path().join("d/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &ctx.path().join("d/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let stats = copy_dockerfile(ctx.path(), &["d"], dst.path(), "/o").unwrap();
    assert_eq!(stats.special, 2);
    let md = fs::symlink_metadata(dst.path().join("o/null")).unwrap();
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(dst.path().join("o/fifo"))
            .unwrap()
            .file_type()
    ));
}

#[test]
fn large_and_non_utf8_files() {
    let ctx = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::create_dir(ctx.path().join("d")).unwrap();
    fs::write(ctx.path().join("d/big"), &big).unwrap();
    let odd = std::ffi::OsStr::from_bytes_helper(b"caf\xe9");
    fs::write(ctx.path().join("d").join(odd), "latin1").unwrap();
    let dst = tempfile::tempdir().unwrap();
    let stats = copy_dockerfile(ctx.path(), &["d"], dst.path(), "/o").unwrap();
    assert_eq!(fs::read(dst.path().join("o/big")).unwrap(), big);
    assert_eq!(fs::read(dst.path().join("o").join(odd)).unwrap(), b"latin1");
    assert_eq!(stats.bytes, 5_000_006);
}

trait FromBytes {
    fn from_bytes_helper(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytes for std::ffi::OsStr {
    fn from_bytes_helper(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

#[test]
fn context_symlink_to_host_passwd_is_copied_as_a_link() {
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "d d",
            "l d/pw /etc/passwd",
            "l d/up ../../../../../../etc/passwd",
        ],
    );
    let dst = tempfile::tempdir().unwrap();
    copy_dockerfile(ctx.path(), &["d"], dst.path(), "/o").unwrap();
    assert_eq!(
        list(dst.path()),
        [
            "o/",
            "o/pw->/etc/passwd",
            "o/up->../../../../../../etc/passwd"
        ]
    );
    // Named directly and followed, it resolves inside the context: not found there.
    assert!(
        copy(
            ctx.path(),
            &s(&["d/pw"]),
            dst.path(),
            "/x",
            &CopyOptions::dockerfile()
        )
        .is_err()
    );
    assert!(!dst.path().join("x").exists());
}

#[test]
fn dest_subdir_swapped_for_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f d/sub/f x"]);
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir(dst.path().join("o")).unwrap();
    symlink(outside.path(), dst.path().join("o/sub")).unwrap();
    let err = copy_dockerfile(ctx.path(), &["d"], dst.path(), "/o").unwrap_err();
    assert!(err.to_string().contains("non-directory"), "{err}");
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written outside"
    );
}

#[test]
fn dest_symlink_to_host_path_writes_inside_root() {
    let outside = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f a A", "f b B"]);
    let dst = tempfile::tempdir().unwrap();
    // An absolute link naming the real host directory: inside the root it is
    // just a path under the root.
    symlink(outside.path(), dst.path().join("app")).unwrap();
    copy_dockerfile(ctx.path(), &["a", "b"], dst.path(), "/app/").unwrap();
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "host directory untouched"
    );
    let inside = dst.path().join(outside.path().strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(inside.join("a")).unwrap(), "A");
    // A file destination through a link to the host's /etc/passwd stays inside too.
    symlink("/etc/passwd", dst.path().join("pw")).unwrap();
    let before = fs::read(std::path::Path::new("/etc/passwd")).unwrap();
    fs::create_dir(dst.path().join("etc")).unwrap();
    copy_dockerfile(ctx.path(), &["a"], dst.path(), "/pw").unwrap();
    assert_eq!(
        fs::read(std::path::Path::new("/etc/passwd")).unwrap(),
        before
    );
    assert_eq!(
        fs::read_to_string(dst.path().join("etc/passwd")).unwrap(),
        "A"
    );
    let _ = PermissionsExt::mode(&fs::metadata(dst.path()).unwrap().permissions());
}

/// A tree nested deeper than `MAX_DEPTH` (and deeper than `PATH_MAX` allows
/// to name) is an error for copy, walk and hash, not a crash.
#[test]
fn overly_deep_trees_are_errors() {
    use rustix::fs::{Mode, OFlags};
    let ctx = tempfile::tempdir().unwrap();
    let mut fd = rustix::fs::open(
        ctx.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let name = "d".repeat(200);
    rustix::fs::mkdirat(&fd, "top", Mode::from_raw_mode(0o755)).unwrap();
    fd = rustix::fs::openat(
        &fd,
        "top",
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    for _ in 0..rbuild_fileop::MAX_DEPTH + 5 {
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
    drop(fd);
    let dst = tempfile::tempdir().unwrap();
    let err = copy_dockerfile(ctx.path(), &["top"], dst.path(), "/o").unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");
    let err = rbuild_fileop::hash_selection(
        ctx.path(),
        &s(&["top"]),
        &rbuild_fileop::SelectionOptions::dockerfile(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");
    let walked = rbuild_fileop::walk::walk(ctx.path(), "/", &|_, _| false, &mut |_| Ok(()));
    assert!(walked.is_err());
    // Removal refuses the same depth (std's fd-based remover cleans up after us).
    assert!(rbuild_fileop::ops::rm(ctx.path(), "/top", false, false).is_err());
}

#[test]
fn owner_and_mode_strings_resolve_in_the_destination() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f f x"]);
    let dst = tempfile::tempdir().unwrap();
    build(
        dst.path(),
        &[
            "f etc/passwd app:x:1000:1001::/home/app:/bin/sh",
            "f etc/group web:x:33:",
        ],
    );
    let o = CopyOptions::dockerfile()
        .with_owner_and_mode(dst.path(), Some("app:web"), Some("u+x"))
        .unwrap();
    assert_eq!(o.chown, Some((1000, 33)));
    assert_eq!(o.chmod, Some(Chmod::parse("u+x").unwrap()));
    assert!(
        CopyOptions::dockerfile()
            .with_owner_and_mode(dst.path(), Some("ghost"), None)
            .is_err()
    );
    assert!(
        CopyOptions::dockerfile()
            .with_owner_and_mode(dst.path(), None, Some("9z"))
            .is_err()
    );
    // A context's owners never reach the selection hash once `--chown` is set.
    let sel = rbuild_fileop::SelectionOptions::from(&o);
    assert!(!sel.include_owner && sel.follow_symlinks && sel.allow_wildcard);
    if is_root() {
        copy(ctx.path(), &s(&["f"]), dst.path(), "/f", &o).unwrap();
        assert_eq!(owner(&dst.path().join("f")), (1000, 33));
        assert_eq!(mode(&dst.path().join("f")) & 0o100, 0o100);
    }
}

/// `chown` clears `security.capability`; the copy must set xattrs after the
/// owner so that `setcap`-ed binaries keep their capabilities.
#[test]
fn file_capabilities_survive_chown() {
    if !is_root() {
        eprintln!("note: not root; skipping file capability test");
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), &["f ping bin 755"]);
    // vfs_cap_data v2: magic|effective, then (permitted, inheritable) x 2;
    // permitted = CAP_NET_RAW (bit 13).
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    let src = ctx.path().join("ping");
    if rustix::fs::setxattr(
        &src,
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        eprintln!("note: cannot set file capabilities here; skipping");
        return;
    }
    let dst = tempfile::tempdir().unwrap();
    let mut o = CopyOptions::dockerfile();
    o.chown = Some((1000, 1000));
    copy(ctx.path(), &s(&["ping"]), dst.path(), "/bin/", &o).unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(
        dst.path().join("bin/ping"),
        "security.capability",
        &mut buf[..],
    )
    .expect("capability kept");
    assert_eq!(&buf[..n], &cap[..]);
    assert_eq!(owner(&dst.path().join("bin/ping")), (1000, 1000));
}

/// Differential test against coreutils: copying a directory's contents
/// without `--chown` gives the same tree, modes, owners, link counts and
/// mtimes as `cp -a dir/. dest/`.
#[test]
fn directory_copy_matches_cp_archive() {
    use std::process::Command;
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        &[
            "f d/a A 640",
            "f d/sub/b B 755",
            "d d/private 700",
            "f d/private/c C 600",
            "h d/a-link d/a",
            "l d/rel sub/b",
            "l d/abs /etc/passwd",
            "f d/.dot D",
        ],
    );
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    for p in ["d/a", "d/sub/b", "d/private/c", "d/.dot"] {
        fs::File::options()
            .write(true)
            .open(ctx.path().join(p))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let ours = tempfile::tempdir().unwrap();
    copy_dockerfile(ctx.path(), &["d"], ours.path(), "/out").unwrap();
    let theirs = tempfile::tempdir().unwrap();
    fs::create_dir(theirs.path().join("out")).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(ctx.path().join("d/."))
        .arg(theirs.path().join("out"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(list(ours.path()), list(theirs.path()));
    let describe = |root: &std::path::Path| -> Vec<String> {
        list(root)
            .iter()
            .filter(|l| *l != "out/") // the top directory: 0755 by BuildKit's rule, cp copies it
            .map(|line| {
                let end = line
                    .find("->")
                    .or_else(|| line.find('='))
                    .unwrap_or(line.len());
                let rel = line[..end].trim_end_matches('/');
                let md = fs::symlink_metadata(root.join(rel)).unwrap();
                format!(
                    "{rel} {:o} {}:{} {} {}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    md.nlink(),
                    md.mtime()
                )
            })
            .collect()
    };
    assert_eq!(describe(ours.path()), describe(theirs.path()));
}
