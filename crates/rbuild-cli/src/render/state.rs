//! What the renderers know about a build so far, folded from its events.
//!
//! The live view redraws from this model at every tick, and the error report
//! reads the failing step's output tail from it, so it keeps a bounded amount
//! of everything: a few dozen complete lines per step, each line capped.
//! Hostile steps can print gigabytes; the model stays small.

use super::text;
use rbuild::Event;
use std::collections::{HashMap, VecDeque};

/// Complete output lines kept per step (the error report shows them all).
pub const LOG_LINES: usize = 30;
/// Bytes kept of one output line; the rest is dropped.
const LINE_BYTES: usize = 2048;

/// Where a step is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Cached,
    Done {
        duration_ms: u64,
    },
    Failed {
        error: String,
        duration_ms: u64,
    },
    /// Still running when another step failed and the build stopped.
    Canceled {
        duration_ms: u64,
    },
}

/// One transfer inside a step (a layer being pulled or pushed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    pub current: u64,
    pub total: Option<u64>,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Transfer {
    /// True when everything announced has arrived.
    pub fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.current >= t)
    }

    /// `2.81MB / 2.81MB`, or just the count when the total is unknown;
    /// empty for a sub-step that moves no bytes (`naming to …`).
    pub fn amount(&self) -> String {
        if self.current == 0 && matches!(self.total, None | Some(0)) {
            return String::new();
        }
        match self.total {
            Some(t) => format!("{} / {}", text::size(self.current), text::size(t)),
            None => text::size(self.current),
        }
    }
}

/// The output of one step: the last complete lines and the line being written.
#[derive(Clone, Debug, Default)]
pub struct LogTail {
    lines: VecDeque<String>,
    partial: String,
}

impl LogTail {
    /// Adds a chunk of output; chunks may split lines anywhere.
    pub fn push(&mut self, data: &str) {
        let mut rest = data;
        while let Some(pos) = rest.find('\n') {
            self.push_partial(&rest[..pos]);
            let line = std::mem::take(&mut self.partial);
            self.lines.push_back(text::clean_line(&line));
            if self.lines.len() > LOG_LINES {
                self.lines.pop_front();
            }
            rest = &rest[pos + 1..];
        }
        self.push_partial(rest);
    }

    fn push_partial(&mut self, s: &str) {
        let room = LINE_BYTES.saturating_sub(self.partial.len());
        if room == 0 {
            return;
        }
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.partial.push_str(&s[..end]);
    }

    /// The last `n` lines, including a line still being written.
    pub fn last(&self, n: usize) -> Vec<String> {
        let mut all: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            all.push(text::clean_line(&self.partial));
        }
        let skip = all.len().saturating_sub(n);
        all.split_off(skip)
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.partial.is_empty()
    }
}

/// One step of the build as the user sees it.
#[derive(Clone, Debug)]
pub struct Step {
    /// `#N` in the output: the order in which steps were first heard of.
    pub number: usize,
    pub name: String,
    pub status: Status,
    pub started_ms: u64,
    pub logs: LogTail,
    pub transfers: Vec<Transfer>,
}

impl Step {
    /// Time spent so far (running) or in total (finished), at `now_ms`.
    pub fn elapsed(&self, now_ms: u64) -> u64 {
        match &self.status {
            Status::Running => now_ms.saturating_sub(self.started_ms),
            Status::Cached => 0,
            Status::Done { duration_ms } | Status::Failed { duration_ms, .. } | Status::Canceled { duration_ms } => {
                *duration_ms
            }
        }
    }

    pub fn finished(&self) -> bool {
        self.status != Status::Running
    }
}

/// The name shown for events without a vertex (registry pushes, which the
/// engine reports after the graph is solved).
/// The name doubles as the step's key: vertex keys are digests, so the two
/// cannot collide.
pub fn anonymous_name(progress_id: &str) -> &'static str {
    if progress_id.starts_with("push ") { "pushing layers" } else { "exporting" }
}

/// Every step heard of, in order, with the build's warnings.
#[derive(Clone, Debug, Default)]
pub struct BuildState {
    pub steps: Vec<Step>,
    index: HashMap<String, usize>,
    pub warnings: Vec<String>,
    /// The first step that failed: the one the error report is about.
    pub first_failure: Option<usize>,
    /// Time of the first event, when the build's clock started.
    pub first_ms: Option<u64>,
}

