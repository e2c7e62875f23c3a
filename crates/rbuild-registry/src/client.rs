//! The client: HTTP clients per TLS setting, authentication and the one
//! request loop every API call goes through (auth challenges, retries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Request, Response, StatusCode};
use url::Url;

use crate::auth::{AuthCache, Challenge, Scopes, TokenResponse, parse_challenges};
use crate::config::{Endpoint, RegistryConfig, Scheme};
use crate::credentials::{Anonymous, Credential, CredentialProvider};
use crate::error::{RegistryError, server_message};
use crate::retry::{RetryPolicy, parse_retry_after};

/// Largest token-service reply we read.
const MAX_TOKEN_REPLY: u64 = 1 << 20;
/// Largest error body we read to build a message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Everything a [`RegistryClient`] is configured with.
#[derive(Clone)]
pub struct ClientOptions {
    /// Per-host settings (plain HTTP, insecure TLS, CAs, mirrors).
    pub config: RegistryConfig,
    /// Where credentials come from when a registry asks for them.
    pub credentials: Arc<dyn CredentialProvider>,
    /// Retry limits.
    pub retry: RetryPolicy,
    /// Blobs transferred at the same time by one pull or push.
    pub max_concurrent_blobs: usize,
    /// Size of each `PATCH` when uploading in chunks.
    pub chunk_size: u64,
    /// Blobs larger than this are uploaded in chunks of `chunk_size`
    /// rather than one streamed `PUT`; `None`: never (unless the registry
    /// asks with `OCI-Chunk-Min-Length`). One `PUT` is faster, but proxies
    /// in front of registries often cap request bodies, so very large
    /// blobs go in pieces by default.
    pub chunk_threshold: Option<u64>,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            config: RegistryConfig::default(),
            credentials: Arc::new(Anonymous),
            retry: RetryPolicy::default(),
            max_concurrent_blobs: 3,
            chunk_size: 64 << 20,
            chunk_threshold: Some(1 << 30),
            user_agent: format!("rbuild/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl ClientOptions {
    /// Options for a CLI or daemon: the given per-host settings and
    /// credentials from the Docker config (`$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`, with its credential helpers), so
    /// `docker login` works for rbuild too.
    #[must_use]
    pub fn from_config(config: RegistryConfig) -> Self {
        Self {
            config,
            credentials: Arc::new(crate::credentials::DockerConfigCredentials::from_env()),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("config", &self.config)
            .field("retry", &self.retry)
            .field("max_concurrent_blobs", &self.max_concurrent_blobs)
            .field("chunk_size", &self.chunk_size)
            .field("chunk_threshold", &self.chunk_threshold)
            .finish_non_exhaustive()
    }
}

/// A distribution-API client for any number of registries.
///
/// Cheap to clone (shared state behind an `Arc`); tokens and challenges are
/// cached for the client's lifetime, so one client per process (or per
/// build) is the intended use.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) opts: ClientOptions,
    /// Built on first use: constructing a TLS client loads and parses the
    /// system's root certificates (tens of ms), which builds that never
    /// talk to a registry (a cached rebuild, `FROM scratch`) should not pay.
    default_http: std::sync::OnceLock<reqwest::Client>,
    /// Clients for hosts with their own TLS settings (CA files, insecure).
    host_http: HashMap<String, reqwest::Client>,
    auth: AuthCache,
    creds: Mutex<HashMap<String, Option<Credential>>>,
    /// Serialises token fetches so parallel blob transfers share one token.
    token_fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

fn http_builder(user_agent: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(60))
}

impl RegistryClient {
    /// Build a client. Fails when a configured CA file cannot be read or
    /// parsed, naming the file.
    pub fn new(opts: ClientOptions) -> Result<Self, RegistryError> {
        let mut host_http = HashMap::new();
        for (host, conf) in &opts.config.hosts {
            if !conf.insecure && conf.ca.is_empty() {
                continue;
            }
            let mut b = http_builder(&opts.user_agent);
            if conf.insecure {
                b = b.danger_accept_invalid_certs(true);
            }
            for path in &conf.ca {
                let pem = std::fs::read(path).map_err(|e| RegistryError::CaCert {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::CaCert {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
                if certs.is_empty() {
                    return Err(RegistryError::CaCert {
                        path: path.clone(),
                        message: "no PEM certificate in file".into(),
                    });
                }
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            let client = b.build().map_err(|source| RegistryError::ClientBuild {
                host: host.clone(),
                source,
            })?;
            host_http.insert(host.clone(), client);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                opts,
                default_http: std::sync::OnceLock::new(),
                host_http,
                auth: AuthCache::default(),
                creds: Mutex::new(HashMap::new()),
                token_fetch: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The options this client was built with.
    #[must_use]
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn http_for(&self, ep: &Endpoint) -> Result<&reqwest::Client, RegistryError> {
        let by_host = self.inner.host_http.get(&ep.host).or_else(|| {
            // `docker.io` settings apply to the host that serves it.
            self.inner
                .host_http
                .get(&ep.registry)
                .filter(|_| !ep.is_mirror)
        });
        if let Some(client) = by_host {
            return Ok(client);
        }
        if let Some(client) = self.inner.default_http.get() {
            return Ok(client);
        }
        let client = http_builder(&self.inner.opts.user_agent)
            .build()
            .map_err(|source| RegistryError::ClientBuild {
                host: "*".into(),
                source,
            })?;
        // A concurrent first request may have won the race; either client
        // is equivalent, and the one stored is the one every caller gets.
        Ok(self.inner.default_http.get_or_init(|| client))
    }

    /// Credentials for an endpoint, asked of the provider once per client.
    async fn credentials(&self, ep: &Endpoint) -> Result<Option<Credential>, RegistryError> {
        let key = ep.credential_key().to_owned();
        if let Some(c) = lock(&self.inner.creds).get(&key) {
            return Ok(c.clone());
        }
        let provider = Arc::clone(&self.inner.opts.credentials);
        let k = key.clone();
        let found = tokio::task::spawn_blocking(move || provider.get(&k))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        lock(&self.inner.creds).insert(key, found.clone());
        Ok(found)
    }

    /// The `Authorization` value for a request, from what the host
    /// challenged us with before (none before the first challenge).
    async fn authorization(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
    ) -> Result<Option<String>, RegistryError> {
        let Some(ch) = self.inner.auth.challenge(&ep.host) else {
            return Ok(None);
        };
        if ch.is_basic() {
            return Ok(self.credentials(ep).await?.map(|c| c.basic_header()));
        }
        if !ch.is_bearer() {
            return Ok(None);
        }
        if let Some(t) = self.inner.auth.token(&ep.host, scopes) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let _guard = self.inner.token_fetch.lock().await;
        if let Some(t) = self.inner.auth.token(&ep.host, scopes) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let (token, lifetime) = self.fetch_token(ep, &ch, scopes).await?;
        self.inner
            .auth
            .put_token(&ep.host, scopes, token.clone(), lifetime);
        Ok(Some(format!("Bearer {token}")))
    }

    /// Ask the challenge's realm for a token covering `scopes`.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        ch: &Challenge,
        scopes: &Scopes,
    ) -> Result<(String, Duration), RegistryError> {
        let realm_text = ch.param("realm").unwrap_or_default().to_owned();
        let fail = |message: String| RegistryError::Token {
            realm: realm_text.clone(),
            message,
        };
        let realm = Url::parse(&realm_text).map_err(|e| fail(format!("bad realm: {e}")))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(fail("realm is not an http(s) URL".into()));
        }
        let creds = self.credentials(ep).await?;
        if creds.is_some() && realm.scheme() == "http" && ep.scheme == Scheme::Https {
            return Err(fail(
                "refusing to send credentials to a plain-HTTP token service of an HTTPS registry"
                    .into(),
            ));
        }
        let mut scope_list = scopes.to_strings();
        if let Some(s) = ch.param("scope") {
            for extra in s.split(' ').filter(|x| !x.is_empty()) {
                if !scope_list.iter().any(|x| x == extra) {
                    scope_list.push(extra.to_owned());
                }
            }
        }
        let service = ch.param("service").unwrap_or_default();
        let http = self.http_for(ep)?;
        let build = || -> Result<Request, RegistryError> {
            let mut url = realm.clone();
            let req = if let Some(refresh) = creds.as_ref().and_then(|c| c.identity_token()) {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("service", service)
                    .append_pair("scope", &scope_list.join(" "))
                    .append_pair("client_id", "rbuild")
                    .append_pair("refresh_token", refresh)
                    .finish();
                http.post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            } else {
                {
                    let mut q = url.query_pairs_mut();
                    if !service.is_empty() {
                        q.append_pair("service", service);
                    }
                    for s in &scope_list {
                        q.append_pair("scope", s);
                    }
                    if let Some(c) = &creds {
                        q.append_pair("account", &c.username);
                    }
                }
                let mut rb = http.get(url);
                if let Some(c) = &creds {
                    rb = rb.header(AUTHORIZATION, c.basic_header());
                }
                rb
            };
            req.build().map_err(|e| fail(e.to_string()))
        };
        let resp = self
            .execute_with_retries(http, &build, self.inner.opts.retry)
            .await?;
        let status = resp.status();
        let body = read_limited(resp, MAX_TOKEN_REPLY, "token reply")
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!(
                "answered {status}: {}",
                server_message(&body)
            )));
        }
        let reply: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| fail(format!("bad JSON: {e}")))?;
        reply
            .into_token()
            .ok_or_else(|| fail("reply has neither `token` nor `access_token`".into()))
    }

