//! Where usernames and passwords come from.
//!
//! The client asks a [`CredentialProvider`] for a registry's credentials only
//! when the registry challenges it, so anonymous pulls never run a helper.
//! [`DockerConfigCredentials`] reads `~/.docker/config.json` the way the
//! Docker CLI does (so `docker login` keeps working for rbuild): a
//! per-registry `credHelpers` entry wins, then `credsStore`, then the
//! base64 `auth` field of `auths`.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::config::DOCKER_HUB;

/// The key Docker stores Docker Hub credentials under.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A username and a secret (a password or, with the username `<token>`, an
/// OAuth2 identity token, as Docker's credential helpers return them).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name; `<token>` marks `secret` as an identity token.
    pub username: String,
    /// Password or identity token.
    pub secret: String,
}

impl Credential {
    /// A username/password pair.
    #[must_use]
    pub fn basic(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            secret: password.to_owned(),
        }
    }

    /// The identity (OAuth2 refresh) token, when this credential is one.
    #[must_use]
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == "<token>").then_some(self.secret.as_str())
    }

    /// The `Authorization: Basic …` header value.
    #[must_use]
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug logs.
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Errors while looking credentials up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The Docker config file exists but cannot be read or parsed.
    #[error("cannot read docker config `{path}`: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A credential helper failed for a reason other than "not found".
    #[error("credential helper `docker-credential-{helper}` failed for `{registry}`: {message}")]
    Helper {
        /// Helper suffix (`pass`, `secretservice`, ...).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What the helper said.
        message: String,
    },
}

/// Supplies credentials for a registry host (`docker.io`, `ghcr.io`,
/// `localhost:5000`). `Ok(None)` means "go anonymous".
///
/// Called from a blocking context (helpers spawn processes), so
/// implementations may block.
pub trait CredentialProvider: Send + Sync {
    /// Credentials for `registry`, if any.
    fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialsError>;
}

/// Never any credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialProvider for Anonymous {
    fn get(&self, _registry: &str) -> Result<Option<Credential>, CredentialsError> {
        Ok(None)
    }
}

/// Fixed credentials per registry (tests, `--username/--password` flags);
/// falls back to another provider for registries it does not know.
#[derive(Default)]
pub struct StaticCredentials {
    map: HashMap<String, Credential>,
    fallback: Option<Box<dyn CredentialProvider>>,
}

impl StaticCredentials {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add credentials for a registry.
    #[must_use]
    pub fn with(mut self, registry: &str, cred: Credential) -> Self {
        self.map.insert(registry.to_owned(), cred);
        self
    }

    /// Ask `fallback` for registries not listed here.
    #[must_use]
    pub fn or_else(mut self, fallback: impl CredentialProvider + 'static) -> Self {
        self.fallback = Some(Box::new(fallback));
        self
    }
}

