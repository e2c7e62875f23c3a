//! `.dockerignore` patterns with Docker's semantics.
//!
//! Reading (Docker's `ignorefile.ReadAll`): a line starting with `#` in the
//! first column is a comment; lines are trimmed; blank lines are skipped;
//! a leading `!` makes an exception; patterns are cleaned like Go's
//! `filepath.Clean` and a leading `/` is dropped. A lone `!` is an error.
//!
//! Matching (Docker's `patternmatcher`): `*` and `?` never cross `/`,
//! `[…]` classes, `\` escapes, `**` matches any number of directories; a
//! pattern matching a directory matches everything below it; patterns are
//! applied in order and the last one that matches a path (or one of its
//! parents) decides. Docker's shortcuts are kept, including the one where
//! `**name` (no slash) matches any path *ending* in `name`.
//!
//! One deliberate difference: Docker turns `\x` into the regex escape `\x`,
//! so `\d` would mean "a digit" (and `\q` an invalid pattern); here `\x`
//! always means the literal character `x`, as in Go's `filepath.Match`.
//!
//! Each pattern is compiled once to a small NFA (or a plain string test)
//! and a path is matched in one pass, parents included: the pattern matches
//! a parent exactly when its automaton accepts at a `/` boundary.

use serde::Serialize;

/// A bad `.dockerignore` (or `--exclude`) pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore line {line}: illegal exclusion pattern `!`")]
    LoneBang { line: usize },
    #[error(".dockerignore line {line}: syntax error in pattern `{pattern}`: {reason}")]
    BadPattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
}

/// One cleaned pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnorePattern {
    /// The cleaned pattern without its `!`.
    pub pattern: String,
    /// `!pattern`: re-include what earlier patterns excluded.
    pub exception: bool,
    /// 1-based line in the file (0 for patterns not read from a file).
    pub line: usize,
}

impl IgnorePattern {
    /// A pattern given directly (e.g. `COPY --exclude`), cleaned the same way.
    pub fn new(text: &str) -> Result<IgnorePattern, IgnoreError> {
        parse_line(text, 0, false).and_then(|p| {
            p.ok_or(IgnoreError::BadPattern {
                line: 0,
                pattern: text.into(),
                reason: "empty pattern",
            })
        })
    }
}

/// The file names to look for, in order of precedence, for a Dockerfile
/// named `dockerfile_name`: `<name>.dockerignore` next to the Dockerfile
/// wins over the context's `.dockerignore`.
pub fn dockerignore_names(dockerfile_name: &str) -> [String; 2] {
    let base = dockerfile_name
        .rsplit('/')
        .next()
        .unwrap_or(dockerfile_name);
    [format!("{base}.dockerignore"), ".dockerignore".to_string()]
}

/// Parses the text of a `.dockerignore`.
pub fn parse_dockerignore(text: &str) -> Result<Vec<IgnorePattern>, IgnoreError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(p) = parse_line(line, i + 1, true)? {
            out.push(p);
        }
    }
    Ok(out)
}

fn parse_line(
    line: &str,
    line_no: usize,
    comments: bool,
) -> Result<Option<IgnorePattern>, IgnoreError> {
    if comments && line.starts_with('#') {
        return Ok(None);
    }
    let mut pattern = line.trim();
    if pattern.is_empty() {
        return Ok(None);
    }
    let exception = pattern.starts_with('!');
    if exception {
        pattern = pattern[1..].trim();
        if pattern.is_empty() {
            return Err(IgnoreError::LoneBang { line: line_no });
        }
    }
    let mut cleaned = clean_path(pattern);
    if cleaned.len() > 1 && cleaned.starts_with('/') {
        cleaned.remove(0);
    }
    validate(&cleaned).map_err(|reason| IgnoreError::BadPattern {
        line: line_no,
        pattern: line.trim().to_string(),
        reason,
    })?;
    Ok(Some(IgnorePattern {
        pattern: cleaned,
        exception,
        line: line_no,
    }))
}

