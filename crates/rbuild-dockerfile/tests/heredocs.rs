//! Heredoc extraction at the node level (BuildKit's heredoc semantics):
//! which words are markers, what bodies contain, quoting and `<<-`.

use rbuild_dockerfile::parse_nodes;

/// (Dockerfile after a `FROM` line, expected (name, content, expand, chomp)
/// of the first instruction's heredocs)
/// (name, content, expand, chomp_tabs)
type Doc = (&'static str, &'static str, bool, bool);

const CASES: &[(&str, &[Doc])] = &[
    ("RUN ls\n", &[]),
    ("USER <<NOPE\n", &[]),
    ("RUN <<EMPTY\nEMPTY\n", &[("EMPTY", "", true, false)]),
    ("RUN 3<<FD\nx\nFD\n", &[("FD", "x\n", true, false)]),
    ("RUN \"<<QUOTED\"\n", &[]),
    ("RUN '<<QUOTED'\n", &[]),
    (
        "RUN <<KEEP\n\tfoo\n\tbar\nKEEP\n",
        &[("KEEP", "\tfoo\n\tbar\n", true, false)],
    ),
    (
        "RUN <<-CHOMP\n\tbaz\nCHOMP\n",
        &[("CHOMP", "\tbaz\n", true, true)],
    ),
    (
        "RUN <<-CHOMP2\n\tbaz\n\tCHOMP2\n",
        &[("CHOMP2", "\tbaz\n", true, true)],
    ),
    (
        "RUN <<-'NOEXP'\n\t$NAME\nNOEXP\n",
        &[("NOEXP", "\t$NAME\n", false, true)],
    ),
    (
        "RUN <<\"NOEXP\"\n$NAME\nNOEXP\n",
        &[("NOEXP", "$NAME\n", false, false)],
    ),
    ("RUN <<E\"O\"F\nx\nEOF\n", &[("EOF", "x\n", false, false)]),
    (
        "RUN <<C\n# not a comment here\necho x # nor here\nC\n",
        &[(
            "C",
            "# not a comment here\necho x # nor here\n",
            true,
            false,
        )],
    ),
    (
        "RUN --mount=type=cache,target=/c <<M\necho\nM\n",
        &[("M", "echo\n", true, false)],
    ),
    (
        "COPY <<A <<B /dest\n1\nA\n2\nB\n",
        &[("A", "1\n", true, false), ("B", "2\n", true, false)],
    ),
    (
        "COPY <<X <<Y /dest\nY\nX\nX\nY\n",
        &[("X", "Y\n", true, false), ("Y", "X\n", true, false)],
    ),
    ("RUN [\"<<EOF\"]\n", &[]),
    ("RUN <<'UNTERMINATED\n", &[]),
    (
        "RUN <<EOF\r\nline\r\nEOF\r\n",
        &[("EOF", "line\r\n", true, false)],
    ),
    (
        "RUN <<EOF\n  EOF\nEOF\n",
        &[("EOF", "  EOF\n", true, false)],
    ),
    (
        "ADD <<EOF /x\nbody \\\nEOF\n",
        &[("EOF", "body \\\n", true, false)],
    ),
    ("ONBUILD RUN <<T\nx\nT\n", &[("T", "x\n", true, false)]),
    ("ONBUILD RUN [\"<<T\"]\n", &[]),
];

#[test]
fn heredoc_table() {
    for (body, expected) in CASES {
        let src = format!("FROM alpine\n{body}");
        let raw =
            parse_nodes(src.as_bytes(), "Dockerfile").unwrap_or_else(|e| panic!("{body:?}: {e}"));
        let got: Vec<(&str, &str, bool, bool)> = raw.nodes[1]
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp_tabs))
            .collect();
        assert_eq!(got.as_slice(), *expected, "{body:?}");
    }
}

#[test]
fn lines_after_a_non_heredoc_are_instructions() {
    let raw = parse_nodes(b"FROM a\nUSER <<X\nX\nRUN \"<<Y\"\nY\n", "Dockerfile").unwrap();
    let keywords: Vec<&str> = raw.nodes.iter().map(|n| n.keyword.as_str()).collect();
    assert_eq!(keywords, ["FROM", "USER", "X", "RUN", "Y"]);
}

#[test]
fn spans_include_the_body() {
    let raw = parse_nodes(
        b"FROM a\nCOPY <<A <<B /d\n1\nA\n2\nB\nRUN x\n",
        "Dockerfile",
    )
    .unwrap();
    assert_eq!(
        (raw.nodes[1].span.start_line, raw.nodes[1].span.end_line),
        (2, 6)
    );
    assert_eq!(raw.nodes[2].span.start_line, 7);
}
