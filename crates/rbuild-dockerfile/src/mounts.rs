//! `RUN --mount=…` specifications.
//!
//! The flag value is a CSV list of `key=value` fields (BuildKit reads it
//! with Go's `encoding/csv`). BuildKit expands the values with the stage's
//! variables at conversion time, so a mount is parsed twice: once while
//! parsing the Dockerfile (structure, keys, constant values) and again by
//! [`MountSpec::parse`] with an expander when the stage environment is
//! known. [`crate::Run::resolve_mounts`] does the second pass for a whole
//! RUN and fills the defaults that depend on the other mounts.

use serde::Serialize;

use crate::error::suggest;
use crate::shell::ExpandError;

/// The kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Everyone uses the same directory at once (BuildKit's default).
    #[default]
    Shared,
    /// A second concurrent user gets a fresh directory.
    Private,
    /// A second concurrent user waits.
    Locked,
}

/// One `--mount`, validated, with BuildKit's defaults applied.
///
/// Defaults: `type=bind`; bind/secret/ssh read-only, cache/tmpfs writable;
/// cache `sharing=shared`, `mode=0755`, `uid=gid=0`, `id` = target;
/// secret `id` = base name of target, `target` = `/run/secrets/<id>`,
/// `mode=0400`; ssh `id=default`, `target=/run/buildkit/ssh_agent.<n>`
/// (n counts ssh mounts of the RUN), `mode=0600`. A relative target is
/// relative to the working directory (the conversion joins it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    /// Stage name/index or image reference (never expanded: BuildKit
    /// rejects variables here).
    pub from: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: CacheSharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// secret/ssh: fail when the client did not provide it.
    pub required: bool,
    /// secret: also expose the value as this environment variable.
    pub env: Option<String>,
    /// The flag value as written.
    pub raw: String,
    /// The value references variables: the fields above are the unexpanded
    /// parse and must be recomputed with [`MountSpec::parse`] and an
    /// expander (or [`crate::Run::resolve_mounts`]).
    pub needs_expansion: bool,
}

/// A bad `--mount` value. Messages quote the whole flag value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("failed to parse mount `{raw}`: {reason}")]
    Csv { raw: String, reason: String },
    #[error("invalid field `{field}` in mount `{raw}`: must be a key=value pair")]
    NotKeyValue { raw: String, field: String },
    #[error("unexpected key `{key}` in mount `{raw}`{}", hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    UnknownKey {
        raw: String,
        key: String,
        hint: Option<String>,
    },
    #[error(
        "unsupported mount type `{value}` in mount `{raw}`; expected bind, cache, tmpfs, secret or ssh"
    )]
    BadType { raw: String, value: String },
    #[error("invalid value `{value}` for `{key}` in mount `{raw}`: {reason}")]
    BadValue {
        raw: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error("`{key}` is not allowed for `{kind}` mounts: `{raw}`")]
    NotAllowed {
        raw: String,
        key: String,
        kind: &'static str,
    },
    #[error(
        "`from` in mount `{raw}` does not support variable expansion; define an alias stage instead"
    )]
    FromVariable { raw: String },
    #[error("mount `{raw}` of type `{kind}` requires a `target`")]
    MissingTarget { raw: String, kind: &'static str },
    #[error("secret mount `{raw}` needs one of `id`, `source`, `target` or `env`")]
    SecretWithoutName { raw: String },
    #[error("secret mount `{raw}` sets both `source` and `id`")]
    SecretSourceAndId { raw: String },
    #[error("mount `{raw}`: {source}")]
    Expand {
        raw: String,
        #[source]
        source: ExpandError,
    },
}

/// Expands one mount value (the conversion passes the stage environment).
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, ExpandError>;

/// Which option fields a mount value set (for per-type validation).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ro: Option<bool>,
    sharing: bool,
    required: bool,
    size: bool,
    env: bool,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "size",
    "env",
];

