//! Round trips against Debian's real `docker-registry`, checked with skopeo.
#![allow(clippy::print_stderr)]

mod support;

use rbuild_oci::manifest::ManifestFormat;
use rbuild_oci::media_types as mt;
use rbuild_registry::{ProgressKind, PushOptions, RegistryError, no_progress};
use support::image::{TempStore, build_image, build_multi_platform, build_multi_platform_as};
use support::registry::{Htpasswd, TestRegistry};
use support::skopeo;
use support::{Events, basic_auth_options, client, fast_options, image_ref, platform, pull, push};

#[tokio::test]
async fn push_then_pull_round_trip_and_second_push_uploads_nothing() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"hello from layer one", b"and layer two"]);
    let reference = image_ref(&reg.addr, "rbuild/test:v1");
    let c = client(fast_options());

    let events = Events::default();
    let cb = events.callback();
    let summary = c
        .push(
            &reference,
            &img.top,
            &src.store,
            &PushOptions::default(),
            &cb,
        )
        .await
        .unwrap_or_else(|e| panic!("push failed: {e}\n{}", reg.log()));
    assert_eq!(summary.uploaded, 3, "config + 2 layers");
    assert_eq!(summary.existed, 0);
    assert_eq!(summary.manifests, 1);
    assert_eq!(summary.digest, img.top.digest);
    let done: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.kind == ProgressKind::Done)
        .collect();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|e| e.done == e.total));

    // A tool we did not write reads what we pushed, byte for byte.
    if let Some(raw) = skopeo::inspect(&reference.to_string(), None) {
        let ours: serde_json::Value = serde_json::from_slice(&src.blob(&img.top.digest)).unwrap();
        assert_eq!(raw, ours);
    }

    let head = c.head_manifest(&reference).await.unwrap();
    assert_eq!((&head.digest, head.size), (&img.top.digest, img.top.size));

    // Pull into another store.
    let dst = TempStore::new();
    let pulled = pull(&c, &reference, "linux/amd64", &dst).await.unwrap();
    assert_eq!(pulled.manifest_descriptor.digest, img.top.digest);
    assert_eq!(pulled.config_descriptor.digest, img.configs[0].digest);
    assert_eq!(pulled.layers, img.layers);
    assert!(pulled.index.is_none());
    for d in img
        .layers
        .iter()
        .chain(&img.configs)
        .chain(std::iter::once(&img.top))
    {
        assert_eq!(dst.blob(&d.digest), src.blob(&d.digest), "{}", d.digest);
    }

    // Pushing again: every blob is found by HEAD, nothing is uploaded.
    let again = push(&c, &reference, &img, &src).await.unwrap();
    assert_eq!(
        (again.uploaded, again.existed, again.bytes_uploaded),
        (0, 3, 0)
    );
}

#[tokio::test]
async fn multi_platform_index_push_and_platform_selection() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_multi_platform(&src.store);
    let reference = image_ref(&reg.addr, "rbuild/multi:latest");
    let c = client(fast_options());
    let s = push(&c, &reference, &img, &src).await.unwrap();
    assert_eq!(s.manifests, 3, "two manifests then the index");
    assert_eq!(s.uploaded, 2 + 3, "two configs, three distinct layers");

    if let Some(raw) = skopeo::inspect(&reference.to_string(), None) {
        assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2));
    }

    let dst = TempStore::new();
    let arm = pull(&c, &reference, "linux/arm64/v8", &dst).await.unwrap();
    assert_eq!(arm.manifest_descriptor.digest, img.manifests[1].digest);
    assert_eq!(arm.config.architecture, "arm64");
    assert_eq!(arm.top_digest(), &img.top.digest);
    assert!(dst.store.contains(&img.top.digest), "index stored");

    let err = c
        .resolve(&reference, &platform("linux/s390x"), &dst.store)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("linux/arm64"), "{err}");

    // Pull by digest of a child manifest.
    let by_digest = reference.with_digest(img.manifests[0].digest.clone());
    let amd = c
        .resolve(&by_digest, &platform("linux/arm64"), &dst.store)
        .await
        .unwrap();
    assert_eq!(
        amd.config.architecture, "amd64",
        "a manifest digest is taken as is"
    );
}

#[tokio::test]
async fn cross_repository_mount_uploads_nothing() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"base layer for mounting"]);
    let c = client(fast_options());
    let base = image_ref(&reg.addr, "team/base:1");
    push(&c, &base, &img, &src).await.unwrap();
    let app = image_ref(&reg.addr, "team/app:1");
    let opts = PushOptions {
        mount_from: vec!["team/nothing-here".into(), "team/base".into()],
    };
    let s = c
        .push(&app, &img.top, &src.store, &opts, &no_progress)
        .await
        .unwrap();
    assert_eq!((s.uploaded, s.mounted), (0, 2), "{s:?}");
    let dst = TempStore::new();
    pull(&c, &app, "linux/amd64", &dst).await.unwrap();
    assert!(dst.store.contains(&img.layers[0].digest));
}

#[tokio::test]
async fn chunked_upload_to_real_registry() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let img = build_image(&src.store, &[&big]);
    let mut opts = fast_options();
    opts.chunk_threshold = Some(0);
    opts.chunk_size = 64 << 10;
    let c = client(opts);
    let reference = image_ref(&reg.addr, "rbuild/chunked:1");
    push(&c, &reference, &img, &src)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    let dst = TempStore::new();
    pull(&c, &reference, "linux/amd64", &dst).await.unwrap();
    assert_eq!(
        dst.blob(&img.layers[0].digest),
        src.blob(&img.layers[0].digest)
    );
}

