//! Which source paths an operation selects: wildcard expansion and `--parents`
//! pivots, shared by [`crate::copy`] and [`crate::hash`] so that the cache key
//! covers exactly what the copy reads.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType};

use crate::copy::{CopyError, io_err, read_dir_sorted};
use crate::pattern::{ExcludeMatcher, has_wildcard, match_path};
use crate::root::{Root, clean, join};

/// One selected source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// The path as the user named it (cleaned, wildcards replaced by the
    /// matched names); used for the destination name and `--parents`.
    pub named: Vec<OsString>,
    /// The same path resolved inside the source root (no symlinks, except a
    /// final one when symlinks are not followed).
    pub canon: Vec<OsString>,
    /// How many leading components of `named` are above the `--parents`
    /// pivot (`a/./b` pivots after `a`).
    pub pivot: usize,
}

/// Expand every source. Missing literal sources are errors; a wildcard with
/// no match is an error unless `allow_empty`.
pub(crate) fn expand_sources(
    src: &Root,
    sources: &[String],
    allow_wildcard: bool,
    allow_empty: bool,
    follow: bool,
    excludes: &ExcludeMatcher,
) -> Result<Vec<Selected>, CopyError> {
    let mut out = Vec::new();
    for raw in sources {
        if raw.contains('\0') {
            return Err(CopyError::NotFound {
                path: raw.escape_debug().to_string(),
            });
        }
        let (pivot, joined) = match raw.find("/./") {
            Some(i) => (
                clean(OsStr::new(&raw[..i])).len(),
                format!("{}/{}", &raw[..i], &raw[i + 3..]),
            ),
            None => (0, raw.clone()),
        };
        let named = clean(OsStr::new(&joined));
        let wild_at = if allow_wildcard {
            named
                .iter()
                .position(|c| has_wildcard(&c.to_string_lossy()))
        } else {
            None
        };
        match wild_at {
            None => {
                let (canon, exists) = src
                    .canonicalize(join(&named).as_os_str(), follow)
                    .map_err(|_| not_found(raw))?;
                if !exists {
                    return Err(not_found(raw));
                }
                out.push(Selected {
                    named,
                    canon,
                    pivot,
                });
            }
            Some(k) => {
                let before = out.len();
                expand_wildcard(src, &named, k, follow, pivot, excludes, &mut out)?;
                if out.len() == before && !allow_empty {
                    return Err(not_found(raw));
                }
            }
        }
    }
    Ok(out)
}

fn not_found(raw: &str) -> CopyError {
    CopyError::NotFound {
        path: raw.to_string(),
    }
}

/// Match `named[k..]` component-wise below `named[..k]`. A `*` never crosses
/// `/`, so a directory is only entered when its name matches the pattern
/// component at its depth; a matched directory is not entered. Symlinks are
/// never entered (Go's `filepath.Walk` does not follow them either).
fn expand_wildcard(
    src: &Root,
    named: &[OsString],
    k: usize,
    follow: bool,
    pivot: usize,
    excludes: &ExcludeMatcher,
    out: &mut Vec<Selected>,
) -> Result<(), CopyError> {
    let base = &named[..k];
    let pattern: Vec<String> = named[k..]
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    for p in &pattern {
        match_path(p, "")?; // surface syntax errors even when nothing is walked
    }
    let (base_canon, exists) = src
        .canonicalize(join(base).as_os_str(), follow)
        .map_err(io_err("resolve", join(base)))?;
    if !exists {
        return Ok(());
    }
    let Ok(base_fd) = src.open_canonical(
        &base_canon,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
    ) else {
        return Ok(()); // not a directory: nothing below it can match
    };
    let mut rels: Vec<Vec<OsString>> = Vec::new();
    walk_match(&base_fd, &pattern, &mut Vec::new(), &mut rels)?;
    for rel in rels {
        let rel_str = join(&rel).to_string_lossy().into_owned();
        let mut full = base.to_vec();
        full.extend(rel.iter().cloned());
        if !excludes.is_empty() {
            let full_str = join(&full).to_string_lossy().into_owned();
            if excludes.is_excluded(&rel_str, false) || excludes.is_excluded(&full_str, false) {
                continue;
            }
        }
        let (canon, exists) = src
            .canonicalize(join(&full).as_os_str(), follow)
            .map_err(io_err("resolve", join(&full)))?;
        if exists {
            out.push(Selected {
                named: full,
                canon,
                pivot,
            });
        }
    }
    Ok(())
}

fn walk_match(
    dir: &OwnedFd,
    pattern: &[String],
    prefix: &mut Vec<OsString>,
    out: &mut Vec<Vec<OsString>>,
) -> Result<(), CopyError> {
    let depth = prefix.len();
    let shown = join(prefix);
    for name in read_dir_sorted(dir).map_err(io_err("read directory", &shown))? {
        let name_str = name.to_string_lossy();
        if !match_path(&pattern[depth], &name_str)? {
            continue;
        }
        prefix.push(name.clone());
        if depth + 1 == pattern.len() {
            out.push(prefix.clone());
        } else {
            let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_err_errno(&shown))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = rustix::fs::openat(
                    dir,
                    &name,
                    rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::NOFOLLOW
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(io_err_errno(&shown))?;
                walk_match(&sub, pattern, prefix, out)?;
            }
        }
        prefix.pop();
    }
    Ok(())
}

fn io_err_errno(shown: &std::path::Path) -> impl FnOnce(rustix::io::Errno) -> CopyError + '_ {
    move |e| io_err("read directory", shown)(e.into())
}
