//! The rbuild engine core: runs a build graph against the state dir.
//!
//! [`Engine`] owns the state dir (content store, snapshots, metadata DB), the
//! registry client and the sandbox executor. [`Engine::solve`] runs the
//! vertices a build needs — in parallel where the graph allows, each at most
//! once, cached by content — and [`Engine::export_image`] turns a result into
//! an image in the content store. Frontends and transports (the Dockerfile
//! converter, the CLI, the daemon) sit on top; nothing here parses a
//! Dockerfile.

mod db;
mod exec;
mod export;
mod file;
mod gc;
mod git;
mod http;
mod image;
mod images;
mod keylock;
mod lease;
mod merge;
mod mounts;
mod progress;
mod solve;
mod state;
mod statcache;

pub use db::{Db, DbError, ImageRecord, LayerRecord, SnapshotUsage, UNSIZED};
pub use export::{ExportOptions, ExportedImage};
pub use gc::{
    BlobEntry, CacheMountEntry, DiskUsage, GcError, PruneOptions, PruneReport, SizeUnits, SnapshotEntry,
    UnitError, format_size, format_size_in, parse_duration, parse_size,
};
pub use images::{ImageStoreError, LocalImage, normalise_name};
pub use lease::{BuildGuard, Lease, LeaseError, LiveLease};
pub use progress::{Event, ProgressSink, Stream, now_ms};
pub use solve::{Output, Solved};
pub use state::{State, StateError};
pub use statcache::{DbStatCache, StatCacheError};

use rbuild_graph::{Graph, VertexId};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::manifest::ImageManifest;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_registry::RegistryClient;
use rbuild_sandbox::Executor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of a solve.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("{0}")]
    Shared(Arc<SolveError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    StatCache(#[from] StatCacheError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] rbuild_snapshot::SnapshotError),
    #[error("mount: {0}")]
    Mount(#[from] rbuild_snapshot::MountError),
    #[error("{path}: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    #[error("image `{reference}`: {message}")]
    Image { reference: String, message: String },
    #[error("layer {digest}: {message}")]
    Layer { digest: String, message: String },
    #[error("no build context named `{0}` was provided")]
    MissingContext(String),
    #[error("build context: {message}")]
    Context { message: String },
    #[error("{message}")]
    File { message: String },
    #[error("mount `{target}`: {message}")]
    RunMount { target: String, message: String },
    #[error("{step}: process {command:?} did not complete successfully: {status}{}", format_tail(.tail))]
    ProcessFailed { step: String, command: Vec<String>, status: String, tail: Vec<String> },
    #[error("{step}: sandbox: {message}")]
    Sandbox { step: String, message: String },
    #[error("this step needs the `{0}` entitlement\nhint: start the build with --allow {0}")]
    Entitlement(&'static str),
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    #[error("export: {message}")]
    Export { message: String },
    #[error("registry: {message}")]
    Registry { message: String },
    #[error("download `{url}`: {message}")]
    Download { url: String, message: String },
    #[error("git `{remote}`: {message}")]
    Git { remote: String, message: String },
    #[error("build cancelled")]
    Cancelled,
}

/// An error and its causes on one line (`a: b: c`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

fn format_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nlast output:");
    for line in tail {
        s.push_str("\n  ");
        s.push_str(line);
    }
    s
}

impl SolveError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SolveError::Io { path: path.display().to_string(), source }
    }

    /// The innermost error (unwrapping errors shared between waiters).
    pub fn root(&self) -> &SolveError {
        match self {
            SolveError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}

/// What a build is allowed beyond the sandbox defaults (`--allow`).
#[derive(Clone, Debug, Default)]
pub struct Entitlements {
    pub network_host: bool,
    pub security_insecure: bool,
}

/// Per-solve inputs that are not part of the graph.
#[derive(Clone, Debug)]
pub struct SolveOptions {
    /// Local directories by context name (`context` is the main one).
    pub contexts: BTreeMap<String, PathBuf>,
    /// Secret values by id; never written to disk or logs.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// ssh agent sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `known_hosts` lines the servers of ssh git remotes must match; when
    /// `None` any host key is accepted (as BuildKit's Dockerfile `ADD`).
    pub ssh_known_hosts: Option<String>,
    pub entitlements: Entitlements,
    pub max_parallelism: usize,
    pub progress: ProgressSink,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            contexts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            ssh_known_hosts: None,
            entitlements: Entitlements::default(),
            // Most steps wait on I/O or a single core; BuildKit sets no cap at all.
            max_parallelism: std::thread::available_parallelism().map(|n| n.get() * 4).unwrap_or(8).max(16),
            progress: ProgressSink::discard(),
        }
    }
}

