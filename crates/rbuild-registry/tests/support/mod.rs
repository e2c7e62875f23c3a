//! Shared test helpers: a real registry, a fake one, small images.
#![allow(dead_code, clippy::print_stderr)]

pub mod fake;
pub mod image;
pub mod registry;

use std::sync::{Arc, Mutex};

use rbuild_registry::{ClientOptions, ProgressEvent, RegistryClient, RetryPolicy};

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
