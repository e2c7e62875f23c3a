//! rbuild-dockerfile: the Dockerfile language, with BuildKit's semantics.
//!
//! Pure code, no I/O: bytes in, typed data out. The layers, in order:
//!
//! 1. [`parse_nodes`] (module [`syntax`]): lines, `# syntax/escape/check`
//!    directives, continuations, comments, BOM, CRLF, heredoc bodies, flags
//!    and per-keyword argument splitting. Output is exactly BuildKit's node
//!    tree; it is checked against BuildKit's own golden files.
//! 2. [`parse`]: typed [`Instruction`]s grouped into [`Stage`]s, flags
//!    validated, errors with `file:line:col`, the source line, a caret and
//!    a `hint:` ([`ParseError`]), lint [`Warning`]s.
//! 3. Expansion ([`expand_word`], [`expand_words`], [`ShellLexer`]): BuildKit's
//!    shell-word lexer, called by the conversion with the right variables.
//! 4. [`ignore`]: `.dockerignore` matching; [`stages`]: FROM expansion,
//!    stage references, target selection and build order.
//!
//! # What the conversion must expand
//!
//! Nothing in the AST is expanded. BuildKit expands these fields when it
//! converts a stage, with the stage's environment: the image's ENV, then
//! ARGs declared so far in the stage (build-arg value, else default), ENV
//! winning over ARG. Use `expand_word` (one word, quotes removed) unless
//! the table says otherwise; the escape character is [`Dockerfile::escape`].
//!
//! | Instruction | Expanded (with stage env) | Not expanded |
//! |---|---|---|
//! | `FROM` | `base` and `platform`, with *global* ARGs + automatic platform ARGs only (see [`stages`]) | |
//! | `RUN` | every `--mount` value (use [`Run::resolve_mounts`]) | the command (the shell expands it at run time), `--network`, `--security` |
//! | `CMD` / `ENTRYPOINT` / `SHELL` | | everything |
//! | `HEALTHCHECK` | | everything (durations are parsed here) |
//! | `ENV` / `LABEL` | key and value of each [`KeyValue`] (always: this also removes quotes) | |
//! | `ARG` | name and default of each [`ArgDecl`] | |
//! | `COPY` / `ADD` | each source, `dest`, `--chown`, `--chmod`, `--from`, each `--exclude`, `--checksum`; heredoc content when `expand` (with quote processing off: `ShellLexer { skip_process_quotes: true, .. }`) | `--link`, `--parents`, `--keep-git-dir`, `--unpack` (parsed here) |
//! | `WORKDIR` / `USER` / `STOPSIGNAL` | the value | |
//! | `EXPOSE` | each port spec with `expand_words` (field splitting), then [`parse_port_spec`] on each word | |
//! | `VOLUME` | each path | |
//! | `ONBUILD` | | the expression (stored verbatim in the image) |
//! | `MAINTAINER` | | the value |
//!
//! Flags that BuildKit treats as constants are parsed here: `--link`,
//! `--parents`, `--keep-git-dir`, `--unpack`, `--network`, `--security`,
//! HEALTHCHECK durations and retries. `RUN --mount` values are validated
//! here when they contain no `$` ([`MountSpec::needs_expansion`] otherwise)
//! and always re-parsed with expansion by [`Run::resolve_mounts`].
//!
//! # API at a glance
//!
//! ```
//! use rbuild_dockerfile::{parse, expand_word, InstructionKind};
//!
//! let df = parse(b"FROM alpine\nENV GREETING=\"hello world\"\n", "Dockerfile").unwrap();
//! let InstructionKind::Env(kvs) = &df.stages[0].instructions[0].kind else { unreachable!() };
//! let value = expand_word(&kvs[0].value, &|_| None, df.escape).unwrap();
//! assert_eq!(value, "hello world");
//! ```
//!
//! - [`parse`] → [`Dockerfile`] { `directives`, `escape`, `global_args`,
//!   `stages`, `warnings`, `check` }; [`parse_nodes`] → BuildKit's node tree;
//!   [`parse_onbuild_trigger`] for triggers found in base images.
//! - [`Run::script`] tells how BuildKit runs a RUN with heredocs;
//!   [`Run::resolve_mounts`] expands and completes its mounts.
//! - [`stages::resolve`] → [`stages::ResolvedStages`]: stages to build in
//!   order, each base as `Scratch | Stage(i) | Image(ref) | Context(name)`.
//! - [`IgnoreMatcher`] (`matches`, `can_skip_dir`) and [`parse_dockerignore`].
//! - [`classify_source`]: an ADD/COPY source is a path, a URL or a git repo.
//! - [`parse_port_spec`] for expanded EXPOSE words, [`parse_stop_signal`]
//!   for expanded STOPSIGNAL values.
//!
//! Variables referenced by an expanded field can be listed without values
//! with [`referenced_variables`] (BuildKit uses this for cache keys and
//! the undefined-variable lint); [`expand_word_with_matches`] returns the
//! used and unknown names alongside the value.

