//! Authentication challenges, token scopes and the token cache.
//!
//! The distribution API authenticates lazily: a request without credentials
//! gets `401` with a `WWW-Authenticate` header naming the scheme. `Basic`
//! means "send the user's password with every request"; `Bearer` means "fetch
//! a short-lived token from `realm` for the `service` and the `scope`s the
//! operation needs, then send that". Tokens are cached per (host, scopes)
//! until shortly before they expire, and dropped when the registry answers
//! 401 anyway (revoked or expired early), so the next attempt fetches a fresh
//! one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::client::lock;
use crate::error::RegistryError;

/// Tokens this close to their expiry are refreshed before use.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The spec's default (and minimum) token lifetime.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `bearer`).
    pub scheme: String,
    /// Parameters by lowercased name (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// True for the `Bearer` scheme.
    #[must_use]
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// True for the `Basic` scheme.
    #[must_use]
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }

    /// A parameter by (lowercase) name.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parse every challenge in one `WWW-Authenticate` header value.
///
/// Handles several challenges in one value (`Basic realm="a", Bearer
/// realm="b"`), quoted strings with backslash escapes and bare tokens.
/// Returns an error naming the header when it holds no scheme at all.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, RegistryError> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        let (word, after) = take_token(rest);
        if word.is_empty() {
            return Err(bad_challenge(header));
        }
        let after_ws = after.trim_start();
        if let Some(v) = after_ws.strip_prefix('=') {
            // A parameter of the current challenge.
            let Some(current) = out.last_mut() else {
                return Err(bad_challenge(header));
            };
            let (value, after_value) =
                take_value(v.trim_start()).ok_or_else(|| bad_challenge(header))?;
            current.params.insert(word.to_ascii_lowercase(), value);
            rest = after_value;
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
    if out.is_empty() {
        return Err(bad_challenge(header));
    }
    Ok(out)
}

fn bad_challenge(header: &str) -> RegistryError {
    RegistryError::BadChallenge {
        header: header.chars().take(200).collect(),
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/:".contains(c)
}

fn take_token(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn take_value(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '"' => return Some((value, &body[i + 1..])),
                _ => value.push(c),
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| c == ',' || c.is_ascii_whitespace())
            .unwrap_or(s.len());
        Some((s[..end].to_owned(), &s[end..]))
    }
}

/// Access a request needs: repository → actions (`pull`, `push`).
///
/// Several repositories in one set let a single token cover a
/// cross-repository mount (`push` on the target, `pull` on the source).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes {
    repos: BTreeMap<String, BTreeSet<String>>,
}

impl Scopes {
    /// No access beyond the registry itself.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// `pull` on one repository.
    #[must_use]
    pub fn pull(repo: &str) -> Self {
        Self::default().with(repo, &["pull"])
    }

    /// `pull,push` on one repository.
    #[must_use]
    pub fn push(repo: &str) -> Self {
        Self::default().with(repo, &["pull", "push"])
    }

    /// Add actions on a repository.
    #[must_use]
    pub fn with(mut self, repo: &str, actions: &[&str]) -> Self {
        let set = self.repos.entry(repo.to_owned()).or_default();
        set.extend(actions.iter().map(|a| (*a).to_owned()));
        self
    }

    /// The scope strings to send to a token service, one per repository,
    /// e.g. `repository:library/busybox:pull,push`.
    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.repos
            .iter()
            .map(|(repo, actions)| {
                let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
                format!("repository:{repo}:{}", actions.join(","))
            })
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(" "))
    }
}