impl BuildState {
    /// The step for `vertex`, created (running since `time_ms`) on first sight.
    fn step(&mut self, vertex: &str, name: &str, time_ms: u64) -> &mut Step {
        let next = self.steps.len();
        let i = *self.index.entry(vertex.to_string()).or_insert(next);
        if i == next {
            self.steps.push(Step {
                number: next + 1,
                name: text::clean_line(name),
                status: Status::Running,
                started_ms: time_ms,
                logs: LogTail::default(),
                transfers: Vec::new(),
            });
        }
        let step = &mut self.steps[i];
        // Output that arrives before the step's announcement creates it
        // without a name; the announcement then supplies it.
        if step.name.is_empty() && !name.is_empty() {
            step.name = text::clean_line(name);
        }
        step
    }

    /// The index of `vertex`'s step, if it was seen.
    pub fn position(&self, vertex: &str) -> Option<usize> {
        self.index.get(vertex).copied()
    }

    /// Folds one event into the model.
    pub fn apply(&mut self, event: &Event) {
        let time = event_time(event);
        self.first_ms.get_or_insert(time);
        match event {
            Event::Started { vertex, name, time_ms } => {
                let step = self.step(vertex, name, *time_ms);
                step.status = Status::Running;
                step.started_ms = *time_ms;
            }
            Event::Cached { vertex, name, time_ms } => {
                self.step(vertex, name, *time_ms).status = Status::Cached;
            }
            Event::Log { vertex, data, time_ms, .. } => self.step(vertex, "", *time_ms).logs.push(data),
            Event::Progress { vertex, id, current, total, time_ms } => {
                let (key, name) =
                    if vertex.is_empty() { (anonymous_name(id), anonymous_name(id)) } else { (vertex.as_str(), "") };
                let step = self.step(key, name, *time_ms);
                match step.transfers.iter_mut().find(|t| &t.id == id) {
                    Some(t) => {
                        t.current = *current;
                        t.total = *total;
                        t.last_ms = *time_ms;
                    }
                    None => step.transfers.push(Transfer {
                        id: text::clean_line(id),
                        current: *current,
                        total: *total,
                        first_ms: *time_ms,
                        last_ms: *time_ms,
                    }),
                }
            }
            Event::Done { vertex, name, time_ms, duration_ms } => {
                self.step(vertex, name, *time_ms).status = Status::Done { duration_ms: *duration_ms };
            }
            Event::Failed { vertex, name, error, time_ms } => {
                let step = self.step(vertex, name, *time_ms);
                let duration_ms = time_ms.saturating_sub(step.started_ms);
                step.status = Status::Failed { error: error.clone(), duration_ms };
                let i = step.number - 1;
                self.first_failure.get_or_insert(i);
            }
            Event::Warning { message, .. } => self.warnings.push(message.clone()),
        }
    }

    /// Ends steps that never reported an end, so that the last frame shows
    /// no running step: anonymous push steps are done at their last transfer;
    /// others were cut short when the build `failed`.
    pub fn close(&mut self, failed: bool, now_ms: u64) {
        for step in &mut self.steps {
            if step.status == Status::Running {
                let end = step.transfers.iter().map(|t| t.last_ms).max().unwrap_or(now_ms);
                let duration_ms = end.saturating_sub(step.started_ms);
                step.status = if failed && step.transfers.is_empty() {
                    Status::Canceled { duration_ms }
                } else {
                    Status::Done { duration_ms }
                };
            }
        }
    }

    /// Steps that have finished, for the `(done/total)` counter.
    pub fn finished_count(&self) -> usize {
        self.steps.iter().filter(|s| s.finished()).count()
    }
}

/// The timestamp every event carries.
pub fn event_time(event: &Event) -> u64 {
    match event {
        Event::Started { time_ms, .. }
        | Event::Cached { time_ms, .. }
        | Event::Log { time_ms, .. }
        | Event::Progress { time_ms, .. }
        | Event::Done { time_ms, .. }
        | Event::Failed { time_ms, .. }
        | Event::Warning { time_ms, .. } => *time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_joins_chunks_and_bounds_memory() {
        let mut t = LogTail::default();
        t.push("hel");
        t.push("lo\nwor");
        assert_eq!(t.last(5), vec!["hello".to_string(), "wor".to_string()]);
        for i in 0..100 {
            t.push(&format!("line {i}\n"));
        }
        let last = t.last(100);
        assert_eq!(last.len(), LOG_LINES);
        assert_eq!(last.last().map(String::as_str), Some("line 99"));
        t.push(&"x".repeat(10 * LINE_BYTES));
        t.push("\n");
        assert_eq!(t.last(1)[0].len(), LINE_BYTES);
    }

    #[test]
    fn long_line_cut_on_char_boundary() {
        let mut t = LogTail::default();
        t.push(&"é".repeat(LINE_BYTES));
        assert!(t.last(1)[0].len() <= LINE_BYTES);
    }
}
