//! The local image store, as the CLI and embedders see it: list, tag,
//! remove, push, save and run images that builds stored by name.
//!
//! The engine keeps the names (see `rbuild_solver::LocalImage`); this
//! module adds what users do with them. Nothing here prints: `run_image`
//! hands the process's output to a callback and returns its exit code.

use crate::{Builder, Error};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::export::ExportImage;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_sandbox::stdio::window_size;
use rbuild_sandbox::{OutputStream, Rootfs, RunSpec, Stdio};
use rbuild_solver::{Event, LocalImage, ProgressSink, SolveOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// What [`Builder::load_images`] did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The names stored, one record each.
    pub stored: Vec<LocalImage>,
    /// Images of the archive that carry no name (the local store keeps
    /// only named images); their blobs were imported all the same.
    pub unnamed: Vec<rbuild_oci::digest::Digest>,
}

/// The archive format of [`Builder::save_images`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SaveFormat {
    /// What `docker save` writes and `docker load` reads.
    #[default]
    Docker,
    /// An OCI image layout in a tar (`skopeo`'s `oci-archive:`).
    Oci,
}

/// The network of a [`RunRequest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunNetwork {
    /// Own network namespace with outbound access (as RUN steps get).
    #[default]
    Default,
    /// Own network namespace with only loopback.
    None,
    /// The host's network.
    Host,
}

/// What `rbuild run` asks for.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// An image name or ID prefix of the local store.
    pub image: String,
    /// Replaces the image's `Cmd` when not empty.
    pub args: Vec<String>,
    /// Replaces the image's `Entrypoint` when set (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries set over the image's `Env`.
    pub env: Vec<String>,
    /// Replaces the image's `User`.
    pub user: Option<String>,
    /// Replaces the image's `WorkingDir`.
    pub workdir: Option<String>,
    pub network: RunNetwork,
    /// `docker run -i`: the process reads this process's standard input
    /// (otherwise `/dev/null`). A terminal is relayed through a pipe, never
    /// handed to the sandbox, which could change its modes or keep reading
    /// it after the run.
    pub stdin: bool,
    /// `docker run -t`: the process's stdin, stdout, stderr and controlling
    /// terminal are a pseudo-terminal made inside the sandbox, sized like
    /// ours; its master goes to the `terminal` sender of
    /// [`Builder::run_image`], whose caller relays it (with `stdin`, what
    /// the user types; always, what the process writes). Sets `TERM=xterm`
    /// unless the image or `env` set `TERM`, as docker does.
    pub tty: bool,
    /// Host paths bound into the container (`-v`, `--mount type=bind`);
    /// see [`RunRequest::add_volume`].
    pub volumes: Vec<RunVolume>,
    /// Host ports forwarded to the container (`-p`); see
    /// [`RunRequest::add_port`]. Ignored with [`RunNetwork::Host`] (the
    /// container has the host's ports already; the CLI warns, as docker
    /// does), refused with [`RunNetwork::None`].
    pub ports: Vec<rbuild_sandbox::PortForward>,
}

/// A host file or directory bound into a [`RunRequest`]'s container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunVolume {
    /// Absolute, canonical host path (it existed when the request was made).
    pub source: std::path::PathBuf,
    /// Absolute path in the container, resolved inside its root filesystem
    /// by the sandbox (a symlink in the image cannot lead it out);
    /// missing directories are created in the run's throwaway layer.
    pub target: String,
    pub readonly: bool,
}