/// `s3cret` hashed with bcrypt (cost 5) by libxcrypt:
/// `perl -e 'print crypt("s3cret", "\$2b\$05\$abcdefghijklmnopqrstuu")'`.
const BCRYPT_S3CRET: &str = "$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK";

#[tokio::test]
async fn basic_auth_registry() {
    let Some(reg) = TestRegistry::start_with(Some(Htpasswd {
        user: "alice",
        bcrypt: BCRYPT_S3CRET,
    })) else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"secret layer"]);
    let reference = image_ref(&reg.addr, "private/app:1");

    // Anonymous: refused with a hint.
    let err = push(&client(fast_options()), &reference, &img, &src)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("log in"), "{err}");

    // Wrong password: refused, naming the credentials.
    let opts = basic_auth_options(&reg.addr, "alice", "wrong");
    let err = push(&client(opts.clone()), &reference, &img, &src)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("check the credentials"), "{err}");
    let err = client(opts).check_login(&reg.addr).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // Right password: push and pull work.
    let c = client(basic_auth_options(&reg.addr, "alice", "s3cret"));
    push(&c, &reference, &img, &src).await.unwrap();
    skopeo::inspect(&reference.to_string(), Some("alice:s3cret"));
    let dst = TempStore::new();
    let pulled = pull(&c, &reference, "linux/amd64", &dst).await.unwrap();
    assert_eq!(pulled.manifest_descriptor.digest, img.top.digest);
}

#[tokio::test]
async fn docker_manifest_list_round_trip_keeps_media_types_and_bytes() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_multi_platform_as(&src.store, ManifestFormat::DockerV2S2);
    assert_eq!(img.top.media_type, mt::DOCKER_MANIFEST_LIST);
    let reference = image_ref(&reg.addr, "rbuild/docker:1");
    let c = client(fast_options());
    push(&c, &reference, &img, &src).await.unwrap();
    if let Some(raw) = skopeo::inspect(&reference.to_string(), None) {
        assert_eq!(raw["mediaType"], mt::DOCKER_MANIFEST_LIST);
    }
    let dst = TempStore::new();
    let events = Events::default();
    let cb = events.callback();
    let got = c
        .pull(&reference, &platform("linux/arm64"), &dst.store, &cb)
        .await
        .unwrap();
    let (index_desc, index_bytes) = got.index.clone().expect("a manifest list");
    assert_eq!(index_desc.media_type, mt::DOCKER_MANIFEST_LIST);
    assert_eq!(index_bytes, src.blob(&img.top.digest), "raw bytes kept");
    assert_eq!(got.manifest_descriptor.media_type, mt::DOCKER_MANIFEST);
    assert_eq!(got.manifest_descriptor.digest, img.manifests[1].digest);
    assert_eq!(got.config_descriptor.media_type, mt::DOCKER_CONFIG);
    assert!(
        got.layers
            .iter()
            .all(|l| l.media_type == mt::DOCKER_LAYER_GZIP)
    );

    // Progress: every layer started and finished with its full size.
    let all = events.all();
    for l in &got.layers {
        let mine: Vec<_> = all.iter().filter(|e| e.digest == l.digest).collect();
        assert_eq!(
            mine.first().map(|e| e.kind),
            Some(ProgressKind::Started),
            "{mine:?}"
        );
        let last = mine.last().expect("events");
        assert_eq!(
            (last.kind, last.done, last.total),
            (ProgressKind::Done, l.size, l.size)
        );
    }
    // Pulling again downloads nothing.
    let events = Events::default();
    let cb = events.callback();
    c.pull(&reference, &platform("linux/arm64"), &dst.store, &cb)
        .await
        .unwrap();
    assert!(events.all().iter().all(|e| e.kind == ProgressKind::Cached));
}

#[tokio::test]
async fn skopeo_copies_what_we_push_and_we_pull_what_skopeo_pushes() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"interop layer one", b"interop layer two"]);
    let ours = image_ref(&reg.addr, "interop/ours:1");
    let c = client(fast_options());
    push(&c, &ours, &img, &src).await.unwrap();

    // skopeo downloads every blob we pushed (and verifies digests) into an
    // OCI layout...
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    if !skopeo::copy(
        &format!("docker://{ours}"),
        &format!("oci:{}:x", layout.display()),
    ) {
        return;
    }
    for d in img.layers.iter().chain(&img.configs) {
        let blob = std::fs::read(layout.join("blobs/sha256").join(d.digest.hex())).unwrap();
        assert_eq!(blob, src.blob(&d.digest), "{}", d.digest);
    }
    // ...and pushes it to another repository with its own client...
    let theirs = image_ref(&reg.addr, "interop/theirs:1");
    assert!(skopeo::copy(
        &format!("oci:{}:x", layout.display()),
        &format!("docker://{theirs}")
    ));
    // ...which we pull back: same config, same layers.
    let dst = TempStore::new();
    let got = pull(&c, &theirs, "linux/amd64", &dst).await.unwrap();
    assert_eq!(got.config_descriptor.digest, img.configs[0].digest);
    let digests: Vec<_> = got.layers.iter().map(|l| &l.digest).collect();
    let want: Vec<_> = img.layers.iter().map(|l| &l.digest).collect();
    assert_eq!(digests, want);
}
