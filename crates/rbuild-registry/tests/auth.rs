//! Bearer-token and login flows against the fake registry's token service,
//! with credentials from a Docker config file.
#![allow(clippy::print_stderr)]

mod support;

use std::sync::Arc;

use base64::Engine;
use rbuild_registry::{Credential, DockerConfigCredentials, RegistryError};
use support::fake::FakeRegistry;
use support::image::{TempStore, build_image};
use support::{basic_auth_options, client, fast_options, image_ref, push, seed};

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn docker_config_credentials_reach_the_token_service() {
    let fake = FakeRegistry::start_bearer().await;
    fake.require_token_basic(&basic("bob", "pw"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = DockerConfigCredentials::new(dir.path().join("config.json"));
    cfg.store(&fake.addr, &Credential::basic("bob", "pw"))
        .unwrap();

    let mut opts = fast_options();
    opts.credentials = Arc::new(cfg);
    let c = client(opts);
    c.check_login(&fake.addr).await.unwrap();

    let src = TempStore::new();
    let img = build_image(&src.store, &[b"private layer"]);
    let reference = image_ref(&fake.addr, "bob/app:1");
    push(&c, &reference, &img, &src).await.unwrap();
    let reqs = fake.token_requests();
    assert!(
        reqs.iter()
            .all(|r| r.starts_with("GET ") && r.contains("account=bob")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.contains("service=fake-registry")),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn refused_credentials_fail_login_with_the_realm_named() {
    let fake = FakeRegistry::start_bearer().await;
    fake.require_token_basic(&basic("bob", "pw"));
    let opts = basic_auth_options(&fake.addr, "bob", "nope");
    let err = client(opts).check_login(&fake.addr).await.unwrap_err();
    match &err {
        RegistryError::Token { realm, message } => {
            assert!(realm.ends_with("/token"), "{realm}");
            assert!(
                message.contains("401") && message.contains("DENIED"),
                "{message}"
            );
        }
        other => panic!("expected a token error, got {other}"),
    }
    // No credentials at all: login is refused before any request.
    let before = fake.log().len();
    let err = client(fast_options())
        .check_login(&fake.addr)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert_eq!(fake.log().len(), before);
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let fake = FakeRegistry::start_bearer().await;
    fake.require_token_basic(&basic("never", "used"));
    let opts = basic_auth_options(&fake.addr, "<token>", "good-refresh");
    client(opts).check_login(&fake.addr).await.unwrap();
    let reqs = fake.token_requests();
    assert!(
        reqs[0].starts_with("POST ") && reqs[0].contains("client_id=rbuild"),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn anonymous_bearer_pull_needs_no_credentials() {
    let fake = FakeRegistry::start_bearer().await;
    let (reference, img, _src) = seed(&fake.addr, "library/pub:1", &[b"public layer"]).await;
    let (desc, _) = client(fast_options())
        .fetch_manifest(&reference)
        .await
        .unwrap();
    assert_eq!(desc.digest, img.top.digest);
    assert!(
        fake.token_requests()
            .iter()
            .all(|r| !r.contains("account="))
    );
}
