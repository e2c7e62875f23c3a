//! The registry client's error type.
//!
//! Every variant names its subject (URL, reference, digest, path) and, for
//! server refusals, what the server said, because "push failed: 400" is not
//! something a user can act on.

use std::path::PathBuf;

use rbuild_oci::digest::Digest;

use crate::credentials::CredentialsError;

/// Errors from the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An extra CA certificate could not be read or parsed.
    #[error("cannot load CA certificate `{path}`: {message}")]
    CaCert {
        /// The PEM file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client could not be constructed.
    #[error("cannot build HTTP client for `{host}`: {source}")]
    ClientBuild {
        /// The host the client was for.
        host: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A URL could not be formed from server-provided or user input.
    #[error("invalid URL `{url}`: {message}")]
    Url {
        /// The offending URL text.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The connection failed or broke (DNS, refused, reset, timeout,
    /// truncated body).
    #[error("{method} `{url}`: {source}")]
    Transport {
        /// HTTP method.
        method: String,
        /// The request URL (no credentials in it).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("{method} `{url}`: server answered {status}{}", fmt_message(.message))]
    Status {
        /// HTTP method.
        method: String,
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The server's error text (OCI error JSON decoded when possible).
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// The registry refused our credentials (or we had none).
    #[error("unauthorized at `{host}` for `{scope}`: {message}")]
    Unauthorized {
        /// Endpoint host.
        host: String,
        /// The access asked for.
        scope: String,
        /// What the server said, and a hint.
        message: String,
    },
    /// A `WWW-Authenticate` header we cannot understand.
    #[error("cannot parse WWW-Authenticate header `{header}`")]
    BadChallenge {
        /// The header (truncated).
        header: String,
    },
    /// The token service failed or answered nonsense.
    #[error("token service `{realm}`: {message}")]
    Token {
        /// Token service URL.
        realm: String,
        /// What went wrong.
        message: String,
    },
    /// Looking up credentials failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The manifest (or tag) does not exist.
    #[error("manifest `{reference}` not found")]
    ManifestNotFound {
        /// The image reference.
        reference: String,
    },
    /// The blob does not exist in the repository.
    #[error("blob `{digest}` not found in `{repository}`")]
    BlobNotFound {
        /// Repository asked.
        repository: String,
        /// The blob digest.
        digest: Digest,
    },
    /// Content did not hash to the digest it was asked for.
    #[error("content for `{expected}` from `{source_url}` has digest `{actual}`")]
    DigestMismatch {
        /// What we asked for.
        expected: Digest,
        /// What we got.
        actual: Digest,
        /// Where it came from.
        source_url: String,
    },
    /// Content was longer or shorter than its descriptor says.
    #[error("content for `{digest}` from `{source_url}` is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob digest.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes actually received (or a lower bound when cut off).
        actual: u64,
        /// Where it came from.
        source_url: String,
    },
    /// A manifest/config is larger than we are willing to hold in memory.
    #[error("`{what}` is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A manifest, index or config could not be parsed.
    #[error("invalid {kind} `{subject}`: {message}")]
    Invalid {
        /// `manifest`, `index`, `config`.
        kind: &'static str,
        /// Reference or digest.
        subject: String,
        /// What is wrong.
        message: String,
    },
    /// An unsupported manifest media type.
    #[error("`{reference}` has unsupported media type `{media_type}`")]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// The media type.
        media_type: String,
    },
    /// An index had no manifest for the requested platform.
    #[error("`{reference}` has no image for platform `{platform}` (available: {available})")]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The wanted platform.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// Content needed for a push is not in the local store.
    #[error("cannot push `{reference}`: `{digest}` is not in the local content store")]
    MissingContent {
        /// The reference being pushed.
        reference: String,
        /// The absent blob.
        digest: Digest,
    },
    /// The local content store failed.
    #[error("content store error for `{digest}`: {message}")]
    Store {
        /// The blob concerned.
        digest: String,
        /// The store's error text.
        message: String,
    },
    /// Local I/O failed (reading a blob to upload).
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A background task died.
    #[error("background task failed: {0}")]
    Task(String),
}

fn fmt_message(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

impl RegistryError {
    /// True for failures worth another attempt: connection trouble, 5xx,
    /// 429, and bodies cut short.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            RegistryError::SizeMismatch {
                expected, actual, ..
            } => actual < expected,
            _ => false,
        }
    }

    /// How long the server asked us to wait before trying again.
    #[must_use]
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for server refusals.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

/// Decode a distribution-spec error body (`{"errors":[{"code","message",
/// "detail"}]}`) into one line; otherwise the first bytes of the text.
#[must_use]
pub fn server_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|x| {
                let mut s = format!("{} {}", x.code, x.message).trim().to_owned();
                if let Some(d) = &x.detail
                    && !d.is_null()
                {
                    let d = d.to_string();
                    s.push_str(&format!(" ({})", truncate(&d, 200)));
                }
                s
            })
            .collect();
        if !parts.is_empty() {
            return truncate(&parts.join("; "), 300);
        }
    }
    let text = String::from_utf8_lossy(body);
    truncate(text.trim(), 300)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn server_message_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let m = server_message(&bytes);
            prop_assert!(m.chars().count() <= 301);
        }
    }

    #[test]
    fn server_messages_are_decoded() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:abc"}]}"#;
        assert_eq!(
            server_message(body),
            r#"BLOB_UNKNOWN blob unknown to registry ("sha256:abc")"#
        );
        assert_eq!(server_message(b"  plain text \n"), "plain text");
        let long = "x".repeat(1000);
        assert_eq!(server_message(long.as_bytes()).chars().count(), 301);
    }

    #[test]
    fn transient_classification() {
        let s = |status| RegistryError::Status {
            method: "GET".into(),
            url: "u".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(s(500).is_transient());
        assert!(s(503).is_transient());
        assert!(s(429).is_transient());
        assert!(!s(404).is_transient());
        assert!(!s(400).is_transient());
        assert_eq!(s(404).to_string(), "GET `u`: server answered 404");
    }
}
