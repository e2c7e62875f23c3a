//! Fault injection against the in-process fake registry: retries where a
//! retry can help, clear errors where it cannot, and never a corrupt blob
//! stored or a manifest pushed over a missing blob.
#![allow(clippy::print_stderr)]

mod support;

use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::media_types as mt;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_registry::{
    HostConfig, ProgressKind, PushOptions, RegistryError, RetryPolicy, no_progress,
};
use support::fake::{Action, FakeRegistry};
use support::image::{TempStore, TestImage, build_image};
use support::{Events, client, fast_options, host_options, image_ref, pull, push, seed};

fn amd64() -> Platform {
    support::platform("linux/amd64")
}

/// Push a small image to the fake and return (reference, image, source).
async fn seeded(fake: &FakeRegistry, repo: &str) -> (Reference, TestImage, TempStore) {
    seed(
        &fake.addr,
        &format!("{repo}:1"),
        &[b"layer payload that is long enough to cut in half"],
    )
    .await
}

fn ingest_leftovers(store: &TempStore) -> usize {
    let dir = store.store.root().join("ingest");
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn server_errors_then_success_are_retried() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    fake.fault("GET", "/manifests/", 2, Action::Status(500, vec![]));
    fake.fault("GET", "/blobs/sha256", 1, Action::Status(503, vec![]));
    let dst = TempStore::new();
    let got = pull(&client(fast_options()), &reference, "linux/amd64", &dst)
        .await
        .unwrap();
    assert_eq!(got.manifest_descriptor.digest, img.top.digest);
    assert_eq!(fake.count("GET", "/manifests/"), 3);
    assert!(dst.store.contains(&img.layers[0].digest));
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_the_servers_message() {
    let fake = FakeRegistry::start().await;
    let (reference, _img, _src) = seeded(&fake, "r/app").await;
    fake.fault("GET", "/manifests/", 100, Action::Status(500, vec![]));
    let err = client(fast_options())
        .resolve(&reference, &amd64(), &TempStore::new().store)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/v2/r/app/manifests/1") && text.contains("FAULT"),
        "{text}"
    );
    assert_eq!(fake.count("GET", "/manifests/"), 4, "max_attempts");
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    fake.fault(
        "GET",
        "/manifests/",
        1,
        Action::Status(429, vec![("Retry-After".into(), "1".into())]),
    );
    // With a policy whose own backoff is huge, only Retry-After can make
    // the retry happen within the test's lifetime.
    let mut opts = fast_options();
    opts.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: std::time::Duration::from_secs(3600),
        max_delay: std::time::Duration::from_secs(3600),
        max_retry_after: std::time::Duration::from_secs(5),
    };
    let got = client(opts)
        .resolve(&reference, &amd64(), &TempStore::new().store)
        .await
        .unwrap();
    assert_eq!(got.manifest_descriptor.digest, img.top.digest);
    assert_eq!(fake.count("GET", "/manifests/"), 2);
}

#[tokio::test]
async fn stream_cut_mid_blob_is_retried_and_stores_the_right_bytes() {
    let fake = FakeRegistry::start().await;
    let (reference, img, src) = seeded(&fake, "r/app").await;
    let layer = &img.layers[0];
    fake.fault("GET", layer.digest.as_str(), 2, Action::CutBody(10));
    let dst = TempStore::new();
    let events = Events::default();
    let cb = events.callback();
    client(fast_options())
        .pull(&reference, &amd64(), &dst.store, &cb)
        .await
        .unwrap();
    assert_eq!(dst.blob(&layer.digest), src.blob(&layer.digest));
    assert_eq!(fake.count("GET", layer.digest.as_str()), 3);
    let retries = events
        .all()
        .iter()
        .filter(|e| e.kind == ProgressKind::Retrying)
        .count();
    assert_eq!(retries, 2);
    assert_eq!(ingest_leftovers(&dst), 0);
}

