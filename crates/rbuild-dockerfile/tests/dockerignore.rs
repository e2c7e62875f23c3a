//! `.dockerignore` semantics, case by case (Docker's patternmatcher and
//! ignorefile behaviour, including its shortcuts).

use rbuild_dockerfile::ignore::{IgnorePattern, dockerignore_names};
use rbuild_dockerfile::{IgnoreError, IgnoreMatcher, parse_dockerignore};

/// (dockerignore text, path, excluded?)
const CASES: &[(&str, &str, bool)] = &[
    // `**` forms
    ("**", "file", true),
    ("**", "dir/file", true),
    ("**/", "dir/file", true),
    ("**/**", "dir/file", true),
    ("dir/**", "dir/file", true),
    ("dir/**", "dir/dir2/file", true),
    ("dir/**", "dir", false),
    ("dir/**", "dirx/file", false),
    ("**/dir", "dir", true),
    ("**/dir", "dir/file", true),
    ("**/dir", "a/dir/file", true),
    ("**/dir", "adir", false),
    ("**/dir2/*", "dir/dir2/file", true),
    ("**/dir2/*", "dir2/file", true),
    ("**/dir2/*", "dir/dir2/a/b", true),
    ("**/dir2/**", "dir/dir2/dir3/file", true),
    ("**file", "file", true),
    ("**file", "dir/file", true),
    ("**file", "dir/myfile", true),
    ("**/file", "dir/myfile", false),
    ("**/file*", "dir/dir/file.txt", true),
    ("**/*.txt", "file.txt", true),
    ("**/*.txt", "a/b/c.txt", true),
    ("**/*.txt", "a/b/c.txt2", false),
    ("**/**/*.txt", "dir/dir/file.txt", true),
    ("a**/*.txt", "a/file.txt", true),
    ("a**/*.txt", "a/dir/file.txt", true),
    ("a**/*.txt", "abc/file.txt", true),
    ("**/foo/bar", "foo/bar", true),
    ("**/foo/bar", "dir/foo/bar", true),
    ("**/.foo", ".foo", true),
    ("**/.foo", "bar.foo", false),
    ("**/.git", ".git/config", true),
    ("**/.git", "sub/.git/HEAD", true),
    ("**/*.go", "vendor/a/b.go", true),
    ("**/a/**/b", "x/a/y/z/b", true),
    ("**/a/**/b", "a/b", true),
    ("a/**/b", "a/b", true),
    ("a/**/b", "a/x/y/b", true),
    ("a/**/b", "ab", false),
    ("abc/**", "abc", false),
    ("abc/**", "abc/def/ghi", true),
    // `*`, `?`, classes, escapes, regex metacharacters
    ("a/*.txt", "a/dir/file.txt", false),
    ("a/*.txt", "a/file.txt", true),
    ("a[b-d]e", "ae", false),
    ("a[b-d]e", "ace", true),
    ("a[b-d]e", "aae", false),
    ("a[^b-d]e", "aze", true),
    ("a[^b-d]e", "ace", false),
    ("a[^b-d]e", "a/e", true),
    ("[ab]", "a", true),
    ("[ab]", "c", false),
    (".*", ".foo", true),
    (".*", "foo", false),
    (".*", "dir/.foo", false),
    ("abc.def", "abcdef", false),
    ("abc.def", "abc.def", true),
    ("abc?def", "abcZdef", true),
    ("abc?def", "abcdef", false),
    ("abc?def", "abc/def", false),
    ("a\\\\", "a\\", true),
    ("\\*", "*", true),
    ("\\*", "x", false),
    ("a(b)c/def", "a(b)c/def", true),
    ("a(b)c/def", "a(b)c/xyz", false),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        true,
    ),
    ("*", "anything", true),
    ("*", "dir/file", true),
    ("*.go", "main.go", true),
    ("*.go", "pkg/main.go", false),
    ("*/*.go", "pkg/main.go", true),
    ("*/*.go", "a/b/main.go", false),
    ("temp?", "temp1", true),
    ("temp?", "temp", false),
    ("temp?", "temp12", false),
    ("*/temp*", "somedir/temporary.txt", true),
    ("*/temp*", "somedir/subdir/temporary.txt", false),
    ("*/*/temp*", "somedir/subdir/temporary.txt", true),
    ("*.md", "README.md", true),
    ("README*", "README.md", true),
    ("d?cs/*", "docs/a", true),
    ("a*/b", "ax/b/c", true),
    ("日本/*.txt", "日本/語.txt", true),
    ("?.txt", "語.txt", true),
    // plain names, directories, cleaning
    ("node_modules", "node_modules", true),
    ("node_modules", "node_modules/x/y.js", true),
    ("node_modules", "src/node_modules/x", false),
    ("/node_modules", "node_modules/a", true),
    ("./node_modules", "node_modules/a", true),
    ("node_modules/", "node_modules/a", true),
    ("a/../b", "b", true),
    ("a/./b", "a/b", true),
    ("a//b", "a/b", true),
    ("docs", "docs", true),
    ("docs", "docsx", false),
    ("a/b", "a", false),
    ("a/b", "a/b/c", true),
    (".git", "sub/.git/HEAD", false),
    ("../outside", "outside", false),
    // comments, blanks, trimming
    ("#comment\nfoo", "#comment", false),
    ("#comment\nfoo", "foo", true),
    (" #notcomment", "#notcomment", true),
    ("foo\n\n  \nbar", "bar", true),
    ("  foo  ", "foo", true),
    ("\u{feff}foo", "foo", true),
    ("foo\r\nbar\r\n", "foo", true),
    ("", "anything", false),
    ("*", ".", false),
    // exceptions: the last matching pattern wins
    ("*.md\n!README.md", "README.md", false),
    ("*.md\n!README.md", "CHANGES.md", true),
    (
        "*.md\n!README*.md\nREADME-secret.md",
        "README-secret.md",
        true,
    ),
    (
        "*.md\n!README*.md\nREADME-secret.md",
        "README-public.md",
        false,
    ),
    ("docs\n!docs/keep.txt", "docs/keep.txt", false),
    ("docs\n!docs/keep.txt", "docs/other.txt", true),
    ("docs\n!docs/keep.txt", "docs", true),
    ("!docs/keep.txt\ndocs", "docs/keep.txt", true),
    ("**\n!src", "src/main.rs", false),
    ("**\n!src", "Cargo.toml", true),
    ("**\n!src\nsrc/*.tmp", "src/x.tmp", true),
    ("*\n! foo", "foo", false),
    ("**/*.log\n!important/*.log", "important/a.log", false),
    ("**/*.log\n!important/*.log", "other/a.log", true),
    ("!/keep\n*", "keep", true),
    ("*\n!/keep", "keep", false),
    ("*\n!/keep", "keep/inner", false),
];

