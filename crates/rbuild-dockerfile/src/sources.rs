//! What an `ADD`/`COPY` source is: a context path, an HTTP(S) URL or a git
//! repository.
//!
//! BuildKit checks git first: `git://…`, `ssh://…`, scp-like `user@host:path`
//! and `http(s)://…` URLs whose path ends in `.git` are repositories, with an
//! optional `#ref[:subdir]` fragment. Other `http(s)://` sources are
//! downloads. Everything else is a path in the context (or stage). Only ADD
//! may fetch; COPY rejects URLs and repositories.

use serde::Serialize;

/// A classified source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SourceKind {
    /// A path in the build context or the `--from` stage.
    Local,
    /// A file to download.
    Http { url: String },
    /// A repository to clone (ADD only).
    Git {
        /// The remote without its fragment.
        remote: String,
        /// Branch, tag or commit after `#`.
        reference: Option<String>,
        /// Directory after `#ref:`.
        subdir: Option<String>,
        /// `git://` or `http://`: not encrypted.
        unencrypted: bool,
    },
}

/// A source COPY cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("source `{0}` can't be a URL for COPY")]
    UrlInCopy(String),
    #[error("source `{0}` can't be a git ref for COPY")]
    GitInCopy(String),
}

/// Classifies an (expanded) source of ADD (`is_add`) or COPY.
pub fn classify_source(src: &str, is_add: bool) -> Result<SourceKind, SourceError> {
    let kind = classify(src);
    match (&kind, is_add) {
        (SourceKind::Http { .. }, false) => Err(SourceError::UrlInCopy(src.to_string())),
        (SourceKind::Git { .. }, false) => Err(SourceError::GitInCopy(src.to_string())),
        _ => Ok(kind),
    }
}

fn classify(src: &str) -> SourceKind {
    if src.starts_with("./") || src.starts_with("../") {
        return SourceKind::Local;
    }
    let (base, fragment) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let scheme = base.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let is_git = match scheme.as_deref() {
        Some("git" | "ssh") => true,
        Some("http" | "https") => url_path(base).ends_with(".git"),
        Some(_) => false,
        None => is_scp_like(base),
    };
    if is_git {
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (non_empty(r), non_empty(d)),
                None => (non_empty(f), None),
            },
        };
        let unencrypted = matches!(scheme.as_deref(), Some("git" | "http"));
        return SourceKind::Git {
            remote: base.to_string(),
            reference,
            subdir,
            unencrypted,
        };
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        return SourceKind::Http {
            url: src.to_string(),
        };
    }
    SourceKind::Local
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The path part of `scheme://host/path?query`.
fn url_path(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after.find('/').map_or("", |i| &after[i..]);
    path.split(['?']).next().unwrap_or(path)
}

/// `user@host:path` (scp syntax), as git understands it.
fn is_scp_like(s: &str) -> bool {
    let Some((user_host, path)) = s.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && !host.is_empty()
        && !path.is_empty()
        && !user_host.contains('/')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(
        remote: &str,
        reference: Option<&str>,
        subdir: Option<&str>,
        unencrypted: bool,
    ) -> SourceKind {
        SourceKind::Git {
            remote: remote.into(),
            reference: reference.map(Into::into),
            subdir: subdir.map(Into::into),
            unencrypted,
        }
    }

    #[test]
    fn classification() {
        let cases = [
            ("src/", SourceKind::Local),
            ("./https://x", SourceKind::Local),
            ("file.tar.gz", SourceKind::Local),
            ("C:\\path", SourceKind::Local),
            (
                "https://example.com/a.tar.gz",
                SourceKind::Http {
                    url: "https://example.com/a.tar.gz".into(),
                },
            ),
            (
                "http://example.com/x?y=1#frag",
                SourceKind::Http {
                    url: "http://example.com/x?y=1#frag".into(),
                },
            ),
            (
                "https://github.com/moby/buildkit.git",
                git("https://github.com/moby/buildkit.git", None, None, false),
            ),
            (
                "https://github.com/moby/buildkit.git#v0.13.0:docs",
                git(
                    "https://github.com/moby/buildkit.git",
                    Some("v0.13.0"),
                    Some("docs"),
                    false,
                ),
            ),
            (
                "https://github.com/moby/buildkit.git#:docs",
                git(
                    "https://github.com/moby/buildkit.git",
                    None,
                    Some("docs"),
                    false,
                ),
            ),
            (
                "git@github.com:moby/buildkit.git#main",
                git(
                    "git@github.com:moby/buildkit.git",
                    Some("main"),
                    None,
                    false,
                ),
            ),
            (
                "git://example.com/repo",
                git("git://example.com/repo", None, None, true),
            ),
            (
                "ssh://git@example.com/repo.git",
                git("ssh://git@example.com/repo.git", None, None, false),
            ),
            (
                "http://example.com/repo.git",
                git("http://example.com/repo.git", None, None, true),
            ),
            ("user@host", SourceKind::Local),
            ("a:b", SourceKind::Local),
        ];
        for (src, expected) in cases {
            assert_eq!(classify_source(src, true), Ok(expected), "{src}");
        }
        assert!(classify_source("https://example.com/a", false).is_err());
        assert!(classify_source("git@github.com:a/b.git", false).is_err());
        assert_eq!(classify_source("dir/file", false), Ok(SourceKind::Local));
    }
}
