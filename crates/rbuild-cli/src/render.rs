//! Progress renderers: consumers of the engine's events.

use rbuild::{Event, ProgressSink, Stream};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// The `--progress` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    RawJson,
    Quiet,
}

impl Mode {
    pub fn parse(s: &str, quiet: bool) -> anyhow::Result<Self> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        Ok(match s {
            // The live TTY view is not written yet; plain is its stand-in.
            "auto" | "tty" | "plain" => Mode::Plain,
            "rawjson" => Mode::RawJson,
            "quiet" => Mode::Quiet,
            other => anyhow::bail!("invalid --progress `{other}`: expected auto, tty, plain, rawjson or quiet"),
        })
    }
}

/// BuildKit-style plain output: `#N name`, output lines, `#N DONE 1.2s`.
#[derive(Default)]
struct Plain {
    numbers: HashMap<String, usize>,
    started: HashMap<String, u64>,
}

impl Plain {
    fn number(&mut self, vertex: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(vertex.to_string()).or_insert(next)
    }

    fn render(&mut self, e: &Event, out: &mut impl Write) -> std::io::Result<()> {
        match e {
            Event::Started { vertex, name, time_ms } => {
                let n = self.number(vertex);
                self.started.insert(vertex.clone(), *time_ms);
                writeln!(out, "#{n} {name}")
            }
            Event::Cached { vertex, name, .. } => {
                let n = self.number(vertex);
                writeln!(out, "#{n} {name}\n#{n} CACHED")
            }
            Event::Log { vertex, data, time_ms, stream } => {
                let n = self.number(vertex);
                let since = self.started.get(vertex).map(|s| time_ms.saturating_sub(*s)).unwrap_or(0);
                let _ = stream == &Stream::Stderr;
                for line in data.lines() {
                    writeln!(out, "#{n} {:.3} {line}", since as f64 / 1000.0)?;
                }
                Ok(())
            }
            Event::Done { vertex, duration_ms, .. } => {
                let n = self.number(vertex);
                writeln!(out, "#{n} DONE {:.1}s", *duration_ms as f64 / 1000.0)
            }
            Event::Failed { vertex, error, .. } => {
                let n = self.number(vertex);
                let first = error.lines().next().unwrap_or_default();
                writeln!(out, "#{n} ERROR: {first}")
            }
            Event::Warning { message, .. } => writeln!(out, "WARNING: {message}"),
            Event::Progress { .. } => Ok(()),
        }
    }
}

/// A sink that renders events to standard error in `mode`.
pub fn sink(mode: Mode) -> ProgressSink {
    match mode {
        Mode::Quiet => ProgressSink::discard(),
        Mode::RawJson => ProgressSink::new(|e| {
            if let Ok(line) = serde_json::to_string(&e) {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }),
        Mode::Plain => {
            let state = Mutex::new(Plain::default());
            ProgressSink::new(move |e| {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let _ = s.render(&e, &mut std::io::stderr().lock());
            })
        }
    }
}
