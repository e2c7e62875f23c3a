//! The local image store in-process, without root or a sandbox: names,
//! ID prefixes, `FROM` resolution and archives, on a real state dir.

use super::SaveFormat;
use crate::{Builder, BuilderOptions, Config, Error, ImageStoreError};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::manifest::{ManifestFormat, build_config, build_manifest};
use rbuild_oci::platform::Platform;
use rbuild_sandbox::HelperCommand;
use rbuild_solver::ExportedImage;
use std::path::Path;

fn builder(root: &Path) -> Builder {
    Builder::open(BuilderOptions {
        root: Some(root.to_path_buf()),
        config: Some(Config::default()),
        // Nothing here starts a sandbox.
        helper: Some(HelperCommand { program: "/bin/false".into(), args_prefix: Vec::new() }),
    })
    .unwrap()
}

/// A layerless image written to the content store, told apart by `cmd`.
fn image(b: &Builder, cmd: &str, platform: &Platform) -> ExportedImage {
    let mut config = ImageConfig::new(platform);
    config.config.cmd = Some(vec![cmd.to_string()]);
    config.created = Some("2026-01-02T03:04:05Z".into());
    let store = &b.engine().state.content;
    let config = build_config(&config, ManifestFormat::Oci).unwrap();
    store.put_bytes(&config.bytes).unwrap();
    let manifest = build_manifest(&config.descriptor, &[], None, ManifestFormat::Oci).unwrap();
    store.put_bytes(&manifest.bytes).unwrap();
    ExportedImage { manifest: manifest.descriptor, config: config.descriptor }
}

fn refs(names: &[&str]) -> Vec<rbuild_oci::reference::Reference> {
    names.iter().map(|n| rbuild_solver::normalise_name(n).unwrap()).collect()
}

/// The files of a tar archive, by name (plain ustar headers, as ours are).
fn tar_files(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let header = &tar[at..at + 512];
        let field = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&header[r]).trim_end_matches('\0').trim().to_string()
        };
        let name = field(0..100);
        let size = usize::from_str_radix(&field(124..136), 8).unwrap();
        let typeflag = header[156];
        at += 512;
        if typeflag == b'0' || typeflag == 0 {
            out.push((name, tar[at..at + size].to_vec()));
        }
        at += size.div_ceil(512) * 512;
    }
    out
}

/// `manifest.json` of a docker archive.
fn docker_manifest(tar: &[u8]) -> serde_json::Value {
    let (_, bytes) = tar_files(tar).into_iter().find(|(n, _)| n == "manifest.json").expect("a manifest.json");
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn names_tags_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let img = image(&b, "one", &Platform::host());
    let stored = b.engine().store_image(&refs(&["app", "app:1"]), &img).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].size, img.config.size, "a layerless image is its config");
    assert_eq!(stored[0].created.as_deref(), Some("2026-01-02T03:04:05Z"));
    assert_eq!(stored[0].platform, Platform::host().to_string());

    b.tag_image("app:1", "host:5000/team/app:v2").unwrap();
    let names: Vec<String> = b.images().unwrap().into_iter().map(|i| i.familiar_name()).collect();
    assert_eq!(names, ["app:1", "app:latest", "host:5000/team/app:v2"]);

    let id = img.config.digest.hex()[..8].to_string();
    assert_eq!(b.image(&id).unwrap().manifest.digest, img.manifest.digest, "an ID prefix finds the image");
    assert_eq!(b.image(&format!("sha256:{id}")).unwrap().manifest.digest, img.manifest.digest);

    let removed = b.remove_image("app", false).unwrap();
    assert_eq!(removed.iter().map(|i| i.familiar_name()).collect::<Vec<_>>(), ["app:latest"]);
    assert!(matches!(b.remove_image("app", false), Err(Error::Image(ImageStoreError::NotFound(_)))));
    assert!(matches!(b.tag_image("nosuch", "x"), Err(Error::Image(ImageStoreError::NotFound(_)))));
    let pinned = format!("app@{}", img.manifest.digest);
    assert!(matches!(b.tag_image("app:1", &pinned), Err(Error::Image(ImageStoreError::DigestName(_)))));
    assert!(matches!(b.image("Bad Name"), Err(Error::Image(ImageStoreError::Name { .. }))));
    // By ID: refused while the image has several names, unless all go.
    let err = b.remove_image(&id, false).unwrap_err();
    assert!(matches!(err, Error::Image(ImageStoreError::SeveralNames { .. })), "{err}");
    assert!(err.to_string().contains("app:1") && err.to_string().contains("--force"), "{err}");
    assert_eq!(b.remove_image(&id, true).unwrap().len(), 2);
    assert!(b.images().unwrap().is_empty());
}

#[test]
fn a_name_moves_to_the_newest_build() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let first = image(&b, "one", &Platform::host());
    let second = image(&b, "two", &Platform::host());
    b.engine().store_image(&refs(&["app"]), &first).unwrap();
    b.engine().store_image(&refs(&["app"]), &second).unwrap();
    let all = b.images().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].manifest.digest, second.manifest.digest);
}

