//! Structured progress events.
//!
//! The engine never prints. Every consumer — the TTY renderer, `--progress
//! plain`, `--progress rawjson`, the daemon's status stream — reads these same
//! events.

use serde::Serialize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which output stream a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One thing that happened during a build. `vertex` is the vertex digest;
/// `name` is what the user should see (e.g. `[stage-1 2/3] RUN make`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started { vertex: String, name: String, time_ms: u64 },
    Cached { vertex: String, name: String, time_ms: u64 },
    Log { vertex: String, stream: Stream, data: String, time_ms: u64 },
    Progress { vertex: String, id: String, current: u64, total: Option<u64>, time_ms: u64 },
    Done { vertex: String, name: String, time_ms: u64, duration_ms: u64 },
    Failed { vertex: String, name: String, error: String, time_ms: u64 },
    Warning { message: String, time_ms: u64 },
}

/// Milliseconds since the epoch, for event timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A consumer of events. Cheap to clone; called from many tasks.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(Event) + Send + Sync>);

impl ProgressSink {
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(f))
    }

    /// A sink that drops everything.
    pub fn discard() -> Self {
        Self::new(|_| {})
    }

    pub fn emit(&self, event: Event) {
        (self.0)(event)
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning { message: message.into(), time_ms: now_ms() });
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}
