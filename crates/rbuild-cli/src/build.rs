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

/// Parses one `--output`: where the image goes, and the options of the
/// image's encoding (`compression=`, `oci-mediatypes=`, …) into `export`.
fn parse_output(s: &str, export: &mut rbuild::ExportOptions) -> anyhow::Result<Output> {
    // `-o DIR` is buildx's short form of `type=local,dest=DIR` (and `-o -`
    // of a tar to standard output).
    if !s.contains('=') {
        return Ok(if s == "-" { Output::Tar { dest: PathBuf::from(s) } } else { Output::Local { dest: PathBuf::from(s) } });
    }
    let kv = kv_list(s);
    let dest = || -> anyhow::Result<PathBuf> {
        kv.get("dest").map(PathBuf::from).with_context(|| format!("--output `{s}` needs dest=PATH"))
    };
    let flag = |key: &str| -> anyhow::Result<Option<bool>> {
        match kv.get(key).map(String::as_str) {
            None => Ok(None),
            Some("true") | Some("") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => bail!("--output `{s}`: {key}=`{other}` must be true or false"),
        }
    };
    let ty = kv.get("type").map(String::as_str);
    if matches!(ty, Some("image" | "registry" | "oci" | "docker")) {
        parse_compression(s, &kv, export)?;
        if let Some(f) = flag("force-compression")? {
            export.force_compression = f;
        }
        if let Some(f) = flag("oci-mediatypes")? {
            export.oci_mediatypes = f;
        }
    }
    let names = || kv.get("name").map(|n| n.split(',').map(str::to_string).collect()).unwrap_or_default();
    Ok(match ty {
        Some("oci") => Output::OciTar { dest: dest()?, names: names() },
        Some("docker") => Output::DockerTar { dest: dest()?, names: names() },
        Some("local") => Output::Local { dest: dest()? },
        Some("tar") => Output::Tar { dest: dest()? },
        Some("registry") => Output::Registry,
        Some("image") if flag("push")? == Some(true) => Output::Registry,
        Some("image") => Output::Image { names: names() },
        Some(other) => bail!("unknown output type `{other}` (expected image, registry, oci, docker, local, tar)"),
        None => bail!("--output `{s}` needs type=…"),
    })
}

