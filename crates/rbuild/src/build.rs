//! One build: Dockerfile → graph → solve → image → outputs.

use crate::{Builder, Error};
use rbuild_dockerfile::convert::{BaseImage, ConvertOptions, NamedContext};
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::platform::Platform;
use rbuild_solver::{Entitlements, ExportOptions, ProgressSink, SolveOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a built image goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Push every tag of the request to its registry (`--push`).
    Registry,
    /// An OCI image layout in a tar (`type=oci,dest=`). For the tar
    /// outputs, a `dest` of `-` means standard output.
    /// `names` (`name=`) are recorded for the image; the request's tags
    /// when empty.
    OciTar { dest: PathBuf, names: Vec<String> },
    /// A tar that `docker load` accepts (`type=docker,dest=`).
    DockerTar { dest: PathBuf, names: Vec<String> },
    /// The root filesystem as files (`type=local,dest=`), written into the
    /// directory (existing files are kept or overwritten, as buildx).
    Local { dest: PathBuf },
    /// The root filesystem as one tar (`type=tar,dest=`).
    Tar { dest: PathBuf },
    /// The local image store (`--load`, `type=image`): `names`, or the
    /// request's tags when empty. `FROM`, `rbuild run`, `save` and `push`
    /// find it there by name.
    Image { names: Vec<String> },
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; default `<context>/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's contents, when it does not come from a file (`-f -`).
    pub dockerfile_contents: Option<Vec<u8>>,
    pub build_args: BTreeMap<String, String>,
    /// `--build-context name=DIR` or `name=docker-image://REF`.
    pub build_contexts: BTreeMap<String, String>,
    pub target: Option<String>,
    /// The platform to build for; default: this machine's.
    pub platform: Option<Platform>,
    /// Image names (`-t`).
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Stages (names or indexes) whose steps run again (`--no-cache-filter`).
    pub no_cache_filter: Vec<String>,
    /// `--network=default|none|host`: the network of RUN steps that do not
    /// set one (`host` needs the `network.host` entitlement).
    pub network: Option<rbuild_graph::Network>,
    /// Steps run at once (default: the config file's, else a machine default).
    pub max_parallelism: Option<usize>,
    /// ssh agent sockets by id (`--ssh default=$SSH_AUTH_SOCK`).
    pub ssh: BTreeMap<String, PathBuf>,
    /// `known_hosts` lines that the servers of `ADD` ssh git remotes must
    /// match (checked strictly when given; any host key otherwise, as
    /// BuildKit's Dockerfile frontend, which passes none).
    pub ssh_known_hosts: Option<String>,
    /// Ask registries again for base image tags.
    pub pull: bool,
    pub outputs: Vec<Output>,
    pub secrets: BTreeMap<String, Vec<u8>>,
    pub entitlements: Entitlements,
    pub export: ExportOptions,
}

impl BuildRequest {
    /// A request with defaults for the context at `context`.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildRequest {
            context: context.into(),
            dockerfile: None,
            dockerfile_contents: None,
            build_args: BTreeMap::new(),
            build_contexts: BTreeMap::new(),
            target: None,
            platform: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            max_parallelism: None,
            network: None,
            ssh: BTreeMap::new(),
            ssh_known_hosts: None,
            pull: false,
            outputs: Vec::new(),
            secrets: BTreeMap::new(),
            entitlements: Entitlements::default(),
            export: ExportOptions::default(),
        }
    }
}

