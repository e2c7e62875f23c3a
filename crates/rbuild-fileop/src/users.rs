//! User and group resolution from an image's own `/etc/passwd` and `/etc/group`.
//!
//! Why not NSS (`getpwnam`)? NSS would read the *host's* databases and may
//! load shared objects named by the image; both are wrong for a container
//! builder. Instead the two files are opened inside the image root with
//! `openat2(RESOLVE_IN_ROOT)` (a symlink to `/etc/passwd` means the root's
//! file, never the host's), must be regular files (a FIFO or `/dev/zero` in
//! their place is an error, not a hang), and are read with a size cap.
//!
//! The rules follow Docker/runc (`USER`) and BuildKit (`COPY --chown`):
//! numeric ids need no passwd entry, names must exist, supplementary groups
//! come from `/etc/group` membership only when no group was given.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Largest `/etc/passwd` or `/etc/group` we are willing to read.
pub const MAX_DB_SIZE: u64 = 4 * 1024 * 1024;

/// Highest id Docker accepts (ids are signed 32-bit in the Go runtime).
const MAX_ID: u32 = i32::MAX as u32;

/// Errors from user and group resolution.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The root directory itself could not be opened.
    #[error("cannot open root `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/etc/passwd` or `/etc/group` exists but could not be opened or read.
    #[error("cannot read `{file}` in the image")]
    Read {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The database is a FIFO, device, directory, … instead of a regular file.
    #[error("`{file}` in the image is not a regular file")]
    NotRegular { file: &'static str },
    /// The database is larger than [`MAX_DB_SIZE`].
    #[error("`{file}` in the image is larger than {MAX_DB_SIZE} bytes")]
    TooLarge { file: &'static str },
    /// A user name that has no entry in `/etc/passwd`.
    #[error("unable to find user `{name}`: no matching entries in passwd file")]
    UnknownUser { name: String },
    /// A group name that has no entry in `/etc/group`.
    #[error("unable to find group `{name}`: no matching entries in group file")]
    UnknownGroup { name: String },
    /// A spec that is not `user[:group]` with valid parts.
    #[error("invalid user spec `{spec}`: {reason}")]
    InvalidSpec { spec: String, reason: &'static str },
}

/// Who a process runs as, resolved inside an image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership); never contains
    /// entries when the spec named a group explicitly.
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home directory, when the user has an entry.
    pub home: Option<String>,
}

/// One parsed `/etc/passwd` line.
#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One parsed `/etc/group` line.
#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve a `USER` spec (`""`, `name`, `1000`, `1000:1000`, `name:group`,
/// `1000:group`) against the image rooted at `root`.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let fd = open_root(root)?;
    resolve_user_at(fd.as_fd(), spec)
}

/// [`resolve_user`] for a root that the caller already holds open (an
/// `O_PATH` or directory fd), so no path is re-resolved.
pub fn resolve_user_at(root: BorrowedFd<'_>, spec: &str) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = split_spec(spec)?;
    let is_default = user_part.is_empty();
    let user_arg = if is_default { "0" } else { user_part };
    let user_id = parse_id(user_arg, spec)?;
    let group_id = match group_part {
        Some(g) => parse_id(g, spec)?,
        None => None,
    };

    // Fast path as in BuildKit: `uid:gid` both numeric needs no files.
    if let (Some(uid), Some(gid)) = (user_id, group_id) {
        return Ok(ResolvedUser {
            uid,
            gid,
            additional_gids: Vec::new(),
            home: None,
        });
    }

    let passwd = read_passwd(root)?;
    let entry = passwd.iter().find(|e| match user_id {
        Some(uid) => e.uid == uid,
        None => e.name == user_arg,
    });
    let mut resolved = match (entry, user_id) {
        (Some(e), _) => ResolvedUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
            home: Some(e.home.clone()),
        },
        (None, Some(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: None,
        },
        (None, None) => {
            return Err(UserError::UnknownUser {
                name: user_arg.to_string(),
            });
        }
    };

    match group_part {
        Some(g) => {
            resolved.gid = match group_id {
                Some(gid) => gid,
                None => lookup_group(root, g)?,
            };
        }
        None => {
            if let Some(e) = entry {
                let groups = read_group(root)?;
                let mut gids: Vec<u32> = Vec::new();
                for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
                    if !gids.contains(&g.gid) {
                        gids.push(g.gid);
                    }
                }
                resolved.additional_gids = gids;
            }
        }
    }
    Ok(resolved)
}

