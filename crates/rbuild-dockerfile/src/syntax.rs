//! The first stage of parsing: bytes to instruction nodes.
//!
//! This layer knows lines, comments, parser directives, continuations,
//! heredoc bodies, flags and how each keyword splits its arguments — and
//! nothing about what the instructions mean. Its output is exactly
//! BuildKit's node tree (checked against BuildKit's own golden files by
//! `tests/conformance.rs`), which is why odd inputs such as unknown
//! keywords or unknown flags are still accepted here: the typed layer
//! (`instructions`) rejects them with a proper error.

use serde::Serialize;

use crate::error::{RawError, Span};
use crate::shell::ShellLexer;

mod args;

use args::{
    extract_flags, parse_health_config, parse_maybe_json, parse_maybe_json_to_list, parse_name_val,
    parse_words, split_whitespace_delimited,
};

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image BuildKit would load; rbuild always
    /// uses its built-in frontend and warns).
    pub syntax: Option<String>,
    /// `# escape=` as written (`\` or a backtick).
    pub escape: Option<char>,
    /// `# check=` (lint configuration), kept verbatim.
    pub check: Option<String>,
}

/// A non-fatal finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// A short stable identifier (BuildKit's rule name where one exists).
    pub rule: &'static str,
    pub message: String,
    pub span: Option<Span>,
}

/// A heredoc attached to an instruction (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`); for COPY/ADD it is
    /// also the name of the inline file.
    pub name: String,
    /// The body, each line with its newline. With `chomp_tabs` the typed
    /// layer has already removed leading tabs.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): the body
    /// must then not be expanded.
    pub expand: bool,
    /// `<<-EOF`: leading tabs are stripped from body lines and terminator.
    pub chomp_tabs: bool,
}

/// One instruction as BuildKit's parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`run`, `RUN`, `Run`…).
    pub keyword: String,
    /// Leading `--flag[=value]` words, quotes and escapes removed.
    pub flags: Vec<String>,
    /// The arguments, split the way this keyword splits them.
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// The instruction text with continuations joined.
    pub original: String,
    /// Heredoc bodies, in order of their markers.
    pub heredocs: Vec<Heredoc>,
    /// Where the instruction is (including heredoc bodies).
    pub span: Span,
    pub(crate) map: LineMap,
    /// Byte ranges of each flag within `original`.
    pub(crate) flag_ranges: Vec<(usize, usize)>,
    /// Byte offset of the arguments within `original`.
    pub(crate) args_offset: usize,
}

impl Node {
    /// BuildKit's `Node.Dump()` format, e.g. `(copy ["--from=a"] "x" "/")`.
    pub fn dump(&self) -> String {
        let mut s = String::from("(");
        s.push_str(&self.dump_inner());
        s.push(')');
        s
    }

    fn dump_inner(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", quoted.join(" ")));
        }
        if let Some(sub) = &self.sub {
            s.push(' ');
            s.push_str(&sub.dump());
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s
    }

    /// The source span of a byte range of `original`.
    pub(crate) fn range_span(&self, start: usize, end: usize) -> Span {
        let (l1, c1) = self.map.position(&self.original, start);
        let (l2, c2) = self.map.position(&self.original, end.max(start));
        Span {
            start_line: l1,
            end_line: l2,
            start_col: c1,
            end_col: c2.max(c1 + 1),
        }
    }

    /// The span of the keyword.
    pub(crate) fn keyword_span(&self) -> Span {
        let off = self.original.len() - self.original.trim_start().len();
        self.range_span(off, off + self.keyword.len())
    }

    /// The span of the arguments (everything after keyword and flags).
    pub(crate) fn args_span(&self) -> Span {
        let end = self.original.trim_end().len().max(self.args_offset);
        self.range_span(self.args_offset, end)
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.sub, self.keyword.eq_ignore_ascii_case("onbuild")) {
            (Some(sub), true) => sub,
            _ => self,
        };
        let k = node.keyword.to_ascii_lowercase();
        matches!(k.as_str(), "run" | "copy" | "add") && !node.json
    }
}

/// Go's `strconv.Quote`, close enough for golden files.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Maps byte offsets of a joined (continued) instruction back to source
/// lines and columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LineMap {
    /// (offset in the joined text, source line, 1-based column of that
    /// offset in the source line)
    segments: Vec<(usize, usize, usize)>,
}

