#![allow(clippy::print_stderr)] // tests print a note when they skip
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

/// Each row: an archive, whether extraction fails, and the destination
/// tree afterwards. Names and symlinks that climb out of the destination are
/// errors (as in BuildKit); absolute ones are taken relative to it.
#[test]
fn hostile_archives_stay_inside_the_destination() {
    type Row = (
        &'static str,
        &'static [(&'static str, tar::EntryType, &'static str)],
        bool,
        &'static [&'static str],
    );
    let rows: &[Row] = &[
        (
            "dotdot name",
            &[("../../../escape", tar::EntryType::Regular, "a")],
            true,
            &[],
        ),
        (
            "dotdot inside name",
            &[("a/../../escape", tar::EntryType::Regular, "a")],
            true,
            &[],
        ),
        (
            "absolute name",
            &[("/abs", tar::EntryType::Regular, "b")],
            false,
            &["into/abs=b"],
        ),
        (
            "harmless dotdot",
            &[("a/../b", tar::EntryType::Regular, "b")],
            false,
            &["into/b=b"],
        ),
        (
            "absolute symlink is rooted at the destination",
            &[
                ("evil", tar::EntryType::Symlink, "/"),
                ("evil/through", tar::EntryType::Regular, "c"),
            ],
            false,
            &["into/evil->/", "into/through=c"],
        ),
        (
            // `/etc` inside the destination is the link itself: a loop, never the host's.
            "absolute symlink to a host path",
            &[
                ("etc", tar::EntryType::Symlink, "/etc"),
                ("etc/passwd", tar::EntryType::Regular, "pw"),
            ],
            true,
            &["into/etc->/etc"],
        ),
        (
            "absolute symlink to a sibling",
            &[
                ("real/", tar::EntryType::Directory, ""),
                ("cfg", tar::EntryType::Symlink, "/real"),
                ("cfg/passwd", tar::EntryType::Regular, "pw"),
            ],
            false,
            &["into/cfg->/real", "into/real/", "into/real/passwd=pw"],
        ),
        (
            "relative symlink climbing out",
            &[
                ("up", tar::EntryType::Symlink, "../../.."),
                ("up/x", tar::EntryType::Regular, "d"),
            ],
            true,
            &["into/up->../../.."],
        ),
        (
            "hard link out",
            &[("hl", tar::EntryType::Link, "../../etc/passwd")],
            true,
            &[],
        ),
        (
            "hard link to a missing file",
            &[("hl", tar::EntryType::Link, "etc/passwd")],
            true,
            &[],
        ),
        (
            "hard link to the root",
            &[("hl", tar::EntryType::Link, "/")],
            true,
            &[],
        ),
    ];
    let ctx = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (name, entries, fails, want) in rows {
        fs::write(ctx.path().join("a.tar"), archive(entries)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir(dst.path().join("etc")).unwrap();
        fs::write(dst.path().join("etc/passwd"), "root").unwrap();
        let r = add(ctx.path(), "a.tar", dst.path(), "/into/");
        let mut expected: Vec<String> = ["etc/", "etc/passwd=root", "into/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        expected.extend(want.iter().map(|s| s.to_string()));
        expected.sort();
        let got = list(dst.path());
        if r.is_err() != *fails {
            failures.push(format!("{name}: result {r:?}, expected failure: {fails}"));
        }
        if got != expected {
            failures.push(format!("{name}: got {got:?}, want {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn archive_entries_replace_what_is_in_their_way() {
    let ctx = tempfile::tempdir().unwrap();
    let entries = [
        ("x", tar::EntryType::Regular, "new"),
        ("d", tar::EntryType::Regular, "file"),
    ];
    fs::write(ctx.path().join("a.tar"), archive(&entries)).unwrap();
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir_all(dst.path().join("o/d")).unwrap();
    fs::write(dst.path().join("o/d/inner"), "gone").unwrap();
    fs::write(dst.path().join("o/x"), "old").unwrap();
    add(ctx.path(), "a.tar", dst.path(), "/o").unwrap();
    // As in BuildKit, an entry replaces whatever is in its way, a directory
    // tree included (inside the destination only).
    assert_eq!(list(dst.path()), ["o/", "o/d=file", "o/x=new"]);
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

/// Differential test against GNU tar: archives written by `tar` (GNU and
/// pax formats: long names, hard links, symlinks, modes, mtimes) extract to
/// the same tree as `tar -x` produces.
#[test]
fn extraction_matches_gnu_tar() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("note: GNU tar not installed; skipping");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let long = "n".repeat(150);
    let deep = format!("deep/{}/{}", "d".repeat(90), "e".repeat(90));
    fs::create_dir_all(src.path().join("tree").join(&deep)).unwrap();
    fs::write(src.path().join("tree").join(&deep).join(&long), "long name").unwrap();
    fs::write(src.path().join("tree/exec.sh"), "#!/bin/sh").unwrap();
    fs::set_permissions(
        src.path().join("tree/exec.sh"),
        fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    fs::hard_link(
        src.path().join("tree/exec.sh"),
        src.path().join("tree/exec-link"),
    )
    .unwrap();
    std::os::unix::fs::symlink("exec.sh", src.path().join("tree/sym")).unwrap();
    std::os::unix::fs::symlink(
        format!("../{}", "t".repeat(120)),
        src.path().join("tree/longtarget"),
    )
    .unwrap();
    fs::create_dir(src.path().join("tree/empty")).unwrap();
    fs::set_permissions(
        src.path().join("tree/empty"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    for format in ["gnu", "pax"] {
        let ctx = tempfile::tempdir().unwrap();
        let archive = ctx.path().join("t.tar");
        let st = Command::new("tar")
            .arg(format!("--format={format}"))
            .args(["-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(src.path())
            .arg("tree")
            .status()
            .unwrap();
        assert!(st.success());
        let ours = tempfile::tempdir().unwrap();
        add(ctx.path(), "t.tar", ours.path(), "/").unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let st = Command::new("tar")
            .args(["-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(theirs.path())
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(list(ours.path()), list(theirs.path()), "{format}: tree");
        let describe = |root: &Path| -> Vec<String> {
            let mut v: Vec<String> = list(root)
                .iter()
                .map(|line| {
                    let end = line
                        .find("->")
                        .or_else(|| line.find('='))
                        .unwrap_or(line.len());
                    let rel = line[..end].trim_end_matches('/');
                    let md = fs::symlink_metadata(root.join(rel)).unwrap();
                    let mtime = md.mtime();
                    format!("{rel} {:o} {} {}", md.mode() & 0o7777, md.nlink(), mtime)
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            describe(ours.path()),
            describe(theirs.path()),
            "{format}: metadata"
        );
    }
}
