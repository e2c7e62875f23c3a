//! GC against a real state dir: snapshots made by the snapshotter, blobs in
//! the content store, records in the metadata DB, leases of other engines.

use super::*;
use crate::db::LayerRecord;
use rbuild_registry::{ClientOptions, RegistryClient};
use rbuild_sandbox::{Executor, HelperCommand};
use std::sync::Arc;

fn engine(root: &Path) -> Arc<Engine> {
    let registry = RegistryClient::new(ClientOptions::default()).unwrap();
    let helper = HelperCommand {
        program: "/bin/false".into(),
        args_prefix: vec![],
    };
    Engine::open(root, registry, Executor::new(helper)).unwrap()
}

/// Commits a snapshot holding one file of `len` bytes and records it.
fn snapshot(e: &Engine, key: &str, parent: Option<&str>, len: usize) -> String {
    let active = crate::prepare(e, parent).unwrap();
    std::fs::write(active.upper.join(key), vec![b'x'; len]).unwrap();
    let id = e.state.snapshots.commit(active).unwrap();
    e.record(key, id.as_str(), parent, false, &format!("RUN make {key}"), false)
        .unwrap()
}

/// Pretends a snapshot was last used `secs` ago.
fn age(e: &Engine, id: &str, secs: i64) {
    let t = crate::lease::now() - secs;
    let conn = e.state.db.conn();
    conn.execute(
        "UPDATE snapshots SET last_used = ?2, created = ?2 WHERE id = ?1",
        rusqlite::params![id, t],
    )
    .unwrap();
    conn.execute(
        "UPDATE cache SET last_used = ?2 WHERE snapshot = ?1",
        rusqlite::params![id, t],
    )
    .unwrap();
}

fn put_blob(e: &Engine, bytes: &[u8]) -> Digest {
    e.state.content.put_bytes(bytes).unwrap()
}

/// Pretends a blob was written `secs` ago.
fn age_blob(e: &Engine, d: &Digest, secs: i64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs as u64);
    let f = File::options()
        .write(true)
        .open(e.state.content.path(d))
        .or_else(|_| File::open(e.state.content.path(d)));
    f.unwrap().set_modified(t).unwrap();
}

fn layer(e: &Engine, snapshot: &str, d: &Digest) {
    let rec = LayerRecord {
        diff_id: d.to_string(),
        digest: d.to_string(),
        size: 1,
        media_type: "m".into(),
    };
    e.state.db.put_layer(snapshot, "gzip", &rec).unwrap();
}

fn ids(e: &Engine) -> Vec<String> {
    e.state
        .snapshots
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.to_string())
        .collect()
}

const ALL: PruneOptions = PruneOptions {
    all: true,
    until: None,
    keep_storage: None,
    protect_own: false,
};

/// Ids of the snapshots a prune removed, in its order.
fn removed(report: &PruneReport) -> Vec<String> {
    report.snapshots.iter().map(|s| s.id.clone()).collect()
}

/// Size of the largest snapshot `du` lists.
fn largest_snapshot(e: &Engine) -> u64 {
    e.disk_usage()
        .unwrap()
        .snapshots
        .iter()
        .map(|s| s.size)
        .max()
        .unwrap()
}

/// A snapshot `key` with a layer blob, and an image manifest naming a
/// config blob and that layer; the snapshot and all three blobs are ten
/// days old. Returns the snapshot id and the config, layer and manifest
/// digests.
fn old_image(e: &Engine, key: &str, config: &[u8], layer_bytes: &[u8]) -> (String, [Digest; 3]) {
    let s = snapshot(e, key, None, 10);
    age(e, &s, 10 * 86400);
    let (config_size, layer_size) = (config.len(), layer_bytes.len());
    let config = put_blob(e, config);
    let layer_blob = put_blob(e, layer_bytes);
    layer(e, &s, &layer_blob);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_blob}","size":{layer_size}}}]}}"#
    );
    let m = put_blob(e, manifest.as_bytes());
    for d in [&config, &layer_blob, &m] {
        age_blob(e, d, 10 * 86400);
    }
    (s, [config, layer_blob, m])
}

