//! Image config parity with BuildKit: every Dockerfile under
//! `tests/e2e/parity/` is built by Debian's dockerd (which runs BuildKit) on a
//! private socket and by rbuild, from the same busybox base, and the two
//! image configs are compared field by field.
//!
//! Debian 12's dockerd is 20.10 (BuildKit ~0.8). Where its output differs from
//! current BuildKit (moby/buildkit master), rbuild follows current BuildKit and
//! the expected config is rewritten by one of the commented exceptions in
//! [`to_current_buildkit`] before the comparison.
//!
//! A case file may carry `# parity-build-arg: NAME=VALUE` and
//! `# parity-label: NAME=VALUE` lines (passed as `--build-arg` / `--label` to
//! both builders) and `# parity-target: STAGE`.

use crate::support::{self, ok, skip};
use serde_json::{Map, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian package's client: it speaks the 20.10 daemon's API and has the
/// built-in BuildKit client (`DOCKER_BUILDKIT=1`). A newer client elsewhere
/// on PATH would need buildx.
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// The diff ID of an empty tar (1024 zero bytes): what 20.10 records for a
/// step that changed nothing.
const EMPTY_TAR_DIFF_ID: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// The base of the corpus. `stubs/` holds the mount points a RUN needs
/// (/dev, /proc, /sys, /etc/hosts, /etc/resolv.conf): without them 20.10
/// leaves the stubs its runc created in every RUN's layer (current BuildKit
/// removes them), and `RUN true` would not be an empty layer there.
/// A second base, whose ONBUILD triggers run in the builds that use it.
const ONBUILD_DOCKERFILE: &str = "FROM parity-base\nONBUILD RUN echo yes > /triggered\nONBUILD ENV FROM_TRIGGER=1\nONBUILD WORKDIR /trig\n\
    WORKDIR /srv\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"echo base\"]\nHEALTHCHECK --interval=10s CMD true\n\
    SHELL [\"/bin/sh\", \"-xc\"]\nSTOPSIGNAL SIGQUIT\nEXPOSE 8080\nVOLUME /state\nLABEL base=onbuild\n";

const BASE_DOCKERFILE: &str = "FROM scratch\nCOPY stubs/ /\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n";

/// dockerd on a private socket with its own data and exec roots, in a mount
/// namespace of its own (its overlay mounts vanish with it). Dropping it
/// stops the daemon and everything it started (its process group).
struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    fn start() -> Result<Dockerd, String> {
        let dir = support::open_tempdir();
        let p = |name: &str| dir.path().join(name);
        let log = std::fs::File::create(p("dockerd.log")).map_err(|e| e.to_string())?;
        let ns = format!("rbuild-parity-{}", std::process::id());
        let mut cmd = Command::new("unshare");
        cmd
            .args(["--mount", "--propagation", "private", "--", DOCKERD])
            .arg(format!("--host=unix://{}", p("docker.sock").display()))
            .arg(format!("--data-root={}", p("data").display()))
            .arg(format!("--exec-root={}", p("exec").display()))
            .arg(format!("--pidfile={}", p("dockerd.pid").display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg(format!("--containerd-namespace={ns}"))
            .arg(format!("--containerd-plugins-namespace={ns}-plugins"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        // If the test process dies without dropping us (killed, aborted),
        // the daemon is told to stop instead of living on.
        // SAFETY: prctl is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        let mut d = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if d.docker().args(["version", "--format", "{{.Server.Version}}"]).output().is_ok_and(|o| o.status.success()) {
                return Ok(d);
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("dockerd exited ({status}): {}", d.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!("dockerd did not answer within 60 s: {}", d.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg(format!("--host=unix://{}", self.dir.path().join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env("DOCKER_BUILDKIT", "1");
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // SIGTERM first: dockerd stops its containerd and unmounts.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Then whatever is left of its process group.
        let _ = kill(nix::unistd::Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One Dockerfile of the corpus.
struct Case {
    name: String,
    dockerfile: String,
    build_args: Vec<String>,
    labels: Vec<String>,
    target: Option<String>,
}

impl Case {
    /// The ports of the case's EXPOSE line whose set of ports is `set`, in
    /// the order written, ranges expanded (`$VAR` words expand to values of
    /// `ARG NAME=value` lines of the case).
    fn expose_ports_matching(&self, set: &std::collections::BTreeSet<&str>) -> Option<Vec<String>> {
        let defaults: Vec<(String, String)> = self
            .dockerfile
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ARG "))
            .flat_map(quoted_words)
            .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.replace('"', ""))))
            .collect();
        let expand = |w: &str| -> String {
            match w.strip_prefix('$') {
                Some(name) => {
                    let (name, rest) = name.split_at(name.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(name.len()));
                    let value = defaults.iter().rev().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
                    format!("{value}{rest}")
                }
                None => w.trim_matches('"').to_string(),
            }
        };
        for line in self.dockerfile.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some((keyword, rest)) = words.split_first() else { continue };
            if !keyword.eq_ignore_ascii_case("EXPOSE") {
                continue;
            }
            let mut ports = Vec::new();
            for word in rest.iter().map(|w| expand(w)) {
                for spec in word.split_whitespace() {
                    // `[ip:]host:container`: the container port is exposed.
                    let spec = spec.rsplit_once(':').map_or(spec, |(_, container)| container);
                    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else { continue };
                    ports.extend((lo..=hi).map(|p| format!("{p}/{proto}")));
                }
            }
            let written: std::collections::BTreeSet<&str> = ports.iter().map(String::as_str).collect();
            if &written == set {
                return Some(ports);
            }
        }
        None
    }

    /// The targets of every `RUN --mount` in the Dockerfile, without the
    /// leading `/` (as layer tars name them).
    fn mount_targets(&self) -> Vec<String> {
        self.dockerfile
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("--mount="))
            .flat_map(|spec| spec.split(','))
            .filter_map(|kv| kv.strip_prefix("target=").or_else(|| kv.strip_prefix("dst=")))
            .map(|t| t.trim_start_matches('/').trim_end_matches('/').to_string())
            .collect()
    }

    /// `created_by` (a flagless COPY/ADD history entry as 20.10 writes it)
    /// with the `--chown`/`--chmod` flags of the Dockerfile line it came
    /// from, in current BuildKit's order.
    fn copy_with_flags(&self, created_by: &str) -> Option<String> {
        for line in self.dockerfile.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some((keyword, rest)) = words.split_first() else { continue };
            if !matches!(*keyword, "COPY" | "ADD") {
                continue;
            }
            let (flags, args): (Vec<&str>, Vec<&str>) = rest.iter().partition(|w| w.starts_with("--"));
            let plain = format!("{keyword} {} # buildkit", args.join(" "));
            if plain != created_by {
                continue;
            }
            let mut out = keyword.to_string();
            for name in ["--chown=", "--chmod="] {
                if let Some(f) = flags.iter().find(|f| f.starts_with(name)) {
                    out.push(' ');
                    out.push_str(f);
                }
            }
            return Some(format!("{out} {} # buildkit", args.join(" ")));
        }
        None
    }

    /// The value ARG `name` gets from `--build-arg` or, failing that, from a
    /// global `ARG name=value` (before the first FROM) or the automatic
    /// platform ARGs (`TARGETPLATFORM` …, this machine's platform).
    fn arg_value(&self, name: &str) -> Option<String> {
        let from_flag = self.build_args.iter().find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_string));
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            other => (other, ""),
        };
        let platform = if variant.is_empty() { format!("linux/{arch}") } else { format!("linux/{arch}/{variant}") };
        let automatic = |kind: &str| match kind {
            "PLATFORM" => Some(platform.clone()),
            "OS" => Some("linux".to_string()),
            "ARCH" => Some(arch.to_string()),
            "VARIANT" => Some(variant.to_string()),
            _ => None,
        };
        let platform_arg = name.strip_prefix("TARGET").or_else(|| name.strip_prefix("BUILD")).and_then(automatic);
        from_flag.or(platform_arg).or_else(|| {
            self.dockerfile
                .lines()
                .take_while(|l| !l.trim_start().to_ascii_uppercase().starts_with("FROM "))
                .filter_map(|l| l.trim().strip_prefix("ARG "))
                .flat_map(|rest| rest.split_whitespace())
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_string))
        })
    }
}