/// Resolve a `COPY --chown` spec to `(uid, gid)` inside the destination root.
///
/// BuildKit's rules: a numeric user alone gives `gid = uid`; a named user
/// alone gives the user's primary group; an explicit group (name or id) wins.
/// An empty spec means `0:0`.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let (user_part, group_part) = split_spec(spec)?;
    let user_id = if user_part.is_empty() {
        Some(0)
    } else {
        parse_id(user_part, spec)?
    };
    let group_id = match group_part {
        Some(g) => parse_id(g, spec)?,
        None => None,
    };
    if let (Some(uid), Some(gid)) = (user_id, group_id) {
        return Ok((uid, gid));
    }
    if let (Some(uid), None) = (user_id, group_part) {
        return Ok((uid, uid));
    }
    let fd = open_root(root)?;
    let root = fd.as_fd();
    let (uid, primary_gid) = match user_id {
        Some(uid) => (uid, uid),
        None => {
            let passwd = read_passwd(root)?;
            let e = passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
                UserError::UnknownUser {
                    name: user_part.to_string(),
                }
            })?;
            (e.uid, e.gid)
        }
    };
    let gid = match (group_part, group_id) {
        (Some(_), Some(gid)) => gid,
        (Some(g), None) => lookup_group(root, g)?,
        (None, _) => primary_gid,
    };
    Ok((uid, gid))
}

/// Split `user[:group]`; an empty group after `:` counts as "no group", as in runc.
fn split_spec(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    if spec.contains('\0') || spec.contains('\n') {
        return Err(UserError::InvalidSpec {
            spec: spec.escape_debug().to_string(),
            reason: "contains a control character",
        });
    }
    match spec.split_once(':') {
        Some((_, g)) if g.contains(':') => Err(UserError::InvalidSpec {
            spec: spec.to_string(),
            reason: "more than one `:`",
        }),
        Some((u, "")) => Ok((u, None)),
        Some((u, g)) => Ok((u, Some(g))),
        None => Ok((spec, None)),
    }
}

/// `Some(id)` for a decimal id, `None` for a name; negative or huge ids are errors.
fn parse_id(s: &str, spec: &str) -> Result<Option<u32>, UserError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        match s.parse::<u64>() {
            Ok(v) if v <= u64::from(MAX_ID) => Ok(Some(v as u32)),
            _ => Err(UserError::InvalidSpec {
                spec: spec.to_string(),
                reason: "id out of range",
            }),
        }
    } else if s.starts_with('-') && s[1..].bytes().all(|b| b.is_ascii_digit()) && s.len() > 1 {
        Err(UserError::InvalidSpec {
            spec: spec.to_string(),
            reason: "negative id",
        })
    } else {
        Ok(None)
    }
}

fn lookup_group(root: BorrowedFd<'_>, name: &str) -> Result<u32, UserError> {
    read_group(root)?
        .iter()
        .find(|g| g.name == name)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::UnknownGroup {
            name: name.to_string(),
        })
}

pub(crate) fn open_root(root: &Path) -> Result<OwnedFd, UserError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UserError::OpenRoot {
        path: root.to_path_buf(),
        source: e.into(),
    })
}

/// Read a small database file inside `root`; `Ok(None)` when it does not exist.
fn read_db(root: BorrowedFd<'_>, file: &'static str) -> Result<Option<String>, UserError> {
    let rel = file.trim_start_matches('/');
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let fd = match crate::root::openat2_scoped(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => {
            return Err(UserError::Read {
                file,
                source: e.into(),
            });
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| UserError::Read {
        file,
        source: e.into(),
    })?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(UserError::NotRegular { file });
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_DB_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| UserError::Read { file, source: e })?;
    if buf.len() as u64 > MAX_DB_SIZE {
        return Err(UserError::TooLarge { file });
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn read_passwd(root: BorrowedFd<'_>) -> Result<Vec<PasswdEntry>, UserError> {
    Ok(read_db(root, "/etc/passwd")?
        .map(|s| parse_passwd(&s))
        .unwrap_or_default())
}

fn read_group(root: BorrowedFd<'_>) -> Result<Vec<GroupEntry>, UserError> {
    Ok(read_db(root, "/etc/group")?
        .map(|s| parse_group(&s))
        .unwrap_or_default())
}

/// Parse passwd lines; malformed lines (bad ids, too few fields, comments)
/// are skipped rather than read as uid 0.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: parse_db_id(f[2])?,
                gid: parse_db_id(f[3])?,
                home: f.get(5).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: parse_db_id(f[2])?,
                members,
            })
        })
        .collect()
}

fn parse_db_id(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|v| *v <= MAX_ID)
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
