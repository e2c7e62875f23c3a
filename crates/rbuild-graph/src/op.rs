//! Operations: what a vertex does.
//!
//! Ops are plain data with a stable serde encoding; that encoding is hashed
//! into vertex digests, so renaming a field or variant changes every cache
//! key (bump deliberately). No hash maps: field order must be deterministic.

use serde::{Deserialize, Serialize};

/// What a vertex does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// The root filesystem of an image from a registry.
    Image(ImageSource),
    /// A local directory (the build context, or a named context).
    Context(ContextSource),
    /// Run a process (`RUN`) on top of input 0.
    Exec(ExecOp),
    /// File operations (`COPY`, `ADD`, `WORKDIR`'s mkdir) on top of input 0.
    File(FileOp),
    /// Stacks the filesystem of input 1, made on `Scratch`, as a layer of
    /// its own onto input 0 (`COPY --link`). The stacked layer does not
    /// depend on input 0, so a new base reuses it (and its blob) unchanged.
    Merge,
    /// A file downloaded over HTTP(S) (`ADD https://…`), alone in an
    /// otherwise empty filesystem.
    Http(HttpSource),
    /// A checkout of a git repository (`ADD <repo>.git#ref:subdir`), alone
    /// in an otherwise empty filesystem.
    Git(GitSource),
}

impl Op {
    /// The highest input index the op refers to, for validation.
    pub(crate) fn max_input_index(&self) -> Option<usize> {
        match self {
            Op::Scratch | Op::Image(_) | Op::Context(_) | Op::Http(_) | Op::Git(_) => None,
            Op::Merge => Some(1),
            Op::Exec(e) => {
                let mounts = e.mounts.iter().filter_map(|m| match &m.kind {
                    ExecMountKind::Bind { input, .. } => Some(*input),
                    ExecMountKind::Cache { input, .. } => *input,
                    _ => None,
                });
                Some(mounts.fold(0, usize::max))
            }
            Op::File(f) => {
                let sources = f.actions.iter().filter_map(|a| match a {
                    FileAction::Copy(c) => Some(c.source),
                    _ => None,
                });
                Some(sources.fold(0, usize::max))
            }
        }
    }

    /// Whether the op produces a filesystem layer on top of input 0.
    pub fn makes_layer(&self) -> bool {
        matches!(self, Op::Exec(_) | Op::File(_) | Op::Merge)
    }
}

/// An image root filesystem, pinned by manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// Canonical reference including the manifest digest,
    /// e.g. `127.0.0.1:5000/base@sha256:…` (a tag may precede the digest).
    pub reference: String,
    /// `os/arch[/variant]`.
    pub platform: String,
}

/// A file to download.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSource {
    /// `http://` or `https://` URL without credentials.
    pub url: String,
    /// `sha256:…` the content must have (`--checksum`); with it, a cached
    /// download is reused without asking the server.
    pub checksum: Option<String>,
    /// Name of the file in the snapshot: a plain base name of the URL path.
    pub filename: String,
    /// Credentials from the URL's `user:password@`. Never serialized: they
    /// are part of no digest, cache key, dump or log.
    #[serde(skip)]
    pub credentials: Option<Credentials>,
}

/// A git checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    /// The remote without credentials and without the `#` fragment.
    pub remote: String,
    /// Branch, tag or commit; the remote's default branch when `None`.
    pub reference: Option<String>,
    /// Only this directory of the checkout.
    pub subdir: Option<String>,
    /// Keep `.git` (`--keep-git-dir=true`).
    pub keep_git_dir: bool,
    /// Credentials from an `https://user:password@` remote. Never
    /// serialized, like [`HttpSource::credentials`].
    #[serde(skip)]
    pub credentials: Option<Credentials>,
}

/// Basic-auth credentials; `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(redacted)")
    }
}

/// A local directory source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSource {
    /// `context` for the main build context, else the named context's name.
    pub name: String,
    /// `.dockerignore` patterns in effect; they decide which files exist.
    pub exclude_patterns: Vec<String>,
}

/// Network mode of an exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Own network namespace with outbound access through a user-mode stack.
    #[default]
    Sandbox,
    /// Only a loopback interface.
    None,
    /// The host's network (needs the `network.host` entitlement).
    Host,
}

/// Security mode of an exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    #[default]
    Sandbox,
    /// Full capabilities (needs the `security.insecure` entitlement).
    Insecure,
}

/// Run a process with input 0 as its root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `user[:group]`, by name or id, resolved inside the rootfs at run time.
    pub user: String,
    pub network: Network,
    pub security: Security,
    pub mounts: Vec<ExecMount>,
    /// `os/arch[/variant]` the process runs for.
    pub platform: String,
    /// Proxy variables from `--build-arg HTTP_PROXY=…` and friends: given to
    /// the process but, as in BuildKit, not part of the digest (a proxy
    /// change must not invalidate the cache) nor of the image history.
    #[serde(skip)]
    pub proxy_env: Vec<String>,
}

/// A mount added to an exec's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMount {
    pub target: String,
    pub kind: ExecMountKind,
}

/// Cache mount sharing mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// The kinds of `RUN --mount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecMountKind {
    /// A path of another vertex's filesystem (`input` indexes the vertex's inputs).
    Bind { input: usize, source: String, readonly: bool },
    /// A persistent cache directory, seeded from `input`/`source` on creation.
    Cache {
        id: String,
        sharing: CacheSharing,
        input: Option<usize>,
        source: String,
        readonly: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs { size: Option<u64> },
    /// A build secret; only its id is part of the digest, never its value.
    Secret { id: String, env: Option<String>, required: bool, mode: u32, uid: u32, gid: u32 },
    /// An ssh agent socket forwarded from the client.
    Ssh { id: String, required: bool, mode: u32, uid: u32, gid: u32 },
}

/// File operations applied in order to a copy of input 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

/// Owner for created files: `user[:group]` by name or id, resolved in the
/// destination root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chown(pub String);

/// One file operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir { path: String, mode: u32, parents: bool, chown: Option<Chown> },
    Mkfile { path: String, mode: u32, data: Vec<u8>, chown: Option<Chown> },
    Rm { path: String, allow_not_found: bool },
}

/// Copy paths from input `source` into the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    /// Index into the vertex's inputs.
    pub source: usize,
    /// Source paths (may hold wildcards), relative to the source root.
    pub paths: Vec<String>,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: String,
    pub chown: Option<Chown>,
    /// Octal (`755`) or symbolic mode for everything copied.
    pub chmod: Option<String>,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// Follow a symlink named directly as a source path.
    pub follow_symlinks: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    pub create_dest_path: bool,
    /// `ADD`: a local tar archive is extracted into `dest` instead of copied.
    pub unpack_archives: bool,
}

impl CopyAction {
    /// A copy of exactly the named `paths` of input `source` to `dest`
    /// (no wildcards, no symlink followed, nothing unpacked, no owner or
    /// mode change), creating missing parents of `dest`: the common base
    /// that callers adjust with struct-update syntax.
    pub fn literal(source: usize, paths: Vec<String>, dest: String) -> CopyAction {
        CopyAction {
            source,
            paths,
            dest,
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            parents: false,
            follow_symlinks: false,
            allow_wildcard: false,
            allow_empty_wildcard: false,
            create_dest_path: true,
            unpack_archives: false,
        }
    }
}