fn corpus() -> Vec<Case> {
    let dir = support::repo().join("tests/e2e/parity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/e2e/parity")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let dockerfile = std::fs::read_to_string(&p).unwrap();
            let header = |key: &str| -> Vec<String> {
                dockerfile.lines().filter_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).collect()
            };
            Case {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                build_args: header("# parity-build-arg:"),
                labels: header("# parity-label:"),
                target: header("# parity-target:").into_iter().next(),
                dockerfile,
            }
        })
        .collect()
}

/// The context every case is built in: busybox plus a few files to copy.
fn context(dir: &Path, dockerfile: &str) {
    std::fs::create_dir_all(dir.join("dir/sub")).unwrap();
    for stub in ["dev", "proc", "sys", "etc"] {
        std::fs::create_dir_all(dir.join("stubs").join(stub)).unwrap();
    }
    std::fs::write(dir.join("stubs/etc/hosts"), "").unwrap();
    std::fs::write(dir.join("stubs/etc/resolv.conf"), "").unwrap();
    std::fs::copy("/bin/busybox", dir.join("busybox")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("dir/a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("dir/sub/b.txt"), "b\n").unwrap();
    ok(Command::new("tar").arg("-cf").arg(dir.join("archive.tar")).arg("-C").arg(dir).args(["hello.txt", "dir"]));
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}

/// The image config inside a `docker save` / `-o type=docker` tar, and the
/// layer files its manifest lists (extracted under `scratch`).
fn config_of(tar: &Path, scratch: &Path) -> (Value, Vec<PathBuf>) {
    std::fs::create_dir_all(scratch).unwrap();
    ok(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(scratch));
    let manifest: Value = serde_json::from_slice(&std::fs::read(scratch.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest[0];
    let config = entry["Config"].as_str().expect("manifest.json names the config");
    let layers = entry["Layers"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str().map(|l| scratch.join(l))).collect())
        .unwrap_or_default();
    (serde_json::from_slice(&std::fs::read(scratch.join(config)).unwrap()).unwrap(), layers)
}

/// Whether a (20.10) layer holds nothing but the mount stubs of the case's
/// `RUN --mount` targets (and their parent directories).
fn only_mount_stubs(layer: &Path, case: &Case) -> bool {
    let targets = case.mount_targets();
    if targets.is_empty() {
        return false;
    }
    let list = ok(Command::new("tar").arg("-tf").arg(layer));
    let entries: Vec<String> =
        String::from_utf8_lossy(&list.stdout).lines().map(|l| l.trim_end_matches('/').to_string()).collect();
    !entries.is_empty()
        && entries.iter().all(|e| targets.iter().any(|t| t == e || t.starts_with(&format!("{e}/"))))
}

/// Rewrites what Debian's dockerd 20.10 (BuildKit ~0.8) produced into what
/// current BuildKit produces for the same Dockerfile. Each rule is a known
/// divergence between the two; rbuild follows current BuildKit.
fn to_current_buildkit(expected: &mut Value, layers: &mut Vec<PathBuf>, case: &Case) {
    // 1. Empty layers. 20.10's exporter keeps a step that changed nothing
    //    (`RUN true`, WORKDIR of an existing directory) as a real, empty tar
    //    layer; BuildKit's own image exporter drops empty layers from the
    //    manifest and marks their history entries `empty_layer` (since
    //    moby/buildkit#196; moby/buildkit#1993 notes that Moby's exporter,
    //    the one 20.10 uses, does not).
    // 5. Mount stubs. 20.10 leaves the directory or file it created as the
    //    mount point of a `RUN --mount` target in that RUN's layer; current
    //    BuildKit removes the stubs it made (executor mount stub cleaner), so
    //    a RUN that wrote only into its mounts makes an empty layer.
    let diff_ids: Vec<String> = expected["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let empty: Vec<bool> = diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| d == EMPTY_TAR_DIFF_ID || layers.get(i).is_some_and(|l| only_mount_stubs(l, case)))
        .collect();
    if let Some(history) = expected["history"].as_array_mut() {
        let claiming = history.iter_mut().filter(|h| h["empty_layer"] != Value::Bool(true));
        for (layer, h) in claiming.enumerate() {
            if empty.get(layer).copied().unwrap_or(false) {
                h["empty_layer"] = Value::Bool(true);
            }
        }
    }
    let keep = |i: usize| !empty.get(i).copied().unwrap_or(false);
    let kept: Vec<Value> =
        diff_ids.into_iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, d)| Value::String(d)).collect();
    expected["rootfs"]["diff_ids"] = Value::Array(kept);
    let mut i = 0;
    layers.retain(|_| {
        i += 1;
        keep(i - 1)
    });

    if let Some(wd) = expected["config"]["WorkingDir"].as_str().filter(|w| w.starts_with('/')).map(clean_path) {
        expected["config"]["WorkingDir"] = Value::String(wd);
    }
    let Some(history) = expected["history"].as_array_mut() else { return };
    for h in history.iter_mut() {
        let Some(created_by) = h["created_by"].as_str().map(str::to_string) else { continue };
        // 2. ARG history. 20.10 writes an ARG whose value comes from
        //    `--build-arg` or from a global ARG as the bare name (`ARG B`);
        //    current BuildKit writes the value it got (`ARG B=bee`,
        //    dispatchArg).
        if let Some(rest) = created_by.strip_prefix("ARG ") {
            let words: Vec<String> = rest
                .split(' ')
                .map(|w| if w.contains('=') { w.to_string() } else { case.arg_value(w).map_or(w.to_string(), |v| format!("{w}={v}")) })
                .collect();
            h["created_by"] = Value::String(format!("ARG {}", words.join(" ")));
        }
        // 4. COPY/ADD flags in history. 20.10 writes `COPY src dest`;
        //    current BuildKit keeps `--parents`, `--chown=…` and `--chmod=…`
        //    (dispatchCopy). The flags are taken from the case's own line.
        if let Some(with_flags) = case.copy_with_flags(&created_by) {
            h["created_by"] = Value::String(with_flags);
        }
        // 6. WORKDIR paths. 20.10 keeps an absolute WORKDIR as written
        //    (`/app/`); current BuildKit cleans it (system.NormalizeWorkdir:
        //    `/app`), in the history and in `WorkingDir`.
        if let Some(path) = created_by.strip_prefix("WORKDIR ") {
            h["created_by"] = Value::String(format!("WORKDIR {}", clean_path(path)));
        }
        // 7. EXPOSE history. 20.10 prints the port set as a Go map
        //    (`EXPOSE map[443/tcp:{} 80/tcp:{}]`: sorted, repeats gone);
        //    current BuildKit prints the list as written
        //    (`EXPOSE [80/tcp 443/tcp]`, convert_expose.go). The order is
        //    lost in 20.10's output, so the entry is rewritten in the
        //    case's own order, taken from its EXPOSE line with that set.
        if let Some(list) = created_by.strip_prefix("EXPOSE map[").and_then(|r| r.strip_suffix(']')) {
            let set: std::collections::BTreeSet<&str> = list.split(' ').filter_map(|p| p.strip_suffix(":{}")).collect();
            if let Some(ports) = case.expose_ports_matching(&set) {
                h["created_by"] = Value::String(format!("EXPOSE [{}]", ports.join(" ")));
            }
        }
        // 8. RUN `|N` prefix. 20.10 lists a re-declared ARG once per
        //    declaration (`|3 A=1 C=2 C=2`); current BuildKit once, where it
        //    was first declared (`|2 A=1 C=2`, runCommandString). Only
        //    prefixes with a repeated name are rewritten (their values are
        //    single words in this corpus).
        if let Some(deduped) = dedup_run_args(&created_by) {
            h["created_by"] = Value::String(deduped);
        }
        // 3. HEALTHCHECK history. 20.10's healthcheck config has no
        //    StartInterval (added with `--start-interval`); current BuildKit
        //    prints it between the start period and the retries: one more
        //    duration in `&{[test] interval timeout start-period
        //    start-interval retries}`.
        //    Entries a base image brought along (written by rbuild) already
        //    have five fields after the test and stay as they are.
        if created_by.starts_with("HEALTHCHECK &{") {
            let fields = created_by.rsplit_once("] ").map_or(0, |(_, tail)| tail.split(' ').count());
            if let (4, Some(at)) = (fields, created_by.rfind(" '")) {
                h["created_by"] = Value::String(format!("{} \"0s\"{}", &created_by[..at], &created_by[at..]));
            }
        }
    }
}

/// `RUN |N K=V … cmd` with each repeated `K` kept once, at its first place
/// with its last value; `None` when no name repeats.
fn dedup_run_args(created_by: &str) -> Option<String> {
    let rest = created_by.strip_prefix("RUN |")?;
    let (n, rest) = rest.split_once(' ')?;
    let n: usize = n.parse().ok()?;
    let words: Vec<&str> = rest.splitn(n + 1, ' ').collect();
    if words.len() != n + 1 {
        return None;
    }
    let mut args: Vec<(&str, &str)> = Vec::new();
    for w in &words[..n] {
        let (k, v) = w.split_once('=')?;
        match args.iter_mut().find(|(ak, _)| *ak == k) {
            Some(slot) => slot.1 = v,
            None => args.push((k, v)),
        }
    }
    if args.len() == n {
        return None;
    }
    let list: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(format!("RUN |{} {} {}", args.len(), list.join(" "), words[n]))
}

/// Words split at blanks outside double quotes (quotes kept).
fn quoted_words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Lexical cleaning of an absolute path, as Go's `path.Clean`.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `omitempty` and `null` differ between builders (20.10 writes
/// `"OnBuild": null`): absent, null, false, "", [] and {} all mean "unset".
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) => {
            // `{}` values are kept: ExposedPorts and Volumes are sets.
            let m: Map<String, Value> = o
                .iter()
                .filter_map(|(k, v)| match v {
                    Value::Object(inner) if inner.is_empty() => Some((k.clone(), v.clone())),
                    _ => normalize(v).map(|v| (k.clone(), v)),
                })
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        other => Some(other.clone()),
    }
}

