//! `ADD` of a local tar archive: detected by content (plain, gzip, xz or
//! zstd compressed), extracted into the destination directory.
//!
//! The `tar` crate only parses headers here; every entry is created by our
//! own fd-relative code, with the destination directory as the root: names
//! are cleaned (`..` and `/` cannot leave it), entries *through* symlinks
//! made by earlier entries resolve inside it, hard links must point inside
//! it, and a file replaces only non-directories. Whiteout names get no
//! special meaning (this is an archive, not a layer).

use std::ffi::{OsStr, OsString};
use std::io::{self, BufReader, Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};

use crate::copy::{CopyError, CopyStats, io_err};
use crate::meta::is_private_xattr;
use crate::root::{Root, join, open_subdir, split};

/// Compression of an archive, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

fn decompress<'a>(file: &'a mut std::fs::File, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(BufReader::new(file)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(BufReader::new(
            file,
        ))),
        Compression::Bzip2 => return Err(io::Error::other("unsupported compression")),
    })
}

/// Does a 512-byte block look like a tar header (valid checksum)?
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want
}

/// If the open regular file is a (possibly compressed) tar archive, return
/// its compression. bzip2 archives are reported as errors rather than
/// silently copied as files.
pub(crate) fn detect(
    file: &mut std::fs::File,
    shown: &str,
) -> Result<Option<Compression>, CopyError> {
    let mut head = [0u8; 6];
    let n = read_up_to(file, &mut head).map_err(io_err("read", shown))?;
    file.rewind().map_err(io_err("read", shown))?;
    let c = sniff(&head[..n]);
    if c == Compression::Bzip2 {
        return Err(CopyError::UnsupportedArchive {
            path: shown.to_string(),
            compression: format!("{c:?}").to_lowercase(),
        });
    }
    let mut block = [0u8; 512];
    let ok = match decompress(file, c) {
        Ok(mut r) => read_up_to(&mut r, &mut block)
            .map(|n| n == 512 && is_tar_header(&block))
            .unwrap_or(false),
        Err(_) => false,
    };
    file.rewind().map_err(io_err("read", shown))?;
    Ok(ok.then_some(c))
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Extract `file` into the directory `dest` (an fd). `chown` overrides the
/// owners recorded in the archive.
pub(crate) fn extract(
    file: &mut std::fs::File,
    c: Compression,
    dest: OwnedFd,
    chown: Option<(u32, u32)>,
    shown: &str,
) -> Result<CopyStats, CopyError> {
    let reader = decompress(file, c).map_err(io_err("decompress", shown))?;
    let mut ar = tar::Archive::new(reader);
    let mut x = Extractor {
        root: Root::from_fd(dest, shown),
        chown,
        stats: CopyStats::default(),
        dir_times: Vec::new(),
    };
    for entry in ar.entries().map_err(io_err("read archive", shown))? {
        let mut entry = entry.map_err(io_err("read archive", shown))?;
        x.entry(&mut entry)?;
    }
    // Directory times last: creating their children changed them.
    for (comps, ts) in x.dir_times.iter().rev() {
        if let Ok(fd) = x
            .root
            .open_canonical(comps, OFlags::RDONLY | OFlags::DIRECTORY)
        {
            let _ = rustix::fs::futimens(&fd, ts);
        }
    }
    Ok(x.stats)
}

/// Extraction state: the destination as a root, and what to finish last.
struct Extractor {
    root: Root,
    chown: Option<(u32, u32)>,
    stats: CopyStats,
    dir_times: Vec<(Vec<OsString>, Timestamps)>,
}

/// What every entry kind needs: where it goes and its metadata.
struct Place<'a> {
    pfd: OwnedFd,
    parent: Vec<OsString>,
    name: &'a OsStr,
    shown: String,
    mode: u32,
    owner: (Option<Uid>, Option<Gid>),
    ts: Timestamps,
}