impl CredentialProvider for StaticCredentials {
    fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(c) = self.map.get(registry) {
            return Ok(Some(c.clone()));
        }
        match &self.fallback {
            Some(f) => f.get(registry),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Credentials from a Docker CLI config file.
///
/// The file is read on every lookup, so a `docker login` during a long
/// daemon run is picked up.
#[derive(Debug, Clone)]
pub struct DockerConfigCredentials {
    path: PathBuf,
    helper_dir: Option<PathBuf>,
}

impl DockerConfigCredentials {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    #[must_use]
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/root/.docker"));
        Self::new(dir.join("config.json"))
    }

    /// A specific config file.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// Look for `docker-credential-*` in `dir` instead of `$PATH` (tests).
    #[must_use]
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The config file this provider reads.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<Option<DockerConfigFile>, CredentialsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CredentialsError::Config {
                    path: self.path.clone(),
                    message: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CredentialsError::Config {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    fn run_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credential>, CredentialsError> {
        let server = primary_key(registry);
        let stdout = match self.exec_helper(helper, "get", registry, server.as_bytes())? {
            Ok(stdout) => stdout,
            Err(text) if text.to_ascii_lowercase().contains("credentials not found") => {
                return Ok(None);
            }
            Err(text) => return Err(helper_failed(helper, registry, &text)),
        };
        let reply: HelperReply = serde_json::from_slice(&stdout)
            .map_err(|e| helper_error(helper, registry, format!("bad reply: {e}")))?;
        if reply.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credential {
            username: reply.username,
            secret: reply.secret,
        }))
    }

    /// Runs `docker-credential-<helper> <verb>` with `input` on stdin.
    /// `Ok(Ok(stdout))` when it succeeded, `Ok(Err(text))` with its output
    /// when it exited with a failure, so each verb can decide which
    /// failures mean "nothing there" (else see [`helper_failed`]).
    fn exec_helper(
        &self,
        helper: &str,
        verb: &str,
        registry: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CredentialsError> {
        let program = match &self.helper_dir {
            Some(d) => d.join(format!("docker-credential-{helper}")),
            None => PathBuf::from(format!("docker-credential-{helper}")),
        };
        let fail = |message: String| helper_error(helper, registry, message);
        let mut child = Command::new(&program)
            .arg(verb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run `{}`: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            return Ok(Ok(out.stdout));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Ok(Err(text))
    }
}

/// A helper that exited with a failure: its output, shortened.
fn helper_failed(helper: &str, registry: &str, output: &str) -> CredentialsError {
    helper_error(helper, registry, output.trim().chars().take(500).collect())
}

fn helper_error(helper: &str, registry: &str, message: String) -> CredentialsError {
    CredentialsError::Helper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        message,
    }
}

impl DockerConfigCredentials {
    /// Save credentials for `registry` the way `docker login` does: through
    /// the credential helper configured for it (`credHelpers`, then
    /// `credsStore`), else as base64 `auth` under `auths`. Every other field
    /// of the file is kept; the file is replaced atomically with mode 0600.
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<(), CredentialsError> {
        let file = self.load()?.unwrap_or_default();
        let key = primary_key(registry);
        if let Some(helper) = helper_for(&file, registry) {
            let payload = serde_json::json!({
                "ServerURL": key,
                "Username": cred.username,
                "Secret": cred.secret,
            });
            return self.helper_call(&helper, "store", registry, payload.to_string().as_bytes());
        }
        let mut doc = self.load_value()?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.secret));
        let auths = doc
            .as_object_mut()
            .map(|o| o.entry("auths").or_insert_with(|| serde_json::json!({})));
        match auths.and_then(serde_json::Value::as_object_mut) {
            Some(a) => {
                a.insert(key, serde_json::json!({ "auth": auth }));
            }
            None => return Err(self.config_error("`auths` is not an object")),
        }
        self.write_value(&doc)
    }

    /// Forget credentials for `registry` (`docker logout`): erase them from
    /// the helper and drop every `auths` entry for it. Returns whether the
    /// file had any.
    pub fn erase(&self, registry: &str) -> Result<bool, CredentialsError> {
        let Some(file) = self.load()? else {
            return Ok(false);
        };
        if let Some(helper) = helper_for(&file, registry) {
            self.helper_call(&helper, "erase", registry, primary_key(registry).as_bytes())?;
        }
        let mut doc = self.load_value()?;
        let keys = auth_keys(registry);
        let wanted = key_host(&keys[0]).to_owned();
        let mut removed = false;
        if let Some(a) = doc
            .get_mut("auths")
            .and_then(serde_json::Value::as_object_mut)
        {
            let before = a.len();
            a.retain(|k, _| !keys.contains(k) && key_host(k) != wanted);
            removed = a.len() != before;
        }
        if removed {
            self.write_value(&doc)?;
        }
        Ok(removed)
    }

