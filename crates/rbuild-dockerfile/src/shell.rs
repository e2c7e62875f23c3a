//! Shell-word expansion with BuildKit's semantics.
//!
//! BuildKit does not run a shell to expand `$VAR` in `ENV`, `COPY`, `FROM`...:
//! it has its own small lexer, and Dockerfiles in the wild depend on its
//! exact behaviour (quotes removed, `\` escapes, `${v:-w}` and friends, no
//! command substitution, unset variables expand to nothing, words split on
//! whitespace only where the value came from a variable). This module is a
//! re-implementation of that behaviour, checked against BuildKit's own test
//! tables (see `tests/conformance.rs`).
//!
//! Supported forms: `$v ${v} ${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?m} ${v?m}
//! ${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}`, single and double
//! quotes, and the escape character (`\` or the `# escape=` one).

use std::collections::BTreeSet;

use crate::shell_pattern::{self, PatternError};

/// Why a word could not be expanded. Every message names the word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("failed to expand `{word}`: syntax error: missing `}}`")]
    MissingBrace { word: String },
    #[error("failed to expand `{word}`: syntax error: bad substitution")]
    BadSubstitution { word: String },
    #[error(
        "failed to expand `{word}`: unexpected end of statement while looking for matching {what}"
    )]
    Unterminated { word: String, what: &'static str },
    #[error("failed to expand `{word}`: unsupported modifier `{modifier}` in substitution")]
    UnsupportedModifier { word: String, modifier: String },
    #[error("failed to expand `{word}`: {name}: {message}")]
    Required {
        word: String,
        name: String,
        message: String,
    },
    #[error("failed to expand `{word}`: invalid pattern `{pattern}` in substitution: {source}")]
    InvalidPattern {
        word: String,
        pattern: String,
        #[source]
        source: PatternError,
    },
    #[error("failed to expand `{word}`: substitutions nested deeper than {limit} levels")]
    TooDeep { word: String, limit: usize },
    #[error("failed to expand `{word}`: a substitution's result is longer than {limit} bytes")]
    TooLong { word: String, limit: usize },
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, quotes removed, spaces kept.
    pub value: String,
    /// The word split into fields (whitespace coming from variable values
    /// splits; quoted or escaped whitespace does not).
    pub words: Vec<String>,
    /// Variables that were referenced and found.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced and not found.
    pub unmatched: BTreeSet<String>,
}

/// Options of the lexer. The defaults are what instructions use; the other
/// switches exist because the parser itself uses the lexer to find heredoc
/// markers (keeping quotes and escapes, leaving unset variables alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellLexer {
    /// The escape character: `\` or, with `# escape=\``, a backtick.
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as they were written.
    pub skip_unset_env: bool,
}

/// Deepest `${…${…}…}` / quote nesting we follow before giving up; hostile
/// input must not be able to overflow the stack.
pub const MAX_NESTING: usize = 64;

/// Longest result of one `${v/p/r}` substitution: far above any real word
/// (a CA bundle in a build arg is a few hundred kB), and low enough that
/// nested `${v///r${v///r…}}` (an empty pattern puts `r` between every
/// character of `v`, so each level multiplies the length) fails in
/// milliseconds instead of eating the machine.
pub const MAX_EXPANSION: usize = 8 << 20;