impl LineMap {
    fn position(&self, joined: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(joined.len());
        // Segments are sorted by offset: binary search for the last one
        // starting at or before `offset`.
        let idx = self.segments.partition_point(|s| s.0 <= offset);
        let Some(&(seg_off, line, col)) = idx.checked_sub(1).and_then(|i| self.segments.get(i))
        else {
            return (1, 1);
        };
        let between = joined.get(seg_off..offset).map_or(0, |s| s.chars().count());
        (line, col + between)
    }

    /// The map of a substring starting at `base`.
    fn shifted(&self, joined: &str, base: usize) -> LineMap {
        let (line, col) = self.position(joined, base);
        let mut segments = vec![(0, line, col)];
        segments.extend(
            self.segments
                .iter()
                .filter(|s| s.0 > base)
                .map(|&(o, l, c)| (o - base, l, c)),
        );
        LineMap { segments }
    }
}

/// The whole file at the node level.
#[derive(Debug, Clone)]
pub struct RawDockerfile {
    pub nodes: Vec<Node>,
    pub directives: Directives,
    pub escape: char,
    pub warnings: Vec<Warning>,
}

/// Bytes to nodes. Errors carry positions but no file name yet.
pub(crate) fn parse_nodes(text: &str) -> Result<RawDockerfile, RawError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut dir = DirectiveState {
        escape: '\\',
        done: false,
        found: Directives::default(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    let mut last_line = 0;
    while i < lines.len() {
        let mut raw = trim_newline(lines[i]);
        if i == 0 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        let trimmed = raw.trim_start();
        let lead_cols = raw[..raw.len() - trimmed.len()].chars().count();
        dir.possible_directive(trimmed, i + 1)?;
        let first = if trimmed.starts_with('#') {
            ""
        } else {
            trimmed
        };
        i += 1;
        last_line = i;
        let start_line = i;
        let (line, mut eol) = trim_continuation(first, dir.escape);
        if eol && line.is_empty() {
            continue;
        }
        let mut joined = line.to_string();
        let mut map = LineMap {
            segments: vec![(0, start_line, lead_cols + 1)],
        };
        let mut empty_continuation = false;
        while !eol && i < lines.len() {
            let raw = trim_newline(lines[i]);
            i += 1;
            if raw.trim_start().starts_with('#') {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, e) = trim_continuation(raw, dir.escape);
            map.segments.push((joined.len(), i, 1));
            joined.push_str(cont);
            eol = e;
        }
        let end_col = trim_newline(lines[i - 1]).chars().count() + 1;
        let whole = Span {
            start_line,
            end_line: i,
            start_col: lead_cols + 1,
            end_col,
        };
        if empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                message: "empty continuation line: a blank line inside a continued instruction (will become an error)".into(),
                span: Some(whole),
            });
        }
        let mut node = new_node_from_line(&joined, dir.escape, &map, 0)
            .map_err(|e| e.locate(&joined, &map, whole))?;
        if node.can_contain_heredoc() {
            for mut doc in
                heredocs_from_line(&joined).map_err(|e| e.locate(&joined, &map, whole))?
            {
                let mut terminated = false;
                while i < lines.len() {
                    let body_line = lines[i];
                    i += 1;
                    let mut candidate = trim_newline(body_line);
                    if doc.chomp_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line);
                }
                if !terminated {
                    let span = Span {
                        end_line: i.max(start_line),
                        ..whole
                    };
                    return Err(RawError::new(
                        span,
                        format!("unterminated heredoc `{}`", doc.name),
                    )
                    .with_hint(format!(
                        "end the heredoc with a line containing only `{}`",
                        doc.name
                    )));
                }
                node.heredocs.push(doc);
            }
        }
        let end_col = trim_newline(lines[i - 1]).chars().count() + 1;
        node.span = Span {
            end_line: i,
            end_col,
            ..whole
        };
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(RawError::new(
            Span::point(last_line.max(1), 1),
            "file with no instructions",
        )
        .with_hint("a Dockerfile needs at least a `FROM` instruction"));
    }
    Ok(RawDockerfile {
        nodes,
        escape: dir.escape,
        directives: dir.found,
        warnings,
    })
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// BuildKit's continuation rule: the escape character, optionally followed
/// by blanks, ends the line — unless it is itself escaped (`\\`), except at
/// the very start of the line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before, false)
    } else {
        (line, true)
    }
}