/// The `config` fields a Dockerfile can set. Not compared: `Image`,
/// `Hostname` and the other container-create fields (20.10 leaves them out,
/// BuildKit never sets them).
const CONFIG_FIELDS: &[&str] = &[
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal",
    "Healthcheck", "OnBuild", "Shell", "ArgsEscaped",
];

/// Field-by-field differences between `expected` (BuildKit) and `actual`
/// (rbuild). Ignored, because they legitimately differ: the value of
/// `created` (only its presence is compared) and of every history `created`
/// (build times), `rootfs.diff_ids` values (layer bytes
/// carry file times and tar details; their number is compared),
/// `moby.buildkit.buildinfo.v0` / `container` / `docker_version` (builder
/// metadata, not image content).
fn differences(expected: &Value, exp_layers: usize, actual: &Value, act_layers: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: String, e: Option<Value>, a: Option<Value>| {
        if e != a {
            out.push(format!("{what}: BuildKit {} / rbuild {}", show(&e), show(&a)));
        }
    };
    for f in CONFIG_FIELDS {
        check(format!("config.{f}"), normalize(&expected["config"][f]), normalize(&actual["config"][f]));
    }
    for f in ["architecture", "os", "variant", "author"] {
        check(f.to_string(), normalize(&expected[f]), normalize(&actual[f]));
    }
    check("rootfs.type".into(), normalize(&expected["rootfs"]["type"]), normalize(&actual["rootfs"]["type"]));
    // Its value is a time; that it is there is not.
    let dated = |v: &Value| Some(Value::Bool(v["created"].is_string()));
    check("created (present)".into(), dated(expected), dated(actual));
    let eh = expected["history"].as_array().cloned().unwrap_or_default();
    let ah = actual["history"].as_array().cloned().unwrap_or_default();
    for i in 0..eh.len().max(ah.len()) {
        for f in ["created_by", "empty_layer", "comment", "author"] {
            let e = eh.get(i).and_then(|h| normalize(&h[f]));
            let a = ah.get(i).and_then(|h| normalize(&h[f]));
            check(format!("history[{i}].{f}"), e, a);
        }
    }
    let count = |v: &Value| v["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
    check("rootfs.diff_ids (count)".into(), Some(count(expected).into()), Some(count(actual).into()));
    check("manifest layers (count)".into(), Some(exp_layers.into()), Some(act_layers.into()));
    out
}

fn show(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "(unset)".to_string(), |v| v.to_string())
}

