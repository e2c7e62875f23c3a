//! `COPY` / `ADD` (local part) with BuildKit's semantics, confined to roots.
//!
//! The rules, as BuildKit's file-op backend applies them:
//! - a file to `dest` writes `dest`; to `dest/` or to an existing directory
//!   (symlinks to directories count) writes `dest/<name>`;
//! - a directory source copies its *contents* (`dir_contents_only`, what the
//!   Dockerfile uses), otherwise the directory itself;
//! - several sources (or several wildcard matches) need a directory
//!   destination — unlike BuildKit, which would silently overwrite, we fail
//!   with Docker's message when `dest` is neither `…/` nor a directory;
//! - missing parents are created `0755`, owned by `--chown` when given;
//! - an existing file is replaced, an existing directory merged;
//! - symlinks inside sources are copied as symlinks, and only the top-level
//!   source follows a symlink when `follow_symlinks` is set — always inside
//!   the source root; hard links between copied files stay hard links;
//! - wildcards follow Go's `filepath.Match` per path component (a `**` is a
//!   plain `*`), except with `--parents`, where `**` spans directories;
//! - `--exclude` and the context's `.dockerignore` (`context_ignore`) drop
//!   entries; an ignored source is simply not found;
//! - `ADD` (`unpack_archives`) extracts tar archives instead (see `unpack`).
//!
//! Every lookup is fd-relative: sources through the in-root resolver of the
//! source root, the destination through the destination root, so a symlink
//! in an earlier layer (`/app -> /etc`, `/app -> ../../host`) resolves to the
//! root's own directories and never outside.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::meta::{Chmod, ContentCopier, MetaPlan};
use crate::pattern::PatternError;
use crate::root::{Root, clean, join};
use crate::select::{Filter, SelectSpec, Selected, expand_sources};

mod tree;
use tree::{DestDir, open_dir};
pub(crate) use tree::{read_dir_sorted, read_dir_typed};

/// Options of one copy, mirroring BuildKit's `FileActionCopy`.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Owner of everything copied and of created parents; `None` keeps the
    /// source owner (pass `Some((0, 0))` for context copies, as Docker does).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, applied to every copied entry.
    pub chmod: Option<Chmod>,
    /// `--exclude` patterns, matched against paths relative to each source
    /// (and, for wildcard matches, against the match's own relative path).
    pub exclude: Vec<String>,
    /// `--parents`: keep each source's path (below a `/./` pivot) under `dest`.
    pub parents: bool,
    /// Follow a symlink named directly as a source (inside the source root).
    pub follow_symlinks: bool,
    /// Expand `*`, `?`, `[…]` in sources.
    pub allow_wildcard: bool,
    /// A wildcard that matches nothing is not an error (copies nothing).
    pub allow_empty_wildcard: bool,
    /// Create missing parents of `dest`; otherwise the parent must exist.
    pub create_dest_path: bool,
    /// A directory source copies its contents rather than itself.
    pub dir_contents_only: bool,
    /// Keep source modification times (when `timestamp` is `None`).
    pub preserve_mtime: bool,
    /// Force every copied entry's times (`SOURCE_DATE_EPOCH`, `--link`).
    pub timestamp: Option<SystemTime>,
    /// The context's `.dockerignore` patterns, matched against paths in the
    /// source root: ignored files behave as if absent (a named one is "not
    /// found", wildcards and directory copies skip them).
    pub context_ignore: Vec<String>,
    /// `ADD`: a source that is a tar archive (plain, gzip, xz, zstd) is
    /// extracted into `dest` (made a directory) instead of copied.
    pub unpack_archives: bool,
}

impl CopyOptions {
    /// Fill `chown` and `chmod` from the Dockerfile's `--chown` / `--chmod`
    /// strings: user and group names resolve in the *destination* root's
    /// `/etc/passwd` and `/etc/group` (BuildKit's rule), ids need no lookup.
    pub fn with_owner_and_mode(
        mut self,
        dest_root: &Path,
        chown: Option<&str>,
        chmod: Option<&str>,
    ) -> Result<Self, CopyError> {
        if let Some(spec) = chown {
            self.chown = Some(crate::users::resolve_chown(dest_root, spec)?);
        }
        if let Some(spec) = chmod {
            self.chmod = Some(Chmod::parse(spec)?);
        }
        Ok(self)
    }

