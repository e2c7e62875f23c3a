//! History text as BuildKit writes it: Go's `%q` and duration formats.

use super::*;

/// The image-config form of a HEALTHCHECK (durations in nanoseconds).
pub(in crate::convert) fn healthcheck(h: &Healthcheck) -> rbuild_oci::config::Healthcheck {
    let ns = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
    rbuild_oci::config::Healthcheck {
        test: Some(h.test.to_config()),
        interval: ns(h.interval),
        timeout: ns(h.timeout),
        start_period: ns(h.start_period),
        start_interval: ns(h.start_interval),
        retries: h.retries.map(i64::from),
    }
}

/// Go's `%q` of BuildKit's healthcheck config, which is what its history
/// entry holds: `&{["CMD-SHELL" "x"] "30s" "3s" "0s" "0s" '\x03'}` (test,
/// interval, timeout, start period, start interval as Go durations, then the
/// retry count formatted as a quoted rune).
pub(in crate::convert) fn go_healthcheck(h: &Healthcheck) -> String {
    let d = |v: Option<std::time::Duration>| format!("\"{}\"", go_duration(v.unwrap_or_default()));
    let retries = h.retries.map_or(0, i64::from);
    format!(
        "&{{{} {} {} {} {} {}}}",
        go_quoted(&h.test.to_config()),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        go_quote_rune(retries)
    )
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5s`, `250ms`, `0s`.
pub(in crate::convert) fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", go_fraction(ns, div));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = go_fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// `n / div` with the fraction's trailing zeros removed (`1500, 1000` → `1.5`).
pub(in crate::convert) fn go_fraction(n: u128, div: u128) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `%q` of an integer: a single-quoted rune literal (`'\x03'`, `'A'`).
pub(in crate::convert) fn go_quote_rune(n: i64) -> String {
    let c = u32::try_from(n).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
    let body = match c {
        '\x07' => "\\a".to_string(),
        '\x08' => "\\b".to_string(),
        '\x0c' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\x0b' => "\\v".to_string(),
        '\\' => "\\\\".to_string(),
        '\'' => "\\'".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c if c.is_control() => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{body}'")
}

/// Go's `%q` of a string slice, which BuildKit uses in history entries.
pub(in crate::convert) fn go_quoted(args: &[String]) -> String {
    let parts: Vec<String> = args.iter().map(|a| serde_json::to_string(a).unwrap_or_default()).collect();
    format!("[{}]", parts.join(" "))
}