#[test]
fn prune_all_empties_snapshots_blobs_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let a = snapshot(&e, "a", None, 10);
    let b = snapshot(&e, "b", Some(&a), 10);
    snapshot(&e, "c", None, 10);
    let x = put_blob(&e, b"layer of b");
    layer(&e, &b, &x);
    put_blob(&e, b"nobody names me");
    let report = e.prune(&ALL).unwrap();
    assert_eq!(report.snapshots.len(), 3);
    assert_eq!(report.blobs.len(), 2);
    assert!(report.reclaimed > 0);
    assert!(ids(&e).is_empty());
    assert!(e.state.content.list().unwrap().is_empty());
    assert_eq!(e.state.db.lookup("b").unwrap(), None);
    assert!(e.state.db.snapshots().unwrap().is_empty());
    assert_eq!(e.state.db.layer(&b, "gzip").unwrap(), None);
}

#[test]
fn a_running_build_in_another_engine_keeps_what_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let pruner = engine(dir.path());
    let a = snapshot(&pruner, "a", None, 10);
    let b = snapshot(&pruner, "b", Some(&a), 10);
    let c = snapshot(&pruner, "c", None, 10);
    let old_blob = put_blob(&pruner, b"old");
    for s in [&a, &b, &c] {
        age(&pruner, s, 10 * 86400);
    }
    age_blob(&pruner, &old_blob, 10 * 86400);
    // Another process starts a build and looks `b` up.
    let build = engine(dir.path());
    assert_eq!(build.cached("b").unwrap().as_deref(), Some(b.as_str()));
    let fresh_blob = put_blob(&build, b"being pushed");
    let report = pruner.prune(&ALL).unwrap();
    assert_eq!(removed(&report), vec![c.clone()]);
    let mut left = ids(&pruner);
    left.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(left, want, "the leased snapshot and its parent stay");
    assert!(pruner.state.content.contains(&fresh_blob));
    assert!(!pruner.state.content.contains(&old_blob));
    // The build ends; now everything can go.
    drop(build);
    let report = pruner.prune(&ALL).unwrap();
    assert_eq!(report.snapshots.len(), 2);
    assert_eq!(report.snapshots[0].id, b, "children before parents");
    assert!(ids(&pruner).is_empty());
}

#[test]
fn the_lease_of_a_dead_process_protects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pruner = engine(dir.path());
    let a = snapshot(&pruner, "a", None, 10);
    age(&pruner, &a, 86400);
    // A process that died without cleaning up: its row stays, its lock is gone.
    pruner
        .state
        .db
        .conn()
        .execute(
            "INSERT INTO leases (id, pid, since) VALUES ('99999-dead-0', 99999, 0)",
            [],
        )
        .unwrap();
    let report = pruner.prune(&ALL).unwrap();
    assert_eq!(report.snapshots.len(), 1);
}

#[test]
fn keep_storage_removes_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let old = snapshot(&e, "old", None, 64 * 1024);
    let mid = snapshot(&e, "mid", None, 64 * 1024);
    let new = snapshot(&e, "new", None, 64 * 1024);
    age(&e, &old, 3 * 3600);
    age(&e, &mid, 2 * 3600);
    age(&e, &new, 3600);
    let one = largest_snapshot(&e);
    let opts = PruneOptions {
        keep_storage: Some(one + one / 2),
        ..PruneOptions::default()
    };
    let report = e.prune(&opts).unwrap();
    assert_eq!(removed(&report), vec![old, mid]);
    assert_eq!(ids(&e), vec![new]);
}

#[test]
fn plain_prune_keeps_recent_cache_and_until_sets_the_age() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let stale = snapshot(&e, "stale", None, 10);
    let recent = snapshot(&e, "recent", None, 10);
    age(&e, &stale, 3 * 86400);
    age(&e, &recent, 3600);
    let report = e.prune(&PruneOptions::default()).unwrap();
    assert_eq!(removed(&report), vec![stale]);
    let opts = PruneOptions {
        until: Some(1800),
        ..PruneOptions::default()
    };
    let report = e.prune(&opts).unwrap();
    assert_eq!(removed(&report), vec![recent]);
}

