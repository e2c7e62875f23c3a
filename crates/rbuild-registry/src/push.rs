//! Push: blobs first (skipping what the registry has, mounting what another
//! repository has, streaming the rest from disk), then manifests, then the
//! index — so a tag never points at content the registry lacks.
//!
//! Upload protocol per blob (distribution spec):
//! `HEAD /blobs/<digest>` → exists? done. Otherwise `POST /blobs/uploads/`
//! (with `?mount=<digest>&from=<repo>` when the caller names a source
//! repository: `201` means mounted, `202` means "upload it after all"),
//! then either one streamed `PUT <location>?digest=` or a series of `PATCH`
//! chunks and an empty closing `PUT`. Any transient failure restarts the
//! whole blob from the `HEAD`, because a half-done upload session's state
//! cannot be trusted.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::manifest::{self, Parsed};
use rbuild_oci::media_types as mt;
use rbuild_oci::reference::Reference;
use rbuild_oci::store::ContentStore;

use crate::auth::Scopes;
use crate::client::{RegistryClient, redact, status_error};
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::progress::{ProgressFn, ProgressKind, emit};
use crate::pull::MAX_MANIFEST_SIZE;

/// How deep indexes may nest (index → index → manifest).
const MAX_INDEX_DEPTH: usize = 4;
/// Read size when streaming a blob from disk.
const READ_CHUNK: usize = 256 << 10;
/// How often upload progress is reported.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Caller hints for a push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Repositories on the same registry that may already hold some of the
    /// blobs (the base image's repository): blobs are mounted from there
    /// instead of uploaded when the registry allows it.
    pub mount_from: Vec<String>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSummary {
    /// The digest the reference now points at.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub existed: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Bytes of blob data sent.
    pub bytes_uploaded: u64,
    /// Manifests and indexes put.
    pub manifests: usize,
}

enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded(u64),
}

/// The push plan: every blob, then manifests in the order to put them.
struct Plan {
    blobs: Vec<Descriptor>,
    manifests: Vec<Descriptor>,
}

impl RegistryClient {
    /// Push the manifest or index `desc` (and everything it references) from
    /// `store` to `reference`. The top-level document is put by the
    /// reference's tag, or by its digest when the reference has no tag.
    /// Everything must be in `store`; that is checked before anything is
    /// sent.
    pub async fn push(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
        opts: &PushOptions,
        progress: ProgressFn<'_>,
    ) -> Result<PushSummary, RegistryError> {
        let plan = plan(reference, desc, store)?;
        let ep = self.inner.opts.config.origin(&reference.registry);
        let mut scopes = Scopes::push(&reference.repository);
        let sources: Vec<&str> = opts
            .mount_from
            .iter()
            .map(String::as_str)
            .filter(|r| *r != reference.repository)
            .collect();
        for s in &sources {
            scopes = scopes.with(s, &["pull"]);
        }
        let mut summary = PushSummary {
            digest: desc.digest.clone(),
            uploaded: 0,
            existed: 0,
            mounted: 0,
            bytes_uploaded: 0,
            manifests: 0,
        };
        let limit = self.inner.opts.max_concurrent_blobs.max(1);
        // Built eagerly, not with `stream.map(closure)`: see `pull_layers`.
        let uploads: Vec<_> = plan
            .blobs
            .iter()
            .map(|b| self.push_blob(&ep, &scopes, reference, b, store, &sources, progress))
            .collect();
        let mut uploads = futures_util::stream::iter(uploads).buffer_unordered(limit);
        while let Some(r) = uploads.next().await {
            match r? {
                BlobOutcome::Existed => summary.existed += 1,
                BlobOutcome::Mounted => summary.mounted += 1,
                BlobOutcome::Uploaded(n) => {
                    summary.uploaded += 1;
                    summary.bytes_uploaded += n;
                }
            }
        }
        drop(uploads);
        let last = plan.manifests.len().saturating_sub(1);
        for (i, m) in plan.manifests.iter().enumerate() {
            let target = if i == last {
                reference
                    .tag
                    .clone()
                    .unwrap_or_else(|| m.digest.to_string())
            } else {
                m.digest.to_string()
            };
            self.put_manifest(&ep, &scopes, reference, m, &target, store)
                .await?;
            summary.manifests += 1;
        }
        Ok(summary)
    }