#[tokio::test]
async fn a_cut_download_resumes_with_range_where_it_stopped() {
    let fake = FakeRegistry::start().await;
    let (reference, img, src) = seeded(&fake, "r/app").await;
    let layer = &img.layers[0];
    fake.fault("GET", layer.digest.as_str(), 2, Action::CutBody(10));
    let dst = TempStore::new();
    let events = Events::default();
    let cb = events.callback();
    client(fast_options())
        .fetch_blob(&reference, layer, &dst.store, &cb)
        .await
        .unwrap();
    assert_eq!(dst.blob(&layer.digest), src.blob(&layer.digest));
    let gets: Vec<String> = fake
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GET ") && l.contains(layer.digest.as_str()))
        .collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert!(!gets[0].contains("[bytes="), "{gets:?}");
    assert!(gets[1].ends_with("[bytes=10-]"), "{gets:?}");
    assert!(gets[2].ends_with("[bytes=20-]"), "{gets:?}");
    let retries: Vec<u64> = events
        .all()
        .iter()
        .filter(|e| e.kind == ProgressKind::Retrying)
        .map(|e| e.done)
        .collect();
    assert_eq!(retries, vec![10, 20], "resumed progress");
    assert_eq!(ingest_leftovers(&dst), 0);
}

#[tokio::test]
async fn a_registry_ignoring_ranges_gets_a_fresh_download() {
    let fake = FakeRegistry::start().await;
    fake.ignore_ranges();
    let (reference, img, src) = seeded(&fake, "r/app").await;
    let layer = &img.layers[0];
    fake.fault("GET", layer.digest.as_str(), 1, Action::CutBody(10));
    let dst = TempStore::new();
    client(fast_options())
        .fetch_blob(&reference, layer, &dst.store, &no_progress)
        .await
        .unwrap();
    assert_eq!(dst.blob(&layer.digest), src.blob(&layer.digest));
    assert_eq!(ingest_leftovers(&dst), 0);
}

#[tokio::test]
async fn public_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fake = FakeRegistry::start().await;
    let c = client(fast_options());
    let store = TempStore::new();
    let reference = image_ref(&fake.addr, "r/x:1");
    let desc = Descriptor::new(
        mt::OCI_LAYER_GZIP,
        rbuild_oci::digest::Digest::sha256(b""),
        0,
    );
    let platform = amd64();
    let opts = PushOptions::default();
    let f = c.pull(&reference, &platform, &store.store, &no_progress);
    assert_send(&f);
    drop(f);
    let f = c.fetch_blob(&reference, &desc, &store.store, &no_progress);
    assert_send(&f);
    drop(f);
    let f = c.push(&reference, &desc, &store.store, &opts, &no_progress);
    assert_send(&f);
    drop(f);
    let f = c.head_manifest(&reference);
    assert_send(&f);
    drop(f);
    let f = c.check_login(&fake.addr);
    assert_send(&f);
    drop(f);
}

#[tokio::test]
async fn stream_always_cut_fails_and_stores_nothing() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    let layer = &img.layers[0];
    fake.fault("GET", layer.digest.as_str(), 100, Action::CutBody(10));
    let dst = TempStore::new();
    let err = client(fast_options())
        .fetch_blob(&reference, layer, &dst.store, &no_progress)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains(layer.digest.as_str()) || err.to_string().contains("/blobs/"),
        "{err}"
    );
    assert!(!dst.store.contains(&layer.digest));
    assert_eq!(ingest_leftovers(&dst), 0);
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_is_stored() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    let layer = &img.layers[0];
    fake.fault("GET", layer.digest.as_str(), 100, Action::WrongBody);
    let dst = TempStore::new();
    let err = client(fast_options())
        .fetch_blob(&reference, layer, &dst.store, &no_progress)
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch { expected, .. } => assert_eq!(expected, &layer.digest),
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(!dst.store.contains(&layer.digest));
    assert_eq!(ingest_leftovers(&dst), 0);
    // Not retried: a registry serving wrong bytes will serve them again.
    assert_eq!(fake.count("GET", layer.digest.as_str()), 1);

    // A config with the wrong bytes fails resolve the same way.
    fake.fault(
        "GET",
        img.configs[0].digest.as_str(),
        100,
        Action::WrongBody,
    );
    let err = client(fast_options())
        .resolve(&reference, &amd64(), &dst.store)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(
        !dst.store.contains(&img.top.digest),
        "nothing of a failed resolve is stored"
    );
}