impl RunRequest {
    /// Adds a `-v HOST:CONTAINER[:ro|rw]` bind. `HOST` must exist; a
    /// relative one is taken from `cwd` (docker 23+ does the same for
    /// `./dir`; a bare name would be a named volume, which we do not have).
    pub fn add_volume(&mut self, spec: &str, cwd: &Path) -> Result<(), Error> {
        let bad = |why: &str| Error::Invalid(format!("invalid volume `{spec}`: {why}\nhint: -v HOST_PATH:CONTAINER_PATH[:ro]"));
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, target, opts) = match parts.as_slice() {
            [host, target] => (*host, *target, ""),
            [host, target, opts] => (*host, *target, *opts),
            [_] => return Err(bad("anonymous volumes are not supported; bind a host path")),
            _ => return Err(bad("too many `:`")),
        };
        let mut readonly = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" | "readonly" => readonly = true,
                "rw" => readonly = false,
                other => return Err(bad(&format!("unknown option `{other}` (ro and rw are)"))),
            }
        }
        if !host.starts_with(['/', '.', '~']) {
            return Err(bad(&format!("`{host}` would be a named volume, which rbuild does not have; write `./{host}` for a relative path")));
        }
        self.push_volume(host, target, readonly, cwd).map_err(|why| bad(&why))
    }

    /// Adds a `--mount type=bind,source=HOST,target=PATH[,readonly]`, as
    /// docker spells it (`src`, `dst`/`destination`, `ro`,
    /// `readonly=true|false`). Only `type=bind` exists here.
    pub fn add_mount(&mut self, spec: &str, cwd: &Path) -> Result<(), Error> {
        let bad = |why: &str| Error::Invalid(format!("invalid mount `{spec}`: {why}\nhint: --mount type=bind,source=HOST_PATH,target=CONTAINER_PATH[,readonly]"));
        let (mut kind, mut source, mut target, mut readonly) = (None, None, None, false);
        for field in spec.split(',').filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (field, None),
            };
            match (key, value) {
                ("type", Some(v)) => kind = Some(v),
                ("source" | "src", Some(v)) => source = Some(v),
                ("target" | "dst" | "destination", Some(v)) => target = Some(v),
                ("readonly" | "ro", None | Some("true" | "1")) => readonly = true,
                ("readonly" | "ro", Some("false" | "0")) => readonly = false,
                _ => return Err(bad(&format!("unknown field `{field}`"))),
            }
        }
        match kind {
            Some("bind") => {}
            Some(other) => return Err(bad(&format!("type `{other}` is not supported (bind is)"))),
            None => return Err(bad("no `type=`")),
        }
        let (Some(source), Some(target)) = (source, target) else {
            return Err(bad("a bind needs `source=` and `target=`"));
        };
        self.push_volume(source, target, readonly, cwd).map_err(|why| bad(&why))
    }

    fn push_volume(&mut self, host: &str, target: &str, readonly: bool, cwd: &Path) -> Result<(), String> {
        if !target.starts_with('/') {
            return Err(format!("the container path `{target}` is not absolute"));
        }
        if target.split('/').all(|c| c.is_empty() || c == "." || c == "..") {
            return Err("the container path cannot be `/`".into());
        }
        let host_path = match host.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map(|h| Path::new(&h).join(rest)).ok_or("`~` needs $HOME")?,
            None => cwd.join(host.strip_prefix("./").unwrap_or(host)),
        };
        let source = std::fs::canonicalize(&host_path)
            .map_err(|e| format!("the host path `{}`: {e}", host_path.display()))?;
        self.volumes.push(RunVolume { source, target: target.to_string(), readonly });
        Ok(())
    }

    /// Adds a `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]` forward.
    /// The host address defaults to `127.0.0.1` (docker's is `0.0.0.0`:
    /// reaching a test container from other machines should be asked
    /// for). IPv4 only, no ranges, no random host port: what slirp4netns
    /// forwards.
    pub fn add_port(&mut self, spec: &str) -> Result<(), Error> {
        let bad = |why: &str| Error::Invalid(format!("invalid port mapping `{spec}`: {why}\nhint: -p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"));
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((r, "tcp")) => (r, rbuild_sandbox::Protocol::Tcp),
            Some((r, "udp")) => (r, rbuild_sandbox::Protocol::Udp),
            Some((_, p)) => return Err(bad(&format!("unknown protocol `{p}` (tcp and udp are)"))),
            None => (spec, rbuild_sandbox::Protocol::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (addr, host_port, guest_port) = match parts.as_slice() {
            [h, g] => ("127.0.0.1", *h, *g),
            [a, h, g] => (*a, *h, *g),
            [_] => return Err(bad("a host port is needed (rbuild picks none)")),
            _ => return Err(bad("IPv6 host addresses are not supported")),
        };
        let port = |p: &str, what: &str| -> Result<u16, Error> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("`{p}` is not a {what} port (1-65535; ranges are not supported)"))),
            }
        };
        let host_addr: std::net::Ipv4Addr = if addr.is_empty() { std::net::Ipv4Addr::UNSPECIFIED } else {
            addr.parse().map_err(|_| bad(&format!("`{addr}` is not an IPv4 address")))?
        };
        self.ports.push(rbuild_sandbox::PortForward {
            protocol,
            host_addr: host_addr.into(),
            host_port: port(host_port, "host")?,
            guest_port: port(guest_port, "container")?,
        });
        Ok(())
    }
}