    async fn put_manifest(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        reference: &Reference,
        desc: &Descriptor,
        target: &str,
        store: &ContentStore,
    ) -> Result<(), RegistryError> {
        let bytes = Bytes::from(read_small(store, reference, &desc.digest)?);
        let url = Self::api_url(ep, &format!("{}/manifests/{target}", reference.repository))?;
        let media_type =
            HeaderValue::from_str(&desc.media_type).map_err(|_| RegistryError::Invalid {
                kind: "manifest",
                subject: desc.digest.to_string(),
                message: format!(
                    "media type `{}` is not a valid header value",
                    desc.media_type
                ),
            })?;
        let build = || {
            let mut req = Self::request(Method::PUT, url.clone());
            req.headers_mut().insert(CONTENT_TYPE, media_type.clone());
            *req.body_mut() = Some(bytes.clone().into());
            Ok(req)
        };
        let resp = self.send(ep, scopes, &build).await?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", resp).await);
        }
        check_returned_digest(&resp, &desc.digest)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
        sources: &[&str],
        progress: ProgressFn<'_>,
    ) -> Result<BlobOutcome, RegistryError> {
        let on_retry = || emit(progress, &desc.digest, ProgressKind::Retrying, 0, desc.size);
        self.retry_transient(desc.digest.as_str(), &on_retry, || {
            self.push_blob_once(ep, scopes, reference, desc, store, sources, progress)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob_once(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
        sources: &[&str],
        progress: ProgressFn<'_>,
    ) -> Result<BlobOutcome, RegistryError> {
        let repo = &reference.repository;
        if self.blob_exists(ep, scopes, repo, &desc.digest).await? {
            emit(
                progress,
                &desc.digest,
                ProgressKind::Exists,
                desc.size,
                desc.size,
            );
            return Ok(BlobOutcome::Existed);
        }
        let mut session = None;
        for (i, from) in sources.iter().enumerate() {
            let mut url = Self::api_url(ep, &format!("{repo}/blobs/uploads/"))?;
            url.query_pairs_mut()
                .append_pair("mount", desc.digest.as_str())
                .append_pair("from", from);
            let resp = self.post_upload(ep, scopes, url).await?;
            match resp.status() {
                StatusCode::CREATED => {
                    emit(
                        progress,
                        &desc.digest,
                        ProgressKind::Mounted,
                        desc.size,
                        desc.size,
                    );
                    return Ok(BlobOutcome::Mounted);
                }
                // Not mountable from there: the registry opened an upload
                // session instead. Keep it for the last candidate, cancel it
                // otherwise and try the next source.
                StatusCode::ACCEPTED if i + 1 == sources.len() => session = Some(resp),
                StatusCode::ACCEPTED => self.cancel_upload(ep, scopes, &resp).await,
                _ => return Err(status_error("POST", resp).await),
            }
        }
        let session = match session {
            Some(s) => s,
            None => {
                let url = Self::api_url(ep, &format!("{repo}/blobs/uploads/"))?;
                let resp = self.post_upload(ep, scopes, url).await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error("POST", resp).await);
                }
                resp
            }
        };
        let location = upload_location(&session)?;
        let min_chunk = session
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|n| *n > 0);
        drop(session);
        let opts = &self.inner.opts;
        let chunk = match min_chunk {
            Some(min) => Some(opts.chunk_size.max(min)),
            None if opts.chunk_threshold.is_some_and(|t| desc.size > t) => Some(opts.chunk_size),
            None => None,
        };
        emit(progress, &desc.digest, ProgressKind::Started, 0, desc.size);
        let sent = Arc::new(AtomicU64::new(0));
        let upload = async {
            match chunk {
                Some(c) => {
                    self.upload_chunked(ep, scopes, location, desc, store, c.max(1), &sent)
                        .await
                }
                None => {
                    self.upload_monolithic(ep, scopes, location, desc, store, &sent)
                        .await
                }
            }
        };
        with_progress_ticks(upload, &sent, &desc.digest, desc.size, progress).await?;
        emit(
            progress,
            &desc.digest,
            ProgressKind::Done,
            desc.size,
            desc.size,
        );
        Ok(BlobOutcome::Uploaded(desc.size))
    }

    async fn blob_exists(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = Self::api_url(ep, &format!("{repo}/blobs/{digest}"))?;
        let build = || Ok(Self::request(Method::HEAD, url.clone()));
        let resp = self.send_once(ep, scopes, &build).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error("HEAD", resp).await),
        }
    }

    /// Best-effort `DELETE` of an upload session we will not use.
    async fn cancel_upload(&self, ep: &Endpoint, scopes: &Scopes, session: &Response) {
        let Ok(url) = upload_location(session) else {
            return;
        };
        let build = || Ok(Self::request(Method::DELETE, url.clone()));
        if let Err(e) = self.send_once(ep, scopes, &build).await {
            tracing::debug!(error = %e, "cancelling an upload session failed");
        }
    }

    async fn post_upload(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        url: Url,
    ) -> Result<Response, RegistryError> {
        let build = || {
            let mut req = Self::request(Method::POST, url.clone());
            req.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            Ok(req)
        };
        self.send_once(ep, scopes, &build).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_monolithic(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        mut location: Url,
        desc: &Descriptor,
        store: &ContentStore,
        sent: &Arc<AtomicU64>,
    ) -> Result<(), RegistryError> {
        location
            .query_pairs_mut()
            .append_pair("digest", desc.digest.as_str());
        let build = || {
            sent.store(0, Ordering::Relaxed);
            let body = blob_body(store, &desc.digest, 0, desc.size, Arc::clone(sent))?;
            let mut req = Self::request(Method::PUT, location.clone());
            let h = req.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(CONTENT_LENGTH, HeaderValue::from(desc.size));
            *req.body_mut() = Some(body);
            Ok(req)
        };
        let resp = self.send_once(ep, scopes, &build).await?;
        finish_upload(resp, &desc.digest).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_chunked(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        mut location: Url,
        desc: &Descriptor,
        store: &ContentStore,
        chunk: u64,
        sent: &Arc<AtomicU64>,
    ) -> Result<(), RegistryError> {
        let mut offset = 0;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            let url = location.clone();
            let start_count = offset;
            let build = || {
                sent.store(start_count, Ordering::Relaxed);
                let body = blob_body(store, &desc.digest, offset, len, Arc::clone(sent))?;
                let mut req = Self::request(Method::PATCH, url.clone());
                let h = req.headers_mut();
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert(CONTENT_LENGTH, HeaderValue::from(len));
                let range = format!("{offset}-{}", offset + len - 1);
                h.insert(
                    "content-range",
                    HeaderValue::from_str(&range)
                        .map_err(|e| RegistryError::Task(e.to_string()))?,
                );
                *req.body_mut() = Some(body);
                Ok(req)
            };
            let resp = self.send_once(ep, scopes, &build).await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error("PATCH", resp).await);
            }
            check_range(&resp, offset + len)?;
            location = upload_location(&resp)?;
            offset += len;
        }
        location
            .query_pairs_mut()
            .append_pair("digest", desc.digest.as_str());
        let build = || {
            let mut req = Self::request(Method::PUT, location.clone());
            req.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            Ok(req)
        };
        let resp = self.send_once(ep, scopes, &build).await?;
        finish_upload(resp, &desc.digest).await
    }
}

