//! An in-process fake registry with a built-in token service and fault
//! injection, speaking just enough hand-written HTTP/1.1 (one request per
//! connection) for the client under test.
//!
//! It behaves like a strict registry where it matters for safety: an upload
//! whose bytes do not hash to `?digest=` is refused, and a manifest that
//! references a blob the repository lacks is refused
//! (`MANIFEST_BLOB_UNKNOWN`), so a test can tell whether the client ever
//! tried to publish a manifest too early.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rbuild_oci::digest::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a fault does to a matching request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status and headers, without running the handler.
    Status(u16, Vec<(String, String)>),
    /// Run the handler but send only this many body bytes, then close.
    CutBody(usize),
    /// Run the handler but flip every byte of the body.
    WrongBody,
    /// Read this many request-body bytes, then close without answering.
    DropRequest(usize),
    /// Run the handler, then wait this many milliseconds before answering
    /// (to make concurrency observable).
    Delay(u64),
}

/// A fault rule: the first `times` requests whose method matches and whose
/// path contains `path_contains` get `action`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub times: usize,
    pub action: Action,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Vec<u8>>,
    repo_blobs: HashSet<(String, String)>,
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_id: u64,
    faults: Vec<Fault>,
    log: Vec<String>,
    bearer: bool,
    tokens: HashMap<String, bool>,
    token_requests: Vec<String>,
    chunk_min: Option<u64>,
    token_basic: Option<String>,
    no_ranges: bool,
    inflight: usize,
    max_inflight: usize,
}

/// A running fake registry on `127.0.0.1`.
pub struct FakeRegistry {
    pub addr: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
    fn body(mut self, b: Vec<u8>) -> Self {
        self.body = b;
        self
    }
    fn error(status: u16, code: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(
                format!(r#"{{"errors":[{{"code":"{code}","message":"fake says {code}"}}]}}"#)
                    .into_bytes(),
            )
    }
}

impl FakeRegistry {
    /// An open (anonymous) fake registry.
    pub async fn start() -> Self {
        Self::start_inner(false).await
    }

    /// A fake registry requiring bearer tokens from its own `/token`.
    pub async fn start_bearer() -> Self {
        Self::start_inner(true).await
    }

    /// An open fake registry on `[::1]`, or `None` without IPv6 loopback.
    pub async fn start_ipv6() -> Option<Self> {
        match TcpListener::bind("[::1]:0").await {
            Ok(l) => Some(Self::serve_on(l, false)),
            Err(e) => {
                eprintln!("note: no IPv6 loopback ({e}); skipping");
                None
            }
        }
    }

    async fn start_inner(bearer: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve_on(listener, bearer)
    }