    /// Send without auth handling, retrying connection errors, 5xx and 429.
    async fn execute_with_retries(
        &self,
        http: &reqwest::Client,
        build: &(dyn Fn() -> Result<Request, RegistryError> + Send + Sync),
        policy: RetryPolicy,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = build()?;
            let (method, url) = (req.method().to_string(), redact(req.url()));
            match http.execute(req).await {
                Err(source) => {
                    // The URL is in our own field, redacted; reqwest's copy
                    // would carry upload-state query strings into messages.
                    let source = source.without_url();
                    if attempt >= policy.max_attempts {
                        return Err(RegistryError::Transport {
                            method,
                            url,
                            source,
                        });
                    }
                    tracing::debug!(%url, error = %source, attempt, "retrying after connection error");
                    tokio::time::sleep(policy.delay(attempt, None)).await;
                }
                Ok(resp) => {
                    let st = resp.status();
                    let retryable = st.is_server_error() || st == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable || attempt >= policy.max_attempts {
                        return Ok(resp);
                    }
                    let ra = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    tracing::debug!(%url, status = st.as_u16(), attempt, "retrying after server error");
                    drop(resp);
                    tokio::time::sleep(policy.delay(attempt, ra)).await;
                }
            }
        }
    }

    /// Send an API request to `ep` needing `scopes`: authenticates (answering
    /// a 401 challenge once, refreshing a refused token once), retries
    /// transient failures, and returns whatever final response the server
    /// gave. `build` is called once per attempt, so bodies are re-created.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        build: &(dyn Fn() -> Result<Request, RegistryError> + Send + Sync),
    ) -> Result<Response, RegistryError> {
        self.send_with(ep, scopes, build, self.inner.opts.retry)
            .await
    }

    /// Like [`RegistryClient::send`] without transient retries (auth is still
    /// answered): for the steps of whole-object operations run under
    /// [`RegistryClient::retry_transient`] — a blob download, a blob upload
    /// whose PATCH/PUT steps cannot be repeated in place — which start the
    /// whole object over instead.
    pub(crate) async fn send_once(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        build: &(dyn Fn() -> Result<Request, RegistryError> + Send + Sync),
    ) -> Result<Response, RegistryError> {
        self.send_with(ep, scopes, build, RetryPolicy::none()).await
    }

    async fn send_with(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        build: &(dyn Fn() -> Result<Request, RegistryError> + Send + Sync),
        policy: RetryPolicy,
    ) -> Result<Response, RegistryError> {
        let http = self.http_for(ep)?;
        let mut auth_rounds = 0;
        loop {
            let auth = self.authorization(ep, scopes).await?;
            let with_auth = || -> Result<Request, RegistryError> {
                let mut req = build()?;
                // Credentials only go to the endpoint itself, never to a
                // host a server-provided URL (upload Location) points at.
                let same_host = same_origin(req.url(), ep);
                if let Some(a) = auth.as_ref().filter(|_| same_host) {
                    let v = HeaderValue::from_str(a).map_err(|e| RegistryError::Token {
                        realm: ep.host.clone(),
                        message: format!("token is not a valid header value: {e}"),
                    })?;
                    req.headers_mut().insert(AUTHORIZATION, v);
                }
                Ok(req)
            };
            let resp = self.execute_with_retries(http, &with_auth, policy).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            auth_rounds += 1;
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| parse_challenges(v).ok())
                .flatten()
                .collect();
            let chosen = challenges
                .iter()
                .find(|c| c.is_bearer())
                .or_else(|| challenges.iter().find(|c| c.is_basic()))
                .cloned();
            // Basic credentials refused by a Basic challenge will be refused
            // again; a Bearer token gets one refresh (it may have expired).
            let had_basic = auth.as_deref().is_some_and(|a| a.starts_with("Basic "));
            let basic_again = had_basic && chosen.as_ref().is_some_and(Challenge::is_basic);
            let give_up = auth_rounds > 2 || chosen.is_none() || basic_again;
            if give_up {
                let body = read_limited(resp, MAX_ERROR_BODY, "error body")
                    .await
                    .unwrap_or_default();
                return Err(self.unauthorized(ep, scopes, &body, auth.is_some()));
            }
            if let Some(ch) = chosen {
                if ch.is_basic() && self.credentials(ep).await?.is_none() {
                    let body = read_limited(resp, MAX_ERROR_BODY, "error body")
                        .await
                        .unwrap_or_default();
                    return Err(self.unauthorized(ep, scopes, &body, false));
                }
                self.inner.auth.set_challenge(&ep.host, ch);
                self.inner.auth.drop_token(&ep.host, scopes);
            }
        }
    }

    fn unauthorized(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        body: &[u8],
        had_auth: bool,
    ) -> RegistryError {
        let mut message = server_message(body);
        if message.is_empty() {
            message = "access denied".into();
        }
        let hint = if had_auth {
            format!("hint: check the credentials for `{}`", ep.credential_key())
        } else {
            format!("hint: log in to `{}` first", ep.credential_key())
        };
        RegistryError::Unauthorized {
            host: ep.host.clone(),
            scope: scopes.to_string(),
            message: format!("{message}; {hint}"),
        }
    }

    /// Check that the client's credentials for `registry` are accepted, the
    /// way `docker login` does: `GET /v2/`, answering a Basic challenge with
    /// the password or a Bearer challenge by fetching a token with it (the
    /// token service verifies the password). A registry that lets anyone in
    /// passes. Fails without credentials, or when they are refused.
    pub async fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let ep = self.inner.opts.config.origin(registry);
        if self.credentials(&ep).await?.is_none() {
            return Err(RegistryError::Unauthorized {
                host: ep.host.clone(),
                scope: String::new(),
                message: format!("no credentials for `{registry}`"),
            });
        }
        let url = Self::api_url(&ep, "")?;
        let build = || Ok(Self::request(Method::GET, url.clone()));
        let resp = self.send(&ep, &Scopes::none(), &build).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(status_error("GET", resp).await)
    }

    /// Run `op` again while it fails transiently (connection trouble, 5xx,
    /// 429 with its `Retry-After`, a body cut short), up to the retry
    /// policy's attempts, calling `on_retry` before each new attempt.
    ///
    /// Used for whole-object operations (one manifest, one blob) that must
    /// start over rather than resume; their requests go through
    /// [`RegistryClient::send_once`] so that retries happen at one level
    /// only (nested loops would multiply the attempts).
    pub(crate) async fn retry_transient<T, F, Fut>(
        &self,
        what: &str,
        on_retry: &(dyn Fn() + Send + Sync),
        op: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let policy = self.inner.opts.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Err(e) if e.is_transient() && attempt < policy.max_attempts => {
                    tracing::debug!(what, error = %e, attempt, "transient failure, starting over");
                    on_retry();
                    tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                }
                other => return other,
            }
        }
    }

    /// A URL under the endpoint's `/v2/` root. Requests to a mirror carry
    /// `?ns=<registry>` (as containerd sends it) so one mirror can proxy
    /// several upstream registries.
    pub(crate) fn api_url(ep: &Endpoint, path: &str) -> Result<Url, RegistryError> {
        let text = format!("{}{}", ep.base_url(), path);
        let mut url = Url::parse(&text).map_err(|e| RegistryError::Url {
            url: text,
            message: e.to_string(),
        })?;
        if ep.is_mirror {
            url.query_pairs_mut().append_pair("ns", &ep.registry);
        }
        Ok(url)
    }

    /// A request builder (method + URL) for use inside `send` closures.
    pub(crate) fn request(method: Method, url: Url) -> Request {
        Request::new(method, url)
    }
}

