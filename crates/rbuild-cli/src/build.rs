//! `rbuild build`.

use crate::args::BuildArgs;
use crate::render;
use anyhow::{Context, bail};
use rbuild::{BuildRequest, BuilderOptions, Output};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Splits `k=v,k2=v2` option lists (`--output`, `--secret`).
fn kv_list(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.to_string()),
            None => (p.trim().to_string(), String::new()),
        })
        .collect()
}

fn parse_output(s: &str) -> anyhow::Result<Output> {
    let kv = kv_list(s);
    let dest = || -> anyhow::Result<PathBuf> {
        kv.get("dest").map(PathBuf::from).with_context(|| format!("--output `{s}` needs dest=PATH"))
    };
    Ok(match kv.get("type").map(String::as_str) {
        Some("oci") => Output::OciTar { dest: dest()? },
        Some("docker") => Output::DockerTar { dest: dest()? },
        Some("local") => Output::Local { dest: dest()? },
        Some("registry") => Output::Registry,
        Some("image") if kv.get("push").map(String::as_str) == Some("true") => Output::Registry,
        Some("image") => Output::Image { names: kv.get("name").map(|n| vec![n.clone()]).unwrap_or_default() },
        Some(other) => bail!("unknown output type `{other}` (expected image, oci, docker, local, registry)"),
        None => bail!("--output `{s}` needs type=…"),
    })
}

fn parse_secret(s: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let kv = kv_list(s);
    let id = kv.get("id").cloned().with_context(|| format!("--secret `{s}` needs id=ID"))?;
    let data = if let Some(src) = kv.get("src").or_else(|| kv.get("source")) {
        std::fs::read(src).with_context(|| format!("reading secret `{id}` from {src}"))?
    } else if let Some(var) = kv.get("env") {
        std::env::var(var).with_context(|| format!("secret `{id}`: environment variable {var} is not set"))?.into_bytes()
    } else {
        std::env::var(&id).with_context(|| format!("secret `{id}`: give src=FILE or env=VAR"))?.into_bytes()
    };
    Ok((id, data))
}

fn request(args: &BuildArgs) -> anyhow::Result<BuildRequest> {
    let mut req = BuildRequest::new(&args.context);
    match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the Dockerfile from standard input")?;
            req.dockerfile_contents = Some(buf);
        }
        Some(f) => req.dockerfile = Some(f.clone()),
        None => {}
    }
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => req.build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => req.build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    for c in &args.build_contexts {
        let (k, v) = c.split_once('=').with_context(|| format!("--build-context `{c}`: expected NAME=VALUE"))?;
        req.build_contexts.insert(k.to_string(), v.to_string());
    }
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        req.labels.insert(k.to_string(), v.to_string());
    }
    req.target = args.target.clone();
    if let Some(p) = &args.platform {
        req.platform = Some(rbuild::Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform: {e}"))?);
    }
    req.tags = args.tags.clone();
    req.no_cache = args.no_cache;
    req.no_cache_filter = args.no_cache_filter.clone();
    for s in &args.ssh {
        let (id, path) = match s.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .with_context(|| format!("--ssh {s}: SSH_AUTH_SOCK is not set (hint: --ssh {s}=/path/to/agent.sock)"))?;
                (s.clone(), PathBuf::from(sock))
            }
        };
        req.ssh.insert(id, path);
    }
    req.pull = args.pull;
    for o in &args.outputs {
        req.outputs.push(parse_output(o)?);
    }
    if args.push && !req.outputs.contains(&Output::Registry) {
        req.outputs.push(Output::Registry);
    }
    // `docker build -t app .` keeps the image locally; so do we.
    if args.load || (req.outputs.is_empty() && !req.tags.is_empty()) {
        req.outputs.push(Output::Image { names: Vec::new() });
    }
    for s in &args.secrets {
        let (id, data) = parse_secret(s)?;
        req.secrets.insert(id, data);
    }
    for a in &args.allow {
        match a.as_str() {
            "network.host" => req.entitlements.network_host = true,
            "security.insecure" => req.entitlements.security_insecure = true,
            other => bail!("unknown entitlement `{other}` (expected network.host or security.insecure)"),
        }
    }
    Ok(req)
}

/// The Dockerfile as the build will read it, for quoting the failing
/// instruction in error reports; `None` when it cannot be read (the build
/// then fails with its own message).
fn dockerfile_source(req: &BuildRequest) -> Option<render::DockerfileSource> {
    let (name, contents) = match (&req.dockerfile_contents, &req.dockerfile) {
        (Some(bytes), _) => ("Dockerfile".to_string(), bytes.clone()),
        (None, Some(path)) => (path.display().to_string(), std::fs::read(path).ok()?),
        (None, None) => ("Dockerfile".to_string(), std::fs::read(req.context.join("Dockerfile")).ok()?),
    };
    Some(render::DockerfileSource { name, contents })
}

pub async fn run(opts: BuilderOptions, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let req = request(&args)?;
    let mode = render::Mode::parse(&args.progress, args.quiet)?;
    let builder = rbuild::Builder::open(opts)?;
    let source = dockerfile_source(&req);
    let progress = render::Progress::start(mode, source);
    let result = match builder.build(req, progress.sink()).await {
        Ok(r) => {
            progress.finish(None);
            r
        }
        Err(e) => {
            // The report ends with the error: main must not print it again.
            progress.finish(Some(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(path) = &args.iidfile {
        std::fs::write(path, result.config.digest.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": result.manifest.digest.to_string(),
            "containerimage.config.digest": result.config.digest.to_string(),
            "containerimage.descriptor": result.manifest,
            "image.name": result.names.join(","),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", result.manifest.digest)?;
    Ok(ExitCode::SUCCESS)
}
