//! Table of COPY semantics: one row per rule, each checking the whole
//! destination tree afterwards (or the error).

mod common;

use common::{build, list};
use rbuild_fileop::{CopyOptions, copy};

const CONTEXT: &[&str] = &[
    "f a.txt A",
    "f b.txt B",
    "f c.md C",
    "f x.sh X 755",
    "f dir/one.txt 1",
    "f dir/sub/two.txt 2",
    "f dir/.hidden H",
    "f dir2/three.txt 3",
    "l link-a a.txt",
    "l link-abs /etc/passwd",
    "l link-dir dir",
    "l link-out ../../../../etc",
    "f [ab].log brackets",
    "f src/app/main.rs M",
    "f src/lib/util.rs U",
    "f src/lib/deep/x.rs XR",
    "f empty/.keep K",
];

type Opt = fn(&mut CopyOptions);

struct Case {
    name: &'static str,
    dest_setup: &'static [&'static str],
    srcs: &'static [&'static str],
    dest: &'static str,
    opt: Opt,
    want: Result<&'static [&'static str], &'static str>,
}

fn none(_: &mut CopyOptions) {}
fn no_follow(o: &mut CopyOptions) {
    o.follow_symlinks = false;
}
fn no_wild(o: &mut CopyOptions) {
    o.allow_wildcard = false;
}
fn strict_wild(o: &mut CopyOptions) {
    o.allow_empty_wildcard = false;
}
fn no_create(o: &mut CopyOptions) {
    o.create_dest_path = false;
}
fn whole_dir(o: &mut CopyOptions) {
    o.dir_contents_only = false;
}
fn parents(o: &mut CopyOptions) {
    o.parents = true;
}
fn excl_txt(o: &mut CopyOptions) {
    o.exclude = vec!["*.txt".into()];
}
fn excl_sub(o: &mut CopyOptions) {
    o.exclude = vec!["sub".into(), "!sub/keep".into()];
}
fn excl_deep(o: &mut CopyOptions) {
    o.exclude = vec!["**/x.rs".into()];
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        Case { name: "file to new path", dest_setup: &[], srcs: &["a.txt"], dest: "/out", opt: none, want: Ok(&["out=A"]) },
        Case { name: "file to dir/ creates dir", dest_setup: &[], srcs: &["a.txt"], dest: "/out/", opt: none, want: Ok(&["out/", "out/a.txt=A"]) },
        Case { name: "file to dir/. creates dir", dest_setup: &[], srcs: &["a.txt"], dest: "/out/.", opt: none, want: Ok(&["out/", "out/a.txt=A"]) },
        Case { name: "file to existing dir without slash", dest_setup: &["d out"], srcs: &["a.txt"], dest: "/out", opt: none, want: Ok(&["out/", "out/a.txt=A"]) },
        Case { name: "file to root", dest_setup: &[], srcs: &["a.txt"], dest: "/", opt: none, want: Ok(&["a.txt=A"]) },
        Case { name: "file replaces file", dest_setup: &["f out old"], srcs: &["a.txt"], dest: "/out", opt: none, want: Ok(&["out=A"]) },
        Case { name: "file replaces symlink at dest/name", dest_setup: &["d out", "l out/a.txt /etc/shadow"], srcs: &["a.txt"], dest: "/out/", opt: none, want: Ok(&["out/", "out/a.txt=A"]) },
        Case { name: "file onto a dir named like it fails", dest_setup: &["d out/a.txt"], srcs: &["a.txt"], dest: "/out/", opt: none, want: Err("cannot replace directory") },
        Case { name: "missing parents created", dest_setup: &[], srcs: &["a.txt"], dest: "/x/y/z", opt: none, want: Ok(&["x/", "x/y/", "x/y/z=A"]) },
        Case { name: "missing parents refused without create", dest_setup: &[], srcs: &["a.txt"], dest: "/x/y/z", opt: no_create, want: Err("does not exist") },
        Case { name: "existing parent without create", dest_setup: &["d x"], srcs: &["a.txt"], dest: "/x/z", opt: no_create, want: Ok(&["x/", "x/z=A"]) },
        Case { name: "dir copies contents", dest_setup: &[], srcs: &["dir"], dest: "/out", opt: none, want: Ok(&["out/", "out/.hidden=H", "out/one.txt=1", "out/sub/", "out/sub/two.txt=2"]) },
        Case { name: "dir with slash copies contents", dest_setup: &[], srcs: &["dir/"], dest: "/out/", opt: none, want: Ok(&["out/", "out/.hidden=H", "out/one.txt=1", "out/sub/", "out/sub/two.txt=2"]) },
        Case { name: "dir merges into existing dir", dest_setup: &["f out/keep K", "f out/one.txt old"], srcs: &["dir"], dest: "/out", opt: none, want: Ok(&["out/", "out/.hidden=H", "out/keep=K", "out/one.txt=1", "out/sub/", "out/sub/two.txt=2"]) },
        Case { name: "dir onto a file fails", dest_setup: &["f out/sub x"], srcs: &["dir"], dest: "/out", opt: none, want: Err("non-directory") },
        Case { name: "dir itself when not contents-only", dest_setup: &["d out"], srcs: &["dir2"], dest: "/out", opt: whole_dir, want: Ok(&["out/", "out/dir2/", "out/dir2/three.txt=3"]) },
        Case { name: "dir itself to new path", dest_setup: &[], srcs: &["dir2"], dest: "/new", opt: whole_dir, want: Ok(&["new/", "new/three.txt=3"]) },
        Case { name: "context root copies everything", dest_setup: &[], srcs: &["src"], dest: "/", opt: none, want: Ok(&["app/", "app/main.rs=M", "lib/", "lib/deep/", "lib/deep/x.rs=XR", "lib/util.rs=U"]) },
        Case { name: "two files need dir dest", dest_setup: &[], srcs: &["a.txt", "b.txt"], dest: "/out", opt: none, want: Err("must be a directory") },
        Case { name: "two files to dir/", dest_setup: &[], srcs: &["a.txt", "b.txt"], dest: "/out/", opt: none, want: Ok(&["out/", "out/a.txt=A", "out/b.txt=B"]) },
        Case { name: "two files to existing dir", dest_setup: &["d out"], srcs: &["a.txt", "b.txt"], dest: "/out", opt: none, want: Ok(&["out/", "out/a.txt=A", "out/b.txt=B"]) },
        Case { name: "wildcard star", dest_setup: &[], srcs: &["*.txt"], dest: "/out/", opt: none, want: Ok(&["out/", "out/a.txt=A", "out/b.txt=B"]) },
        Case { name: "wildcard several matches need dir", dest_setup: &[], srcs: &["*.txt"], dest: "/out", opt: none, want: Err("must be a directory") },
        Case { name: "wildcard single match to file", dest_setup: &[], srcs: &["*.md"], dest: "/out", opt: none, want: Ok(&["out=C"]) },
        Case { name: "wildcard question mark", dest_setup: &[], srcs: &["?.md"], dest: "/o/", opt: none, want: Ok(&["o/", "o/c.md=C"]) },
        Case { name: "wildcard class", dest_setup: &[], srcs: &["[b-c].*"], dest: "/o/", opt: none, want: Ok(&["o/", "o/b.txt=B", "o/c.md=C"]) },
        Case { name: "wildcard negated class", dest_setup: &[], srcs: &["[^ab].*"], dest: "/o/", opt: none, want: Ok(&["o/", "o/c.md=C", "o/x.sh=X"]) },
        Case { name: "wildcard in middle component", dest_setup: &[], srcs: &["src/*/util.rs"], dest: "/o/", opt: none, want: Ok(&["o/", "o/util.rs=U"]) },
        // Docker's well-known flattening: each matched directory copies its contents.
        Case { name: "wildcard matching dirs copies their contents", dest_setup: &[], srcs: &["src/*"], dest: "/o/", opt: none, want: Ok(&["o/", "o/deep/", "o/deep/x.rs=XR", "o/main.rs=M", "o/util.rs=U"]) },
        Case { name: "star does not cross slash", dest_setup: &[], srcs: &["src/*.rs"], dest: "/o/", opt: none, want: Ok(&[]) },
        Case { name: "double star is a single component", dest_setup: &[], srcs: &["src/**/main.rs"], dest: "/o/", opt: none, want: Ok(&["o/", "o/main.rs=M"]) },
        Case { name: "empty wildcard allowed copies nothing", dest_setup: &[], srcs: &["*.none"], dest: "/o/", opt: none, want: Ok(&[]) },
        Case { name: "empty wildcard refused", dest_setup: &[], srcs: &["*.none"], dest: "/o/", opt: strict_wild, want: Err("not found") },
        Case { name: "escaped bracket in a pattern is literal", dest_setup: &[], srcs: &["\\[ab\\].lo?"], dest: "/o/", opt: none, want: Ok(&["o/", "o/[ab].log=brackets"]) },
        Case { name: "escapes without wildcards stay literal", dest_setup: &[], srcs: &["\\[ab\\].log"], dest: "/o/", opt: none, want: Err("not found") },
        Case { name: "brackets literal without wildcards", dest_setup: &[], srcs: &["[ab].log"], dest: "/o/", opt: no_wild, want: Ok(&["o/", "o/[ab].log=brackets"]) },
        Case { name: "bad pattern is an error", dest_setup: &[], srcs: &["[a"], dest: "/o/", opt: none, want: Err("syntax error") },
        Case { name: "missing source", dest_setup: &[], srcs: &["nope.txt"], dest: "/o/", opt: none, want: Err("`nope.txt` not found") },
        Case { name: "dotdot source clamps to context", dest_setup: &[], srcs: &["../../a.txt"], dest: "/o", opt: none, want: Ok(&["o=A"]) },
        Case { name: "absolute source is context-relative", dest_setup: &[], srcs: &["/b.txt"], dest: "/o", opt: none, want: Ok(&["o=B"]) },
        Case { name: "top symlink followed", dest_setup: &[], srcs: &["link-a"], dest: "/o/", opt: none, want: Ok(&["o/", "o/link-a=A"]) },
        Case { name: "top symlink not followed", dest_setup: &[], srcs: &["link-a"], dest: "/o/", opt: no_follow, want: Ok(&["o/", "o/link-a->a.txt"]) },
        Case { name: "top symlink to dir followed copies contents", dest_setup: &[], srcs: &["link-dir"], dest: "/o", opt: none, want: Ok(&["o/", "o/.hidden=H", "o/one.txt=1", "o/sub/", "o/sub/two.txt=2"]) },
        Case { name: "absolute symlink followed stays in context", dest_setup: &[], srcs: &["link-abs"], dest: "/o", opt: none, want: Err("not found") },
        Case { name: "escaping symlink followed stays in context", dest_setup: &[], srcs: &["link-out/passwd"], dest: "/o", opt: none, want: Err("not found") },
        Case { name: "symlinks inside a dir copied as symlinks", dest_setup: &[], srcs: &["."], dest: "/o", opt: excl_nonlinks, want: Ok(&["o/", "o/link-a->a.txt", "o/link-abs->/etc/passwd", "o/link-dir->dir", "o/link-out->../../../../etc"]) },
        Case { name: "dest symlink to /etc resolves in root", dest_setup: &["d etc", "l app /etc"], srcs: &["a.txt"], dest: "/app/", opt: none, want: Ok(&["app->/etc", "etc/", "etc/a.txt=A"]) },
        Case { name: "dest symlink climbing out resolves in root", dest_setup: &["d data", "l app ../../../../data"], srcs: &["a.txt"], dest: "/app/x", opt: none, want: Ok(&["app->../../../../data", "data/", "data/x=A"]) },
        Case { name: "dest symlink to / stays in root", dest_setup: &["l s /"], srcs: &["a.txt"], dest: "/s/s/s/a", opt: none, want: Ok(&["a=A", "s->/"]) },
        Case { name: "dangling dest symlink creates its target in root", dest_setup: &["l app /opt/app"], srcs: &["a.txt"], dest: "/app/", opt: none, want: Ok(&["app->/opt/app", "opt/", "opt/app/", "opt/app/a.txt=A"]) },
        Case { name: "dest final symlink to file is written through in root", dest_setup: &["f etc/motd old", "l motd /etc/motd"], srcs: &["a.txt"], dest: "/motd", opt: none, want: Ok(&["etc/", "etc/motd=A", "motd->/etc/motd"]) },
        Case { name: "dest with dotdot clamps", dest_setup: &[], srcs: &["a.txt"], dest: "/../../x", opt: none, want: Ok(&["x=A"]) },
        Case { name: "exclude in dir", dest_setup: &[], srcs: &["dir"], dest: "/o", opt: excl_txt, want: Ok(&["o/", "o/.hidden=H", "o/sub/", "o/sub/two.txt=2"]) },
        Case { name: "exclude wildcard matches", dest_setup: &[], srcs: &["*"], dest: "/o/", opt: excl_only_top, want: Ok(&["o/", "o/c.md=C"]) },
        Case { name: "exclude dir with exception", dest_setup: &["f keepme/x y"], srcs: &["dir"], dest: "/o", opt: excl_sub, want: Ok(&["keepme/", "keepme/x=y", "o/", "o/.hidden=H", "o/one.txt=1", "o/sub/"]) },
        Case { name: "exclude double star", dest_setup: &[], srcs: &["src"], dest: "/o", opt: excl_deep, want: Ok(&["o/", "o/app/", "o/app/main.rs=M", "o/lib/", "o/lib/deep/", "o/lib/util.rs=U"]) },
        Case { name: "parents keeps paths", dest_setup: &[], srcs: &["src/app/main.rs", "dir2/three.txt"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/dir2/", "o/dir2/three.txt=3", "o/src/", "o/src/app/", "o/src/app/main.rs=M"]) },
        Case { name: "parents with wildcard", dest_setup: &[], srcs: &["src/*/util.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/src/", "o/src/lib/", "o/src/lib/util.rs=U"]) },
        Case { name: "parents with pivot", dest_setup: &[], srcs: &["src/./lib/util.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/lib/", "o/lib/util.rs=U"]) },
        Case { name: "parents with dir source", dest_setup: &[], srcs: &["src/lib"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/src/", "o/src/lib/", "o/src/lib/deep/", "o/src/lib/deep/x.rs=XR", "o/src/lib/util.rs=U"]) },
        Case { name: "parents double star spans directories", dest_setup: &[], srcs: &["src/**/*.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/src/", "o/src/app/", "o/src/app/main.rs=M", "o/src/lib/", "o/src/lib/deep/", "o/src/lib/deep/x.rs=XR", "o/src/lib/util.rs=U"]) },
        Case { name: "parents pivot with double star", dest_setup: &[], srcs: &["src/./**/x.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/lib/", "o/lib/deep/", "o/lib/deep/x.rs=XR"]) },
        Case { name: "pivot cannot climb above itself", dest_setup: &[], srcs: &["src/./../../a.txt"], dest: "/o/", opt: parents, want: Err("not found") },
        Case { name: "pivot marker ignored without parents", dest_setup: &[], srcs: &["src/./lib/util.rs"], dest: "/o/", opt: none, want: Ok(&["o/", "o/util.rs=U"]) },
        Case { name: "file to dir/ over an existing file fails", dest_setup: &["f o x"], srcs: &["a.txt"], dest: "/o/", opt: none, want: Err("create directory") },
        Case { name: "whole context to root", dest_setup: &[], srcs: &["."], dest: "/", opt: only_src, want: Ok(&["src/", "src/app/", "src/app/main.rs=M", "src/lib/", "src/lib/deep/", "src/lib/deep/x.rs=XR", "src/lib/util.rs=U"]) },
        Case { name: "parents reuses a dest dir reached through a symlink", dest_setup: &["d o/real", "l o/src /o/real"], srcs: &["src/app/main.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/real/", "o/real/app/", "o/real/app/main.rs=M", "o/src->/o/real"]) },
        Case { name: "parents through a dest symlink out of the root stays inside", dest_setup: &["l o/src ../../../../x"], srcs: &["src/app/main.rs"], dest: "/o/", opt: parents, want: Ok(&["o/", "o/src->../../../../x", "x/", "x/app/", "x/app/main.rs=M"]) },
        Case { name: "parents needs dir dest", dest_setup: &[], srcs: &["a.txt"], dest: "/o", opt: parents, want: Err("must be a directory") },
        Case { name: "dir with only dotfile", dest_setup: &[], srcs: &["empty"], dest: "/e", opt: none, want: Ok(&["e/", "e/.keep=K"]) },
    ]
}