mod ast;
mod error;
mod flags;
pub mod ignore;
mod instructions;
mod lint;
pub mod mounts;
pub mod ports;
pub mod shell;
pub mod sources;
pub mod stages;
mod shell_pattern;
pub mod syntax;
pub mod convert;
#[doc(hidden)]
pub mod fuzzing;

pub use ast::*;
pub use error::{ParseError, Span};
pub use ignore::{parse_dockerignore, IgnoreError, IgnoreMatcher, IgnorePattern};
pub use mounts::{CacheSharing, MountError, MountSpec, MountType};
pub use sources::{classify_source, SourceError, SourceKind};
pub use ports::{parse_port_spec, parse_stop_signal, PortError, SignalError};
pub use shell::{expand_word, expand_word_with_matches, expand_words, referenced_variables, ExpandError, Expansion, ShellLexer};
pub use shell_pattern::PatternError;
pub use syntax::{Directives, Heredoc, Node, RawDockerfile, Warning};

/// Decodes the source: UTF-8 (lossily, with a warning, when it is not).
fn decode(source: &[u8]) -> (std::borrow::Cow<'_, str>, Option<Warning>) {
    match String::from_utf8_lossy(source) {
        std::borrow::Cow::Borrowed(s) => (std::borrow::Cow::Borrowed(s), None),
        owned => (
            owned,
            Some(Warning {
                rule: "InvalidUtf8",
                message: "the Dockerfile is not valid UTF-8; invalid bytes were replaced with U+FFFD".into(),
                span: None,
            }),
        ),
    }
}

/// Parses only the node layer (BuildKit's `parser.Parse`): lines, directives,
/// continuations, heredocs, flags and argument splitting, no validation of
/// instructions. Most callers want [`parse`].
#[allow(clippy::result_large_err)] // errors are rare and carry the rendered context
pub fn parse_nodes(source: &[u8], file_name: &str) -> Result<RawDockerfile, ParseError> {
    let (text, warning) = decode(source);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut raw = syntax::parse_nodes(&text).map_err(|e| e.into_parse_error(file_name, &lines))?;
    raw.warnings.splice(0..0, warning);
    Ok(raw)
}

/// Parses a Dockerfile into stages of typed instructions.
///
/// `file_name` is only used in error messages and [`Dockerfile::file_name`].
/// Nothing is expanded here: see the crate docs for which fields the
/// conversion must expand, and with which variables.
#[allow(clippy::result_large_err)] // errors are rare and carry the rendered context
pub fn parse(source: &[u8], file_name: &str) -> Result<Dockerfile, ParseError> {
    let (text, warning) = decode(source);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let to_error = |e: error::RawError| e.into_parse_error(file_name, &lines);
    let mut raw = syntax::parse_nodes(&text).map_err(to_error)?;
    raw.warnings.splice(0..0, warning);
    instructions::build(raw, file_name).map_err(to_error)
}

/// Parses an ONBUILD trigger taken from a base image's config (BuildKit
/// parses these with the default escape character). FROM, MAINTAINER and
/// ONBUILD are rejected as triggers; heredocs in the expression work.
#[allow(clippy::result_large_err)] // errors are rare and carry the rendered context
pub fn parse_onbuild_trigger(expression: &str) -> Result<Instruction, ParseError> {
    let file_name = "ONBUILD trigger";
    let lines: Vec<&str> = expression.split_inclusive('\n').collect();
    let to_error = |e: error::RawError| e.into_parse_error(file_name, &lines);
    let raw = syntax::parse_nodes(expression).map_err(to_error)?;
    let [node] = raw.nodes.as_slice() else {
        return Err(ParseError {
            file_name: file_name.into(),
            span: Span::point(1, 1),
            message: format!("ONBUILD trigger `{expression}` must be exactly one instruction"),
            source_line: lines.first().map(|l| l.trim_end().to_string()).unwrap_or_default(),
            hint: None,
        });
    };
    let keyword = node.keyword.to_ascii_uppercase();
    if matches!(keyword.as_str(), "FROM" | "MAINTAINER" | "ONBUILD") {
        return Err(to_error(error::RawError::new(node.keyword_span(), format!("{keyword} isn't allowed as an ONBUILD trigger"))));
    }
    let mut warnings = Vec::new();
    instructions::parse_instruction(node, &mut warnings).map_err(to_error)
}