/// Report `sent` every tick while `fut` runs.
async fn with_progress_ticks<F>(
    fut: F,
    sent: &AtomicU64,
    digest: &Digest,
    total: u64,
    progress: ProgressFn<'_>,
) -> Result<(), RegistryError>
where
    F: std::future::Future<Output = Result<(), RegistryError>>,
{
    tokio::pin!(fut);
    let mut ticker = tokio::time::interval(PROGRESS_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = u64::MAX;
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = ticker.tick() => {
                let now = sent.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    emit(progress, digest, ProgressKind::Transferring, now, total);
                }
            }
        }
    }
}

async fn finish_upload(resp: Response, digest: &Digest) -> Result<(), RegistryError> {
    if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
        return Err(status_error("PUT", resp).await);
    }
    check_returned_digest(&resp, digest)
}

/// After a chunk, the registry's `Range: 0-<last>` must cover exactly what
/// we sent so far; anything else means it lost or invented data.
fn check_range(resp: &Response, expected_len: u64) -> Result<(), RegistryError> {
    let Some(range) = resp.headers().get("range").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let last = range
        .trim()
        .trim_start_matches("bytes=")
        .split_once('-')
        .and_then(|(_, end)| end.trim().parse::<u64>().ok());
    if last.and_then(|l| l.checked_add(1)) == Some(expected_len) {
        return Ok(());
    }
    Err(RegistryError::Status {
        method: "PATCH".into(),
        url: redact(resp.url()),
        status: resp.status().as_u16(),
        message: format!("registry reports range `{range}` after {expected_len} bytes were sent"),
        retry_after: None,
    })
}

/// A registry that reports a different digest than we sent stored
/// something else: refuse to continue (a manifest would point at garbage).
fn check_returned_digest(resp: &Response, digest: &Digest) -> Result<(), RegistryError> {
    let Some(v) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    match Digest::parse(v.trim()) {
        Ok(d) if d == *digest => Ok(()),
        Ok(d) => Err(RegistryError::DigestMismatch {
            expected: digest.clone(),
            actual: d,
            source_url: redact(resp.url()),
        }),
        // Non-sha256 or odd formatting: nothing we can compare.
        Err(_) => Ok(()),
    }
}

/// The upload session URL from a `Location` header, resolved against the
/// request URL (registries send relative paths) and limited to http(s).
fn upload_location(resp: &Response) -> Result<Url, RegistryError> {
    let raw = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            method: "POST".into(),
            url: redact(resp.url()),
            status: resp.status().as_u16(),
            message: "upload response has no `Location` header".into(),
            retry_after: None,
        })?;
    let url = resp.url().join(raw).map_err(|e| RegistryError::Url {
        url: raw.chars().take(200).collect(),
        message: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::Url {
            url: redact(&url),
            message: "upload location is not http(s)".into(),
        });
    }
    Ok(url)
}

