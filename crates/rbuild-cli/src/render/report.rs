//! The report printed when a build fails: the failing step's last output
//! and the Dockerfile lines around the instruction that made it.
//!
//! ```text
//! ------
//!  > [build 2/3] RUN make:
//! make: *** No rule to make target 'all'.  Stop.
//! ------
//! Dockerfile:4
//! --------------------
//!    2 |     WORKDIR /src
//!    3 |     COPY . .
//!    4 | >>> RUN make
//!    5 |     CMD ["/app"]
//! --------------------
//! ERROR: [build 2/3] RUN make: process ["/bin/sh", "-c", "make"] did not complete successfully: exit code: 2
//! ```
//!
//! The engine names steps `[stage k/n] INSTRUCTION`, where `k` counts the
//! stage's `FROM` as 1; that is enough to find the instruction again in the
//! Dockerfile the CLI was given, without the engine carrying source spans.
//! A failed base-image pull (`[internal] load REF`) points at the `FROM`
//! line that names the image.

use super::state::BuildState;
use super::text;
use std::fmt::Write as _;

/// Dockerfile lines shown before and after the failing instruction.
const CONTEXT_LINES: usize = 2;

/// The Dockerfile of the build, for quoting it in error reports.
#[derive(Clone, Debug)]
pub struct DockerfileSource {
    /// What the report calls the file (`Dockerfile`, or the `-f` path).
    pub name: String,
    pub contents: Vec<u8>,
}

/// The 1-based, inclusive line range of the instruction a step name
/// points at, if the name has the `[stage k/n]` form and the Dockerfile
/// still has such an instruction.
pub fn locate(source: &DockerfileSource, step_name: &str) -> Option<(usize, usize)> {
    if let Some(reference) = step_name.strip_prefix("[internal] load ") {
        return locate_base(source, reference);
    }
    let rest = step_name.strip_prefix('[')?;
    let (label, after) = rest.split_once(']')?;
    // `[stage k/n]`, or `[platform stage k/n]` in multi-platform builds.
    let mut words = label.rsplit(' ');
    let position = words.next()?;
    let stage_name = words.next()?;
    let (k, _total) = position.split_once('/')?;
    let k: usize = k.parse().ok()?;
    let keyword = after.split_whitespace().next()?;
    let df = rbuild_dockerfile::parse(&source.contents, &source.name).ok()?;
    let stage = df.stages.iter().find(|s| match &s.name {
        Some(n) => n == stage_name,
        None => format!("stage-{}", s.index) == stage_name,
    })?;
    let (span, original) = match k {
        0 => return None,
        1 => (&stage.span, &stage.original),
        _ => {
            let ins = stage.instructions.get(k - 2)?;
            (&ins.span, &ins.original)
        }
    };
    // ONBUILD triggers run as `[stage 1/n] ONBUILD …`: they come from the
    // base image, so the FROM line is where they are anchored.
    let first_word = original.split_whitespace().next().unwrap_or_default();
    if !first_word.eq_ignore_ascii_case(keyword) && !keyword.eq_ignore_ascii_case("ONBUILD") {
        return None;
    }
    Some((span.start_line, span.end_line.max(span.start_line)))
}

/// The `FROM` line that names `reference` (a base image being pulled), if
/// one does literally: `alpine` matches `docker.io/library/alpine:latest`.
/// Bases spelled with ARGs are not expanded here and match nothing.
fn locate_base(source: &DockerfileSource, reference: &str) -> Option<(usize, usize)> {
    fn short(r: &str) -> &str {
        let r = r.strip_prefix("docker.io/").unwrap_or(r);
        let r = r.strip_prefix("library/").unwrap_or(r);
        r.strip_suffix(":latest").unwrap_or(r)
    }
    let df = rbuild_dockerfile::parse(&source.contents, &source.name).ok()?;
    let wanted = short(reference);
    let stage = df.stages.iter().find(|s| short(&s.base) == wanted)?;
    Some((stage.span.start_line, stage.span.end_line.max(stage.span.start_line)))
}

/// The `Dockerfile:N` block quoting lines `first..=last` with context.
fn excerpt(source: &DockerfileSource, first: usize, last: usize) -> Option<String> {
    let text = String::from_utf8_lossy(&source.contents);
    let lines: Vec<&str> = text.lines().collect();
    if first == 0 || first > lines.len() {
        return None;
    }
    let from = first.saturating_sub(CONTEXT_LINES).max(1);
    let to = (last + CONTEXT_LINES).min(lines.len());
    let digits = to.to_string().len().max(4);
    let mut out = String::new();
    let location = if first == last { format!("{first}") } else { format!("{first}-{last}") };
    let _ = writeln!(out, "{}:{location}", source.name);
    out.push_str("--------------------\n");
    for n in from..=to {
        let marker = if (first..=last).contains(&n) { ">>> " } else { "    " };
        let line = text::expand_tabs(&text::clean_line(lines[n - 1]));
        let _ = writeln!(out, "{}", format!("{n:>digits$} | {marker}{line}").trim_end());
    }
    out.push_str("--------------------\n");
    Some(out)
}

/// The full error report for a failed build. `error` is the build's error
/// message; output already shown from the step is not repeated from it.
pub fn render(state: &BuildState, source: Option<&DockerfileSource>, error: &str) -> String {
    let mut out = String::new();
    let mut error = error.to_string();
    if let Some(step) = state.first_failure.and_then(|i| state.steps.get(i)) {
        let _ = writeln!(out, "------\n > {}:", step.name);
        for line in step.logs.last(usize::MAX) {
            let _ = writeln!(out, "{}", text::clean_line(&line));
        }
        out.push_str("------\n");
        if let Some(pos) = error.find("\nlast output:").filter(|_| !step.logs.is_empty()) {
            error.truncate(pos);
        }
        if let Some(block) = source.and_then(|s| locate(s, &step.name).and_then(|(a, b)| excerpt(s, a, b))) {
            out.push_str(&block);
        }
    }
    let mut lines = error.lines().map(text::clean_line);
    let _ = writeln!(out, "ERROR: {}", lines.next().unwrap_or_default());
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out
}
