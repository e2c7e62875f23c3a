//! Shared test helpers: a real registry, a fake one, small images, skopeo,
//! and the push/pull calls most tests make.
#![allow(dead_code, clippy::print_stderr)]

pub mod fake;
pub mod image;
pub mod registry;
pub mod skopeo;

use std::sync::{Arc, Mutex};

use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_registry::{
    ClientOptions, Credential, HostConfig, ProgressEvent, PushOptions, PushSummary, RegistryClient,
    RegistryError, ResolvedImage, RetryPolicy, StaticCredentials, no_progress,
};

use image::{TempStore, TestImage, build_image};

/// Client options for tests: quick retries.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(50),
            max_retry_after: std::time::Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

pub fn client(opts: ClientOptions) -> RegistryClient {
    RegistryClient::new(opts).expect("client")
}

/// [`fast_options`] that answer `registry`'s challenges with basic
/// credentials.
pub fn basic_auth_options(registry: &str, user: &str, password: &str) -> ClientOptions {
    let mut opts = fast_options();
    opts.credentials =
        Arc::new(StaticCredentials::new().with(registry, Credential::basic(user, password)));
    opts
}

/// [`fast_options`] with `host`'s settings (CA, insecure, mirrors) for the
/// registry `registry`.
pub fn host_options(registry: &str, host: HostConfig) -> ClientOptions {
    let mut opts = fast_options();
    opts.config.hosts.insert(registry.to_owned(), host);
    opts
}

/// `name` (`repo:tag`) on the registry at `addr`.
pub fn image_ref(addr: &str, name: &str) -> Reference {
    Reference::parse(&format!("{addr}/{name}")).expect("reference")
}

/// A platform from its `os/arch[/variant]` text.
pub fn platform(text: &str) -> Platform {
    Platform::parse(text).expect("platform")
}

/// Pushes `img` from `src` with default options and no progress.
pub async fn push(
    c: &RegistryClient,
    reference: &Reference,
    img: &TestImage,
    src: &TempStore,
) -> Result<PushSummary, RegistryError> {
    c.push(
        reference,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
}

/// Pulls `reference` for `platform` into `dst`, without progress.
pub async fn pull(
    c: &RegistryClient,
    reference: &Reference,
    platform_text: &str,
    dst: &TempStore,
) -> Result<ResolvedImage, RegistryError> {
    c.pull(
        reference,
        &platform(platform_text),
        &dst.store,
        &no_progress,
    )
    .await
}

/// A single-platform image of `layers` pushed as `name` to the registry at
/// `addr`: what a test pulls back or breaks. The store holds the source.
pub async fn seed(addr: &str, name: &str, layers: &[&[u8]]) -> (Reference, TestImage, TempStore) {
    let src = TempStore::new();
    let img = build_image(&src.store, layers);
    let reference = image_ref(addr, name);
    push(&client(fast_options()), &reference, &img, &src)
        .await
        .unwrap_or_else(|e| panic!("seeding {reference}: {e}"));
    (reference, img, src)
}

/// Collects progress events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<ProgressEvent>>>);

impl Events {
    pub fn callback(&self) -> impl Fn(ProgressEvent) + Send + Sync + 'static {
        let inner = Arc::clone(&self.0);
        move |e| inner.lock().expect("events").push(e)
    }
    pub fn all(&self) -> Vec<ProgressEvent> {
        self.0.lock().expect("events").clone()
    }
}