    /// The options a Dockerfile `COPY`/`ADD` from a context or stage uses.
    pub fn dockerfile() -> Self {
        CopyOptions {
            follow_symlinks: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            create_dest_path: true,
            dir_contents_only: true,
            preserve_mtime: true,
            ..Default::default()
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Devices and FIFOs.
    pub special: u64,
    pub bytes: u64,
}

/// Errors from [`copy`].
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot open root `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` not found in the source")]
    NotFound { path: String },
    #[error("no source files were specified")]
    NoSources,
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a / (destination `{dest}`)"
    )]
    DestNotDir { dest: String },
    #[error("parent of destination `{dest}` does not exist")]
    DestParentMissing { dest: String },
    #[error("cannot replace directory `{path}` with a file")]
    ReplaceDirWithFile { path: String },
    #[error("`{path}` is nested more than {} directories deep", crate::MAX_DEPTH)]
    TooDeep { path: String },
    #[error("cannot copy a directory to non-directory `{path}`")]
    CopyDirToNonDir { path: String },
    #[error(
        "`{path}` is a {compression} archive, which ADD cannot unpack yet (supported: tar, tar.gz, tar.xz, tar.zst)"
    )]
    UnsupportedArchive { path: String, compression: String },
    #[error("archive entry `{path}` leads outside the destination")]
    ArchiveEscape { path: String },
    #[error("archive entry `{path}` has unsupported type {kind}")]
    UnsupportedEntry { path: String, kind: String },
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A bad `--exclude` or context-ignore pattern.
    #[error(transparent)]
    Exclude(#[from] rbuild_dockerfile::IgnoreError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Chmod(#[from] crate::meta::ChmodError),
    #[error("{op} `{path}`")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl AsRef<OsStr>,
) -> impl FnOnce(io::Error) -> CopyError {
    let path = Path::new(path.as_ref()).to_string_lossy().into_owned();
    move |source| CopyError::Io { op, path, source }
}

fn errno(op: &'static str, path: impl AsRef<OsStr>) -> impl FnOnce(rustix::io::Errno) -> CopyError {
    let f = io_err(op, path);
    move |e| f(e.into())
}

