//! Copying one entry, and whole directories, between open directory fds.
//!
//! This is the per-file loop of a large `COPY`, so its system calls are
//! counted. For each regular file inside a copied directory it makes:
//! `openat` + `fstat` of the source (the directory entry's type already
//! says "regular file", so there is no separate `lstat`; the `fstat` of
//! the open fd is the one that must be trusted anyway), one `openat` with
//! `O_CREAT | O_EXCL` for the destination (what is in the way is looked at
//! only when that fails with `EEXIST`: a fresh snapshot has nothing there),
//! the content copy, `fchmod` + `utimensat` (+ `fchown` when the kernel did
//! not already give the file its wanted owner), `flistxattr`, two `close`s.
//!
//! Containment does not depend on any of the skipped calls: sources and
//! destinations are opened relative to directory fds with `O_NOFOLLOW`,
//! never through a path, and `O_EXCL` never follows a symlink in the way.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{CopyError, Ctx, errno, io_err, is_dir};
use crate::root::{join, open_subdir};

/// A destination directory being filled.
pub(super) struct DestDir<'f> {
    pub fd: BorrowedFd<'f>,
    /// Its canonical path in the destination root.
    pub path: &'f [OsString],
    /// The owner the kernel gives an entry created here, when known: our
    /// fs uid, and our fs gid or the directory's group if it is
    /// set-group-ID. A chown to that owner is skipped.
    pub new_owner: Option<(u32, u32)>,
}

