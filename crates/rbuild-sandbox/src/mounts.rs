//! The mounts every RUN gets: `/proc` (with the host-sensitive parts masked
//! or read-only, as Docker does), `/sys` read-only, a minimal `/dev`, and
//! `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` provided from memory
//! (bind-mounted files that never land in the layer).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rbuild_snapshot::mount as m;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::rootfs::{Kind, RootBuilder, RootfsError, errno, memory_file, resolve_in};
use crate::spec::{Network, RunSpec};

/// Paths under /proc that are made read-only.
const PROC_READONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
/// Paths under /proc hidden behind /dev/null (files) or an empty tmpfs (dirs).
const PROC_MASKED: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
];

const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn new_fs(
    fstype: &'static str,
    opts: &[(&str, &str)],
    attrs: MountAttrFlags,
) -> Result<OwnedFd, RootfsError> {
    let err = |e: rustix::io::Errno| RootfsError::Path {
        what: "mounting",
        path: fstype.to_string(),
        source: errno(e),
    };
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(err)?;
    for (k, v) in opts {
        rustix::mount::fsconfig_set_string(&fs, *k, *v).map_err(err)?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(err)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(err)
}

/// Sets up /proc, /sys, /dev and the /etc files.
pub fn system_mounts(rb: &mut RootBuilder, spec: &RunSpec) -> Result<(), RootfsError> {
    let hardened = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let proc_fs = new_fs("proc", &[], hardened)?;
    rb.attach(proc_fs.as_fd(), "/proc", Kind::Dir)?;
    if spec.security == crate::spec::Security::Sandbox {
        mask_proc(rb)?;
    }
    // sysfs needs an owned network namespace when rootless; skip it if refused.
    match new_fs("sysfs", &[], hardened | MountAttrFlags::MOUNT_ATTR_RDONLY) {
        Ok(sys) => rb.attach(sys.as_fd(), "/sys", Kind::Dir)?,
        Err(e) => tracing::debug!(error = %e, "no /sys in the sandbox"),
    }
    dev(rb)?;
    etc_files(rb, spec)
}

fn mask_proc(rb: &mut RootBuilder) -> Result<(), RootfsError> {
    for p in PROC_READONLY {
        let Ok(fd) = resolve_in(rb.root(), p, OFlags::PATH) else {
            continue;
        };
        let tree = rustix::mount::open_tree(
            &fd,
            "",
            rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC
                | rustix::mount::OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| RootfsError::Path {
            what: "read-only bind",
            path: (*p).into(),
            source: errno(e),
        })?;
        m::set_readonly(tree.as_fd(), false)?;
        m::attach_at(tree.as_fd(), fd.as_fd(), p)?;
    }
    for p in PROC_MASKED {
        let Ok(fd) = resolve_in(rb.root(), p, OFlags::PATH) else {
            continue;
        };
        let is_dir = rustix::fs::fstat(&fd)
            .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir());
        let mask = if is_dir {
            new_fs("tmpfs", &[("size", "0")], MountAttrFlags::MOUNT_ATTR_RDONLY)?
        } else {
            m::bind_mount_fd(std::path::Path::new("/dev/null"), false, false)?
        };
        m::attach_at(mask.as_fd(), fd.as_fd(), p)?;
    }
    Ok(())
}