#[test]
fn local_images_keep_their_blobs_always_and_their_snapshots_without_all() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (_, [config, layer_blob, m]) = old_image(&e, "s", b"{}", b"layer");
    e.state
        .db
        .conn()
        .execute(
            "INSERT INTO local_images (name, manifest_digest, media_type, manifest_size, config_digest, platform, size, created, tagged)
             VALUES ('docker.io/library/app:latest', ?1, 'application/vnd.oci.image.manifest.v1+json', 1, ?2, 'linux/amd64', 1, NULL, 0)",
            rusqlite::params![m.to_string(), config.to_string()],
        )
        .unwrap();
    let report = e
        .prune(&PruneOptions {
            until: Some(0),
            ..PruneOptions::default()
        })
        .unwrap();
    assert!(
        report.snapshots.is_empty() && report.blobs.is_empty(),
        "{report:?}"
    );
    let report = e.prune(&ALL).unwrap();
    assert_eq!(report.snapshots.len(), 1);
    assert!(report.blobs.is_empty());
    for d in [&config, &layer_blob, &m] {
        assert!(e.state.content.contains(d));
    }
}

#[test]
fn directories_left_by_a_crash_are_removed_unless_a_build_may_be_making_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    // A build is running; a directory appears that it may be about to record.
    let other = engine(dir.path());
    let active = other.state.snapshots.prepare(None).unwrap();
    let orphan = other.state.snapshots.commit(active).unwrap();
    assert!(e.prune(&ALL).unwrap().snapshots.is_empty());
    let du = e.disk_usage().unwrap();
    assert!(
        du.snapshots
            .iter()
            .any(|s| s.id == orphan.as_str() && !s.recorded && s.in_use)
    );
    drop(other);
    let report = e.prune(&ALL).unwrap();
    assert_eq!(report.snapshots.len(), 1);
    assert!(!report.snapshots[0].recorded);
}

#[test]
fn du_lists_snapshots_blobs_cache_mounts_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let a = snapshot(&e, "a", None, 8192);
    let d = put_blob(&e, b"blob");
    let mount = e.state.cache_mounts.join("abc").join("0");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(mount.join("f"), vec![1u8; 8192]).unwrap();
    let du = e.disk_usage().unwrap();
    assert_eq!(du.snapshots.len(), 1);
    assert_eq!(du.snapshots[0].id, a);
    assert_eq!(du.snapshots[0].description, "RUN make a");
    assert_eq!(du.snapshots[0].cache_keys, 1);
    assert!(du.snapshots[0].size >= 8192);
    assert_eq!(
        du.blobs,
        vec![BlobEntry {
            digest: d.to_string(),
            size: 4,
            referenced: false
        }]
    );
    assert_eq!(du.cache_mounts.len(), 1);
    assert!(du.cache_mounts[0].size >= 8192 && !du.cache_mounts[0].in_use);
    assert!(du.metadata > 0);
    assert_eq!(
        du.total,
        du.snapshots[0].size + 4 + du.cache_mounts[0].size + du.metadata
    );
    // No build runs in this process: its own lease protects nothing, and
    // everything is reclaimable.
    assert!(!du.snapshots[0].in_use);
    assert_eq!(du.reclaimable, du.total - du.metadata);
    // While a build runs here, what it uses is in use.
    let _build = e.begin_build().unwrap();
    assert_eq!(e.cached("a").unwrap().as_deref(), Some(a.as_str()));
    let du = e.disk_usage().unwrap();
    assert!(du.snapshots[0].in_use);
    assert!(du.reclaimable < du.total);
}

#[test]
fn prune_all_removes_cache_mounts_nobody_holds() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let base = e.state.cache_mounts.join("abc");
    for n in ["0", "1"] {
        std::fs::create_dir_all(base.join(n)).unwrap();
        std::fs::write(base.join(n).join("f"), b"data").unwrap();
    }
    let held = File::create(base.join("1.lock")).unwrap();
    rustix::fs::flock(&held, FlockOperation::LockShared).unwrap();
    let report = e.prune(&PruneOptions::default()).unwrap();
    assert!(
        report.cache_mounts.is_empty(),
        "cache mounts only go with --all"
    );
    let report = e.prune(&ALL).unwrap();
    assert_eq!(
        report
            .cache_mounts
            .iter()
            .map(|c| c.instance.as_str())
            .collect::<Vec<_>>(),
        vec!["0"]
    );
    assert!(!base.join("0").exists());
    assert!(base.join("1/f").exists());
}

