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
