//! Blob downloads: streamed into a store ingest, resumed with `Range` after
//! a broken connection, verified before anything becomes visible.
//!
//! A multi-gigabyte layer on a flaky link should not start from zero every
//! time the connection drops. After a cut, the bytes already written stay
//! in the (unpublished) ingest and the next attempt asks for
//! `Range: bytes=<done>-`. Only a `206` whose `Content-Range` starts exactly
//! there is appended; a registry that ignores ranges (`200`) gets a fresh
//! ingest. Either way the store hashes every byte it was given and publishes
//! the blob only when size and digest match the descriptor.

use std::io::{BufWriter, Write};
use std::sync::Mutex;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};

use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::reference::Reference;
use rbuild_oci::store::{ContentStore, Ingest, StoreError};

use crate::auth::Scopes;
use crate::client::{RegistryClient, lock, redact, status_error};
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::progress::{ProgressFn, ProgressKind, Throttle, emit};

/// Downloaded chunks are batched into writes of this size.
const WRITE_BUFFER: usize = 1 << 20;

/// A download cut short: the bytes so far, not yet published.
struct Partial {
    ingest: BufWriter<Ingest>,
    done: u64,
}

fn store_err(digest: &Digest, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store {
        digest: digest.to_string(),
        message: e.to_string(),
    }
}

/// `bytes <start>-<end>/<total>` → start.
fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

impl RegistryClient {
    /// Download one blob of `reference`'s repository into `store`, streamed
    /// and verified against `desc` (digest and size); nothing is stored when
    /// it does not match. Transient failures are retried; a connection cut
    /// mid-blob resumes where it stopped when the registry honours `Range`.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
        progress: ProgressFn<'_>,
    ) -> Result<(), RegistryError> {
        if store.contains(&desc.digest) {
            emit(
                progress,
                &desc.digest,
                ProgressKind::Cached,
                desc.size,
                desc.size,
            );
            return Ok(());
        }
        let what = desc.digest.to_string();
        self.on_pull_endpoints(reference, |ep| {
            let what = &what;
            async move {
                // Partial data is kept per endpoint: a mirror's bytes are
                // not resumed from the origin.
                let slot: Mutex<Option<Partial>> = Mutex::new(None);
                let on_retry = || {
                    let done = lock(&slot).as_ref().map_or(0, |p| p.done);
                    emit(
                        progress,
                        &desc.digest,
                        ProgressKind::Retrying,
                        done,
                        desc.size,
                    );
                };
                self.retry_transient(what, &on_retry, || {
                    self.fetch_blob_once(&ep, reference, desc, store, progress, &slot)
                })
                .await
            }
        })
        .await
    }

    /// `GET` a blob, from `offset` on when it is non-zero.
    pub(crate) async fn open_blob_stream(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = Self::api_url(ep, &format!("{}/blobs/{}", reference.repository, digest))?;
        let scopes = Scopes::pull(&reference.repository);
        let range = HeaderValue::from_str(&format!("bytes={offset}-"))
            .map_err(|e| RegistryError::Task(e.to_string()))?;
        let build = || {
            let mut req = Self::request(Method::GET, url.clone());
            if offset > 0 {
                req.headers_mut().insert(RANGE, range.clone());
            }
            Ok(req)
        };
        let resp = self.send_once(ep, &scopes, &build).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::BlobNotFound {
                repository: reference.name(),
                digest: digest.clone(),
            });
        }
        if !resp.status().is_success() {
            return Err(status_error("GET", resp).await);
        }
        Ok(resp)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob_once(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
        store: &ContentStore,
        progress: ProgressFn<'_>,
        slot: &Mutex<Option<Partial>>,
    ) -> Result<(), RegistryError> {
        // Taken out of the slot (the guard is not held across awaits) and
        // put back only when a transient failure leaves it worth resuming.
        let partial = lock(slot).take();
        let offset = partial.as_ref().map_or(0, |p| p.done);
        let resp = self
            .open_blob_stream(ep, reference, &desc.digest, offset)
            .await?;
        let source_url = redact(resp.url());
        let resumed = offset > 0
            && resp.status() == StatusCode::PARTIAL_CONTENT
            && content_range_start(&resp) == Some(offset);
        let mut part = match partial {
            Some(p) if resumed => p,
            _ => {
                if resp.status() == StatusCode::PARTIAL_CONTENT {
                    // A range we did not ask for (or not where we asked):
                    // start over from byte 0 on the next attempt.
                    return Err(RegistryError::SizeMismatch {
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        actual: 0,
                        source_url,
                    });
                }
                let ingest = store
                    .ingest(Some((&desc.digest, Some(desc.size))))
                    .map_err(|e| store_err(&desc.digest, e))?;
                emit(progress, &desc.digest, ProgressKind::Started, 0, desc.size);
                Partial {
                    ingest: BufWriter::with_capacity(WRITE_BUFFER, ingest),
                    done: 0,
                }
            }
        };
        let remaining = desc.size - part.done.min(desc.size);
        if let Some(len) = resp.content_length()
            && len > remaining
        {
            return Err(RegistryError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: part.done + len,
                source_url,
            });
        }
        let mut throttle = Throttle::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(source) => {
                    lock(slot).replace(part);
                    return Err(RegistryError::Transport {
                        method: "GET".into(),
                        url: source_url,
                        source: source.without_url(),
                    });
                }
            };
            part.done += chunk.len() as u64;
            if part.done > desc.size {
                return Err(RegistryError::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: part.done,
                    source_url,
                });
            }
            part.ingest
                .write_all(&chunk)
                .map_err(|e| store_err(&desc.digest, e))?;
            if throttle.due(part.done, desc.size) {
                emit(
                    progress,
                    &desc.digest,
                    ProgressKind::Transferring,
                    part.done,
                    desc.size,
                );
            }
        }
        if part.done != desc.size {
            let actual = part.done;
            lock(slot).replace(part);
            return Err(RegistryError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual,
                source_url,
            });
        }
        commit(part, desc, source_url).await?;
        emit(
            progress,
            &desc.digest,
            ProgressKind::Done,
            desc.size,
            desc.size,
        );
        Ok(())
    }
}

/// Publish a complete download. The store hashes what it was given and
/// refuses a blob whose digest differs; the temp file is removed either way.
async fn commit(part: Partial, desc: &Descriptor, source_url: String) -> Result<(), RegistryError> {
    let ingest = part
        .ingest
        .into_inner()
        .map_err(|e| store_err(&desc.digest, e.error()))?;
    let committed = tokio::task::spawn_blocking(move || ingest.commit())
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?;
    match committed {
        Ok(_) => Ok(()),
        Err(StoreError::DigestMismatch { expected, actual }) => {
            Err(RegistryError::DigestMismatch {
                expected,
                actual,
                source_url,
            })
        }
        Err(e) => Err(store_err(&desc.digest, e)),
    }
}