/// Clean an archive path relative to the destination; `..` that would climb
/// out of it is an error.
fn clean_strict(name: &[u8]) -> Result<Vec<OsString>, CopyError> {
    let mut out: Vec<OsString> = Vec::new();
    for c in split(OsStr::from_bytes(name)) {
        if c == ".." {
            if out.pop().is_none() {
                return Err(CopyError::ArchiveEscape {
                    path: String::from_utf8_lossy(name).into_owned(),
                });
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn errno_at(op: &'static str, shown: &str) -> impl FnOnce(rustix::io::Errno) -> CopyError + use<> {
    let f = io_err(op, shown.to_string());
    move |e| f(e.into())
}

impl Extractor {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), CopyError> {
        let name = entry.path_bytes().into_owned();
        // Like BuildKit: a name that climbs out of the destination is an
        // error, not something to clamp.
        let comps = clean_strict(&name)?;
        let Some((last, parent)) = comps.split_last() else {
            return Ok(()); // `.` or `/`: the destination itself
        };
        let shown = join(&comps).to_string_lossy().into_owned();
        let hdr = entry.header().clone();
        let (parent_canon, _) = self
            .root
            .canonicalize_strict(join(parent).as_os_str(), true)
            .map_err(io_err("resolve", &shown))?;
        let pfd = self
            .root
            .mkdir_all(&parent_canon, 0o755, &mut |_, _, _| Ok(()))
            .map_err(io_err("create directory", &shown))?;
        let uid = self
            .chown
            .map_or_else(|| hdr.uid().unwrap_or(0) as u32, |c| c.0);
        let gid = self
            .chown
            .map_or_else(|| hdr.gid().unwrap_or(0) as u32, |c| c.1);
        let mtime = Timespec {
            tv_sec: hdr.mtime().unwrap_or(0) as i64,
            tv_nsec: 0,
        };
        let place = Place {
            pfd,
            parent: parent_canon,
            name: last,
            shown,
            mode: hdr.mode().unwrap_or(0o644) & 0o7777,
            owner: (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))),
            ts: Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
        };
        let kind = hdr.entry_type();
        let existing = rustix::fs::statat(&place.pfd, last, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if kind.is_dir() {
            return self.dir(&place, existing.is_some(), existing_is_dir);
        }
        // Whatever is in the way of a non-directory goes, a directory tree
        // included (BuildKit removes it too); only inside the destination.
        if existing.is_some() {
            crate::ops::remove_all(&place.pfd, last).map_err(io_err("remove", &place.shown))?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let xattrs = pax_xattrs(entry);
                self.file(&place, entry, &xattrs)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.symlink(&place, &target)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.hardlink(&place, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    hdr.device_major().ok().flatten().unwrap_or(0),
                    hdr.device_minor().ok().flatten().unwrap_or(0),
                );
                self.node(&place, ft, dev)
            }
            other => Err(CopyError::UnsupportedEntry {
                path: place.shown.clone(),
                kind: format!("{other:?}"),
            }),
        }
    }

    fn dir(&mut self, p: &Place<'_>, exists: bool, is_dir: bool) -> Result<(), CopyError> {
        if exists && !is_dir {
            rustix::fs::unlinkat(&p.pfd, p.name, AtFlags::empty())
                .map_err(errno_at("remove", &p.shown))?;
        }
        if !is_dir {
            rustix::fs::mkdirat(&p.pfd, p.name, Mode::from_raw_mode(0o700))
                .map_err(errno_at("create directory", &p.shown))?;
            self.stats.dirs += 1;
        }
        let dfd = open_subdir(&p.pfd, p.name).map_err(errno_at("open directory", &p.shown))?;
        rustix::fs::fchown(&dfd, p.owner.0, p.owner.1).map_err(errno_at("chown", &p.shown))?;
        rustix::fs::fchmod(&dfd, Mode::from_raw_mode(p.mode))
            .map_err(errno_at("chmod", &p.shown))?;
        let mut here = p.parent.clone();
        here.push(p.name.to_os_string());
        self.dir_times.push((here, p.ts.clone()));
        Ok(())
    }

    fn file(
        &mut self,
        p: &Place<'_>,
        data: &mut dyn Read,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), CopyError> {
        let fd = rustix::fs::openat(
            &p.pfd,
            p.name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(errno_at("create", &p.shown))?;
        let mut f = std::fs::File::from(fd);
        self.stats.bytes += io::copy(data, &mut f).map_err(io_err("write", &p.shown))?;
        rustix::fs::fchown(&f, p.owner.0, p.owner.1).map_err(errno_at("chown", &p.shown))?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(p.mode)).map_err(errno_at("chmod", &p.shown))?;
        // After chown, which would drop `security.capability`.
        for (k, v) in xattrs {
            if let Err(e) = rustix::fs::fsetxattr(
                f.as_fd(),
                OsStr::from_bytes(k),
                v,
                rustix::fs::XattrFlags::empty(),
            ) {
                tracing::debug!(path = %p.shown, error = %e, "xattr not set");
            }
        }
        rustix::fs::futimens(&f, &p.ts).map_err(errno_at("set times", &p.shown))?;
        self.stats.files += 1;
        Ok(())
    }

    fn symlink(&mut self, p: &Place<'_>, target: &[u8]) -> Result<(), CopyError> {
        rustix::fs::symlinkat(OsStr::from_bytes(target), &p.pfd, p.name)
            .map_err(errno_at("create symlink", &p.shown))?;
        rustix::fs::chownat(
            &p.pfd,
            p.name,
            p.owner.0,
            p.owner.1,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_at("chown", &p.shown))?;
        rustix::fs::utimensat(&p.pfd, p.name, &p.ts, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno_at("set times", &p.shown))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// A hard link's target is a path inside the extraction root; its last
    /// component is not followed (linking a symlink links the symlink).
    fn hardlink(&mut self, p: &Place<'_>, target: &[u8]) -> Result<(), CopyError> {
        let tcomps = clean_strict(target)?;
        let Some((tlast, tparent)) = tcomps.split_last() else {
            return Err(CopyError::NotFound {
                path: String::from_utf8_lossy(target).into_owned(),
            });
        };
        let (tp, _) = self
            .root
            .canonicalize_strict(join(tparent).as_os_str(), true)
            .map_err(io_err("resolve", &p.shown))?;
        let tfd = self
            .root
            .open_dir(&tp)
            .map_err(io_err("open directory", &p.shown))?;
        rustix::fs::linkat(&tfd, tlast, &p.pfd, p.name, AtFlags::empty())
            .map_err(errno_at("create hard link", &p.shown))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Devices need privilege; without it they are skipped, as containerd does.
    fn node(&mut self, p: &Place<'_>, ft: FileType, dev: rustix::fs::Dev) -> Result<(), CopyError> {
        match rustix::fs::mknodat(&p.pfd, p.name, ft, Mode::from_raw_mode(p.mode), dev) {
            Ok(()) => {
                rustix::fs::chownat(
                    &p.pfd,
                    p.name,
                    p.owner.0,
                    p.owner.1,
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno_at("chown", &p.shown))?;
                self.stats.special += 1;
            }
            Err(rustix::io::Errno::PERM) => {
                tracing::debug!(path = %p.shown, "device node skipped: not permitted")
            }
            Err(e) => return Err(errno_at("create node", &p.shown)(e)),
        }
        Ok(())
    }
}

/// `SCHILY.xattr.*` records of an entry, minus overlay-private ones.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")
                && !is_private_xattr(name)
            {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    out
}