/// Go's `path.Clean`: collapse `//`, drop `.`, resolve `..` lexically.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The checks Go's `filepath.Match` does on a pattern.
fn validate(p: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("trailing backslash");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut items = 0;
                loop {
                    match chars.get(i) {
                        None => return Err("unclosed character class"),
                        Some(']') if items > 0 => {
                            i += 1;
                            break;
                        }
                        Some(']' | '-') => return Err("bad character class"),
                        Some('\\') => {
                            if i + 1 >= chars.len() {
                                return Err("unclosed character class");
                            }
                            i += 2;
                        }
                        Some(_) => i += 1,
                    }
                    if chars.get(i) == Some(&'-') {
                        match chars.get(i + 1) {
                            None | Some(']') | Some('-') => {
                                return Err("bad range in character class");
                            }
                            Some('\\') => i += 3,
                            Some(_) => i += 2,
                        }
                    }
                    items += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Edge {
    Char(char),
    NotSlash,
    AnyButNewline,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Edge {
    fn accepts(&self, c: char) -> bool {
        match self {
            Edge::Char(x) => *x == c,
            Edge::NotSlash => c != '/',
            Edge::AnyButNewline => c != '\n',
            Edge::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    edges: Vec<(Edge, usize)>,
    eps: Vec<usize>,
}

/// A compiled pattern automaton; the last state accepts.
#[derive(Debug, Clone)]
struct Nfa {
    states: Vec<State>,
    /// For automata of at most 64 states: the epsilon closure of each
    /// state as a bitmask, so a step is a few mask operations.
    closure: Option<Vec<u64>>,
    /// The longest run of literal characters every match must contain:
    /// a cheap substring test rejects most paths before simulation.
    required: Option<String>,
}

/// A small bitset over NFA states.
#[derive(Clone, PartialEq, Eq)]
struct Set(Vec<u64>);

impl Set {
    fn new(n: usize) -> Set {
        Set(vec![0; n.div_ceil(64).max(1)])
    }
    fn insert(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let fresh = self.0[w] & b == 0;
        self.0[w] |= b;
        fresh
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1u64 << (i % 64)) != 0
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn clear(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }
}

impl Nfa {
    fn new(states: Vec<State>, required: Option<String>) -> Nfa {
        let mut nfa = Nfa {
            states,
            closure: None,
            required: required.filter(|r| r.chars().count() >= 2),
        };
        if nfa.states.len() <= 64 {
            let mut masks = Vec::with_capacity(nfa.states.len());
            let mut stack = Vec::new();
            for i in 0..nfa.states.len() {
                let mut set = Set::new(nfa.states.len());
                set.insert(i);
                nfa.close(&mut set, &mut stack);
                masks.push(set.0[0]);
            }
            nfa.closure = Some(masks);
        }
        nfa
    }

    /// Bitmask simulation (at most 64 states); same contract as `matches`.
    fn matches_small(&self, closure: &[u64], path: &str) -> bool {
        let accept = 1u64 << self.accept();
        let mut cur = closure[0];
        for c in path.chars() {
            if c == '/' && cur & accept != 0 {
                return true;
            }
            let mut next = 0u64;
            let mut bits = cur;
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for (edge, t) in &self.states[i].edges {
                    if edge.accepts(c) {
                        next |= closure[*t];
                    }
                }
            }
            if next == 0 {
                return false;
            }
            cur = next;
        }
        cur & accept != 0
    }

    fn accept(&self) -> usize {
        self.states.len() - 1
    }

    fn close(&self, set: &mut Set, stack: &mut Vec<usize>) {
        stack.clear();
        stack.extend((0..self.states.len()).filter(|&i| set.contains(i)));
        while let Some(s) = stack.pop() {
            for &t in &self.states[s].eps {
                if set.insert(t) {
                    stack.push(t);
                }
            }
        }
    }

    fn start(&self) -> Set {
        let mut s = Set::new(self.states.len());
        s.insert(0);
        self.close(&mut s, &mut Vec::new());
        s
    }

    fn step(&self, cur: &Set, c: char, next: &mut Set, stack: &mut Vec<usize>) {
        next.clear();
        for (i, st) in self.states.iter().enumerate() {
            if cur.contains(i) {
                for (edge, t) in &st.edges {
                    if edge.accepts(c) {
                        next.insert(*t);
                    }
                }
            }
        }
        self.close(next, stack);
    }

    /// Does the pattern match `path` or one of its parents?
    fn matches(&self, path: &str) -> bool {
        if let Some(req) = &self.required
            && !path.contains(req.as_str())
        {
            return false;
        }
        if let Some(closure) = &self.closure {
            return self.matches_small(closure, path);
        }
        match self.scan(path.chars()) {
            Ok(end) => end.contains(self.accept()),
            Err(answer) => answer,
        }
    }

    /// Could the pattern match something strictly below `dir`?
    fn may_match_below(&self, dir: &str) -> bool {
        // Still alive after `dir/`: something below may match.
        match self.scan(dir.chars().chain(std::iter::once('/'))) {
            Ok(_) => true,
            Err(answer) => answer,
        }
    }

    /// Runs the automaton over `chars`. `Err(true)`: it accepted just
    /// before a `/` (a parent directory matched); `Err(false)`: no state is
    /// left (nothing with this prefix can match); else the final states.
    fn scan(&self, chars: impl Iterator<Item = char>) -> Result<Set, bool> {
        let mut cur = self.start();
        let mut next = Set::new(self.states.len());
        let mut stack = Vec::new();
        for c in chars {
            if c == '/' && cur.contains(self.accept()) {
                return Err(true);
            }
            self.step(&cur, c, &mut next, &mut stack);
            if next.is_empty() {
                return Err(false);
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Ok(cur)
    }
}

/// A `[…]` class starting after the `[` at `*i`; leaves `*i` after `]`.
fn parse_class(chars: &[char], i: &mut usize) -> Edge {
    let negated = chars.get(*i) == Some(&'^');
    if negated {
        *i += 1;
    }
    let mut ranges = Vec::new();
    let one = |i: &mut usize, c: char| {
        if c == '\\' {
            let escaped = chars.get(*i).copied().unwrap_or('\\');
            *i += 1;
            escaped
        } else {
            c
        }
    };
    while let Some(&c) = chars.get(*i) {
        *i += 1;
        if c == ']' && !ranges.is_empty() {
            break;
        }
        let lo = one(i, c);
        let mut hi = lo;
        if chars.get(*i) == Some(&'-') && chars.get(*i + 1).is_some_and(|&c| c != ']') {
            let h = chars[*i + 1];
            *i += 2;
            hi = one(i, h);
        }
        ranges.push((lo, hi));
    }
    Edge::Class { negated, ranges }
}

/// How Docker classifies a pattern (its fast paths are part of the
/// semantics, e.g. `**/x` is a plain suffix test).
#[derive(Debug, Clone)]
enum Kind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Nfa(Nfa),
}

fn compile(pattern: &str) -> Kind {
    #[derive(PartialEq, Clone, Copy)]
    enum Ty {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut states: Vec<State> = vec![State::default()];
    let mut ty = Ty::Exact;
    let mut i = 0;
    let mut iteration = 0;
    let mut run = String::new();
    let mut required = String::new();
    // Adds a consuming edge from the current last state to a new one.
    fn push_edge(states: &mut Vec<State>, e: Edge) {
        let next = states.len();
        if let Some(last) = states.last_mut() {
            last.edges.push((e, next));
        }
        states.push(State::default());
    }
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        let literal = match ch {
            '*' | '?' | '[' => None,
            '\\' => Some(chars.get(i).copied().unwrap_or('\\')),
            c => Some(c),
        };
        match literal {
            Some(c) => run.push(c),
            None => {
                if run.chars().count() > required.chars().count() {
                    required = std::mem::take(&mut run);
                }
                run.clear();
            }
        }
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                let cur = states.len() - 1;
                if i >= chars.len() {
                    if ty == Ty::Exact {
                        ty = Ty::Prefix;
                    } else {
                        ty = Ty::Regexp;
                    }
                    // `.*` (the prefix form matches the same strings)
                    states[cur].edges.push((Edge::AnyButNewline, cur));
                    states[cur].eps.push(cur + 1);
                    states.push(State::default());
                } else {
                    // `(.*/)?`
                    ty = Ty::Regexp;
                    let inner = cur + 1;
                    let exit = cur + 2;
                    states[cur].eps.extend([inner, exit]);
                    states.push(State {
                        edges: vec![(Edge::AnyButNewline, inner), (Edge::Char('/'), exit)],
                        eps: vec![],
                    });
                    states.push(State::default());
                }
                if iteration == 0 {
                    ty = Ty::Suffix;
                }
            }
            '*' => {
                ty = Ty::Regexp;
                let cur = states.len() - 1;
                states[cur].edges.push((Edge::NotSlash, cur));
                states[cur].eps.push(cur + 1);
                states.push(State::default());
            }
            '?' => {
                ty = Ty::Regexp;
                push_edge(&mut states, Edge::NotSlash);
            }
            '\\' => {
                if let Some(&n) = chars.get(i) {
                    i += 1;
                    ty = Ty::Regexp;
                    push_edge(&mut states, Edge::Char(n));
                } else {
                    push_edge(&mut states, Edge::Char('\\'));
                }
            }
            '[' => {
                ty = Ty::Regexp;
                let class = parse_class(&chars, &mut i);
                push_edge(&mut states, class);
            }
            c => push_edge(&mut states, Edge::Char(c)),
        }
        iteration += 1;
    }
    match ty {
        Ty::Exact => Kind::Exact(pattern.to_string()),
        Ty::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Ty::Suffix => Kind::Suffix(pattern[2..].to_string()),
        Ty::Regexp => {
            if run.chars().count() > required.chars().count() {
                required = run;
            }
            Kind::Nfa(Nfa::new(states, Some(required)))
        }
    }
}

#[derive(Debug, Clone)]
struct Compiled {
    kind: Kind,
    /// The same pattern as an automaton, for directory pruning.
    nfa: Option<Nfa>,
    exception: bool,
    pattern: String,
}

impl Compiled {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                // Docker: `HasSuffix(p, "/foo") || p == "foo"`, for the path
                // and each parent.
                let one = |p: &str| {
                    p.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|bare| p == bare)
                };
                one(path) || path.match_indices('/').any(|(q, _)| one(&path[..q]))
            }
            Kind::Nfa(n) => n.matches(path),
        }
    }

    fn may_match_below(&self, dir: &str) -> bool {
        match (&self.kind, &self.nfa) {
            (Kind::Suffix(_), _) => true,
            (_, Some(n)) => n.may_match_below(dir),
            (Kind::Nfa(n), None) => n.may_match_below(dir),
            _ => true,
        }
    }
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Compiled>,
    has_exceptions: bool,
}