/// Unpacks a build context sent as a tar (plain, gzip or zstd; `rbuild
/// build -`) into a new temporary directory, with the same containment as
/// ADD's archive extraction: no entry can land outside the directory.
pub fn unpack_context(mut tar: impl std::io::Read) -> Result<tempfile::TempDir, Error> {
    let tmp = tempfile::Builder::new().prefix("rbuild-context.").tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
    let archive = tmp.path().join("context.tar");
    let context = tmp.path().join("context");
    let mut f = std::fs::File::create(&archive).map_err(|e| Error::io(&archive, e))?;
    std::io::copy(&mut tar, &mut f).map_err(|e| Error::io(&archive, e))?;
    std::fs::create_dir(&context).map_err(|e| Error::io(&context, e))?;
    let opts = rbuild_fileop::CopyOptions { unpack_archives: true, ..rbuild_fileop::CopyOptions::dockerfile() };
    rbuild_fileop::copy(tmp.path(), &["context.tar".to_string()], &context, "/", &opts)
        .map_err(|e| Error::Invalid(format!("build context from standard input: {e}")))?;
    std::fs::remove_file(&archive).map_err(|e| Error::io(&archive, e))?;
    Ok(tmp)
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildResult {
    /// The image manifest (in the state dir's content store). Without an
    /// image (`image` false) it describes the root filesystem that was
    /// written (media type `application/vnd.oci.image.layer.v1.tar`, not in
    /// the content store): the `type=tar` output's digest and size, or,
    /// with only `type=local`, the OCI ChainID of the layers it applied
    /// (the image's ChainID, for layers built here) and their size.
    pub manifest: Descriptor,
    /// The image config; without an image, the same root filesystem
    /// descriptor as `manifest`.
    pub config: Descriptor,
    /// Whether the build made an image. It makes none when every output
    /// takes only the root filesystem (`type=local`, `type=tar`) and no
    /// tag was given, as buildx: those outputs are written straight from
    /// the build's snapshots, with no layer blob made.
    pub image: bool,
    /// The names the image was pushed or saved as.
    pub names: Vec<String>,
    /// Warnings from the frontend (unused build args, …).
    pub warnings: Vec<String>,
}

/// `SOURCE_DATE_EPOCH` as an RFC 3339 time, when set.
fn source_date_epoch() -> Option<String> {
    let secs = std::env::var("SOURCE_DATE_EPOCH").ok()?.parse::<i64>().ok()?;
    Some(rbuild_oci::config::rfc3339_utc(secs))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The `.dockerignore` that applies: `<Dockerfile>.dockerignore` beside the
/// Dockerfile wins over the context's `.dockerignore`.
fn ignore_patterns(context: &Path, dockerfile: Option<&Path>) -> Result<Vec<String>, Error> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        candidates.push(PathBuf::from(name));
    }
    candidates.push(context.join(".dockerignore"));
    for c in candidates {
        if c.is_file() {
            let text = String::from_utf8_lossy(&read(&c)?).into_owned();
            let patterns = rbuild_dockerfile::ignore::parse_dockerignore(&text)
                .map_err(|e| Error::Dockerfile(format!("{}: {e}", c.display())))?;
            let text = patterns.iter().map(|p| if p.exception { format!("!{}", p.pattern) } else { p.pattern.clone() });
            return Ok(text.collect());
        }
    }
    Ok(Vec::new())
}

impl Builder {
    /// Runs one build.
    pub async fn build(&self, req: BuildRequest, progress: ProgressSink) -> Result<BuildResult, Error> {
        let result = self.build_inner(req, &progress).await;
        // The cap applies after every build (also a failed one: its
        // snapshots are gone, but earlier ones may now be over the cap).
        match self.auto_gc().await {
            Ok(_) => {}
            Err(e) => progress.warn(format!("automatic GC: {e}")),
        }
        result
    }

