//! Image references with Docker's normalisation.
//!
//! `busybox` means `docker.io/library/busybox:latest` to every Docker user,
//! so the parser applies the same rules as Docker's `ParseNormalizedNamed`:
//! the first path component is a registry only if it contains `.` or `:`,
//! is `localhost`, or has uppercase letters; Docker Hub's official images
//! live under `library/`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;

/// Errors from parsing a reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The input is empty.
    #[error("invalid reference: empty string")]
    Empty,
    /// The registry part is not a valid host\[:port\].
    #[error("invalid registry `{registry}` in reference `{input}`")]
    Registry { input: String, registry: String },
    /// The repository path has illegal characters (it must be lowercase).
    #[error("invalid repository name `{repository}` in reference `{input}`: use lowercase letters, digits and separators `.`, `_`, `__`, `-`, `/`")]
    Repository { input: String, repository: String },
    /// The full name is longer than 255 characters.
    #[error("repository name in `{0}` is longer than 255 characters")]
    TooLong(String),
    /// The tag has illegal characters or is longer than 128.
    #[error("invalid tag `{tag}` in reference `{input}`: at most 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`")]
    Tag { input: String, tag: String },
    /// The digest part did not parse.
    #[error("invalid digest in reference `{input}`")]
    Digest {
        input: String,
        #[source]
        source: DigestError,
    },
    /// A bare 64-hex-digit name is ambiguous with an image id.
    #[error("invalid repository name `{0}`: cannot specify 64-byte hexadecimal strings")]
    HexName(String),
}

/// A fully-qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/busybox`, `org/app`.
    pub repository: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Set for `name@sha256:...`.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses with Docker normalisation; adds tag `latest` when the input has
    /// neither a tag nor a digest.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_name_only(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_owned());
        }
        Ok(r)
    }

    /// Parses like [`Reference::parse`] but leaves tag and digest empty when
    /// absent (for `rbuild images <repo>`-style filters and repository scopes).
    pub fn parse_name_only(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => {
                let d = Digest::parse(d)
                    .map_err(|source| ReferenceError::Digest { input: input.to_owned(), source })?;
                (name, Some(d))
            }
            None => (input, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag { input: input.to_owned(), tag: t.to_owned() });
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(ReferenceError::HexName(input.to_owned()));
        }
        let (registry, repository) = split_domain(name);
        if !valid_registry(&registry) {
            return Err(ReferenceError::Registry { input: input.to_owned(), registry });
        }
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository { input: input.to_owned(), repository });
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(input.to_owned()));
        }
        Ok(Reference { registry, repository, tag: tag.map(str::to_owned), digest })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker prints: `busybox:latest`, `org/app:1`,
    /// `ghcr.io/x/y@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = if self.registry == DOCKER_HUB {
            self.repository.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(&self.repository).to_owned()
        } else {
            self.name()
        };
        self.push_suffix(&mut s);
        s
    }

    /// A copy pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// A copy with a different tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag { input: self.to_string(), tag: tag.to_owned() });
        }
        Ok(Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() })
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host\[:port\] to connect to: Docker Hub's API lives on
    /// `registry-1.docker.io`, every other registry on its own name.
    pub fn repository_url_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_API_HOST } else { &self.registry }
    }

    /// The registry host without its port (`[::1]` keeps its brackets).
    pub fn registry_host(&self) -> &str {
        host_part(&self.registry)
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8,
    /// `[::1]`), where plain HTTP is allowed by default like Docker does.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

/// Whether a registry `host[:port]` is a loopback address.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = host_part(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6 == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

fn host_part(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(i) => &registry[..=i],
            None => registry,
        };
    }
    registry.split_once(':').map_or(registry, |(h, _)| h)
}