/// A streamed request body of `len` bytes of a stored blob from `offset`,
/// counting bytes read into `sent`. Never holds more than one read buffer.
fn blob_body(
    store: &ContentStore,
    digest: &Digest,
    offset: u64,
    len: u64,
    sent: Arc<AtomicU64>,
) -> Result<reqwest::Body, RegistryError> {
    let path = store.path(digest);
    let io_err = |op, source| RegistryError::Io {
        op,
        path: path.clone(),
        source,
    };
    let mut file = store.open_blob(digest).map_err(|e| RegistryError::Store {
        digest: digest.to_string(),
        message: e.to_string(),
    })?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("seek", e))?;
    let state = (file, len, sent, path.clone());
    let stream =
        futures_util::stream::unfold(state, |(mut file, remaining, sent, path)| async move {
            if remaining == 0 {
                return None;
            }
            let want = usize::try_from(remaining.min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            // Reads from the page cache are fast; a blocking read of one buffer
            // on a runtime thread is the accepted trade-off here.
            let mut buf = vec![0u8; want];
            let res = match file.read(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("`{}` ended {remaining} bytes early", path.display()),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let next = match &res {
                Ok(b) => remaining - b.len() as u64,
                Err(_) => 0,
            };
            Some((res, (file, next, sent, path)))
        });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Read a manifest/index from the store (small, capped).
fn read_small(
    store: &ContentStore,
    reference: &Reference,
    digest: &Digest,
) -> Result<Vec<u8>, RegistryError> {
    if !store.contains(digest) {
        return Err(RegistryError::MissingContent {
            reference: reference.to_string(),
            digest: digest.clone(),
        });
    }
    let size = store.size(digest).map_err(|e| RegistryError::Store {
        digest: digest.to_string(),
        message: e.to_string(),
    })?;
    if size > MAX_MANIFEST_SIZE {
        return Err(RegistryError::TooLarge {
            what: format!("manifest {digest}"),
            limit: MAX_MANIFEST_SIZE,
        });
    }
    store.read_all(digest).map_err(|e| RegistryError::Store {
        digest: digest.to_string(),
        message: e.to_string(),
    })
}

/// Walk the document tree under `desc` and check every blob is present.
fn plan(
    reference: &Reference,
    desc: &Descriptor,
    store: &ContentStore,
) -> Result<Plan, RegistryError> {
    let mut plan = Plan {
        blobs: Vec::new(),
        manifests: Vec::new(),
    };
    let mut seen = HashSet::new();
    walk(reference, desc, store, 0, &mut plan, &mut seen)?;
    for b in &plan.blobs {
        if !store.contains(&b.digest) {
            return Err(RegistryError::MissingContent {
                reference: reference.to_string(),
                digest: b.digest.clone(),
            });
        }
        // A descriptor that lies about the size would make us announce one
        // Content-Length and send another.
        let size = store.size(&b.digest).map_err(|e| RegistryError::Store {
            digest: b.digest.to_string(),
            message: e.to_string(),
        })?;
        if size != b.size {
            return Err(RegistryError::SizeMismatch {
                digest: b.digest.clone(),
                expected: b.size,
                actual: size,
                source_url: "the local content store".into(),
            });
        }
    }
    Ok(plan)
}

fn walk(
    reference: &Reference,
    desc: &Descriptor,
    store: &ContentStore,
    depth: usize,
    plan: &mut Plan,
    seen: &mut HashSet<Digest>,
) -> Result<(), RegistryError> {
    let invalid = |e: &dyn std::fmt::Display| RegistryError::Invalid {
        kind: "manifest",
        subject: desc.digest.to_string(),
        message: e.to_string(),
    };
    if depth > MAX_INDEX_DEPTH {
        return Err(invalid(&"indexes nest too deeply"));
    }
    let bytes = read_small(store, reference, &desc.digest)?;
    let parsed = manifest::parse(&bytes, Some(&desc.media_type)).map_err(|e| invalid(&e))?;
    match parsed {
        Parsed::Index(idx) => {
            for child in &idx.manifests {
                if !(mt::is_manifest(&child.media_type) || mt::is_index(&child.media_type)) {
                    return Err(invalid(&format!(
                        "index entry `{}` has media type `{}`",
                        child.digest, child.media_type
                    )));
                }
                walk(reference, child, store, depth + 1, plan, seen)?;
            }
        }
        Parsed::Manifest(m) => {
            for b in std::iter::once(&m.config).chain(m.layers.iter()) {
                if seen.insert(b.digest.clone()) {
                    plan.blobs.push(b.clone());
                }
            }
        }
    }
    if !plan.manifests.iter().any(|m| m.digest == desc.digest) {
        plan.manifests.push(desc.clone());
    }
    Ok(())
}