#[tokio::test]
async fn from_resolves_local_names_first_and_pull_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let host = Platform::host();
    let img = image(&b, "one", &host);
    b.engine().store_image(&refs(&["localonly.invalid/app:1"]), &img).unwrap();
    let (pinned, config) = b.engine().resolve_image("localonly.invalid/app:1", &host, false).await.unwrap();
    assert_eq!(pinned.digest.as_ref(), Some(&img.manifest.digest), "pinned to the stored manifest");
    assert_eq!(config.config.cmd, Some(vec!["one".to_string()]));
    // `.invalid` never resolves: asking the registry fails, with a hint.
    let err = b.engine().resolve_image("localonly.invalid/app:1", &host, true).await.unwrap_err();
    assert!(err.to_string().contains("is a local image; build without --pull"), "{err}");
    // A name stored for another platform is not used for this one.
    let other = Platform::parse(if host.architecture == "arm64" { "linux/amd64" } else { "linux/arm64" }).unwrap();
    let foreign = image(&b, "foreign", &other);
    b.engine().store_image(&refs(&["localonly.invalid/foreign:1"]), &foreign).unwrap();
    let err = b.engine().resolve_image("localonly.invalid/foreign:1", &host, false).await.unwrap_err();
    assert!(err.to_string().contains(&format!("is for {other}")), "{err}");
}

#[test]
fn save_groups_names_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let one = image(&b, "one", &Platform::host());
    let two = image(&b, "two", &Platform::host());
    b.engine().store_image(&refs(&["app:1", "app:latest"]), &one).unwrap();
    b.engine().store_image(&refs(&["other"]), &two).unwrap();

    let mut tar = Vec::new();
    b.save_images(&["app:1".into(), "other".into()], SaveFormat::Docker, &mut tar).unwrap();
    let m = docker_manifest(&tar);
    assert_eq!(m.as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["app:1"]), "a name saves only itself");
    assert_eq!(m[1]["RepoTags"], serde_json::json!(["other:latest"]));

    // By ID, every name of the image goes along; twice is once.
    let id = one.config.digest.hex()[..12].to_string();
    let mut tar = Vec::new();
    b.save_images(&[id, "app:1".into()], SaveFormat::Docker, &mut tar).unwrap();
    let m = docker_manifest(&tar);
    assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["app:1", "app:latest"]));

    let mut oci = Vec::new();
    b.save_images(&["other".into()], SaveFormat::Oci, &mut oci).unwrap();
    let names: Vec<String> = tar_files(&oci).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"oci-layout".to_string()) && names.contains(&"index.json".to_string()), "{names:?}");

    assert!(matches!(b.save_images(&[], SaveFormat::Docker, &mut Vec::new()), Err(Error::Invalid(_))));
    assert!(matches!(
        b.save_images(&["nosuch".into()], SaveFormat::Docker, &mut Vec::new()),
        Err(Error::Image(ImageStoreError::NotFound(_)))
    ));
}

/// A plain tar of regular files (ustar headers), for hostile archives.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn load_imports_a_saved_archive_into_another_state_dir() {
    let a = tempfile::tempdir().unwrap();
    let b = builder(a.path());
    let img = image(&b, "one", &Platform::host());
    b.engine().store_image(&refs(&["app:1", "host:5000/x/app:2"]), &img).unwrap();
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let mut tar = Vec::new();
        b.save_images(&["app:1".into(), "host:5000/x/app:2".into()], format, &mut tar).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = builder(other_dir.path());
        let report = other.load_images(&mut tar.as_slice()).unwrap();
        let names: Vec<String> = report.stored.iter().map(|i| i.familiar_name()).collect();
        assert_eq!(names, ["app:1", "host:5000/x/app:2"], "{format:?}");
        assert!(report.unnamed.is_empty());
        assert_eq!(other.image("app:1").unwrap().manifest.digest, img.manifest.digest);
        // Nothing is left in the state dir's scratch space.
        let tmp = &other.engine().state.tmp;
        let litter: Vec<_> = std::fs::read_dir(tmp).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("load-")).collect();
        assert!(litter.is_empty(), "{litter:?}");
    }
}

#[test]
fn load_refuses_hostile_archives_and_stays_inside_its_scratch_dir() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(dir.path());
    let outside = dir.path().join("escaped");
    // A blob whose bytes do not match its name, named by an index.
    let fake = format!("sha256:{}", "a".repeat(64));
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{fake}","size":5}}]}}"#
    );
    let blob_path = format!("blobs/sha256/{}", "a".repeat(64));
    let escape = format!("../../../../../../..{}", outside.display());
    let layout = |extra: Option<(&str, &[u8])>| {
        let mut files: Vec<(&str, &[u8])> = extra.into_iter().collect();
        files.push(("index.json", index.as_bytes()));
        files.push(("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#));
        files.push((blob_path.as_str(), b"hello"));
        tar_of(&files)
    };
    let err = b.load_images(&mut layout(Some((escape.as_str(), b"gotcha"))).as_slice()).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");
    assert!(!outside.exists(), "a `..` name wrote outside the scratch dir");

    let err = b.load_images(&mut layout(None).as_slice()).unwrap_err();
    assert!(err.to_string().contains("digest") || err.to_string().contains("size"), "{err}");
    assert!(!b.engine().state.content.contains(&rbuild_oci::digest::Digest::parse(&fake).unwrap()));
    assert!(b.images().unwrap().is_empty());

    let err = b.load_images(&mut &b"not a tar at all, just some text that is long enough"[..]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}
