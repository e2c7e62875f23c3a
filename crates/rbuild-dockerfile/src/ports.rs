//! `EXPOSE` port specifications, after expansion.
//!
//! Docker accepts `80`, `80/tcp`, `53/udp`, `132/sctp` and ranges
//! `8000-8010[/proto]`; the protocol defaults to tcp and is
//! case-insensitive. Ranges expand to one entry per port, which is what the
//! image config's `ExposedPorts` map holds (`"80/tcp": {}`).

/// A bad port spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port `{spec}` in EXPOSE: {reason}")]
    Invalid { spec: String, reason: &'static str },
}

/// Expands one EXPOSE word into `port/proto` keys.
pub fn parse_port_spec(spec: &str) -> Result<Vec<String>, PortError> {
    let bad = |reason| PortError::Invalid {
        spec: spec.to_string(),
        reason,
    };
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad("protocol must be tcp, udp or sctp"));
    }
    if ports.contains(':') {
        return Err(bad("EXPOSE takes container ports only, not a host mapping"));
    }
    let parse = |s: &str| -> Result<u16, PortError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("not a number"));
        }
        s.parse::<u16>().map_err(|_| bad("port out of range"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad("range end is lower than its start"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002/udp").unwrap(),
            ["8000/udp", "8001/udp", "8002/udp"]
        );
        for bad in [
            "",
            "x",
            "80/icmp",
            "70000",
            "10-5",
            "1.2.3.4:80:80",
            "-1",
            "80-",
        ] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }
}
