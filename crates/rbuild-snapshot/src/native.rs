//! The copy-based fallback where overlayfs cannot be mounted.
//!
//! Like containerd's `native` snapshotter, each snapshot's `fs` holds the
//! full tree: preparing on a parent copies the parent's tree (owners,
//! modes, times, xattrs, hardlinks, devices, symlinks), and the RUN works on
//! it as a plain directory. Committing computes the layer diff by comparing
//! the tree with its parent and writes it to `diff/` in the *same format as
//! an overlay upper dir* (deletions as 0:0 character-device whiteouts), so
//! the layer exporter does not need to know which backend made it.
//!
//! Unchanged files are recognised by metadata (type, mode, owner, size,
//! mtime, symlink target, device, xattrs); contents are compared only when
//! the filesystem has coarse timestamps (zero nanoseconds).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};

fn errno(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// Xattrs worth keeping: everything but overlayfs' private ones.
fn xattrs(path: &Path) -> Vec<(OsString, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.windows(9).any(|w| w == b".overlay.") {
            continue;
        }
        let name = OsString::from(std::ffi::OsStr::from_bytes(name));
        let mut val = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_os_str(), &mut val) {
            val.truncate(len);
            out.push((name, val));
        }
    }
    out.sort();
    out
}

/// Copies metadata (owner, mode, xattrs, times) from `m`/`src` onto `dst`.
fn apply_meta(src: &Path, dst: &Path, m: &fs::Metadata) -> std::io::Result<()> {
    let ft = m.file_type();
    rustix::fs::chownat(
        rustix::fs::CWD,
        dst,
        Some(rustix::process::Uid::from_raw(m.uid())),
        Some(rustix::process::Gid::from_raw(m.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(errno)?;
    if !ft.is_symlink() {
        rustix::fs::chmodat(
            rustix::fs::CWD,
            dst,
            Mode::from_raw_mode(m.mode() & 0o7777),
            AtFlags::empty(),
        )
        .map_err(errno)?;
    }
    for (name, val) in xattrs(src) {
        let _ = rustix::fs::lsetxattr(dst, name.as_os_str(), &val, rustix::fs::XattrFlags::empty());
    }
    set_times(dst, m)
}

fn set_times(dst: &Path, m: &fs::Metadata) -> std::io::Result<()> {
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
}

/// Creates one non-directory entry at `dst` like `src`; hardlinks within one
/// copy are preserved through `links` (inode → first copied path).
fn copy_entry(
    src: &Path,
    dst: &Path,
    m: &fs::Metadata,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> std::io::Result<()> {
    let ft = m.file_type();
    if m.nlink() > 1 && !ft.is_dir() {
        if let Some(first) = links.get(&(m.dev(), m.ino())) {
            return fs::hard_link(first, dst);
        }
        links.insert((m.dev(), m.ino()), dst.to_path_buf());
    }
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if ft.is_file() {
        fs::copy(src, dst)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
        let kind = rustix::fs::FileType::from_raw_mode(m.mode());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dst,
            kind,
            Mode::from_raw_mode(m.mode() & 0o7777),
            m.rdev(),
        )
        .map_err(errno)?;
    } else {
        return Ok(());
    }
    apply_meta(src, dst, m)
}

/// Copies the tree `src` into the existing empty directory `dst`, keeping
/// all metadata. Symlinks are copied, never followed.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let m = fs::symlink_metadata(src)?;
    apply_meta(src, dst, &m)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let m = fs::symlink_metadata(&s)?;
        if m.is_dir() {
            fs::create_dir(&d)?;
            copy_dir(&s, &d, links)?;
            apply_meta(&s, &d, &m)?;
        } else {
            copy_entry(&s, &d, &m, links)?;
        }
    }
    Ok(())
}

fn same_meta(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() == b.file_type()
        && a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && (a.is_dir()
            || (a.size() == b.size() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()))
        && a.rdev() == b.rdev()
}

fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = fa.read(&mut ba)?;
        let mut filled = 0;
        while filled < na {
            let n = fb.read(&mut bb[filled..na])?;
            if n == 0 {
                return Ok(false);
            }
            filled += n;
        }
        if na == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
}

fn unchanged(
    parent: &Path,
    child: &Path,
    pm: &fs::Metadata,
    cm: &fs::Metadata,
) -> std::io::Result<bool> {
    if !same_meta(pm, cm) || xattrs(parent) != xattrs(child) {
        return Ok(false);
    }
    let ft = cm.file_type();
    if ft.is_symlink() {
        return Ok(fs::read_link(parent)? == fs::read_link(child)?);
    }
    if ft.is_file() && cm.mtime_nsec() == 0 {
        return same_content(parent, child);
    }
    Ok(true)
}

/// Writes the changes from `parent` to `child` (both full trees) into the
/// empty directory `out`, in overlay upper-dir format.
pub fn diff_trees(parent: &Path, child: &Path, out: &Path) -> std::io::Result<()> {
    let mut links = HashMap::new();
    diff_dir(parent, child, out, &mut links)?;
    Ok(())
}

/// Returns whether anything was written below `out` for this directory.
fn diff_dir(
    parent: &Path,
    child: &Path,
    out: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> std::io::Result<bool> {
    let mut changed = false;
    let mut seen = std::collections::HashSet::new();
    for entry in fs::read_dir(child)? {
        let entry = entry?;
        let name = entry.file_name();
        seen.insert(name.clone());
        let (p, c, o) = (parent.join(&name), child.join(&name), out.join(&name));
        let cm = fs::symlink_metadata(&c)?;
        let pm = fs::symlink_metadata(&p).ok();
        if cm.is_dir() {
            fs::create_dir(&o)?;
            let both_dirs = pm.as_ref().is_some_and(fs::Metadata::is_dir);
            let inner = if both_dirs {
                diff_dir(&p, &c, &o, links)?
            } else {
                copy_dir(&c, &o, links)?;
                true
            };
            let same = both_dirs
                && pm.as_ref().is_some_and(|pm| same_meta(pm, &cm))
                && xattrs(&p) == xattrs(&c);
            if inner || !same {
                apply_meta(&c, &o, &cm)?;
                changed = true;
            } else {
                fs::remove_dir(&o)?;
            }
        } else {
            let keep = match &pm {
                Some(pm) => unchanged(&p, &c, pm, &cm)?,
                None => false,
            };
            if !keep {
                copy_entry(&c, &o, &cm, links)?;
                changed = true;
            }
        }
    }
    if let Ok(rd) = fs::read_dir(parent) {
        for entry in rd {
            let name = entry?.file_name();
            if !seen.contains(&name) {
                whiteout(&out.join(&name))?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// An overlay whiteout: a 0:0 character device with the deleted name.
pub fn whiteout(path: &Path) -> std::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .map_err(errno)
}
