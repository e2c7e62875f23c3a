//! Unpacking a layer tar into a directory, contained.
//!
//! Every entry is placed by resolving its parent directory with
//! `openat2(RESOLVE_IN_ROOT)` (symlinks in the parent chain stay inside the
//! target, as if the target were `/`) and then creating the last component
//! with an `*at` call that never follows it. Existing entries are unlinked,
//! never written through. `..` in names, whiteouts of `.`/`..`, and
//! overlay-internal xattrs are refused.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::fsutil::{self, clean_components, join};
use super::tarfmt::{Entry, Kind, TarReader};
use super::LayerError;
use crate::digest::{Digest, DigestReader};
use crate::media_types::{self, LayerCompression};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr the agreed overlay format uses for opaque directories.
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// What to do with whiteouts (`.wh.<name>`) and opaque markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Keep them as overlayfs markers (character device 0:0, opaque xattr),
    /// for a layer directory used as an overlay lowerdir.
    #[default]
    Overlay,
    /// Delete the whited-out paths from the target, for flattening several
    /// layers into one directory (`--output type=local`).
    Apply,
}

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Whether to try creating device nodes. When false (rootless) they are
    /// skipped and counted; when true, a kernel refusal (EPERM in a user
    /// namespace) is also counted rather than fatal.
    pub can_mknod: bool,
    /// chown entries to the uid/gid in the tar. An id the process cannot
    /// use (a single-id user namespace map) is counted in
    /// [`ApplyStats::owners_skipped`] instead of failing the layer.
    pub preserve_owners: bool,
}

impl Default for ApplyOptions {
    /// Overlay whiteouts, owners preserved (rbuild runs as root in its user
    /// namespace), no device nodes.
    fn default() -> Self {
        ApplyOptions { whiteouts: WhiteoutMode::Overlay, can_mknod: false, preserve_owners: true }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts and opaque markers handled.
    pub whiteouts: u64,
    /// Device nodes skipped (`can_mknod` false, or the kernel refused).
    pub devices_skipped: u64,
    /// Entries whose owner could not be set (id not mapped in this user namespace).
    pub owners_skipped: u64,
    /// xattrs not set (overlay-internal ones refused, or unsupported here).
    pub xattrs_skipped: u64,
    /// Entries of unknown type that were skipped.
    pub other_skipped: u64,
    /// sha256 of the uncompressed tar (compare with the config's diff_id).
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Unpacks a (possibly compressed) layer into `target`. The compression is
/// taken from the magic bytes, falling back to `media_type`.
pub fn apply_layer(reader: impl Read, media_type: &str, target: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let plain = decompress(reader, media_type)?;
    let hashed = DigestReader::new(plain);
    let root = rustix::fs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::io(target.display().to_string(), "open target", e.into()))?;
    let mut ap = Applier {
        root,
        opts,
        created: HashSet::new(),
        skipped_devices: HashSet::new(),
        dirs: Vec::new(),
        stats: Counts::default(),
    };
    let mut tr = TarReader::new(hashed);
    while let Some(e) = tr.next_entry()? {
        ap.stats.entries += 1;
        ap.entry(&e, &mut tr)?;
    }
    ap.finish_dirs();
    // Drain trailing padding so the diffID covers the whole stream.
    let mut hashed = tr.into_inner();
    io::copy(&mut hashed, &mut io::sink()).map_err(LayerError::Decompress)?;
    let (_, diff_id, uncompressed_size) = hashed.finish();
    let c = ap.stats;
    Ok(ApplyStats {
        entries: c.entries,
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        hardlinks: c.hardlinks,
        whiteouts: c.whiteouts,
        devices_skipped: c.devices_skipped,
        owners_skipped: c.owners_skipped,
        xattrs_skipped: c.xattrs_skipped,
        other_skipped: c.other_skipped,
        diff_id,
        uncompressed_size,
    })
}

/// The diffID (sha256 of the uncompressed tar) and uncompressed size of a
/// layer blob, without unpacking it.
pub fn uncompressed_digest(reader: impl Read, media_type: &str) -> Result<(Digest, u64), LayerError> {
    let plain = decompress(reader, media_type)?;
    Digest::sha256_reader(plain).map_err(LayerError::Decompress)
}

/// Wraps a reader in the right decompressor (magic bytes win over the media type).
pub fn decompress<'a>(reader: impl Read + 'a, media_type: &str) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut br = BufReader::with_capacity(128 * 1024, reader);
    let head = br.fill_buf().map_err(LayerError::Decompress)?;
    let sniffed = if head.starts_with(&[0x1f, 0x8b]) {
        Some(LayerCompression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(LayerCompression::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(LayerCompression::None)
    } else {
        None
    };
    let kind = match (sniffed, media_types::layer_compression(media_type)) {
        (Some(k), _) => k,
        (None, Some(k)) => k,
        (None, None) if head.is_empty() => LayerCompression::None,
        (None, None) => return Err(LayerError::UnsupportedMediaType(media_type.to_owned())),
    };
    Ok(match kind {
        LayerCompression::None => Box::new(br),
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br).map_err(LayerError::Decompress)?),
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    entries: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    whiteouts: u64,
    devices_skipped: u64,
    owners_skipped: u64,
    xattrs_skipped: u64,
    other_skipped: u64,
}

struct Applier<'o> {
    root: OwnedFd,
    opts: &'o ApplyOptions,
    /// Paths this layer created (for opaque markers in Apply mode).
    created: HashSet<Vec<u8>>,
    /// Device paths we skipped (hard links to them are skipped too).
    skipped_devices: HashSet<Vec<u8>>,
    /// Directory metadata, applied after all entries (children change mtimes,
    /// and a read-only mode would block creating children).
    dirs: Vec<(Vec<u8>, u32, i64)>,
    stats: Counts,
}

