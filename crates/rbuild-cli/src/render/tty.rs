//! `--progress=tty`: the live view, redrawn in place.
//!
//! ```text
//! [+] Building 4.2s (3/5)
//!  => CACHED [internal] load example.com/base:1                     0.0s
//!  => [build 2/3] COPY . /src                                       0.1s
//!  => [build 3/3] RUN make                                          3.9s
//!  => => # cc -o app main.c
//! ```
//!
//! A frame is a pure function of the build model, the clock and the
//! terminal size ([`frame`]), so it can be tested without a terminal; the
//! [`Terminal`] only knows how to replace the previous frame with the next.
//! Every line is cut to the terminal width: a wrapped line would make the
//! cursor arithmetic of the next redraw wrong.

use super::state::{BuildState, Status, Step, Transfer};
use super::text;
use std::io::{self, Write};

/// Output lines shown under a running step.
pub const TAIL_LINES: usize = 6;

const BLUE: &str = "\x1b[34m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// The terminal a frame is drawn for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screen {
    /// Columns; lines are cut to one less so that none wraps.
    pub width: usize,
    /// Rows; live frames use at most this many minus one. 0 = unknown.
    pub height: usize,
    pub color: bool,
}

impl Screen {
    /// The size of the terminal on standard error (`TIOCGWINSZ`), or 80
    /// columns of unknown height when it is not a terminal.
    pub fn detect(color: bool) -> Screen {
        let (width, height) = window_size().unwrap_or((80, 0));
        Screen { width: width.max(20), height, color }
    }
}

/// Asks the kernel for the size of the terminal on standard error.
fn window_size() -> Option<(usize, usize)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to struct,
    // which lives for the whole call; the fd is only read.
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then(|| (usize::from(ws.ws_col), usize::from(ws.ws_row)))
}

/// One line: `left` text and a right-aligned `right` column, cut to fit.
fn row(left: &str, right: &str, width: usize) -> String {
    let usable = width.saturating_sub(1);
    let right_w = text::width(right);
    if right_w + 1 >= usable {
        return text::truncate(left, usable).to_string();
    }
    let left = text::truncate(left, usable - right_w - 1);
    let pad = usable - right_w - text::width(left);
    format!("{left}{}{right}", " ".repeat(pad))
}

fn paint(s: String, color: Option<&str>, screen: &Screen) -> String {
    match color {
        Some(c) if screen.color => format!("{c}{s}{RESET}"),
        _ => s,
    }
}

/// At most [`TAIL_LINES`] transfers of a step, in their order: every one
/// still moving first, then the most recently finished. An image with 40
/// layers must not push the rest of the build off the screen.
fn shown_transfers(all: &[Transfer]) -> impl Iterator<Item = &Transfer> {
    let moving = all.iter().filter(|t| !t.complete()).count();
    let finished_room = TAIL_LINES.saturating_sub(moving);
    let finished = all.iter().filter(|t| t.complete()).count();
    let mut skip_finished = finished.saturating_sub(finished_room);
    let mut moving_room = TAIL_LINES;
    all.iter().filter(move |t| {
        if t.complete() {
            if skip_finished > 0 {
                skip_finished -= 1;
                return false;
            }
            true
        } else if moving_room > 0 {
            moving_room -= 1;
            true
        } else {
            false
        }
    })
}

