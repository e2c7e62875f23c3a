//! Layer round trips and hostile-tar containment tests (real filesystems).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::tarfmt::{Entry, Kind, TarWriter};
use super::*;
use crate::digest::Digest;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    data: Option<Digest>,
    link: Option<PathBuf>,
    rdev: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir).unwrap() {
            let p = ent.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_char_device() { "chr" } else if ft.is_fifo() { "fifo" } else { "other" }
            };
            let xattrs = if ft.is_symlink() || !(ft.is_dir() || ft.is_file()) {
                Vec::new()
            } else {
                let f = fs::File::open(&p).unwrap();
                fsutil::fd_xattrs(std::os::fd::AsFd::as_fd(&f)).unwrap()
            };
            let node = Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: if ft.is_symlink() { 0 } else { m.mtime() },
                data: ft.is_file().then(|| Digest::sha256(&fs::read(&p).unwrap())),
                link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                rdev: m.rdev(),
                xattrs,
            };
            if ft.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), node);
        }
    }
    out
}

fn set_mtime(p: &Path, t: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: t, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: t, tv_nsec: 0 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// An upperdir with every kind of entry the format supports.
fn build_upper(root: &Path) {
    fs::create_dir_all(root.join("etc/deep").join("x".repeat(120))).unwrap();
    fs::write(root.join("etc/deep").join("x".repeat(120)).join("y".repeat(100)), b"long name").unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("bin_tool"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(root.join("bin_tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(root.join("bin_tool"), root.join("etc/tool_link")).unwrap();
    symlink("../bin_tool", root.join("etc/sym")).unwrap();
    symlink("/nonexistent/abs", root.join("dangling")).unwrap();
    rustix::fs::setxattr(root.join("etc/passwd").as_path(), "user.note", b"hello", rustix::fs::XattrFlags::empty()).unwrap();
    fs::create_dir(root.join("opaque")).unwrap();
    fs::write(root.join("opaque/new"), b"n").unwrap();
    rustix::fs::setxattr(root.join("opaque").as_path(), OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo").as_path(), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o640), 0)
        .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    if is_root() {
        rustix::fs::mknodat(rustix::fs::CWD, root.join("etc/gone").as_path(), rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
            .unwrap();
        rustix::fs::chown(root.join("etc/passwd").as_path(), Some(rustix::fs::Uid::from_raw(1234)), Some(rustix::fs::Gid::from_raw(5678))).unwrap();
        // cap_net_bind_service+ep in the v2 on-disk format (what `setcap` writes).
        let mut cap = Vec::new();
        for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
            cap.extend_from_slice(&word.to_le_bytes());
        }
        fs::write(root.join("ping"), b"binary").unwrap();
        rustix::fs::setxattr(root.join("ping").as_path(), "security.capability", &cap, rustix::fs::XattrFlags::empty()).unwrap();
    }
    for (p, t) in [("etc/passwd", 1_000_000), ("bin_tool", 2_000_000), ("etc", 3_000_000), ("opaque/new", 4_000_000)] {
        set_mtime(&root.join(p), t);
    }
}

#[test]
fn create_is_deterministic_and_round_trips_through_apply() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    build_upper(&upper);
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    for compression in [Compression::None, Compression::Gzip { level: 6 }, Compression::Zstd { level: 3 }] {
        let opts = CreateOptions { compression, ..Default::default() };
        let a = create_layer(&store, &upper, &opts).unwrap();
        let b = create_layer(&store, &upper, &opts).unwrap();
        assert_eq!(a, b, "same tree must give the same layer ({compression:?})");
        assert_eq!(a.descriptor.size, store.size(&a.descriptor.digest).unwrap());
        if compression == Compression::None {
            assert_eq!(a.diff_id, a.descriptor.digest);
        }
        let blob = store.open_blob(&a.descriptor.digest).unwrap();
        assert_eq!(uncompressed_digest(blob, &a.descriptor.media_type).unwrap(), (a.diff_id.clone(), a.uncompressed_size));
        let out = t.path().join(format!("out-{:?}", compression.kind()));
        fs::create_dir(&out).unwrap();
        let blob = store.open_blob(&a.descriptor.digest).unwrap();
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, can_mknod: is_root(), preserve_owners: is_root() };
        let stats = apply_layer(blob, &a.descriptor.media_type, &out, &opts).unwrap();
        assert_eq!(stats.diff_id, a.diff_id);
        assert_eq!(stats.uncompressed_size, a.uncompressed_size);
        assert_eq!(stats.hardlinks, 1);
        let mut want = snapshot(&upper);
        want.remove(Path::new("sock"));
        if !is_root() {
            for n in want.values_mut() {
                n.uid = rustix::process::geteuid().as_raw();
                n.gid = rustix::process::getegid().as_raw();
            }
        }
        let got = snapshot(&out);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (k, w) in &want {
            assert_eq!(&got[k], w, "{}", k.display());
        }
        let ino = |p: &str| fs::metadata(out.join(p)).unwrap().ino();
        assert_eq!(ino("bin_tool"), ino("etc/tool_link"));
    }
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    fs::write(upper.join("old"), b"o").unwrap();
    fs::write(upper.join("new"), b"n").unwrap();
    set_mtime(&upper.join("old"), 100);
    set_mtime(&upper.join("new"), 2_000_000_000);
    let (tar, _) = write_layer_tar(&upper, Vec::new(), &TarOptions { source_date_epoch: Some(1000) }).unwrap();
    let mut tr = tarfmt::TarReader::new(&tar[..]);
    let mut seen = BTreeMap::new();
    while let Some(e) = tr.next_entry().unwrap() {
        seen.insert(String::from_utf8(e.path).unwrap(), e.mtime);
    }
    assert_eq!(seen["old"], 100);
    assert_eq!(seen["new"], 1000);
}

#[test]
fn apply_mode_deletes_whiteouts_and_clears_opaque_dirs() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("rootfs");
    fs::create_dir_all(target.join("keep")).unwrap();
    fs::create_dir_all(target.join("op/sub")).unwrap();
    fs::write(target.join("op/old"), b"old").unwrap();
    fs::write(target.join("keep/a"), b"a").unwrap();
    fs::write(target.join("keep/b"), b"b").unwrap();
    let mut tw = TarWriter::new(Vec::new());
    let mut d = Entry::new(b"op/".to_vec(), Kind::Dir);
    d.mode = 0o755;
    tw.append(&d, None).unwrap();
    tw.append(&Entry::new(b"op/.wh..wh..opq".to_vec(), Kind::File), None).unwrap();
    let mut f = Entry::new(b"op/fresh".to_vec(), Kind::File);
    f.size = 1;
    tw.append(&f, Some(&mut &b"f"[..])).unwrap();
    tw.append(&Entry::new(b"keep/.wh.a".to_vec(), Kind::File), None).unwrap();
    tw.append(&Entry::new(b".wh.missing".to_vec(), Kind::File), None).unwrap();
    let tar = tw.finish().unwrap();
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, can_mknod: false, preserve_owners: false };
    let stats = apply_layer(&tar[..], crate::media_types::OCI_LAYER_TAR, &target, &opts).unwrap();
    assert_eq!(stats.whiteouts, 3);
    assert!(!target.join("keep/a").exists());
    assert!(target.join("keep/b").exists());
    assert!(!target.join("op/old").exists() && !target.join("op/sub").exists());
    assert_eq!(fs::read(target.join("op/fresh")).unwrap(), b"f");
}

// ------------------------------------------------------------ hostile tars

struct Jail {
    _t: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

impl Jail {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        let outside = t.path().join("outside");
        fs::create_dir(&target).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Jail { _t: t, target, outside }
    }

    fn apply(&self, tar: &[u8], whiteouts: WhiteoutMode) -> Result<ApplyStats, LayerError> {
        let opts = ApplyOptions { whiteouts, can_mknod: false, preserve_owners: true };
        apply_layer(tar, crate::media_types::OCI_LAYER_TAR, &self.target, &opts)
    }

    /// The directory next to the target must be exactly as created.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "files appeared outside the target");
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"secret");
        let parent = self.target.parent().unwrap();
        let mut siblings: Vec<_> = fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name()).collect();
        siblings.sort();
        assert_eq!(siblings, vec![std::ffi::OsString::from("outside"), std::ffi::OsString::from("target")]);
        for n in ["ocia", "ocib", "ocil", "secret", "pwned"] {
            assert!(!Path::new("/").join(n).exists(), "`/{n}` exists: a write escaped to the real root");
        }
    }
}