fn ts(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn id_u32(v: u64, path: &[u8]) -> Result<u32, LayerError> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| LayerError::BadEntry { path: lossy(path), reason: format!("uid/gid {v} out of range") })
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, e: &Entry, tr: &mut TarReader<R>) -> Result<(), LayerError> {
        let comps = clean_components(&e.path).map_err(|_| LayerError::UnsafePath(lossy(&e.path)))?;
        let Some((&name, parent_comps)) = comps.split_last() else {
            return Ok(()); // the root itself: leave the target's metadata alone
        };
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(e, parent_comps, name);
        }
        let full = join(&comps);
        let io = |op: &'static str| {
            let p = lossy(&e.path);
            move |err: Errno| LayerError::io(p, op, err.into())
        };
        let parent = fsutil::resolve_dir(self.root.as_fd(), parent_comps, true)
            .map_err(|err| LayerError::io(lossy(&e.path), "resolve parent", err))?
            .ok_or_else(|| LayerError::UnsafePath(lossy(&e.path)))?;
        let existing = fsutil::lstat_at(parent.as_fd(), name).map_err(|err| LayerError::io(lossy(&e.path), "lstat", err))?;
        if e.kind == Kind::Dir {
            match existing {
                Some(st) if fsutil::is_dir(&st) => {}
                Some(_) => {
                    rustix::fs::unlinkat(&parent, name, AtFlags::empty()).map_err(io("unlink"))?;
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)).map_err(io("mkdir"))?;
                }
                None => rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)).map_err(io("mkdir"))?,
            }
            let fd = rustix::fs::openat(&parent, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(io("open dir"))?;
            self.chown_fd(fd.as_fd(), e)?;
            self.set_xattrs(fd.as_fd(), e)?;
            self.dirs.push((full.clone(), e.mode, e.mtime));
            self.stats.dirs += 1;
            self.mark_created(&comps);
            return Ok(());
        }
        if e.kind == Kind::HardLink {
            return self.hardlink(e, &comps, parent.as_fd(), name);
        }
        if matches!(e.kind, Kind::CharDev | Kind::BlockDev) && !self.opts.can_mknod {
            self.stats.devices_skipped += 1;
            self.skipped_devices.insert(full);
            return Ok(());
        }
        if let Kind::Other(flag) = e.kind {
            tracing::debug!(path = %lossy(&e.path), flag, "skipping tar entry of unknown type");
            self.stats.other_skipped += 1;
            return Ok(());
        }
        if let Some(st) = existing {
            self.remove_existing(parent.as_fd(), name, &st, &e.path)?;
        }
        match e.kind {
            Kind::File => {
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io("create file"))?;
                let mut f = File::from(fd);
                io::copy(&mut tr.data(), &mut f).map_err(|err| LayerError::io(lossy(&e.path), "write file", err))?;
                self.chown_fd(f.as_fd(), e)?;
                rustix::fs::fchmod(&f, Mode::from_raw_mode(e.mode)).map_err(io("chmod"))?;
                self.set_xattrs(f.as_fd(), e)?;
                rustix::fs::futimens(&f, &ts(e.mtime)).map_err(io("set times"))?;
                self.stats.files += 1;
            }
            Kind::Symlink => {
                if e.link.is_empty() {
                    return Err(LayerError::BadEntry { path: lossy(&e.path), reason: "empty symlink target".into() });
                }
                rustix::fs::symlinkat(&e.link[..], &parent, name).map_err(io("symlink"))?;
                self.finish_special(parent.as_fd(), name, e, false)?;
                self.stats.symlinks += 1;
            }
            Kind::CharDev | Kind::BlockDev | Kind::Fifo => {
                let ft = match e.kind {
                    Kind::CharDev => FileType::CharacterDevice,
                    Kind::BlockDev => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(e.devmajor, e.devminor);
                match rustix::fs::mknodat(&parent, name, ft, Mode::from_raw_mode(e.mode), dev) {
                    Ok(()) => {}
                    Err(Errno::PERM) if ft != FileType::Fifo => {
                        self.stats.devices_skipped += 1;
                        self.skipped_devices.insert(full);
                        return Ok(());
                    }
                    Err(err) => return Err(io("mknod")(err)),
                }
                self.finish_special(parent.as_fd(), name, e, true)?;
            }
            Kind::Dir | Kind::HardLink | Kind::Other(_) => {}
        }
        self.mark_created(&comps);
        Ok(())
    }

    fn mark_created(&mut self, comps: &[&[u8]]) {
        if self.opts.whiteouts == WhiteoutMode::Apply {
            for i in 1..=comps.len() {
                self.created.insert(join(&comps[..i]));
            }
        }
    }

    fn remove_existing(&self, parent: BorrowedFd<'_>, name: &[u8], st: &rustix::fs::Stat, path: &[u8]) -> Result<(), LayerError> {
        let res = if fsutil::is_dir(st) {
            fsutil::remove_all_at(parent, name)
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(io::Error::from)
        };
        res.map_err(|err| LayerError::io(lossy(path), "remove existing", err))
    }

    /// Owner, mode and times for entries that must not be opened (symlinks,
    /// devices, fifos): `*at` calls on the parent that do not follow `name`.
    fn finish_special(&mut self, parent: BorrowedFd<'_>, name: &[u8], e: &Entry, chmod: bool) -> Result<(), LayerError> {
        let io = |op: &'static str| {
            let p = lossy(&e.path);
            move |err: Errno| LayerError::io(p, op, err.into())
        };
        if self.opts.preserve_owners {
            let (u, g) = (id_u32(e.uid, &e.path)?, id_u32(e.gid, &e.path)?);
            let res = rustix::fs::chownat(parent, name, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)), AtFlags::SYMLINK_NOFOLLOW);
            self.chown_result(res, e)?;
        }
        if chmod {
            // The node was just created by us and is not a symlink; fchmodat
            // has no NOFOLLOW on older kernels, so check the type first.
            let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io("lstat"))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                rustix::fs::chmodat(parent, name, Mode::from_raw_mode(e.mode), AtFlags::empty()).map_err(io("chmod"))?;
            }
        }
        if !e.xattrs.is_empty() {
            self.stats.xattrs_skipped += e.xattrs.len() as u64;
        }
        rustix::fs::utimensat(parent, name, &ts(e.mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(io("set times"))?;
        Ok(())
    }

    fn chown_fd(&mut self, fd: BorrowedFd<'_>, e: &Entry) -> Result<(), LayerError> {
        if !self.opts.preserve_owners {
            return Ok(());
        }
        let (u, g) = (id_u32(e.uid, &e.path)?, id_u32(e.gid, &e.path)?);
        let res = rustix::fs::fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)));
        self.chown_result(res, e)
    }

    /// EINVAL (id not mapped in our user namespace) and EPERM are counted,
    /// not fatal: a single-id rootless setup can still build, with a warning
    /// from the caller.
    fn chown_result(&mut self, res: rustix::io::Result<()>, e: &Entry) -> Result<(), LayerError> {
        match res {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::PERM) => {
                tracing::debug!(path = %lossy(&e.path), uid = e.uid, gid = e.gid, "cannot set owner; skipped");
                self.stats.owners_skipped += 1;
                Ok(())
            }
            Err(err) => Err(LayerError::io(lossy(&e.path), "chown", err.into())),
        }
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, e: &Entry) -> Result<(), LayerError> {
        for (k, v) in &e.xattrs {
            if fsutil::is_overlay_xattr(k) {
                tracing::debug!(path = %lossy(&e.path), "refusing overlay xattr from layer tar");
                self.stats.xattrs_skipped += 1;
                continue;
            }
            match rustix::fs::fsetxattr(fd, &k[..], v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
                    tracing::debug!(path = %lossy(&e.path), xattr = %lossy(k), "xattr not supported here; skipped");
                    self.stats.xattrs_skipped += 1;
                }
                Err(err) => return Err(LayerError::io(lossy(&e.path), "set xattr", err.into())),
            }
        }
        Ok(())
    }

    fn hardlink(&mut self, e: &Entry, comps: &[&[u8]], parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), LayerError> {
        let target = clean_components(&e.link).map_err(|_| LayerError::UnsafePath(lossy(&e.link)))?;
        let Some((&tname, tparent_comps)) = target.split_last() else {
            return Err(LayerError::BadEntry { path: lossy(&e.path), reason: "hard link to the root".into() });
        };
        let tfull = join(&target);
        if self.skipped_devices.contains(&tfull) {
            self.stats.devices_skipped += 1;
            return Ok(());
        }
        if target == comps {
            return Ok(());
        }
        let tparent = fsutil::resolve_dir(self.root.as_fd(), tparent_comps, false)
            .map_err(|err| LayerError::io(lossy(&e.link), "resolve link target", err))?
            .ok_or_else(|| LayerError::BadEntry { path: lossy(&e.path), reason: format!("hard link target `{}` does not exist", lossy(&e.link)) })?;
        match fsutil::lstat_at(tparent.as_fd(), tname).map_err(|err| LayerError::io(lossy(&e.link), "lstat", err))? {
            Some(st) if fsutil::is_dir(&st) => {
                return Err(LayerError::BadEntry { path: lossy(&e.path), reason: "hard link to a directory".into() });
            }
            Some(_) => {}
            None => {
                return Err(LayerError::BadEntry {
                    path: lossy(&e.path),
                    reason: format!("hard link target `{}` does not exist", lossy(&e.link)),
                });
            }
        }
        if let Some(st) = fsutil::lstat_at(parent, name).map_err(|err| LayerError::io(lossy(&e.path), "lstat", err))? {
            self.remove_existing(parent, name, &st, &e.path)?;
        }
        // Flags 0: a link to a symlink links the symlink itself, never its target.
        rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
            .map_err(|err| LayerError::io(lossy(&e.path), "link", err.into()))?;
        self.stats.hardlinks += 1;
        self.mark_created(comps);
        Ok(())
    }

    fn whiteout(&mut self, e: &Entry, parent_comps: &[&[u8]], name: &[u8]) -> Result<(), LayerError> {
        let io = |op: &'static str| {
            let p = lossy(&e.path);
            move |err: io::Error| LayerError::io(p, op, err)
        };
        if name == OPAQUE_MARKER {
            self.stats.whiteouts += 1;
            match self.opts.whiteouts {
                WhiteoutMode::Overlay => {
                    let dir = fsutil::resolve_dir(self.root.as_fd(), parent_comps, true).map_err(io("resolve parent"))?;
                    if let Some(dir) = dir {
                        rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                            .map_err(|err| io("set opaque xattr")(err.into()))?;
                    }
                }
                WhiteoutMode::Apply => {
                    let Some(dir) = fsutil::resolve_dir(self.root.as_fd(), parent_comps, false).map_err(io("resolve parent"))? else {
                        return Ok(());
                    };
                    let prefix = join(parent_comps);
                    for child in fsutil::list_sorted(dir.as_fd()).map_err(io("list"))? {
                        let mut p = prefix.clone();
                        if !p.is_empty() {
                            p.push(b'/');
                        }
                        p.extend_from_slice(&child);
                        if !self.created.contains(&p) {
                            fsutil::remove_all_at(dir.as_fd(), &child).map_err(io("remove for opaque dir"))?;
                        }
                    }
                }
            }
            return Ok(());
        }
        let victim = &name[WHITEOUT_PREFIX.len()..];
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(LayerError::UnsafePath(lossy(&e.path)));
        }
        if victim.starts_with(WHITEOUT_PREFIX) {
            // aufs metadata (.wh..wh.plnk etc.): meaningless here.
            self.stats.other_skipped += 1;
            return Ok(());
        }
        self.stats.whiteouts += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let Some(dir) = fsutil::resolve_dir(self.root.as_fd(), parent_comps, true).map_err(io("resolve parent"))? else {
                    return Ok(());
                };
                fsutil::remove_all_at(dir.as_fd(), victim).map_err(io("remove for whiteout"))?;
                rustix::fs::mknodat(&dir, victim, FileType::CharacterDevice, Mode::empty(), rustix::fs::makedev(0, 0))
                    .map_err(|err| io("create whiteout device")(err.into()))?;
                // The whiteout keeps the entry's time, so re-creating the
                // layer from this directory gives the same bytes.
                rustix::fs::utimensat(&dir, victim, &ts(e.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| io("set times")(err.into()))?;
            }
            WhiteoutMode::Apply => {
                if let Some(dir) = fsutil::resolve_dir(self.root.as_fd(), parent_comps, false).map_err(io("resolve parent"))? {
                    fsutil::remove_all_at(dir.as_fd(), victim).map_err(io("remove for whiteout"))?;
                }
            }
        }
        Ok(())
    }

    /// Sets directory modes and times last, deepest first. A directory that
    /// was replaced later in the archive (by a symlink, say) is skipped: the
    /// final component is opened with `O_NOFOLLOW`.
    fn finish_dirs(&mut self) {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode, mtime) in dirs {
            let Ok(fd) = fsutil::open_dir_nofollow(self.root.as_fd(), &path) else { continue };
            let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode));
            let _ = rustix::fs::futimens(&fd, &ts(mtime));
        }
    }
}