/// `compression=gzip|zstd|uncompressed` and `compression-level=N`, checked
/// against each algorithm's range.
fn parse_compression(s: &str, kv: &BTreeMap<String, String>, export: &mut rbuild::ExportOptions) -> anyhow::Result<()> {
    use rbuild::Compression;
    let level = match kv.get("compression-level") {
        Some(l) => Some(l.parse::<i32>().with_context(|| format!("--output `{s}`: compression-level `{l}` is not a number"))?),
        None => None,
    };
    let algorithm = match kv.get("compression").map(String::as_str) {
        Some("gzip") => Compression::Gzip { level: 6 },
        Some("zstd") => Compression::Zstd { level: 3 },
        Some("uncompressed") => Compression::None,
        Some(other) => bail!("--output `{s}`: unknown compression `{other}` (expected gzip, zstd, uncompressed)"),
        None => export.compression,
    };
    export.compression = match (algorithm, level) {
        (Compression::Gzip { .. }, Some(l)) if (0..=9).contains(&l) => Compression::Gzip { level: l as u32 },
        (Compression::Zstd { .. }, Some(l)) if (1..=22).contains(&l) => Compression::Zstd { level: l },
        (Compression::None, Some(_)) => Compression::None,
        (Compression::Gzip { .. }, Some(l)) => bail!("--output `{s}`: compression-level {l} is out of range for gzip (0-9)"),
        (_, Some(l)) => bail!("--output `{s}`: compression-level {l} is out of range for zstd (1-22)"),
        (c, None) => c,
    };
    Ok(())
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

/// The request, and the temporary directory of a context read from
/// standard input (`rbuild build -`), which must live as long as the build.
fn request(args: &BuildArgs) -> anyhow::Result<(BuildRequest, Option<tempfile::TempDir>)> {
    let stdin_context = if args.context.as_os_str() == "-" {
        if args.file.as_ref().is_some_and(|f| f.as_os_str() == "-") {
            bail!("the context and the Dockerfile cannot both come from standard input");
        }
        Some(rbuild::unpack_context(std::io::stdin().lock())?)
    } else {
        None
    };
    let context = match &stdin_context {
        Some(t) => t.path().join("context"),
        None => args.context.clone(),
    };
    let mut req = BuildRequest::new(&context);
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
    req.max_parallelism = args.max_parallelism;
    req.network = match args.network.as_deref() {
        None | Some("default") => None,
        Some("none") => Some(rbuild::Network::None),
        Some("host") => Some(rbuild::Network::Host),
        Some(other) => bail!("invalid --network `{other}`: expected default, none or host"),
    };
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
        let output = parse_output(o, &mut req.export)?;
        // `type=registry,name=REF`: pushed as REF (with the -t names).
        if output == Output::Registry
            && let Some(names) = kv_list(o).get("name")
        {
            for n in names.split(',').filter(|n| !n.is_empty()) {
                if !req.tags.iter().any(|t| t == n) {
                    req.tags.push(n.to_string());
                }
            }
        }
        if !req.outputs.contains(&output) {
            req.outputs.push(output);
        }
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
    if stdin_context.is_some() {
        // With a context tar, -f names a file inside it (as buildx does).
        if let Some(f) = req.dockerfile.take() {
            req.dockerfile = Some(if f.is_relative() { context.join(f) } else { f });
        }
    }
    Ok((req, stdin_context))
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

/// Whether an output streams to standard output (`dest=-`): then the
/// digest is not printed there, and a terminal is refused as buildx does.
fn stdout_output(req: &BuildRequest) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    let to_stdout = req.outputs.iter().filter(|o| match o {
        Output::OciTar { dest, .. } | Output::DockerTar { dest, .. } | Output::Tar { dest } => dest.as_os_str() == "-",
        _ => false,
    });
    match to_stdout.count() {
        0 => Ok(false),
        1 if std::io::stdout().is_terminal() => {
            bail!("refusing to write a tar to the terminal (hint: redirect standard output, or give dest=FILE)")
        }
        1 => Ok(true),
        _ => bail!("only one output can write to standard output (dest=-)"),
    }
}

pub async fn run(opts: BuilderOptions, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let (req, _stdin_context) = request(&args)?;
    let stdout_taken = stdout_output(&req)?;
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
    // A build with only root filesystem outputs makes no image: like
    // buildx, an empty --iidfile and no `containerimage.*` metadata.
    if let Some(path) = &args.iidfile {
        let id = if result.image { result.config.digest.to_string() } else { String::new() };
        std::fs::write(path, id).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = if result.image {
            serde_json::json!({
                "containerimage.digest": result.manifest.digest.to_string(),
                "containerimage.config.digest": result.config.digest.to_string(),
                "containerimage.descriptor": result.manifest,
                "image.name": result.names.join(","),
            })
        } else {
            serde_json::json!({})
        };
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if !stdout_taken {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", result.manifest.digest)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod output_tests {
    use super::parse_output;
    use rbuild::{Compression, ExportOptions, Output};
    use std::path::PathBuf;

    fn parse(s: &str) -> anyhow::Result<(Output, ExportOptions)> {
        let mut export = ExportOptions::default();
        parse_output(s, &mut export).map(|o| (o, export))
    }

    #[test]
    fn outputs_as_buildx_spells_them() {
        let local = Output::Local { dest: PathBuf::from("out") };
        assert_eq!(parse("type=local,dest=out").unwrap().0, local);
        assert_eq!(parse("out").unwrap().0, local);
        assert_eq!(parse("-").unwrap().0, Output::Tar { dest: PathBuf::from("-") });
        assert_eq!(parse("type=tar,dest=r.tar").unwrap().0, Output::Tar { dest: PathBuf::from("r.tar") });
        assert_eq!(parse("type=image,name=a,push=true").unwrap().0, Output::Registry);
        assert_eq!(parse("type=image,name=a").unwrap().0, Output::Image { names: vec!["a".into()] });
        assert_eq!(
            parse("type=oci,dest=-,name=app:1").unwrap().0,
            Output::OciTar { dest: PathBuf::from("-"), names: vec!["app:1".into()] }
        );
        assert!(parse("type=local").is_err(), "dest is required");
        assert!(parse("type=bogus,dest=x").is_err());
        assert!(parse("dest=x").is_err(), "type is required");
    }

    #[test]
    fn image_options() {
        let (_, e) = parse("type=registry,compression=zstd,compression-level=19,force-compression=true").unwrap();
        assert_eq!(e.compression, Compression::Zstd { level: 19 });
        assert!(e.force_compression);
        let (_, e) = parse("type=oci,dest=x,compression-level=1,oci-mediatypes=false").unwrap();
        assert_eq!(e.compression, Compression::Gzip { level: 1 });
        assert!(!e.oci_mediatypes);
        let (_, e) = parse("type=docker,dest=x,compression=uncompressed").unwrap();
        assert_eq!(e.compression, Compression::None);
        for bad in [
            "type=oci,dest=x,compression=lz4",
            "type=oci,dest=x,compression-level=10",
            "type=oci,dest=x,compression=zstd,compression-level=0",
            "type=oci,dest=x,compression-level=high",
            "type=oci,dest=x,oci-mediatypes=maybe",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
