//! Per-registry settings and the endpoints a registry name resolves to.
//!
//! The shape follows `buildkitd.toml` so users can carry their settings over:
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["mirror.example:5000"]
//!
//! [registry."registry.internal:5000"]
//! http = true
//!
//! [registry."selfsigned.example"]
//! ca = ["/etc/rbuild/certs/selfsigned.pem"]
//! ```
//!
//! Resolution rules: loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`,
//! any port) speak plain HTTP without configuration, as Docker does;
//! everything else speaks HTTPS unless `http = true`. `docker.io` is served
//! by `registry-1.docker.io`. Mirrors are tried before the origin, for pulls
//! only: pushing to a mirror would publish somewhere the user did not ask for.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use serde::Deserialize;

/// The registry name Docker uses for Docker Hub in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves the Docker Hub distribution API.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Settings for every registry, keyed by registry host (`host[:port]`, as it
/// appears in references; `docker.io` for Docker Hub).
///
/// Deserialises from the `[registry]` table of rbuild's config file
/// (`#[serde(transparent)]`: the table itself is the map).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RegistryConfig {
    /// Per-host settings.
    pub hosts: BTreeMap<String, HostConfig>,
}

/// Settings for one registry host.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Speak plain HTTP to this host (no TLS at all).
    pub http: bool,
    /// Use TLS but accept any certificate (self-signed registries).
    pub insecure: bool,
    /// Extra PEM CA certificates trusted for this host, on top of the
    /// system bundle.
    pub ca: Vec<PathBuf>,
    /// Hosts (`host[:port]`, optionally `http://` / `https://` prefixed,
    /// optionally followed by a path prefix) tried before this registry when
    /// pulling.
    pub mirrors: Vec<String>,
}

/// URL scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as it appears in a URL.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One concrete server that can answer distribution API requests for a
/// registry: the origin or one of its mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP or HTTPS.
    pub scheme: Scheme,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Path prefix before `/v2/` (mirrors behind a reverse proxy); empty or
    /// starting with `/`, never ending with `/`.
    pub path_prefix: String,
    /// The registry name this endpoint serves (credentials are looked up by
    /// this name for the origin, by `host` for a mirror).
    pub registry: String,
    /// True for a mirror (pull only; failures fall through to the next one).
    pub is_mirror: bool,
}

impl Endpoint {
    /// `scheme://host[prefix]/v2/` — every API path is relative to this.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}/v2/",
            self.scheme.as_str(),
            self.host,
            self.path_prefix
        )
    }

    /// The name credentials are looked up under.
    #[must_use]
    pub fn credential_key(&self) -> &str {
        if self.is_mirror {
            &self.host
        } else {
            &self.registry
        }
    }
}

impl RegistryConfig {
    /// Settings for `host`, or the defaults when it is not configured.
    #[must_use]
    pub fn host(&self, host: &str) -> HostConfig {
        self.hosts.get(host).cloned().unwrap_or_default()
    }

    /// The origin endpoint of `registry` (what a push talks to).
    #[must_use]
    pub fn origin(&self, registry: &str) -> Endpoint {
        let conf = self.host(registry);
        let host = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_HOST.to_owned()
        } else {
            registry.to_owned()
        };
        Endpoint {
            host,
            scheme: scheme_for(&conf, registry),
            insecure: conf.insecure,
            path_prefix: String::new(),
            registry: registry.to_owned(),
            is_mirror: false,
        }
    }

    /// Endpoints to try for a pull from `registry`: its mirrors in order,
    /// then the origin.
    #[must_use]
    pub fn pull_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let conf = self.host(registry);
        let mut out: Vec<Endpoint> = conf
            .mirrors
            .iter()
            .filter_map(|m| self.mirror_endpoint(registry, m))
            .collect();
        out.push(self.origin(registry));
        out
    }

    fn mirror_endpoint(&self, registry: &str, mirror: &str) -> Option<Endpoint> {
        let (forced, rest) = if let Some(r) = mirror.strip_prefix("http://") {
            (Some(Scheme::Http), r)
        } else if let Some(r) = mirror.strip_prefix("https://") {
            (Some(Scheme::Https), r)
        } else {
            (None, mirror)
        };
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            tracing::debug!(mirror, "ignoring malformed mirror");
            return None;
        }
        let conf = self.host(host);
        let scheme = forced.unwrap_or_else(|| scheme_for(&conf, host));
        Some(Endpoint {
            host: host.to_owned(),
            scheme,
            insecure: conf.insecure,
            path_prefix: prefix.to_owned(),
            registry: registry.to_owned(),
            is_mirror: true,
        })
    }
}

