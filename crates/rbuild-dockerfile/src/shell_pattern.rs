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

    /// All end positions `e` such that `s[start..e]` matches the whole
    /// pattern, as a bitmap over positions `start..=s.len()`.
    fn match_ends(&self, s: &[char], start: usize) -> Vec<bool> {
        let n = self.toks.len();
        // states[k] = pattern prefix of length k matched so far.
        let mut states = vec![false; n + 1];
        states[0] = true;
        self.close(&mut states);
        let mut ends = vec![false; s.len() - start + 1];
        ends[0] = states[n];
        for (off, &c) in s[start..].iter().enumerate() {
            let mut next = vec![false; n + 1];
            let mut any = false;
            for k in 0..n {
                if !states[k] {
                    continue;
                }
                match self.toks[k] {
                    Tok::Lit(l) if l == c => {
                        next[k + 1] = true;
                        any = true;
                    }
                    Tok::Any if c != '\n' => {
                        next[k + 1] = true;
                        any = true;
                    }
                    Tok::Star if c != '\n' => {
                        next[k] = true;
                        any = true;
                    }
                    _ => {}
                }
            }
            if !any {
                break;
            }
            self.close(&mut next);
            ends[off + 1] = next[n];
            states = next;
        }
        ends
    }

    /// A star may match nothing: propagate states across stars.
    fn close(&self, states: &mut [bool]) {
        for k in 0..self.toks.len() {
            if states[k] && self.toks[k] == Tok::Star {
                states[k + 1] = true;
            }
        }
    }

    /// Longest (greedy) or shortest match of the pattern at `start`.
    fn match_at(&self, s: &[char], start: usize, greedy: bool) -> Option<usize> {
        let ends = self.match_ends(s, start);
        let found = if greedy {
            ends.iter().rposition(|&e| e)
        } else {
            ends.iter().position(|&e| e)
        };
        found.map(|len| start + len)
    }

    /// `${v#p}` / `${v##p}`: removes the shortest/longest matching prefix.
    pub(crate) fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        match self.match_at(&s, 0, greedy) {
            Some(end) => s[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${v%p}` / `${v%%p}`: removes the shortest/longest matching suffix.
    pub(crate) fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let starts = 0..=s.len();
        let ok = |st: &usize| self.match_ends(&s, *st).last().copied().unwrap_or(false);
        let found = if greedy {
            starts.clone().find(ok)
        } else {
            starts.rev().find(ok)
        };
        match found {
            Some(st) => s[..st].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${v/p/r}` and `${v//p/r}`: leftmost-longest replacement, once or
    /// for every non-overlapping match (empty matches right after a match
    /// are skipped, as in Go's `ReplaceAllString`).
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let s: Vec<char> = value.chars().collect();
        let find_from = |from: usize| {
            (from..=s.len()).find_map(|st| self.match_at(&s, st, true).map(|e| (st, e)))
        };
        if !all {
            return match find_from(0) {
                Some((a, b)) => s[..a]
                    .iter()
                    .chain(replacement.chars().collect::<Vec<_>>().iter())
                    .chain(s[b..].iter())
                    .collect(),
                None => value.to_string(),
            };
        }
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= s.len() {
            let Some((a, b)) = find_from(search) else {
                break;
            };
            out.extend(&s[last_end..a]);
            if b > last_end || a == 0 {
                out.push_str(replacement);
            }
            last_end = b;
            search = b.max(search + 1);
        }
        out.extend(&s[last_end..]);
        out
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
        assert_eq!(p("o").replace("foo", "0", false), "f0o");
        assert_eq!(p("o").replace("foo", "0", true), "f00");
        assert_eq!(p("").replace("ab", "-", true), "-a-b-");
        assert_eq!(p("x*").replace("abc", "-", true), "abc");
        assert_eq!(p("b*").replace("abbc", "-", true), "a-");
        assert_eq!(p("b?").replace("abbcbd", "-", true), "a-c-");
        assert_eq!(p("*").replace("", "r", false), "r");
    }

    #[test]
    fn bad_escape() {
        assert!(Pattern::compile("\\a").is_err());
        assert!(Pattern::compile("a\\").is_err());
    }
}