    fn helper_installed(&self, helper: &str) -> bool {
        let name = format!("docker-credential-{helper}");
        let found = match &self.helper_dir {
            Some(d) => d.join(&name).is_file(),
            None => std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&name).is_file())),
        };
        if !found {
            tracing::debug!(helper = %name, "credsStore helper not installed; ignoring it");
        }
        found
    }

    fn config_error(&self, message: impl Into<String>) -> CredentialsError {
        CredentialsError::Config {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn load_value(&self) -> Result<serde_json::Value, CredentialsError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| self.config_error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
            Err(e) => Err(self.config_error(e.to_string())),
        }
    }

    /// Write to a temp file beside the config, then rename over it, so a
    /// crash never leaves half a config (and the secret is never readable by
    /// others, even briefly).
    fn write_value(&self, doc: &serde_json::Value) -> Result<(), CredentialsError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.config_error(e.to_string()))?;
        let tmp = dir.join(format!(".config.json.tmp-{}", std::process::id()));
        let text = serde_json::to_vec_pretty(doc).map_err(|e| self.config_error(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.config_error(e.to_string())
        })
    }

    fn helper_call(
        &self,
        helper: &str,
        verb: &str,
        registry: &str,
        input: &[u8],
    ) -> Result<(), CredentialsError> {
        match self.exec_helper(helper, verb, registry, input)? {
            Ok(_) => Ok(()),
            Err(text) if verb == "erase" && text.to_ascii_lowercase().contains("not found") => Ok(()),
            Err(text) => Err(helper_failed(helper, registry, &text)),
        }
    }
}

/// The helper responsible for `registry`, if any.
fn helper_for(file: &DockerConfigFile, registry: &str) -> Option<String> {
    auth_keys(registry)
        .iter()
        .find_map(|k| file.cred_helpers.get(k))
        .cloned()
        .or_else(|| file.creds_store.clone().filter(|s| !s.is_empty()))
}

/// The key `docker login` writes for `registry`.
fn primary_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// The `auths` keys that may hold credentials for `registry`.
fn auth_keys(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        return vec![
            DOCKER_HUB_AUTH_KEY.to_owned(),
            "docker.io".to_owned(),
            "index.docker.io".to_owned(),
            "registry-1.docker.io".to_owned(),
            "https://registry-1.docker.io".to_owned(),
        ];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

/// Docker stores keys as URLs (`https://host/v1/`) or bare hosts.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn decode_entry(entry: &AuthEntry) -> Option<Credential> {
    if let Some(tok) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Some(Credential::basic("<token>", tok));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':')?;
        return Some(Credential::basic(user, pass));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Some(Credential::basic(u, p)),
        _ => None,
    }
}