impl IgnoreMatcher {
    /// Compiles patterns (from [`parse_dockerignore`] or [`IgnorePattern::new`]).
    pub fn new(patterns: Vec<IgnorePattern>) -> IgnoreMatcher {
        let has_exceptions = patterns.iter().any(|p| p.exception);
        let patterns = patterns
            .into_iter()
            .map(|p| {
                let kind = compile(&p.pattern);
                let nfa = match &kind {
                    Kind::Nfa(_) => None,
                    _ => Some(nfa_of_literal_kind(&kind)),
                };
                Compiled {
                    kind,
                    nfa,
                    exception: p.exception,
                    pattern: p.pattern,
                }
            })
            .collect();
        IgnoreMatcher {
            patterns,
            has_exceptions,
        }
    }

    /// Compiles patterns given one per string (e.g. `COPY --exclude`
    /// values), cleaned like `.dockerignore` lines; `#` is not a comment here.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<IgnoreMatcher, IgnoreError> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for p in patterns {
            if let Some(p) = parse_line(p.as_ref(), 0, false)? {
                parsed.push(p);
            }
        }
        Ok(IgnoreMatcher::new(parsed))
    }

    /// Parses and compiles `.dockerignore` text.
    pub fn from_dockerignore(text: &str) -> Result<IgnoreMatcher, IgnoreError> {
        Ok(IgnoreMatcher::new(parse_dockerignore(text)?))
    }

    /// No patterns: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, cleaned, in order (`!` stripped; see `exception`).
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.patterns
            .iter()
            .map(|p| (p.pattern.as_str(), p.exception))
    }

    /// Is `path` (relative to the context, `/`-separated) excluded? A path
    /// is excluded when the last pattern matching it or one of its parent
    /// directories is not an exception. `is_dir` does not change the
    /// answer (Docker matches directories and files alike); it is accepted
    /// so walkers can pass what they know.
    pub fn matches(&self, path: &str, _is_dir: bool) -> bool {
        let path = normalize(path);
        if path.is_empty() || path == "." {
            // Docker never excludes the context root itself.
            return false;
        }
        let mut matched = false;
        for p in &self.patterns {
            // Only patterns that could flip the current answer matter.
            if p.exception != matched {
                continue;
            }
            if p.matches(&path) {
                matched = !p.exception;
            }
        }
        matched
    }

    /// For a context walker: can the whole directory `dir` be skipped?
    /// True when `dir` is excluded and no exception pattern could
    /// re-include anything below it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        if !self.matches(dir, true) {
            return false;
        }
        if !self.has_exceptions {
            return true;
        }
        let dir = normalize(dir);
        !self
            .patterns
            .iter()
            .any(|p| p.exception && p.may_match_below(&dir))
    }
}