/// Where [`Builder::run_image`] hands the master of a `tty` run's terminal.
pub type TerminalSender = tokio::sync::oneshot::Sender<OwnedFd>;

impl Builder {
    /// Every image of the local store, by name.
    pub fn images(&self) -> Result<Vec<LocalImage>, Error> {
        Ok(self.engine().local_images()?)
    }

    /// A local image by name (`app`, `app:1`) or ID prefix.
    pub fn image(&self, name: &str) -> Result<LocalImage, Error> {
        Ok(self.engine().find_local_image(name)?)
    }

    /// Gives a local image another name.
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<LocalImage, Error> {
        Ok(self.engine().tag_local_image(src, dst)?)
    }

    /// Removes a name from the local store (given an image ID: its only
    /// name, or all its names with `all_names`); the blobs stay until
    /// `prune`. Returns what was removed.
    pub fn remove_image(&self, name: &str, all_names: bool) -> Result<Vec<LocalImage>, Error> {
        Ok(self.engine().remove_local_image(name, all_names)?)
    }

    /// Pushes a local image to the registry its name points at (or to
    /// `dest`, a full name, when given). Returns the image and the
    /// reference pushed to.
    pub async fn push_image(
        &self,
        name: &str,
        dest: Option<&str>,
        progress: ProgressSink,
    ) -> Result<(LocalImage, Reference), Error> {
        let engine = self.engine();
        let image = engine.find_local_image(name)?;
        let target = match dest {
            Some(d) => rbuild_solver::normalise_name(d)?,
            None => rbuild_solver::normalise_name(&image.name)?,
        };
        let sink = progress.clone();
        engine
            .registry
            .push(
                &target,
                &image.manifest,
                &engine.state.content,
                &rbuild_registry::PushOptions::default(),
                &move |p| {
                    sink.emit(Event::Progress {
                        vertex: String::new(),
                        id: format!("push {}", p.digest),
                        current: p.done,
                        total: Some(p.total),
                        time_ms: rbuild_solver::now_ms(),
                    })
                },
            )
            .await
            .map_err(|e| Error::Registry(format!("push {target}: {}", rbuild_solver::chain(&e))))?;
        Ok((image, target))
    }