/// `http = true` wins; TLS settings (`insecure`, `ca`) mean the user
/// expects TLS even on loopback; otherwise loopback is plain HTTP and
/// everything else HTTPS.
fn scheme_for(conf: &HostConfig, host: &str) -> Scheme {
    if conf.http {
        Scheme::Http
    } else if conf.insecure || !conf.ca.is_empty() || !is_loopback_host(host) {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// True when `host` (`name[:port]`, `[v6]:port`) names the local machine:
/// `localhost`, `127.0.0.0/8` or `::1`.
#[must_use]
pub fn is_loopback_host(host: &str) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6 == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

/// `host[:port]` → `host`; `[v6]:port` → `[v6]`; a bare IPv6 literal stays.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_detected_with_and_without_ports() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.3.2.1:80",
            "[::1]",
            "[::1]:5000",
            "::1",
            "LOCALHOST:1",
        ] {
            assert!(is_loopback_host(h), "{h} should be loopback");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
            "128.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h} should not be loopback");
        }
    }

    #[test]
    fn docker_hub_maps_to_registry_1_over_https() {
        let c = RegistryConfig::default();
        let e = c.origin("docker.io");
        assert_eq!(e.host, "registry-1.docker.io");
        assert_eq!(e.base_url(), "https://registry-1.docker.io/v2/");
        assert_eq!(e.credential_key(), "docker.io");
    }

    #[test]
    fn loopback_is_plain_http_and_others_https() {
        let c = RegistryConfig::default();
        assert_eq!(c.origin("127.0.0.1:5000").scheme, Scheme::Http);
        assert_eq!(c.origin("localhost:5000").scheme, Scheme::Http);
        assert_eq!(c.origin("ghcr.io").scheme, Scheme::Https);
    }

    #[test]
    fn tls_settings_mean_https_even_on_loopback() {
        let mut c = RegistryConfig::default();
        c.hosts.insert(
            "127.0.0.1:5443".into(),
            HostConfig {
                ca: vec!["/ca.pem".into()],
                ..HostConfig::default()
            },
        );
        c.hosts.insert(
            "localhost:5444".into(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
        assert_eq!(c.origin("127.0.0.1:5443").scheme, Scheme::Https);
        assert_eq!(c.origin("localhost:5444").scheme, Scheme::Https);
        assert!(c.origin("localhost:5444").insecure);
    }

    #[test]
    fn mirrors_come_first_and_take_their_own_settings() {
        let mut c = RegistryConfig::default();
        c.hosts.insert(
            "docker.io".into(),
            HostConfig {
                mirrors: vec![
                    "mirror.example:5000".into(),
                    "http://plain.example/prefix/".into(),
                    "bad host".into(),
                ],
                ..HostConfig::default()
            },
        );
        c.hosts.insert(
            "mirror.example:5000".into(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
        let eps = c.pull_endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].base_url(), "https://mirror.example:5000/v2/");
        assert!(eps[0].insecure && eps[0].is_mirror);
        assert_eq!(eps[0].credential_key(), "mirror.example:5000");
        assert_eq!(eps[1].base_url(), "http://plain.example/prefix/v2/");
        assert_eq!(eps[2].host, DOCKER_HUB_HOST);
        assert!(!eps[2].is_mirror);
    }

    #[test]
    fn deserialises_the_buildkitd_shape_and_refuses_typos() {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            registry: RegistryConfig,
        }
        let f: File = toml::from_str(
            r#"
            [registry."docker.io"]
            mirrors = ["mirror.example:5000"]
            [registry."reg.internal:5000"]
            http = true
            [registry."selfsigned.example"]
            insecure = true
            ca = ["/etc/rbuild/ca.pem"]
            "#,
        )
        .unwrap();
        let r = &f.registry;
        assert_eq!(r.host("docker.io").mirrors, vec!["mirror.example:5000"]);
        assert!(r.host("reg.internal:5000").http);
        assert!(r.host("selfsigned.example").insecure);
        assert_eq!(
            r.host("selfsigned.example").ca,
            vec![PathBuf::from("/etc/rbuild/ca.pem")]
        );
        assert_eq!(r.host("unknown.example"), HostConfig::default());
        let empty: File = toml::from_str("").unwrap();
        assert!(empty.registry.hosts.is_empty());
        let typo = toml::from_str::<File>("[registry.\"x\"]\nmirror = [\"y\"]\n");
        assert!(typo.is_err());
    }

    #[test]
    fn configured_http_host_uses_plain_http() {
        let mut c = RegistryConfig::default();
        c.hosts.insert(
            "reg.internal:5000".into(),
            HostConfig {
                http: true,
                ..HostConfig::default()
            },
        );
        assert_eq!(
            c.origin("reg.internal:5000").base_url(),
            "http://reg.internal:5000/v2/"
        );
    }
}