/// An automaton for the string-test kinds, used only to decide whether
/// a directory may contain matches.
fn nfa_of_literal_kind(kind: &Kind) -> Nfa {
    let literal = |s: &str, trailing_any: bool| {
        let mut states: Vec<State> = Vec::new();
        for (i, c) in s.chars().enumerate() {
            states.push(State {
                edges: vec![(Edge::Char(c), i + 1)],
                eps: vec![],
            });
        }
        let mut last = State::default();
        if trailing_any {
            last.edges.push((Edge::AnyButNewline, states.len()));
        }
        states.push(last);
        Nfa::new(states, None)
    };
    match kind {
        Kind::Exact(s) => literal(s, false),
        Kind::Prefix(s) => literal(s, true),
        // Suffix patterns may match anywhere; callers treat them as such.
        Kind::Suffix(_) | Kind::Nfa(_) => literal("", true),
    }
}

fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    if trimmed.contains("//")
        || trimmed.contains("/./")
        || trimmed.ends_with('/')
        || trimmed.contains("/../")
    {
        std::borrow::Cow::Owned(clean_path(trimmed))
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bitmask fast path and the literal prefilter agree with the
    /// plain set simulation.
    #[test]
    fn fast_paths_agree_with_plain_simulation() {
        let patterns = [
            "**/*.log",
            "a**/*.txt",
            "*/temp*",
            "src/**/*.rs",
            "a[b-d]?/**/x",
            "\\*a*",
            "**/a/**/b",
            "x/**",
            "*.*.*",
        ];
        let paths = [
            "a.log",
            "x/y/a.log",
            "ab/c.txt",
            "s/temp1",
            "src/a/b.rs",
            "ac1/q/x",
            "*abc",
            "k/a/z/b/c",
            "x/y",
            "a.b.c",
            "",
            "/",
            "a//b",
        ];
        for p in patterns {
            let Kind::Nfa(nfa) = compile(p) else { continue };
            let plain = Nfa {
                states: nfa.states.clone(),
                closure: None,
                required: None,
            };
            for path in paths {
                assert_eq!(nfa.matches(path), plain.matches(path), "{p} vs {path}");
            }
        }
    }

    /// Exact (whole-string) match, the way Docker's anchored regex works.
    fn exact(nfa: &Nfa, s: &str) -> bool {
        let mut cur = nfa.start();
        let mut next = Set::new(nfa.states.len());
        let mut stack = Vec::new();
        for c in s.chars() {
            nfa.step(&cur, c, &mut next, &mut stack);
            std::mem::swap(&mut cur, &mut next);
        }
        cur.contains(nfa.accept())
    }

    proptest::proptest! {
        /// One pass with acceptance at `/` boundaries equals Docker's
        /// "match the path, else each parent" loop.
        #[test]
        fn boundary_matching_equals_parent_loop(pattern in "[ab*?/]{1,7}", path in "[ab/]{0,10}") {
            let Kind::Nfa(nfa) = compile(&pattern) else { return Ok(()) };
            let mut expected = exact(&nfa, &path);
            if !expected {
                let parts: Vec<&str> = path.split('/').collect();
                for i in 1..parts.len() {
                    expected |= exact(&nfa, &parts[..i].join("/"));
                }
            }
            proptest::prop_assert_eq!(nfa.matches(&path), expected, "pattern {} path {}", pattern, path);
        }
    }

    #[test]
    fn required_literal_is_extracted() {
        let Kind::Nfa(n) = compile("**/*.log") else {
            panic!()
        };
        assert_eq!(n.required.as_deref(), Some(".log"));
        let Kind::Nfa(n) = compile("a\\*bc*d") else {
            panic!()
        };
        assert_eq!(n.required.as_deref(), Some("a*bc"));
    }
}