#[tokio::test]
async fn manifest_by_digest_with_wrong_bytes_is_refused() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    fake.fault("GET", "/manifests/sha256", 100, Action::WrongBody);
    let pinned = reference.with_digest(img.top.digest.clone());
    let err = client(fast_options())
        .fetch_manifest(&pinned)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn oversized_or_overlong_content_is_refused() {
    let fake = FakeRegistry::start().await;
    // A 5 MiB "manifest".
    let huge = format!(r#"{{"schemaVersion":2,"x":"{}"}}"#, "a".repeat(5 << 20));
    fake.put_manifest("r/huge", "1", mt::OCI_MANIFEST, huge.as_bytes());
    let reference = image_ref(&fake.addr, "r/huge:1");
    let err = client(fast_options())
        .fetch_manifest(&reference)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");

    // A blob longer than its descriptor says.
    let d = fake.put_blob("r/huge", b"0123456789abcdef");
    let short = Descriptor::new(mt::OCI_LAYER_GZIP, d, 4);
    let dst = TempStore::new();
    let err = client(fast_options())
        .fetch_blob(&reference, &short, &dst.store, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch { actual: 16, .. }),
        "{err}"
    );
    assert!(!dst.store.contains(&short.digest));
}

#[tokio::test]
async fn push_retries_a_failed_upload_and_a_dropped_connection() {
    let fake = FakeRegistry::start().await;
    let src = TempStore::new();
    let img = build_image(&src.store, &[&vec![7u8; 300_000]]);
    let reference = image_ref(&fake.addr, "r/push:1");
    fake.fault("PUT", "/blobs/uploads/", 1, Action::Status(500, vec![]));
    fake.fault("PUT", "/blobs/uploads/", 1, Action::DropRequest(1000));
    let s = push(&client(fast_options()), &reference, &img, &src)
        .await
        .unwrap();
    assert_eq!(s.uploaded, 2);
    assert!(fake.has_manifest("r/push", "1"));
    for d in img.layers.iter().chain(&img.configs) {
        assert!(fake.has_blob(&d.digest));
    }
    assert_eq!(
        fake.count("PUT", "/blobs/uploads/"),
        4,
        "two blobs, two failures"
    );
}

#[tokio::test]
async fn push_never_puts_a_manifest_over_a_missing_blob() {
    let fake = FakeRegistry::start().await;
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"one", b"two"]);
    let reference = image_ref(&fake.addr, "r/safe:1");
    let layer = img.layers[1].digest.as_str().to_owned();
    // The second layer's upload always fails.
    fake.add_fault(support::fake::Fault {
        method: "HEAD",
        path_contains: layer.clone(),
        times: 100,
        action: Action::Status(500, vec![]),
    });
    let err = push(&client(fast_options()), &reference, &img, &src)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert_eq!(
        fake.count("PUT", "/manifests/"),
        0,
        "no manifest was pushed"
    );

    // Content missing locally: refused before anything is sent.
    let fake2 = FakeRegistry::start().await;
    src.store.remove(&img.layers[0].digest).unwrap();
    let reference2 = image_ref(&fake2.addr, "r/safe:1");
    let err = push(&client(fast_options()), &reference2, &img, &src)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::MissingContent { .. }), "{err}");
    assert!(fake2.log().is_empty(), "{:?}", fake2.log());
}