impl CredentialProvider for DockerConfigCredentials {
    fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialsError> {
        let Some(file) = self.load()? else {
            return Ok(None);
        };
        let keys = auth_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| file.cred_helpers.get(k)) {
            return self.run_helper(helper, registry);
        }
        // A `credsStore` whose helper is not installed (a config copied from
        // another machine) must not break anonymous pulls: skip it. A helper
        // named for this registry in `credHelpers` is an error when missing.
        if let Some(store) = file.creds_store.as_deref().filter(|s| !s.is_empty())
            && self.helper_installed(store)
            && let Some(c) = self.run_helper(store, registry)?
        {
            return Ok(Some(c));
        }
        for k in &keys {
            if let Some(c) = file.auths.get(k).and_then(decode_entry) {
                return Ok(Some(c));
            }
        }
        // Keys written as URLs with paths (`https://host:5000/v2/`).
        let wanted = key_host(&keys[0]).to_owned();
        Ok(file
            .auths
            .iter()
            .filter(|(k, _)| key_host(k) == wanted)
            .find_map(|(_, e)| decode_entry(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_auths_for_hub_and_other_hosts() {
        let d = tempfile::tempdir().unwrap();
        let hub = base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass");
        let other = base64::engine::general_purpose::STANDARD.encode("me:p:with:colons");
        let path = write(
            d.path(),
            "config.json",
            &format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{hub}"}},
                "https://reg.example:5000/v2/":{{"auth":"{other}"}},
                "tok.example":{{"identitytoken":"refresh"}}}}}}"#
            ),
        );
        let p = DockerConfigCredentials::new(path);
        assert_eq!(
            p.get("docker.io").unwrap(),
            Some(Credential::basic("hubuser", "hubpass"))
        );
        assert_eq!(
            p.get("reg.example:5000").unwrap(),
            Some(Credential::basic("me", "p:with:colons"))
        );
        let tok = p.get("tok.example").unwrap().unwrap();
        assert_eq!(tok.identity_token(), Some("refresh"));
        assert_eq!(p.get("nobody.example").unwrap(), None);
    }

    #[test]
    fn missing_file_is_anonymous_and_broken_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = DockerConfigCredentials::new(d.path().join("none.json"));
        assert_eq!(p.get("docker.io").unwrap(), None);
        let bad = write(d.path(), "bad.json", "{not json");
        let err = DockerConfigCredentials::new(&bad).get("x").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }

    #[test]
    fn cred_helpers_and_creds_store_run_the_helper() {
        let d = tempfile::tempdir().unwrap();
        // A helper that echoes the server URL it was asked about as the user.
        let helper = write(
            d.path(),
            "docker-credential-fake",
            "#!/bin/sh\nread url\nif [ \"$url\" = unknown.example ]; then echo 'credentials not found in native keychain'; exit 1; fi\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3\"}' \"$url\" \"$url\"\n",
        );
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = write(
            d.path(),
            "config.json",
            r#"{"credsStore":"fake","credHelpers":{"helped.example":"fake"},"auths":{"unknown.example":{"auth":"dTpw"}}}"#,
        );
        let p = DockerConfigCredentials::new(cfg).with_helper_dir(d.path());
        assert_eq!(
            p.get("helped.example").unwrap(),
            Some(Credential::basic("helped.example", "s3"))
        );
        assert_eq!(
            p.get("docker.io").unwrap(),
            Some(Credential::basic(DOCKER_HUB_AUTH_KEY, "s3"))
        );
        // Helper says "not found": fall back to `auths` ("u:p").
        assert_eq!(
            p.get("unknown.example").unwrap(),
            Some(Credential::basic("u", "p"))
        );
    }

    #[test]
    fn store_and_erase_keep_other_fields_and_protect_the_file() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/config.json");
        let p = DockerConfigCredentials::new(&path);
        p.store("docker.io", &Credential::basic("hub", "pw"))
            .unwrap();
        p.store("reg.example:5000", &Credential::basic("me", "pw2"))
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(doc["auths"][DOCKER_HUB_AUTH_KEY]["auth"].is_string());
        doc["psFormat"] = serde_json::json!("table");
        std::fs::write(&path, doc.to_string()).unwrap();
        assert_eq!(
            p.get("docker.io").unwrap(),
            Some(Credential::basic("hub", "pw"))
        );
        assert!(p.erase("docker.io").unwrap());
        assert!(!p.erase("docker.io").unwrap());
        assert_eq!(p.get("docker.io").unwrap(), None);
        assert_eq!(
            p.get("reg.example:5000").unwrap(),
            Some(Credential::basic("me", "pw2"))
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "table", "unknown fields survive");
    }

    #[test]
    fn store_goes_through_the_helper_when_one_is_configured() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("helper.log");
        let helper = write(
            d.path(),
            "docker-credential-rec",
            &format!("#!/bin/sh\necho \"$1 $(cat)\" >> {}\n", log.display()),
        );
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = write(d.path(), "config.json", r#"{"credsStore":"rec"}"#);
        let p = DockerConfigCredentials::new(&cfg).with_helper_dir(d.path());
        p.store("docker.io", &Credential::basic("u", "s")).unwrap();
        p.erase("docker.io").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        for part in [
            r#"store {"#,
            r#""Secret":"s""#,
            r#""ServerURL":"https://index.docker.io/v1/""#,
            r#""Username":"u""#,
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(text.contains("erase https://index.docker.io/v1/"), "{text}");
        // The secret never reached the file.
        assert!(!std::fs::read_to_string(&cfg).unwrap().contains("\"s\""));
    }

    #[test]
    fn a_missing_creds_store_helper_falls_back_to_auths() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(
            d.path(),
            "config.json",
            r#"{"credsStore":"desktop","credHelpers":{"strict.example":"gone"},"auths":{"reg.example":{"auth":"dTpw"}}}"#,
        );
        let p = DockerConfigCredentials::new(cfg).with_helper_dir(d.path());
        assert_eq!(
            p.get("reg.example").unwrap(),
            Some(Credential::basic("u", "p"))
        );
        assert_eq!(p.get("docker.io").unwrap(), None);
        let err = p.get("strict.example").unwrap_err();
        assert!(err.to_string().contains("docker-credential-gone"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = Credential::basic("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dXNlcjpodW50ZXIy");
    }
}
