//! Round trips against Debian's real `docker-registry`, checked with skopeo.
#![allow(clippy::print_stderr)]

mod support;

use std::process::Command;

use rbuild_oci::manifest::ManifestFormat;
use rbuild_oci::media_types as mt;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::Reference;
use rbuild_registry::{
    Credential, ProgressKind, PushOptions, RegistryError, StaticCredentials, no_progress,
};
use support::image::{TempStore, build_image, build_multi_platform, build_multi_platform_as};
use support::registry::{Htpasswd, TestRegistry};
use support::{Events, client, fast_options};

fn skopeo_inspect(reference: &str, creds: Option<&str>) -> Option<serde_json::Value> {
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("note: skopeo not installed; skipping its check");
        return None;
    }
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--raw"]);
    if let Some(c) = creds {
        cmd.arg("--creds").arg(c);
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("skopeo JSON"))
}

#[tokio::test]
async fn push_then_pull_round_trip_and_second_push_uploads_nothing() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"hello from layer one", b"and layer two"]);
    let reference = Reference::parse(&format!("{}/rbuild/test:v1", reg.addr)).unwrap();
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
    if let Some(raw) = skopeo_inspect(&reference.to_string(), None) {
        let ours: serde_json::Value =
            serde_json::from_slice(&src.store.read_all(&img.top.digest).unwrap()).unwrap();
        assert_eq!(raw, ours);
    }

    let head = c.head_manifest(&reference).await.unwrap();
    assert_eq!((&head.digest, head.size), (&img.top.digest, img.top.size));

    // Pull into another store.
    let dst = TempStore::new();
    let pulled = c
        .pull(
            &reference,
            &Platform::parse("linux/amd64").unwrap(),
            &dst.store,
            &no_progress,
        )
        .await
        .unwrap();
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
        assert_eq!(
            dst.store.read_all(&d.digest).unwrap(),
            src.store.read_all(&d.digest).unwrap(),
            "{}",
            d.digest
        );
    }

    // Pushing again: every blob is found by HEAD, nothing is uploaded.
    let again = c
        .push(
            &reference,
            &img.top,
            &src.store,
            &PushOptions::default(),
            &no_progress,
        )
        .await
        .unwrap();
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
    let reference = Reference::parse(&format!("{}/rbuild/multi:latest", reg.addr)).unwrap();
    let c = client(fast_options());
    let s = c
        .push(
            &reference,
            &img.top,
            &src.store,
            &PushOptions::default(),
            &no_progress,
        )
        .await
        .unwrap();
    assert_eq!(s.manifests, 3, "two manifests then the index");
    assert_eq!(s.uploaded, 2 + 3, "two configs, three distinct layers");

    if let Some(raw) = skopeo_inspect(&reference.to_string(), None) {
        assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2));
    }

    let dst = TempStore::new();
    let arm = c
        .pull(
            &reference,
            &Platform::parse("linux/arm64/v8").unwrap(),
            &dst.store,
            &no_progress,
        )
        .await
        .unwrap();
    assert_eq!(arm.manifest_descriptor.digest, img.manifests[1].digest);
    assert_eq!(arm.config.architecture, "arm64");
    assert_eq!(arm.top_digest(), &img.top.digest);
    assert!(dst.store.contains(&img.top.digest), "index stored");

    let err = c
        .resolve(
            &reference,
            &Platform::parse("linux/s390x").unwrap(),
            &dst.store,
        )
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
        .resolve(
            &by_digest,
            &Platform::parse("linux/arm64").unwrap(),
            &dst.store,
        )
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
    let base = Reference::parse(&format!("{}/team/base:1", reg.addr)).unwrap();
    c.push(
        &base,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
    .unwrap();
    let app = Reference::parse(&format!("{}/team/app:1", reg.addr)).unwrap();
    let opts = PushOptions {
        mount_from: vec!["team/nothing-here".into(), "team/base".into()],
    };
    let s = c
        .push(&app, &img.top, &src.store, &opts, &no_progress)
        .await
        .unwrap();
    assert_eq!((s.uploaded, s.mounted), (0, 2), "{s:?}");
    let dst = TempStore::new();
    c.pull(
        &app,
        &Platform::parse("linux/amd64").unwrap(),
        &dst.store,
        &no_progress,
    )
    .await
    .unwrap();
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
    let reference = Reference::parse(&format!("{}/rbuild/chunked:1", reg.addr)).unwrap();
    c.push(
        &reference,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    let dst = TempStore::new();
    c.pull(
        &reference,
        &Platform::parse("linux/amd64").unwrap(),
        &dst.store,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(
        dst.store.read_all(&img.layers[0].digest).unwrap(),
        src.store.read_all(&img.layers[0].digest).unwrap()
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
    let reference = Reference::parse(&format!("{}/private/app:1", reg.addr)).unwrap();

    // Anonymous: refused with a hint.
    let anon = client(fast_options());
    let err = anon
        .push(
            &reference,
            &img.top,
            &src.store,
            &PushOptions::default(),
            &no_progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("log in"), "{err}");

    // Wrong password: refused, naming the credentials.
    let mut opts = fast_options();
    opts.credentials = std::sync::Arc::new(
        StaticCredentials::new().with(&reg.addr, Credential::basic("alice", "wrong")),
    );
    let err = client(opts.clone())
        .push(
            &reference,
            &img.top,
            &src.store,
            &PushOptions::default(),
            &no_progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("check the credentials"), "{err}");
    let err = client(opts).check_login(&reg.addr).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    // Right password: push and pull work.
    let mut opts = fast_options();
    opts.credentials = std::sync::Arc::new(
        StaticCredentials::new().with(&reg.addr, Credential::basic("alice", "s3cret")),
    );
    let c = client(opts);
    c.push(
        &reference,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
    .unwrap();
    skopeo_inspect(&reference.to_string(), Some("alice:s3cret"));
    let dst = TempStore::new();
    let pulled = c
        .pull(
            &reference,
            &Platform::parse("linux/amd64").unwrap(),
            &dst.store,
            &no_progress,
        )
        .await
        .unwrap();
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
    let reference = Reference::parse(&format!("{}/rbuild/docker:1", reg.addr)).unwrap();
    let c = client(fast_options());
    c.push(
        &reference,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
    .unwrap();
    if let Some(raw) = skopeo_inspect(&reference.to_string(), None) {
        assert_eq!(raw["mediaType"], mt::DOCKER_MANIFEST_LIST);
    }
    let dst = TempStore::new();
    let events = Events::default();
    let cb = events.callback();
    let got = c
        .pull(
            &reference,
            &Platform::parse("linux/arm64").unwrap(),
            &dst.store,
            &cb,
        )
        .await
        .unwrap();
    let (index_desc, index_bytes) = got.index.clone().expect("a manifest list");
    assert_eq!(index_desc.media_type, mt::DOCKER_MANIFEST_LIST);
    assert_eq!(
        index_bytes,
        src.store.read_all(&img.top.digest).unwrap(),
        "raw bytes kept"
    );
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
    c.pull(
        &reference,
        &Platform::parse("linux/arm64").unwrap(),
        &dst.store,
        &cb,
    )
    .await
    .unwrap();
    assert!(events.all().iter().all(|e| e.kind == ProgressKind::Cached));
}

fn skopeo_copy(from: &str, to: &str) -> bool {
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("note: skopeo not installed; skipping");
        return false;
    }
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[tokio::test]
async fn skopeo_copies_what_we_push_and_we_pull_what_skopeo_pushes() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let src = TempStore::new();
    let img = build_image(&src.store, &[b"interop layer one", b"interop layer two"]);
    let ours = Reference::parse(&format!("{}/interop/ours:1", reg.addr)).unwrap();
    let c = client(fast_options());
    c.push(
        &ours,
        &img.top,
        &src.store,
        &PushOptions::default(),
        &no_progress,
    )
    .await
    .unwrap();

    // skopeo downloads every blob we pushed (and verifies digests) into an
    // OCI layout...
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    if !skopeo_copy(
        &format!("docker://{ours}"),
        &format!("oci:{}:x", layout.display()),
    ) {
        return;
    }
    for d in img.layers.iter().chain(&img.configs) {
        let blob = std::fs::read(layout.join("blobs/sha256").join(d.digest.hex())).unwrap();
        assert_eq!(blob, src.store.read_all(&d.digest).unwrap(), "{}", d.digest);
    }
    // ...and pushes it to another repository with its own client...
    let theirs = Reference::parse(&format!("{}/interop/theirs:1", reg.addr)).unwrap();
    assert!(skopeo_copy(
        &format!("oci:{}:x", layout.display()),
        &format!("docker://{theirs}")
    ));
    // ...which we pull back: same config, same layers.
    let dst = TempStore::new();
    let got = c
        .pull(
            &theirs,
            &Platform::parse("linux/amd64").unwrap(),
            &dst.store,
            &no_progress,
        )
        .await
        .unwrap();
    assert_eq!(got.config_descriptor.digest, img.configs[0].digest);
    let digests: Vec<_> = got.layers.iter().map(|l| &l.digest).collect();
    let want: Vec<_> = img.layers.iter().map(|l| &l.digest).collect();
    assert_eq!(digests, want);
}