    fn serve_on(listener: TcpListener, bearer: bool) -> Self {
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(State {
            bearer,
            ..State::default()
        }));
        let st = Arc::clone(&state);
        let a = addr.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = Arc::clone(&st);
                let a = a.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st, &a).await;
                });
            }
        });
        FakeRegistry { addr, state, task }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    pub fn add_fault(&self, f: Fault) {
        self.st().faults.push(f);
    }

    pub fn fault(&self, method: &'static str, path_contains: &str, times: usize, action: Action) {
        self.add_fault(Fault {
            method,
            path_contains: path_contains.to_owned(),
            times,
            action,
        });
    }

    /// Ask clients to upload in chunks of at least `n` bytes.
    pub fn set_chunk_min(&self, n: u64) {
        self.st().chunk_min = Some(n);
    }

    /// Make `/token` demand this `Authorization: Basic` value.
    pub fn require_token_basic(&self, header: &str) {
        self.st().token_basic = Some(header.to_owned());
    }

    /// The most delayed (`Action::Delay`) requests held at the same time.
    pub fn max_inflight(&self) -> usize {
        self.st().max_inflight
    }

    /// Ignore `Range` on blob downloads (always answer 200 with everything).
    pub fn ignore_ranges(&self) {
        self.st().no_ranges = true;
    }

    /// Invalidate every token issued so far (as if they expired early).
    pub fn revoke_tokens(&self) {
        for v in self.st().tokens.values_mut() {
            *v = false;
        }
    }

    /// "METHOD /path" of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.st().log.clone()
    }

    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        let prefix = format!("{method} ");
        self.st()
            .log
            .iter()
            .filter(|l| l.starts_with(&prefix) && l.contains(path_contains))
            .count()
    }

    /// Query strings of every token request.
    pub fn token_requests(&self) -> Vec<String> {
        self.st().token_requests.clone()
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.st().blobs.contains_key(digest.as_str())
    }

    pub fn has_manifest(&self, repo: &str, reference: &str) -> bool {
        self.st()
            .manifests
            .contains_key(&(repo.to_owned(), reference.to_owned()))
    }

    /// Seed a blob into a repository.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::sha256(bytes);
        let mut st = self.st();
        st.blobs.insert(d.to_string(), bytes.to_vec());
        st.repo_blobs.insert((repo.to_owned(), d.to_string()));
        d
    }

    /// Seed a manifest under a tag (and its digest).
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let d = Digest::sha256(bytes);
        let mut st = self.st();
        let v = (media_type.to_owned(), bytes.to_vec());
        st.manifests
            .insert((repo.to_owned(), tag.to_owned()), v.clone());
        st.manifests.insert((repo.to_owned(), d.to_string()), v);
        d
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > 64 << 10 {
            return Ok(None);
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
    })
}

/// Read a body framed by Content-Length or chunked encoding, stopping after
/// `limit` bytes when given.
async fn read_body(
    sock: &mut TcpStream,
    req: &Request,
    mut pre: Vec<u8>,
    limit: Option<usize>,
) -> std::io::Result<Vec<u8>> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut tmp = vec![0u8; 64 << 10];
    if !chunked {
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let want = limit.map_or(len, |l| l.min(len));
        while pre.len() < want {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            pre.extend_from_slice(&tmp[..n]);
        }
        pre.truncate(want);
        return Ok(pre);
    }
    let mut out = Vec::new();
    loop {
        while !pre.windows(2).any(|w| w == b"\r\n") {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(out);
            }
            pre.extend_from_slice(&tmp[..n]);
        }
        let i = pre.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
        let size_line = String::from_utf8_lossy(&pre[..i]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        pre.drain(..i + 2);
        while pre.len() < size + 2 {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(out);
            }
            pre.extend_from_slice(&tmp[..n]);
        }
        out.extend_from_slice(&pre[..size]);
        pre.drain(..size + 2);
        if size == 0 || limit.is_some_and(|l| out.len() >= l) {
            return Ok(out);
        }
    }
}

async fn serve(sock: TcpStream, state: Arc<Mutex<State>>, addr: &str) -> std::io::Result<()> {
    serve_one(sock, &state, addr).await
}

