//! How the user's process is connected to the caller: the build path's
//! pipes (output as events), the caller's own fds (`rbuild run`, `-i`), or
//! a pseudo-terminal (`rbuild run -t`).
//!
//! The pty is allocated *inside* the sandbox, from the sandbox's own devpts
//! instance, and only its master comes back to the caller (over a unix
//! socket, `SCM_RIGHTS`). The sandbox never holds the caller's terminal in
//! tty mode: a process that can reach a terminal fd can inject input into
//! it (`TIOCSTI`), change its modes or read what the user types.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

/// The fd, in the helper and the init, that carries the caller's stdin
/// ([`StdioPlan::Fds`]) or the socket the pty master is sent back on
/// ([`StdioPlan::Tty`]).
pub(crate) const EXTRA_FD: RawFd = 4;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// How a run's standard streams are connected (see [`crate::Executor::run_with`]).
#[derive(Debug, Default)]
pub enum Stdio {
    /// The build path: stdin is `/dev/null`, stdout and stderr come back
    /// through pipes to the output callback.
    #[default]
    Captured,
    /// Given fds become the process's streams, unbuffered and binary-safe;
    /// `None` keeps that stream's default (`/dev/null` for stdin, the output
    /// callback for stdout and stderr). Passing a terminal here hands it to
    /// the sandbox: use [`Stdio::Tty`] (or a pipe) for terminals.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
    /// A pseudo-terminal made inside the sandbox is the process's stdin,
    /// stdout, stderr and controlling terminal (so Ctrl-C written to the
    /// master reaches it as SIGINT). `master` receives the master side once
    /// the sandbox is set up; the caller relays bytes to and from it and
    /// forwards window-size changes with [`set_window_size`]. If setup fails
    /// the sender is dropped.
    Tty {
        size: Option<WindowSize>,
        master: tokio::sync::oneshot::Sender<OwnedFd>,
    },
}

/// What the helper and init must do with the streams (the serialisable
/// part of [`Stdio`]; the fds travel as fds 1, 2 and [`EXTRA_FD`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StdioPlan {
    /// stdin `/dev/null`; stdout/stderr are whatever fds 1 and 2 are.
    #[default]
    Null,
    /// stdin is [`EXTRA_FD`].
    StdinFd,
    /// A pty; its master goes back over the socket at [`EXTRA_FD`].
    Tty(Option<WindowSize>),
}

impl StdioPlan {
    /// Whether [`EXTRA_FD`] is in use.
    pub(crate) fn uses_extra_fd(self) -> bool {
        self != Self::Null
    }
}

/// The size of the terminal `fd` refers to, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    Some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the size of the terminal whose master (or any side) is `fd`; the
/// process in the foreground of the terminal gets SIGWINCH.
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> std::io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(std::io::Error::from)
}

/// A pty pair opened inside the sandbox.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a new pty from the devpts instance whose `ptmx` is `ptmx` (the
/// sandbox's own, opened inside its root), unlocked, with `size` set.
pub(crate) fn open_pty(ptmx: OwnedFd, size: Option<WindowSize>) -> Result<Pty, String> {
    use rustix::pty::OpenptFlags;
    let master = ptmx;
    rustix::pty::unlockpt(&master).map_err(|e| format!("unlocking the pty: {e}"))?;
    // The peer is opened through the master, not by path: no name lookup
    // that a process in the sandbox could race.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(|e| format!("opening the pty's terminal side: {e}"))?;
    if let Some(size) = size {
        set_window_size(master.as_fd(), size).map_err(|e| format!("setting the pty size: {e}"))?;
    }
    Ok(Pty { master, slave })
}

/// Sends `fd` over the unix socket `sock` (one byte of payload).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    let fds = [fd.as_raw_fd()];
    sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
    .map_err(std::io::Error::from)
}

/// Receives one fd sent with [`send_fd`]: `Ok(None)` at end of stream.
/// Non-blocking sockets give `WouldBlock`.
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(space.as_mut_slice()),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut received = None;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed this fd in our table.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                received.get_or_insert(owned);
            }
        }
    }
    if received.is_none() && msg.bytes == 0 {
        return Ok(None);
    }
    received.map(Some).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the sandbox sent no terminal fd",
        )
    })
}
