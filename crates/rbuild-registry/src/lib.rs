//! rbuild-registry: an OCI distribution client on `reqwest`.
//!
//! Pulls images (manifests, indexes with platform selection, configs,
//! layers streamed into the content store and verified) and pushes them
//! (HEAD to skip, cross-repository mounts, streamed monolithic or chunked
//! uploads, manifests after their blobs). Handles anonymous, basic and
//! bearer-token auth with credentials from `~/.docker/config.json` or a
//! caller-supplied provider, registry mirrors, plain-HTTP and self-signed
//! registries, and retries with backoff.
//!
//! ```no_run
//! # async fn demo(store: &rbuild_oci::store::ContentStore) -> Result<(), rbuild_registry::RegistryError> {
//! use rbuild_registry::{ClientOptions, RegistryClient, no_progress};
//! let client = RegistryClient::new(ClientOptions::default())?;
//! let reference = rbuild_oci::Reference::parse("busybox").expect("valid");
//! let image = client
//!     .pull(&reference, &rbuild_oci::Platform::host(), store, &no_progress)
//!     .await?;
//! # let _ = image; Ok(()) }
//! ```

pub mod auth;
mod client;
pub mod config;
pub mod credentials;
mod download;
pub mod error;
pub mod progress;
mod pull;
mod push;
pub mod retry;

pub use auth::{Challenge, Scopes, parse_challenges};
pub use client::{ClientOptions, RegistryClient};
pub use config::{Endpoint, HostConfig, RegistryConfig, Scheme, is_loopback_host};
pub use credentials::{
    Anonymous, Credential, CredentialProvider, CredentialsError, DockerConfigCredentials,
    StaticCredentials,
};
pub use error::RegistryError;
pub use progress::{ProgressEvent, ProgressFn, ProgressKind, no_progress};
pub use pull::{MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, ResolvedImage};
pub use push::{PushOptions, PushSummary};
pub use retry::RetryPolicy;
