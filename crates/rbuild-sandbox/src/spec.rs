//! What a RUN step asks for: the description the solver builds and the
//! executor hands to the helper.
//!
//! A [`RunSpec`] is sent to the helper over a pipe, never on the command line
//! or through a file, because it can carry secret bytes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The root filesystem of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// Overlay of `lowerdirs` (topmost first) with a writable upper dir; the
    /// upper dir becomes the layer. Stub mount points the sandbox had to
    /// create are removed from it afterwards.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
    },
    /// A plain directory used read-write as is (the copy-based fallback
    /// where overlayfs is unavailable).
    Dir(PathBuf),
}

/// Network mode of a RUN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Own network namespace with outbound access through `slirp4netns`
    /// (host loopback unreachable).
    #[default]
    Sandbox,
    /// Own network namespace with only `lo`.
    None,
    /// The host's network namespace (needs the `network.host` entitlement,
    /// checked by the solver).
    Host,
}

/// Privilege level of a RUN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Security {
    /// Docker's default capability set, `no_new_privs`.
    #[default]
    Sandbox,
    /// All capabilities (needs the `security.insecure` entitlement).
    Insecure,
}

/// A mount inside the RUN's root, at `target` (absolute, resolved inside the
/// root; missing directories/files are created and removed afterwards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub target: String,
    pub kind: MountKind,
}

/// The mechanisms a `RUN --mount` can use. Policy (cache ids, sharing,
/// seeding) is the solver's; these are the building blocks.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host directory or file (context, stage, cache dir), recursively.
    Bind { source: PathBuf, readonly: bool },
    /// An overlay, e.g. a read-write bind of a stage whose writes must be
    /// discarded (a throwaway upper dir).
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
    },
    /// A fresh tmpfs (mode 1777), optionally size-limited in bytes.
    Tmpfs { size: Option<u64> },
    /// A read-only file holding `data`, on a private tmpfs: it never touches
    /// a disk.
    Secret {
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A secret exposed as environment variable `name` of the main process
    /// (the `target` is ignored).
    SecretEnv { name: String, data: Vec<u8> },
    /// An ssh-agent socket from the host, bound at the target.
    SshAgent {
        socket: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl std::fmt::Debug for MountKind {
    /// Secret bytes never appear in debug output (logs, panics).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind { source, readonly } => f
                .debug_struct("Bind")
                .field("source", source)
                .field("readonly", readonly)
                .finish(),
            Self::Overlay {
                lowerdirs,
                upperdir,
                workdir,
            } => f
                .debug_struct("Overlay")
                .field("lowerdirs", lowerdirs)
                .field("upperdir", upperdir)
                .field("workdir", workdir)
                .finish(),
            Self::Tmpfs { size } => f.debug_struct("Tmpfs").field("size", size).finish(),
            Self::Secret {
                data,
                mode,
                uid,
                gid,
            } => f
                .debug_struct("Secret")
                .field("len", &data.len())
                .field("mode", mode)
                .field("uid", uid)
                .field("gid", gid)
                .finish(),
            Self::SecretEnv { name, data } => f
                .debug_struct("SecretEnv")
                .field("name", name)
                .field("len", &data.len())
                .finish(),
            Self::SshAgent {
                socket,
                mode,
                uid,
                gid,
            } => f
                .debug_struct("SshAgent")
                .field("socket", socket)
                .field("mode", mode)
                .field("uid", uid)
                .field("gid", gid)
                .finish(),
        }
    }
}

/// Everything the sandbox needs to run one RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub rootfs: Rootfs,
    /// argv; `args[0]` without a `/` is looked up in the spec's `PATH`.
    pub args: Vec<String>,
    /// `KEY=value` entries (the image's Env plus the step's).
    pub env: Vec<String>,
    /// Absolute working directory inside the root, created if missing.
    pub cwd: String,
    /// `""`, `name`, `uid`, `uid:gid`, `name:group`, resolved through the
    /// image's own `/etc/passwd` and `/etc/group`.
    pub user: String,
    pub hostname: String,
    pub network: Network,
    pub security: Security,
    pub mounts: Vec<Mount>,
    /// The target architecture (`amd64`, `arm64`, ...) when it may differ
    /// from the host's; a foreign one needs a QEMU binfmt handler.
    pub platform_arch: Option<String>,
    /// Most processes the RUN may have at once (cgroup `pids.max` where we
    /// can create a cgroup, else `RLIMIT_NPROC`). `None`: 16384.
    #[serde(default)]
    pub pids_limit: Option<u64>,
    /// Extra `/etc/hosts` lines (`--add-host`): (name, address).
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// Host ports forwarded into the sandbox's network (`rbuild run -p`);
    /// only with [`Network::Sandbox`], through slirp4netns's API socket.
    /// Empty for RUN steps: slirp4netns then starts without the socket.
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
}

/// Transport protocol of a [`PortForward`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// The name slirp4netns and docker use (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One `-p HOSTIP:HOSTPORT:PORT/PROTO`: connections to `host_addr:host_port`
/// on the host reach `guest_port` of the sandbox (slirp4netns `add_hostfwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    pub protocol: Protocol,
    /// The host address to listen on (an IP address; `0.0.0.0` for all).
    pub host_addr: std::net::IpAddr,
    pub host_port: u16,
    pub guest_port: u16,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            rootfs: Rootfs::Dir(PathBuf::from("/nonexistent")),
            args: Vec::new(),
            env: vec![DEFAULT_PATH_ENV.to_string()],
            cwd: "/".into(),
            user: String::new(),
            hostname: "buildkitsandbox".into(),
            network: Network::default(),
            security: Security::default(),
            mounts: Vec::new(),
            platform_arch: None,
            pids_limit: None,
            extra_hosts: Vec::new(),
            port_forwards: Vec::new(),
        }
    }
}

/// The `PATH` a RUN gets when the image sets none (Docker's default).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default process limit per RUN.
pub const DEFAULT_PIDS_LIMIT: u64 = 16384;

/// How the RUN's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunResult {
    /// Exited with this status code.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl RunResult {
    /// Whether the step succeeded (exit status 0).
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The shell-style code: the status, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => 128 + s,
        }
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}
