//! Exporters: where a built image goes after the solve.
//!
//! Each output is shown as a step of its own (BuildKit's `exporting to …`
//! vertices), with its sub-steps as progress items, so that `--progress`
//! shows what happens between the last RUN and the end of the build.

use crate::Error;
use crate::build::{BuildRequest, Output};
use rbuild_oci::export::ExportImage;
use rbuild_oci::reference::Reference;
use rbuild_oci::descriptor::Descriptor;
use rbuild_solver::{Engine, Event, ExportOptions, ExportedImage, ProgressSink, now_ms};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The `dest` that means standard output (`dest=-`, as buildx).
pub const STDOUT_DEST: &str = "-";

/// Whether `dest` names standard output rather than a file.
pub fn is_stdout(dest: &Path) -> bool {
    dest.as_os_str() == STDOUT_DEST
}

/// A pseudo-vertex for one export step: `Started` when made, `Done` (or
/// `Failed`) when finished, with sub-steps as zero-byte progress items.
pub(crate) struct ExportStep {
    sink: ProgressSink,
    vertex: String,
    name: String,
    started: u64,
}

impl ExportStep {
    pub(crate) fn start(sink: &ProgressSink, name: &str) -> ExportStep {
        let started = now_ms();
        let vertex = format!("export:{name}");
        sink.emit(Event::Started { vertex: vertex.clone(), name: name.to_string(), time_ms: started });
        ExportStep { sink: sink.clone(), vertex, name: name.to_string(), started }
    }

    /// A sub-step that moves no bytes (`naming to …`), reported as done.
    pub(crate) fn item(&self, id: &str) {
        self.item_state(id, Some(0));
    }

    /// A sub-step that moves no bytes and takes a while: call this before,
    /// then [`ExportStep::item`] with the same id when done, so its time shows.
    pub(crate) fn item_begin(&self, id: &str) {
        self.item_state(id, None);
    }

    fn item_state(&self, id: &str, total: Option<u64>) {
        self.sink.emit(Event::Progress {
            vertex: self.vertex.clone(),
            id: id.to_string(),
            current: 0,
            total,
            time_ms: now_ms(),
        });
    }

    /// Ends the step with `result`, passing it through.
    pub(crate) fn finish<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        let time_ms = now_ms();
        match &result {
            Ok(_) => self.sink.emit(Event::Done {
                vertex: self.vertex,
                name: self.name,
                time_ms,
                duration_ms: time_ms.saturating_sub(self.started),
            }),
            Err(e) => self.sink.emit(Event::Failed { vertex: self.vertex, name: self.name, error: e.to_string(), time_ms }),
        }
        result
    }
}

/// Creates `dest` through a temporary file in the same directory, so a
/// failed export leaves no half-written file behind; `-` streams to
/// standard output instead.
fn write_dest(dest: &Path, write: impl FnOnce(&mut dyn Write) -> Result<(), String>) -> Result<(), Error> {
    if is_stdout(dest) {
        let mut out = std::io::stdout().lock();
        write(&mut out).map_err(|m| Error::Invalid(format!("standard output: {m}")))?;
        return out.flush().map_err(|e| Error::io(Path::new("standard output"), e));
    }
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    write(tmp.as_file_mut()).map_err(|m| Error::Invalid(format!("{}: {m}", dest.display())))?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// `type=local` writes files as root would (owners kept, device nodes
/// made; where the kernel refuses, the entry is counted, not fatal).
/// Rootless, the files are the invoking user's (as a buildx client writes
/// them): owners from subordinate ranges would leave files the user cannot
/// remove. `type=tar` keeps the image's owners either way: they are only
/// recorded in the tar, as this process's namespace sees the snapshots.
fn local_apply_options() -> rbuild_oci::layer::ApplyOptions {
    let preserve_owners = crate::in_initial_user_namespace();
    rbuild_oci::layer::ApplyOptions { can_mknod: true, preserve_owners, ..Default::default() }
}

/// Runs blocking export work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Invalid(format!("export task failed: {e}")))?
}

/// `type=local`: the root filesystem written into `dest`, which may
/// already hold files (as buildx, they are overwritten or kept). Made from
/// the build's snapshots, not from an image: no layer is compressed and
/// decompressed again. Paths are resolved inside `dest`, so a symlink in
/// the image or already in `dest` cannot send a write outside it.
async fn write_local(engine: &Arc<Engine>, top: Option<&str>, dest: &Path, opts: &ExportOptions) -> Result<Descriptor, Error> {
    if is_stdout(dest) {
        return Err(Error::Invalid("--output type=local needs a directory as dest (`-` is only for tar outputs)".into()));
    }
    let (engine, top, dest, opts) = (engine.clone(), top.map(str::to_string), dest.to_path_buf(), opts.clone());
    blocking(move || {
        engine
            .unpack_rootfs(top.as_deref(), &dest, &opts, &local_apply_options())
            .map_err(|e| Error::Invalid(format!("--output type=local: {}", rbuild_solver::chain(&e))))
    })
    .await
}

