//! The private protocol between the executor (async, in the build process)
//! and the sandbox helper (a single-threaded re-exec of our binary).
//!
//! Executor → helper, on the helper's stdin: one length-prefixed JSON
//! [`HelperRequest`], then (network sandbox only) one byte `g` once the
//! user-mode network is attached. Helper/init → executor, on fd 3: a
//! sequence of length-prefixed JSON [`Event`]s. Lengths are big-endian u32.
//! With a [`StdioPlan`] other than `Null`, fd 4 carries the caller's stdin
//! or a unix socket on which the init sends the pty master back.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::{RunResult, RunSpec};
use crate::stdio::StdioPlan;

/// The fd on which the helper reports events.
pub const STATUS_FD: i32 = 3;

/// Largest message accepted (a RunSpec with secrets is small; this bounds a
/// hostile or corrupted peer).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// What the executor asks the helper to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelperRequest {
    pub spec: RunSpec,
    /// An empty directory on the host where the rootfs is mounted before
    /// `pivot_root` (inside the sandbox's private mount namespace).
    pub mountpoint: PathBuf,
    /// Wait for a `g` byte on stdin after reporting the netns (slirp4netns).
    pub wait_for_network: bool,
    /// A cgroup-v1 `pids` directory to create and join, when writable.
    pub pids_cgroup: Option<PathBuf>,
    /// How the user's process gets its standard streams.
    #[serde(default)]
    pub stdio: StdioPlan,
}

/// A path the sandbox created in the rootfs only to mount on, relative to
/// the root, to be removed from the upper dir after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stub {
    pub path: String,
    pub is_dir: bool,
    /// Ancestors that did not exist in the upper dir before the stub was
    /// made (overlayfs copied them up), deepest first.
    pub copied_up: Vec<String>,
}

/// What the helper reports.
#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    /// The helper's network namespace exists; attach slirp4netns to `pid`.
    NetnsReady { pid: i32 },
    /// Stub mount points to clean from the upper dir.
    Stubs(Vec<Stub>),
    /// The user's process was started.
    Started,
    /// The user's process ended.
    Exited(RunResult),
    /// Setup failed before or at exec.
    Error { message: String },
}

/// Writes one length-prefixed JSON message.
pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)
}

/// Reads one length-prefixed JSON message (blocking).
pub fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {len} bytes is too large"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Decodes messages from a growing buffer (the async side).
pub fn take_message<T: for<'de> Deserialize<'de>>(buf: &mut Vec<u8>) -> std::io::Result<Option<T>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {len} bytes is too large"),
        ));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[4..4 + len])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    buf.drain(..4 + len);
    Ok(Some(msg))
}
