//! Disk usage and garbage collection through the embedding API: thin async
//! wrappers over the engine (the work is blocking file-system and DB work,
//! so it runs off the async runtime).

use crate::{Builder, Error};
use rbuild_solver::{DiskUsage, PruneOptions, PruneReport};

impl Builder {
    /// What uses space in the state dir (`rbuild du`).
    pub async fn disk_usage(&self) -> Result<DiskUsage, Error> {
        let engine = self.engine().clone();
        let du = tokio::task::spawn_blocking(move || engine.disk_usage())
            .await
            .map_err(|e| Error::Invalid(format!("disk usage task: {e}")))??;
        Ok(du)
    }

    /// Removes cache records, snapshots, blobs (and with `all`, cache mounts)
    /// as `opts` says; never what a running build uses (`rbuild prune`).
    pub async fn prune(&self, opts: PruneOptions) -> Result<PruneReport, Error> {
        let engine = self.engine().clone();
        let report = tokio::task::spawn_blocking(move || engine.prune(&opts))
            .await
            .map_err(|e| Error::Invalid(format!("prune task: {e}")))??;
        Ok(report)
    }

    /// Automatic GC after a build: when the config sets `gc-keep-storage`
    /// and the cache uses more, prunes least recently used records until it
    /// uses less. `None` when there is no cap or usage is under it.
    pub async fn auto_gc(&self) -> Result<Option<PruneReport>, Error> {
        let cap = self
            .config()
            .gc_keep_storage_bytes()
            .map_err(|e| Error::Invalid(format!("gc-keep-storage: {e}")))?;
        let Some(cap) = cap else { return Ok(None) };
        let engine = self.engine().clone();
        let report = tokio::task::spawn_blocking(move || engine.gc_to_cap(cap))
            .await
            .map_err(|e| Error::Invalid(format!("gc task: {e}")))??;
        Ok(report)
    }
}