fn rbuild(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.arg(format!("--root={}", state.display()));
    c
}

fn ready() -> Result<(), String> {
    if !support::is_root() {
        return Err("dockerd needs root".into());
    }
    for tool in [DOCKERD, DOCKER, "/bin/busybox"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing (scripts/setup-deps installs docker.io and busybox-static)"));
        }
    }
    if !support::have("unshare") {
        return Err("unshare (util-linux) is missing".into());
    }
    Ok(())
}

#[test]
fn image_configs_match_buildkit_field_by_field() {
    if let Err(why) = ready() {
        skip(&why);
        return;
    }
    let dockerd = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            skip(&format!("Debian's dockerd cannot run here: {why}"));
            return;
        }
    };
    let work = support::open_tempdir();
    let state = work.path().join("state");

    // The base: built by rbuild, kept in its image store for `FROM
    // parity-base`, and loaded into dockerd under the same name.
    let base_ctx = work.path().join("base");
    context(&base_ctx, BASE_DOCKERFILE);
    let base_tar = work.path().join("base.tar");
    ok(rbuild(&state)
        .args(["build", "--progress=plain", "--load", "-t", "parity-base:latest"])
        .arg(format!("--output=type=docker,dest={}", base_tar.display()))
        .arg(&base_ctx));
    ok(dockerd.docker().arg("load").arg("-i").arg(&base_tar));
    let onbuild_ctx = work.path().join("onbuild");
    context(&onbuild_ctx, ONBUILD_DOCKERFILE);
    let onbuild_tar = work.path().join("onbuild.tar");
    ok(rbuild(&state)
        .args(["build", "--progress=plain", "--load", "-t", "parity-onbuild:latest"])
        .arg(format!("--output=type=docker,dest={}", onbuild_tar.display()))
        .arg(&onbuild_ctx));
    ok(dockerd.docker().arg("load").arg("-i").arg(&onbuild_tar));

    let mut report = Vec::new();
    let cases = corpus();
    assert!(cases.len() >= 12, "the corpus has {} cases", cases.len());
    for case in &cases {
        let ctx = work.path().join(format!("ctx-{}", case.name));
        context(&ctx, &case.dockerfile);
        let mut extra = Vec::new();
        for a in &case.build_args {
            extra.push("--build-arg".to_string());
            extra.push(a.clone());
        }
        for l in &case.labels {
            extra.push("--label".to_string());
            extra.push(l.clone());
        }
        if let Some(t) = &case.target {
            extra.push(format!("--target={t}"));
        }
        // BuildKit. `--network=none`: the daemon runs without a bridge; the
        // network mode does not appear in the config.
        let tag = format!("parity-{}", case.name.to_lowercase());
        ok(dockerd.docker().args(["build", "--network=none", "-q", "-t", &tag]).args(&extra).arg(&ctx));
        let docker_tar = work.path().join(format!("{}-docker.tar", case.name));
        ok(dockerd.docker().args(["save", "-o"]).arg(&docker_tar).arg(&tag));
        let (mut expected, mut exp_layers) = config_of(&docker_tar, &work.path().join(format!("{}-docker", case.name)));
        to_current_buildkit(&mut expected, &mut exp_layers, case);
        let exp_layers = exp_layers.len();

        let rbuild_tar = work.path().join(format!("{}-rbuild.tar", case.name));
        ok(rbuild(&state)
            .args(["build", "--progress=plain"])
            .args(&extra)
            .arg(format!("--output=type=docker,dest={}", rbuild_tar.display()))
            .arg(&ctx));
        let (actual, act_layers) = config_of(&rbuild_tar, &work.path().join(format!("{}-rbuild", case.name)));
        let act_layers = act_layers.len();
        for d in differences(&expected, exp_layers, &actual, act_layers) {
            report.push(format!("{}: {d}", case.name));
        }
    }
    assert!(report.is_empty(), "image configs differ from BuildKit's:\n{}", report.join("\n"));
}
