//! Pull: resolve a reference to one image (manifest, config, layer list),
//! and download blobs into the content store, verified.
//!
//! Manifests and configs are small and read into memory (with a size cap);
//! layers are streamed chunk by chunk into a store ingest and only committed
//! when their digest and size check out, so a lying or broken server can
//! never leave a corrupt blob behind. Manifest bytes are kept exactly as the
//! registry sent them: re-serialising would change the digest.

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};

use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::manifest::{self, ImageManifest, Parsed};
use rbuild_oci::media_types as mt;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_oci::store::ContentStore;

use crate::auth::Scopes;
use crate::client::{RegistryClient, read_limited, redact, status_error};
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::progress::ProgressFn;

/// Largest manifest or index we accept (the distribution spec suggests
/// registries accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config we read into memory.
pub const MAX_CONFIG_SIZE: u64 = 32 << 20;

/// Every manifest type we understand, for `Accept`.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// One image, resolved for one platform.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as asked for.
    pub reference: Reference,
    /// The platform-specific manifest: digest, size, media type.
    pub manifest_descriptor: Descriptor,
    /// Its raw bytes, exactly as served (never re-serialised).
    pub manifest_bytes: Vec<u8>,
    /// Parsed form of `manifest_bytes`.
    pub manifest: ImageManifest,
    /// The config blob's descriptor.
    pub config_descriptor: Descriptor,
    /// The config blob's raw bytes.
    pub config_bytes: Vec<u8>,
    /// Parsed form of `config_bytes`.
    pub config: ImageConfig,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// The index (or manifest list) the manifest was selected from, with
    /// its raw bytes, when the reference pointed at one.
    pub index: Option<(Descriptor, Vec<u8>)>,
}

impl ResolvedImage {
    /// The digest to pin the image by (`name@digest`): the index digest
    /// when there was one (that is what the tag points at), else the
    /// manifest's.
    #[must_use]
    pub fn top_digest(&self) -> &Digest {
        match &self.index {
            Some((d, _)) => &d.digest,
            None => &self.manifest_descriptor.digest,
        }
    }
}

fn store_err(digest: &Digest, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store {
        digest: digest.to_string(),
        message: e.to_string(),
    }
}

impl RegistryClient {
    /// Run `op` against each pull endpoint of `reference` (mirrors first)
    /// until one succeeds; the origin's error is the one reported.
    pub(crate) async fn on_pull_endpoints<T, F, Fut>(
        &self,
        reference: &Reference,
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let endpoints = self.inner.opts.config.pull_endpoints(&reference.registry);
        let mut last = None;
        for ep in endpoints {
            let mirror = ep.is_mirror;
            let host = ep.host.clone();
            match op(ep).await {
                Ok(v) => return Ok(v),
                Err(e) if mirror => {
                    tracing::debug!(mirror = %host, error = %e, "mirror failed, trying next endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::ManifestNotFound {
            reference: reference.to_string(),
        }))
    }

    /// Fetch a manifest or index by tag or digest: its descriptor (digest
    /// computed from the bytes, media type from the document or the
    /// `Content-Type`) and raw bytes. A digest reference is verified.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let what = reference.to_string();
        self.on_pull_endpoints(reference, |ep| {
            let what = &what;
            async move {
                self.retry_transient(what, &|| {}, || self.fetch_manifest_from(&ep, reference))
                    .await
            }
        })
        .await
    }

    /// What a tag (or digest) points at right now, via `HEAD`: digest, size
    /// and media type, without downloading the document. For cheap "did the
    /// base image move?" checks. Falls back to a `GET` when the registry does
    /// not report `Docker-Content-Digest` (the digest must then be computed).
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Descriptor, RegistryError> {
        let what = reference.to_string();
        self.on_pull_endpoints(reference, |ep| {
            let what = &what;
            async move {
                let head = self
                    .retry_transient(what, &|| {}, || self.head_manifest_from(&ep, reference))
                    .await?;
                match head {
                    Some(d) => Ok(d),
                    None => {
                        let (d, _) = self
                            .retry_transient(what, &|| {}, || {
                                self.fetch_manifest_from(&ep, reference)
                            })
                            .await?;
                        Ok(d)
                    }
                }
            }
        })
        .await
    }

