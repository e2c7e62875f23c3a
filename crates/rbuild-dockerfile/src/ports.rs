//! `EXPOSE` port specifications and `STOPSIGNAL` values, after expansion.
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

/// A STOPSIGNAL value that is neither a known signal name nor a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid STOPSIGNAL `{0}`: expected a signal name like `SIGTERM` or a number")]
pub struct SignalError(pub String);

/// Validates an expanded STOPSIGNAL value the way Docker does (`SIGTERM`,
/// `TERM`, `15`, `SIGRTMIN+3`; case-insensitive) and returns its number
/// on Linux. The image config keeps the string as written.
pub fn parse_stop_signal(value: &str) -> Result<u32, SignalError> {
    #[rustfmt::skip]
    const NAMES: &[(&str, u32)] = &[
        ("HUP", 1), ("INT", 2), ("QUIT", 3), ("ILL", 4), ("TRAP", 5), ("ABRT", 6), ("IOT", 6), ("BUS", 7),
        ("FPE", 8), ("KILL", 9), ("USR1", 10), ("SEGV", 11), ("USR2", 12), ("PIPE", 13), ("ALRM", 14),
        ("TERM", 15), ("STKFLT", 16), ("CHLD", 17), ("CLD", 17), ("CONT", 18), ("STOP", 19), ("TSTP", 20),
        ("TTIN", 21), ("TTOU", 22), ("URG", 23), ("XCPU", 24), ("XFSZ", 25), ("VTALRM", 26), ("PROF", 27),
        ("WINCH", 28), ("IO", 29), ("POLL", 29), ("PWR", 30), ("SYS", 31), ("UNUSED", 31),
        ("RTMIN", 34), ("RTMAX", 64),
    ];
    let bad = || SignalError(value.to_string());
    if let Ok(n) = value.parse::<u32>() {
        return if n == 0 { Err(bad()) } else { Ok(n) };
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    let offset = |base: &str, sign: char| -> Option<u32> {
        let rest = name.strip_prefix(base)?.strip_prefix(sign)?;
        rest.parse::<u32>().ok().filter(|n| (1..=14).contains(n))
    };
    if let Some(n) = offset("RTMIN", '+') {
        return Ok(34 + n);
    }
    if let Some(n) = offset("RTMAX", '-') {
        return Ok(64 - n);
    }
    Err(bad())
}

#[cfg(test)]
mod signal_tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_stop_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_stop_signal("sigkill"), Ok(9));
        assert_eq!(parse_stop_signal("QUIT"), Ok(3));
        assert_eq!(parse_stop_signal("9"), Ok(9));
        assert_eq!(parse_stop_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_stop_signal("RTMAX-1"), Ok(63));
        for bad in ["0", "", "SIGFOO", "-1", "RTMIN+99", "SIG"] {
            assert!(parse_stop_signal(bad).is_err(), "{bad}");
        }
    }
}
