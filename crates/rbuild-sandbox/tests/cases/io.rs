//! Networks, secrets, `RUN --mount` kinds and the ssh-agent proxy.
#![allow(clippy::print_stdout)]

use rbuild_sandbox::{Mount, MountKind, Network, SandboxError};

use crate::R;
use crate::support::{self, Ctx, tree_contains};

pub(crate) async fn network_none(c: &Ctx) -> R {
    let a = c.layer();
    let out = c
        .run(&c.spec(
            &a,
            "ip route; ip -o link | cut -d: -f2; nc -w 2 192.0.2.1 80 </dev/null 2>&1; true",
        ))
        .await;
    out.ok()?;
    ensure!(
        out.stdout.lines().any(|l| l.trim() == "lo"),
        "no lo: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.lines().any(|l| l.trim() == "tap0"),
        "an interface besides lo: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.contains("default"),
        "a route exists: {}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("unreachable"),
        "connect did not fail as unreachable: {}",
        out.stdout
    );
    Ok(())
}

/// This host's address on its default route (no packet is sent).
pub(crate) fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

pub(crate) async fn network_sandbox(c: &Ctx) -> R {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    // Accept and immediately close every connection, counting them.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let external = host_address();
    let mut script = format!(
        "ip -o addr show tap0 | grep -q 10.0.2.100 && echo tap-ok; ip route | grep -q default && echo route-ok; \
         for h in 127.0.0.1 10.0.2.2; do timeout 5 nc -w 2 $h {port} </dev/null >/dev/null 2>&1 && echo reached-$h; done; "
    );
    if let Some(ip) = external {
        script.push_str(&format!(
            "echo hello | timeout 5 nc -w 2 {ip} {port} && echo outbound-ok; "
        ));
    }
    script.push_str("true");
    let a = c.layer();
    let mut spec = c.spec(&a, &script);
    spec.network = Network::Sandbox;
    let out = c.run(&spec).await;
    if let Err(SandboxError::SlirpMissing) = out.result {
        println!("note: slirp4netns missing, network test skipped");
        return Ok(());
    }
    out.ok()?;
    ensure!(
        out.stdout.contains("tap-ok") && out.stdout.contains("route-ok"),
        "slirp network not configured: {}",
        out.stdout
    );
    ensure!(
        !out.stdout.contains("reached"),
        "host loopback reachable: {}",
        out.stdout
    );
    if external.is_some() {
        ensure!(
            out.stdout.contains("outbound-ok"),
            "no outbound connection through slirp4netns: {}",
            out.stdout
        );
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        ensure!(
            n == 1,
            "the host server saw {n} connections, expected only the outbound one"
        );
    } else {
        println!("note: no non-loopback host address; outbound check skipped");
    }
    Ok(())
}

pub(crate) async fn secrets(c: &Ctx) -> R {
    let secret = format!("S3CRET-{}-{}", std::process::id(), c.rootless);
    let a = c.layer();
    let mut spec = c.spec(&a, &format!("test \"$(cat /run/secrets/tok)\" = {secret} && test \"$TOKEN\" = {secret} && stat -c '%a %u' /run/secrets/tok && ! echo x > /run/secrets/tok 2>/dev/null && echo done > /out"));
    spec.mounts = vec![
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                data: secret.as_bytes().to_vec(),
                mode: 0o440,
                uid: 0,
                gid: 0,
            },
        },
        Mount {
            target: "/ignored".into(),
            kind: MountKind::SecretEnv {
                name: "TOKEN".into(),
                data: secret.as_bytes().to_vec(),
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.trim() == "440 0",
        "secret mode/owner: {}",
        out.stdout
    );
    ensure!(a.upper.join("out").exists(), "step did not run");
    if let Some(p) = tree_contains(c.dir.path(), secret.as_bytes()) {
        return Err(format!("secret found on disk in {}", p.display()));
    }
    if let Some(p) = tree_contains(&std::env::temp_dir(), secret.as_bytes()) {
        return Err(format!("secret found on disk in {}", p.display()));
    }
    Ok(())
}

