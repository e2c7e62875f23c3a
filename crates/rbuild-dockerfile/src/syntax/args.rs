//! Argument splitting, per keyword, exactly as BuildKit's line parsers do
//! it: leading `--flags`, words with quotes kept (ENV/LABEL/ARG), JSON
//! arrays with the shell-form fallback, whitespace lists, HEALTHCHECK.

use super::{NodeError, is_token_space};

/// Leading `--flag` words (BuildKit's `extractBuilderFlags`): returns the
/// byte offset where the arguments start and each flag with its byte range.
pub(super) fn extract_flags(line: &str) -> (usize, Vec<(String, usize, usize)>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let (pos, ch) = if at_end { (line.len(), '\0') } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_dash = chars.get(i + 1).is_some_and(|c| c.1 == '-');
            if ch != '-' || !next_dash {
                return (pos, words);
            }
            phase = Phase::Word;
            word_start = pos;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push((word, word_start, line.len()));
            }
            return (line.len(), words);
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (pos, words);
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start, pos));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
        } else if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        // In a word or a quote, a backslash takes the next character as
        // it is; a trailing one is dropped (and ends an open quote).
        if ch == '\\' {
            match chars.get(i + 1) {
                Some(&(_, next)) => {
                    word.push(next);
                    i += 2;
                }
                None => {
                    phase = Phase::Word;
                    i += 1;
                }
            }
            continue;
        }
        word.push(ch);
        i += 1;
    }
    (line.len(), words)
}

/// Words with quotes and escapes preserved (for ENV, LABEL, ARG).
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let mut ch = if at_end { '\0' } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

pub(super) fn split_whitespace_delimited(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_token_space)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `k=v k2=v2` or legacy `k v`: returns key, value, separator triples
/// flattened, like BuildKit's node list.
pub(super) fn parse_name_val(
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<Vec<String>, NodeError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(idx) = rest.find(is_token_space) else {
            return Err(NodeError {
                hint: Some(format!(
                    "write `{keyword} {rest}=<value>` or `{keyword} {rest} <value>`"
                )),
                ..NodeError::new(format!("{keyword} must have two arguments"))
            });
        };
        let value = rest[idx..].trim_start_matches(is_token_space);
        return Ok(vec![
            rest[..idx].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(NodeError {
                hint: Some("use one form per instruction: `NAME=value NAME2=value2`".into()),
                ..NodeError::new(format!(
                    "syntax error: can't find `=` in `{w}`; must be of the form `name=value`"
                ))
            });
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

enum JsonOutcome {
    Array(Vec<String>),
    NotJson,
}

fn parse_json(rest: &str) -> Result<JsonOutcome, NodeError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(JsonOutcome::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonOutcome::NotJson);
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => out.push(s),
            other => {
                return Err(NodeError {
                    hint: Some(
                        "write every element as a quoted string, e.g. `[\"sh\", \"-c\", \"…\"]`"
                            .into(),
                    ),
                    ..NodeError::new(format!(
                        "when using JSON array syntax, arrays must be comprised of strings only (found `{other}`)"
                    ))
                });
            }
        }
    }
    Ok(JsonOutcome::Array(out))
}

pub(super) fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((vec![rest.to_string()], false)),
    }
}

pub(super) fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((split_whitespace_delimited(rest), false)),
    }
}

pub(super) fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start();
    let (mut args, json) = parse_maybe_json(cmd)?;
    args.insert(0, typ.to_string());
    Ok((args, json))
}