/// `type=tar`: the root filesystem as one tar, streamed from the build's
/// snapshots (no scratch tree, no layer blobs).
async fn write_rootfs(engine: &Arc<Engine>, top: Option<&str>, dest: &Path, opts: &ExportOptions) -> Result<Descriptor, Error> {
    let (engine, top, dest, opts) = (engine.clone(), top.map(str::to_string), dest.to_path_buf(), opts.clone());
    blocking(move || {
        let mut described = None;
        write_dest(&dest, |out| {
            let (_, d) = engine.write_rootfs_tar(top.as_deref(), out, &opts).map_err(|e| rbuild_solver::chain(&e))?;
            described = Some(d);
            Ok(())
        })?;
        described.ok_or_else(|| Error::Invalid(format!("{}: no tar was written", dest.display())))
    })
    .await
}

/// Pushes to `r`, reporting each blob (uploaded, already there, mounted)
/// as a progress item of a `pushing NAME` step.
async fn push(
    engine: &Arc<Engine>,
    image: &ExportedImage,
    r: &Reference,
    bases: &[Reference],
    progress: &ProgressSink,
) -> Result<(), Error> {
    let step = ExportStep::start(progress, &format!("pushing {r}"));
    let sink = progress.clone();
    let vertex = step.vertex.clone();
    // Blobs of base images in the same registry are mounted, not uploaded.
    let mount_from = bases.iter().filter(|b| b.registry == r.registry).map(|b| b.repository.clone()).collect();
    let push_opts = rbuild_registry::PushOptions { mount_from };
    let result = engine
        .registry
        .push(r, &image.manifest, &engine.state.content, &push_opts, &move |p| {
            sink.emit(push_event(&vertex, &p))
        })
        .await
        .map_err(|e| Error::Registry(format!("push {r}: {}", rbuild_solver::chain(&e))));
    if let Ok(summary) = &result {
        step.item(&format!("pushing manifest for {r}@{}", summary.digest));
    }
    step.finish(result.map(drop))
}

/// The progress event for one push report: uploads carry their bytes;
/// blobs the registry had or mounted carry none and say so in their id.
pub(crate) fn push_event(vertex: &str, p: &rbuild_registry::ProgressEvent) -> Event {
    use rbuild_registry::ProgressKind;
    let (id, current, total) = match p.kind {
        ProgressKind::Exists => (format!("{} already exists", p.digest), 0, 0),
        ProgressKind::Mounted => (format!("{} mounted from another repository", p.digest), 0, 0),
        _ => (format!("push {}", p.digest), p.done, p.total),
    };
    Event::Progress { vertex: vertex.to_string(), id, current, total: Some(total), time_ms: now_ms() }
}

/// The step name BuildKit shows for an output.
fn step_name(output: &Output) -> Option<&'static str> {
    match output {
        Output::OciTar { .. } => Some("exporting to oci image format"),
        Output::DockerTar { .. } => Some("exporting to docker image format"),
        Output::Local { .. } => Some("exporting to client directory"),
        Output::Tar { .. } => Some("exporting to client tarball"),
        Output::Image { .. } | Output::Registry => None,
    }
}

/// Whether the request's outputs need an image. Not when every output
/// takes only the root filesystem (`type=local`, `type=tar`) and no name
/// was given: as with buildx, such a build makes no image, and its files
/// come straight from the snapshots. A build without any output still
/// makes one (its digest is what the build reports).
pub(crate) fn needs_image(req: &BuildRequest) -> bool {
    let rootfs_only = |o: &Output| matches!(o, Output::Local { .. } | Output::Tar { .. });
    req.outputs.is_empty() || !req.tags.is_empty() || !req.outputs.iter().all(rootfs_only)
}

/// What the outputs wrote.
pub(crate) struct Written {
    /// The image names used (local store, registry).
    pub names: Vec<String>,
    /// What the root filesystem outputs wrote: the first `type=tar`'s
    /// tar, else the layers the first `type=local` applied (their ChainID).
    pub rootfs: Option<Descriptor>,
}

