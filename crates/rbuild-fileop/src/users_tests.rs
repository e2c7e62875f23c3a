#![allow(clippy::print_stderr)] // tests print a note when they skip

use super::*;
use std::fs;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
broken:x:notanumber:5:x:/x:/bin/sh
1234:x:4321:4321::/num:/bin/sh
nohome:x:2000:2000
";

const GROUP: &str = "\
root:x:0:
daemon:x:1:
appgrp:x:1001:
audio:x:29:app,daemon
video:x:44:app
staff:x:50: app
wheel:x:10:root
dup:x:29:app
";

fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("etc")).unwrap();
    if let Some(p) = passwd {
        fs::write(d.path().join("etc/passwd"), p).unwrap();
    }
    if let Some(g) = group {
        fs::write(d.path().join("etc/group"), g).unwrap();
    }
    d
}

fn user(uid: u32, gid: u32, sg: &[u32], home: Option<&str>) -> ResolvedUser {
    ResolvedUser {
        uid,
        gid,
        additional_gids: sg.to_vec(),
        home: home.map(String::from),
    }
}

#[test]
fn resolve_user_table() {
    let d = rootfs(Some(PASSWD), Some(GROUP));
    let cases: Vec<(&str, ResolvedUser)> = vec![
        ("", user(0, 0, &[10], Some("/root"))),
        ("root", user(0, 0, &[10], Some("/root"))),
        ("0", user(0, 0, &[10], Some("/root"))),
        ("app", user(1000, 1001, &[29, 44, 50], Some("/home/app"))),
        ("1000", user(1000, 1001, &[29, 44, 50], Some("/home/app"))),
        ("app:appgrp", user(1000, 1001, &[], Some("/home/app"))),
        ("app:video", user(1000, 44, &[], Some("/home/app"))),
        ("app:7", user(1000, 7, &[], Some("/home/app"))),
        ("1000:1000", user(1000, 1000, &[], None)),
        ("5555", user(5555, 0, &[], None)),
        ("5555:audio", user(5555, 29, &[], None)),
        ("daemon", user(1, 1, &[29], Some("/usr/sbin"))),
        ("app:", user(1000, 1001, &[29, 44, 50], Some("/home/app"))),
        (":video", user(0, 44, &[], Some("/root"))),
        ("nohome", user(2000, 2000, &[], Some(""))),
        // A numeric spec matches by uid, not by a name made of digits.
        ("1234", user(1234, 0, &[], None)),
        ("4321", user(4321, 4321, &[], Some("/num"))),
    ];
    for (spec, want) in cases {
        let got = resolve_user(d.path(), spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(got, want, "spec `{spec}`");
    }
}

#[test]
fn resolve_user_errors() {
    let d = rootfs(Some(PASSWD), Some(GROUP));
    for spec in [
        "nobody",
        "broken",
        "app:nogroup",
        "1000:nogroup",
        "-1",
        "99999999999",
        "a:b:c",
        "x\0y",
    ] {
        let r = resolve_user(d.path(), spec);
        assert!(r.is_err(), "spec `{spec}` should fail, got {r:?}");
    }
    let msg = resolve_user(d.path(), "nobody").unwrap_err().to_string();
    assert!(msg.contains("`nobody`"), "{msg}");
}

#[test]
fn missing_databases_allow_numeric_only() {
    let d = rootfs(None, None);
    assert_eq!(resolve_user(d.path(), "").unwrap(), user(0, 0, &[], None));
    assert_eq!(
        resolve_user(d.path(), "42").unwrap(),
        user(42, 0, &[], None)
    );
    assert_eq!(
        resolve_user(d.path(), "42:43").unwrap(),
        user(42, 43, &[], None)
    );
    assert!(matches!(
        resolve_user(d.path(), "app"),
        Err(UserError::UnknownUser { .. })
    ));
    assert!(matches!(
        resolve_user(d.path(), "42:grp"),
        Err(UserError::UnknownGroup { .. })
    ));
    // No /etc at all.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        resolve_user(empty.path(), "7").unwrap(),
        user(7, 0, &[], None)
    );
}

#[test]
fn resolve_chown_table() {
    let d = rootfs(Some(PASSWD), Some(GROUP));
    let cases: &[(&str, (u32, u32))] = &[
        ("", (0, 0)),
        ("1000", (1000, 1000)),
        ("1000:1000", (1000, 1000)),
        ("10:11", (10, 11)),
        ("app", (1000, 1001)),
        ("app:video", (1000, 44)),
        ("app:44", (1000, 44)),
        ("1000:video", (1000, 44)),
        ("5555", (5555, 5555)),
        ("daemon:", (1, 1)),
        (":video", (0, 44)),
    ];
    for (spec, want) in cases {
        let got = resolve_chown(d.path(), spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(got, *want, "chown `{spec}`");
    }
    for spec in ["ghost", "app:ghosts", "1:2:3"] {
        assert!(resolve_chown(d.path(), spec).is_err(), "chown `{spec}`");
    }
}

#[test]
fn passwd_symlink_to_host_file_stays_in_root() {
    // /etc/passwd -> /etc/passwd would be the host's file if followed naively;
    // inside the root it points at itself, so resolution fails (ELOOP) or
    // finds nothing, and a name that only the host knows is never found.
    let d = rootfs(None, None);
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
    let r = resolve_user(d.path(), "root");
    assert!(r.is_err(), "{r:?}");

    // A relative escape is clamped to the root too.
    let d = rootfs(None, None);
    std::os::unix::fs::symlink("../../../../../../etc/passwd", d.path().join("etc/passwd"))
        .unwrap();
    assert!(resolve_user(d.path(), "root").is_err());

    // A symlink to another file inside the root is followed inside it.
    let d = rootfs(None, Some(GROUP));
    fs::write(d.path().join("etc/passwd.real"), PASSWD).unwrap();
    std::os::unix::fs::symlink("/etc/passwd.real", d.path().join("etc/passwd")).unwrap();
    assert_eq!(resolve_user(d.path(), "app").unwrap().uid, 1000);
}

#[test]
fn passwd_fifo_is_an_error_not_a_hang() {
    let d = rootfs(None, None);
    let p = d.path().join("etc/passwd");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    assert!(matches!(
        resolve_user(d.path(), "app"),
        Err(UserError::NotRegular { .. })
    ));
}

#[test]
fn passwd_symlink_to_dev_zero_is_an_error() {
    let d = rootfs(None, None);
    fs::create_dir_all(d.path().join("dev")).unwrap();
    let dev_zero = d.path().join("dev/zero");
    let made = nix::sys::stat::mknod(
        &dev_zero,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    );
    if made.is_err() {
        eprintln!("note: cannot mknod (not root); skipping /dev/zero case");
        return;
    }
    std::os::unix::fs::symlink("/dev/zero", d.path().join("etc/passwd")).unwrap();
    assert!(matches!(
        resolve_user(d.path(), "app"),
        Err(UserError::NotRegular { .. })
    ));
}

#[test]
fn passwd_directory_and_oversize_are_errors() {
    let d = rootfs(None, None);
    fs::create_dir(d.path().join("etc/passwd")).unwrap();
    assert!(matches!(
        resolve_user(d.path(), "app"),
        Err(UserError::NotRegular { .. })
    ));

    let d = rootfs(None, None);
    let f = fs::File::create(d.path().join("etc/passwd")).unwrap();
    f.set_len(MAX_DB_SIZE + 10).unwrap();
    assert!(matches!(
        resolve_user(d.path(), "app"),
        Err(UserError::TooLarge { .. })
    ));
}