async fn serve_one(
    mut sock: TcpStream,
    state: &Arc<Mutex<State>>,
    addr: &str,
) -> std::io::Result<()> {
    let Some((head, rest)) = read_head(&mut sock).await? else {
        return Ok(());
    };
    let Some(mut req) = parse_head(&head) else {
        return Ok(());
    };
    let fault = {
        let mut st = state.lock().expect("state");
        let range = req
            .header("range")
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let query = if req.query.is_empty() {
            String::new()
        } else {
            format!("?{}", req.query)
        };
        st.log
            .push(format!("{} {}{query}{range}", req.method, req.path));
        let hit = st
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == req.method && req.path.contains(&f.path_contains));
        hit.map(|f| {
            f.times -= 1;
            f.action.clone()
        })
    };
    if let Some(Action::DropRequest(n)) = fault {
        let _ = read_body(&mut sock, &req, rest, Some(n)).await;
        return Ok(());
    }
    req.body = read_body(&mut sock, &req, rest, None).await?;
    let mut resp = match &fault {
        Some(Action::Status(code, headers)) => {
            let mut r = Response::error(*code, "FAULT");
            r.headers.extend(headers.iter().cloned());
            r
        }
        _ => handle(&req, state, addr),
    };
    let mut cut = None;
    match fault {
        Some(Action::CutBody(n)) => cut = Some(n),
        Some(Action::WrongBody) => resp.body.iter_mut().for_each(|b| *b = !*b),
        Some(Action::Delay(ms)) => {
            // Counted only while the answer is held back: the client cannot
            // have finished these requests, so overlapping ones were truly
            // concurrent on its side.
            {
                let mut st = state.lock().expect("state");
                st.inflight += 1;
                st.max_inflight = st.max_inflight.max(st.inflight);
            }
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            state.lock().expect("state").inflight -= 1;
        }
        _ => {}
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    sock.write_all(out.as_bytes()).await?;
    if req.method != "HEAD" {
        let n = cut.unwrap_or(resp.body.len()).min(resp.body.len());
        sock.write_all(&resp.body[..n]).await?;
    }
    sock.flush().await?;
    let _ = sock.shutdown().await;
    Ok(())
}

fn handle(req: &Request, state: &Arc<Mutex<State>>, addr: &str) -> Response {
    let mut st = state.lock().expect("state");
    if req.path == "/token" {
        let body = String::from_utf8_lossy(&req.body);
        st.token_requests
            .push(format!("{} {}{}", req.method, req.query, body));
        if let Some(want) = &st.token_basic {
            let refresh_ok = body.contains("grant_type=refresh_token")
                && body.contains("refresh_token=good-refresh");
            if req.header("authorization") != Some(want.as_str()) && !refresh_ok {
                return Response::error(401, "DENIED");
            }
        }
        st.next_id += 1;
        let tok = format!("tok-{}", st.next_id);
        st.tokens.insert(tok.clone(), true);
        return Response::new(200)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"access_token":"{tok}","expires_in":300}}"#).into_bytes());
    }
    let Some(rest) = req.path.strip_prefix("/v2/") else {
        return Response::error(404, "NOT_FOUND");
    };
    if st.bearer {
        let ok = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| st.tokens.get(t).copied().unwrap_or(false));
        if !ok {
            return Response::error(401, "UNAUTHORIZED").header(
                "WWW-Authenticate",
                format!(r#"Bearer realm="http://{addr}/token",service="fake-registry""#),
            );
        }
    }
    if rest.is_empty() {
        return Response::new(200).body(b"{}".to_vec());
    }
    if let Some((repo, what)) = rest.split_once("/blobs/uploads") {
        return uploads(&mut st, req, repo, what.trim_start_matches('/'));
    }
    if let Some((repo, digest)) = rest.split_once("/blobs/") {
        if !st
            .repo_blobs
            .contains(&(repo.to_owned(), digest.to_owned()))
        {
            return Response::error(404, "BLOB_UNKNOWN");
        }
        let body = st.blobs.get(digest).cloned().unwrap_or_default();
        let start = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < body.len() && !st.no_ranges);
        if let Some(start) = start {
            let total = body.len();
            return Response::new(206)
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", total - 1),
                )
                .body(body[start..].to_vec());
        }
        return Response::new(200)
            .header("Docker-Content-Digest", digest)
            .body(body);
    }
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        return manifests(&mut st, req, repo, reference);
    }
    Response::error(404, "NOT_FOUND")
}

