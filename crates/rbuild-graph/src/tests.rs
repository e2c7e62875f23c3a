use super::*;

fn image(reference: &str) -> Op {
    Op::Image(ImageSource { reference: reference.into(), platform: "linux/amd64".into() })
}

fn run(cmd: &str) -> Op {
    Op::Exec(ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        network: Network::Sandbox,
        security: Security::Sandbox,
        mounts: vec![],
        platform: "linux/amd64".into(),
        proxy_env: Vec::new(),
    })
}

#[test]
fn equal_ops_on_equal_inputs_share_one_vertex() {
    let mut g = Graph::new();
    let base = g.add(image("a@sha256:00"), vec![], VertexMeta::default()).unwrap();
    let r1 = g.add(run("make"), vec![base], VertexMeta { name: "one".into(), ..Default::default() }).unwrap();
    let r2 = g.add(run("make"), vec![base], VertexMeta { name: "two".into(), ..Default::default() }).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(g.len(), 2);
    assert_eq!(g.get(r1).meta.name, "one");
}

#[test]
fn a_change_upstream_changes_every_digest_downstream() {
    let build = |base_ref: &str, second: &str| {
        let mut g = Graph::new();
        let base = g.add(image(base_ref), vec![], VertexMeta::default()).unwrap();
        let a = g.add(run("a"), vec![base], VertexMeta::default()).unwrap();
        let b = g.add(run(second), vec![a], VertexMeta::default()).unwrap();
        (g.get(base).digest().clone(), g.get(a).digest().clone(), g.get(b).digest().clone())
    };
    let (b1, a1, c1) = build("img@sha256:01", "b");
    let (b2, a2, c2) = build("img@sha256:02", "b");
    assert_ne!(b1, b2);
    assert_ne!(a1, a2);
    assert_ne!(c1, c2);
    let (b3, a3, c3) = build("img@sha256:01", "c");
    assert_eq!(b1, b3);
    assert_eq!(a1, a3);
    assert_ne!(c1, c3);
}

#[test]
fn metadata_never_changes_a_digest() {
    let mut g1 = Graph::new();
    let mut g2 = Graph::new();
    let v1 = g1.add(Op::Scratch, vec![], VertexMeta { name: "x".into(), ignore_cache: true }).unwrap();
    let v2 = g2.add(Op::Scratch, vec![], VertexMeta::default()).unwrap();
    assert_eq!(g1.get(v1).digest(), g2.get(v2).digest());
}

#[test]
fn digests_are_stable_across_runs_and_machines() {
    // Pinned: changing the op encoding must be a deliberate decision.
    let mut g = Graph::new();
    let v = g.add(Op::Scratch, vec![], VertexMeta::default()).unwrap();
    assert_eq!(g.get(v).digest().clone(), Digest::of_bytes(br#"[{"op":"scratch"},[]]"#));
}

#[test]
fn inputs_must_exist_and_op_indexes_must_fit() {
    let mut g = Graph::new();
    assert!(matches!(
        g.add(run("x"), vec![VertexId(3)], VertexMeta::default()),
        Err(GraphError::UnknownInput { .. })
    ));
    let base = g.add(Op::Scratch, vec![], VertexMeta::default()).unwrap();
    let copy = Op::File(FileOp {
        actions: vec![FileAction::Copy(CopyAction {
            source: 1,
            paths: vec!["a".into()],
            dest: "/".into(),
            chown: None,
            chmod: None,
            exclude: vec![],
            parents: false,
            follow_symlinks: true,
            allow_wildcard: true,
            allow_empty_wildcard: false,
            create_dest_path: true,
            unpack_archives: false,
        })],
    });
    assert_eq!(
        g.add(copy, vec![base], VertexMeta::default()),
        Err(GraphError::InputIndex { index: 1, len: 1 })
    );
}

#[test]
fn ancestors_skip_what_the_roots_do_not_need() {
    let mut g = Graph::new();
    let base = g.add(image("a@sha256:00"), vec![], VertexMeta::default()).unwrap();
    let unused = g.add(run("unused"), vec![base], VertexMeta::default()).unwrap();
    let used = g.add(run("used"), vec![base], VertexMeta::default()).unwrap();
    let needed = g.ancestors(&[used]);
    assert_eq!(needed, vec![base, used]);
    assert!(!needed.contains(&unused));
}

#[test]
fn digest_parsing_rejects_malformed_strings() {
    assert!("sha256:abc".parse::<Digest>().is_err());
    assert!(format!("sha256:{}", "A".repeat(64)).parse::<Digest>().is_err());
    assert!(format!("sha256:{}", "a".repeat(64)).parse::<Digest>().is_ok());
}
