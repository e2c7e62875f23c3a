//! rbuild-fileop: filesystem operations performed *inside a root*.
//!
//! Every path handled here comes from a hostile source (a Dockerfile, a build
//! context, an earlier image layer), so every lookup is made relative to an
//! open root directory with `openat2(RESOLVE_IN_ROOT)` or fd-relative calls;
//! no path is ever built by string joining and then followed.
//!
//! - [`users`]: `USER` / `--chown` resolution from the image's own databases.
//! - [`copy`]: `COPY`/`ADD` semantics of BuildKit's file-op backend.
//! - [`pattern`]: source wildcards and `--exclude` patterns.
//! - [`meta`]: `--chmod` specs.
//! - [`ops`]: `mkdir`, `mkfile`, `rm`.
//! - [`hash`]: content hash of a selection (cache keys), with a stat cache.
//! - [`walk`]: deterministic context walking with an exclusion predicate.

/// Deepest directory nesting any operation here will enter. Hostile trees can
/// be nested far deeper than `PATH_MAX` suggests (fd-relative walks have no
/// length limit); each level costs stack and an open fd, so we stop with an
/// error instead of exhausting either (256 levels fit a 2 MiB thread stack
/// even in debug builds).
pub const MAX_DEPTH: usize = 256;

pub mod copy;
pub mod hash;
pub mod meta;
pub mod ops;
pub mod pattern;
mod root;
mod select;
mod unpack;
pub mod users;
pub mod walk;

pub use copy::{CopyError, CopyOptions, CopyStats, copy};
pub use hash::{MemoryStatCache, SelectionOptions, StatCache, StatKey, hash_selection};
pub use meta::Chmod;