/// Copy `sources` (paths inside `src_root`) to `dest` (absolute inside
/// `dest_root`; a trailing `/` means "a directory").
pub fn copy(
    src_root: &Path,
    sources: &[String],
    dest_root: &Path,
    dest: &str,
    opts: &CopyOptions,
) -> Result<CopyStats, CopyError> {
    let src = Root::open(src_root).map_err(|source| CopyError::OpenRoot {
        path: src_root.into(),
        source,
    })?;
    let dst = Root::open(dest_root).map_err(|source| CopyError::OpenRoot {
        path: dest_root.into(),
        source,
    })?;
    let filter = Filter::new(&opts.exclude, &opts.context_ignore)?;
    if sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    let spec = SelectSpec {
        allow_wildcard: opts.allow_wildcard,
        allow_empty: opts.allow_empty_wildcard,
        follow: opts.follow_symlinks,
        parents: opts.parents,
        filter: &filter,
    };
    let selected = expand_sources(&src, sources, &spec)?;
    if selected.is_empty() {
        if opts.allow_empty_wildcard {
            return Ok(CopyStats::default());
        }
        return Err(CopyError::NotFound {
            path: sources.join(" "),
        });
    }

    let dest_comps = clean(OsStr::new(dest));
    let dir_syntax =
        dest.is_empty() || dest.ends_with('/') || dest.ends_with("/.") || dest_comps.is_empty();
    let plan = MetaPlan {
        chown: opts.chown,
        chmod: opts.chmod.as_ref(),
        timestamp: opts.timestamp,
        preserve_mtime: opts.preserve_mtime,
    };
    let mut cx = Ctx {
        src: &src,
        dst: &dst,
        plan,
        filter: &filter,
        base: String::new(),
        links: HashMap::new(),
        created: Vec::new(),
        stats: CopyStats::default(),
        contents: ContentCopier::default(),
        src_dir: None,
        dest_dir: None,
        creds: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
    };

    // Several sources need a directory: checked before anything is created.
    if (selected.len() > 1 || opts.parents) && !dir_syntax {
        let (canon, _) = dst
            .canonicalize(join(&dest_comps).as_os_str(), true)
            .map_err(io_err("resolve", dest))?;
        if !stat_in(&dst, &canon).is_some_and(|s| is_dir(&s)) {
            return Err(CopyError::DestNotDir {
                dest: dest.to_string(),
            });
        }
    }

    // Parents of the destination (or the destination itself for `dir/`).
    let ensure: &[OsString] = if dir_syntax {
        &dest_comps
    } else {
        &dest_comps[..dest_comps.len().saturating_sub(1)]
    };
    let (ensure_canon, exists) = dst
        .canonicalize(join(ensure).as_os_str(), true)
        .map_err(io_err("resolve", dest))?;
    let ensured = if opts.create_dest_path {
        Some(cx.mkdir_parents(&ensure_canon, dest)?)
    } else {
        None
    };
    if !opts.create_dest_path && !exists {
        return Err(CopyError::DestParentMissing {
            dest: dest.to_string(),
        });
    }
    // Resolved again: creating the parents may have realised a dangling link.
    let (dest_canon, _) = dst
        .canonicalize(join(&dest_comps).as_os_str(), true)
        .map_err(io_err("resolve", dest))?;
    if let Some(fd) = ensured
        && dest_canon == ensure_canon
    {
        cx.remember_dest_dir(ensure_canon, fd);
    }
    for sel in &selected {
        cx.copy_selected(sel, &dest_canon, opts)?;
    }
    cx.fix_created_times()?;
    Ok(cx.stats)
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// `stat` (following nothing: the path is canonical) of a path in a root.
fn stat_in(root: &Root, comps: &[OsString]) -> Option<Stat> {
    let fd = root.open_canonical(comps, OFlags::PATH).ok()?;
    rustix::fs::fstat(&fd).ok()
}

struct Ctx<'a> {
    src: &'a Root,
    dst: &'a Root,
    plan: MetaPlan<'a>,
    filter: &'a Filter,
    /// Path (in the source root) of the source being copied, for `.dockerignore`.
    base: String,
    /// (dev, ino) of a multiply-linked source file → where we copied it.
    links: HashMap<(u64, u64), Vec<OsString>>,
    /// Parent directories this copy created (their times are fixed last).
    created: Vec<Vec<OsString>>,
    stats: CopyStats,
    /// `copy_file_range` or its fallback, with what this copy learned.
    contents: ContentCopier,
    /// Our effective uid and gid: the owner of what we create.
    creds: (u32, u32),
    /// The last source directory a selection was read from. Wildcard
    /// matches mostly share their parent: it is opened once, not once per
    /// match.
    src_dir: Option<(Vec<OsString>, Rc<OwnedFd>)>,
    /// The last destination directory made sure of (it exists and is a
    /// directory: this copy created or checked it, and a copy never
    /// removes a directory), with [`DestDir::new_owner`] for it.
    dest_dir: Option<CachedDir>,
}

/// An open destination directory, by canonical path.
struct CachedDir {
    path: Vec<OsString>,
    fd: Rc<OwnedFd>,
    new_owner: Option<(u32, u32)>,
}