fn dev(rb: &mut RootBuilder) -> Result<(), RootfsError> {
    let devfs = new_fs(
        "tmpfs",
        &[("mode", "755"), ("size", "65536k")],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    rb.attach(devfs.as_fd(), "/dev", Kind::Dir)?;
    let dev = resolve_in(rb.root(), "dev", OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| {
        RootfsError::Path {
            what: "opening",
            path: "/dev".into(),
            source: errno(e),
        }
    })?;
    let err = |p: &str| {
        let p = p.to_string();
        move |e: rustix::io::Errno| RootfsError::Path {
            what: "creating",
            path: format!("/dev/{p}"),
            source: errno(e),
        }
    };
    for node in DEV_NODES {
        let host = std::path::Path::new("/dev").join(node);
        if !host.exists() {
            continue;
        }
        rustix::fs::openat(
            &dev,
            *node,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(err(node))?;
        let target = rustix::fs::openat(
            &dev,
            *node,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err(node))?;
        let bind = m::bind_mount_fd(&host, false, false)?;
        m::attach_at(bind.as_fd(), target.as_fd(), node)?;
    }
    for (dir, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)] {
        rustix::fs::mkdirat(&dev, dir, Mode::from_raw_mode(mode)).map_err(err(dir))?;
        rustix::fs::chmodat(
            &dev,
            dir,
            Mode::from_raw_mode(mode),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(err(dir))?;
    }
    let pts = new_fs(
        "devpts",
        &[("ptmxmode", "0666"), ("mode", "0620"), ("gid", "5")],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .or_else(|_| {
        new_fs(
            "devpts",
            &[("ptmxmode", "0666"), ("mode", "0620")],
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )
    })?;
    rb.attach(pts.as_fd(), "/dev/pts", Kind::Dir)?;
    let shm = new_fs(
        "tmpfs",
        &[("mode", "1777"), ("size", "65536k")],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    rb.attach(shm.as_fd(), "/dev/shm", Kind::Dir)?;
    if let Ok(mq) = new_fs(
        "mqueue",
        &[],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    ) {
        rb.attach(mq.as_fd(), "/dev/mqueue", Kind::Dir)?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        rustix::fs::symlinkat(target, &dev, link).map_err(err(link))?;
    }
    Ok(())
}

/// Reads a small host file (our own configuration, trusted but bounded).
fn host_file(path: &str) -> String {
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(64 * 1024).read_to_string(&mut s);
    }
    s
}

/// `/etc/resolv.conf` for the RUN: slirp4netns's DNS forwarder in the
/// sandbox network, otherwise the host's with loopback servers (unreachable
/// from another network namespace) replaced by public ones, as BuildKit does.
pub fn resolv_conf(network: Network, host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns.starts_with("127.") || ns == "::1";
            if network == Network::Sandbox || (loopback && network != Network::Host) {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if network == Network::Sandbox {
        out.insert_str(0, "nameserver 10.0.2.3\n");
    } else if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

fn etc_files(rb: &mut RootBuilder, spec: &RunSpec) -> Result<(), RootfsError> {
    let tmp = new_fs(
        "tmpfs",
        &[("mode", "0755"), ("size", "1m")],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    let hostname = if spec.hostname.is_empty() {
        "buildkitsandbox"
    } else {
        &spec.hostname
    };
    let mut hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, addr) in &spec.extra_hosts {
        // One line per entry: no whitespace may smuggle in another line.
        if name.is_empty()
            || addr.is_empty()
            || name.chars().chain(addr.chars()).any(char::is_whitespace)
        {
            return Err(RootfsError::Refused {
                what: "extra host",
                path: format!("{name}:{addr}"),
                reason: "name and address must be non-empty without whitespace",
            });
        }
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    let resolv = resolv_conf(spec.network, &host_file("/etc/resolv.conf"));
    for (name, data, target) in [
        ("hosts", hosts, "/etc/hosts"),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
    ] {
        let f = memory_file(tmp.as_fd(), name, data.as_bytes(), 0o644, None, false)?;
        rb.attach(f.as_fd(), target, Kind::File)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_per_network() {
        let host =
            "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n";
        let sb = resolv_conf(Network::Sandbox, host);
        assert!(sb.starts_with("nameserver 10.0.2.3\n"));
        assert!(!sb.contains("192.0.2.1") && sb.contains("search example.org"));
        let none = resolv_conf(Network::None, host);
        assert!(!none.contains("127.0.0.53") && none.contains("192.0.2.1"));
        let only_local = resolv_conf(Network::None, "nameserver 127.0.0.1\n");
        assert!(only_local.contains("8.8.8.8"));
        assert!(resolv_conf(Network::Host, host).contains("127.0.0.53"));
    }
}
