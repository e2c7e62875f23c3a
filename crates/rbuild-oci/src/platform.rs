//! Platforms (`linux/arm64/v8`) and selection of a manifest from an index.
//!
//! Normalisation follows containerd so that the strings users already type
//! (`aarch64`, `x86_64`, `armhf`) mean what they mean there, and so that two
//! spellings of one platform compare equal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors from parsing a platform string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// Empty components, too many components, or illegal characters.
    #[error("invalid platform `{0}`: expected `os[/arch[/variant]]` such as `linux/arm64/v8`")]
    Invalid(String),
}

/// An OS/architecture/variant triple in OCI JSON form (`os`,
/// `architecture`, `variant`). Values are kept normalised by [`Platform::parse`]
/// and [`Platform::normalized`]; descriptors read from registries are
/// normalised before comparing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, `darwin`, ...
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, ...
    pub architecture: String,
    /// `v7` for `arm/v7`; `None` when the architecture has no variant or the
    /// default one (arm64's `v8` is dropped as containerd does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform { os: os.to_owned(), architecture: architecture.to_owned(), variant: variant.map(str::to_owned) }
            .normalized()
    }

    /// Parses `os[/arch[/variant]]`. A lone architecture (`arm64`) is
    /// accepted as `linux/arm64` like containerd; a lone `linux` means the host
    /// architecture.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let bad = || PlatformError::Invalid(s.to_owned());
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if parts.len() > 3 || !parts.iter().all(ok) {
            return Err(bad());
        }
        let p = match parts.as_slice() {
            [one] => {
                let lower = one.to_ascii_lowercase();
                if is_known_os(&lower) {
                    let host = Self::host();
                    Platform { os: lower, architecture: host.architecture, variant: host.variant }
                } else {
                    Platform { os: "linux".into(), architecture: lower, variant: None }
                }
            }
            [os, arch] => Platform { os: (*os).into(), architecture: (*arch).into(), variant: None },
            [os, arch, variant] => {
                Platform { os: (*os).into(), architecture: (*arch).into(), variant: Some((*variant).into()) }
            }
            _ => return Err(bad()),
        };
        Ok(p.normalized())
    }

    /// The platform this binary was built for (used as the default target).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "loongarch64" => "loong64",
            "mips64" => "mips64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// Returns the containerd-normalised form (lowercase, GOARCH names,
    /// default variants made explicit for arm and dropped for arm64/amd64).
    pub fn normalized(&self) -> Self {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let (architecture, variant) = normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform { os, architecture, variant: if variant.is_empty() { None } else { Some(variant) } }
    }

    /// How well `candidate` serves `self` as a target: `Some(0)` is an exact
    /// match, higher numbers are compatible fallbacks (arm/v7 can run v6 and
    /// v5 images, amd64 can run 386, arm64 can run arm/v8 and arm/v7), `None`
    /// means it cannot be used. Both sides are normalised first.
    pub fn match_rank(&self, candidate: &Platform) -> Option<usize> {
        let want = self.normalized();
        let cand = candidate.normalized();
        want.compatible().iter().position(|p| *p == cand)
    }

    /// Whether `candidate` is the same platform after normalisation.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.match_rank(candidate) == Some(0)
    }

    /// Platforms this one can run, best first (containerd's "platform vector").
    pub fn compatible(&self) -> Vec<Platform> {
        let me = self.normalized();
        let mut out = vec![me.clone()];
        let with = |arch: &str, variant: Option<&str>| Platform {
            os: me.os.clone(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        };
        match me.architecture.as_str() {
            "amd64" => {
                if let Some(level) = me.variant.as_deref().and_then(|v| v.strip_prefix('v')).and_then(|n| n.parse::<u8>().ok()) {
                    for l in (2..level).rev() {
                        out.push(with("amd64", Some(&format!("v{l}"))));
                    }
                    out.push(with("amd64", None));
                }
                out.push(with("386", None));
            }
            "arm64" => {
                if me.variant.is_some() {
                    out.push(with("arm64", None));
                }
                for v in ["v8", "v7", "v6", "v5"] {
                    out.push(with("arm", Some(v)));
                }
            }
            "arm" => {
                if let Some(level) = me.variant.as_deref().and_then(|v| v.strip_prefix('v')).and_then(|n| n.parse::<u8>().ok()) {
                    for l in (5..level).rev() {
                        out.push(with("arm", Some(&format!("v{l}"))));
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Picks the best candidate for this target; returns its index.
    /// Ties keep the first one, as an index lists manifests in preference order.
    pub fn select_best<'a>(&self, candidates: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        candidates
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| self.match_rank(p).map(|r| (r, i)))
            .min()
            .map(|(_, i)| i)
    }
}

fn is_known_os(s: &str) -> bool {
    matches!(
        s,
        "linux" | "windows" | "darwin" | "macos" | "freebsd" | "netbsd" | "openbsd" | "solaris" | "illumos" | "android" | "ios"
            | "aix" | "plan9" | "wasip1" | "js"
    )
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" | "386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" { String::new() } else { variant };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armel").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/amd64/v3").to_string(), "linux/amd64/v3");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64", "linux//v7"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn selection_prefers_exact_then_compatible() {
        let cands = [p("linux/arm/v6"), p("linux/amd64"), p("linux/arm/v7"), p("windows/amd64")];
        assert_eq!(p("linux/arm/v7").select_best(&cands), Some(2));
        assert_eq!(p("linux/arm/v6").select_best(&cands), Some(0));
        assert_eq!(p("linux/amd64").select_best(&cands), Some(1));
        assert_eq!(p("linux/arm64").select_best(&cands), Some(2));
        assert_eq!(p("linux/s390x").select_best(&cands), None);
        let v8 = Platform { os: "linux".into(), architecture: "arm64".into(), variant: Some("v8".into()) };
        assert!(p("linux/arm64").matches(&v8));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert_eq!(p("linux/arm/v6").match_rank(&p("linux/arm/v7")), None);
    }

    #[test]
    fn host_is_normalised() {
        let h = Platform::host();
        assert_eq!(h, h.normalized());
        assert!(!h.architecture.is_empty());
    }

    #[test]
    fn serde_uses_oci_names() {
        let j = serde_json::to_string(&p("linux/arm/v7")).unwrap();
        assert_eq!(j, r#"{"os":"linux","architecture":"arm","variant":"v7"}"#);
        let back: Platform = serde_json::from_str(r#"{"architecture":"amd64","os":"linux","os.version":"x"}"#).unwrap();
        assert_eq!(back, p("linux/amd64"));
    }
}
