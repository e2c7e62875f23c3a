//! Path patterns: Go's `filepath.Match` syntax for `COPY` source wildcards,
//! and the `**` component matching of `COPY --parents` sources.
//! (`--exclude` and context-ignore patterns use `rbuild-dockerfile`'s
//! `.dockerignore` matcher; see `crate::select::Filter`.)
//!
//! Why our own: BuildKit's semantics are specific (a `*` never crosses `/`,
//! `[^…]` negates, `\` escapes, a malformed class is an error rather than a
//! literal), and both matchers must stay linear on hostile patterns — the
//! component matcher is a single-backtrack scan and the `**` matcher is a
//! dynamic programme over (pattern, path) components.

/// Errors from pattern compilation.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// Unclosed `[`, a trailing `\`, an empty range, …
    #[error("invalid pattern `{pattern}`: syntax error")]
    BadPattern { pattern: String },
}

/// Whether `name` contains an unescaped wildcard character (`*`, `?`, `[`).
pub fn has_wildcard(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Go `filepath.Match`: does the whole of `name` match `pattern`?
///
/// `*` matches any run of non-`/` characters, `?` one non-`/` character,
/// `[a-z]`/`[^a-z]` a class, `\c` the literal `c`.
pub fn match_path(pattern: &str, name: &str) -> Result<bool, PatternError> {
    validate(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_chars(&p, &n, pattern)
}

/// Check the whole pattern's syntax up front, so that an error is reported
/// even when matching would stop early (Go reports it lazily; we prefer a
/// consistent answer).
fn validate(pattern: &str) -> Result<(), PatternError> {
    let p: Vec<char> = pattern.chars().collect();
    let bad = || PatternError::BadPattern {
        pattern: pattern.to_string(),
    };
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad());
                }
                i += 2;
            }
            '[' => {
                let (_, next) = parse_class(&p, i, None).ok_or_else(bad)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Match one pattern element at `p[i]` against `c`; returns whether it
/// matched and the index after the element. `None` means a syntax error.
fn match_one(p: &[char], i: usize, c: char) -> Option<(bool, usize)> {
    match p[i] {
        '?' => Some((c != '/', i + 1)),
        '[' => parse_class(p, i, Some(c)),
        '\\' => p.get(i + 1).map(|&e| (e == c, i + 2)),
        lit => Some((lit == c, i + 1)),
    }
}

/// Parse a `[...]` class starting at `p[start] == '['`. With `c`, also
/// report whether `c` is in the class. Returns (matched, index after `]`).
fn parse_class(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return None;
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    let ok = match c {
        Some(c) => c != '/' && matched != negated,
        None => false,
    };
    Some((ok, i))
}

fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        '\\' => p.get(i + 1).map(|&c| (c, i + 2)),
        '-' | ']' => None,
        c => Some((c, i + 1)),
    }
}

/// Single-backtrack wildcard scan: on a mismatch, let the most recent `*`
/// absorb one more character (never a `/`). Linear in practice, no recursion.
fn match_chars(p: &[char], n: &[char], pattern: &str) -> Result<bool, PatternError> {
    let bad = || PatternError::BadPattern {
        pattern: pattern.to_string(),
    };
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, name index)
    loop {
        if pi < p.len() && p[pi] == '*' {
            while pi < p.len() && p[pi] == '*' {
                pi += 1;
            }
            star = Some((pi, ni));
            continue;
        }
        if ni == n.len() && pi == p.len() {
            return Ok(true);
        }
        if ni < n.len() && pi < p.len() {
            let (ok, next) = match_one(p, pi, n[ni]).ok_or_else(bad)?;
            if ok {
                pi = next;
                ni += 1;
                continue;
            }
        }
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => return Ok(false),
        }
    }
}

/// `--parents` wildcard matching, where a `**` component matches any number
/// of path components (zero included). Returns whether `path` matches the
/// whole pattern, and whether a path *below* it still could (so a walker
/// knows whether to enter a directory).
pub(crate) fn glob_match(pat: &[String], path: &[&str]) -> (bool, bool) {
    let (m, n) = (pat.len(), path.len());
    let mut dp = vec![vec![false; n + 1]; m + 1];
    dp[0][0] = true;
    for i in 1..=m {
        let is_glob = pat[i - 1] == "**";
        for j in 0..=n {
            dp[i][j] = if is_glob {
                dp[i - 1][j] || (j > 0 && dp[i][j - 1])
            } else {
                j > 0 && dp[i - 1][j - 1] && match_path(&pat[i - 1], path[j - 1]).unwrap_or(false)
            };
        }
    }
    let full = dp[m][n];
    let below = (0..m).any(|i| dp[i][n]) || (m > 0 && pat[m - 1] == "**" && dp[m][n]);
    (full, below)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("*x", "xxx", true),
            ("a?", "a/", false),
            ("**", "ab", true),
            ("**", "a/b", false),
            ("*.txt", "notes.txt", true),
            ("*.txt", ".txt", true),
            ("file?.txt", "file1.txt", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(match_path(p, n).unwrap(), *want, "match({p:?}, {n:?})");
        }
    }

    #[test]
    fn go_match_errors() {
        for p in ["[", "[^", "[^bc", "a[", "a\\", "[a-]", "[]", "[x-a]", "*["] {
            assert!(match_path(p, "a").is_err(), "pattern {p:?} should be bad");
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let p = "*a".repeat(200) + "b";
        let n = "a".repeat(5000);
        assert!(!match_path(&p, &n).unwrap());
    }

    #[test]
    fn doublestar_table() {
        let cases: &[(&str, &str, bool, bool)] = &[
            ("src/**/*.txt", "src/a.txt", true, true),
            ("src/**/*.txt", "src/x/y/c.txt", true, true),
            ("src/**/*.txt", "src/x", false, true),
            ("src/**/*.txt", "other", false, false),
            ("src/*/a", "src/x", false, true),
            ("src/*/a", "src/x/a", true, false),
            ("src/*/a", "src/x/b", false, false),
            ("**", "anything/at/all", true, true),
        ];
        for (p, path, full, below) in cases {
            let pat: Vec<String> = p.split('/').map(String::from).collect();
            let comps: Vec<&str> = path.split('/').collect();
            assert_eq!(glob_match(&pat, &comps), (*full, *below), "{p} vs {path}");
        }
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcard("*.txt"));
        assert!(has_wildcard("a/[bc]"));
        assert!(!has_wildcard("a\\*b"));
        assert!(!has_wildcard("plain/name"));
    }
}
