//! rbuild: build container images from Dockerfiles, in-process.
//!
//! This crate is the one entry point to the engine. The `rbuild` CLI, the
//! `rbuildd` daemon and programs that embed rbuild all call it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rbuild::Error> {
//! // First thing in main(), before any threads start (see `init`).
//! let _ns = rbuild::init()?;
//! let builder = rbuild::Builder::open(rbuild::BuilderOptions::default())?;
//! let mut req = rbuild::BuildRequest::new("./app");
//! req.tags.push("127.0.0.1:5000/app:latest".into());
//! req.outputs.push(rbuild::Output::Registry);
//! let result = builder.build(req, rbuild::ProgressSink::discard()).await?;
//! println!("{}", result.manifest.digest);
//! # Ok(()) }
//! ```

mod build;
mod config;
mod gc;
mod images;
/// `rbuild login` / `logout`.
pub mod login;
mod outputs;

pub use build::{BuildRequest, BuildResult, Output, unpack_context};
pub use config::{Config, ConfigError};
pub use rbuild_solver::{
    BlobEntry, CacheMountEntry, DiskUsage, GcError, PruneOptions, PruneReport, SizeUnits, SnapshotEntry,
    format_size, format_size_in, parse_duration, parse_size,
};
pub use images::{LoadReport, RunNetwork, RunRequest, RunVolume, SaveFormat, TerminalSender};
pub use rbuild_sandbox::{OutputStream, PortForward, Protocol, WindowSize};
pub use rbuild_solver::{ImageStoreError, LocalImage};
pub use rbuild_oci::config::parse_rfc3339;
pub use rbuild_oci::layer::Compression;
pub use rbuild_graph::Network;
pub use rbuild_oci::platform::Platform;
pub use rbuild_oci::reference::Reference;
pub use rbuild_sandbox::NamespaceInfo;
pub use rbuild_solver::{Engine, Entitlements, Event, ExportOptions, ProgressSink, Stream, now_ms};

use rbuild_registry::{ClientOptions, RegistryClient};
use rbuild_sandbox::{Executor, HelperCommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Errors of the rbuild API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Dockerfile(String),
    #[error(transparent)]
    Solve(#[from] rbuild_solver::SolveError),
    #[error("registry: {0}")]
    Registry(String),
    #[error("namespace setup: {0}")]
    Namespace(String),
    #[error("{path}: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Gc(#[from] rbuild_solver::GcError),
    #[error(transparent)]
    Image(#[from] rbuild_solver::ImageStoreError),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }
}

/// Prepares the process for building. Call it first in `main()`, before any
/// thread (or tokio runtime) starts:
/// - when the process was started as rbuild's sandbox helper, this runs the
///   helper and never returns;
/// - as root it moves the process into its own mount namespace; as an
///   unprivileged user it re-executes the program inside a user namespace
///   (subordinate ids from `/etc/subuid`), so that the build can mount
///   overlays and own files as any id.
pub fn init() -> Result<NamespaceInfo, Error> {
    rbuild_sandbox::helper::run_if_requested();
    rbuild_sandbox::process::enter_build_namespace().map_err(|e| Error::Namespace(e.to_string()))
}

/// How to open a [`Builder`].
#[derive(Clone, Debug, Default)]
pub struct BuilderOptions {
    /// The state dir; default: the config file's `root`, else
    /// `/var/lib/rbuild` for root and `$XDG_DATA_HOME/rbuild` otherwise.
    pub root: Option<PathBuf>,
    /// The config; default: read from the config file.
    pub config: Option<Config>,
    /// How to start the sandbox helper; default: this executable.
    pub helper: Option<HelperCommand>,
}

/// A handle on the engine. Cheap to clone; one per process is enough, and
/// any number of builds may run on it at once.
#[derive(Clone)]
pub struct Builder {
    engine: Arc<Engine>,
    config: Arc<Config>,
}

impl Builder {
    /// Opens the state dir and the engine.
    pub fn open(opts: BuilderOptions) -> Result<Self, Error> {
        let config = match opts.config {
            Some(c) => c,
            None => Config::load_default()?,
        };
        let root = opts
            .root
            .or_else(|| config.root.clone())
            .unwrap_or_else(|| rbuild_solver::State::default_root(real_uid()));
        let registry = RegistryClient::new(ClientOptions {
            config: config.registry.clone(),
            credentials: Arc::new(rbuild_registry::DockerConfigCredentials::from_env()),
            ..ClientOptions::default()
        })
        .map_err(|e| Error::Registry(e.to_string()))?;
        let helper = match opts.helper {
            Some(h) => h,
            None => HelperCommand::current_exe().map_err(|e| Error::Namespace(e.to_string()))?,
        };
        let engine = Engine::open(&root, registry, Executor::new(helper))?;
        Ok(Builder { engine, config: Arc::new(config) })
    }

    /// The engine, for operations beyond builds (du, prune, push).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// The uid that started us: inside the user namespace `init` made for an
/// unprivileged user we look like root, but the state dir is the user's.
fn real_uid() -> u32 {
    if in_initial_user_namespace() { nix::unistd::getuid().as_raw() } else { u32::MAX }
}

/// Whether we run in the host's user namespace, rather than in the one
/// [`init`] made for an unprivileged user.
pub(crate) fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}
