//! Source positions and the parse error type.
//!
//! Every error the parser reports names `file:line:col`, quotes the offending
//! source line with a caret under the bad part and, where we can guess what
//! the author meant, adds a `hint:`. Rendering happens in `Display`, so the
//! CLI prints errors verbatim and tests can pin the exact text.

use std::fmt;

use serde::Serialize;

/// A range in the Dockerfile source. Lines are 1-based; columns are 1-based
/// character (not byte) offsets; `end_col` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
    pub start_col: usize,
    pub end_col: usize,
}

impl Span {
    /// A span covering a single point (used when we only know a line).
    pub fn point(line: usize, col: usize) -> Span {
        Span {
            start_line: line,
            end_line: line,
            start_col: col,
            end_col: col + 1,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start_line, self.start_col)
    }
}

/// A Dockerfile that could not be parsed.
///
/// `Display` renders the compiler-style report:
///
/// ```text
/// Dockerfile:3:1: unknown instruction `FORM`
///   3 | FORM alpine
///     | ^^^^
/// hint: did you mean `FROM`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file_name: String,
    pub span: Span,
    pub message: String,
    /// The source line `span.start_line` refers to (without its newline).
    pub source_line: String,
    pub hint: Option<String>,
}

impl std::error::Error for ParseError {}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file_name, self.span.start_line, self.span.start_col, self.message
        )?;
        if self.span.start_line > 0 {
            let gutter = self.span.start_line.to_string();
            let pad = " ".repeat(gutter.len());
            // Tabs are shown as single spaces so the caret lines up.
            let shown: Vec<char> = self
                .source_line
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let start = (self.span.start_col.max(1) - 1).min(shown.len());
            let end = if self.span.end_line == self.span.start_line {
                (self.span.end_col.max(1) - 1).min(shown.len())
            } else {
                shown.len()
            };
            // Long lines are cut to a window around the span.
            let from = start.saturating_sub(40);
            let to = shown.len().min(from + MAX_SHOWN);
            let prefix = if from > 0 { "…" } else { "" };
            let suffix = if to < shown.len() { "…" } else { "" };
            let text: String = shown[from..to].iter().collect();
            write!(f, "\n {gutter} | {prefix}{text}{suffix}")?;
            let caret_start = start - from + prefix.chars().count();
            let carets = end.min(to).saturating_sub(start).max(1);
            write!(
                f,
                "\n {pad} | {}{}",
                " ".repeat(caret_start),
                "^".repeat(carets)
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Longest source excerpt shown under an error, in characters.
const MAX_SHOWN: usize = 160;

/// The error as collected inside the parser, before the file name and the
/// source line are attached.
#[derive(Debug, Clone)]
pub(crate) struct RawError {
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

impl RawError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> RawError {
        RawError {
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> RawError {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn into_parse_error(self, file_name: &str, lines: &[&str]) -> ParseError {
        let source_line = self
            .span
            .start_line
            .checked_sub(1)
            .and_then(|i| lines.get(i))
            .map(|l| l.trim_end_matches(['\r', '\n']).to_string())
            .unwrap_or_default();
        ParseError {
            file_name: file_name.to_string(),
            span: self.span,
            message: self.message,
            source_line,
            hint: self.hint,
        }
    }
}

/// Edit distance counting a swap of two neighbours as one edit (optimal
/// string alignment), for "did you mean" hints: `FORM` is one typo from `FROM`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `word` (case-insensitive), if it is close enough
/// to be a plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    if lower.chars().count() > 64 {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&lower, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (lower.chars().count() / 3).clamp(1, 3);
    (d <= limit).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_finds_typos() {
        assert_eq!(suggest("FORM", &["FROM", "RUN"]), Some("FROM"));
        assert_eq!(suggest("cpy", &["COPY", "RUN"]), Some("COPY"));
        assert_eq!(suggest("xyzzy", &["COPY", "RUN"]), None);
    }

    #[test]
    fn long_lines_are_windowed() {
        let line = format!("RUN {} --bad", "x".repeat(1000));
        let e = ParseError {
            file_name: "Dockerfile".into(),
            span: Span {
                start_line: 1,
                end_line: 1,
                start_col: 1006,
                end_col: 1011,
            },
            message: "m".into(),
            source_line: line,
            hint: None,
        };
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].chars().count() < 200, "{text}");
        let caret_col = lines[2].find('^').unwrap();
        let shown = lines[1].chars().skip(caret_col).take(5).collect::<String>();
        assert_eq!(shown, "--bad", "{text}");
    }

    #[test]
    fn renders_caret_under_span() {
        let e = ParseError {
            file_name: "Dockerfile".into(),
            span: Span {
                start_line: 3,
                end_line: 3,
                start_col: 1,
                end_col: 5,
            },
            message: "unknown instruction `FORM`".into(),
            source_line: "FORM alpine".into(),
            hint: Some("did you mean `FROM`?".into()),
        };
        assert_eq!(
            e.to_string(),
            "Dockerfile:3:1: unknown instruction `FORM`\n 3 | FORM alpine\n   | ^^^^\nhint: did you mean `FROM`?"
        );
    }
}
