//! Which source paths an operation selects: wildcard expansion and `--parents`
//! pivots, shared by [`crate::copy`] and [`crate::hash`] so that the cache key
//! covers exactly what the copy reads.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;

use rbuild_dockerfile::{IgnoreError, IgnoreMatcher};
use rustix::fs::{AtFlags, FileType, OFlags};

use crate::copy::{CopyError, io_err, read_dir_typed};
use crate::pattern::{glob_match, has_wildcard, match_path};
use crate::root::{Root, clean, join, open_subdir};

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

/// What is left out of a copy: `--exclude` patterns (relative to each
/// source) and the context's `.dockerignore` (relative to the source root,
/// making ignored files behave as if they were not there at all).
///
/// Both use the `.dockerignore` matcher of `rbuild-dockerfile`, so that
/// `--exclude`, the context's ignore file and the client-side context
/// upload agree on what a pattern means.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub exclude: IgnoreMatcher,
    pub ignore: IgnoreMatcher,
}

/// Is `path` left out by `m`? A directory is left out only when nothing
/// below it can be re-included by a `!` exception; otherwise it is walked
/// and its entries are judged one by one.
fn left_out(m: &IgnoreMatcher, path: &str, is_dir: bool) -> bool {
    if is_dir {
        m.can_skip_dir(path)
    } else {
        m.matches(path, false)
    }
}

impl Filter {
    pub(crate) fn new(exclude: &[String], ignore: &[String]) -> Result<Filter, IgnoreError> {
        Ok(Filter {
            exclude: IgnoreMatcher::from_patterns(exclude)?,
            ignore: IgnoreMatcher::from_patterns(ignore)?,
        })
    }

    /// Is the entry `rel` (relative to a selected source whose path in the
    /// source root is `base`) left out?
    pub(crate) fn skip(&self, base: &str, rel: &str, is_dir: bool) -> bool {
        if !self.exclude.is_empty() && left_out(&self.exclude, rel, is_dir) {
            return true;
        }
        if self.ignore.is_empty() {
            return false;
        }
        if base.is_empty() || base == "." {
            left_out(&self.ignore, rel, is_dir)
        } else {
            left_out(&self.ignore, &format!("{base}/{rel}"), is_dir)
        }
    }

    /// Is a source path (relative to the source root) ignored by
    /// `.dockerignore`? `is_dir` when the caller knows it.
    fn ignored(&self, src: &Root, canon: &[OsString], is_dir: Option<bool>) -> bool {
        if self.ignore.is_empty() || canon.is_empty() {
            return false;
        }
        let is_dir = is_dir.unwrap_or_else(|| {
            src.open_canonical(canon, OFlags::PATH)
                .and_then(|fd| Ok(rustix::fs::fstat(&fd)?))
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        });
        left_out(&self.ignore, &join(canon).to_string_lossy(), is_dir)
    }
}

/// How sources are interpreted.
pub(crate) struct SelectSpec<'a> {
    pub allow_wildcard: bool,
    /// A wildcard matching nothing is not an error.
    pub allow_empty: bool,
    /// Follow a symlink named as the last component of a source.
    pub follow: bool,
    /// `--parents`: a `**` component matches any number of directories.
    pub parents: bool,
    pub filter: &'a Filter,
}

