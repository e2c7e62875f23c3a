//! The tiny glob language of `${v#p}`, `${v%p}` and `${v/p/r}`.
//!
//! BuildKit turns these patterns into Go regular expressions: `*` is any
//! run of characters, `?` any one character, `\*` `\?` `\\` are literals and
//! `\}` `\/` drop the backslash; no bracket expressions. Like Go's `.`, the
//! wildcards do not match a newline. We match directly (no regex engine): a
//! pattern is a list of tokens and matching is a set-of-positions
//! simulation, linear in pattern × input.

/// A bad pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid escape `\\{0}`")]
    InvalidEscape(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// A compiled substitution pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    pub(crate) fn compile(pattern: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.get(i) {
                    Some('}' | '/') => {}
                    Some(&n @ ('*' | '?' | '\\')) => {
                        toks.push(Tok::Lit(n));
                        i += 1;
                    }
                    Some(n) => return Err(PatternError::InvalidEscape(n.to_string())),
                    None => return Err(PatternError::InvalidEscape(String::new())),
                },
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern { toks })
    }

    /// Does token `k` accept character `c`?
    fn accepts(&self, k: usize, c: char) -> bool {
        match self.toks[k] {
            Tok::Lit(l) => l == c,
            Tok::Any | Tok::Star => c != '\n',
        }
    }

    /// A star may match nothing: propagate states across stars.
    fn close(&self, states: &mut [bool]) {
        for k in 0..self.toks.len() {
            if states[k] && self.toks[k] == Tok::Star {
                states[k + 1] = true;
            }
        }
    }

    /// One step of the automaton over `c`; returns whether any state lives.
    fn step(&self, cur: &[bool], c: char, next: &mut [bool]) -> bool {
        next.iter_mut().for_each(|x| *x = false);
        let mut any = false;
        for (k, live) in cur.iter().enumerate().take(self.toks.len()) {
            if *live && self.accepts(k, c) {
                let to = if self.toks[k] == Tok::Star { k } else { k + 1 };
                next[to] = true;
                any = true;
            }
        }
        self.close(next);
        any
    }

    /// Longest (greedy) or shortest match anchored at `start`: its end.
    /// Linear in the input after `start`.
    fn match_at(&self, s: &[char], start: usize, greedy: bool) -> Option<usize> {
        let n = self.toks.len();
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        cur[0] = true;
        self.close(&mut cur);
        let mut best = cur[n].then_some(start);
        if best.is_some() && !greedy {
            return best;
        }
        for (off, &c) in s[start..].iter().enumerate() {
            if !self.step(&cur, c, &mut next) {
                break;
            }
            std::mem::swap(&mut cur, &mut next);
            if cur[n] {
                best = Some(start + off + 1);
                if !greedy {
                    break;
                }
            }
        }
        best
    }

    /// The leftmost match starting at or after `from`, longest among the
    /// leftmost (what Go's regexp returns for these greedy patterns). One
    /// pass: threads carry their start; per state the smallest start wins,
    /// since everything after is the same for both.
    fn find(&self, s: &[char], from: usize) -> Option<(usize, usize)> {
        let n = self.toks.len();
        let mut cur: Vec<Option<usize>> = vec![None; n + 1];
        let mut next: Vec<Option<usize>> = vec![None; n + 1];
        let mut best: Option<(usize, usize)> = None;
        let keep_min = |slot: &mut Option<usize>, v: usize| {
            if slot.is_none_or(|x| v < x) {
                *slot = Some(v);
            }
        };
        let close = |states: &mut Vec<Option<usize>>| {
            for k in 0..n {
                if let (Some(st), Tok::Star) = (states[k], self.toks[k]) {
                    keep_min(&mut states[k + 1], st);
                }
            }
        };
        let mut i = from;
        loop {
            if best.is_none() {
                keep_min(&mut cur[0], i);
                close(&mut cur);
            }
            if let Some(st) = cur[n]
                && best.is_none_or(|(bs, be)| st < bs || (st == bs && i > be))
            {
                best = Some((st, i));
            }
            if let Some((bs, _)) = best {
                // Threads that started later can no longer win.
                cur.iter_mut().for_each(|x| {
                    if x.is_some_and(|v| v > bs) {
                        *x = None;
                    }
                });
            }
            if i >= s.len() || (best.is_some() && cur.iter().all(Option::is_none)) {
                break;
            }
            let c = s[i];
            next.iter_mut().for_each(|x| *x = None);
            for (k, slot) in cur.iter().enumerate().take(n) {
                if let Some(st) = *slot
                    && self.accepts(k, c)
                {
                    let to = if self.toks[k] == Tok::Star { k } else { k + 1 };
                    keep_min(&mut next[to], st);
                }
            }
            close(&mut next);
            std::mem::swap(&mut cur, &mut next);
            i += 1;
        }
        best
    }

    /// `${v#p}` / `${v##p}`: removes the shortest/longest matching prefix.
    pub(crate) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        match self.match_at(&s, 0, greedy) {
            Some(end) => s[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${v%p}` / `${v%%p}`: removes the shortest/longest matching suffix,
    /// by matching the reversed pattern against the reversed value.
    pub(crate) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed = Pattern {
            toks: self.toks.iter().rev().copied().collect(),
        };
        let s: Vec<char> = value.chars().rev().collect();
        match reversed.match_at(&s, 0, greedy) {
            Some(len) => s[len..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// `${v/p/r}` and `${v//p/r}`: leftmost-longest replacement, once or
    /// for every non-overlapping match (empty matches right after a match
    /// are skipped, as in Go's `ReplaceAllString`). `None` when the result
    /// would be longer than `limit` bytes: an empty pattern puts the
    /// replacement between every character, so nested substitutions grow
    /// exponentially.
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool, limit: usize) -> Option<String> {
        let s: Vec<char> = value.chars().collect();
        if !all {
            let out = match self.find(&s, 0) {
                Some((a, b)) => {
                    let mut out: String = s[..a].iter().collect();
                    out.push_str(replacement);
                    out.extend(&s[b..]);
                    out
                }
                None => value.to_string(),
            };
            return (out.len() <= limit).then_some(out);
        }
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= s.len() {
            let Some((a, b)) = self.find(&s, search) else {
                break;
            };
            out.extend(&s[last_end..a]);
            if b > last_end || a == 0 {
                out.push_str(replacement);
            }
            if out.len() > limit {
                return None;
            }
            last_end = b;
            search = b.max(search + 1);
        }
        out.extend(&s[last_end..]);
        (out.len() <= limit).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::compile(s).unwrap()
    }

    #[test]
    fn prefix_and_suffix() {
        assert_eq!(p("*/").trim_prefix("a/b/c", false), "b/c");
        assert_eq!(p("*/").trim_prefix("a/b/c", true), "c");
        assert_eq!(p("/*").trim_suffix("a/b/c", false), "a/b");
        assert_eq!(p("/*").trim_suffix("a/b/c", true), "a");
        assert_eq!(p("x").trim_prefix("abc", true), "abc");
        assert_eq!(p("a?c").trim_prefix("abcd", false), "d");
        assert_eq!(p("\\*").trim_prefix("*x", false), "x");
    }

    #[test]
    fn replacement() {
        assert_eq!(p("o").replace("foo", "0", false, usize::MAX).unwrap(), "f0o");
        assert_eq!(p("o").replace("foo", "0", true, usize::MAX).unwrap(), "f00");
        assert_eq!(p("").replace("ab", "-", true, usize::MAX).unwrap(), "-a-b-");
        assert_eq!(p("x*").replace("abc", "-", true, usize::MAX).unwrap(), "abc");
        assert_eq!(p("b*").replace("abbc", "-", true, usize::MAX).unwrap(), "a-");
        assert_eq!(p("b?").replace("abbcbd", "-", true, usize::MAX).unwrap(), "a-c-");
        assert_eq!(p("*").replace("", "r", false, usize::MAX).unwrap(), "r");
    }

    proptest::proptest! {
        /// The one-pass search and the reversed suffix match agree with
        /// brute force over every start position.
        #[test]
        fn linear_matching_equals_brute_force(pat in "[ab*?]{0,5}", value in "[ab\n]{0,8}") {
            let p = Pattern::compile(&pat).unwrap();
            let s: Vec<char> = value.chars().collect();
            let brute_find = |from: usize| (from..=s.len()).find_map(|st| p.match_at(&s, st, true).map(|e| (st, e)));
            for from in 0..=s.len() {
                proptest::prop_assert_eq!(p.find(&s, from), brute_find(from), "find {:?} in {:?} from {}", pat, value, from);
            }
            for greedy in [false, true] {
                let starts: Vec<usize> = (0..=s.len()).filter(|&st| {
                    let mut q = p.clone();
                    q.toks.push(Tok::Lit('\u{0}'));
                    let mut t = s.clone();
                    t.push('\u{0}');
                    q.match_at(&t, st, true) == Some(t.len())
                }).collect();
                let chosen = if greedy { starts.first() } else { starts.last() };
                let expected: String = match chosen { Some(&st) => s[..st].iter().collect(), None => value.clone() };
                proptest::prop_assert_eq!(p.trim_suffix(&value, greedy), expected, "suffix {:?} of {:?}", pat, value);
            }
        }
    }

    #[test]
    fn bad_escape() {
        assert!(Pattern::compile("\\a").is_err());
        assert!(Pattern::compile("a\\").is_err());
    }
}