/// Go's `encoding/csv` for a single record.
fn split_csv(raw: &str) -> Result<Vec<String>, MountError> {
    let err = |reason: &str| MountError::Csv {
        raw: raw.to_string(),
        reason: reason.to_string(),
    };
    if raw.is_empty() {
        return Err(err("empty value"));
    }
    let mut fields = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(err("extraneous or missing \" in quoted-field")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(err("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(err("bare \" in non-quoted-field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn parse_bool(raw: &str, key: &str, v: &str) -> Result<bool, MountError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountError::BadValue {
            raw: raw.into(),
            key: key.into(),
            value: v.into(),
            reason: "expected a boolean".into(),
        }),
    }
}

fn parse_u32(raw: &str, key: &str, v: &str, radix: u32) -> Result<u32, MountError> {
    u32::from_str_radix(v, radix).map_err(|e| MountError::BadValue {
        raw: raw.into(),
        key: key.into(),
        value: v.into(),
        reason: e.to_string(),
    })
}

/// Docker's `units.RAMInBytes`: `64m`, `1g`, `512k`, `100` (bytes), `1.5gb`.
fn parse_size(raw: &str, v: &str) -> Result<u64, MountError> {
    let bad = |reason: &str| MountError::BadValue {
        raw: raw.into(),
        key: "size".into(),
        value: v.into(),
        reason: reason.into(),
    };
    let lower = v.trim().to_ascii_lowercase();
    let num_len = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let number: f64 = lower[..num_len]
        .parse()
        .map_err(|_| bad("expected a size like `64m`"))?;
    let unit = lower[num_len..].trim_start();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad("unknown size unit")),
    };
    let bytes = number * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad("size out of range"));
    }
    Ok(bytes as u64)
}

impl MountSpec {
    /// Parses one `--mount` value. With `expand`, every value except
    /// `from` is expanded first (BuildKit's conversion-time pass); without
    /// it, values are taken literally.
    pub fn parse(raw: &str, expand: Option<Expander<'_>>) -> Result<MountSpec, MountError> {
        Self::parse_inner(raw, expand, false)
    }

    /// The parse-time pass: values that reference variables are not
    /// judged yet (the result has `needs_expansion` set and those fields
    /// unset or raw), everything else is validated.
    pub fn parse_deferred(raw: &str) -> Result<MountSpec, MountError> {
        Self::parse_inner(raw, None, true)
    }