    async fn build_inner(&self, req: BuildRequest, progress: &ProgressSink) -> Result<BuildResult, Error> {
        let engine = self.engine().clone();
        // Everything this build looks up or makes is protected from a
        // concurrent prune until it ends.
        let _lease = engine.begin_build().map_err(rbuild_solver::SolveError::from)?;
        if let rbuild_snapshot::Backend::Copy { reason } = engine.state.snapshots.backend() {
            progress.warn(format!(
                "overlayfs is not usable here ({reason}); snapshots are full copies, which is slower and uses more disk"
            ));
        }
        let dockerfile_path = req.dockerfile.clone().unwrap_or_else(|| req.context.join("Dockerfile"));
        let (source, file_name) = match &req.dockerfile_contents {
            Some(bytes) => (bytes.clone(), "Dockerfile".to_string()),
            None => (read(&dockerfile_path)?, dockerfile_path.display().to_string()),
        };
        let dockerfile =
            rbuild_dockerfile::parse(&source, &file_name).map_err(|e| Error::Dockerfile(e.to_string()))?;
        let platform = req.platform.clone().unwrap_or_else(Platform::host);
        let excludes = ignore_patterns(&req.context, req.dockerfile_contents.is_none().then_some(&dockerfile_path))?;
        let mut named = BTreeMap::new();
        let mut contexts = BTreeMap::new();
        contexts.insert("context".to_string(), req.context.clone());
        for (name, value) in &req.build_contexts {
            if let Some(image) = value.strip_prefix("docker-image://") {
                named.insert(name.clone(), NamedContext::Image(image.to_string()));
            } else if value.contains("://") {
                return Err(Error::Invalid(format!(
                    "--build-context {name}={value}: only local directories and docker-image:// are supported"
                )));
            } else {
                named.insert(name.clone(), NamedContext::Local);
                contexts.insert(name.clone(), PathBuf::from(value));
            }
        }
        let opts = ConvertOptions {
            named_contexts: named,
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            target_platform: platform.to_string(),
            build_platform: Platform::host().to_string(),
            labels: req.labels.clone(),
            no_cache: req.no_cache,
            no_cache_filter: req.no_cache_filter.clone(),
            default_network: req.network,
            context_excludes: excludes,
            created: source_date_epoch(),
        };
        let mut images = BTreeMap::new();
        for (name, plat) in rbuild_dockerfile::convert::required_images(&dockerfile, &opts)
            .map_err(|e| Error::Dockerfile(e.to_string()))?
        {
            let p = Platform::parse(&plat).map_err(|e| Error::Invalid(e.to_string()))?;
            let (pinned, config) = engine.resolve_image(&name, &p, req.pull).await?;
            images.insert((name, plat), BaseImage { reference: pinned.to_string(), config });
        }
        let plan = rbuild_dockerfile::convert::convert(&dockerfile, &opts, &images)
            .map_err(|e| Error::Dockerfile(e.to_string()))?;
        for w in &plan.warnings {
            progress.warn(w.clone());
        }
        let mut solve_opts = SolveOptions {
            contexts,
            secrets: req.secrets.clone(),
            ssh: req.ssh.clone(),
            entitlements: req.entitlements.clone(),
            progress: progress.clone(),
            max_parallelism: req
                .max_parallelism
                .or(self.config().max_parallelism)
                .unwrap_or(SolveOptions::default().max_parallelism),
            ..SolveOptions::default()
        };
        solve_opts.ssh_known_hosts.clone_from(&req.ssh_known_hosts);
        let solved = engine.solve(Arc::new(plan.graph), &[plan.target], solve_opts).await?;
        let top = solved[0].snapshot().map(str::to_string);
        let bases: Vec<rbuild_oci::reference::Reference> =
            images.values().filter_map(|b| rbuild_oci::reference::Reference::parse(&b.reference).ok()).collect();
        let result = export(&engine, &req, top.as_deref(), plan.config, &bases, progress).await?;
        Ok(BuildResult { warnings: plan.warnings, ..result })
    }
}

/// Makes the image (unless the outputs need none) and writes every output.
async fn export(
    engine: &Arc<rbuild_solver::Engine>,
    req: &BuildRequest,
    top: Option<&str>,
    config: rbuild_oci::config::ImageConfig,
    bases: &[rbuild_oci::reference::Reference],
    progress: &ProgressSink,
) -> Result<BuildResult, Error> {
    if !crate::outputs::needs_image(req) {
        let written = crate::outputs::write(engine, req, top, None, bases, progress).await?;
        let rootfs = written.rootfs.ok_or_else(|| Error::Invalid("no root filesystem output was written".into()))?;
        let (manifest, config) = (rootfs.clone(), rootfs);
        return Ok(BuildResult { manifest, config, image: false, names: written.names, warnings: Vec::new() });
    }
    let step = crate::outputs::ExportStep::start(progress, "exporting to image");
    step.item_begin("exporting layers");
    let image = match engine.export_image(top.map(str::to_string), config, req.export.clone()).await {
        Ok(image) => image,
        Err(e) => return step.finish(Err(e.into())),
    };
    step.item("exporting layers");
    let written = crate::outputs::write(engine, req, top, Some((&image, step)), bases, progress).await?;
    Ok(BuildResult { manifest: image.manifest, config: image.config, image: true, names: written.names, warnings: Vec::new() })
}