#[tokio::test]
async fn chunk_min_length_forces_chunked_upload() {
    let fake = FakeRegistry::start().await;
    fake.set_chunk_min(100_000);
    let src = TempStore::new();
    let data: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
    let img = build_image(&src.store, &[&data]);
    let reference = image_ref(&fake.addr, "r/chunks:1");
    let mut opts = fast_options();
    opts.chunk_size = 1; // The registry's minimum wins.
    push(&client(opts), &reference, &img, &src).await.unwrap();
    let layer_size = img.layers[0].size;
    let expected_patches = layer_size.div_ceil(100_000) + 1; // + the config
    assert_eq!(
        fake.count("PATCH", "/blobs/uploads/") as u64,
        expected_patches,
        "{:?}",
        fake.log()
    );
    assert!(fake.has_blob(&img.layers[0].digest));
}

#[tokio::test]
async fn bearer_tokens_are_fetched_cached_and_refreshed() {
    let fake = FakeRegistry::start_bearer().await;
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"bearer layer"]);
    let c = client(fast_options());
    let base = image_ref(&fake.addr, "team/base:1");
    push(&c, &base, &img, &src).await.unwrap();
    let first_tokens = fake.token_requests().len();
    assert_eq!(
        first_tokens,
        1,
        "one token for the whole push: {:?}",
        fake.token_requests()
    );
    assert!(fake.token_requests()[0].contains("repository%3Ateam%2Fbase%3Apull%2Cpush"));

    // Tokens expire early: the next request gets 401, the client fetches a
    // new one and carries on.
    fake.revoke_tokens();
    let dst = TempStore::new();
    pull(&c, &base, "linux/amd64", &dst).await.unwrap();
    assert_eq!(
        fake.token_requests().len(),
        2,
        "{:?}",
        fake.token_requests()
    );

    // Cross-repository mount: one token covers push on the target and pull
    // on the source.
    let app = image_ref(&fake.addr, "team/app:1");
    let opts = PushOptions {
        mount_from: vec!["team/base".into()],
    };
    let s = c
        .push(&app, &img.top, &src.store, &opts, &no_progress)
        .await
        .unwrap();
    assert_eq!(s.mounted, 2, "{s:?}");
    let last = fake.token_requests().last().cloned().unwrap_or_default();
    assert!(
        last.contains("repository%3Ateam%2Fapp%3Apull%2Cpush")
            && last.contains("repository%3Ateam%2Fbase%3Apull"),
        "{last}"
    );
}

#[tokio::test]
async fn mirrors_are_tried_first_and_fall_through_to_the_origin() {
    let origin = FakeRegistry::start().await;
    let mirror = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&origin, "r/app").await;
    let c = client(host_options(
        &origin.addr,
        HostConfig {
            mirrors: vec![mirror.addr.clone()],
            ..HostConfig::default()
        },
    ));
    // The mirror has nothing: falls through to the origin.
    let dst = TempStore::new();
    let got = pull(&c, &reference, "linux/amd64", &dst).await.unwrap();
    assert_eq!(got.manifest_descriptor.digest, img.top.digest);
    assert!(mirror.count("GET", "/manifests/") >= 1);

    // The mirror has the image: the origin is not asked for it again.
    let before = origin.log().len();
    let (_r, _i, _s) = seeded(&mirror, "r/app").await;
    let dst2 = TempStore::new();
    pull(&c, &reference, "linux/amd64", &dst2).await.unwrap();
    assert_eq!(origin.log().len(), before, "{:?}", &origin.log()[before..]);
}