fn file(path: &str, data: &'static [u8]) -> (Entry, &'static [u8]) {
    let mut e = Entry::new(path.as_bytes().to_vec(), Kind::File);
    e.size = data.len() as u64;
    (e, data)
}

fn link(path: &str, kind: Kind, target: &str) -> (Entry, &'static [u8]) {
    let mut e = Entry::new(path.as_bytes().to_vec(), kind);
    e.link = target.as_bytes().to_vec();
    (e, b"")
}

fn dir(path: &str) -> (Entry, &'static [u8]) {
    let mut e = Entry::new(path.as_bytes().to_vec(), Kind::Dir);
    e.mode = 0o755;
    (e, b"")
}

fn tar_of(entries: &[(Entry, &'static [u8])]) -> Vec<u8> {
    let mut tw = TarWriter::new(Vec::new());
    for (e, d) in entries {
        tw.append(e, Some(&mut &d[..])).unwrap();
    }
    tw.finish().unwrap()
}

#[test]
fn dotdot_names_are_refused() {
    let j = Jail::new();
    for name in ["../outside/secret", "a/../../outside/pwned", "../target2"] {
        let err = j.apply(&tar_of(&[file(name, b"pwned")]), WhiteoutMode::Overlay).unwrap_err();
        assert!(matches!(err, LayerError::UnsafePath(_)), "{name}: {err}");
    }
    j.assert_outside_untouched();
}

#[test]
fn absolute_names_land_inside() {
    let j = Jail::new();
    let abs = format!("{}/pwned", j.outside.display());
    j.apply(&tar_of(&[file(&abs, b"x"), file("/etc/passwd", b"y")]), WhiteoutMode::Overlay).unwrap();
    assert!(j.target.join(abs.trim_start_matches('/')).exists());
    assert_eq!(fs::read(j.target.join("etc/passwd")).unwrap(), b"y");
    j.assert_outside_untouched();
}

#[test]
fn symlink_then_file_through_it_stays_inside() {
    for target in ["OUTSIDE", "../outside", "../../../../../../outside", "/"] {
        let j = Jail::new();
        let t = if target == "OUTSIDE" { j.outside.display().to_string() } else { target.to_owned() };
        let tar = tar_of(&[link("l", Kind::Symlink, &t), file("l/pwned", b"x"), file("l/secret", b"x")]);
        let _ = j.apply(&tar, WhiteoutMode::Overlay);
        j.assert_outside_untouched();
    }
}

#[test]
fn file_over_symlink_replaces_the_link_not_its_target() {
    let j = Jail::new();
    let abs = j.outside.join("secret").display().to_string();
    let tar = tar_of(&[link("f", Kind::Symlink, &abs), file("f", b"overwritten")]);
    j.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(j.target.join("f")).unwrap(), b"overwritten");
    assert!(!fs::symlink_metadata(j.target.join("f")).unwrap().file_type().is_symlink());
    j.assert_outside_untouched();
}

#[test]
fn hardlinks_cannot_reach_out() {
    let j = Jail::new();
    let abs = j.outside.join("secret").display().to_string();
    let err = j.apply(&tar_of(&[link("h", Kind::HardLink, "../outside/secret")]), WhiteoutMode::Overlay).unwrap_err();
    assert!(matches!(err, LayerError::UnsafePath(_)), "{err}");
    // Absolute target: resolved inside the root, where it does not exist.
    assert!(j.apply(&tar_of(&[link("h", Kind::HardLink, &abs)]), WhiteoutMode::Overlay).is_err());
    // Via a symlinked parent directory: still resolved inside.
    let tar = tar_of(&[link("d", Kind::Symlink, &j.outside.display().to_string()), link("h", Kind::HardLink, "d/secret")]);
    assert!(j.apply(&tar, WhiteoutMode::Overlay).is_err());
    // To a symlink pointing out: links the symlink itself; writing the link
    // name later replaces it instead of writing through.
    let tar = tar_of(&[link("s", Kind::Symlink, &abs), link("h2", Kind::HardLink, "s"), file("h2", b"x")]);
    j.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert!(fs::symlink_metadata(j.target.join("s")).unwrap().file_type().is_symlink());
    j.assert_outside_untouched();
}

#[test]
fn symlink_swapped_for_directory_mid_archive() {
    let j = Jail::new();
    let out = j.outside.display().to_string();
    // symlink, then a directory of the same name, then a file below it.
    let tar = tar_of(&[link("d", Kind::Symlink, &out), dir("d/"), file("d/pwned", b"x")]);
    j.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert!(j.target.join("d").is_dir() && !fs::symlink_metadata(j.target.join("d")).unwrap().file_type().is_symlink());
    assert!(j.target.join("d/pwned").exists());
    // directory, then a symlink replacing it, then a file below.
    let tar = tar_of(&[dir("e/"), file("e/x", b"x"), link("e", Kind::Symlink, &out), file("e/pwned", b"x")]);
    let _ = j.apply(&tar, WhiteoutMode::Overlay);
    j.assert_outside_untouched();
}

#[test]
fn whiteouts_cannot_escape() {
    let j = Jail::new();
    for name in [".wh..", "a/.wh..", ".wh.", "../.wh.secret"] {
        let err = j.apply(&tar_of(&[file(name, b"")]), WhiteoutMode::Apply).unwrap_err();
        assert!(matches!(err, LayerError::UnsafePath(_)), "{name}: {err}");
    }
    let out = j.outside.display().to_string();
    let tar = tar_of(&[link("l", Kind::Symlink, &out), file("l/.wh.secret", b""), file("l/.wh..wh..opq", b"")]);
    j.apply(&tar, WhiteoutMode::Apply).unwrap();
    let tar = tar_of(&[link("m", Kind::Symlink, "../outside"), file("m/.wh.secret", b"")]);
    let _ = j.apply(&tar, WhiteoutMode::Apply);
    j.assert_outside_untouched();
}

#[test]
fn devices_skipped_and_overlay_xattrs_refused() {
    let j = Jail::new();
    let mut dev = Entry::new(b"dev/sda".to_vec(), Kind::BlockDev);
    dev.devmajor = 8;
    let (mut f, data) = file("f", b"x");
    f.xattrs = vec![(b"trusted.overlay.opaque".to_vec(), b"y".to_vec()), (b"user.overlay.redirect".to_vec(), b"/x".to_vec())];
    let tar = tar_of(&[(dev, b""), link("dev/hl", Kind::HardLink, "dev/sda"), (f, data)]);
    let stats = j.apply(&tar, WhiteoutMode::Overlay).unwrap();
    assert_eq!(stats.devices_skipped, 2);
    assert_eq!(stats.xattrs_skipped, 2);
    assert!(!j.target.join("dev/sda").exists());
    let fd = fs::File::open(j.target.join("f")).unwrap();
    assert!(fsutil::fd_xattrs(std::os::fd::AsFd::as_fd(&fd)).unwrap().is_empty());
}

#[test]
fn corrupt_compressed_stream_is_an_error() {
    let j = Jail::new();
    let tar = tar_of(&[file("a", b"hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let mut bytes = gz.finish().unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    assert!(j.apply(&bytes, WhiteoutMode::Overlay).is_err());
    assert!(matches!(
        apply_layer(&b"garbage that is not a tar"[..], "application/x-unknown", &j.target, &ApplyOptions::default()),
        Err(LayerError::UnsupportedMediaType(_))
    ));
}

#[test]
fn multi_block_layers_decode_with_standard_tools() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    // ~9 MiB of mixed, partly compressible data: several gzip and zstd blocks.
    let mut data = Vec::with_capacity(9 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 9 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        data.extend_from_slice(if x.is_multiple_of(3) { b"the same words again " } else { &bytes[..] });
    }
    fs::write(upper.join("big"), &data).unwrap();
    let store = ContentStore::open(&t.path().join("store")).unwrap();
    for (compression, cli) in [(Compression::Gzip { level: 1 }, "gzip"), (Compression::Zstd { level: 1 }, "zstd")] {
        let opts = CreateOptions { compression, ..Default::default() };
        let info = create_layer(&store, &upper, &opts).unwrap();
        assert_eq!(create_layer(&store, &upper, &opts).unwrap(), info, "{cli}: not deterministic");
        let out = t.path().join(format!("out-{cli}"));
        fs::create_dir(&out).unwrap();
        let stats = apply_layer(store.open_blob(&info.descriptor.digest).unwrap(), &info.descriptor.media_type, &out, &ApplyOptions::default()).unwrap();
        assert_eq!(stats.diff_id, info.diff_id);
        assert_eq!(Digest::sha256(&fs::read(out.join("big")).unwrap()), Digest::sha256(&data));
        if std::process::Command::new(cli).arg("--version").output().is_ok() {
            let o = std::process::Command::new(cli).arg("-dc").arg(store.path(&info.descriptor.digest)).output().unwrap();
            assert!(o.status.success(), "{cli} -dc failed: {}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(Digest::sha256(&o.stdout), info.diff_id, "{cli} -dc gives a different tar");
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Path pieces that combine into the interesting cases: traversal,
    /// absolute names, names shared between symlinks, dirs and files,
    /// whiteouts, and the absolute path of the directory next to the target.
    fn piece() -> impl Strategy<Value = &'static str> {
        // Names are prefixed so that an escape is told apart from files other
        // tests on this machine may leave in `/`.
        prop::sample::select(vec!["ocia", "ocib", "ocil", "..", ".", "", ".wh.ocia", ".wh..wh..opq", ".wh..", "OUT", "secret"])
    }

    fn path() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(piece(), 1..4)
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(vec![Kind::File, Kind::Dir, Kind::Symlink, Kind::HardLink, Kind::CharDev, Kind::Fifo, Kind::Other(b'V')])
    }

    fn render(p: &[&str], outside: &Path) -> String {
        let out = outside.display().to_string();
        p.iter().map(|s| if *s == "OUT" { out.as_str() } else { s }).collect::<Vec<_>>().join("/")
    }

    proptest! {
        // RBUILD_FUZZ_CASES raises the count for a longer local run.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("RBUILD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn generated_hostile_tars_never_escape(
            entries in prop::collection::vec((path(), kind(), path(), any::<bool>()), 1..12),
            apply_mode in any::<bool>(),
        ) {
            let j = Jail::new();
            let mut tw = TarWriter::new(Vec::new());
            for (p, k, target, leading_slash) in &entries {
                let mut name = render(p, &j.outside);
                if *leading_slash {
                    name.insert(0, '/');
                }
                let mut e = Entry::new(name.into_bytes(), *k);
                e.mode = 0o755;
                e.link = render(target, &j.outside).into_bytes();
                let data: &[u8] = if *k == Kind::File { b"pwned" } else { b"" };
                e.size = data.len() as u64;
                tw.append(&e, Some(&mut &data[..])).unwrap();
            }
            let tar = tw.finish().unwrap();
            let mode = if apply_mode { WhiteoutMode::Apply } else { WhiteoutMode::Overlay };
            let _ = j.apply(&tar, mode);
            j.assert_outside_untouched();
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
            let j = Jail::new();
            let _ = j.apply(&bytes, WhiteoutMode::Overlay);
            j.assert_outside_untouched();
        }
    }
}

/// Child half of `rootless_apply_in_user_namespace` (runs under `unshare -r`).
#[test]
fn child_apply_in_userns() {
    let (Ok(tar), Ok(target), Ok(report)) = (
        std::env::var("RBUILD_OCI_USERNS_TAR"),
        std::env::var("RBUILD_OCI_USERNS_TARGET"),
        std::env::var("RBUILD_OCI_USERNS_REPORT"),
    ) else {
        return;
    };
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, can_mknod: true, preserve_owners: true };
    let s = apply_layer(fs::File::open(tar).unwrap(), crate::media_types::OCI_LAYER_TAR, Path::new(&target), &opts).unwrap();
    fs::write(report, format!("{} {} {} {}", s.files, s.owners_skipped, s.devices_skipped, s.whiteouts)).unwrap();
}

#[test]
#[allow(clippy::print_stderr)] // tests print a note when they skip
fn rootless_apply_in_user_namespace() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    fs::create_dir(&target).unwrap();
    let (mut owned, data) = file("home/user/notes", b"mine");
    owned.uid = 1000;
    owned.gid = 1000;
    let (mut rootfile, data2) = file("etc/hosts", b"127.0.0.1 localhost");
    rootfile.uid = 0;
    let mut dev = Entry::new(b"dev/null".to_vec(), Kind::CharDev);
    dev.devmajor = 1;
    dev.devminor = 3;
    let tar = tar_of(&[(owned, data), (rootfile, data2), (dev, b""), file("etc/.wh.motd", b"")]);
    let tar_path = t.path().join("layer.tar");
    fs::write(&tar_path, tar).unwrap();
    let report = t.path().join("report");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(exe)
        .args(["--exact", "layer::tests::child_apply_in_userns", "--test-threads=1"])
        .env("RBUILD_OCI_USERNS_TAR", &tar_path)
        .env("RBUILD_OCI_USERNS_TARGET", &target)
        .env("RBUILD_OCI_USERNS_REPORT", &report)
        .output();
    match out {
        Ok(o) if o.status.success() && report.exists() => {}
        Ok(o) => {
            eprintln!("note: user namespaces unavailable ({}); skipping", String::from_utf8_lossy(&o.stderr).trim());
            return;
        }
        Err(e) => {
            eprintln!("note: `unshare` not available ({e}); skipping");
            return;
        }
    }
    let nums: Vec<u64> = fs::read_to_string(&report).unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
    // files, owners skipped (uid 1000 unmapped), devices skipped (EPERM), whiteouts.
    assert_eq!(nums, vec![2, 1, 1, 1]);
    assert_eq!(fs::read(target.join("home/user/notes")).unwrap(), b"mine");
    assert!(!target.join("dev/null").exists());
    use std::os::unix::fs::FileTypeExt;
    let wh = fs::symlink_metadata(target.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout must be a 0:0 char device");
}

/// GNU tar and our code agree both ways on a tree with long names, hard
/// links, symlinks, xattrs, odd modes and owners.
#[test]
#[allow(clippy::print_stderr)] // tests print a note when they skip
fn interoperates_with_gnu_tar() {
    if std::process::Command::new("tar").arg("--version").output().is_err() {
        eprintln!("note: GNU tar not installed; skipping");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_upper(&src);
    // Drop what GNU tar represents differently (whiteouts, opaque markers, sockets).
    fs::remove_file(src.join("sock")).unwrap();
    let _ = fs::remove_file(src.join("etc/gone"));
    rustix::fs::removexattr(src.join("opaque").as_path(), OPAQUE_XATTR).unwrap();
    set_mtime(&src.join("opaque"), 5_000_000);
    set_mtime(&src.join("etc"), 3_000_000);
    let want = snapshot(&src);
    let owners = is_root();
    // GNU tar → our apply.
    let gnu = t.path().join("gnu.tar");
    let st = std::process::Command::new("tar")
        .args(["--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&gnu)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let ours = t.path().join("ours");
    fs::create_dir(&ours).unwrap();
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, can_mknod: owners, preserve_owners: owners };
    apply_layer(fs::File::open(&gnu).unwrap(), crate::media_types::OCI_LAYER_TAR, &ours, &opts).unwrap();
    if owners {
        assert_eq!(snapshot(&ours), want, "our apply of a GNU tar differs from the source");
    }
    // Our tar → GNU tar extract.
    let (tar, _) = write_layer_tar(&src, Vec::new(), &TarOptions::default()).unwrap();
    let our_tar = t.path().join("ours.tar");
    fs::write(&our_tar, tar).unwrap();
    let theirs = t.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    let st = std::process::Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&our_tar)
        .arg("-C")
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(st.success());
    if owners {
        assert_eq!(snapshot(&theirs), want, "GNU tar's extract of our tar differs from the source");
    }
}

mod roundtrip_fuzz {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        File(Vec<&'static str>, u32),
        Dir(Vec<&'static str>, u32),
        Symlink(Vec<&'static str>, &'static str),
        HardLink(Vec<&'static str>, Vec<&'static str>),
        Fifo(Vec<&'static str>),
    }

    fn path() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(prop::sample::select(vec!["p", "q", "r", "long-name-that-is-rather-long-indeed-yes"]), 1..4)
    }

    fn op() -> impl Strategy<Value = Op> {
        let mode = prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755, 0o1777, 0o2750]);
        prop_oneof![
            (path(), mode.clone()).prop_map(|(p, m)| Op::File(p, m)),
            (path(), mode).prop_map(|(p, m)| Op::Dir(p, m | 0o700)),
            (path(), prop::sample::select(vec!["p", "../q", "/r", "", "x/y"])).prop_map(|(p, t)| Op::Symlink(p, t)),
            (path(), path()).prop_map(|(p, t)| Op::HardLink(p, t)),
            path().prop_map(Op::Fifo),
        ]
    }

    fn build(root: &Path, ops: &[Op]) {
        use std::os::unix::fs::PermissionsExt;
        let at = |p: &[&str]| root.join(p.join("/"));
        let parent_ok = |p: &Path| p.parent().is_some_and(|d| fs::create_dir_all(d).is_ok() && fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()));
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::File(p, m) => {
                    let f = at(p);
                    // create_new: never open an existing FIFO (or follow a symlink to one).
                    let created = parent_ok(&f)
                        && fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&f)
                            .and_then(|mut h| std::io::Write::write_all(&mut h, format!("file {i}").as_bytes()))
                            .is_ok();
                    if created {
                        let _ = fs::set_permissions(&f, fs::Permissions::from_mode(*m));
                    }
                }
                Op::Dir(p, m) => {
                    let d = at(p);
                    if parent_ok(&d) && fs::create_dir(&d).is_ok() {
                        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(*m));
                    }
                }
                Op::Symlink(p, t) => {
                    let l = at(p);
                    if parent_ok(&l) && !t.is_empty() {
                        let _ = symlink(t, &l);
                    }
                }
                Op::HardLink(p, t) => {
                    let (l, target) = (at(p), at(t));
                    if parent_ok(&l) && fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
                        let _ = fs::hard_link(&target, &l);
                    }
                }
                Op::Fifo(p) => {
                    let f = at(p);
                    if parent_ok(&f) {
                        let _ = rustix::fs::mknodat(rustix::fs::CWD, f.as_path(), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("RBUILD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random trees survive create → apply unchanged (types, modes,
        /// owners, times, contents, link targets, shared inodes).
        #[test]
        fn random_trees_round_trip(ops in prop::collection::vec(op(), 1..24)) {
            let t = tempfile::tempdir().unwrap();
            let src = t.path().join("src");
            fs::create_dir(&src).unwrap();
            build(&src, &ops);
            let want = snapshot(&src);
            let (tar, _) = write_layer_tar(&src, Vec::new(), &TarOptions::default()).unwrap();
            let out = t.path().join("out");
            fs::create_dir(&out).unwrap();
            let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, can_mknod: is_root(), preserve_owners: is_root() };
            apply_layer(&tar[..], crate::media_types::OCI_LAYER_TAR, &out, &opts).unwrap();
            prop_assert_eq!(snapshot(&out), want);
            let (again, _) = write_layer_tar(&out, Vec::new(), &TarOptions::default()).unwrap();
            prop_assert!(again == tar, "re-tarring the applied tree must give the same bytes");
        }
    }
}
