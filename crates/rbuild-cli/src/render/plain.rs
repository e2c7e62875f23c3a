//! `--progress=plain`: BuildKit's plain format, for CI logs.
//!
//! ```text
//! #3 [build 2/3] RUN make
//! #3 0.104 cc -o app main.c
//! #3 DONE 1.2s
//!
//! #4 [build 3/3] COPY app /usr/bin/
//! #4 CACHED
//! ```
//!
//! Output is grouped in blocks per step, separated by a blank line. When
//! steps run in parallel their lines interleave: a block that is left before
//! its step ended closes with `#N ...`, and output that resumes it repeats the
//! `#N name` header, so every line can still be attributed by its prefix.
//! Apart from the timings, the output is a function of the event sequence.
//! Transfers (layer pulls and pushes) print one line per blob when it
//! completes rather than every progress tick.

use super::state::{self, BuildState, Status};
use super::text;
use rbuild::Event;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

/// Bytes kept of an unterminated output line before it is printed anyway.
const PARTIAL_BYTES: usize = 2048;

/// The plain renderer's state: the build model plus what has been printed.
#[derive(Default)]
pub struct Plain {
    pub state: BuildState,
    /// The step whose block is open.
    current: Option<usize>,
    /// Output of each step after its last newline.
    partial: HashMap<usize, String>,
    /// Transfers already reported, by step and id.
    reported: HashSet<(usize, String)>,
}

impl Plain {
    /// Prints what `event` adds to the log.
    pub fn render(&mut self, event: &Event, out: &mut dyn Write) -> io::Result<()> {
        self.state.apply(event);
        match event {
            Event::Started { vertex, .. } => {
                let i = self.index(vertex);
                self.focus(i, out)
            }
            Event::Cached { vertex, .. } => {
                let i = self.index(vertex);
                self.focus(i, out)?;
                writeln!(out, "#{} CACHED", i + 1)
            }
            Event::Log { vertex, data, time_ms, .. } => {
                let i = self.index(vertex);
                self.log(i, data, *time_ms, out)
            }
            Event::Progress { vertex, id, .. } => {
                let key = if vertex.is_empty() { state::anonymous_name(id) } else { vertex.as_str() };
                match self.state.position(key) {
                    Some(i) => self.transfers(i, Some(id), out),
                    None => Ok(()),
                }
            }
            Event::Done { vertex, time_ms, duration_ms, .. } => {
                let i = self.index(vertex);
                self.flush(i, *time_ms, out)?;
                self.focus(i, out)?;
                writeln!(out, "#{} DONE {}", i + 1, text::secs(*duration_ms))
            }
            Event::Failed { vertex, error, time_ms, .. } => {
                let i = self.index(vertex);
                self.flush(i, *time_ms, out)?;
                self.focus(i, out)?;
                let first = error.lines().next().unwrap_or_default();
                writeln!(out, "#{} ERROR: {}", i + 1, text::clean_line(first))
            }
            Event::Warning { message, .. } => {
                self.leave(out)?;
                for line in message.lines() {
                    writeln!(out, "WARNING: {}", text::clean_line(line))?;
                }
                writeln!(out)
            }
        }
    }

    /// Ends the log: steps that never reported an end (registry pushes) are
    /// closed, and steps still running when the build failed are marked
    /// `CANCELED`.
    pub fn finish(&mut self, failed: bool, now_ms: u64, out: &mut dyn Write) -> io::Result<()> {
        let running: Vec<usize> =
            (0..self.state.steps.len()).filter(|&i| self.state.steps[i].status == Status::Running).collect();
        for &i in &running {
            self.flush(i, now_ms, out)?;
        }
        self.state.close(failed, now_ms);
        for i in running {
            self.focus(i, out)?;
            let step = &self.state.steps[i];
            match step.status {
                Status::Canceled { .. } => writeln!(out, "#{} CANCELED", i + 1)?,
                _ => writeln!(out, "#{} DONE {}", i + 1, text::secs(step.elapsed(now_ms)))?,
            }
        }
        if self.current.take().is_some() {
            writeln!(out)?;
        }
        Ok(())
    }

    fn index(&self, vertex: &str) -> usize {
        // `apply` has just created the step, so it is always there.
        self.state.position(vertex).unwrap_or(0)
    }

    /// Makes step `i` the open block, printing the separator and header.
    fn focus(&mut self, i: usize, out: &mut dyn Write) -> io::Result<()> {
        if self.current == Some(i) {
            return Ok(());
        }
        self.leave(out)?;
        let step = &self.state.steps[i];
        writeln!(out, "#{} {}", step.number, step.name)?;
        self.current = Some(i);
        Ok(())
    }

    /// Closes the open block, if any.
    fn leave(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(c) = self.current.take() {
            if let Some(step) = self.state.steps.get(c).filter(|s| !s.finished()) {
                writeln!(out, "#{} ...", step.number)?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    fn log(&mut self, i: usize, data: &str, time_ms: u64, out: &mut dyn Write) -> io::Result<()> {
        let mut buf = self.partial.remove(&i).unwrap_or_default();
        let mut rest = data;
        while let Some(pos) = rest.find('\n') {
            buf.push_str(&rest[..pos]);
            self.line(i, &buf, time_ms, out)?;
            buf.clear();
            rest = &rest[pos + 1..];
        }
        buf.push_str(rest);
        if buf.len() > PARTIAL_BYTES {
            self.line(i, &buf, time_ms, out)?;
            buf.clear();
        }
        if !buf.is_empty() {
            self.partial.insert(i, buf);
        }
        Ok(())
    }

    fn line(&mut self, i: usize, line: &str, time_ms: u64, out: &mut dyn Write) -> io::Result<()> {
        self.focus(i, out)?;
        let since = time_ms.saturating_sub(self.state.steps[i].started_ms);
        writeln!(out, "#{} {} {}", i + 1, text::secs3(since), text::clean_line(line))
    }

    /// Prints the unterminated output line and unfinished transfers of step
    /// `i` before it ends.
    fn flush(&mut self, i: usize, time_ms: u64, out: &mut dyn Write) -> io::Result<()> {
        if let Some(rest) = self.partial.remove(&i) {
            self.line(i, &rest, time_ms, out)?;
        }
        self.transfers(i, None, out)
    }

    /// Reports transfers of step `i`: with `Some(id)`, that transfer if it
    /// has just completed; with `None`, every transfer not reported yet.
    fn transfers(&mut self, i: usize, only: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
        let pending: Vec<_> = self.state.steps[i]
            .transfers
            .iter()
            .filter(|t| only.is_none_or(|id| t.id == id && t.complete()))
            .filter(|t| !self.reported.contains(&(i, t.id.clone())))
            .cloned()
            .collect();
        for t in pending {
            self.focus(i, out)?;
            let took = text::secs(t.last_ms.saturating_sub(t.first_ms));
            let done = if t.complete() { " done" } else { "" };
            let amount = t.amount();
            let sep = if amount.is_empty() { "" } else { " " };
            writeln!(out, "#{} {}{sep}{amount} {took}{done}", i + 1, t.id)?;
            self.reported.insert((i, t.id));
        }
        Ok(())
    }
}