fn split_domain(name: &str) -> (String, String) {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let domain = if domain == "index.docker.io" { DOCKER_HUB.to_owned() } else { domain };
    let remainder =
        if domain == DOCKER_HUB && !remainder.contains('/') { format!("library/{remainder}") } else { remainder };
    (domain, remainder)
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = if r.starts_with('[') {
        let Some(end) = r.find(']') else { return false };
        let inner = &r[1..end];
        if inner.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        let rest = &r[end + 1..];
        match rest.strip_prefix(':') {
            Some(p) => ("", Some(p)),
            None if rest.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if r.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` per path component.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty() && r.split('/').all(valid_component)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Serialised as its full string form (`docker.io/library/busybox:latest`).
impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r("busybox").familiar(), "busybox:latest");
        assert_eq!(r("org/app:1.0").to_string(), "docker.io/org/app:1.0");
        assert_eq!(r("org/app:1.0").familiar(), "org/app:1.0");
        assert_eq!(r("index.docker.io/library/alpine").to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r("docker.io/alpine:3").familiar(), "alpine:3");
        assert_eq!(r("busybox").repository_url_host(), "registry-1.docker.io");
    }

    #[test]
    fn registries_ports_tags_digests() {
        let x = r("localhost:5000/a/b:v1");
        assert_eq!((x.registry.as_str(), x.repository.as_str(), x.tag.as_deref()), ("localhost:5000", "a/b", Some("v1")));
        assert_eq!(x.repository_url_host(), "localhost:5000");
        assert_eq!(x.registry_host(), "localhost");
        let y = r(&format!("ghcr.io/o/r@{D}"));
        assert_eq!(y.tag, None);
        assert_eq!(y.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(y.tag_or_digest(), D);
        let z = r(&format!("quay.io/o/r:t@{D}"));
        assert_eq!(z.to_string(), format!("quay.io/o/r:t@{D}"));
        assert_eq!(r("localhost/x").registry, "localhost");
        assert_eq!(r("Upper/x").registry, "Upper");
        assert_eq!(r("[::1]:5000/x:y").registry, "[::1]:5000");
        assert_eq!(r("busybox").with_digest(Digest::parse(D).unwrap()).familiar(), format!("busybox:latest@{D}"));
        assert_eq!(Reference::parse_name_only("busybox").unwrap().tag, None);
    }

    #[test]
    fn loopback_detection() {
        assert!(r("localhost:5000/x").is_loopback());
        assert!(r("127.0.0.1:5000/x").is_loopback());
        assert!(r("127.1.2.3/x").is_loopback());
        assert!(r("[::1]:5000/x").is_loopback());
        assert!(!r("10.0.0.1:5000/x").is_loopback());
        assert!(!r("busybox").is_loopback());
        assert!(!r("localhost.evil.com/x").is_loopback());
    }

    #[test]
    fn errors_name_the_input() {
        let cases = [
            ("", "empty"),
            ("Busybox", "Busybox"),
            ("busybox:", "busybox:"),
            ("busybox:-x", "-x"),
            ("a//b", "a//b"),
            ("busybox@sha256:xyz", "busybox@sha256:xyz"),
            ("bad_host-:5000/x", "bad_host-:5000"),
            ("host:port/x", "host:port"),
            ("x/../y", "x/../y"),
            ("/abs", "/abs"),
        ];
        for (input, needle) in cases {
            let e = Reference::parse(input).expect_err(input).to_string();
            assert!(e.contains(needle), "{input:?}: {e}");
        }
        let hex = &D[7..];
        assert!(matches!(Reference::parse(hex), Err(ReferenceError::HexName(_))));
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(Reference::parse(&long), Err(ReferenceError::TooLong(_))));
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn serde_as_full_string() {
        let j = serde_json::to_string(&r("busybox")).unwrap();
        assert_eq!(j, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&j).unwrap(), r("busybox"));
        assert!(serde_json::from_str::<Reference>("\"UPPER\"").is_err());
    }

    #[test]
    fn separators_follow_docker_grammar() {
        assert!(Reference::parse("a__b").is_ok());
        assert!(Reference::parse("a---b.c_d").is_ok());
        assert!(Reference::parse("a___b").is_err());
        assert!(Reference::parse("a..b").is_err());
        assert!(Reference::parse("a-").is_err());
    }
}