    /// Writes the named local images into one archive. Several names of one
    /// image are all recorded for it.
    pub fn save_images(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<(), Error> {
        if names.is_empty() {
            return Err(Error::Invalid("save: no image given\nhint: rbuild save NAME… -o FILE".into()));
        }
        let engine = self.engine();
        let mut exports: Vec<ExportImage> = Vec::new();
        let mut platform: Option<Platform> = None;
        for n in names {
            let image = engine.find_local_image(n)?;
            // A name as given keeps its tag; an ID saves every name it has.
            let names: Vec<String> = if image.name == reference_string(n) {
                vec![image.name.clone()]
            } else {
                engine
                    .local_images()?
                    .into_iter()
                    .filter(|i| i.manifest.digest == image.manifest.digest)
                    .map(|i| i.name)
                    .collect()
            };
            platform.get_or_insert_with(|| Platform::parse(&image.platform).unwrap_or_else(|_| Platform::host()));
            match exports.iter_mut().find(|e| e.descriptor.digest == image.manifest.digest) {
                Some(e) => {
                    for n in names {
                        if !e.names.contains(&n) {
                            e.names.push(n);
                        }
                    }
                }
                None => exports.push(ExportImage { descriptor: image.manifest.clone(), names }),
            }
        }
        let store = &engine.state.content;
        let result = match format {
            SaveFormat::Docker => rbuild_oci::export::write_docker_tar(store, out, &exports, platform.as_ref()).map(drop),
            SaveFormat::Oci => rbuild_oci::export::write_oci_tar(store, out, &exports).map(drop),
        };
        result.map_err(|e| Error::Invalid(format!("save: {}", rbuild_solver::chain(&e))))
    }

    /// Reads an archive of images (what `rbuild save` writes, in either
    /// format; also skopeo's `oci-archive:`, `docker buildx -o type=oci`
    /// and `docker save` of Docker 25+, which all hold an OCI layout) into
    /// the content store and names its images in the local store. Plain,
    /// gzip and zstd archives are read.
    ///
    /// The archive is hostile input: it is unpacked with the layer code's
    /// containment into a scratch dir of the state dir, and only blobs
    /// reachable from its `index.json` are imported, each checked against
    /// its digest and size.
    pub fn load_images(&self, input: &mut dyn std::io::Read) -> Result<LoadReport, Error> {
        use rbuild_oci::layer::{ApplyOptions, WhiteoutMode, apply_layer};
        let engine = self.engine();
        let tmp = &engine.state.tmp;
        let scratch = tempfile::Builder::new().prefix("load-").tempdir_in(tmp).map_err(|e| Error::io(tmp, e))?;
        let mut head = [0u8; 4];
        let mut filled = 0;
        while filled < head.len() {
            match input.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Invalid(format!("load: reading the archive: {e}"))),
            }
        }
        let media_type = match &head[..filled] {
            [0x1f, 0x8b, ..] => rbuild_oci::media_types::OCI_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => rbuild_oci::media_types::OCI_LAYER_ZSTD,
            _ => rbuild_oci::media_types::OCI_LAYER_TAR,
        };
        let reader = std::io::Read::chain(&head[..filled], input);
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, can_mknod: false, preserve_owners: false };
        apply_layer(std::io::BufReader::new(reader), media_type, scratch.path(), &opts)
            .map_err(|e| Error::Invalid(format!("load: cannot unpack the archive: {}", rbuild_solver::chain(&e))))?;
        if !scratch.path().join("index.json").is_file() {
            return Err(Error::Invalid(
                "load: the archive has no `index.json`, so it is not an OCI image layout\nhint: archives from `rbuild save`, skopeo, buildx and Docker 25+ `docker save` can be loaded".into(),
            ));
        }
        let store = &engine.state.content;
        let entries = rbuild_oci::export::import_oci_layout(store, scratch.path())
            .map_err(|e| Error::Invalid(format!("load: {}", rbuild_solver::chain(&e))))?;
        let host = Platform::host();
        let mut report = LoadReport::default();
        for entry in entries {
            let manifest = rbuild_oci::export::resolve_platform(store, &entry.descriptor, &host)
                .map_err(|e| Error::Invalid(format!("load: {}", rbuild_solver::chain(&e))))?;
            // A bare OCI ref name (`latest`, from skopeo) is a tag, not a name.
            let ref_name = entry.descriptor.annotation(rbuild_oci::descriptor::ANNOTATION_REF_NAME);
            let names: Vec<Reference> = entry
                .names
                .iter()
                .filter(|n| ref_name != Some(n.as_str()) || n.contains(['/', ':']))
                .filter_map(|n| rbuild_solver::normalise_name(n).ok())
                .collect();
            if names.is_empty() {
                report.unnamed.push(manifest.digest);
                continue;
            }
            let bytes = store.read_all(&manifest.digest).map_err(|e| Error::Invalid(format!("load: {e}")))?;
            let parsed = rbuild_oci::manifest::ImageManifest::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("load: manifest {}: {e}", manifest.digest)))?;
            let image = rbuild_solver::ExportedImage { manifest, config: parsed.config };
            report.stored.extend(engine.store_image(&names, &image)?);
        }
        Ok(report)
    }

    /// Runs a local image in the sandbox, the way `docker run --rm` would:
    /// the image's rootfs as an overlay over its layer snapshots (unpacked
    /// from the content store when needed), its Entrypoint/Cmd/Env/User/
    /// WorkingDir, writes discarded afterwards. Returns the exit code
    /// (128 + signal when killed).
    ///
    /// Streams, as `docker run` connects them: without `tty`, the process
    /// writes straight to this process's stdout and stderr (binary-safe, no
    /// copy), except where one is a terminal: that output comes to `output`
    /// instead, so the sandbox never holds the user's terminal. With `tty`,
    /// everything goes through the pty whose master is sent to `terminal`
    /// (required then).
    pub async fn run_image(
        &self,
        req: &RunRequest,
        progress: ProgressSink,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
        terminal: Option<TerminalSender>,
    ) -> Result<i32, Error> {
        let stdio = run_stdio(req, terminal)
            .map_err(|e| Error::Invalid(format!("run {}: {e}", req.image)))?;
        let engine = self.engine();
        // For the lease protocol: what this run uses is kept from GC.
        let _guard = engine.begin_build().map_err(rbuild_solver::SolveError::from)?;
        let image = engine.find_local_image(&req.image)?;
        let config_digest = rbuild_oci::digest::Digest::parse(&image.config_digest)
            .map_err(|e| Error::Invalid(format!("image `{}`: {e}", image.familiar_name())))?;
        let config_bytes = engine
            .state
            .content
            .read_all(&config_digest)
            .map_err(|e| Error::Invalid(format!("image `{}`: {}", image.familiar_name(), rbuild_solver::chain(&e))))?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::Invalid(format!("image `{}`: config: {e}", image.familiar_name())))?;
        let mut spec = run_spec(&config, req).map_err(|m| Error::Invalid(format!("run {}: {m}", image.familiar_name())))?;
        let opts = SolveOptions { progress, ..SolveOptions::default() };
        let top = engine.image_rootfs(&image, opts).await?;
        let parent = top.map(rbuild_snapshot::SnapshotId::new).transpose().map_err(rbuild_solver::SolveError::from)?;
        let snapshots = &engine.state.snapshots;
        // Dropping the active snapshot (never committed) discards the writes.
        let active = snapshots.prepare(parent.as_ref()).map_err(rbuild_solver::SolveError::from)?;
        spec.rootfs = Rootfs::Overlay {
            lowerdirs: active.lowers.clone(),
            upperdir: active.upper.clone(),
            workdir: active.work.clone(),
        };
        spec.platform_arch = Some(Platform::parse(&image.platform).map(|p| p.architecture).unwrap_or_default())
            .filter(|a| !a.is_empty());
        let result = engine.executor.run_with(&spec, stdio.stdio, output).await;
        drop(stdio.relay);
        drop(active);
        let result = result.map_err(|e| Error::Invalid(format!("run {}: sandbox: {}", image.familiar_name(), rbuild_solver::chain(&e))))?;
        Ok(result.code())
    }
}

