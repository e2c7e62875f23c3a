//! rbuild's config file: `$XDG_CONFIG_HOME/rbuild/config.toml` (else
//! `~/.config/rbuild/config.toml`), falling back to `/etc/rbuild/config.toml`.
//!
//! ```toml
//! root = "/var/lib/rbuild"          # state dir
//! max-parallelism = 4
//! gc-keep-storage = "10GB"          # after each build, prune LRU cache above this
//! [registry."docker.io"]
//! mirrors = ["mirror.example:5000"]
//! [registry."registry.internal:5000"]
//! http = true
//! ```

use rbuild_registry::RegistryConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: String, #[source] source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

/// The contents of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The state dir (overridden by `--root`).
    pub root: Option<PathBuf>,
    /// How many steps run at once.
    pub max_parallelism: Option<usize>,
    /// Per-registry settings, as in buildkitd.toml.
    pub registry: RegistryConfig,
    /// A cap on the cache (`"10GB"`, binary units): after each build, least
    /// recently used records are pruned until snapshots and blobs use less.
    /// A cap, not a floor: nothing is kept because of it.
    pub gc_keep_storage: Option<String>,
}

impl Config {
    /// The config file that applies, if any exists.
    pub fn default_path() -> Option<PathBuf> {
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("rbuild/config.toml"));
        [user, Some(PathBuf::from("/etc/rbuild/config.toml"))].into_iter().flatten().find(|p| p.is_file())
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.display().to_string(), message })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.gc_keep_storage_bytes().map_err(|e| format!("gc-keep-storage: {e}"))?;
        Ok(config)
    }

    /// The GC cap in bytes, when one is configured.
    pub fn gc_keep_storage_bytes(&self) -> Result<Option<u64>, rbuild_solver::UnitError> {
        self.gc_keep_storage.as_deref().map(rbuild_solver::parse_size).transpose()
    }

    /// The config from the default location, or the defaults.
    pub fn load_default() -> Result<Self, ConfigError> {
        match Self::default_path() {
            Some(p) => Self::load(&p),
            None => Ok(Config::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(
            "root = \"/x\"\nmax-parallelism = 3\n[registry.\"docker.io\"]\nmirrors = [\"m:5000\"]\n[registry.\"r:5000\"]\nhttp = true\n",
        )
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/x")));
        assert_eq!(c.max_parallelism, Some(3));
        assert_eq!(c.registry.hosts["docker.io"].mirrors, vec!["m:5000".to_string()]);
        assert!(c.registry.hosts["r:5000"].http);
    }

    #[test]
    fn the_gc_cap_is_a_size() {
        let c = Config::parse("gc-keep-storage = \"10GB\"").unwrap();
        assert_eq!(c.gc_keep_storage_bytes().unwrap(), Some(10 << 30));
        assert_eq!(Config::default().gc_keep_storage_bytes().unwrap(), None);
        let e = Config::parse("gc-keep-storage = \"lots\"").unwrap_err();
        assert!(e.contains("`lots`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("rooot = \"/x\"").is_err());
    }
}
