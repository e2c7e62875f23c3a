//! The user's terminal during `rbuild run -t`: raw mode (restored on every
//! way out), and the relay between it and the pty the sandbox made.
//!
//! Threads, not async I/O: our stdin is usually shared with the shell that
//! started us, and making it non-blocking would change it for the shell
//! too. The stdin thread polls a stop pipe so that it ends with the run
//! instead of waiting for one more keystroke.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rustix::termios::{OptionalActions, Termios};

/// The settings to put back (also read by the panic hook).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Our stdin terminal in raw mode for as long as this lives: keys go to the
/// process as bytes (Ctrl-C included, which the pty turns into its SIGINT).
pub struct RawMode(());

impl RawMode {
    /// Puts our stdin terminal in raw mode.
    pub fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        install_panic_hook();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(Self(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the saved settings back, once.
fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &t);
    }
}

/// A panic anywhere (another thread, a task) restores the terminal before
/// the message is printed: unwinding reaches [`RawMode`]'s drop only when
/// it passes through the function that holds it.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The size of our terminal (stdout's, else stdin's), docker's choice.
fn our_size() -> Option<rustix::termios::Winsize> {
    rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin().as_fd()))
        .ok()
}

/// Copies between our terminal and the pty master until the run ends.
pub struct Relay {
    master: OwnedFd,
    output: std::thread::JoinHandle<()>,
    _stop: Option<OwnedFd>,
}

impl Relay {
    /// Starts copying the master to our stdout and, with `stdin`, our
    /// stdin to the master.
    pub fn start(master: OwnedFd, stdin: bool) -> anyhow::Result<Self> {
        let reader = master.try_clone().context("duplicating the pty master")?;
        let output = std::thread::Builder::new()
            .name("rbuild-pty-out".into())
            .spawn(move || copy_output(reader))
            .context("starting the terminal relay")?;
        let stop = if stdin {
            let writer = master.try_clone().context("duplicating the pty master")?;
            let (stop_r, stop_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .context("creating the relay's stop pipe")?;
            std::thread::Builder::new()
                .name("rbuild-pty-in".into())
                .spawn(move || copy_input(&writer, &stop_r))
                .context("starting the terminal relay")?;
            Some(stop_w)
        } else {
            None
        };
        let relay = Self { master, output, _stop: stop };
        relay.resize();
        Ok(relay)
    }

    /// Gives the pty our terminal's size (on SIGWINCH); the process in its
    /// foreground gets its own SIGWINCH.
    pub fn resize(&self) {
        if let Some(size) = our_size() {
            let _ = rustix::termios::tcsetwinsize(self.master.as_fd(), size);
        }
    }

    /// Once the run is over: waits until what the process wrote last is
    /// shown (the master reads EIO when every holder of the terminal side
    /// is gone, which the sandbox's end guarantees), and stops the stdin
    /// thread. Bounded, in case something kept the terminal side open.
    pub async fn finish(self) {
        let Self { master, output, _stop } = self;
        drop(_stop);
        let _ = tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(move || output.join())).await;
        drop(master);
    }
}

fn copy_output(master: OwnedFd) {
    let mut from = std::fs::File::from(master);
    let mut out = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                // A closed stdout must not stop the process: keep draining.
                let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the terminal side is closed everywhere.
            Err(_) => return,
        }
    }
}

fn copy_input(master: &OwnedFd, stop: &OwnedFd) {
    use rustix::event::{PollFd, PollFlags};
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::IN), PollFd::new(stop, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let n = match rustix::io::read(stdin.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(_) => return,
        };
        if write_all(master.as_fd(), &buf[..n]).is_err() {
            return;
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