impl Ctx<'_> {
    /// `MkdirAll` with mode 0755, new directories owned by `--chown` and
    /// given the forced timestamp, like BuildKit's.
    fn mkdir_parents(&mut self, canon: &[OsString], dest: &str) -> Result<OwnedFd, CopyError> {
        let chown = self.plan.chown;
        let ts = self.plan.timestamp;
        let created = &mut self.created;
        let mut on_create = |dir: BorrowedFd<'_>, name: &OsStr, i: usize| -> io::Result<()> {
            created.push(canon[..=i].to_vec());
            if let Some((u, g)) = chown {
                rustix::fs::chownat(
                    dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(g)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            // mkdir is subject to the umask; make it exactly 0755.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o755), AtFlags::empty())?;
            if let Some(t) = ts {
                let ts = crate::meta::timestamps(t);
                rustix::fs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            Ok(())
        };
        self.dst
            .mkdir_all(canon, 0o755, &mut on_create)
            .map_err(io_err("create directory", dest))
    }

    /// With a forced timestamp, directories created for the destination got
    /// their mtime bumped by later entries; set it again, deepest first.
    fn fix_created_times(&mut self) -> Result<(), CopyError> {
        let Some(t) = self.plan.timestamp else {
            return Ok(());
        };
        let ts = crate::meta::timestamps(t);
        for comps in self.created.iter().rev() {
            let shown = join(comps);
            let fd = self
                .dst
                .open_canonical(comps, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(io_err("open directory", &shown))?;
            rustix::fs::futimens(&fd, &ts).map_err(errno("set times", &shown))?;
        }
        Ok(())
    }

    fn copy_selected(
        &mut self,
        sel: &Selected,
        dest_canon: &[OsString],
        opts: &CopyOptions,
    ) -> Result<(), CopyError> {
        let shown = join(&sel.named).to_string_lossy().into_owned();
        self.base = if sel.canon.is_empty() {
            String::new()
        } else {
            join(&sel.canon).to_string_lossy().into_owned()
        };
        let (src_dir, src_name) = self.src_parent(&sel.canon, &shown)?;
        let src_dir = src_dir.as_fd();
        let st =
            rustix::fs::statat(src_dir, &src_name, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| {
                CopyError::NotFound {
                    path: shown.clone(),
                }
            })?;
        let src_is_dir = is_dir(&st);
        if opts.unpack_archives && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
            let fd = rustix::fs::openat(
                src_dir,
                &src_name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno("open", &shown))?;
            let mut file = std::fs::File::from(fd);
            if let Some(c) = crate::unpack::detect(&mut file, &shown)? {
                let dfd = self.mkdir_parents(dest_canon, &shown)?;
                let s = crate::unpack::extract(&mut file, c, dfd, self.plan.chown, &shown)?;
                self.stats.files += s.files;
                self.stats.dirs += s.dirs;
                self.stats.symlinks += s.symlinks;
                self.stats.hardlinks += s.hardlinks;
                self.stats.special += s.special;
                self.stats.bytes += s.bytes;
                return Ok(());
            }
        }

        // Where does it go?
        let mut target: Vec<OsString> = dest_canon.to_vec();
        if opts.parents {
            let rel = &sel.named[sel.pivot.min(sel.named.len())..];
            if !(src_is_dir && opts.dir_contents_only && rel.is_empty()) {
                self.make_parent_dirs(sel, &mut target, rel)?;
            }
        } else {
            // `Some(is a directory)` when the destination exists.
            let dest_st = if self.dest_dir.as_ref().is_some_and(|c| c.path == dest_canon) {
                Some(true)
            } else {
                stat_in(self.dst, dest_canon).map(|st| is_dir(&st))
            };
            let base = sel
                .named
                .last()
                .cloned()
                .unwrap_or_else(|| OsString::from("."));
            if ((!opts.dir_contents_only && src_is_dir && dest_st.is_some())
                || (!src_is_dir && dest_st == Some(true)))
                && base != "."
            {
                target.push(base);
            }
            let parent_only = !(opts.dir_contents_only && src_is_dir && dest_st.is_none());
            let ensure = if parent_only {
                &target[..target.len().saturating_sub(1)]
            } else {
                &target[..]
            };
            let ensure = ensure.to_vec();
            if self.dest_dir.as_ref().is_none_or(|c| c.path != ensure) {
                let fd = self.mkdir_parents(&ensure, &shown)?;
                self.remember_dest_dir(ensure, fd);
            }
        }
        let Some(name) = target.last().cloned() else {
            // The destination is the root itself: merge a directory into it.
            if !src_is_dir {
                return Err(CopyError::ReplaceDirWithFile { path: "/".into() });
            }
            let sfd = open_dir(src_dir, &src_name, &shown)?;
            let dfd = open_dir(self.dst.fd(), OsStr::new("."), "/")?;
            let dst = DestDir {
                fd: dfd.as_fd(),
                path: &[],
                new_owner: self.new_owner_in(dfd.as_fd()),
            };
            return self.copy_dir_children(sfd.as_fd(), &dst, "", &shown);
        };
        let parent = &target[..target.len() - 1];
        let (dparent, new_owner) = match &self.dest_dir {
            Some(c) if c.path == parent => (c.fd.clone(), c.new_owner),
            _ => {
                let fd = self
                    .dst
                    .open_dir(parent)
                    .map_err(io_err("open directory", join(parent)))?;
                let new_owner = self.new_owner_in(fd.as_fd());
                (Rc::new(fd), new_owner)
            }
        };
        let dst = DestDir {
            fd: dparent.as_fd(),
            path: parent,
            new_owner,
        };
        self.copy_entry(src_dir, &src_name, &st, &dst, &name, "", false)
    }

    /// Keep `fd`, the directory at canonical `path` that this copy made
    /// sure of, for the selections that follow.
    fn remember_dest_dir(&mut self, path: Vec<OsString>, fd: OwnedFd) {
        let new_owner = self.new_owner_in(fd.as_fd());
        self.dest_dir = Some(CachedDir {
            path,
            fd: Rc::new(fd),
            new_owner,
        });
    }

    /// `--parents`: create `target/rel[..-1]` from the source's own parent
    /// directories (their mode, owner or `--chown`, times) and push `rel`.
    fn make_parent_dirs(
        &mut self,
        sel: &Selected,
        target: &mut Vec<OsString>,
        rel: &[OsString],
    ) -> Result<(), CopyError> {
        let mut src_prefix: Vec<OsString> = sel.named[..sel.pivot.min(sel.named.len())].to_vec();
        for (i, comp) in rel.iter().enumerate() {
            src_prefix.push(comp.clone());
            if i + 1 == rel.len() {
                target.push(comp.clone());
                break;
            }
            // Resolved inside the root like any destination component: an
            // existing directory (or a symlink to one) is reused, a dangling
            // symlink leads to where its target would be.
            let (resolved, exists) = self
                .dst
                .canonicalize(join(target).join(comp).as_os_str(), true)
                .map_err(io_err("resolve", join(target).join(comp)))?;
            *target = resolved;
            let Some(comp) = target.last().cloned() else {
                continue; // resolved to the root itself
            };
            if exists {
                continue;
            }
            let (canon, _) = self
                .src
                .canonicalize(join(&src_prefix).as_os_str(), true)
                .map_err(io_err("resolve", join(&src_prefix)))?;
            let sst = stat_in(self.src, &canon);
            let parent = &target[..target.len() - 1];
            let pfd = self.mkdir_parents(parent, &join(parent).to_string_lossy())?;
            match rustix::fs::mkdirat(&pfd, &comp, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    if let Some(sst) = sst {
                        let dfd = open_dir(pfd.as_fd(), &comp, &join(target).to_string_lossy())?;
                        self.plan
                            .apply_fd(dfd.as_fd(), &sst, true)
                            .map_err(io_err("set metadata", join(&*target)))?;
                    }
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno("create directory", join(&*target))(e)),
            }
        }
        Ok(())
    }

    /// Open the parent of a canonical source path (or reuse the last one
    /// opened); returns it and the name.
    fn src_parent(
        &mut self,
        canon: &[OsString],
        shown: &str,
    ) -> Result<(Rc<OwnedFd>, OsString), CopyError> {
        let (parent, name) = match canon.split_last() {
            Some((name, parent)) => (parent, name.clone()),
            // The source root itself: use `.` relative to the root.
            None => (canon, OsString::from(".")),
        };
        if let Some((path, fd)) = &self.src_dir
            && path == parent
        {
            return Ok((fd.clone(), name));
        }
        let fd = self.src.open_dir(parent).map_err(|e| {
            if parent.is_empty() {
                io_err("open", shown)(e)
            } else {
                CopyError::NotFound {
                    path: shown.to_string(),
                }
            }
        })?;
        let fd = Rc::new(fd);
        self.src_dir = Some((parent.to_vec(), fd.clone()));
        Ok((fd, name))
    }
}