/// The JSON a token service answers with. Docker's uses `token`, OAuth2
/// services `access_token`; some send both.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it lives.
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self
            .expires_in
            .map(Duration::from_secs)
            .filter(|d| *d >= DEFAULT_TOKEN_LIFETIME)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Some((token, lifetime))
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// Bearer tokens by (endpoint host, scopes), plus the challenge each host
/// answered with, so later requests authenticate up front instead of
/// collecting a 401 first.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl AuthCache {
    pub(crate) fn challenge(&self, host: &str) -> Option<Challenge> {
        lock(&self.challenges).get(host).cloned()
    }

    pub(crate) fn set_challenge(&self, host: &str, challenge: Challenge) {
        lock(&self.challenges).insert(host.to_owned(), challenge);
    }

    pub(crate) fn token(&self, host: &str, scopes: &Scopes) -> Option<String> {
        let key = (host.to_owned(), scopes.to_string());
        let mut tokens = lock(&self.tokens);
        match tokens.get(&key) {
            Some(t) if t.expires > Instant::now() + EXPIRY_MARGIN => Some(t.token.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put_token(&self, host: &str, scopes: &Scopes, token: String, lifetime: Duration) {
        let key = (host.to_owned(), scopes.to_string());
        lock(&self.tokens).insert(
            key,
            CachedToken {
                token,
                expires: Instant::now() + lifetime,
            },
        );
    }

    /// Forget a token the registry refused (revoked or expired early).
    pub(crate) fn drop_token(&self, host: &str, scopes: &Scopes) {
        lock(&self.tokens).remove(&(host.to_owned(), scopes.to_string()));
    }
}

/// Poisoning only means another thread panicked mid-update of a cache; the
/// map itself is still valid, so keep using it.
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn challenge_parsing_never_panics(s in "\\PC{0,120}") {
            let _ = parse_challenges(&s);
        }

        #[test]
        fn challenge_parsing_of_challenge_like_text_never_panics(
            s in r#"(Bearer|Basic|,| |=|"|\\\\|realm|scope|[a-z:/.]){0,40}"#
        ) {
            if let Ok(cs) = parse_challenges(&s) {
                prop_assert!(!cs.is_empty());
            }
        }
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn parses_several_challenges_escapes_and_bare_tokens() {
        let c = parse_challenges(
            r#"Basic realm="a \"quoted\" realm", Bearer realm=https://t.example/tok , service=reg"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("https://t.example/tok"));
        assert_eq!(c[1].param("service"), Some("reg"));
    }

    #[test]
    fn rejects_garbage_challenges() {
        for h in ["", "   ", "=x", r#"Bearer realm="unterminated"#, "realm=x"] {
            let err = parse_challenges(h);
            assert!(err.is_err(), "{h:?} parsed as {err:?}");
        }
    }

    #[test]
    fn scopes_merge_actions_per_repository() {
        let s = Scopes::push("team/app")
            .with("library/base", &["pull"])
            .with("team/app", &["pull"]);
        assert_eq!(
            s.to_strings(),
            vec![
                "repository:library/base:pull".to_owned(),
                "repository:team/app:pull,push".to_owned()
            ]
        );
    }

    #[test]
    fn token_response_prefers_token_and_clamps_lifetime() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"b","token":"a","expires_in":5}"#).unwrap();
        let (t, life) = r.into_token().unwrap();
        assert_eq!(t, "a");
        assert_eq!(life, Duration::from_secs(60));
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"b","expires_in":300}"#).unwrap();
        assert_eq!(
            r.into_token().unwrap(),
            ("b".into(), Duration::from_secs(300))
        );
        let r: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(r.into_token().is_none());
    }

    #[test]
    fn token_cache_expires_and_drops() {
        let cache = AuthCache::default();
        let s = Scopes::pull("a");
        cache.put_token("h", &s, "tok".into(), Duration::from_secs(300));
        assert_eq!(cache.token("h", &s).as_deref(), Some("tok"));
        assert_eq!(cache.token("h", &Scopes::push("a")), None);
        cache.drop_token("h", &s);
        assert_eq!(cache.token("h", &s), None);
        // Inside the refresh margin counts as expired.
        cache.put_token("h", &s, "old".into(), Duration::from_secs(5));
        assert_eq!(cache.token("h", &s), None);
    }
}