pub(crate) async fn mount_kinds(c: &Ctx) -> R {
    let host = c.dir.path().join("host-src");
    let rw = c.dir.path().join("host-rw");
    for d in [&host, &rw] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(host.join("file"), "from-host").map_err(|e| e.to_string())?;
    // An overlay mount whose writes go to its own (throwaway) upper.
    let stage = c.store.prepare(Some(&c.base)).map_err(|e| e.to_string())?;
    let scratch = c.store.prepare(Some(&c.base)).map_err(|e| e.to_string())?;
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        "cat /src/file && ! touch /src/new 2>/dev/null && echo w > /cache/w && df /tmpfs | grep -q tmpfs && echo t > /tmpfs/t && echo o > /stage/bin/o && test -x /stage/bin/busybox && echo OK",
    );
    spec.mounts = vec![
        Mount {
            target: "/src".into(),
            kind: MountKind::Bind {
                source: host.clone(),
                readonly: true,
            },
        },
        Mount {
            target: "/cache".into(),
            kind: MountKind::Bind {
                source: rw.clone(),
                readonly: false,
            },
        },
        Mount {
            target: "/tmpfs".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
        Mount {
            target: "/stage".into(),
            kind: MountKind::Overlay {
                lowerdirs: stage.lowers.clone(),
                upperdir: scratch.upper.clone(),
                workdir: scratch.work.clone(),
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout.contains("from-host") && out.stdout.contains("OK"),
        "{}",
        out.stdout
    );
    ensure!(rw.join("w").exists(), "rw bind write lost");
    ensure!(
        scratch.upper.join("bin/o").exists(),
        "overlay mount write not in its upper"
    );
    let left = support::entries(&a.upper)?;
    ensure!(left.is_empty(), "mounts leaked into the layer: {left:?}");
    Ok(())
}

pub(crate) async fn ssh_agent(c: &Ctx) -> R {
    let sock = c.dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = std::io::BufReader::new(&conn);
            if r.read_line(&mut line).is_ok() && line == "ping\n" {
                let _ = (&conn).write_all(b"pong\n");
            }
        }
    });
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (user, id) = if c.ranged { ("app", 1000) } else { ("", 0) };
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        "stat -c '%a %u %g' /run/agent.sock && /t __test-connect /run/agent.sock",
    );
    spec.user = user.into();
    spec.mounts = vec![
        Mount {
            target: "/usr".into(),
            kind: MountKind::Bind {
                source: "/usr".into(),
                readonly: true,
            },
        },
        Mount {
            target: "/t".into(),
            kind: MountKind::Bind {
                source: exe,
                readonly: true,
            },
        },
        Mount {
            target: "/run/agent.sock".into(),
            kind: MountKind::SshAgent {
                socket: sock,
                mode: 0o600,
                uid: id,
                gid: id,
            },
        },
    ];
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout == format!("600 {id} {id}\npong\n"),
        "agent proxy: {out:?}"
    );
    let left = support::entries(&a.upper)?;
    ensure!(
        left.is_empty(),
        "mount points leaked into the layer: {left:?}"
    );
    Ok(())
}

/// `--network=host` shares the host's network namespace (the entitlement is
/// the solver's): the host's loopback services are reachable.
pub(crate) async fn network_host(c: &Ctx) -> R {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            drop(conn);
        }
    });
    let a = c.layer();
    let mut spec = c.spec(
        &a,
        &format!("timeout 5 nc -w 2 127.0.0.1 {port} </dev/null && echo reached; hostname"),
    );
    spec.network = Network::Host;
    spec.hostname = "hostnet".into();
    let out = c.run(&spec).await;
    out.ok()?;
    ensure!(
        out.stdout == "reached\nhostnet\n",
        "host network: {:?}",
        out.stdout
    );
    Ok(())
}
