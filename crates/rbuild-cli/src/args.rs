//! Command-line arguments, as buildx spells them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// rbuild: build container images from Dockerfiles.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    /// State directory (default: /var/lib/rbuild as root, $XDG_DATA_HOME/rbuild otherwise).
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
    /// Show what uses disk space: snapshots, blobs, cache mounts.
    Du(crate::prune::DuArgs),
    /// Remove build cache (never what a running build uses).
    Prune(crate::prune::PruneArgs),
    /// List the images of the local store.
    Images(crate::images::ImagesArgs),
    /// Remove names from the local store (blobs stay until `prune`).
    Rmi(crate::images::RmiArgs),
    /// Give a local image another name.
    Tag(crate::images::TagArgs),
    /// Push a local image to its registry.
    Push(crate::images::PushArgs),
    /// Write local images to a tar archive (docker-archive or OCI).
    Save(crate::images::SaveArgs),
    /// Read images from a tar archive into the local store.
    Load(crate::images::LoadArgs),
    /// Run a local image in the sandbox (its writes are discarded).
    Run(crate::images::RunArgs),
    /// Log in to a registry (credentials saved in ~/.docker/config.json, shared with docker).
    Login(crate::login::LoginArgs),
    /// Remove a registry's saved credentials.
    Logout(crate::login::LogoutArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name and optionally tag of the image (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: `PATH/Dockerfile`; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Extra named build context (`name=DIR` or `name=docker-image://REF`).
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// The target platform (`os/arch[/variant]`).
    #[arg(long)]
    pub platform: Option<String>,
    /// Set a label on the image (`KEY=VALUE`).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages (names or indexes; repeatable, comma-separated).
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Network of RUN steps that do not set one: default, none, host (host needs `--allow network.host`).
    #[arg(long)]
    pub network: Option<String>,
    /// How many steps may run at once.
    #[arg(long = "max-parallelism")]
    pub max_parallelism: Option<usize>,
    /// ssh agent socket for RUN --mount=type=ssh and ssh git remotes in ADD (`default`, `ID=SOCKET`).
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Ask registries again for the base images' tags.
    #[arg(long)]
    pub pull: bool,
    /// Push the image to its registry (`--output type=registry`).
    #[arg(long)]
    pub push: bool,
    /// Keep the image in the local store (`--output type=image`; the default with `-t`).
    #[arg(long)]
    pub load: bool,
    /// Output destination (`type=image|registry|oci|docker|local|tar[,dest=PATH|-][,name=…][,push=true]`,
    /// `compression=gzip|zstd|uncompressed`, `compression-level=N`, `force-compression=true`,
    /// `oci-mediatypes=false`; a bare `DIR` is `type=local,dest=DIR`).
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Secret to expose to RUN --mount=type=secret (`id=ID,src=FILE` or `id=ID,env=VAR`).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Allow extra privileges (`network.host`, `security.insecure`).
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// Progress output: auto, tty, plain, rawjson, quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "tty", "plain", "rawjson", "quiet"])]
    pub progress: String,
    /// Only print the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID (config digest) to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON) to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
}