impl Ctx<'_> {
    /// The owner a new entry of the open directory `dir` gets (see
    /// [`DestDir::new_owner`]); `None` when it cannot be told.
    pub(super) fn new_owner_in(&self, dir: BorrowedFd<'_>) -> Option<(u32, u32)> {
        let st = rustix::fs::fstat(dir).ok()?;
        let gid = if st.st_mode & 0o2000 != 0 {
            st.st_gid
        } else {
            self.creds.1
        };
        Some((self.creds.0, gid))
    }

    /// Copy one entry `sdir/sname` (lstat `st`) to `dst/dname`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_entry(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &OsStr,
        st: &Stat,
        dst: &DestDir<'_>,
        dname: &OsStr,
        rel: &str,
        overwrite_meta: bool,
    ) -> Result<(), CopyError> {
        let shown_dst = || join(dst.path).join(dname).to_string_lossy().into_owned();
        let ft = FileType::from_raw_mode(st.st_mode);
        match ft {
            FileType::Directory => {
                self.copy_dir(sdir, sname, st, dst, dname, rel, overwrite_meta)
            }
            FileType::Socket => {
                tracing::debug!(path = rel, "socket not copied");
                Ok(())
            }
            FileType::RegularFile => self.copy_file(sdir, sname, Some(st), dst, dname),
            FileType::Symlink => {
                let shown = shown_dst();
                let target = rustix::fs::readlinkat(sdir, sname, Vec::new())
                    .map_err(errno("read link", rel))?;
                create_replacing(dst.fd, dname, &shown, "create symlink", || {
                    rustix::fs::symlinkat(target.as_c_str(), dst.fd, dname)
                })?;
                self.plan
                    .apply_symlink(dst.fd, dname, st)
                    .map_err(io_err("set metadata", &shown))?;
                self.stats.symlinks += 1;
                Ok(())
            }
            _ => {
                let shown = shown_dst();
                create_replacing(dst.fd, dname, &shown, "create node", || {
                    rustix::fs::mknodat(
                        dst.fd,
                        dname,
                        ft,
                        Mode::from_raw_mode(st.st_mode & 0o7777),
                        st.st_rdev,
                    )
                })?;
                self.plan
                    .apply_node(dst.fd, dname, st)
                    .map_err(io_err("set metadata", &shown))?;
                self.stats.special += 1;
                Ok(())
            }
        }
    }

    /// Copy the regular file `sdir/sname` to `dst/dname`. `walked` is its
    /// lstat when the caller took one (the file must still be that inode);
    /// inside a directory the entry's type sufficed and the `fstat` of the
    /// opened file is the only stat.
    fn copy_file(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &OsStr,
        walked: Option<&Stat>,
        dst: &DestDir<'_>,
        dname: &OsStr,
    ) -> Result<(), CopyError> {
        let sfd = rustix::fs::openat(
            sdir,
            sname,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("open", sname))?;
        let fst = rustix::fs::fstat(&sfd).map_err(errno("stat", sname))?;
        if walked.is_some_and(|w| w.st_ino != fst.st_ino)
            || FileType::from_raw_mode(fst.st_mode) != FileType::RegularFile
        {
            return Err(io_err("source changed while copying", sname)(
                io::Error::from_raw_os_error(libc::ESTALE),
            ));
        }
        let shown_dst = join(dst.path).join(dname).to_string_lossy().into_owned();
        let key = (fst.st_dev, fst.st_ino);
        if fst.st_nlink > 1
            && let Some((fname, fparent)) = self.links.get(&key).and_then(|p| p.split_last())
        {
            let fdir = self
                .dst
                .open_dir(fparent)
                .map_err(io_err("open directory", join(fparent)))?;
            create_replacing(dst.fd, dname, &shown_dst, "create hard link", || {
                rustix::fs::linkat(&fdir, fname, dst.fd, dname, AtFlags::empty())
            })?;
            self.stats.hardlinks += 1;
            return Ok(());
        }
        let dfd = create_replacing(dst.fd, dname, &shown_dst, "create", || {
            rustix::fs::openat(
                dst.fd,
                dname,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        let n = self
            .contents
            .copy(sfd.as_fd(), dfd.as_fd(), fst.st_dev, fst.st_size as u64)
            .map_err(io_err("copy", &shown_dst))?;
        // Owner and mode first: chown drops `security.capability`, so the
        // xattrs (file capabilities among them) come after it.
        self.plan
            .apply_new_fd(dfd.as_fd(), &fst, false, dst.new_owner)
            .map_err(io_err("set metadata", &shown_dst))?;
        crate::meta::copy_xattrs(sfd.as_fd(), dfd.as_fd())
            .map_err(io_err("copy xattrs", &shown_dst))?;
        if fst.st_nlink > 1 {
            let mut p = dst.path.to_vec();
            p.push(dname.to_os_string());
            self.links.insert(key, p);
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    /// Copy directory `sdir/sname` (lstat `st`) to `dst/dname`, merging
    /// into an existing directory there.
    #[allow(clippy::too_many_arguments)]
    fn copy_dir(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &OsStr,
        st: &Stat,
        dst: &DestDir<'_>,
        dname: &OsStr,
        rel: &str,
        overwrite_meta: bool,
    ) -> Result<(), CopyError> {
        let shown_dst = join(dst.path).join(dname).to_string_lossy().into_owned();
        let mut here = dst.path.to_vec();
        here.push(dname.to_os_string());
        if here.len() > crate::MAX_DEPTH {
            return Err(CopyError::TooDeep { path: shown_dst });
        }
        // Made first, looked at only when something is there already.
        let created = match rustix::fs::mkdirat(dst.fd, dname, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                self.stats.dirs += 1;
                true
            }
            Err(Errno::EXIST) => {
                match rustix::fs::statat(dst.fd, dname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(d) if is_dir(&d) => false,
                    Ok(_) => return Err(CopyError::CopyDirToNonDir { path: shown_dst }),
                    Err(e) => return Err(errno("stat", &shown_dst)(e)),
                }
            }
            Err(e) => return Err(errno("create directory", &shown_dst)(e)),
        };
        let sfd = open_dir(sdir, sname, rel)?;
        let dfd = open_dir(dst.fd, dname, &shown_dst)?;
        // A directory we made inherits what its entries inherit from it.
        let new_owner = if created {
            dst.new_owner
        } else {
            self.new_owner_in(dfd.as_fd())
        };
        let sub = DestDir {
            fd: dfd.as_fd(),
            path: &here,
            new_owner,
        };
        self.copy_dir_children(sfd.as_fd(), &sub, rel, &shown_dst)?;
        // Times last: adding children changed the directory's mtime.
        if created || overwrite_meta {
            let owned_by = if created { dst.new_owner } else { None };
            self.plan
                .apply_new_fd(dfd.as_fd(), st, true, owned_by)
                .map_err(io_err("set metadata", &shown_dst))?;
            crate::meta::copy_xattrs(sfd.as_fd(), dfd.as_fd())
                .map_err(io_err("copy xattrs", &shown_dst))?;
        }
        Ok(())
    }

    /// Copy the entries of the open source directory `sfd` into `dst`.
    pub(super) fn copy_dir_children(
        &mut self,
        sfd: BorrowedFd<'_>,
        dst: &DestDir<'_>,
        rel: &str,
        shown: &str,
    ) -> Result<(), CopyError> {
        for (name, ftype) in read_dir_typed(&sfd).map_err(io_err("read directory", shown))? {
            let child_rel = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if ftype == Some(FileType::RegularFile) {
                // No lstat: the open + fstat in `copy_file` is the check.
                if self.filter.skip(&self.base, &child_rel, false) {
                    continue;
                }
                self.copy_file(sfd, &name, None, dst, &name)?;
                continue;
            }
            let cst = rustix::fs::statat(sfd, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno("stat", &child_rel))?;
            if self.filter.skip(&self.base, &child_rel, is_dir(&cst)) {
                continue;
            }
            self.copy_entry(sfd, &name, &cst, dst, &name, &child_rel, true)?;
        }
        Ok(())
    }
}

/// Run `create` (which makes `dir/name` and fails with `EEXIST` when
/// something is there); on `EEXIST`, remove what is in the way (never a
/// directory: replacing one with a file is an error) and try once more.
fn create_replacing<T>(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &str,
    op: &'static str,
    create: impl Fn() -> rustix::io::Result<T>,
) -> Result<T, CopyError> {
    match create() {
        Err(Errno::EXIST) => {}
        other => return other.map_err(errno(op, shown)),
    }
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(d) if is_dir(&d) => {
            return Err(CopyError::ReplaceDirWithFile {
                path: shown.to_string(),
            });
        }
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(errno("remove", shown))?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(errno("stat", shown)(e)),
    }
    create().map_err(errno(op, shown))
}

/// Open a source directory for reading, or a destination directory for
/// metadata changes, refusing symlinks.
pub(super) fn open_dir(dir: impl AsFd, name: &OsStr, shown: &str) -> Result<OwnedFd, CopyError> {
    open_subdir(dir, name).map_err(errno("open directory", shown))
}

/// Directory entries (without `.`/`..`) sorted bytewise: the copy order, and
/// thus which of several hard links is "first", is deterministic.
pub(crate) fn read_dir_sorted(fd: &impl AsFd) -> io::Result<Vec<OsString>> {
    Ok(read_dir_typed(fd)?.into_iter().map(|(n, _)| n).collect())
}

/// [`read_dir_sorted`] with each entry's type as the directory reports it
/// (`None` where the filesystem does not say: the caller must stat).
pub(crate) fn read_dir_typed(fd: &impl AsFd) -> io::Result<Vec<(OsString, Option<FileType>)>> {
    let dup = rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = rustix::fs::Dir::new(dup)?; // owns the fresh fd: no second reopen
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let ft = match ent.file_type() {
            FileType::Unknown => None,
            t => Some(t),
        };
        names.push((OsStr::from_bytes(n).to_os_string(), ft));
    }
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}
