//! `rbuild login` / `logout`: credentials in the Docker CLI's config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), so that
//! rbuild and docker share one login.

use crate::{Config, Error};
use rbuild_registry::{ClientOptions, Credential, DockerConfigCredentials, RegistryClient, StaticCredentials};
use std::sync::Arc;

/// The registry a user means by `NAME`: `docker.io` for Docker Hub in any
/// of its spellings, else the host (and port) without a scheme or path,
/// as `docker login https://host:5000/v2/` is also accepted by docker.
pub fn registry_name(given: Option<&str>) -> Result<String, Error> {
    let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok("docker.io".to_string());
    };
    let rest = given.strip_prefix("https://").or_else(|| given.strip_prefix("http://")).unwrap_or(given);
    let host = rest.split('/').next().unwrap_or_default().to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !valid {
        return Err(Error::Invalid(format!("`{given}` is not a registry host (expected HOST[:PORT])")));
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    })
}

/// Checks `username`/`password` against `registry` (as `docker login`:
/// the registry must accept them) and only then saves them, through the
/// configured credential helper or in `auths`. `config` supplies the
/// registry's settings (plain HTTP, CA certificates).
pub async fn login(config: &Config, registry: &str, username: &str, password: &str) -> Result<(), Error> {
    if username.is_empty() || password.is_empty() {
        return Err(Error::Invalid(format!("login to `{registry}` needs a username and a password")));
    }
    let cred = Credential { username: username.to_string(), secret: password.to_string() };
    let key = config.registry.origin(registry).credential_key().to_string();
    let client = RegistryClient::new(ClientOptions {
        config: config.registry.clone(),
        credentials: Arc::new(StaticCredentials::new().with(&key, cred.clone())),
        ..ClientOptions::default()
    })
    .map_err(|e| Error::Registry(e.to_string()))?;
    client.check_login(registry).await.map_err(|e| Error::Registry(format!("login to `{registry}`: {e}")))?;
    DockerConfigCredentials::from_env()
        .store(registry, &cred)
        .map_err(|e| Error::Registry(format!("saving the credentials for `{registry}`: {e}")))
}

/// Forgets the saved credentials for `registry`; returns whether there
/// were any.
pub fn logout(registry: &str) -> Result<bool, Error> {
    DockerConfigCredentials::from_env()
        .erase(registry)
        .map_err(|e| Error::Registry(format!("removing the credentials for `{registry}`: {e}")))
}

/// Where the credentials are saved (for messages).
pub fn config_path() -> std::path::PathBuf {
    DockerConfigCredentials::from_env().path().to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::registry_name;

    #[test]
    fn registry_names_as_docker_accepts_them() {
        assert_eq!(registry_name(None).unwrap(), "docker.io");
        assert_eq!(registry_name(Some("https://index.docker.io/v1/")).unwrap(), "docker.io");
        assert_eq!(registry_name(Some("localhost:5000")).unwrap(), "localhost:5000");
        assert_eq!(registry_name(Some("http://127.0.0.1:5000/v2/")).unwrap(), "127.0.0.1:5000");
        assert!(registry_name(Some("a b")).is_err());
        assert!(registry_name(Some("https:///x")).is_err());
    }
}
