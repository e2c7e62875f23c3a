//! rbuild-dockerfile: the Dockerfile language, with BuildKit's semantics.
//!
//! (Crate docs are filled in below as modules land.)

mod error;
pub mod shell;
mod shell_pattern;
pub mod syntax;

pub use error::{ParseError, Span};
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
pub fn parse_nodes(source: &[u8], file_name: &str) -> Result<RawDockerfile, ParseError> {
    let (text, warning) = decode(source);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut raw = syntax::parse_nodes(&text).map_err(|e| e.into_parse_error(file_name, &lines))?;
    raw.warnings.splice(0..0, warning);
    Ok(raw)
}
