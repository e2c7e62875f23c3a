//! rbuild-fileop: filesystem operations performed *inside a root*.
//!
//! Every path handled here comes from a hostile source (a Dockerfile, a build
//! context, an earlier image layer), so every lookup is made relative to an
//! open root directory with `openat2(RESOLVE_IN_ROOT)` or fd-relative calls;
//! no path is ever built by string joining and then followed.
//!
//! - [`users`]: `USER` / `--chown` resolution from the image's own databases.
//! - [`mod@copy`]: `COPY`/`ADD` semantics of BuildKit's file-op backend.
//! - [`pattern`]: source wildcards and `--exclude` patterns.
//! - [`meta`]: `--chmod` specs.
//! - [`ops`]: `mkdir`, `mkfile`, `rm`.
//! - [`hash`]: content hash of a selection (cache keys), with a stat cache.
//! - [`walk`]: deterministic context walking with an exclusion predicate.
//! - [`resolve_in_root`]: where a path inside a root really is, for APIs
//!   that take a path (bind-mount sources).
//!
//! How the solver runs a Dockerfile `COPY --chown=app src/ /app/` from the
//! context: hash the selection for the cache key, and on a miss copy into
//! the mounted destination snapshot.
//!
//! ```
//! use rbuild_fileop::{copy, hash_selection, CopyOptions, MemoryStatCache, SelectionOptions};
//! # let context = tempfile::tempdir()?;
//! # std::fs::create_dir(context.path().join("src"))?;
//! # std::fs::write(context.path().join("src/main.py"), "print(1)")?;
//! # let rootfs = tempfile::tempdir()?;
//! # let me = rustix::process::geteuid().as_raw().to_string();
//! let opts = CopyOptions::dockerfile()
//!     // names would resolve in the destination's /etc/passwd; ids need none
//!     .with_owner_and_mode(rootfs.path(), Some(me.as_str()), None)?;
//! let sources = vec!["src/".to_string()];
//! let stat_cache = MemoryStatCache::new(); // the solver keeps a persistent one
//! let key = hash_selection(context.path(), &sources, &SelectionOptions::from(&opts), Some(&stat_cache))?;
//! assert!(key.starts_with("sha256:"));
//! let stats = copy(context.path(), &sources, rootfs.path(), "/app/", &opts)?;
//! assert_eq!(stats.files, 1);
//! assert!(rootfs.path().join("app/main.py").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
pub use root::resolve_in_root;
