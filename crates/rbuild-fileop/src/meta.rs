//! File metadata: `--chmod` specs, and owner / mode / times / xattrs applied
//! through file descriptors (never through a path that could be swapped).

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::SystemTime;

use rustix::fs::{AtFlags, Gid, Mode, Stat, Timespec, Timestamps, Uid};

/// Errors from parsing a `--chmod` value.
#[derive(Debug, thiserror::Error)]
pub enum ChmodError {
    #[error("invalid chmod `{spec}`: {reason}")]
    Invalid { spec: String, reason: &'static str },
}

/// A `--chmod` value: octal (`755`, `0644`, `4755`) or symbolic
/// (`u+x`, `go-w`, `a=rX,u+w`), applied to every copied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replace the permission bits (and the set-id/sticky bits when given).
    Octal(u32),
    /// `chmod(1)`-style clauses; `X` sets execute only on directories and
    /// on files that already have an execute bit.
    Symbolic(Vec<SymClause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymClause {
    who: u32,
    ops: Vec<(char, String)>,
}

impl Chmod {
    /// Parse a `--chmod` value.
    pub fn parse(spec: &str) -> Result<Chmod, ChmodError> {
        let err = |reason| ChmodError::Invalid {
            spec: spec.to_string(),
            reason,
        };
        if spec.is_empty() {
            return Err(err("empty"));
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            let v = u32::from_str_radix(spec, 8).map_err(|_| err("not an octal number"))?;
            if v > 0o7777 {
                return Err(err("octal mode out of range"));
            }
            return Ok(Chmod::Octal(v));
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let op_at = part
                .find(['+', '-', '='])
                .ok_or_else(|| err("missing `+`, `-` or `=`"))?;
            let mut who = 0u32;
            for c in part[..op_at].chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(err("unknown `who` letter")),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut ops: Vec<(char, String)> = Vec::new();
            for c in part[op_at..].chars() {
                match c {
                    '+' | '-' | '=' => ops.push((c, String::new())),
                    'r' | 'w' | 'x' | 'X' | 's' | 't' => ops
                        .last_mut()
                        .ok_or_else(|| err("permission before operator"))?
                        .1
                        .push(c),
                    _ => return Err(err("unknown permission letter")),
                }
            }
            clauses.push(SymClause { who, ops });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits (`0o7777` part) for an entry whose current
    /// mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut m = mode & 0o7777;
        match self {
            Chmod::Octal(v) => {
                // BuildKit replaces the 0777 bits; explicit set-id/sticky bits win.
                if *v > 0o777 { *v } else { (m & 0o7000) | v }
            }
            Chmod::Symbolic(clauses) => {
                for cl in clauses {
                    for (op, perms) in &cl.ops {
                        let mut bits = 0u32;
                        for p in perms.chars() {
                            bits |= match p {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || m & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        bits &= cl.who;
                        match op {
                            '+' => m |= bits,
                            '-' => m &= !bits,
                            _ => m = (m & !(cl.who & 0o7777)) | bits,
                        }
                    }
                }
                m
            }
        }
    }
}

/// What to do with owner, mode and times of a copied entry.
pub(crate) struct MetaPlan<'a> {
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<&'a Chmod>,
    pub timestamp: Option<SystemTime>,
    pub preserve_mtime: bool,
}

/// Both times set to `t` (for a forced timestamp).
pub(crate) fn timestamps(t: SystemTime) -> Timestamps {
    let ts = to_timespec(t);
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

fn to_timespec(t: SystemTime) -> Timespec {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos().into(),
        },
        Err(e) => {
            let d = e.duration();
            Timespec {
                tv_sec: -(d.as_secs() as i64),
                tv_nsec: 0,
            }
        }
    }
}

impl MetaPlan<'_> {
    fn owner(&self, st: &Stat) -> (Option<Uid>, Option<Gid>) {
        let (u, g) = self.chown.unwrap_or((st.st_uid, st.st_gid));
        (Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
    }

    fn mode(&self, st: &Stat, is_dir: bool) -> Mode {
        let m = st.st_mode & 0o7777;
        let m = self.chmod.map_or(m, |c| c.apply(m, is_dir));
        Mode::from_raw_mode(m)
    }

    fn times(&self, st: &Stat) -> Option<Timestamps> {
        if let Some(t) = self.timestamp {
            let ts = to_timespec(t);
            return Some(Timestamps {
                last_access: ts,
                last_modification: ts,
            });
        }
        self.preserve_mtime.then_some(Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        })
    }

    /// Apply owner, mode and times to an open (non-`O_PATH`) file or directory.
    pub(crate) fn apply_fd(&self, fd: BorrowedFd<'_>, st: &Stat, is_dir: bool) -> io::Result<()> {
        self.apply_new_fd(fd, st, is_dir, None)
    }

    /// [`MetaPlan::apply_fd`] for an entry we just created, which the kernel
    /// gave the owner `owned_by` (when the caller knows it): the `fchown`
    /// is skipped when that is already the wanted owner — the common case
    /// of a context copied by (namespaced) root to `0:0`, one syscall per
    /// file. The mode is set either way: a fresh file has the umask's (or a
    /// default ACL's) idea of it.
    pub(crate) fn apply_new_fd(
        &self,
        fd: BorrowedFd<'_>,
        st: &Stat,
        is_dir: bool,
        owned_by: Option<(u32, u32)>,
    ) -> io::Result<()> {
        let (u, g) = self.owner(st);
        let wanted = (u.map_or(0, Uid::as_raw), g.map_or(0, Gid::as_raw));
        if owned_by != Some(wanted) {
            rustix::fs::fchown(fd, u, g).map_err(|e| chown_error(e, u, g))?;
        }
        // chown clears set-id bits, so the mode comes after it.
        rustix::fs::fchmod(fd, self.mode(st, is_dir))?;
        if let Some(ts) = self.times(st) {
            rustix::fs::futimens(fd, &ts)?;
        }
        Ok(())
    }

    /// Apply owner and times to a symlink (symlinks have no mode of their own).
    pub(crate) fn apply_symlink(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
    ) -> io::Result<()> {
        let (u, g) = self.owner(st);
        rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| chown_error(e, u, g))?;
        if let Some(ts) = self.times(st) {
            rustix::fs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }

    /// Apply owner, mode and times to a device node or FIFO we just made.
    pub(crate) fn apply_node(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
    ) -> io::Result<()> {
        let (u, g) = self.owner(st);
        rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| chown_error(e, u, g))?;
        rustix::fs::chmodat(dir, name, self.mode(st, false), AtFlags::empty())?;
        if let Some(ts) = self.times(st) {
            rustix::fs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(())
    }
}

/// `EINVAL` from chown means the id has no mapping in our user namespace
/// (a single-id map without `/etc/subuid` ranges); say so.
fn chown_error(e: rustix::io::Errno, u: Option<Uid>, g: Option<Gid>) -> io::Error {
    let ids = format!("{}:{}", u.map_or(0, Uid::as_raw), g.map_or(0, Gid::as_raw));
    if e == rustix::io::Errno::INVAL {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot chown to `{ids}`: the id is not mapped in this user namespace (hint: add a range to /etc/subuid and /etc/subgid)"
            ),
        )
    } else {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot chown to `{ids}`: {e}"),
        )
    }
}

