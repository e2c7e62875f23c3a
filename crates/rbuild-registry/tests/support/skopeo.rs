//! skopeo, a registry client we did not write, as a second opinion on what
//! the tests push and as a source of pushes of its own.

use std::process::Command;

/// Runs `skopeo ARGS`, asserting success; `None` (after a note) when skopeo
/// is not installed, so the caller skips its check.
fn run(args: &[&str]) -> Option<Vec<u8>> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("note: skopeo not installed; skipping its check");
        return None;
    }
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// The raw manifest (or index) of `reference` on a plain-HTTP registry, as
/// skopeo reads it; `creds` is `user:password`.
pub fn inspect(reference: &str, creds: Option<&str>) -> Option<serde_json::Value> {
    let image = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&image);
    let raw = run(&args)?;
    Some(serde_json::from_slice(&raw).expect("skopeo JSON"))
}

/// `skopeo copy FROM TO` without TLS checks; false when skopeo is missing.
pub fn copy(from: &str, to: &str) -> bool {
    run(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ])
    .is_some()
}