fn uploads(st: &mut State, req: &Request, repo: &str, id: &str) -> Response {
    match (req.method.as_str(), id) {
        ("POST", "") => {
            if let (Some(d), Some(from)) = (req.query_param("mount"), req.query_param("from"))
                && st.repo_blobs.contains(&(from, d.clone()))
            {
                st.repo_blobs.insert((repo.to_owned(), d.clone()));
                return Response::new(201).header("Location", format!("/v2/{repo}/blobs/{d}"));
            }
            st.next_id += 1;
            let id = format!("up{}", st.next_id);
            st.uploads.insert(id.clone(), (repo.to_owned(), Vec::new()));
            let mut r = Response::new(202).header(
                "Location",
                format!("/v2/{repo}/blobs/uploads/{id}?_state=s{id}"),
            );
            if let Some(n) = st.chunk_min {
                r = r.header("OCI-Chunk-Min-Length", n.to_string());
            }
            r
        }
        ("PATCH", id) => {
            let Some((_, data)) = st.uploads.get_mut(id) else {
                return Response::error(404, "BLOB_UPLOAD_UNKNOWN");
            };
            if let Some(range) = req.header("content-range") {
                let start: usize = range
                    .split('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                if start != data.len() {
                    return Response::error(416, "BLOB_UPLOAD_INVALID");
                }
            }
            data.extend_from_slice(&req.body);
            let end = data.len().saturating_sub(1);
            Response::new(202)
                .header(
                    "Location",
                    format!("/v2/{repo}/blobs/uploads/{id}?_state=p{end}"),
                )
                .header("Range", format!("0-{end}"))
        }
        ("PUT", id) => {
            let Some((_, mut data)) = st.uploads.remove(id) else {
                return Response::error(404, "BLOB_UPLOAD_UNKNOWN");
            };
            data.extend_from_slice(&req.body);
            let Some(want) = req.query_param("digest") else {
                return Response::error(400, "DIGEST_INVALID");
            };
            if Digest::sha256(&data).as_str() != want {
                return Response::error(400, "DIGEST_INVALID");
            }
            st.blobs.insert(want.clone(), data);
            st.repo_blobs.insert((repo.to_owned(), want.clone()));
            Response::new(201)
                .header("Location", format!("/v2/{repo}/blobs/{want}"))
                .header("Docker-Content-Digest", want)
        }
        ("DELETE", id) => {
            st.uploads.remove(id);
            Response::new(204)
        }
        _ => Response::error(405, "UNSUPPORTED"),
    }
}

fn manifests(st: &mut State, req: &Request, repo: &str, reference: &str) -> Response {
    let key = (repo.to_owned(), reference.to_owned());
    match req.method.as_str() {
        "GET" | "HEAD" => match st.manifests.get(&key) {
            Some((mt, bytes)) => Response::new(200)
                .header("Content-Type", mt.clone())
                .header("Docker-Content-Digest", Digest::sha256(bytes).to_string())
                .body(bytes.clone()),
            None => Response::error(404, "MANIFEST_UNKNOWN"),
        },
        "PUT" => {
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
                return Response::error(400, "MANIFEST_INVALID");
            };
            let mut refs: Vec<String> = Vec::new();
            if let Some(d) = doc["config"]["digest"].as_str() {
                refs.push(d.to_owned());
            }
            for arr in ["layers", "manifests"] {
                for d in doc[arr].as_array().into_iter().flatten() {
                    refs.extend(d["digest"].as_str().map(str::to_owned));
                }
            }
            for d in refs {
                let known = st.repo_blobs.contains(&(repo.to_owned(), d.clone()))
                    || st.manifests.contains_key(&(repo.to_owned(), d.clone()));
                if !known {
                    return Response::error(400, "MANIFEST_BLOB_UNKNOWN");
                }
            }
            let mt = req.header("content-type").unwrap_or("").to_owned();
            let digest = Digest::sha256(&req.body).to_string();
            st.manifests.insert(key, (mt.clone(), req.body.clone()));
            st.manifests
                .insert((repo.to_owned(), digest.clone()), (mt, req.body.clone()));
            Response::new(201).header("Docker-Content-Digest", digest)
        }
        _ => Response::error(405, "UNSUPPORTED"),
    }
}