#[tokio::test]
async fn head_manifest_reports_the_digest_and_falls_back_to_get() {
    let fake = FakeRegistry::start().await;
    let (reference, img, _src) = seeded(&fake, "r/app").await;
    let c = client(fast_options());
    let d = c.head_manifest(&reference).await.unwrap();
    assert_eq!(
        d,
        Descriptor::new(mt::OCI_MANIFEST, img.top.digest.clone(), img.top.size)
    );
    assert_eq!(fake.count("GET", "/manifests/"), 0);

    // A registry that answers HEAD without the digest header: GET instead.
    fake.fault("HEAD", "/manifests/", 1, Action::Status(200, vec![]));
    let d = c.head_manifest(&reference).await.unwrap();
    assert_eq!(d.digest, img.top.digest);
    assert_eq!(fake.count("GET", "/manifests/"), 1);

    let missing = image_ref(&fake.addr, "r/none:1");
    let err = c.head_manifest(&missing).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestNotFound { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_registry_that_loses_chunk_data_is_caught() {
    let fake = FakeRegistry::start().await;
    fake.set_chunk_min(1000);
    fake.fault(
        "PATCH",
        "/blobs/uploads/",
        1,
        Action::Status(
            202,
            vec![
                ("Location".into(), "/v2/r/lossy/blobs/uploads/x".into()),
                ("Range".into(), "0-5".into()),
            ],
        ),
    );
    let src = TempStore::new();
    let img = build_image(&src.store, &[&vec![1u8; 5000]]);
    let reference = image_ref(&fake.addr, "r/lossy:1");
    let err = push(&client(fast_options()), &reference, &img, &src)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reports range `0-5`"), "{err}");
    assert_eq!(fake.count("PUT", "/manifests/"), 0);
}

#[tokio::test]
async fn docker_hub_pulls_go_through_a_configured_mirror() {
    // No network here: a Docker Hub pull can only succeed through the mirror.
    let mirror = FakeRegistry::start().await;
    let (_r, img, _s) = seeded(&mirror, "library/busybox").await;
    let opts = host_options(
        "docker.io",
        HostConfig {
            mirrors: vec![format!("http://{}", mirror.addr)],
            ..HostConfig::default()
        },
    );
    let reference = Reference::parse("busybox:1").unwrap();
    assert_eq!(reference.registry, "docker.io");
    let dst = TempStore::new();
    let got = pull(&client(opts), &reference, "linux/amd64", &dst)
        .await
        .unwrap();
    assert_eq!(got.manifest_descriptor.digest, img.top.digest);
    assert!(
        mirror.count("GET", "/v2/library/busybox/manifests/1?ns=docker.io") >= 1,
        "{:?}",
        mirror.log()
    );
}

#[tokio::test]
async fn parallel_transfers_stay_within_the_limit() {
    let fake = FakeRegistry::start().await;
    let src = TempStore::new();
    let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let refs: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    let img = build_image(&src.store, &refs);
    let reference = image_ref(&fake.addr, "r/many:1");
    let mut opts = fast_options();
    opts.max_concurrent_blobs = 2;
    let c = client(opts);
    // Slow answers so that transfers overlap as much as the client allows.
    fake.fault("HEAD", "/blobs/", 100, Action::Delay(50));
    let s = push(&c, &reference, &img, &src).await.unwrap();
    assert_eq!(s.uploaded, 9);
    assert!(fake.max_inflight() <= 2, "{}", fake.max_inflight());

    fake.fault("GET", "/blobs/", 100, Action::Delay(50));
    let dst = TempStore::new();
    let got = pull(&c, &reference, "linux/amd64", &dst).await.unwrap();
    assert_eq!(got.layers.len(), 8);
    assert!(fake.max_inflight() <= 2, "{}", fake.max_inflight());
    for l in &img.layers {
        assert!(dst.store.contains(&l.digest));
    }
}

#[tokio::test]
async fn ipv6_loopback_registry_is_plain_http_and_works() {
    let Some(fake) = FakeRegistry::start_ipv6().await else {
        return;
    };
    assert!(fake.addr.starts_with("[::1]:"), "{}", fake.addr);
    let (reference, img, _src) = seeded(&fake, "v6/app").await;
    assert_eq!(reference.registry, fake.addr);
    let dst = TempStore::new();
    let got = pull(&client(fast_options()), &reference, "linux/amd64", &dst)
        .await
        .unwrap();
    assert_eq!(got.manifest_descriptor.digest, img.top.digest);
}