/// Read a whole (small) body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    let url = redact(resp.url());
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Transport {
            method: "GET".into(),
            url: url.clone(),
            source: source.without_url(),
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Turn a non-success response into an error carrying the server's text.
pub(crate) async fn status_error(method: &str, resp: Response) -> RegistryError {
    let url = redact(resp.url());
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = read_limited(resp, MAX_ERROR_BODY, "error body")
        .await
        .unwrap_or_default();
    RegistryError::Status {
        method: method.to_owned(),
        url,
        status,
        message: server_message(&body),
        retry_after,
    }
}

/// A URL for messages: no userinfo, no query (upload URLs carry state
/// tokens that are not for logs).
pub(crate) fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// Whether `url` points at the endpoint itself (scheme, host and effective
/// port), so that its credentials may be attached.
pub(crate) fn same_origin(url: &Url, ep: &Endpoint) -> bool {
    let Ok(base) = Url::parse(&ep.base_url()) else {
        return false;
    };
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

/// Locks `m`, tolerating poisoning: the guarded state stays consistent
/// because no holder leaves it half-updated across a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_only_go_to_the_endpoint_origin() {
        let c = RegistryConfig::default();
        let ep = c.origin("registry.example:443");
        let yes = [
            "https://registry.example/v2/x",
            "https://registry.example:443/v2/",
        ];
        let no = [
            "http://registry.example/v2/",
            "https://registry.example:444/v2/",
            "https://storage.example/blob",
            "https://registry.example.evil/v2/",
        ];
        for u in yes {
            assert!(same_origin(&Url::parse(u).unwrap(), &ep), "{u}");
        }
        for u in no {
            assert!(!same_origin(&Url::parse(u).unwrap(), &ep), "{u}");
        }
        let local = c.origin("[::1]:5000");
        assert!(same_origin(
            &Url::parse("http://[::1]:5000/v2/").unwrap(),
            &local
        ));
    }

    #[test]
    fn redaction_drops_userinfo_and_query() {
        let u = Url::parse("https://u:p@h.example/v2/r/blobs/uploads/x?_state=secret&digest=d")
            .unwrap();
        assert_eq!(redact(&u), "https://h.example/v2/r/blobs/uploads/x");
    }
}
