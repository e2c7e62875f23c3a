//! `rbuild images`, `rmi`, `tag`, `push`, `save` and `run`: the local
//! image store. Data goes to stdout, notes to stderr.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rbuild::{
    BuilderOptions, LocalImage, OutputStream, ProgressSink, RunNetwork, RunRequest, SaveFormat,
    parse_rfc3339,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::render::text;

mod terminal;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (`app`, `host:5000/team/app`), or this name (`app:1`).
    pub filter: Option<String>,
    /// Output format: a table, or one JSON object per line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Only print image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Given an image ID, remove all its names.
    #[arg(short, long)]
    pub force: bool,
    /// Image names (or ID prefixes) to remove from the local store.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// An image of the local store (name or ID prefix).
    pub source: String,
    /// The new name (`name[:tag]`).
    pub target: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A local image whose name includes the registry (`host:5000/app:1`).
    pub name: String,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ArchiveFormat {
    /// What `docker load` reads.
    #[default]
    Docker,
    /// An OCI image layout in a tar.
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save (names or ID prefixes).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Write to this file (default: standard output when it is not a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker")]
    pub format: ArchiveFormat,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read this archive (default: standard input when it is not a terminal).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum NetworkArg {
    /// Own network namespace with outbound access.
    #[default]
    Default,
    /// Loopback only.
    None,
    /// The host's network.
    Host,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Accepted for docker compatibility: a run's writes are always discarded.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass ours).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Network: default, none, host.
    #[arg(long, value_enum, default_value = "default")]
    pub network: NetworkArg,
    /// Replace the image's entrypoint (`""` clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep standard input open: the process reads ours (`docker run -i`).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal for the process (`docker run -t`; with
    /// `-i`, our terminal is in raw mode for the run and keys go to the process).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run as this user (`name`, `uid`, `uid:gid`).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<PathBuf>,
    /// Bind a host file or directory (`HOST_PATH:CONTAINER_PATH[:ro|rw]`;
    /// a relative host path is taken from the current directory).
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Bind a host path, docker's long form (`type=bind,source=HOST_PATH,target=CONTAINER_PATH[,readonly]`).
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// Forward a host port to the container (`[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`).
    /// The host address defaults to 127.0.0.1 (docker's is 0.0.0.0).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// The image (name or ID prefix).
    pub image: String,
    /// The command (replaces the image's Cmd).
    #[arg(allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `5 minutes ago`, as docker prints ages.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..60 => return "Less than a minute ago".into(),
        60..3600 => (s / 60, "minute"),
        3600..86_400 => (s / 3600, "hour"),
        86_400..604_800 => (s / 86_400, "day"),
        604_800..2_592_000 => (s / 604_800, "week"),
        2_592_000..31_536_000 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn short_id(image: &LocalImage) -> String {
    image.config_digest.strip_prefix("sha256:").unwrap_or(&image.config_digest).chars().take(12).collect()
}

/// The table of `rbuild images`.
pub fn table(images: &[LocalImage], now: i64) -> String {
    let rows: Vec<[String; 5]> = images
        .iter()
        .map(|i| {
            let created = i.created.as_deref().and_then(parse_rfc3339).map(|t| human_age(now - t));
            [
                i.familiar_name(),
                short_id(i),
                i.manifest.digest.short().to_string(),
                created.unwrap_or_else(|| "N/A".into()),
                text::size(i.size),
            ]
        })
        .collect();
    let header = ["NAME", "IMAGE ID", "DIGEST", "CREATED", "SIZE"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn json_line(i: &LocalImage) -> serde_json::Value {
    let (repository, tag) = match i.familiar_name().rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (i.familiar_name(), String::new()),
    };
    serde_json::json!({
        "Name": i.name,
        "Repository": repository,
        "Tag": tag,
        "ID": i.config_digest,
        "Digest": i.manifest.digest.to_string(),
        "MediaType": i.manifest.media_type,
        "Platform": i.platform,
        "Size": i.size,
        "CreatedAt": i.created,
    })
}

pub fn images(opts: BuilderOptions, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    let mut list = builder.images()?;
    if let Some(f) = &args.filter {
        let wanted = rbuild::Reference::parse_name_only(f).map_err(|e| anyhow::anyhow!("{e}"))?;
        list.retain(|i| {
            rbuild::Reference::parse(&i.name).is_ok_and(|r| {
                r.name() == wanted.name() && wanted.tag.as_ref().is_none_or(|t| r.tag.as_ref() == Some(t))
            })
        });
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for i in &list {
            if seen.insert(short_id(i)) {
                writeln!(out, "{}", short_id(i))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ListFormat::Table => out.write_all(table(&list, now()).as_bytes())?,
        ListFormat::Json => {
            for i in &list {
                writeln!(out, "{}", json_line(i))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(opts: BuilderOptions, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for name in &args.names {
        match builder.remove_image(name, args.force) {
            Ok(removed) => {
                for image in removed {
                    writeln!(out, "Untagged: {}", image.familiar_name())?;
                }
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn tag(opts: BuilderOptions, args: TagArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    builder.tag_image(&args.source, &args.target)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn push(opts: BuilderOptions, args: PushArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    // One line per blob when it is done, not a stream of byte counts.
    let done = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let sink = ProgressSink::new(move |e| {
        if let rbuild::Event::Progress { id, current, total: Some(total), .. } = e
            && current >= total
            && done.lock().is_ok_and(|mut d| d.insert(id.clone()))
        {
            let _ = writeln!(std::io::stderr(), "{id}: done ({})", text::size(total));
        }
    });
    let (image, target) = builder.push_image(&args.name, None, sink).await?;
    let _ = writeln!(std::io::stderr(), "pushed {}", target.familiar());
    writeln!(std::io::stdout().lock(), "{}", image.manifest.digest)?;
    Ok(ExitCode::SUCCESS)
}

pub fn save(opts: BuilderOptions, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    let format = match args.format {
        ArchiveFormat::Docker => SaveFormat::Docker,
        ArchiveFormat::Oci => SaveFormat::Oci,
    };
    match args.output.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            // Through a temporary file: a failed save leaves no partial archive.
            let file_name = path.file_name().context("-o needs a file name")?;
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(file_name);
            tmp_name.push(format!(".rbuild-{}", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let written = (|| -> anyhow::Result<()> {
                let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                let mut w = std::io::BufWriter::new(file);
                builder.save_images(&args.names, format, &mut w)?;
                w.flush().with_context(|| format!("writing {}", path.display()))?;
                std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written?;
        }
        _ => {
            let stdout = std::io::stdout();
            if args.output.is_none() && stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal\nhint: add -o FILE, or redirect standard output");
            }
            let mut w = std::io::BufWriter::new(stdout.lock());
            builder.save_images(&args.names, format, &mut w)?;
            w.flush().context("writing standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(opts: BuilderOptions, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let builder = rbuild::Builder::open(opts)?;
    let report = match args.input.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            builder.load_images(&mut file)?
        }
        _ => {
            let stdin = std::io::stdin();
            if args.input.is_none() && stdin.is_terminal() {
                bail!("no archive to read\nhint: rbuild load -i FILE, or redirect standard input");
            }
            builder.load_images(&mut stdin.lock())?
        }
    };
    let mut out = std::io::stdout().lock();
    for image in &report.stored {
        writeln!(out, "Loaded image: {}", image.familiar_name())?;
    }
    for digest in &report.unnamed {
        let _ = writeln!(
            std::io::stderr(),
            "warning: image {digest} has no name in the archive and is not listed\nhint: the local store keeps named images only; save it with a name"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(opts: BuilderOptions, args: RunArgs) -> anyhow::Result<ExitCode> {
    // docker's check (and message): a terminal session needs a terminal.
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let builder = rbuild::Builder::open(opts)?;
    let workdir = match &args.workdir {
        Some(w) => Some(w.to_str().context("--workdir is not UTF-8")?.to_string()),
        None => None,
    };
    let req = RunRequest {
        image: args.image.clone(),
        args: args.command.clone(),
        entrypoint: args.entrypoint.as_ref().map(|e| if e.is_empty() { Vec::new() } else { vec![e.clone()] }),
        // `-e KEY` passes our value, or nothing when we have none (as docker does).
        env: args
            .env
            .iter()
            .filter_map(|kv| match kv.split_once('=') {
                Some(_) => Some(kv.clone()),
                None => std::env::var(kv).ok().map(|v| format!("{kv}={v}")),
            })
            .collect(),
        user: args.user.clone(),
        workdir,
        network: match args.network {
            NetworkArg::Default => RunNetwork::Default,
            NetworkArg::None => RunNetwork::None,
            NetworkArg::Host => RunNetwork::Host,
        },
        stdin: args.interactive,
        tty: args.tty,
        ..RunRequest::default()
    };
    let req = with_binds_and_ports(req, &args)?;
    let code = if req.tty { run_tty(&builder, &req).await? } else { run_plain(&builder, &req).await? };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// Adds `-v`, `--mount` and `-p` to `req` (checked by the library: host
/// paths must exist, ports must parse). `-p` with the host network is
/// ignored with a warning, as docker does.
fn with_binds_and_ports(mut req: RunRequest, args: &RunArgs) -> anyhow::Result<RunRequest> {
    let cwd = std::env::current_dir().context("the current directory")?;
    for v in &args.volumes {
        req.add_volume(v, &cwd)?;
    }
    for m in &args.mounts {
        req.add_mount(m, &cwd)?;
    }
    if matches!(args.network, NetworkArg::Host) && !args.publish.is_empty() {
        // docker's words.
        let _ = writeln!(std::io::stderr(), "warning: published ports are discarded when using host network mode");
        return Ok(req);
    }
    for p in &args.publish {
        req.add_port(p)?;
    }
    Ok(req)
}

/// Ctrl-C, SIGTERM or SIGHUP end the run: dropping it kills the sandbox
/// (its helper is killed on drop; the sandbox's init dies with it), and we
/// exit as a shell would (128 + signal).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            quit: signal(SignalKind::quit()).context("installing a SIGQUIT handler")?,
        })
    }

    /// The exit code for the first stop signal that arrives.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => 128 + libc_signal::SIGINT,
            _ = self.term.recv() => 128 + libc_signal::SIGTERM,
            _ = self.hup.recv() => 128 + libc_signal::SIGHUP,
            _ = self.quit.recv() => 128 + libc_signal::SIGQUIT,
        }
    }
}

/// Without `-t`: the process writes to our stdout/stderr itself unless they
/// are terminals; then its output comes here and we write it.
async fn run_plain(builder: &rbuild::Builder, req: &RunRequest) -> anyhow::Result<i32> {
    let mut output = |stream: OutputStream, data: &[u8]| {
        // A closed stdout (`| head`) must not stop the container early.
        let _ = match stream {
            OutputStream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(data).and_then(|_| o.flush())
            }
            OutputStream::Stderr => {
                let mut e = std::io::stderr().lock();
                e.write_all(data).and_then(|_| e.flush())
            }
        };
    };
    let mut stop = StopSignals::new()?;
    Ok(tokio::select! {
        code = builder.run_image(req, ProgressSink::discard(), &mut output, None) => code?,
        code = stop.recv() => code,
    })
}

/// With `-t`: the process's terminal is a pty in the sandbox; we relay it
/// to ours (raw with `-i`, restored on every way out: return, error, signal
/// or panic) and pass on window-size changes.
async fn run_tty(builder: &rbuild::Builder, req: &RunRequest) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let raw = if req.stdin { Some(terminal::RawMode::enter()?) } else { None };
    let mut stop = StopSignals::new()?;
    let mut winch = signal(SignalKind::window_change()).context("installing a SIGWINCH handler")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut rx = Some(rx);
    // Nothing comes through pipes: the pty carries stdout and stderr.
    let mut output = |_: OutputStream, _: &[u8]| {};
    let mut run = Box::pin(builder.run_image(req, ProgressSink::discard(), &mut output, Some(tx)));
    let mut relay: Option<terminal::Relay> = None;
    let code = loop {
        tokio::select! {
            // The master first: a short run may end as it arrives.
            biased;
            master = async {
                match rx.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            }, if rx.is_some() => {
                rx = None;
                // No master: setup failed, and the run says why.
                if let Ok(master) = master {
                    match terminal::Relay::start(master, req.stdin) {
                        Ok(r) => relay = Some(r),
                        Err(e) => break Err(e),
                    }
                }
            },
            code = &mut run => break code.map_err(anyhow::Error::from),
            _ = winch.recv() => {
                if let Some(r) = &relay {
                    r.resize();
                }
            },
            code = stop.recv() => break Ok(code),
        }
    };
    // Ends the sandbox if still running, so the relay sees the end.
    drop(run);
    // A master that came with the end: what it buffered is still shown.
    if relay.is_none()
        && let Some(master) = rx.and_then(|mut rx| rx.try_recv().ok())
    {
        relay = terminal::Relay::start(master, false).ok();
    }
    if let Some(r) = relay {
        r.finish().await;
    }
    drop(raw);
    code
}

/// Signal numbers on Linux (the CLI does not depend on libc).
mod libc_signal {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGTERM: i32 = 15;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(human_age(5), "Less than a minute ago");
        assert_eq!(human_age(60), "1 minute ago");
        assert_eq!(human_age(7200), "2 hours ago");
        assert_eq!(human_age(3 * 86_400), "3 days ago");
        assert_eq!(human_age(-10), "Less than a minute ago");
    }
}