fn excl_nonlinks(o: &mut CopyOptions) {
    o.exclude = vec!["*".into(), "!link-*".into()];
}
fn only_src(o: &mut CopyOptions) {
    o.exclude = vec!["*".into(), "!src".into()];
}
fn excl_only_top(o: &mut CopyOptions) {
    o.exclude = vec![
        "*.txt".into(),
        "*.log".into(),
        "*.sh".into(),
        "link-*".into(),
        "dir*".into(),
        "src".into(),
        "empty".into(),
    ];
}

#[test]
fn copy_semantics_table() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), CONTEXT);
    let mut failures = Vec::new();
    for case in cases() {
        let dest = tempfile::tempdir().unwrap();
        build(dest.path(), case.dest_setup);
        let mut opts = CopyOptions::dockerfile();
        opts.chown = Some((
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ));
        (case.opt)(&mut opts);
        let srcs: Vec<String> = case.srcs.iter().map(|s| s.to_string()).collect();
        let got = copy(ctx.path(), &srcs, dest.path(), case.dest, &opts);
        match (&case.want, got) {
            (Ok(want), Ok(_)) => {
                let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
                want.sort();
                let after = list(dest.path());
                if after != want {
                    failures.push(format!("{}: got {after:?}, want {want:?}", case.name));
                }
            }
            (Err(msg), Err(e)) => {
                let text = error_chain(&e);
                if !text.contains(msg) {
                    failures.push(format!("{}: error `{text}` lacks `{msg}`", case.name));
                }
            }
            (Ok(_), Err(e)) => failures.push(format!(
                "{}: unexpected error {}",
                case.name,
                error_chain(&e)
            )),
            (Err(msg), Ok(_)) => failures.push(format!(
                "{}: expected error `{msg}`, got {:?}",
                case.name,
                list(dest.path())
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `.dockerignore` patterns (relative to the context root) make files absent.
#[test]
fn dockerignore_makes_files_absent() {
    let ctx = tempfile::tempdir().unwrap();
    build(ctx.path(), CONTEXT);
    let ignore: Vec<String> = ["*.md", "dir/sub", "src/lib/**/x.rs", "a.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let run = |srcs: &[&str], dest: &str| {
        let dst = tempfile::tempdir().unwrap();
        let mut o = CopyOptions::dockerfile();
        o.context_ignore = ignore.clone();
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        copy(ctx.path(), &srcs, dst.path(), dest, &o).map(|_| list(dst.path()))
    };
    assert!(
        run(&["c.md"], "/o")
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
    assert!(
        run(&["link-a"], "/o").is_err(),
        "a followed link to an ignored file finds nothing"
    );
    assert_eq!(run(&["*.md", "b.txt"], "/o/").unwrap(), ["o/", "o/b.txt=B"]);
    assert_eq!(
        run(&["dir"], "/o").unwrap(),
        ["o/", "o/.hidden=H", "o/one.txt=1"]
    );
    assert_eq!(
        run(&["src"], "/o").unwrap(),
        [
            "o/",
            "o/app/",
            "o/app/main.rs=M",
            "o/lib/",
            "o/lib/deep/",
            "o/lib/util.rs=U"
        ]
    );
    // The same through a followed symlink to a directory: paths are the real ones.
    assert_eq!(
        run(&["link-dir"], "/o").unwrap(),
        ["o/", "o/.hidden=H", "o/one.txt=1"]
    );
}