#[test]
fn table() {
    assert!(CASES.len() >= 100, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (text, path, expected) in CASES {
        let m = IgnoreMatcher::from_dockerignore(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        if m.matches(path, false) != *expected {
            failures.push(format!(
                "patterns {text:?}, path {path:?}: expected excluded={expected}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_patterns() {
    assert_eq!(
        parse_dockerignore("foo\n!\n"),
        Err(IgnoreError::LoneBang { line: 2 })
    );
    assert_eq!(
        parse_dockerignore("  !  "),
        Err(IgnoreError::LoneBang { line: 1 })
    );
    for bad in ["[", "a[b", "[]", "a\\", "[a-]", "x[^]"] {
        assert!(parse_dockerignore(bad).is_err(), "{bad:?} must be rejected");
    }
    let e = parse_dockerignore("ok\n\n[oops").unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("`[oops`"), "{e}");
}

#[test]
fn parsed_form() {
    let p = parse_dockerignore("# c\n/abs/path/\n!./keep//x\n").unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].pattern.as_str(), p[0].exception, p[0].line),
        ("abs/path", false, 2)
    );
    assert_eq!(
        (p[1].pattern.as_str(), p[1].exception, p[1].line),
        ("keep/x", true, 3)
    );
    assert_eq!(IgnorePattern::new("  ./a/b/ ").unwrap().pattern, "a/b");
}

#[test]
fn directory_pruning() {
    let m = IgnoreMatcher::from_dockerignore("node_modules").unwrap();
    assert!(m.can_skip_dir("node_modules"));
    assert!(!m.can_skip_dir("src"));
    let m = IgnoreMatcher::from_dockerignore("docs\n!docs/keep.txt").unwrap();
    assert!(!m.can_skip_dir("docs"));
    let m = IgnoreMatcher::from_dockerignore("**\n!src").unwrap();
    assert!(m.can_skip_dir("target"));
    assert!(!m.can_skip_dir("src"));
    let m = IgnoreMatcher::from_dockerignore("**\n!**/*.rs").unwrap();
    assert!(!m.can_skip_dir("target"));
    let m = IgnoreMatcher::from_dockerignore("build\n!build/keep/**").unwrap();
    assert!(!m.can_skip_dir("build"));
    assert!(m.can_skip_dir("build/other"));
    assert!(!m.can_skip_dir("build/keep"));
    let m = IgnoreMatcher::from_dockerignore("*\n!**keep").unwrap();
    assert!(!m.can_skip_dir("anything"));
}

#[test]
fn dockerignore_file_names() {
    assert_eq!(
        dockerignore_names("build/Dockerfile.prod"),
        ["Dockerfile.prod.dockerignore", ".dockerignore"]
    );
}

#[test]
fn pattern_lists() {
    let m = IgnoreMatcher::from_patterns(&["*.md", "!README.md", "", "#hash"]).unwrap();
    assert!(m.matches("#hash", false));
    assert!(m.matches("CHANGES.md", false));
    assert!(!m.matches("README.md", false));
    assert!(IgnoreMatcher::from_patterns(&["!"]).is_err());
    assert!(
        IgnoreMatcher::from_patterns::<&str>(&[])
            .unwrap()
            .is_empty()
    );
}