impl ShellLexer {
    /// A lexer with BuildKit's default behaviour for the given escape char.
    pub fn new(escape: char) -> ShellLexer {
        ShellLexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word`, looking variables up with `lookup`.
    pub fn process(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expansion, ExpandError> {
        let mut st = State {
            opts: self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            word,
            depth: 0,
        };
        let (value, words) = st.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion {
            value,
            words,
            matched: st.matched,
            unmatched: st.unmatched,
        })
    }
}

/// Expands one word (no field splitting), as BuildKit does for `ENV` values,
/// `COPY` paths, `WORKDIR`, `USER`, `LABEL`, `FROM`…
pub fn expand_word(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Ok(ShellLexer::new(escape).process(word, lookup)?.value)
}

/// Expands a word and splits it into fields, as BuildKit does where one
/// Dockerfile word may become several (e.g. heredoc markers, `EXPOSE`).
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Ok(ShellLexer::new(escape).process(word, lookup)?.words)
}

/// Expands a word and reports which variables it used and which it
/// referenced without finding: BuildKit feeds the first set into cache keys
/// and uses the second for "undefined variable" warnings.
pub fn expand_word_with_matches(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Expansion, ExpandError> {
    ShellLexer::new(escape).process(word, lookup)
}

/// The names of all variables `word` refers to (in any branch of a
/// `${v:-…}`), without needing their values. Unparsable words refer to none.
pub fn referenced_variables(word: &str, escape: char) -> BTreeSet<String> {
    match ShellLexer::new(escape).process(word, &|_| None) {
        Ok(e) => e.unmatched.into_iter().chain(e.matched).collect(),
        Err(_) => BTreeSet::new(),
    }
}

struct State<'a> {
    opts: &'a ShellLexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    word: &'a str,
    depth: usize,
}

/// Field-splitting accumulator: whitespace from variable values separates
/// words, literal (quoted/escaped) characters never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn word(&self) -> String {
        self.word.to_string()
    }

    fn enter(&mut self) -> Result<(), ExpandError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ExpandError::TooDeep {
                word: self.word(),
                limit: MAX_NESTING,
            });
        }
        Ok(())
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = (self.lookup)(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    /// Processes characters until `stop` (consumed) or the end of input.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        self.enter()?;
        let r = self.process_stop_on_inner(stop, raw_escapes);
        self.depth -= 1;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar(raw_escapes)?;
                result.push_str(&tmp);
                words.add_string(&tmp);
                continue;
            }
            if !self.opts.skip_process_quotes && (ch == '\'' || ch == '"') {
                let tmp = if ch == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote(raw_escapes)?
                };
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
                continue;
            }
            self.pos += 1;
            if ch == self.opts.escape {
                if raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(escaped) => {
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    }
                }
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            let what = match stop {
                '}' => "`}`",
                '/' => "`/`",
                _ => "delimiter",
            };
            return Err(ExpandError::Unterminated {
                word: self.word(),
                what,
            });
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next().unwrap_or('\'');
        if self.opts.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated {
                        word: self.word(),
                        what: "single-quote",
                    });
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        self.enter()?;
        let mut result = String::new();
        let open = self.next().unwrap_or('"');
        if self.opts.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated {
                        word: self.word(),
                        what: "double-quote",
                    });
                }
                Some('"') => {
                    self.pos += 1;
                    if self.opts.raw_quotes {
                        result.push('"');
                    }
                    self.depth -= 1;
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar(raw_escapes)?;
                    result.push_str(&v);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.opts.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.opts.escape => {
                                self.pos += 1;
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self, _outer_raw: bool) -> Result<String, ExpandError> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { word: self.word() }),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution { word: self.word() });
            }
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(ExpandError::MissingBrace { word: self.word() });
        };
        let mut modifier = ch.to_string();
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            modifier.push(c);
                        }
                        None => return Err(ExpandError::MissingBrace { word: self.word() }),
                    }
                }
                self.modifier(&name, ch, &modifier, null_is_unset)
            }
            '/' => self.substitute(&name),
            _ => Err(ExpandError::UnsupportedModifier {
                word: self.word(),
                modifier,
            }),
        }
    }

    fn stop_on_brace(&mut self, raw: bool) -> Result<String, ExpandError> {
        match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => Ok(w),
            Err(ExpandError::Unterminated { .. }) if self.peek().is_none() => {
                Err(ExpandError::MissingBrace { word: self.word() })
            }
            Err(e) => Err(e),
        }
    }

    fn modifier(
        &mut self,
        name: &str,
        ch: char,
        modifier: &str,
        null_is_unset: bool,
    ) -> Result<String, ExpandError> {
        let raw = ch == '#' || ch == '%';
        // The word is consumed (and checked) before the modifier is judged.
        let word = self.stop_on_brace(raw)?;
        let value = self.get_env(name);
        if self.opts.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
            return Err(ExpandError::UnsupportedModifier {
                word: self.word(),
                modifier: modifier.to_string(),
            });
        }
        let empty = value
            .as_deref()
            .is_none_or(|v| null_is_unset && v.is_empty());
        match ch {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => {
                if value.is_none() || empty {
                    let default = if value.is_none() {
                        "is not allowed to be unset"
                    } else {
                        "is not allowed to be empty"
                    };
                    let message = if word.is_empty() {
                        default.to_string()
                    } else {
                        word
                    };
                    return Err(ExpandError::Required {
                        word: self.word(),
                        name: name.to_string(),
                        message,
                    });
                }
                Ok(value.unwrap_or_default())
            }
            _ => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                let compiled = shell_pattern::Pattern::compile(&pattern).map_err(|source| {
                    ExpandError::InvalidPattern {
                        word: self.word(),
                        pattern: pattern.clone(),
                        source,
                    }
                })?;
                Ok(if ch == '%' {
                    compiled.trim_suffix(&value, greedy)
                } else {
                    compiled.trim_prefix(&value, greedy)
                })
            }
        }
    }

    fn substitute(&mut self, name: &str) -> Result<String, ExpandError> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.pos += 1;
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(ExpandError::Unterminated { .. }) if self.peek().is_none() => {
                return Err(ExpandError::Unterminated {
                    word: self.word(),
                    what: "`/` in ${}",
                });
            }
            Err(e) => return Err(e),
        };
        let replacement = self.stop_on_brace(true)?;
        let value = self.get_env(name);
        let Some(value) = value else {
            if self.opts.skip_unset_env {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return self.replace(String::new(), &pattern, &replacement, replace_all);
        };
        self.replace(value, &pattern, &replacement, replace_all)
    }

    fn replace(
        &self,
        value: String,
        pattern: &str,
        replacement: &str,
        all: bool,
    ) -> Result<String, ExpandError> {
        let compiled = shell_pattern::Pattern::compile(pattern).map_err(|source| {
            ExpandError::InvalidPattern {
                word: self.word(),
                pattern: pattern.to_string(),
                source,
            }
        })?;
        compiled.replace(&value, replacement, all, MAX_EXPANSION).ok_or_else(|| ExpandError::TooLong {
            word: self.word(),
            limit: MAX_EXPANSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "SHELL" => Some("bash".into()),
            "NULL" => Some(String::new()),
            "FILE" => Some("/a/b.tar.gz".into()),
            _ => None,
        }
    }

    #[test]
    fn basic_forms() {
        assert_eq!(expand_word("he${PWD}x", &env, '\\').unwrap(), "he/homex");
        assert_eq!(expand_word("${FILE##*/}", &env, '\\').unwrap(), "b.tar.gz");
        assert_eq!(expand_word("${FILE%%.*}", &env, '\\').unwrap(), "/a/b");
        assert_eq!(expand_word("${FILE%.*}", &env, '\\').unwrap(), "/a/b.tar");
        assert_eq!(
            expand_word("${FILE//a/X}", &env, '\\').unwrap(),
            "/X/b.tXr.gz"
        );
        assert!(expand_word("${}", &env, '\\').is_err());
    }

    #[test]
    fn exponential_substitution_is_an_error_not_a_hang() {
        let lookup = |name: &str| (name == "v").then(|| "0123456789".to_string());
        let word = format!("{}x{}", "${v///ab".repeat(12), "}".repeat(12));
        assert!(matches!(
            expand_word(&word, &lookup, '\\'),
            Err(ExpandError::TooLong { limit: MAX_EXPANSION, .. })
        ));
        let ok = format!("{}x{}", "${v///a".repeat(3), "}".repeat(3));
        assert!(expand_word(&ok, &lookup, '\\').is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let w = "${a:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(matches!(
            expand_word(&w, &env, '\\'),
            Err(ExpandError::TooDeep { .. })
        ));
        let q = "\"${a:-".repeat(10_000);
        assert!(expand_word(&q, &env, '\\').is_err());
    }

    #[test]
    fn referenced_variables_sees_all_branches() {
        let v = referenced_variables("${A:-$B}/${C:+x}$D", '\\');
        assert_eq!(v.into_iter().collect::<Vec<_>>(), ["A", "B", "C", "D"]);
    }
}