/// The engine: one per process, shared by every build it runs.
pub struct Engine {
    pub state: State,
    pub registry: RegistryClient,
    pub executor: Executor,
    /// File digests by stat identity, persistent across processes.
    pub(crate) stat_cache: Arc<DbStatCache>,
    /// This process's scratch dir inside the state dir's `tmp/`.
    pub(crate) tmp: PathBuf,
    /// Keeps garbage collection away from what this process uses.
    pub(crate) lease: Lease,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.lease.release(&self.state.db.conn());
    }
}

impl Engine {
    /// Opens the state dir and wires the engine's parts.
    pub fn open(root: &Path, registry: RegistryClient, executor: Executor) -> Result<Arc<Self>, SolveError> {
        let state = State::open(root)?;
        let tmp = state.process_tmp().map_err(|e| SolveError::io(&state.tmp, e))?;
        let executor = executor.with_run_dir(tmp.join("sandbox"));
        let lease = Lease::acquire(&state.root, &state.db.conn())?;
        let stat_cache = Arc::new(DbStatCache::open(&state.root.join("metadata.db"))?);
        Ok(Arc::new(Engine { state, registry, executor, stat_cache, tmp, lease }))
    }

    /// Solves `roots` of `graph`; returns their results in order.
    pub async fn solve(
        self: &Arc<Self>,
        graph: Arc<Graph>,
        roots: &[VertexId],
        opts: SolveOptions,
    ) -> Result<Vec<Arc<Solved>>, SolveError> {
        let limit = Arc::new(tokio::sync::Semaphore::new(opts.max_parallelism.max(1)));
        let ctx = Arc::new(solve::Ctx { engine: self.clone(), graph, opts: Arc::new(opts), limit });
        let result = solve::solve(ctx, roots).await;
        // Digests learnt while hashing contexts outlive this process.
        let cache = self.stat_cache.clone();
        let flushed = tokio::task::spawn_blocking(move || cache.flush()).await;
        if let Ok(Err(e)) = flushed {
            tracing::debug!(error = %e, "stat cache flush");
        }
        result
    }

    /// The snapshot recorded for a key, if it still exists on disk.
    pub fn cached(&self, key: &str) -> Result<Option<String>, SolveError> {
        match self.state.db.lookup(key)? {
            Some(s) if self.state.snapshots.exists(&sid(&s)?) => Ok(Some(s)),
            _ => Ok(None),
        }
    }

    /// Records a committed snapshot under `key`; when another build recorded
    /// the key first, removes ours and returns theirs. The snapshot's size is
    /// not measured here (a walk of every file it holds, on the critical path
    /// of every build): GC and `du` measure it when they first need it.
    pub(crate) fn record(
        &self,
        key: &str,
        snapshot: &str,
        parent: Option<&str>,
        empty: bool,
        description: &str,
        replace: bool,
    ) -> Result<String, SolveError> {
        let id = sid(snapshot)?;
        let winner = self.state.db.record(key, snapshot, parent, empty, description, replace)?;
        if winner != snapshot {
            self.state.snapshots.remove(&id)?;
        }
        Ok(winner)
    }

    /// Commits an active snapshot made by a vertex and records it.
    pub(crate) async fn commit_snapshot(
        self: &Arc<Self>,
        active: rbuild_snapshot::Active,
        key: &str,
        parent: Option<&str>,
        description: &str,
        replace: bool,
    ) -> Result<String, SolveError> {
        let engine = self.clone();
        let (key, parent, description) = (key.to_string(), parent.map(str::to_string), description.to_string());
        tokio::task::spawn_blocking(move || {
            let snapshot = engine.state.snapshots.commit(active)?;
            let diff = engine.state.snapshots.diff_dir(&snapshot)?;
            let empty = dir_is_empty(&diff).map_err(|e| SolveError::io(&diff, e))?;
            engine.record(&key, snapshot.as_str(), parent.as_deref(), empty, &description, replace)
        })
        .await
        .map_err(|_| SolveError::Cancelled)?
    }