    fn parse_inner(
        raw: &str,
        expand: Option<Expander<'_>>,
        lenient: bool,
    ) -> Result<MountSpec, MountError> {
        let mut m = MountSpec {
            kind: MountType::Bind,
            target: None,
            source: None,
            from: None,
            readonly: false,
            id: None,
            sharing: CacheSharing::Shared,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            required: false,
            env: None,
            raw: raw.to_string(),
            needs_expansion: false,
        };
        let mut seen = Seen::default();
        for field in split_csv(raw)? {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (field.to_ascii_lowercase(), None),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => seen.ro = Some(true),
                    "readwrite" | "rw" => seen.ro = Some(false),
                    "required" => {
                        m.required = true;
                        seen.required = true;
                    }
                    _ => {
                        return Err(MountError::NotKeyValue {
                            raw: raw.into(),
                            field,
                        });
                    }
                }
                continue;
            };
            if key == "from" && expand.is_none() {
                if value.find('$').is_some_and(|i| i + 1 < value.len()) {
                    return Err(MountError::FromVariable { raw: raw.into() });
                }
                m.from = Some(value);
                continue;
            }
            if lenient && value.contains('$') {
                m.needs_expansion = true;
                match key.as_str() {
                    "source" | "src" => m.source = Some(value),
                    "target" | "dst" | "destination" => m.target = Some(value),
                    "id" => m.id = Some(value),
                    "env" => m.env = Some(value),
                    k if KEYS.contains(&k) => {}
                    _ => {
                        return Err(MountError::UnknownKey {
                            raw: raw.into(),
                            hint: suggest(&key, KEYS).map(str::to_string),
                            key,
                        });
                    }
                }
                continue;
            }
            let value = match expand {
                Some(f) => f(&value).map_err(|source| MountError::Expand {
                    raw: raw.into(),
                    source,
                })?,
                None => value,
            };
            m.apply(&mut seen, key, value)?;
        }
        if m.needs_expansion {
            m.readonly = seen
                .ro
                .unwrap_or(!matches!(m.kind, MountType::Cache | MountType::Tmpfs));
            return Ok(m);
        }
        m.validate(&seen)?;
        Ok(m)
    }

    /// Sets one `key=value` field (value already expanded).
    fn apply(&mut self, seen: &mut Seen, key: String, value: String) -> Result<(), MountError> {
        let raw = self.raw.as_str();
        match key.as_str() {
            "type" => {
                self.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(MountError::BadType {
                            raw: raw.into(),
                            value,
                        });
                    }
                }
            }
            "from" => self.from = Some(value),
            "source" | "src" => self.source = Some(value),
            "target" | "dst" | "destination" => self.target = Some(value),
            "readonly" | "ro" => seen.ro = Some(parse_bool(raw, &key, &value)?),
            "readwrite" | "rw" => seen.ro = Some(!parse_bool(raw, &key, &value)?),
            "required" => {
                self.required = parse_bool(raw, &key, &value)?;
                seen.required = true;
            }
            "id" => self.id = Some(value),
            "sharing" => {
                self.sharing = match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        let reason = "expected shared, private or locked".into();
                        return Err(MountError::BadValue {
                            raw: raw.into(),
                            key,
                            value,
                            reason,
                        });
                    }
                };
                seen.sharing = true;
            }
            "mode" => self.mode = Some(parse_u32(raw, &key, &value, 8)?),
            "uid" => self.uid = Some(parse_u32(raw, &key, &value, 10)?),
            "gid" => self.gid = Some(parse_u32(raw, &key, &value, 10)?),
            "size" => {
                self.size = Some(parse_size(raw, &value)?);
                seen.size = true;
            }
            "env" => {
                self.env = Some(value);
                seen.env = true;
            }
            _ => {
                return Err(MountError::UnknownKey {
                    raw: raw.into(),
                    hint: suggest(&key, KEYS).map(str::to_string),
                    key,
                });
            }
        }
        Ok(())
    }

    fn validate(&mut self, seen: &Seen) -> Result<(), MountError> {
        let Seen {
            ro,
            sharing,
            required,
            size,
            env,
        } = *seen;
        let raw = self.raw.clone();
        let kind = self.kind.name();
        let not_allowed = |key: &str| {
            Err(MountError::NotAllowed {
                raw: raw.clone(),
                key: key.into(),
                kind,
            })
        };
        let file_info = matches!(
            self.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info {
            for (key, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return not_allowed(key);
                }
            }
        }
        if sharing && self.kind != MountType::Cache {
            return not_allowed("sharing");
        }
        if required && !matches!(self.kind, MountType::Secret | MountType::Ssh) {
            return not_allowed("required");
        }
        if size && self.kind != MountType::Tmpfs {
            return not_allowed("size");
        }
        if env && self.kind != MountType::Secret {
            return not_allowed("env");
        }
        if self.from.is_some() && !matches!(self.kind, MountType::Bind | MountType::Cache) {
            return not_allowed("from");
        }
        self.readonly = ro.unwrap_or(!matches!(self.kind, MountType::Cache | MountType::Tmpfs));
        match self.kind {
            MountType::Bind | MountType::Cache | MountType::Tmpfs => {
                if self.target.as_deref().is_none_or(str::is_empty) {
                    return Err(MountError::MissingTarget { raw, kind });
                }
                if self.kind == MountType::Cache {
                    if self.id.as_deref().is_none_or(str::is_empty) {
                        self.id = self.target.clone();
                    }
                    self.mode.get_or_insert(0o755);
                    self.uid.get_or_insert(0);
                    self.gid.get_or_insert(0);
                }
            }
            MountType::Secret => {
                if self.source.is_some() && self.id.is_some() {
                    return Err(MountError::SecretSourceAndId { raw });
                }
                if self.source.is_some() {
                    self.id = self.source.take();
                }
                if self.id.is_none() && self.target.is_none() && self.env.is_none() {
                    return Err(MountError::SecretWithoutName { raw });
                }
                if self.id.is_none() {
                    let from_target = self
                        .target
                        .as_deref()
                        .map(|t| t.trim_end_matches('/').rsplit('/').next().unwrap_or(t));
                    self.id = from_target.or(self.env.as_deref()).map(str::to_string);
                }
                if self.target.is_none() && self.env.is_none() {
                    let base = |id: &str| {
                        id.trim_end_matches('/')
                            .rsplit('/')
                            .next()
                            .unwrap_or(id)
                            .to_string()
                    };
                    self.target = self
                        .id
                        .as_deref()
                        .map(|id| format!("/run/secrets/{}", base(id)));
                }
                self.mode.get_or_insert(0o400);
                self.uid.get_or_insert(0);
                self.gid.get_or_insert(0);
            }
            MountType::Ssh => {
                if self.id.as_deref().is_none_or(str::is_empty) {
                    self.id = Some("default".into());
                }
                self.mode.get_or_insert(0o600);
                self.uid.get_or_insert(0);
                self.gid.get_or_insert(0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<MountSpec, MountError> {
        MountSpec::parse(s, None)
    }

    #[test]
    fn defaults() {
        let b = p("target=/src").unwrap();
        assert_eq!((b.kind, b.readonly), (MountType::Bind, true));
        let c = p("type=cache,target=/root/.cache").unwrap();
        assert_eq!(
            (c.readonly, c.sharing, c.id.as_deref(), c.mode),
            (
                false,
                CacheSharing::Shared,
                Some("/root/.cache"),
                Some(0o755)
            )
        );
        let s = p("type=secret,id=npmrc").unwrap();
        assert_eq!(
            (s.target.as_deref(), s.mode, s.readonly),
            (Some("/run/secrets/npmrc"), Some(0o400), true)
        );
        let s = p("type=secret,target=/etc/token").unwrap();
        assert_eq!(s.id.as_deref(), Some("token"));
        let d = MountSpec::parse_deferred("type=$T,target=$DIR,mode=0644").unwrap();
        assert!(d.needs_expansion);
        assert!(MountSpec::parse_deferred("type=$T,tagret=$DIR").is_err());
        let s = p("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(
            (s.env.as_deref(), s.target.as_deref()),
            (Some("TOKEN"), None)
        );
        let s = p("type=ssh,required").unwrap();
        assert_eq!(
            (s.id.as_deref(), s.required, s.mode),
            (Some("default"), true, Some(0o600))
        );
        let t = p("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        let r = p("type=bind,target=/x,rw,from=build,source=/out").unwrap();
        assert_eq!(
            (r.readonly, r.from.as_deref(), r.source.as_deref()),
            (false, Some("build"), Some("/out"))
        );
        let q = p("\"target=/a,b\",ro=false").unwrap();
        assert_eq!((q.target.as_deref(), q.readonly), (Some("/a,b"), false));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "type=nfs,target=/x",
            "target=/x,mode=0644",
            "type=cache,target=/x,sharing=everyone",
            "type=cache,target=/x,mode=999",
            "type=bind",
            "type=secret",
            "type=secret,id=a,source=b",
            "target=/x,foo=bar",
            "target=/x,bogus",
            "type=cache,target=/x,from=$STAGE",
            "type=tmpfs,target=/x,size=lots",
            "type=bind,target=/x,required",
            "type=bind,target=/x,ro=maybe",
            "type=cache,target=/x,uid=-1",
            "tar\"get=/x",
            "\"target=/x",
        ] {
            assert!(p(bad).is_err(), "{bad} must be rejected");
        }
        let e = p("target=/x,targte=/y").unwrap_err().to_string();
        assert!(e.contains("did you mean `target`"), "{e}");
    }

    #[test]
    fn expansion_pass() {
        let exp =
            |s: &str| crate::expand_word(s, &|k| (k == "D").then(|| "/cache".to_string()), '\\');
        let m = MountSpec::parse("type=cache,target=$D", Some(&exp)).unwrap();
        assert_eq!(m.target.as_deref(), Some("/cache"));
    }
}
