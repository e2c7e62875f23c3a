//! HTTP vertices (`ADD https://…`): one downloaded file in a snapshot of
//! its own, which the ADD then copies like any other source.
//!
//! As BuildKit: without `--checksum` the file is downloaded on every build
//! and the vertex's cache key is what was downloaded (so unchanged content
//! keeps everything after it cached); with `--checksum` the checksum is the
//! key and a cached result is used without asking the server. The file is
//! mode 0600 and dated by `Last-Modified`.

use crate::progress::{Event, now_ms};
use crate::solve::{Ctx, Output, Solved};
use crate::SolveError;
use rbuild_graph::{Digest, HttpSource, Vertex};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// Solves an HTTP vertex, with its own progress events (its cache key is
/// only known after the download).
pub(crate) async fn solve_http(ctx: &Arc<Ctx>, vertex: &Vertex, src: &HttpSource) -> Result<Solved, SolveError> {
    let digest = vertex.digest().to_string();
    let name = vertex.meta.name.clone();
    let engine = &ctx.engine;
    let pinned_key = src.checksum.as_ref().map(|_| Digest::of_json(&("http", &digest)).to_string());
    if let Some(key) = &pinned_key
        && !vertex.meta.ignore_cache
        && let Some(snapshot) = engine.cached(key)?
    {
        ctx.progress().emit(Event::Cached { vertex: digest, name, time_ms: now_ms() });
        return Ok(Solved { key: key.clone(), output: Output::Snapshot(Some(snapshot)) });
    }
    let _permit = ctx.limit.acquire().await.map_err(|_| SolveError::Cancelled)?;
    ctx.reported(digest, name, true, download_into_snapshot(ctx, vertex, src, pinned_key)).await
}

fn download_err(src: &HttpSource, message: impl Into<String>) -> SolveError {
    SolveError::Download { url: src.url.clone(), message: message.into() }
}

/// A downloaded file: where it is, its digest and its date.
struct Fetched {
    file: tempfile::NamedTempFile,
    digest: String,
    modified: Option<SystemTime>,
}

async fn fetch(tmp: &Path, src: &HttpSource) -> Result<Fetched, SolveError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            let scheme = attempt.url().scheme().to_string();
            attempt.error(format!("redirect to a `{scheme}:` URL refused (only http and https are followed)"))
        } else {
            attempt.follow()
        }
    });
    let client = reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(30))
        // A server that stops sending fails the step instead of hanging it.
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| download_err(src, crate::chain(&e)))?;
    let mut request = client.get(&src.url);
    if let Some(c) = &src.credentials {
        request = request.basic_auth(&c.user, c.password.as_ref());
    }
    let mut response = request.send().await.map_err(|e| download_err(src, crate::chain(&e)))?;
    let status = response.status();
    if status.is_redirection() {
        // reqwest hands back redirects it cannot follow, such as `file:`.
        let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
        let scheme = location.and_then(|l| l.split_once(':')).map(|(s, _)| s.to_ascii_lowercase());
        let message = match scheme {
            Some(s) if s != "http" && s != "https" && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) => {
                format!("redirect to a `{s}:` URL refused (only http and https are followed)")
            }
            _ => format!("server replied {status} and the redirect was not followed"),
        };
        return Err(download_err(src, message));
    }
    if !status.is_success() {
        return Err(download_err(src, format!("server replied {status}")));
    }
    let modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let mut file = tempfile::NamedTempFile::new_in(tmp).map_err(|e| SolveError::io(tmp, e))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| download_err(src, crate::chain(&e)))? {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| SolveError::io(file.path(), e))?;
    }
    file.flush().map_err(|e| SolveError::io(file.path(), e))?;
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    Ok(Fetched { file, digest, modified })
}

async fn download_into_snapshot(
    ctx: &Arc<Ctx>,
    vertex: &Vertex,
    src: &HttpSource,
    pinned_key: Option<String>,
) -> Result<Solved, SolveError> {
    let engine = &ctx.engine;
    let fetched = fetch(&engine.tmp, src).await?;
    if let Some(want) = &src.checksum
        && !want.eq_ignore_ascii_case(&fetched.digest)
    {
        return Err(download_err(src, format!("checksum mismatch: expected `{want}`, got `{}`", fetched.digest)));
    }
    let modified_secs = fetched
        .modified
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let key = pinned_key.unwrap_or_else(|| {
        Digest::of_json(&("http", &src.url, &src.filename, &fetched.digest, modified_secs)).to_string()
    });
    if !vertex.meta.ignore_cache
        && let Some(snapshot) = engine.cached(&key)?
    {
        return Ok(Solved { key, output: Output::Snapshot(Some(snapshot)) });
    }
    let active = crate::prepare(engine, None)?;
    let target = active.upper.join(&src.filename);
    let placed = place(fetched, &target);
    if let Err(e) = placed {
        drop(active);
        return Err(e);
    }
    let snapshot = engine.commit_snapshot(active, &key, None, &vertex.meta.name, vertex.meta.ignore_cache).await?;
    Ok(Solved { key, output: Output::Snapshot(Some(snapshot)) })
}

/// Moves the download to `target` as a 0600 file dated by the server.
fn place(fetched: Fetched, target: &Path) -> Result<(), SolveError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| SolveError::io(target, e);
    let file = match fetched.file.persist_noclobber(target) {
        Ok(f) => f,
        // Another filesystem: copy instead.
        Err(e) => {
            std::fs::copy(e.file.path(), target).map_err(io)?;
            std::fs::File::options().write(true).open(target).map_err(io)?
        }
    };
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    if let Some(t) = fetched.modified {
        file.set_modified(t).map_err(io)?;
    }
    Ok(())
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form
/// servers must send; other forms give no date.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.trim().split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let day: u32 = day.parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else { return None };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 || year < 1970 {
        return None;
    }
    let days = rbuild_oci::config::days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_709_164_800);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(parse_http_date("Sun, 99 Nov 1994 08:49:37 GMT"), None);
    }
}