    /// The manifest and config of a pinned image reference (`name@digest`),
    /// from the content store or else from its registry.
    pub async fn manifest_and_config(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(ImageManifest, ImageConfig), SolveError> {
        let image_err = |message: String| SolveError::Image { reference: reference.to_string(), message };
        let store = &self.state.content;
        let have = |d: &rbuild_oci::digest::Digest| store.contains(d);
        let manifest_bytes = match &reference.digest {
            Some(d) if have(d) => store.read_all(d).map_err(|e| image_err(crate::chain(&e)))?,
            _ => {
                let resolved = self
                    .registry
                    .resolve(reference, platform, store)
                    .await
                    .map_err(|e| image_err(crate::chain(&e)))?;
                resolved.manifest_bytes
            }
        };
        let manifest = ImageManifest::from_slice(&manifest_bytes).map_err(|e| image_err(crate::chain(&e)))?;
        let config_digest = &manifest.config.digest;
        if !have(config_digest) {
            self.registry
                .fetch_blob(reference, &manifest.config, store, &rbuild_registry::no_progress)
                .await
                .map_err(|e| image_err(crate::chain(&e)))?;
        }
        let config_bytes = store.read_all(config_digest).map_err(|e| image_err(crate::chain(&e)))?;
        let (manifest, config) =
            image::parse_manifest_and_config(&manifest_bytes, &config_bytes).map_err(image_err)?;
        Ok((manifest, config))
    }

    /// Resolves an image name (`busybox`, `host:5000/app:1`) for a platform
    /// to a pinned reference and its config. A name resolved before is not
    /// asked of the registry again unless `pull` is set.
    pub async fn resolve_image(
        &self,
        name: &str,
        platform: &Platform,
        pull: bool,
    ) -> Result<(Reference, ImageConfig), SolveError> {
        let image_err = |message: String| SolveError::Image { reference: name.to_string(), message };
        let reference = Reference::parse(name).map_err(|e| image_err(crate::chain(&e)))?;
        let platform_key = platform.to_string();
        let db_name = reference.to_string();
        // A name built here wins over the registry (`--pull` asks it).
        if !pull && let Some(local) = self.local_base_image(&reference, platform).map_err(|e| image_err(crate::chain(&e)))? {
            return Ok(local);
        }
        if reference.digest.is_none()
            && !pull
            && let Some(rec) = self.state.db.image(&db_name, &platform_key)?
        {
            let digest = rbuild_oci::digest::Digest::parse(&rec.manifest_digest).map_err(|e| image_err(crate::chain(&e)))?;
            if self.state.content.contains(&digest) {
                let config: ImageConfig =
                    serde_json::from_slice(&rec.config).map_err(|e| image_err(crate::chain(&e)))?;
                return Ok((reference.with_digest(digest), config));
            }
        }
        let resolved = self
            .registry
            .resolve(&reference, platform, &self.state.content)
            .await
            .map_err(|e| image_err(crate::chain(&e) + &self.local_image_hint(&reference, platform, pull)))?;
        // Pin the platform's manifest (not the index): the graph names
        // exactly the filesystem it builds on.
        let manifest_digest = resolved.manifest_descriptor.digest.clone();
        let pinned = reference.with_digest(manifest_digest.clone());
        // `resolve` has stored and parsed manifest and config already; keep
        // the config's raw bytes (never re-serialised).
        let rec = ImageRecord { manifest_digest: manifest_digest.to_string(), config: resolved.config_bytes };
        self.state.db.put_image(&db_name, &platform_key, &rec)?;
        Ok((pinned, resolved.config))
    }
}

/// A snapshot id from the metadata DB.
pub(crate) fn sid(s: &str) -> Result<rbuild_snapshot::SnapshotId, SolveError> {
    Ok(rbuild_snapshot::SnapshotId::new(s)?)
}

/// Prepares a snapshot on top of `parent` (a DB id).
pub(crate) fn prepare(engine: &Engine, parent: Option<&str>) -> Result<rbuild_snapshot::Active, SolveError> {
    let parent = parent.map(sid).transpose()?;
    Ok(engine.state.snapshots.prepare(parent.as_ref())?)
}

fn dir_is_empty(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}
