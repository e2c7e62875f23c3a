//! Exporters: where a built image goes after the solve.

use crate::build::{BuildRequest, Output};
use crate::Error;
use rbuild_oci::export::ExportImage;
use rbuild_oci::reference::Reference;
use rbuild_solver::{Engine, ExportedImage, ProgressSink};
use std::path::Path;
use std::sync::Arc;

/// Creates `dest` through a temporary file in the same directory, so a
/// failed export leaves no half-written file behind.
fn write_atomically(
    dest: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<(), String>,
) -> Result<(), Error> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    write(tmp.as_file_mut()).map_err(|m| Error::Invalid(format!("{}: {m}", dest.display())))?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// Writes every requested output; returns the image names used.
pub(crate) async fn write(
    engine: &Arc<Engine>,
    req: &BuildRequest,
    image: &ExportedImage,
    bases: &[Reference],
    progress: &ProgressSink,
) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let references: Vec<Reference> = req
        .tags
        .iter()
        .map(|t| Reference::parse(t).map_err(|e| Error::Invalid(format!("invalid tag: {e}"))))
        .collect::<Result<_, _>>()?;
    for output in &req.outputs {
        match output {
            Output::Registry => {
                if references.is_empty() {
                    return Err(Error::Invalid("--push needs an image name (hint: add -t NAME)".into()));
                }
                for r in &references {
                    let sink = progress.clone();
                    // Blobs of base images in the same registry are mounted, not uploaded.
                    let mount_from = bases
                        .iter()
                        .filter(|b| b.registry == r.registry)
                        .map(|b| b.repository.clone())
                        .collect();
                    let push_opts = rbuild_registry::PushOptions { mount_from };
                    engine
                        .registry
                        .push(r, &image.manifest, &engine.state.content, &push_opts, &move |p| {
                            sink.emit(rbuild_solver::Event::Progress {
                                vertex: String::new(),
                                id: format!("push {}", p.digest),
                                current: p.done,
                                total: Some(p.total),
                                time_ms: rbuild_solver::now_ms(),
                            })
                        })
                        .await
                        .map_err(|e| Error::Registry(e.to_string()))?;
                    names.push(r.to_string());
                }
            }
            Output::OciTar { dest } => {
                let names: Vec<String> = references.iter().map(|r| r.to_string()).collect();
                let store = &engine.state.content;
                let images = [ExportImage { descriptor: image.manifest.clone(), names }];
                write_atomically(dest, |f| {
                    rbuild_oci::export::write_oci_tar(store, f, &images).map(drop).map_err(|e| e.to_string())
                })?;
            }
            Output::DockerTar { dest } => {
                let names: Vec<String> = references.iter().map(|r| r.to_string()).collect();
                let store = &engine.state.content;
                let images = [ExportImage { descriptor: image.manifest.clone(), names }];
                write_atomically(dest, |f| {
                    rbuild_oci::export::write_docker_tar(store, f, &images, None).map(drop).map_err(|e| e.to_string())
                })?;
            }
            Output::Local { .. } => {
                return Err(Error::Invalid("--output type=local is not supported yet".into()));
            }
            Output::Image { names: given } => {
                let wanted: Vec<Reference> = if given.is_empty() {
                    references.clone()
                } else {
                    given.iter().map(|n| rbuild_solver::normalise_name(n)).collect::<Result<_, _>>()?
                };
                if wanted.is_empty() {
                    return Err(Error::Invalid(
                        "the local image store needs an image name\nhint: add -t NAME (or -o type=image,name=NAME)".into(),
                    ));
                }
                for stored in engine.store_image(&wanted, image)? {
                    names.push(stored.name);
                }
            }
        }
    }
    Ok(names)
}