    /// Sends `method` for `reference`'s manifest (accepting every manifest
    /// and index type); a 404 is [`RegistryError::ManifestNotFound`], any
    /// other failure status an error. Shared by HEAD and GET so both ask
    /// the same way.
    async fn manifest_request(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        method: Method,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = Self::api_url(
            ep,
            &format!(
                "{}/manifests/{}",
                reference.repository,
                reference.tag_or_digest()
            ),
        )?;
        let scopes = Scopes::pull(&reference.repository);
        let build = || {
            let mut req = Self::request(method.clone(), url.clone());
            req.headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
            Ok(req)
        };
        let resp = self.send_once(ep, &scopes, &build).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::ManifestNotFound {
                reference: reference.to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(status_error(method.as_str(), resp).await);
        }
        Ok(resp)
    }

    async fn head_manifest_from(
        &self,
        ep: &Endpoint,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        let resp = self.manifest_request(ep, reference, Method::HEAD).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned())
        };
        let digest = header("docker-content-digest").and_then(|d| Digest::parse(&d).ok());
        let media_type = header("content-type").filter(|c| mt::is_manifest(c) || mt::is_index(c));
        // Read the header itself: for a HEAD response the body length
        // reqwest reports is that of the (empty) body.
        let size = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let (Some(digest), Some(media_type), Some(size)) = (digest, media_type, size) else {
            return Ok(None);
        };
        if reference
            .digest
            .as_ref()
            .is_some_and(|want| *want != digest)
        {
            return Err(RegistryError::DigestMismatch {
                expected: reference.digest.clone().unwrap_or_else(|| digest.clone()),
                actual: digest,
                source_url: redact(resp.url()),
            });
        }
        Ok(Some(Descriptor::new(media_type, digest, size)))
    }

    async fn fetch_manifest_from(
        &self,
        ep: &Endpoint,
        reference: &Reference,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let resp = self.manifest_request(ep, reference, Method::GET).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let source_url = redact(resp.url());
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &format!("manifest {reference}")).await?;
        let digest = Digest::sha256(&bytes);
        if let Some(want) = &reference.digest
            && *want != digest
        {
            return Err(RegistryError::DigestMismatch {
                expected: want.clone(),
                actual: digest,
                source_url,
            });
        }
        let parsed = manifest::parse(&bytes, content_type.as_deref()).map_err(|e| {
            RegistryError::Invalid {
                kind: "manifest",
                subject: reference.to_string(),
                message: e.to_string(),
            }
        })?;
        let media_type = match &parsed {
            Parsed::Manifest(m) => m.media_type.clone(),
            Parsed::Index(i) => i.media_type.clone(),
        }
        .or(content_type.filter(|c| mt::is_manifest(c) || mt::is_index(c)))
        .unwrap_or_else(|| match parsed {
            Parsed::Manifest(_) => mt::OCI_MANIFEST.to_owned(),
            Parsed::Index(_) => mt::OCI_INDEX.to_owned(),
        });
        let size = bytes.len() as u64;
        Ok((Descriptor::new(media_type, digest, size), bytes))
    }

    /// Resolve `reference` to the image for `platform`: fetch the manifest
    /// (selecting from an index like containerd: exact platform first, then
    /// compatible variants), fetch the config, and store index, manifest and
    /// config blobs in `store`. Layers are not downloaded (see
    /// [`RegistryClient::pull_layers`]).
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &ContentStore,
    ) -> Result<ResolvedImage, RegistryError> {
        let (top_desc, top_bytes) = self.fetch_manifest(reference).await?;
        let invalid = |kind, subject: &dyn std::fmt::Display, e: &dyn std::fmt::Display| {
            RegistryError::Invalid {
                kind,
                subject: subject.to_string(),
                message: e.to_string(),
            }
        };
        let (index, manifest_desc, manifest_bytes) = if mt::is_index(&top_desc.media_type) {
            let idx = manifest::ImageIndex::from_slice(&top_bytes)
                .map_err(|e| invalid("index", reference, &e))?;
            let chosen = idx.select(platform).cloned().ok_or_else(|| {
                let available: Vec<String> = idx
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                    .collect();
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available.join(", ")
                    },
                }
            })?;
            let child_ref = reference.with_digest(chosen.digest.clone());
            let (mut desc, bytes) = self.fetch_manifest(&child_ref).await?;
            if desc.size != chosen.size {
                return Err(RegistryError::SizeMismatch {
                    digest: chosen.digest.clone(),
                    expected: chosen.size,
                    actual: desc.size,
                    source_url: child_ref.to_string(),
                });
            }
            desc.platform = chosen.platform.clone();
            (Some((top_desc, top_bytes)), desc, bytes)
        } else {
            (None, top_desc, top_bytes)
        };
        if !mt::is_manifest(&manifest_desc.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                reference: reference.to_string(),
                media_type: manifest_desc.media_type.clone(),
            });
        }
        let manifest = ImageManifest::from_slice(&manifest_bytes)
            .map_err(|e| invalid("manifest", &manifest_desc.digest, &e))?;
        manifest
            .check_types()
            .map_err(|e| invalid("manifest", &manifest_desc.digest, &e))?;
        let config_descriptor = manifest.config.clone();
        let config_bytes = self
            .fetch_small_blob(reference, &config_descriptor, MAX_CONFIG_SIZE)
            .await?;
        let config = ImageConfig::from_slice(&config_bytes)
            .map_err(|e| invalid("config", &config_descriptor.digest, &e))?;
        let mut manifest_desc = manifest_desc;
        if manifest_desc.platform.is_none() {
            manifest_desc.platform = Some(config.platform());
        }
        if let Some((d, b)) = &index {
            put_verified(store, &d.digest, b)?;
        }
        put_verified(store, &manifest_desc.digest, &manifest_bytes)?;
        put_verified(store, &config_descriptor.digest, &config_bytes)?;
        Ok(ResolvedImage {
            reference: reference.clone(),
            layers: manifest.layers.clone(),
            manifest_descriptor: manifest_desc,
            manifest_bytes,
            manifest,
            config_descriptor,
            config_bytes,
            config,
            index,
        })
    }

    /// Resolve, then download every layer (in parallel, bounded).
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &ContentStore,
        progress: ProgressFn<'_>,
    ) -> Result<ResolvedImage, RegistryError> {
        let image = self.resolve(reference, platform, store).await?;
        self.pull_layers(reference, &image.layers, store, progress)
            .await?;
        Ok(image)
    }

    /// Download `layers` of `reference`'s repository into `store`, at most
    /// `max_concurrent_blobs` at a time. Blobs already stored are skipped.
    /// Stops at the first failure (blobs already finished stay stored: they
    /// are verified and content-addressed).
    pub async fn pull_layers(
        &self,
        reference: &Reference,
        layers: &[Descriptor],
        store: &ContentStore,
        progress: ProgressFn<'_>,
    ) -> Result<(), RegistryError> {
        let limit = self.inner.opts.max_concurrent_blobs.max(1);
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&Descriptor> = layers.iter().filter(|d| seen.insert(&d.digest)).collect();
        // Futures built eagerly: a lazy `stream.map(closure)` here makes the
        // whole future fail the `Send` check (a higher-ranked closure
        // lifetime the compiler cannot prove), and callers spawn it.
        let downloads: Vec<_> = unique
            .into_iter()
            .map(|d| self.fetch_blob(reference, d, store, progress))
            .collect();
        let mut results = futures_util::stream::iter(downloads).buffer_unordered(limit);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Fetch a small blob (a config) into memory, verified.
    pub(crate) async fn fetch_small_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if desc.size > limit {
            return Err(RegistryError::TooLarge {
                what: format!("blob {}", desc.digest),
                limit,
            });
        }
        let what = desc.digest.to_string();
        self.on_pull_endpoints(reference, |ep| {
            let what = &what;
            async move {
                self.retry_transient(what, &|| {}, || {
                    self.fetch_small_blob_once(&ep, reference, desc)
                })
                .await
            }
        })
        .await
    }

    async fn fetch_small_blob_once(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let resp = self
            .open_blob_stream(ep, reference, &desc.digest, 0)
            .await?;
        let source_url = redact(resp.url());
        let bytes = read_limited(resp, desc.size, &format!("blob {}", desc.digest)).await?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: bytes.len() as u64,
                source_url,
            });
        }
        let actual = Digest::sha256(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
                source_url,
            });
        }
        Ok(bytes)
    }
}

/// Store bytes we have already verified against `digest`.
fn put_verified(store: &ContentStore, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    if store.contains(digest) {
        return Ok(());
    }
    let got = store.put_bytes(bytes).map_err(|e| store_err(digest, e))?;
    if got != *digest {
        return Err(store_err(digest, format!("stored as `{got}`")));
    }
    Ok(())
}