/// Is this an xattr that must never be copied or hashed? The overlay's own
/// (`trusted.overlay.*`, `user.overlay.*`: they would turn a copied file into
/// a whiteout or an opaque directory), and the host's SELinux label (policy
/// of the build machine, not content; the runtime labels files itself).
pub(crate) fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux"
}

/// List the copyable xattrs of an open fd as (name, value), sorted by name.
pub(crate) fn read_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::flistxattr(fd, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < 1 << 20 => {
                names.resize(names.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if is_private_xattr(name) {
            continue;
        }
        let cname = OsStr::from_bytes_helper(name);
        let mut val = vec![0u8; 256];
        let n = loop {
            match rustix::fs::fgetxattr(fd, cname, &mut val[..]) {
                Ok(n) => break Some(n),
                Err(rustix::io::Errno::RANGE) if val.len() < 1 << 20 => {
                    val.resize(val.len() * 4, 0)
                }
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(n) = n {
            val.truncate(n);
            out.push((name.to_vec(), val));
        }
    }
    out.sort();
    Ok(out)
}

/// Copy xattrs from `src` to `dst` (both open fds). Failures to set one
/// (unsupported filesystem, `security.*` without privilege) are logged and
/// skipped, as BuildKit does.
pub(crate) fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    for (name, value) in read_xattrs(src)? {
        let cname = OsStr::from_bytes_helper(&name);
        if let Err(e) = rustix::fs::fsetxattr(dst, cname, &value, rustix::fs::XattrFlags::empty()) {
            tracing::debug!(xattr = %cname.to_string_lossy(), error = %e, "xattr not copied");
        }
    }
    Ok(())
}

/// Small extension so byte names convert without allocation.
trait FromBytesHelper {
    fn from_bytes_helper(b: &[u8]) -> &OsStr;
}

impl FromBytesHelper for OsStr {
    fn from_bytes_helper(b: &[u8]) -> &OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// Copies regular files' contents between open fds for one copy operation:
/// `copy_file_range` (a reflink or an in-kernel copy where the filesystems
/// allow it), else `sendfile`, else read/write.
///
/// `copy_file_range` refuses whole pairs of filesystems (`EXDEV` onto an
/// overlay mount, as every COPY's destination is), so a refusal is
/// remembered per source device: after the first file, the rest of the
/// copy goes straight to `sendfile` instead of paying a doomed syscall per
/// file. A wrong memo would only cost speed, never correctness.
#[derive(Debug, Default)]
pub(crate) struct ContentCopier {
    /// Source devices `copy_file_range` refused for this destination.
    refused: Vec<u64>,
}

impl ContentCopier {
    /// Copy up to `size` bytes (the size the source had when opened; a file
    /// that shrank copies what is there) from `src` (on device `src_dev`)
    /// to `dst`; returns the bytes copied.
    pub(crate) fn copy(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        src_dev: u64,
        size: u64,
    ) -> io::Result<u64> {
        if size == 0 {
            return Ok(0);
        }
        if self.refused.contains(&src_dev) {
            return sendfile_copy(src, dst, size);
        }
        match copy_range(src, dst, size)? {
            Some(n) => Ok(n),
            None => {
                self.refused.push(src_dev);
                sendfile_copy(src, dst, size)
            }
        }
    }
}

/// `copy_file_range` up to `size`; `None` when the kernel refuses the pair
/// of files before anything was copied (the caller falls back).
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> io::Result<Option<u64>> {
    let mut copied = 0u64;
    while copied < size {
        let want = usize::try_from(size - copied)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => break, // the file shrank under us
            Ok(n) => copied += n as u64,
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::PERM,
            ) if copied == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(copied))
}

/// The fallback when `copy_file_range` refuses (always the case when the
/// destination is on an overlay mount, as every COPY's is): `sendfile`
/// straight between the fds we already hold, stopping at `size` like the
/// path above. Going through `std::io::copy` instead cost five extra
/// syscalls per file (two fd dups and closes, and a second doomed
/// `copy_file_range`), which adds up over a large context.
fn sendfile_copy(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> io::Result<u64> {
    let mut copied = 0u64;
    while copied < size {
        let want = usize::try_from(size - copied)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::sendfile(dst, src, None, want) {
            Ok(0) => break, // the file shrank under us
            Ok(n) => copied += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if copied == 0 => {
                return fallback_copy(src, dst);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(copied)
}

fn fallback_copy(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<u64> {
    let mut r = std::fs::File::from(src.try_clone_to_owned()?);
    let mut w = std::fs::File::from(dst.try_clone_to_owned()?);
    io::copy(&mut r, &mut w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendfile_fallback_copies_exactly_the_stated_size() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let src = std::fs::File::open(dir.path().join("src")).unwrap();
        let dst = std::fs::File::create(dir.path().join("dst")).unwrap();
        let n = sendfile_copy(src.as_fd(), dst.as_fd(), data.len() as u64).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), data);

        // A stated size past the end (the file shrank): what is there.
        let src = std::fs::File::open(dir.path().join("src")).unwrap();
        let dst = std::fs::File::create(dir.path().join("short")).unwrap();
        let n = sendfile_copy(src.as_fd(), dst.as_fd(), data.len() as u64 + 10).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(dir.path().join("short")).unwrap(), data);
    }

    #[test]
    fn chmod_table() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("755", 0o644, false, 0o755),
            ("0644", 0o755, true, 0o644),
            ("600", 0o4755, false, 0o4600),
            ("4755", 0o644, false, 0o4755),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("go-w", 0o777, false, 0o755),
            ("a=r", 0o755, false, 0o444),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("o=", 0o777, false, 0o770),
            ("u+s", 0o755, false, 0o4755),
            ("+t", 0o755, true, 0o1755),
            ("u-x+w", 0o500, false, 0o600),
        ];
        for (spec, mode, is_dir, want) in cases {
            let c = Chmod::parse(spec).unwrap();
            assert_eq!(c.apply(*mode, *is_dir), *want, "chmod {spec} on {mode:o}");
        }
        for bad in ["", "999", "77777", "q+x", "u", "u+q", "rw"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
