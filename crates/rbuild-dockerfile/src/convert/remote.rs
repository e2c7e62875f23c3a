//! Remote ADD sources: the download a URL names, and URLs with their
//! credentials removed for everything that is shown or stored (vertex
//! names, history).

use rbuild_graph::{Credentials, GitSource, HttpSource};

/// The name BuildKit gives a download whose URL path has no base name.
const UNNAMED: &str = "__unnamed__";

/// The download of `ADD <url>`: the URL without credentials, the
/// credentials apart, the file name from the URL path (never from the
/// server's reply), and the `--checksum` when given.
pub(super) fn http_source(raw: &str, checksum: Option<String>) -> Result<HttpSource, String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("invalid URL `{}`: {e}", redact_urls(raw)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("unsupported URL scheme in `{}`", redact_urls(raw)));
    }
    let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| Credentials {
        user: percent_decode(url.username()),
        password: url.password().map(percent_decode),
    });
    // Infallible for http(s) URLs, which always have a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let filename = base_name(&percent_decode(url.path()));
    if let Some(c) = &checksum {
        validate_checksum(c)?;
    }
    Ok(HttpSource { url: url.to_string(), checksum, filename, credentials })
}

/// The checkout of `ADD <repository>`: the remote without credentials (an
/// `https://user:password@` remote keeps them apart) and the fragment's
/// reference and subdirectory, checked so none can be taken for an option
/// or leave the checkout.
pub(super) fn git_source(
    remote: &str,
    reference: Option<String>,
    subdir: Option<String>,
    keep_git_dir: bool,
) -> Result<GitSource, String> {
    let shown = redact_urls(remote);
    if remote.starts_with('-') || remote.chars().any(char::is_control) {
        return Err(format!("invalid git remote `{shown}`"));
    }
    let mut clean = remote.to_string();
    let mut credentials = None;
    if let Ok(mut url) = url::Url::parse(remote)
        && matches!(url.scheme(), "http" | "https")
        && (!url.username().is_empty() || url.password().is_some())
    {
        credentials = Some(Credentials { user: percent_decode(url.username()), password: url.password().map(percent_decode) });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        clean = url.to_string();
    }
    if let Some(r) = &reference
        && (r.starts_with('-') || r.chars().any(|c| c.is_control() || c.is_whitespace()) || r.contains(".."))
    {
        return Err(format!("invalid git reference `{r}` in `{shown}`"));
    }
    let subdir = match subdir {
        None => None,
        Some(d) => {
            let parts: Vec<&str> = d.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
            if parts.contains(&"..") || d.contains('\0') {
                return Err(format!("invalid subdirectory `{d}` in `{shown}`"));
            }
            (!parts.is_empty()).then(|| parts.join("/"))
        }
    };
    Ok(GitSource { remote: clean, reference, subdir, keep_git_dir, credentials })
}

/// The `--chown` of a `--link` copy, which is made on an empty filesystem
/// where no user or group name can be looked up: numeric ids, and `root`
/// as 0 (BuildKit accepts the same and rejects other names).
pub(super) fn link_chown(spec: &str) -> Result<String, String> {
    let ids: Result<Vec<String>, String> = spec
        .split(':')
        .map(|part| match part {
            "root" => Ok("0".to_string()),
            p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Ok(p.to_string()),
            p => Err(format!(
                "--chown=`{spec}` with --link: `{p}` is a name, but a --link copy cannot look up names (use numeric ids)"
            )),
        })
        .collect();
    Ok(ids?.join(":"))
}

/// `sha256:` and 64 hex digits.
fn validate_checksum(c: &str) -> Result<(), String> {
    let hex = c
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported checksum `{c}` (expected `sha256:<64 hex digits>`)"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("invalid checksum `{c}` (expected `sha256:<64 hex digits>`)"));
    }
    Ok(())
}

/// The last element of a decoded URL path, as Go's `path.Base`, but never
/// `.`, `..`, empty or anything that is not a plain name.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let base = trimmed.rsplit('/').next().unwrap_or("");
    if base.is_empty() || base == "." || base == ".." || base.contains('\0') {
        UNNAMED.to_string()
    } else {
        base.to_string()
    }
}

/// Decodes `%XX` escapes; malformed escapes stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with the `user:password@` of every `scheme://` URL in it removed.
pub(super) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => rest = &tail[at + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_and_names_are_plain() {
        let s = http_source("https://me:s%40cret@example.com/dl/tool.tar.gz?x=1", None).unwrap();
        assert_eq!(s.url, "https://example.com/dl/tool.tar.gz?x=1");
        assert_eq!(s.filename, "tool.tar.gz");
        let c = s.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("me", Some("s@cret")));
        assert_eq!(http_source("http://h/", None).unwrap().filename, "__unnamed__");
        assert_eq!(http_source("http://h/a/..", None).unwrap().filename, "__unnamed__");
        assert_eq!(http_source("http://h/a/%2E%2E", None).unwrap().filename, "__unnamed__");
        assert_eq!(http_source("http://h/a/x%2Fy", None).unwrap().filename, "y");
        assert_eq!(http_source("http://h/dir/", None).unwrap().filename, "dir");
        assert!(http_source("http://h/f", Some("md5:abc".into())).is_err());
        assert!(http_source("http://h/f", Some(format!("sha256:{}", "a".repeat(64)))).is_ok());
        let shown = format!("{:?}", http_source("http://user:hunter2@h/f", None).unwrap());
        assert!(!shown.contains("hunter2") && !shown.contains("user"), "{shown}");
    }

    #[test]
    fn link_chown_takes_ids_and_root_only() {
        assert_eq!(link_chown("1000:2000").unwrap(), "1000:2000");
        assert_eq!(link_chown("root").unwrap(), "0");
        assert_eq!(link_chown("root:5").unwrap(), "0:5");
        assert!(link_chown("app").unwrap_err().contains("`app`"));
        assert!(link_chown("1000:staff").is_err());
    }

    #[test]
    fn git_sources_are_checked() {
        let g = git_source("https://u:pw@h/r.git", Some("v1".into()), Some("/a/./b/".into()), true).unwrap();
        assert_eq!((g.remote.as_str(), g.subdir.as_deref()), ("https://h/r.git", Some("a/b")));
        assert_eq!(g.credentials.unwrap().password.as_deref(), Some("pw"));
        assert_eq!(git_source("git@github.com:o/r.git", None, None, false).unwrap().remote, "git@github.com:o/r.git");
        assert!(git_source("https://h/r.git", Some("--upload-pack=x".into()), None, false).is_err());
        assert!(git_source("https://h/r.git", None, Some("a/../../x".into()), false).is_err());
        assert!(git_source("-oProxyCommand=x", None, None, false).is_err());
    }

    #[test]
    fn redaction_removes_userinfo_only() {
        assert_eq!(
            redact_urls("ADD https://u:p@h.example/f http://h2/g?a=b@c /dst/"),
            "ADD https://h.example/f http://h2/g?a=b@c /dst/"
        );
        assert_eq!(redact_urls("no urls here"), "no urls here");
        assert_eq!(redact_urls("x://@"), "x://");
    }
}
