//! Turning an overlay upperdir into a deterministic layer tar.
//!
//! The walk is fd-relative and iterative (a hostile RUN step can leave a
//! very deep tree), entries are sorted bytewise, and everything that depends
//! on the machine rather than the content is left out: user names, atimes,
//! sub-second times, overlay xattrs, SELinux labels, sockets.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::fsutil;
use super::tarfmt::{Entry, Kind, TarWriter};
use super::LayerError;

/// Options for writing a layer tar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// `SOURCE_DATE_EPOCH`: mtimes newer than this are clamped to it (the
    /// BuildKit `rewrite-timestamp` behaviour), so rebuilding the same
    /// sources later gives the same layer.
    pub source_date_epoch: Option<i64>,
}

/// Statistics of a written tar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries written (including whiteouts and opaque markers).
    pub entries: u64,
    /// Sockets (and other unrepresentable files) left out.
    pub skipped: u64,
}

struct Frame {
    fd: OwnedFd,
    prefix: Vec<u8>,
    children: Vec<Vec<u8>>,
    next: usize,
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn keep_xattr(name: &[u8]) -> bool {
    !fsutil::is_overlay_xattr(name) && name != b"security.selinux"
}

fn is_opaque(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    xattrs.iter().any(|(k, v)| (k == b"user.overlay.opaque" || k == b"trusted.overlay.opaque") && v == b"y")
}

/// Writes the tar of an overlay upperdir `dir` to `out`: whiteouts (char
/// device 0:0) become `.wh.<name>`, opaque directories get
/// `<dir>/.wh..wh..opq`, hard links within the layer become link entries.
pub fn write_layer_tar<W: Write>(dir: &Path, out: W, opts: &TarOptions) -> Result<(W, TarStats), LayerError> {
    let root = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::io(dir.display().to_string(), "open layer dir", e.into()))?;
    let children = fsutil::list_sorted(root.as_fd()).map_err(|e| LayerError::io(dir.display().to_string(), "list", e))?;
    let mut tw = TarWriter::new(out);
    let mut stats = TarStats::default();
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let clamp = |t: i64| match opts.source_date_epoch {
        Some(e) if t > e => e,
        _ => t,
    };
    let mut stack = vec![Frame { fd: root, prefix: Vec::new(), children, next: 0 }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.children.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let mut path = frame.prefix.clone();
        path.extend_from_slice(&name);
        let io = |op: &'static str| {
            let p = lossy(&path);
            move |e: std::io::Error| LayerError::io(p, op, e)
        };
        let st = match rustix::fs::statat(&frame.fd, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => return Err(io("lstat")(e.into())),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut e = Entry::new(path.clone(), Kind::File);
        e.mode = st.st_mode & 0o7777;
        e.uid = u64::from(st.st_uid);
        e.gid = u64::from(st.st_gid);
        e.mtime = clamp(st.st_mtime);
        let rdev = st.st_rdev;
        if ft == FileType::CharacterDevice && rdev == 0 {
            // Whiteout. Not subject to hard-link tracking: overlayfs may share
            // one whiteout inode between many deleted names.
            let mut wpath = frame.prefix.clone();
            wpath.extend_from_slice(b".wh.");
            wpath.extend_from_slice(&name);
            let mut w = Entry::new(wpath, Kind::File);
            w.mode = 0;
            w.mtime = e.mtime;
            tw.append(&w, None).map_err(io("write tar"))?;
            stats.entries += 1;
            continue;
        }
        if ft != FileType::Directory && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = links.get(&key) {
                e.kind = Kind::HardLink;
                e.link = first.clone();
                e.mode = st.st_mode & 0o7777;
                tw.append(&e, None).map_err(io("write tar"))?;
                stats.entries += 1;
                continue;
            }
            links.insert(key, path.clone());
        }
        match ft {
            FileType::Directory => {
                let fd = rustix::fs::openat(
                    &frame.fd,
                    &name[..],
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io("open dir")(e.into()))?;
                let xattrs = fsutil::fd_xattrs(fd.as_fd()).map_err(io("read xattrs"))?;
                let opaque = is_opaque(&xattrs);
                e.kind = Kind::Dir;
                e.xattrs = xattrs.into_iter().filter(|(k, _)| keep_xattr(k)).collect();
                e.path.push(b'/');
                tw.append(&e, None).map_err(io("write tar"))?;
                stats.entries += 1;
                let prefix = e.path.clone();
                if opaque {
                    let mut m = Entry::new([&prefix[..], b".wh..wh..opq"].concat(), Kind::File);
                    m.mode = 0;
                    m.mtime = e.mtime;
                    tw.append(&m, None).map_err(io("write tar"))?;
                    stats.entries += 1;
                }
                let children = fsutil::list_sorted(fd.as_fd()).map_err(io("list"))?;
                stack.push(Frame { fd, prefix, children, next: 0 });
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(&frame.fd, &name[..], OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io("open file")(e.into()))?;
                e.xattrs = fsutil::fd_xattrs(fd.as_fd()).map_err(io("read xattrs"))?.into_iter().filter(|(k, _)| keep_xattr(k)).collect();
                e.size = u64::try_from(st.st_size).unwrap_or(0);
                let mut f = File::from(fd);
                tw.append(&e, Some(&mut f)).map_err(io("write tar"))?;
                stats.entries += 1;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&frame.fd, &name[..], Vec::new()).map_err(|e| io("readlink")(e.into()))?;
                e.kind = Kind::Symlink;
                e.link = target.into_bytes();
                tw.append(&e, None).map_err(io("write tar"))?;
                stats.entries += 1;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                e.kind = match ft {
                    FileType::CharacterDevice => Kind::CharDev,
                    FileType::BlockDevice => Kind::BlockDev,
                    _ => Kind::Fifo,
                };
                if e.kind != Kind::Fifo {
                    e.devmajor = rustix::fs::major(rdev);
                    e.devminor = rustix::fs::minor(rdev);
                }
                tw.append(&e, None).map_err(io("write tar"))?;
                stats.entries += 1;
            }
            _ => {
                tracing::debug!(path = %lossy(&path), "skipping socket or unknown file type in layer");
                stats.skipped += 1;
            }
        }
    }
    let out = tw.finish().map_err(|e| LayerError::io(dir.display().to_string(), "finish tar", e))?;
    Ok((out, stats))
}
