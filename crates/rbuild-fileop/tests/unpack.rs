//! `ADD` of local archives: detection, extraction, and containment.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::list;
use rbuild_fileop::{CopyOptions, copy};

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Append with a raw name (the tar crate's safe setters refuse `..`).
fn raw_name(h: &mut tar::Header, name: &str) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn raw_link(h: &mut tar::Header, target: &str) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.linkname = [0; 100];
    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
}

fn archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            data.as_bytes()
        } else {
            b""
        };
        let mut h = header(
            *kind,
            if kind.is_dir() { 0o755 } else { 0o644 },
            body.len() as u64,
        );
        raw_name(&mut h, name);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            raw_link(&mut h, data);
        }
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn add(
    ctx: &Path,
    name: &str,
    dest_root: &Path,
    dest: &str,
) -> Result<(), rbuild_fileop::CopyError> {
    let mut o = CopyOptions::dockerfile();
    o.unpack_archives = true;
    // Our own ids, so that the test also runs unprivileged.
    o.chown = Some((
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    ));
    copy(ctx, &[name.to_string()], dest_root, dest, &o).map(|_| ())
}

#[test]
fn plain_gzip_xz_and_zstd_archives_are_extracted() {
    let tarball = archive(&[
        ("app/", tar::EntryType::Directory, ""),
        ("app/main.py", tar::EntryType::Regular, "print(1)"),
        ("app/link", tar::EntryType::Symlink, "main.py"),
        ("app/hard", tar::EntryType::Link, "app/main.py"),
    ]);
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("a.tar"), &tarball).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tarball).unwrap();
    fs::write(ctx.path().join("a.tgz"), gz.finish().unwrap()).unwrap();
    fs::write(
        ctx.path().join("a.tar.zst"),
        zstd::encode_all(&tarball[..], 1).unwrap(),
    )
    .unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tarball).unwrap();
    fs::write(ctx.path().join("a.tar.xz"), xz.finish().unwrap()).unwrap();
    let want = [
        "opt/",
        "opt/app/",
        "opt/app/hard=print(1)",
        "opt/app/link->main.py",
        "opt/app/main.py=print(1)",
    ];
    for name in ["a.tar", "a.tgz", "a.tar.zst", "a.tar.xz"] {
        let dst = tempfile::tempdir().unwrap();
        add(ctx.path(), name, dst.path(), "/opt").unwrap();
        assert_eq!(list(dst.path()), want, "{name}");
        let md = fs::metadata(dst.path().join("opt/app/main.py")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), 1_000_000);
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&md), 2);
    }
}

#[test]
fn non_archives_are_copied_as_files() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("notes.tar"), "not really a tar").unwrap();
    fs::write(ctx.path().join("zeros"), vec![0u8; 1024]).unwrap();
    let dst = tempfile::tempdir().unwrap();
    add(ctx.path(), "notes.tar", dst.path(), "/n").unwrap();
    add(ctx.path(), "zeros", dst.path(), "/z").unwrap();
    assert_eq!(
        fs::read_to_string(dst.path().join("n")).unwrap(),
        "not really a tar"
    );
    assert_eq!(fs::read(dst.path().join("z")).unwrap().len(), 1024);
    // An xz stream that is not a tar is copied as a file, like any other data.
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(b"just text").unwrap();
    fs::write(ctx.path().join("notes.xz"), xz.finish().unwrap()).unwrap();
    add(ctx.path(), "notes.xz", dst.path(), "/x").unwrap();
    assert!(dst.path().join("x").is_file());
    // bzip2 is recognised and refused with a clear message, not copied silently.
    fs::write(ctx.path().join("a.tar.bz2"), b"BZh91AY&SY").unwrap();
    let err = add(ctx.path(), "a.tar.bz2", dst.path(), "/b").unwrap_err();
    assert!(err.to_string().contains("bzip2"), "{err}");
}

#[test]
fn hostile_archive_stays_inside_the_destination() {
    let ctx = tempfile::tempdir().unwrap();
    let tarball = archive(&[
        ("../../../escape-dotdot", tar::EntryType::Regular, "a"),
        ("/escape-abs", tar::EntryType::Regular, "b"),
        ("evil", tar::EntryType::Symlink, "/"),
        ("evil/through-link", tar::EntryType::Regular, "c"),
        ("up", tar::EntryType::Symlink, "../../../../.."),
        ("up/through-up", tar::EntryType::Regular, "d"),
        ("hl", tar::EntryType::Link, "../../../../etc/passwd"),
    ]);
    fs::write(ctx.path().join("evil.tar"), &tarball).unwrap();
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir(dst.path().join("etc")).unwrap();
    fs::write(dst.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let r = add(ctx.path(), "evil.tar", dst.path(), "/into/");
    // The hard link to a path that does not exist inside `/into` fails; all
    // earlier entries landed inside `/into`.
    assert!(
        r.is_err(),
        "hard link target outside the extraction root must not resolve"
    );
    let got = list(dst.path());
    assert_eq!(
        got,
        [
            "etc/",
            "etc/passwd=root:x:0:0::/root:/bin/sh\n",
            "into/",
            "into/escape-abs=b",
            "into/escape-dotdot=a",
            "into/evil->/",
            "into/through-link=c",
            "into/through-up=d",
            "into/up->../../../../..",
        ]
    );
}

#[test]
fn archive_entry_replaces_files_but_not_directories() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("a.tar"),
        archive(&[
            ("x", tar::EntryType::Regular, "new"),
            ("d", tar::EntryType::Regular, "file"),
        ]),
    )
    .unwrap();
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir_all(dst.path().join("o/d")).unwrap();
    fs::write(dst.path().join("o/x"), "old").unwrap();
    let err = add(ctx.path(), "a.tar", dst.path(), "/o").unwrap_err();
    assert!(
        err.to_string().contains("cannot replace directory"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(dst.path().join("o/x")).unwrap(), "new");
}

/// Corrupted archives fail or extract something, but never panic and never
/// write outside the destination directory.
#[test]
fn corrupted_archives_do_not_escape_or_panic() {
    let tarball = archive(&[
        ("d/", tar::EntryType::Directory, ""),
        ("d/f", tar::EntryType::Regular, "content"),
        ("d/l", tar::EntryType::Symlink, "../../.."),
        ("d/h", tar::EntryType::Link, "d/f"),
        ("up", tar::EntryType::Symlink, "/"),
    ]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let ctx = tempfile::tempdir().unwrap();
    for round in 0..150 {
        let mut bytes = tarball.clone();
        for _ in 0..1 + rnd(8) {
            let at = rnd(bytes.len().min(2048));
            bytes[at] = rnd(256) as u8;
        }
        let name = format!("c{round}.tar");
        fs::write(ctx.path().join(&name), &bytes).unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir(dst.path().join("into")).unwrap();
        let _ = add(ctx.path(), &name, dst.path(), "/into/");
        for entry in list(dst.path()) {
            assert!(
                entry.starts_with("into"),
                "round {round}: `{entry}` outside the destination"
            );
        }
    }
}
