//! Progress renderers: consumers of the engine's events.
//!
//! The engine emits events from many tasks; a [`Progress`] turns them into
//! what `--progress` asked for. Plain and JSON output are written as events
//! arrive. The live view only updates a model when an event arrives and is
//! drawn by its own thread about ten times a second, so a step printing
//! thousands of lines costs a few string copies, not thousands of redraws.
//! [`Progress::finish`] draws the last frame and, when the build failed, the
//! error report.

mod plain;
mod report;
mod state;
#[cfg(test)]
mod tests;
pub(crate) mod text;
mod tty;

pub use report::DockerfileSource;

use rbuild::{ProgressSink, now_ms};
use state::BuildState;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the live view is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The `--progress` modes, after `auto` has been decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The live view; `color` is false with `NO_COLOR` or off a terminal.
    Tty {
        color: bool,
    },
    Plain,
    RawJson,
    Quiet,
}

impl Mode {
    /// What `--progress` and `-q` mean on this terminal: `auto` is the
    /// live view when standard error is a terminal and `TERM` is not `dumb`.
    pub fn parse(s: &str, quiet: bool) -> anyhow::Result<Self> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Ok(Self::decide(s, terminal, dumb, no_color)?)
    }

    /// [`Mode::parse`] with the environment passed in.
    fn decide(s: &str, terminal: bool, dumb: bool, no_color: bool) -> Result<Self, ModeError> {
        let color = terminal && !no_color && !dumb;
        Ok(match s {
            "auto" if terminal && !dumb => Mode::Tty { color },
            "auto" | "plain" => Mode::Plain,
            "tty" => Mode::Tty { color },
            "rawjson" => Mode::RawJson,
            "quiet" => Mode::Quiet,
            other => return Err(ModeError(other.to_string())),
        })
    }
}

/// An unknown `--progress` value.
#[derive(Debug, thiserror::Error)]
#[error("invalid --progress `{0}`: expected auto, tty, plain, rawjson or quiet")]
pub struct ModeError(String);

/// The renderer behind a [`Progress`].
enum Renderer {
    Tty { state: BuildState, terminal: tty::Terminal, color: bool },
    Plain(plain::Plain),
    RawJson,
    Quiet(BuildState),
}

struct Inner {
    renderer: Renderer,
    out: Box<dyn Write + Send>,
    stopped: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
    start_ms: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A build's progress output. Create it before the build, hand
/// [`Progress::sink`] to the engine, and call [`Progress::finish`] after.
pub struct Progress {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
    source: Option<DockerfileSource>,
}

impl Progress {
    /// Progress on standard error. `source` is the Dockerfile, quoted when
    /// a step fails.
    pub fn start(mode: Mode, source: Option<DockerfileSource>) -> Progress {
        // Buffered, and flushed once per event: a chunk of 100 output lines
        // is one write, not hundreds.
        Self::with_output(mode, source, Box::new(std::io::BufWriter::new(std::io::stderr())), now_ms())
    }

    /// Progress written to `out`, with the build's clock started at `start_ms`.
    fn with_output(
        mode: Mode,
        source: Option<DockerfileSource>,
        out: Box<dyn Write + Send>,
        start_ms: u64,
    ) -> Progress {
        let renderer = match mode {
            Mode::Tty { color } => {
                Renderer::Tty { state: BuildState::default(), terminal: tty::Terminal::default(), color }
            }
            Mode::Plain => Renderer::Plain(plain::Plain::default()),
            Mode::RawJson => Renderer::RawJson,
            Mode::Quiet => Renderer::Quiet(BuildState::default()),
        };
        let live = matches!(renderer, Renderer::Tty { .. });
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { renderer, out, stopped: false }),
            wake: Condvar::new(),
            start_ms,
        });
        let ticker = if live {
            let shared = shared.clone();
            std::thread::Builder::new().name("rbuild-progress".into()).spawn(move || tick(&shared)).ok()
        } else {
            None
        };
        Progress { shared, ticker, source }
    }

    /// The sink to give the engine.
    pub fn sink(&self) -> ProgressSink {
        let shared = self.shared.clone();
        ProgressSink::new(move |e| {
            let mut inner = shared.lock();
            let Inner { renderer, out, stopped } = &mut *inner;
            // Tasks still winding down after the build returned must not
            // print below the last frame or the error report.
            if *stopped {
                return;
            }
            // A closed standard error must not fail the build.
            let _ = match renderer {
                Renderer::Tty { state, .. } | Renderer::Quiet(state) => {
                    state.apply(&e);
                    Ok(())
                }
                Renderer::Plain(p) => p.render(&e, out.as_mut()).and_then(|()| out.flush()),
                Renderer::RawJson => match serde_json::to_string(&e) {
                    Ok(line) => writeln!(out, "{line}").and_then(|()| out.flush()),
                    Err(_) => Ok(()),
                },
            };
        })
    }

    /// Ends the output: the last frame of the live view, then, when the
    /// build failed with `error`, the report on the failing step. Events
    /// that arrive later are dropped.
    pub fn finish(mut self, error: Option<&str>) {
        self.stop_ticker();
        let now = now_ms();
        let start_ms = self.shared.start_ms;
        let mut inner = self.shared.lock();
        let Inner { renderer, out, .. } = &mut *inner;
        let state = match renderer {
            Renderer::Tty { state, terminal, color } => {
                state.close(error.is_some(), now);
                let screen = tty::Screen::detect(*color);
                let phase = if error.is_some() { tty::Phase::Failed } else { tty::Phase::Finished };
                let _ = terminal.draw(&tty::frame(state, start_ms, now, &screen, phase), out.as_mut());
                Some(&*state)
            }
            Renderer::Plain(p) => {
                let _ = p.finish(error.is_some(), now, out.as_mut());
                Some(&p.state)
            }
            Renderer::Quiet(state) => Some(&*state),
            Renderer::RawJson => None,
        };
        if let Some(error) = error {
            let text = match state {
                Some(state) => report::render(state, self.source.as_ref(), error),
                None => format!("ERROR: {error}\n"),
            };
            let _ = out.write_all(text.as_bytes());
        }
        let _ = out.flush();
    }

    /// Stops the drawing thread and waits for it, so that nothing is drawn
    /// after the last frame.
    fn stop_ticker(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    /// A build abandoned without `finish` (an early return, a panic) still
    /// stops the drawing thread.
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// The live view's drawing loop: a frame per tick until `finish`.
fn tick(shared: &Shared) {
    let mut inner = shared.lock();
    while !inner.stopped {
        let Inner { renderer, out, .. } = &mut *inner;
        if let Renderer::Tty { state, terminal, color } = renderer {
            let screen = tty::Screen::detect(*color);
            let lines = tty::frame(state, shared.start_ms, now_ms(), &screen, tty::Phase::Running);
            let _ = terminal.draw(&lines, out.as_mut());
        }
        inner = match shared.wake.wait_timeout(inner, TICK) {
            Ok((guard, _)) => guard,
            Err(p) => p.into_inner().0,
        };
    }
}
