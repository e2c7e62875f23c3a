//! The rootless executor: every RUN step in its own namespaces.
//!
//! Three entry points, called by our binaries:
//! 1. [`helper::run_if_requested`] first thing in `main()`: turns the
//!    process into the sandbox helper when started as one;
//! 2. [`process::enter_build_namespace`] before any thread: private mount
//!    namespace as root, or a user namespace with the subordinate id range
//!    when unprivileged;
//! 3. [`Executor::run`] from async code, once per RUN; or
//!    [`Executor::run_with`] to connect the process to the caller's fds or
//!    to a pty made inside the sandbox (`rbuild run -i` / `-t`, see the
//!    [`stdio`] module).
//!
//! Layout of a run: executor (tokio) → helper (single-threaded re-exec;
//! unshares pid/uts/ipc/net) → init (PID 1; own mount namespace, overlay
//! root, /proc, /dev, /etc files, `RUN --mount`s, `pivot_root`) → the
//! user's command (Docker's default capabilities, `no_new_privs`, a
//! seccomp filter, the image's user, fds > 2 closed).
//!
//! The executor needs a tokio runtime with the I/O driver enabled
//! (`enable_io`/`enable_all`): it uses child processes and unix pipes.
//! Process limits: a cgroup-v1 `pids` cgroup per RUN where we may create
//! one (real root on a v1/hybrid host), otherwise `RLIMIT_NPROC` (which the
//! kernel does not apply to real root); the init kills every process of the
//! RUN when its main process exits in any case.

pub mod executor;
pub mod helper;
mod init;
mod mounts;
pub mod process;
pub(crate) mod proto;
pub mod qemu;
mod rootfs;
mod seccomp;
pub mod spec;
mod ssh;
pub mod stdio;

pub use executor::{Executor, HelperCommand, SandboxError};
pub use process::{NamespaceInfo, NamespaceMode, enter_build_namespace};
pub use spec::{
    Mount, MountKind, Network, OutputStream, PortForward, Protocol, Rootfs, RunResult, RunSpec,
    Security,
};
pub use stdio::{Stdio, WindowSize};
