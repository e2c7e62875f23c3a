//! Self-signed TLS registries: trusted through `ca`, or `insecure`, and
//! refused otherwise.
#![allow(clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_registry::{HostConfig, RegistryClient, RegistryError};
use support::image::{TempStore, build_image};
use support::registry::{Options, TestRegistry};
use support::{client, host_options, image_ref, push};

/// A self-signed certificate for 127.0.0.1 (cert, key), or `None` without
/// the openssl tool.
fn self_signed(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => Some((cert, key)),
        Ok(o) => panic!("openssl failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            eprintln!("note: openssl not installed; skipping");
            None
        }
    }
}

fn with_host(addr: &str, host: HostConfig) -> RegistryClient {
    client(host_options(addr, host))
}

#[tokio::test]
async fn self_signed_registry_with_ca_or_insecure_and_refused_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path(), "server") else {
        return;
    };
    let Some((other_cert, _)) = self_signed(dir.path(), "other") else {
        return;
    };
    let Some(reg) = TestRegistry::start_opts(&Options {
        htpasswd: None,
        tls: Some((&cert, &key)),
    }) else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"tls layer"]);
    let reference = image_ref(&reg.addr, "tls/app:1");

    // Trusted through an extra CA file.
    let c = with_host(
        &reg.addr,
        HostConfig {
            ca: vec![cert.clone()],
            ..HostConfig::default()
        },
    );
    push(&c, &reference, &img, &src)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));

    // `insecure`: any certificate.
    let c = with_host(
        &reg.addr,
        HostConfig {
            insecure: true,
            ..HostConfig::default()
        },
    );
    let (desc, _) = c.fetch_manifest(&reference).await.unwrap();
    assert_eq!(desc.digest, img.top.digest);

    // A CA that did not sign the server's certificate: refused.
    let c = with_host(
        &reg.addr,
        HostConfig {
            ca: vec![other_cert],
            ..HostConfig::default()
        },
    );
    let err = c.fetch_manifest(&reference).await.unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("https://{}/v2/", reg.addr)),
        "{err}"
    );

    // A CA file that is not a certificate: the client is not built.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let opts = host_options(
        &reg.addr,
        HostConfig {
            ca: vec![bogus],
            ..HostConfig::default()
        },
    );
    let err = RegistryClient::new(opts).unwrap_err();
    assert!(err.to_string().contains("bogus.pem"), "{err}");
}