/// Writes every requested output. `top` is the build's top snapshot (the
/// root filesystem outputs are made from it); `image` is the image made
/// of it, if [`needs_image`] asked for one, with its `exporting to image`
/// step (begun before the layers were made), which gets the local store's
/// sub-steps and ends before the other outputs.
pub(crate) async fn write(
    engine: &Arc<Engine>,
    req: &BuildRequest,
    top: Option<&str>,
    image: Option<(&ExportedImage, ExportStep)>,
    bases: &[Reference],
    progress: &ProgressSink,
) -> Result<Written, Error> {
    let references: Vec<Reference> = req
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| Error::Invalid(format!("invalid tag: {e}"))))
        .collect::<Result<_, _>>()?;
    let (image, mut names) = match image {
        Some((image, step)) => {
            let stored = store_images(engine, req, image, &references, &step);
            (Some(image), step.finish(stored)?)
        }
        None => (None, Vec::new()),
    };
    let full_names: Vec<String> = references.iter().map(|r| r.to_string()).collect();
    let (mut tar, mut local) = (None, None);
    for output in &req.outputs {
        let step = step_name(output).map(|n| ExportStep::start(progress, n));
        let note = |id: &str| {
            if let Some(s) = &step {
                s.item(id)
            }
        };
        let result = match (output, image) {
            (Output::Local { dest }, _) => {
                note("copying files");
                write_local(engine, top, dest, &req.export).await.map(|d| {
                    local.get_or_insert(d);
                })
            }
            (Output::Tar { dest }, _) => {
                note("sending tarball");
                write_rootfs(engine, top, dest, &req.export).await.map(|d| {
                    tar.get_or_insert(d);
                })
            }
            (Output::Image { .. }, _) => Ok(()),
            (_, None) => Err(Error::Invalid(format!("output {output:?} needs an image, and none was made"))),
            (Output::Registry, Some(image)) => {
                if references.is_empty() {
                    return Err(Error::Invalid("--push needs an image name (hint: add -t NAME)".into()));
                }
                for r in &references {
                    push(engine, image, r, bases, progress).await?;
                    names.push(r.to_string());
                }
                Ok(())
            }
            (Output::OciTar { dest, names: given }, Some(image)) => {
                let store = &engine.state.content;
                let images = [ExportImage { descriptor: image.manifest.clone(), names: tar_names(given, &full_names)? }];
                note("sending tarball");
                write_dest(dest, |f| {
                    rbuild_oci::export::write_oci_tar(store, f, &images).map(drop).map_err(|e| e.to_string())
                })
            }
            (Output::DockerTar { dest, names: given }, Some(image)) => {
                let store = &engine.state.content;
                let images = [ExportImage { descriptor: image.manifest.clone(), names: tar_names(given, &full_names)? }];
                note("sending tarball");
                write_dest(dest, |f| {
                    rbuild_oci::export::write_docker_tar(store, f, &images, None).map(drop).map_err(|e| e.to_string())
                })
            }
        };
        match step {
            Some(s) => s.finish(result)?,
            None => result?,
        }
    }
    Ok(Written { names, rootfs: tar.or(local) })
}

/// The names to record in an archive: `name=` of the output (normalised
/// as `docker.io/library/app:latest`), else the request's tags.
fn tar_names(given: &[String], tags: &[String]) -> Result<Vec<String>, Error> {
    if given.is_empty() {
        return Ok(tags.to_vec());
    }
    given.iter().map(|n| rbuild_solver::normalise_name(n).map(|r| r.to_string()).map_err(Error::from)).collect()
}

/// The local store outputs (`type=image`, `--load`): names the image in
/// the store, reporting each name under `step`.
fn store_images(
    engine: &Arc<Engine>,
    req: &BuildRequest,
    image: &ExportedImage,
    references: &[Reference],
    step: &ExportStep,
) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut announced = false;
    for output in &req.outputs {
        let Output::Image { names: given } = output else { continue };
        let wanted: Vec<Reference> = if given.is_empty() {
            references.to_vec()
        } else {
            given.iter().map(|n| rbuild_solver::normalise_name(n)).collect::<Result<_, _>>()?
        };
        if wanted.is_empty() {
            return Err(Error::Invalid(
                "the local image store needs an image name\nhint: add -t NAME (or -o type=image,name=NAME)".into(),
            ));
        }
        if !announced {
            step.item(&format!("writing image {}", image.config.digest));
            announced = true;
        }
        for stored in engine.store_image(&wanted, image)? {
            step.item(&format!("naming to {}", stored.name));
            names.push(stored.name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn req(outputs: Vec<Output>, tags: &[&str]) -> BuildRequest {
        let mut r = BuildRequest::new("ctx");
        r.outputs = outputs;
        r.tags = tags.iter().map(|t| t.to_string()).collect();
        r
    }

    #[test]
    fn only_root_filesystem_outputs_without_a_tag_make_no_image() {
        let local = || Output::Local { dest: PathBuf::from("out") };
        let tar = || Output::Tar { dest: PathBuf::from("-") };
        assert!(!needs_image(&req(vec![local()], &[])));
        assert!(!needs_image(&req(vec![local(), tar()], &[])));
        // A build with no output still reports an image digest.
        assert!(needs_image(&req(vec![], &[])));
        assert!(needs_image(&req(vec![local()], &["app"])));
        assert!(needs_image(&req(vec![local(), Output::Image { names: vec![] }], &[])));
        assert!(needs_image(&req(vec![tar(), Output::OciTar { dest: PathBuf::from("i.tar"), names: vec![] }], &[])));
        assert!(needs_image(&req(vec![local(), Output::Registry], &[])));
    }
}