/// The lines of one step: its summary line and, while it runs or after it
/// failed, its transfers and output tail.
fn step_block(step: &Step, now_ms: u64, screen: &Screen) -> Vec<String> {
    let timer = text::secs(step.elapsed(now_ms));
    let name = text::expand_tabs(&text::short_digests(&step.name));
    let (marker, color) = match &step.status {
        Status::Running => ("", None),
        Status::Cached => ("CACHED ", Some(BLUE)),
        Status::Done { .. } => ("", Some(BLUE)),
        Status::Failed { .. } => ("ERROR ", Some(RED)),
        Status::Canceled { .. } => ("CANCELED ", Some(YELLOW)),
    };
    let mut lines = vec![paint(row(&format!(" => {marker}{name}"), &timer, screen.width), color, screen)];
    let show_details = matches!(step.status, Status::Running | Status::Failed { .. });
    if !show_details {
        return lines;
    }
    if step.status == Status::Running {
        for t in shown_transfers(&step.transfers) {
            let end = if t.complete() { t.last_ms } else { now_ms };
            let took = text::secs(end.saturating_sub(t.first_ms));
            let done = if t.complete() { " done" } else { "" };
            let amount = t.amount();
            let sep = if amount.is_empty() { "" } else { " " };
            let left = format!(" => => {}{sep}{amount}{done}", text::short_digests(&t.id));
            lines.push(row(&left, &took, screen.width));
        }
    }
    for line in step.logs.last(TAIL_LINES) {
        let line = format!(" => => # {}", text::expand_tabs(&line));
        lines.push(text::truncate(&line, screen.width.saturating_sub(1)).to_string());
    }
    lines
}

/// Which frame is drawn: live ones are redrawn, the last one stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    Finished,
    Failed,
}

/// The frame for the build as it stands at `now_ms`. The build's clock
/// started at `start_ms`. The last frame (`Finished` or `Failed`) says so,
/// lists warnings, and is not limited to the terminal height since it will
/// not be redrawn.
pub fn frame(state: &BuildState, start_ms: u64, now_ms: u64, screen: &Screen, phase: Phase) -> Vec<String> {
    let elapsed = text::secs(now_ms.saturating_sub(start_ms));
    let counter = format!("({}/{})", state.finished_count(), state.steps.len());
    let last = phase != Phase::Running;
    let header = match phase {
        Phase::Finished => paint(format!("[+] Building {elapsed} {counter} FINISHED"), Some(BLUE), screen),
        Phase::Failed => paint(format!("[+] Building {elapsed} {counter} FAILED"), Some(RED), screen),
        Phase::Running => format!("[+] Building {elapsed} {counter}"),
    };
    let mut blocks: Vec<(bool, Vec<String>)> =
        state.steps.iter().map(|s| (s.finished(), step_block(s, now_ms, screen))).collect();
    if !last && screen.height > 1 {
        fit(&mut blocks, screen.height - 2);
    }
    let mut lines = vec![header];
    lines.extend(blocks.into_iter().flat_map(|(_, b)| b));
    if !last && screen.height > 1 {
        let room = screen.height - 1;
        if lines.len() > room {
            lines.drain(1..=lines.len() - room);
        }
    }
    if last {
        for w in &state.warnings {
            for l in w.lines() {
                let l = format!("WARNING: {}", text::expand_tabs(&text::clean_line(l)));
                lines.push(paint(text::truncate(&l, screen.width.saturating_sub(1)).to_string(), Some(YELLOW), screen));
            }
        }
    }
    lines
}

/// Drops finished steps, oldest first, until the blocks fit in `room` lines.
fn fit(blocks: &mut Vec<(bool, Vec<String>)>, room: usize) {
    let mut total: usize = blocks.iter().map(|(_, b)| b.len()).sum();
    let mut i = 0;
    while total > room && i < blocks.len() {
        if blocks[i].0 {
            total -= blocks[i].1.len();
            blocks.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Replaces the previous frame on the terminal with the next one.
#[derive(Debug, Default)]
pub struct Terminal {
    /// Lines of the frame on screen, which the cursor is just below.
    drawn: usize,
}

impl Terminal {
    /// Writes `lines` over the previous frame in one write, so that the
    /// terminal never shows half a frame.
    pub fn draw(&mut self, lines: &[String], out: &mut dyn Write) -> io::Result<()> {
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A", self.drawn));
        }
        for line in lines {
            buf.push_str(line);
            buf.push_str("\x1b[K\n");
        }
        buf.push_str("\x1b[J");
        out.write_all(buf.as_bytes())?;
        out.flush()?;
        self.drawn = lines.len();
        Ok(())
    }
}
