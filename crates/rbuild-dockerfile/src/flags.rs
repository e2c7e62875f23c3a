//! Instruction flags (`--name=value`), validated per instruction.
//!
//! Mirrors BuildKit's `BFlags`: a flag must be declared by the instruction;
//! booleans accept `--f`, `--f=true`, `--f=false`; strings need `=value`;
//! repeatable flags collect every value; anything else is an error that
//! points at the flag and suggests the closest declared name.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{RawError, Span, suggest};
use crate::syntax::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Values of the flags of one instruction, by name.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
    /// Index of the flag that set each name (for error positions).
    pub(crate) origin: BTreeMap<&'static str, usize>,
}

impl Flags {
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }

    /// Where flag `name` was written in `node` (the whole instruction when
    /// it was not), for pointing errors about its value at it.
    pub(crate) fn span(&self, node: &Node, name: &str) -> Span {
        self.origin
            .get(name)
            .and_then(|&i| node.flag_ranges.get(i))
            .map_or(node.span, |&(s, e)| node.range_span(s, e))
    }
}

/// Parses `node.flags` against the declared `(name, kind)` list.
pub(crate) fn parse_flags(
    node: &Node,
    keyword: &str,
    declared: &[(&'static str, FlagKind)],
) -> Result<Flags, RawError> {
    let mut out = Flags::default();
    for (i, raw) in node.flags.iter().enumerate() {
        // Computed only on error: positions cost a lookup.
        let span = || {
            node.flag_ranges
                .get(i)
                .map_or(node.span, |&(s, e)| node.range_span(s, e))
        };
        let Some(body) = raw.strip_prefix("--") else {
            return Err(RawError::new(
                span(),
                format!("flag `{raw}` of {keyword} should start with `--`"),
            ));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(decl, kind)) = declared.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
            let err = RawError::new(span(), format!("unknown flag `--{name}` for {keyword}"));
            return Err(match suggest(name, &names) {
                Some(s) => err.with_hint(format!("did you mean `--{s}`?")),
                None if names.is_empty() => err.with_hint(format!("{keyword} takes no flags")),
                None => {
                    let list: Vec<String> = names.iter().map(|n| format!("`--{n}`")).collect();
                    err.with_hint(format!("{keyword} accepts {}", list.join(", ")))
                }
            });
        };
        if kind != FlagKind::Strings && out.origin.contains_key(decl) {
            return Err(RawError::new(
                span(),
                format!("duplicate flag specified: `--{name}`"),
            ));
        }
        out.origin.insert(decl, i);
        match kind {
            FlagKind::Bool => {
                let v = match value.map(str::to_ascii_lowercase).as_deref() {
                    None => true,
                    Some("true") => true,
                    Some("false") => false,
                    Some("") => {
                        return Err(RawError::new(
                            span(),
                            format!("missing a value on flag `--{name}`"),
                        ));
                    }
                    Some(_) => {
                        return Err(RawError::new(
                            span(),
                            format!(
                                "expecting boolean value for flag `--{name}`, not: `{}`",
                                value.unwrap_or_default()
                            ),
                        ));
                    }
                };
                out.bools.insert(decl, v);
            }
            FlagKind::String | FlagKind::Strings => {
                let Some(v) = value else {
                    return Err(RawError::new(
                        span(),
                        format!("missing a value on flag `--{name}`"),
                    )
                    .with_hint(format!("write `--{name}=<value>`")));
                };
                if kind == FlagKind::String {
                    out.strings.insert(decl, v.to_string());
                } else {
                    out.lists.entry(decl).or_default().push(v.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Go's `time.ParseDuration` (what BuildKit uses for HEALTHCHECK).
pub(crate) fn parse_go_duration(s: &str) -> Result<(bool, Duration), String> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((neg, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(format!("invalid duration `{s}`"));
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!("invalid duration `{s}`"));
        }
        let value: f64 = num.parse().map_err(|_| format!("invalid duration `{s}`"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration `{s}`")),
            _ => return Err(format!("unknown unit `{unit}` in duration `{s}`")),
        };
        total += value * nanos_per;
        if total > i64::MAX as f64 {
            return Err(format!("invalid duration `{s}`"));
        }
    }
    Ok((neg, Duration::from_nanos(total.round() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("5s").unwrap(),
            (false, Duration::from_secs(5))
        );
        assert_eq!(
            parse_go_duration("1m30s").unwrap(),
            (false, Duration::from_secs(90))
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            (false, Duration::from_secs(5400))
        );
        assert_eq!(parse_go_duration("0").unwrap(), (false, Duration::ZERO));
        assert_eq!(
            parse_go_duration("-2ms").unwrap(),
            (true, Duration::from_millis(2))
        );
        assert_eq!(
            parse_go_duration("300us").unwrap(),
            (false, Duration::from_micros(300))
        );
        for bad in ["", "5", "s", "5x", "1..2s", "--1s", "99999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
