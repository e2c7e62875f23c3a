//! Start Debian's `docker-registry` (the CNCF distribution registry) on a
//! free loopback port with its own config and storage, for tests.
//!
//! The idea is reusable anywhere a real registry is needed: pick a port,
//! write a config into a temp dir, spawn, poll `/v2/` until it answers,
//! kill on drop. Tests call [`TestRegistry::start`] and skip (return early
//! with a note) when it gives `None` because the binary is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BINARY: &str = "/usr/bin/docker-registry";

/// A running registry; stopped when dropped.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`, usable as the registry part of a reference.
    pub addr: String,
    /// Where the registry keeps its blobs.
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

/// Basic-auth settings: a user and the bcrypt hash of their password.
pub struct Htpasswd<'a> {
    pub user: &'a str,
    pub bcrypt: &'a str,
}

/// How to run the registry.
#[derive(Default)]
pub struct Options<'a> {
    /// Require basic auth.
    pub htpasswd: Option<Htpasswd<'a>>,
    /// Serve TLS with this PEM certificate and key.
    pub tls: Option<(&'a Path, &'a Path)>,
}

impl TestRegistry {
    /// An open registry, or `None` when `docker-registry` is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// A registry requiring basic auth.
    pub fn start_with(auth: Option<Htpasswd<'_>>) -> Option<Self> {
        Self::start_opts(&Options {
            htpasswd: auth,
            tls: None,
        })
    }

    /// A registry with the given options.
    pub fn start_opts(opts: &Options<'_>) -> Option<Self> {
        if !Path::new(BINARY).exists() {
            eprintln!("note: {BINARY} not installed; skipping");
            return None;
        }
        // A port picked by bind(0) can be taken by someone else before the
        // registry binds it; try a few times.
        for _ in 0..3 {
            if let Some(r) = Self::try_start(opts) {
                return Some(r);
            }
        }
        panic!("docker-registry did not start");
    }

    fn try_start(opts: &Options<'_>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: rbuild-test-secret\n",
            storage.display()
        );
        if let Some((cert, key)) = opts.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(a) = &opts.htpasswd {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{}:{}\n", a.user, a.bcrypt)).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut reg = TestRegistry {
            child,
            addr,
            storage,
            _dir: dir,
        };
        // Generous: CI machines are small and busy.
        for _ in 0..800 {
            if let Ok(Some(_)) = reg.child.try_wait() {
                return None;
            }
            if reg.ping() {
                return Some(reg);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// True once the port answers HTTP (a TLS port answers a plain request
    /// with 400, which is enough to know it is up).
    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).as_bytes())
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
    }

    /// The registry's log (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