/// Expand every source. Missing literal sources are errors; a wildcard with
/// no match is an error unless `allow_empty`.
pub(crate) fn expand_sources(
    src: &Root,
    sources: &[String],
    spec: &SelectSpec<'_>,
) -> Result<Vec<Selected>, CopyError> {
    let mut out = Vec::new();
    for raw in sources {
        if raw.contains('\0') {
            return Err(not_found(&raw.escape_debug().to_string()));
        }
        // `a/./b`: the part after the pivot cannot climb above it.
        let (named, pivot) = match raw.find("/./").filter(|_| spec.parents) {
            Some(i) => {
                let mut left = clean(OsStr::new(&raw[..i]));
                let pivot = left.len();
                left.extend(clean(OsStr::new(&raw[i + 3..])));
                (left, pivot)
            }
            None => (clean(OsStr::new(raw)), 0),
        };
        let wild_at = if spec.allow_wildcard {
            named
                .iter()
                .position(|c| has_wildcard(&c.to_string_lossy()))
        } else {
            None
        };
        match wild_at {
            None => {
                let (canon, exists) = src
                    .canonicalize(join(&named).as_os_str(), spec.follow)
                    .map_err(|_| not_found(raw))?;
                if !exists || spec.filter.ignored(src, &canon, None) {
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
                expand_wildcard(src, &named, k, pivot, spec, &mut out)?;
                if out.len() == before && !spec.allow_empty {
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

/// Match `named[k..]` below `named[..k]`. Without `--parents` a `*` never
/// crosses `/`, so a directory is only entered when its name matches the
/// pattern component at its depth; with it, `**` spans directories. A matched
/// directory is not entered, and symlinks are never entered (Go's
/// `filepath.Walk` does not follow them either).
fn expand_wildcard(
    src: &Root,
    named: &[OsString],
    k: usize,
    pivot: usize,
    spec: &SelectSpec<'_>,
    out: &mut Vec<Selected>,
) -> Result<(), CopyError> {
    let base = &named[..k];
    let pattern: Vec<String> = named[k..]
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    for p in pattern.iter().filter(|p| *p != "**") {
        match_path(p, "")?; // surface syntax errors even when nothing is walked
    }
    let (base_canon, exists) = src
        .canonicalize(join(base).as_os_str(), spec.follow)
        .map_err(io_err("resolve", join(base)))?;
    if !exists {
        return Ok(());
    }
    let Ok(base_fd) = src.open_canonical(&base_canon, OFlags::RDONLY | OFlags::DIRECTORY) else {
        return Ok(()); // not a directory: nothing below it can match
    };
    let mut rels: Vec<(Vec<OsString>, Option<FileType>)> = Vec::new();
    walk_match(&base_fd, &pattern, spec.parents, &mut Vec::new(), &mut rels)?;
    for (rel, kind) in rels {
        let rel_str = join(&rel).to_string_lossy().into_owned();
        let mut full = base.to_vec();
        full.extend(rel.iter().cloned());
        let excludes = &spec.filter.exclude;
        if !excludes.is_empty() {
            let full_str = join(&full).to_string_lossy().into_owned();
            if excludes.matches(&rel_str, false) || excludes.matches(&full_str, false) {
                continue;
            }
        }
        let (canon, exists) = match kind {
            // Every directory on the way was entered without following a
            // symlink, so a match that is no symlink itself is already
            // canonical: no second resolution, component by component.
            Some(t) if t != FileType::Symlink => {
                let mut c = base_canon.clone();
                c.extend(rel.iter().cloned());
                (c, true)
            }
            _ => src
                .canonicalize(join(&full).as_os_str(), spec.follow)
                .map_err(io_err("resolve", join(&full)))?,
        };
        let is_dir = kind
            .filter(|t| *t != FileType::Symlink)
            .map(|t| t == FileType::Directory);
        if exists && !spec.filter.ignored(src, &canon, is_dir) {
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
    doublestar: bool,
    prefix: &mut Vec<OsString>,
    out: &mut Vec<(Vec<OsString>, Option<FileType>)>,
) -> Result<(), CopyError> {
    let depth = prefix.len();
    let shown = join(prefix);
    for (name, kind) in read_dir_typed(dir).map_err(io_err("read directory", &shown))? {
        let name_str = name.to_string_lossy().into_owned();
        let (matched, enter) = if doublestar {
            let mut comps: Vec<String> = prefix
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            comps.push(name_str);
            let refs: Vec<&str> = comps.iter().map(String::as_str).collect();
            glob_match(pattern, &refs)
        } else {
            if depth >= pattern.len() || !match_path(&pattern[depth], &name_str)? {
                continue;
            }
            let last = depth + 1 == pattern.len();
            (last, !last)
        };
        prefix.push(name.clone());
        if matched {
            out.push((prefix.clone(), kind));
        } else if enter {
            let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("stat", &shown)(e.into()))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = open_subdir(dir, &name)
                    .map_err(|e| io_err("open directory", &shown)(e.into()))?;
                walk_match(&sub, pattern, doublestar, prefix, out)?;
            }
        }
        prefix.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Filter;

    fn filter(exclude: &[&str]) -> Filter {
        let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        Filter::new(&exclude, &[]).expect("valid patterns")
    }

    #[test]
    fn exclude_table() {
        let f = filter(&["*.log", "build", "docs/**/*.md", "!docs/keep.md", "/abs"]);
        let cases: &[(&str, bool, bool)] = &[
            ("a.log", false, true),
            ("sub/a.log", false, false),
            ("build", true, true),
            ("build/x/y", false, true),
            ("docs/a.md", false, true),
            ("docs/x/y/a.md", false, true),
            ("docs/keep.md", false, false),
            ("docs", true, false),
            ("abs", false, true),
            ("src/main.rs", false, false),
        ];
        for (p, is_dir, want) in cases {
            assert_eq!(f.skip("", p, *is_dir), *want, "exclude({p:?})");
        }
        let f = filter(&["**/*.tmp", "node_modules", "!node_modules/keep"]);
        assert!(f.skip("", "a/b/c.tmp", false));
        assert!(f.skip("", "c.tmp", false));
        assert!(
            !f.skip("", "node_modules", true),
            "descend for the exception"
        );
        assert!(f.skip("", "node_modules/other", false));
        assert!(!f.skip("", "node_modules/keep", false));
        assert!(Filter::new(&["a[".to_string()], &[]).is_err());
    }

    #[test]
    fn ignore_is_relative_to_the_source_root() {
        let ignore = vec!["src/*.tmp".to_string(), "src/gen".to_string()];
        let f = Filter::new(&[], &ignore).expect("valid patterns");
        assert!(f.skip("src", "a.tmp", false));
        assert!(!f.skip("other", "a.tmp", false));
        assert!(f.skip("src", "gen", true));
        assert!(!f.skip(".", "a.tmp", false));
    }
}