/// The sandbox streams of a run, and the stdin relay to stop when it ends.
struct RunStdio {
    stdio: Stdio,
    relay: Option<StdinRelay>,
}

/// How `req` connects the process's streams to ours (see [`RunRequest`]).
fn run_stdio(req: &RunRequest, terminal: Option<TerminalSender>) -> std::io::Result<RunStdio> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    if req.tty {
        let master = terminal.ok_or_else(|| std::io::Error::other("a tty run needs a terminal receiver"))?;
        let size = window_size(stdout.as_fd()).or_else(|| window_size(stdin.as_fd()));
        return Ok(RunStdio { stdio: Stdio::Tty { size, master }, relay: None });
    }
    // Output to a terminal stays on the callback path; anything else is
    // handed over as is.
    let pass = |fd: BorrowedFd<'_>| -> std::io::Result<Option<OwnedFd>> {
        if is_terminal(fd) { Ok(None) } else { fd.try_clone_to_owned().map(Some) }
    };
    let (stdin_fd, relay) = if !req.stdin {
        (None, None)
    } else if is_terminal(stdin.as_fd()) {
        let (fd, relay) = StdinRelay::start()?;
        (Some(fd), Some(relay))
    } else {
        (Some(stdin.as_fd().try_clone_to_owned()?), None)
    };
    let stdio = Stdio::Fds { stdin: stdin_fd, stdout: pass(stdout.as_fd())?, stderr: pass(stderr.as_fd())? };
    Ok(RunStdio { stdio, relay })
}

fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    std::io::IsTerminal::is_terminal(&fd)
}

/// Copies a terminal stdin into a pipe for the sandbox, in a thread that
/// polls so that it stops (dropping this) without waiting for a keystroke.
/// The terminal stays in its own mode: lines arrive as the user ends them.
struct StdinRelay {
    _stop: OwnedFd,
}

impl StdinRelay {
    fn start() -> std::io::Result<(OwnedFd, Self)> {
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (read_end, write_end) = nix::unistd::pipe2(cloexec)?;
        let (stop_r, stop_w) = nix::unistd::pipe2(cloexec)?;
        std::thread::Builder::new().name("rbuild-stdin".into()).spawn(move || relay_stdin(&write_end, &stop_r))?;
        Ok((read_end, Self { _stop: stop_w }))
    }
}

fn relay_stdin(to: &OwnedFd, stop: &OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        if fds[0].revents().is_none_or(|r| r.is_empty()) {
            continue;
        }
        let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match nix::unistd::write(to, rest) {
                Ok(w) => rest = &rest[w..],
                Err(nix::Error::EINTR) => {}
                // The process closed its stdin or is gone.
                Err(_) => return,
            }
        }
    }
}

/// The normalised form of a name, or the input when it is not one.
fn reference_string(input: &str) -> String {
    Reference::parse(input).map(|r| r.to_string()).unwrap_or_else(|_| input.to_string())
}