struct DirectiveState {
    escape: char,
    done: bool,
    found: Directives,
}

impl DirectiveState {
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<(), RawError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value, col)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        let span = Span {
            start_line: line_no,
            end_line: line_no,
            start_col: 1,
            end_col: line.chars().count() + 1,
        };
        let seen = match key.as_str() {
            "escape" => self.found.escape.is_some(),
            "syntax" => self.found.syntax.is_some(),
            "check" => self.found.check.is_some(),
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if seen {
            return Err(RawError::new(
                span,
                format!("only one `{key}` parser directive can be used"),
            ));
        }
        match key.as_str() {
            "escape" => {
                let c = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        let span = Span {
                            start_col: col,
                            end_col: col + value.chars().count(),
                            ..span
                        };
                        return Err(
                            RawError::new(span, format!("invalid escape token `{value}`"))
                                .with_hint("the escape character must be `\\` or a backtick"),
                        );
                    }
                };
                self.escape = c;
                self.found.escape = Some(c);
            }
            "syntax" => self.found.syntax = Some(value.to_string()),
            _ => self.found.check = Some(value.to_string()),
        }
        Ok(())
    }
}

/// Matches `#\s*name\s*=\s*value\s*` (ASCII blanks, as Go's `\s`); returns
/// name, value and the value's 1-based column.
fn parse_directive(line: &str) -> Option<(&str, &str, usize)> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_ws);
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let after = rest[name_len..]
        .trim_start_matches(is_ws)
        .strip_prefix('=')?;
    let trimmed = after.trim_matches(is_ws);
    let value = if trimmed.is_empty() {
        // The lazy `(.+?)` still takes one (blank) character.
        let last = after.chars().last()?;
        &after[after.len() - last.len_utf8()..]
    } else {
        trimmed
    };
    let value_off =
        line.len() - after.len() + (after.len() - after.trim_start_matches(is_ws).len());
    let col = line[..value_off.min(line.len())].chars().count() + 1;
    Some((name, value, col))
}

/// An error inside one instruction: message plus an optional byte range of
/// the joined instruction text.
pub(crate) struct NodeError {
    message: String,
    hint: Option<String>,
    range: Option<(usize, usize)>,
}

impl NodeError {
    fn new(message: impl Into<String>) -> NodeError {
        NodeError {
            message: message.into(),
            hint: None,
            range: None,
        }
    }

    fn locate(self, joined: &str, map: &LineMap, whole: Span) -> RawError {
        let span = match self.range {
            Some((s, e)) => {
                let (l1, c1) = map.position(joined, s);
                let (l2, c2) = map.position(joined, e);
                Span {
                    start_line: l1,
                    end_line: l2,
                    start_col: c1,
                    end_col: c2.max(c1 + 1),
                }
            }
            None => whole,
        };
        RawError {
            span,
            message: self.message,
            hint: self.hint,
        }
    }
}

const MAX_ONBUILD_DEPTH: usize = 4;

fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits an instruction into keyword, flags and arguments, and dispatches
/// to the keyword's argument parser.
fn new_node_from_line(
    line: &str,
    escape: char,
    map: &LineMap,
    depth: usize,
) -> Result<Node, NodeError> {
    let lead = line.len() - line.trim_start().len();
    let trimmed = line.trim();
    let kw_len = trimmed.find(is_token_space).unwrap_or(trimmed.len());
    let keyword = &trimmed[..kw_len];
    let after_kw = trimmed[kw_len..].trim_start_matches(is_token_space);
    let rest_off = lead + (trimmed.len() - after_kw.len());
    let (args_rel, flags) = extract_flags(after_kw);
    let args_str = after_kw[args_rel..].trim();
    let args_offset = rest_off
        + args_rel
        + (after_kw[args_rel..].len() - after_kw[args_rel..].trim_start().len());
    let mut node = Node {
        keyword: keyword.to_string(),
        flags: flags.iter().map(|f| f.0.clone()).collect(),
        args: Vec::new(),
        sub: None,
        json: false,
        original: line.to_string(),
        heredocs: Vec::new(),
        span: Span::default(),
        map: map.clone(),
        flag_ranges: flags
            .iter()
            .map(|f| (rest_off + f.1, rest_off + f.2))
            .collect(),
        args_offset,
    };
    let at_args = |e: NodeError| NodeError {
        range: e
            .range
            .or(Some((args_offset, args_offset + args_str.len()))),
        ..e
    };
    match keyword.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            let (args, json) = parse_maybe_json_to_list(args_str).map_err(at_args)?;
            node.args = args;
            node.json = json;
        }
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (args, json) = parse_maybe_json(args_str).map_err(at_args)?;
            node.args = args;
            node.json = json;
        }
        "arg" => node.args = parse_words(args_str, escape),
        "env" | "label" => {
            node.args =
                parse_name_val(args_str, &keyword.to_ascii_uppercase(), escape).map_err(at_args)?
        }
        "expose" | "from" => node.args = split_whitespace_delimited(args_str),
        "healthcheck" => {
            let (args, json) = parse_health_config(args_str).map_err(at_args)?;
            node.args = args;
            node.json = json;
        }
        "maintainer" | "stopsignal" | "user" | "workdir" if !args_str.is_empty() => {
            node.args = vec![args_str.to_string()];
        }
        "onbuild" if !args_str.is_empty() => {
            if depth >= MAX_ONBUILD_DEPTH {
                return Err(NodeError::new("ONBUILD triggers nested too deeply"));
            }
            let sub_map = map.shifted(line, args_offset);
            let sub = new_node_from_line(args_str, escape, &sub_map, depth + 1).map_err(|e| {
                NodeError {
                    range: e.range.map(|(s, e)| (s + args_offset, e + args_offset)),
                    ..e
                }
            })?;
            node.sub = Some(Box::new(sub));
        }
        _ => {}
    }
    Ok(node)
}

/// Finds heredoc markers (`<<EOF`, `<<-"EOF"`, `3<<EOF`) among the words of
/// an instruction, the way BuildKit does: lex the line keeping quotes and
/// escapes; an unlexable line has no heredocs.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, NodeError> {
    let lexer = ShellLexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..ShellLexer::new('\\')
    };
    let Ok(expansion) = lexer.process(line, &|_| None) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in &expansion.words {
        if let Some(doc) = parse_heredoc(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Recognises one heredoc marker word; `Ok(None)` if it is not one.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, NodeError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let plain = ShellLexer {
        skip_unset_env: true,
        ..ShellLexer::new('\\')
    };
    let words = plain
        .process(rest, &|_| None)
        .map_err(|e| NodeError::new(format!("invalid heredoc delimiter `{rest}`: {e}")))?
        .words;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = ShellLexer {
        raw_quotes: true,
        ..plain
    };
    let raw_words = raw
        .process(rest, &|_| None)
        .map_err(|e| NodeError::new(format!("invalid heredoc delimiter `{rest}`: {e}")))?
        .words;
    if raw_words.len() != 1 {
        return Err(NodeError::new(format!(
            "internal lexing of heredoc produced inconsistent results: `{rest}`"
        )));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp_tabs: chomp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  ", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
    }

    #[test]
    fn directive_lines() {
        assert_eq!(
            parse_directive("# escape=`").map(|d| (d.0, d.1)),
            Some(("escape", "`"))
        );
        assert_eq!(
            parse_directive("#syntax = docker/dockerfile:1 ").map(|d| (d.0, d.1)),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(parse_directive("# not a directive"), None);
        assert_eq!(parse_directive("# 1a=b"), None);
    }

    #[test]
    fn flags_are_split_off() {
        let (off, flags) = extract_flags("--from=a --chown=\"x y\" src dst");
        assert_eq!(&"--from=a --chown=\"x y\" src dst"[off..], "src dst");
        let names: Vec<_> = flags.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["--from=a", "--chown=x y"]);
        // Backslashes take the next character, in a word and in a quote; a
        // trailing one is dropped.
        let (_, flags) = extract_flags(r#"--a=x\ y --b="q\"r" --c=z\"#);
        let names: Vec<_> = flags.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["--a=x y", "--b=q\"r", "--c=z"]);
        let (_, flags) = extract_flags(r#"--d="open\"#);
        assert_eq!(flags.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["--d=open"]);
    }

    #[test]
    fn heredoc_markers() {
        let h = parse_heredoc("<<-'EOF'").ok().flatten().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp_tabs),
            ("EOF", false, true)
        );
        let h = parse_heredoc("<<EOF").ok().flatten().unwrap();
        assert!(h.expand);
        assert!(parse_heredoc("<<").ok().flatten().is_none());
        assert!(parse_heredoc("a<<b").ok().flatten().is_none());
    }
}