#[test]
fn automatic_gc_acts_only_above_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let old = snapshot(&e, "old", None, 64 * 1024);
    let new = snapshot(&e, "new", None, 64 * 1024);
    age(&e, &old, 7200);
    age(&e, &new, 3600);
    // Our own lease started now: the aged records are not protected by it.
    assert!(e.gc_to_cap(u64::MAX).unwrap().is_none());
    let one = largest_snapshot(&e);
    let report = e.gc_to_cap(one).unwrap().expect("over the cap");
    assert_eq!(removed(&report), vec![old]);
    assert_eq!(ids(&e), vec![new]);
}

#[test]
fn resolved_base_images_keep_manifest_and_config_but_not_pruned_layers() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let (_, [config, layer_blob, m]) = old_image(&e, "layer:x", b"{\"c\":1}", b"base layer");
    let rec = crate::ImageRecord {
        manifest_digest: m.to_string(),
        config: b"{}".to_vec(),
    };
    e.state
        .db
        .put_image("docker.io/library/base:latest", "linux/amd64", &rec)
        .unwrap();
    let report = e.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.snapshots.len(), 1, "old cache goes");
    assert_eq!(
        report
            .blobs
            .iter()
            .map(|b| b.digest.clone())
            .collect::<Vec<_>>(),
        vec![layer_blob.to_string()]
    );
    assert!(e.state.content.contains(&m) && e.state.content.contains(&config));
    let report = e.prune(&ALL).unwrap();
    assert_eq!(report.blobs.len(), 2);
    assert!(e.state.content.list().unwrap().is_empty());
}

/// The stored size of a recorded snapshot (`None`: not measured yet).
fn stored_size(e: &Engine, id: &str) -> Option<u64> {
    e.state
        .db
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .and_then(|s| s.size)
}

#[test]
fn recording_does_not_measure_and_du_measures_each_snapshot_once() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let a = snapshot(&e, "a", None, 8192);
    assert_eq!(stored_size(&e, &a), None, "the commit path walks nothing");
    let du = e.disk_usage().unwrap();
    let measured = stored_size(&e, &a).expect("du stores what it measured");
    assert!(measured >= 8192);
    assert_eq!(du.snapshots[0].size, measured);
    // A committed snapshot never changes, so its stored size is not
    // measured again: bytes that appear behind rbuild's back stay uncounted.
    let fs = e.state.snapshots.fs_dir(&sid(&a).unwrap()).unwrap();
    std::fs::write(fs.join("sneaked-in"), vec![1u8; 64 * 1024]).unwrap();
    assert_eq!(e.disk_usage().unwrap().snapshots[0].size, measured);
    let report = e.prune(&ALL).unwrap();
    assert_eq!(report.reclaimed, measured);
}

#[test]
fn the_cap_check_walks_only_snapshots_not_measured_before() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let old = snapshot(&e, "old", None, 10);
    // A size stored earlier (or by an rbuild from before lazy sizes): if
    // the cap check walked `old` again, this figure would be replaced.
    let fake = 1u64 << 40;
    e.state
        .db
        .conn()
        .execute(
            "UPDATE snapshots SET size = ?2 WHERE id = ?1",
            rusqlite::params![old, fake as i64],
        )
        .unwrap();
    let new = snapshot(&e, "new", Some(&old), 64 * 1024);
    assert_eq!(stored_size(&e, &new), None);
    assert!(e.gc_to_cap(u64::MAX).unwrap().is_none());
    assert_eq!(stored_size(&e, &old), Some(fake));
    let new_size = stored_size(&e, &new).expect("measured by the cap check");
    assert!(new_size >= 64 * 1024);
    assert!(e.state.db.unsized_snapshots().unwrap().is_empty());
    // The cap check counts the measured snapshot: just under the total is
    // over the cap (the own lease keeps both, so nothing goes).
    let report = e.gc_to_cap(fake + new_size - 1).unwrap();
    assert!(report.is_some_and(|r| r.snapshots.is_empty()));
}
