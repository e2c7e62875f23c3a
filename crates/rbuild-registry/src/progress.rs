//! Progress events for pulls and pushes.
//!
//! The client reports; it never prints. The CLI renders these as progress
//! bars, the daemon forwards them over its status stream.

use rbuild_oci::digest::Digest;

/// What happened to a blob or manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressKind {
    /// A transfer began (`done` = 0).
    Started,
    /// Bytes moved (`done` so far of `total`).
    Transferring,
    /// Push: the registry already had the blob; nothing uploaded.
    Exists,
    /// Push: the blob was mounted from another repository; nothing uploaded.
    Mounted,
    /// Pull: the blob was already in the local store; nothing downloaded.
    Cached,
    /// The transfer failed transiently and starts over (`done` resets).
    Retrying,
    /// The transfer finished and was verified.
    Done,
}

/// One progress report about one piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// The content concerned.
    pub digest: Digest,
    /// What happened.
    pub kind: ProgressKind,
    /// Bytes transferred so far.
    pub done: u64,
    /// Total size in bytes.
    pub total: u64,
}

/// The callback type pulls and pushes report through.
pub type ProgressFn<'a> = &'a (dyn Fn(ProgressEvent) + Send + Sync);

/// A callback that ignores everything.
pub fn no_progress(_: ProgressEvent) {}

pub(crate) fn emit(
    progress: ProgressFn<'_>,
    digest: &Digest,
    kind: ProgressKind,
    done: u64,
    total: u64,
) {
    progress(ProgressEvent {
        digest: digest.clone(),
        kind,
        done,
        total,
    });
}

/// Emits `Transferring` at most every `STEP` bytes so a 1 GB blob does not
/// produce a million events.
pub(crate) struct Throttle {
    last: u64,
}

const STEP: u64 = 256 << 10;

impl Throttle {
    pub(crate) fn new() -> Self {
        Self { last: 0 }
    }

    pub(crate) fn due(&mut self, done: u64, total: u64) -> bool {
        if done >= total || done >= self.last + STEP {
            self.last = done;
            true
        } else {
            false
        }
    }
}