/// The process spec for `req` on an image with `config`, without its root.
pub(crate) fn run_spec(config: &ImageConfig, req: &RunRequest) -> Result<RunSpec, String> {
    let c = &config.config;
    let mut args: Vec<String> = req.entrypoint.clone().or_else(|| c.entrypoint.clone()).unwrap_or_default();
    if !req.args.is_empty() {
        args.extend(req.args.iter().cloned());
    } else if req.entrypoint.is_none() {
        // Docker drops the image's Cmd when --entrypoint replaces its Entrypoint.
        args.extend(c.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err("the image has no Entrypoint or Cmd and no command was given\nhint: rbuild run IMAGE COMMAND…".into());
    }
    let mut env: Vec<String> = c.env.clone().unwrap_or_default();
    for kv in &req.env {
        // `-e KEY` (take our value) is the client's to resolve: a daemon's
        // environment is not the user's.
        let Some((key, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid environment entry `{kv}`\nhint: use -e KEY=VALUE"));
        };
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, rbuild_sandbox::spec::DEFAULT_PATH_ENV.to_string());
    }
    let cwd = req.workdir.clone().or_else(|| c.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(format!("working directory `{cwd}` is not absolute"));
    }
    let port_forwards = match req.network {
        RunNetwork::None if !req.ports.is_empty() => {
            return Err("ports cannot be published with `--network none`".into());
        }
        // The host's ports are the container's already.
        RunNetwork::Host => Vec::new(),
        _ => req.ports.clone(),
    };
    let mounts = req
        .volumes
        .iter()
        .map(|v| rbuild_sandbox::Mount {
            target: v.target.clone(),
            kind: rbuild_sandbox::MountKind::Bind { source: v.source.clone(), readonly: v.readonly },
        })
        .collect();
    Ok(RunSpec {
        args,
        env,
        cwd,
        user: req.user.clone().or_else(|| c.user.clone()).unwrap_or_default(),
        hostname: "rbuild".into(),
        network: match req.network {
            RunNetwork::Default => rbuild_sandbox::Network::Sandbox,
            RunNetwork::None => rbuild_sandbox::Network::None,
            RunNetwork::Host => rbuild_sandbox::Network::Host,
        },
        mounts,
        port_forwards,
        ..RunSpec::default()
    })
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>, env: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        c.config.entrypoint = entrypoint.map(owned);
        c.config.cmd = cmd.map(owned);
        c.config.env = Some(owned(env));
        c.config.user = Some("1000".into());
        c.config.working_dir = Some("/app".into());
        c
    }

    #[test]
    fn cmd_is_replaced_and_entrypoint_kept() {
        let c = config(Some(&["/entry"]), Some(&["default"]), &[]);
        let spec = run_spec(&c, &RunRequest::default()).unwrap();
        assert_eq!(spec.args, ["/entry", "default"]);
        let req = RunRequest { args: vec!["x".into()], ..RunRequest::default() };
        assert_eq!(run_spec(&c, &req).unwrap().args, ["/entry", "x"]);
        let req = RunRequest { entrypoint: Some(vec!["/other".into()]), ..RunRequest::default() };
        assert_eq!(run_spec(&c, &req).unwrap().args, ["/other"], "a new entrypoint drops the image's Cmd");
    }

    #[test]
    fn image_settings_are_used_and_overridden() {
        let c = config(None, Some(&["sh"]), &["PATH=/bin", "A=1", "B=2"]);
        let req = RunRequest { env: vec!["A=override".into(), "C=3".into()], ..RunRequest::default() };
        let spec = run_spec(&c, &req).unwrap();
        assert_eq!(spec.env, ["PATH=/bin", "B=2", "A=override", "C=3"]);
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("1000", "/app"));
        let req = RunRequest { user: Some("0".into()), workdir: Some("/tmp".into()), ..RunRequest::default() };
        let spec = run_spec(&c, &req).unwrap();
        assert_eq!((spec.user.as_str(), spec.cwd.as_str()), ("0", "/tmp"));
    }

    #[test]
    fn a_missing_path_gets_the_default_and_bad_input_is_refused() {
        let c = config(None, Some(&["sh"]), &[]);
        assert!(run_spec(&c, &RunRequest::default()).unwrap().env[0].starts_with("PATH="));
        let req = RunRequest { env: vec!["=x".into()], ..RunRequest::default() };
        assert!(run_spec(&c, &req).unwrap_err().contains("`=x`"));
        let req = RunRequest { env: vec!["NOVALUE".into()], ..RunRequest::default() };
        assert!(run_spec(&c, &req).unwrap_err().contains("`NOVALUE`"));
        let none = config(None, None, &[]);
        assert!(run_spec(&none, &RunRequest::default()).unwrap_err().contains("hint:"));
        let req = RunRequest { workdir: Some("rel".into()), ..RunRequest::default() };
        assert!(run_spec(&c, &req).is_err());
    }

    #[test]
    fn volumes_parse_as_docker_spells_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let canon = std::fs::canonicalize(dir.path()).unwrap();
        let mut req = RunRequest::default();
        req.add_volume("./data:/srv/data", dir.path()).unwrap();
        req.add_volume(&format!("{}:/f:ro", dir.path().join("file").display()), Path::new("/")).unwrap();
        req.add_mount("type=bind,src=data,dst=/m,readonly", dir.path()).unwrap();
        req.add_mount("type=bind,source=./file,target=/g,readonly=false", dir.path()).unwrap();
        let got: Vec<_> = req.volumes.iter().map(|v| (v.source.clone(), v.target.as_str(), v.readonly)).collect();
        assert_eq!(
            got,
            [
                (canon.join("data"), "/srv/data", false),
                (canon.join("file"), "/f", true),
                (canon.join("data"), "/m", true),
                (canon.join("file"), "/g", false),
            ]
        );
        let spec = run_spec(&config(None, Some(&["sh"]), &[]), &req).unwrap();
        assert_eq!(spec.mounts.len(), 4);
        assert_eq!(spec.mounts[1].kind, rbuild_sandbox::MountKind::Bind { source: canon.join("file"), readonly: true });
    }

    #[test]
    fn bad_volumes_are_refused_naming_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = RunRequest::default();
        for (bad, says) in [
            ("./missing:/x", "missing"),
            ("named:/x", "named volume"),
            ("/anon", "anonymous"),
            ("./:relative", "not absolute"),
            ("./:/", "cannot be `/`"),
            ("./:/x:z", "`z`"),
            ("./:/x:ro:extra", "too many"),
        ] {
            let e = req.add_volume(bad, dir.path()).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains(says), "{bad}: {e}");
        }
        for (bad, says) in [
            ("type=volume,src=v,dst=/x", "`volume`"),
            ("type=bind,dst=/x", "source="),
            ("src=.,dst=/x", "type="),
            ("type=bind,src=.,dst=/x,bogus=1", "`bogus=1`"),
        ] {
            let e = req.add_mount(bad, dir.path()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(req.volumes.is_empty());
    }

    #[test]
    fn ports_default_to_loopback_and_tcp() {
        use rbuild_sandbox::{PortForward, Protocol};
        let mut req = RunRequest::default();
        req.add_port("8080:80").unwrap();
        req.add_port("0.0.0.0:5353:53/udp").unwrap();
        req.add_port(":9000:9000/tcp").unwrap();
        let fwd = |protocol, addr: [u8; 4], host_port, guest_port| PortForward {
            protocol,
            host_addr: std::net::Ipv4Addr::from(addr).into(),
            host_port,
            guest_port,
        };
        assert_eq!(
            req.ports,
            [
                fwd(Protocol::Tcp, [127, 0, 0, 1], 8080, 80),
                fwd(Protocol::Udp, [0, 0, 0, 0], 5353, 53),
                fwd(Protocol::Tcp, [0, 0, 0, 0], 9000, 9000),
            ]
        );
        for bad in ["80", "0:80", "8080:70000", "8080-8081:80", "x:1:2", "1:2/sctp", "[::1]:1:2", "a:b:c:d"] {
            let e = req.add_port(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("hint:"), "{bad}: {e}");
        }
        assert_eq!(req.ports.len(), 3);
        let c = config(None, Some(&["sh"]), &[]);
        assert_eq!(run_spec(&c, &req).unwrap().port_forwards, req.ports);
        let host = RunRequest { network: RunNetwork::Host, ..req.clone() };
        assert!(run_spec(&c, &host).unwrap().port_forwards.is_empty(), "the host network has its ports");
        let none = RunRequest { network: RunNetwork::None, ..req };
        assert!(run_spec(&c, &none).unwrap_err().contains("--network none"));
    }

    #[test]
    fn a_tty_gets_term_unless_set() {
        let c = config(None, Some(&["sh"]), &["PATH=/bin"]);
        let tty = RunRequest { tty: true, ..RunRequest::default() };
        assert!(run_spec(&c, &tty).unwrap().env.contains(&"TERM=xterm".to_string()));
        assert!(!run_spec(&c, &RunRequest::default()).unwrap().env.iter().any(|e| e.starts_with("TERM=")));
        let own = RunRequest { tty: true, env: vec!["TERM=vt100".into()], ..RunRequest::default() };
        let env = run_spec(&c, &own).unwrap().env;
        assert_eq!(env.iter().filter(|e| e.starts_with("TERM=")).collect::<Vec<_>>(), ["TERM=vt100"]);
    }
}
