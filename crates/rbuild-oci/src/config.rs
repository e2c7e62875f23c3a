//! The image config JSON (Docker-compatible, lossless).
//!
//! `oci-spec`'s config type lacks Healthcheck, OnBuild and Shell, which
//! Dockerfiles set and `docker inspect` shows, so we keep our own. Every
//! struct carries a flattened `extra` map so that fields we do not model
//! (from newer Docker versions or other builders) survive a
//! read-modify-write of a base image's config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::platform::Platform;

/// A JSON `{}` value (the value type of `ExposedPorts` and `Volumes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The whole config blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The `MAINTAINER`/author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// GOARCH name.
    #[serde(default)]
    pub architecture: String,
    /// GOOS name.
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Run-time defaults.
    #[serde(default)]
    pub config: ContainerConfig,
    /// The layer diffIDs.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per Dockerfile instruction that changed the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Unknown fields (`os.version`, `container_config`, `docker_version`...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`: the uncompressed layer digests, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// sha256 of each uncompressed layer tar.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { fs_type: "layers".to_owned(), diff_ids: Vec::new() }
    }
}

/// The `config` object, with Docker's capitalised names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: keys like `80/tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `ENV` as `KEY=value`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Windows-only quoting hint Docker sets for shell-form CMD/ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Unknown fields (`Hostname`, `AttachStdin`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `HEALTHCHECK`; durations are nanoseconds, as Docker writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// `--interval` in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// `--timeout` in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// `--start-period` in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// `--start-interval` in ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// `--retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction as BuildKit writes it (`RUN /bin/sh -c make # buildkit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text (BuildKit writes `buildkit.dockerfile.v0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the instruction produced no layer (ENV, CMD, ...).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    /// Unknown fields, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Errors from reading a config blob.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid JSON for an image config.
    #[error("invalid image config JSON")]
    Json(#[from] serde_json::Error),
    /// The number of non-empty history entries disagrees with the layers.
    #[error("image config has {layers} layers but {history} non-empty history entries")]
    HistoryMismatch { layers: usize, history: usize },
}

impl ImageConfig {
    /// A fresh config for a platform (no layers, no history).
    pub fn new(platform: &Platform) -> Self {
        ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..Default::default()
        }
    }

    /// Parses a config blob.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ConfigError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The canonical bytes (sorted keys, compact) to store and digest.
    pub fn to_canonical_vec(&self) -> Result<Vec<u8>, ConfigError> {
        Ok(crate::json::to_canonical_vec(self)?)
    }

    /// The platform this image is for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    /// Appends a layer and its history entry.
    pub fn push_layer(&mut self, diff_id: Digest, history: History) {
        self.rootfs.diff_ids.push(diff_id);
        self.history.push(History { empty_layer: false, ..history });
    }

    /// Appends a history entry that produced no layer.
    pub fn push_empty_history(&mut self, history: History) {
        self.history.push(History { empty_layer: true, ..history });
    }

    /// Checks that history and layers agree (when history is present), as
    /// Docker does before loading an image.
    pub fn validate_history(&self) -> Result<(), ConfigError> {
        if self.history.is_empty() {
            return Ok(());
        }
        let non_empty = self.history.iter().filter(|h| !h.empty_layer).count();
        if non_empty != self.rootfs.diff_ids.len() {
            return Err(ConfigError::HistoryMismatch { layers: self.rootfs.diff_ids.len(), history: non_empty });
        }
        Ok(())
    }
}

/// Formats a Unix timestamp as RFC 3339 UTC (`2024-01-02T03:04:05Z`), the
/// form Docker and BuildKit write; used with `SOURCE_DATE_EPOCH`.
pub fn rfc3339_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, (secs % 3600) / 60, secs % 60)
}

/// Seconds since the epoch of an RFC 3339 time (`2026-01-02T03:04:05Z`,
/// fractions and offsets allowed), the inverse of [`rfc3339_utc`] for the
/// `created` times images carry; `None` when it does not parse.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let rest = s.get(19..)?;
    let rest = rest
        .strip_prefix('.')
        .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(rest);
    let offset = match rest {
        "Z" | "z" | "" => 0,
        tz => {
            let sign = match tz.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// `civil_from_days`). Saturates instead of overflowing on absurd years, so
/// parsers of hostile input can bound the result afterwards.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y.saturating_sub(1) } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.saturating_mul(146_097).saturating_add(doe - 719_468)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{
      "architecture": "amd64",
      "config": {
        "Hostname": "", "AttachStdin": false,
        "Env": ["PATH=/usr/bin"], "Cmd": ["sh"],
        "ExposedPorts": {"80/tcp": {}},
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3},
        "OnBuild": null, "Shell": ["/bin/bash", "-c"], "Labels": {"a": "b"}
      },
      "container_config": {"Cmd": ["x"]},
      "created": "2024-01-01T00:00:00Z",
      "docker_version": "20.10",
      "history": [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD x /"},
        {"created_by": "CMD [\"sh\"]", "empty_layer": true}
      ],
      "os": "linux",
      "os.version": "weird",
      "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}
    }"#;

    #[test]
    fn docker_config_round_trips_without_losing_fields() {
        let c = ImageConfig::from_slice(DOCKER_CONFIG.as_bytes()).unwrap();
        assert_eq!(c.config.healthcheck.as_ref().and_then(|h| h.interval), Some(30_000_000_000));
        assert_eq!(c.config.shell.as_deref(), Some(&["/bin/bash".to_owned(), "-c".to_owned()][..]));
        assert!(c.extra.contains_key("container_config") && c.extra.contains_key("os.version"));
        assert!(c.config.extra.contains_key("Hostname"));
        assert!(c.history[1].empty_layer);
        c.validate_history().unwrap();
        let bytes = c.to_canonical_vec().unwrap();
        let original: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let mut expected = original.clone();
        // `"OnBuild": null` is the only thing that does not survive (null == absent).
        expected["config"].as_object_mut().unwrap().remove("OnBuild");
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), expected);
        assert_eq!(ImageConfig::from_slice(&bytes).unwrap(), c);
    }

    #[test]
    fn new_config_serialises_minimal_docker_shape() {
        let mut c = ImageConfig::new(&Platform::parse("linux/arm/v7").unwrap());
        c.push_empty_history(History { created_by: Some("ENV A=1".into()), ..Default::default() });
        let s = String::from_utf8(c.to_canonical_vec().unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"architecture":"arm","config":{},"history":[{"created_by":"ENV A=1","empty_layer":true}],"os":"linux","rootfs":{"diff_ids":[],"type":"layers"},"variant":"v7"}"#
        );
        c.push_layer(Digest::sha256(b""), History::default());
        c.validate_history().unwrap();
        c.rootfs.diff_ids.push(Digest::sha256(b"x"));
        assert!(matches!(c.validate_history(), Err(ConfigError::HistoryMismatch { .. })));
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_parsing_inverts_formatting() {
        for t in [0, 1_000_000_000, 1_700_000_000, 951_782_400, -1, -86_400 * 400] {
            assert_eq!(parse_rfc3339(&rfc3339_utc(t)), Some(t), "{t}");
        }
        assert_eq!(parse_rfc3339("2001-09-09T01:46:40.123456789Z"), Some(1_000_000_000));
        assert_eq!(parse_rfc3339("2001-09-09T03:46:40+02:00"), Some(1_000_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2001-09-09T01:46:40Q"), None);
        // Absurd years saturate instead of overflowing.
        assert!(days_from_civil(i64::MAX, 12, 31) > 0);
        assert!(days_from_civil(i64::MIN, 1, 0) < 0);
    }
}
