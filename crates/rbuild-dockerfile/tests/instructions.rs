//! The typed layer: stages, instructions, flags, heredocs and errors.

use std::time::Duration;

use rbuild_dockerfile::*;

fn parse_ok(src: &str) -> Dockerfile {
    match parse(src.as_bytes(), "Dockerfile") {
        Ok(df) => df,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

fn parse_err(src: &str) -> ParseError {
    match parse(src.as_bytes(), "Dockerfile") {
        Ok(df) => panic!("expected an error, got {df:#?}"),
        Err(e) => e,
    }
}

fn only(df: &Dockerfile) -> &InstructionKind {
    &df.stages[0].instructions[0].kind
}

#[test]
fn stages_names_and_global_args() {
    let df = parse_ok(
        "ARG BASE=alpine\nARG V\nFROM --platform=$BUILDPLATFORM ${BASE}:${V} AS Build\nRUN make\nfrom build\n",
    );
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(df.stages.len(), 2);
    let s = &df.stages[0];
    assert_eq!(
        (s.index, s.name.as_deref(), s.base.as_str()),
        (0, Some("build"), "${BASE}:${V}")
    );
    assert_eq!(s.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(s.span.start_line, 3);
    assert_eq!(df.stages[1].base, "build");
    assert!(df.warnings.iter().any(|w| w.rule == "StageNameCasing"));
}

#[test]
fn run_forms_and_flags() {
    let df = parse_ok(
        "FROM x\nRUN --mount=type=cache,target=/root/.cache,sharing=locked --network=none --security=insecure make\nRUN [\"a\", \"b\"]\n",
    );
    let InstructionKind::Run(run) = only(&df) else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("make".into()));
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.security, Some(SecurityMode::Insecure));
    assert_eq!(run.mounts[0].kind, MountType::Cache);
    assert_eq!(run.mounts[0].sharing, CacheSharing::Locked);
    let InstructionKind::Run(run) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(run.command, Command::Exec(vec!["a".into(), "b".into()]));
}

#[test]
fn run_mount_with_variables_is_resolved_later() {
    let df = parse_ok(
        "FROM x\nARG D=/cache\nRUN --mount=type=cache,target=$D,id=${ID:-x} --mount=type=ssh --mount=type=ssh,id=b true\n",
    );
    let InstructionKind::Run(run) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert!(run.mounts[0].needs_expansion);
    let lookup = |k: &str| (k == "D").then(|| "/cache".to_string());
    let mounts = run.resolve_mounts(&lookup, '\\').unwrap();
    assert_eq!(mounts[0].target.as_deref(), Some("/cache"));
    assert_eq!(mounts[0].id.as_deref(), Some("x"));
    assert_eq!(
        mounts[1].target.as_deref(),
        Some("/run/buildkit/ssh_agent.0")
    );
    assert_eq!(
        mounts[2].target.as_deref(),
        Some("/run/buildkit/ssh_agent.1")
    );
}

#[test]
fn copy_and_add_flags() {
    let df = parse_ok(
        "FROM x\nCOPY --from=build --chown=1:1 --chmod=755 --link --exclude=*.md --exclude=.git --parents a b /dst/\n\
         ADD --keep-git-dir=true --checksum=sha256:abc --unpack=false https://x/y.tar /y\nCOPY [\"a b\", \"/c\"]\n",
    );
    let InstructionKind::Copy(c) = only(&df) else {
        panic!()
    };
    assert_eq!(c.sources, ["a", "b"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:1"));
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", ".git"]);
    let InstructionKind::Add(a) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(
        (a.keep_git_dir, a.unpack, a.checksum.as_deref()),
        (Some(true), Some(false), Some("sha256:abc"))
    );
    let InstructionKind::Copy(j) = &df.stages[0].instructions[2].kind else {
        panic!()
    };
    assert_eq!(
        (j.sources.as_slice(), j.dest.as_str(), j.json),
        (&["a b".to_string()][..], "/c", true)
    );
}

#[test]
fn heredocs_in_run_and_copy() {
    let src = "FROM x\nRUN <<EOF\necho hi\nEOF\nRUN <<-'EOT' bash\n\t\techo $HOME\n\tEOT\nCOPY <<one <<\"two\" /dest/\nfirst\none\nsecond $X\ntwo\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /x\nbody\nA\n";
    let df = parse_ok(src);
    let ins = &df.stages[0].instructions;
    let InstructionKind::Run(r) = &ins[0].kind else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "echo hi\n");
    assert_eq!(r.script(), RunScript::Shell("echo hi\n".into()));
    assert_eq!(ins[0].span.end_line, 4);
    let InstructionKind::Run(r) = &ins[1].kind else {
        panic!()
    };
    assert_eq!(
        (
            r.heredocs[0].content.as_str(),
            r.heredocs[0].expand,
            r.heredocs[0].chomp_tabs
        ),
        ("echo $HOME\n", false, true)
    );
    assert_eq!(
        r.script(),
        RunScript::Shell("<<-'EOT' bash\necho $HOME\nEOT".into())
    );
    let InstructionKind::Copy(c) = &ins[2].kind else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(c.heredocs.len(), 2);
    assert_eq!(
        (
            c.heredocs[0].name.as_str(),
            c.heredocs[0].content.as_str(),
            c.heredocs[0].expand
        ),
        ("one", "first\n", true)
    );
    assert_eq!(
        (
            c.heredocs[1].name.as_str(),
            c.heredocs[1].content.as_str(),
            c.heredocs[1].expand
        ),
        ("two", "second $X\n", false)
    );
    let InstructionKind::Run(r) = &ins[3].kind else {
        panic!()
    };
    assert!(matches!(r.script(), RunScript::File { ref name, .. } if name == "EOF"));
    let InstructionKind::Run(r) = &ins[4].kind else {
        panic!()
    };
    assert_eq!(r.script(), RunScript::Shell("cat <<A > /x\nbody\nA".into()));
}

#[test]
fn env_label_arg_keep_raw_values() {
    let df = parse_ok(
        "FROM x\nENV A=\"1 2\" B=${A}\nENV LEGACY some value\nLABEL \"k\"=v\nARG X Y=\"z\"\n",
    );
    let ins = &df.stages[0].instructions;
    let InstructionKind::Env(e) = &ins[0].kind else {
        panic!()
    };
    assert_eq!((e[0].key.as_str(), e[0].value.as_str()), ("A", "\"1 2\""));
    assert_eq!((e[1].key.as_str(), e[1].value.as_str()), ("B", "${A}"));
    let InstructionKind::Env(e) = &ins[1].kind else {
        panic!()
    };
    assert_eq!((e[0].value.as_str(), e[0].legacy), ("some value", true));
    let InstructionKind::Label(l) = &ins[2].kind else {
        panic!()
    };
    assert_eq!(l[0].key, "\"k\"");
    let InstructionKind::Arg(a) = &ins[3].kind else {
        panic!()
    };
    assert_eq!(
        a[0],
        ArgDecl {
            name: "X".into(),
            default: None
        }
    );
    assert_eq!(
        a[1],
        ArgDecl {
            name: "Y".into(),
            default: Some("\"z\"".into())
        }
    );
}

#[test]
fn healthcheck_forms() {
    let df = parse_ok(
        "FROM x\nHEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=500ms --retries=3 CMD curl -f http://localhost/\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"/bin/check\"]\n",
    );
    let ins = &df.stages[0].instructions;
    let InstructionKind::Healthcheck(h) = &ins[0].kind else {
        panic!()
    };
    assert_eq!(
        h.test,
        HealthTest::CmdShell("curl -f http://localhost/".into())
    );
    assert_eq!(h.interval, Some(Duration::from_secs(30)));
    assert_eq!(h.start_period, Some(Duration::from_secs(60)));
    assert_eq!(h.start_interval, Some(Duration::from_millis(500)));
    assert_eq!(h.retries, Some(3));
    let InstructionKind::Healthcheck(h) = &ins[1].kind else {
        panic!()
    };
    assert_eq!(h.test.to_config(), ["NONE"]);
    let InstructionKind::Healthcheck(h) = &ins[2].kind else {
        panic!()
    };
    assert_eq!(h.test.to_config(), ["CMD", "/bin/check"]);
}

#[test]
fn onbuild_trigger_is_parsed() {
    let df = parse_ok("FROM x\nONBUILD RUN echo hi\nONBUILD COPY <<EOF /f\ndata\nEOF\n");
    let InstructionKind::Onbuild(o) = only(&df) else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert!(matches!(o.trigger.kind, InstructionKind::Run(_)));
    let InstructionKind::Onbuild(o) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(o.expression, "COPY <<EOF /f\ndata\nEOF");
    let InstructionKind::Copy(c) = &o.trigger.kind else {
        panic!()
    };
    assert_eq!(c.heredocs[0].content, "data\n");
}

#[test]
fn misc_instructions() {
    let df = parse_ok(
        "FROM x\nSHELL [\"/bin/bash\", \"-c\"]\nEXPOSE 80 443/tcp 8000-8010/udp\nVOLUME [\"/a\", \"/b\"]\nVOLUME /c /d\nUSER app:app\nWORKDIR /src\nSTOPSIGNAL SIGTERM\nCMD [\"run\"]\nENTRYPOINT exec app\nMAINTAINER me\n",
    );
    let kinds: Vec<&str> = df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.keyword())
        .collect();
    assert_eq!(
        kinds,
        [
            "SHELL",
            "EXPOSE",
            "VOLUME",
            "VOLUME",
            "USER",
            "WORKDIR",
            "STOPSIGNAL",
            "CMD",
            "ENTRYPOINT",
            "MAINTAINER"
        ]
    );
    let InstructionKind::Expose(p) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(p, &["80", "443/tcp", "8000-8010/udp"]);
    assert!(df.warnings.iter().any(|w| w.rule == "MaintainerDeprecated"));
    assert!(df.warnings.iter().any(|w| w.rule == "JSONArgsRecommended"));
}

#[test]
fn directives_bom_crlf_and_escape() {
    let df = parse_ok(
        "\u{feff}# syntax=docker/dockerfile:1\r\n# escape=`\r\nFROM x\r\nRUN echo a `\r\n  b\r\n",
    );
    assert_eq!(df.escape, '`');
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert!(
        df.warnings
            .iter()
            .any(|w| w.rule == "SyntaxDirectiveIgnored")
    );
    let InstructionKind::Run(r) = only(&df) else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell("echo a   b".into()));
    // A directive after a comment is just a comment.
    let df = parse_ok("# hello\n# escape=`\nFROM x\n");
    assert_eq!(df.escape, '\\');
}

#[test]
fn spans_cover_continuations() {
    let df = parse_ok("FROM x\n\n  RUN a \\\n   b \\\n   c\nUSER me\n");
    let s = df.stages[0].instructions[0].span;
    assert_eq!((s.start_line, s.end_line, s.start_col), (3, 5, 3));
    assert_eq!(df.stages[0].instructions[0].original, "RUN a    b    c");
}

// ---- errors: each names file:line:col, quotes the line, points, hints ----

#[test]
fn unknown_instruction_suggests_keyword() {
    let e = parse_err("FROM x\nRUN a\nCPOY a b\n");
    assert_eq!(
        e.to_string(),
        "Dockerfile:3:1: unknown instruction `CPOY`\n 3 | CPOY a b\n   | ^^^^\nhint: did you mean `COPY`?"
    );
}

#[test]
fn unknown_flag_points_at_flag() {
    let e = parse_err("FROM x\nCOPY --form=a x /\n");
    assert_eq!(
        (e.span.start_line, e.span.start_col, e.span.end_col),
        (2, 6, 14)
    );
    assert!(e.message.contains("unknown flag `--form`"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `--from`?"));
    let text = e.to_string();
    assert!(
        text.contains(" 2 | COPY --form=a x /\n   |      ^^^^^^^^"),
        "{text}"
    );
}

#[test]
fn error_table() {
    let cases: &[(&str, &str, usize)] = &[
        ("", "file with no instructions", 1),
        ("# only a comment\n", "file with no instructions", 1),
        ("FROM busybox\nENV PATH\n", "ENV must have two arguments", 2),
        (
            "CMD [ \"echo\", [ \"nested json\" ] ]\n",
            "arrays must be comprised of strings only",
            1,
        ),
        ("RUN x\nFROM y\n", "before the first `FROM`", 1),
        ("ARG A\n", "no `FROM` instruction", 1),
        (
            "FROM a b\n",
            "FROM requires either one or three arguments",
            1,
        ),
        ("FROM a AS 1x\n", "invalid name for build stage", 1),
        ("FROM a AS x\nFROM b AS X\n", "duplicate stage name `x`", 2),
        (
            "FROM a\nCOPY onlyone\n",
            "COPY requires at least two arguments",
            2,
        ),
        (
            "FROM a\nADD --from=x a b\n",
            "unknown flag `--from` for ADD",
            2,
        ),
        (
            "FROM a\nCOPY --link=maybe a b\n",
            "expecting boolean value",
            2,
        ),
        (
            "FROM a\nCOPY --chown a b\n",
            "missing a value on flag `--chown`",
            2,
        ),
        ("FROM a\nCOPY --from=a --from=b a b\n", "duplicate flag", 2),
        (
            "FROM a\nRUN --network=bridge x\n",
            "network mode `bridge` not supported",
            2,
        ),
        (
            "FROM a\nRUN --security=open x\n",
            "security mode `open` not supported",
            2,
        ),
        (
            "FROM a\nRUN --mount=type=nfs,target=/x x\n",
            "unsupported mount type `nfs`",
            2,
        ),
        (
            "FROM a\nRUN --mount=type=cache x\n",
            "requires a `target`",
            2,
        ),
        (
            "FROM a\nRUN --mount=from=$X,target=/x x\n",
            "does not support variable expansion",
            2,
        ),
        (
            "FROM a\nRUN --device=/dev/fuse x\n",
            "unknown flag `--device`",
            2,
        ),
        (
            "FROM a\nSHELL /bin/sh -c\n",
            "SHELL requires the arguments to be in JSON form",
            2,
        ),
        (
            "FROM a\nSHELL []\n",
            "SHELL requires at least one argument",
            2,
        ),
        ("FROM a\nUSER\n", "USER requires exactly one argument", 2),
        (
            "FROM a\nWORKDIR\n",
            "WORKDIR requires exactly one argument",
            2,
        ),
        (
            "FROM a\nEXPOSE\n",
            "EXPOSE requires at least one argument",
            2,
        ),
        (
            "FROM a\nVOLUME\n",
            "VOLUME requires at least one argument",
            2,
        ),
        ("FROM a\nARG =x\n", "ARG names can not be blank", 2),
        ("FROM a\nENV =x\n", "ENV names can not be blank", 2),
        ("FROM a\nENV a=b c\n", "can't find `=` in `c`", 2),
        ("FROM a\nLABEL\n", "LABEL requires at least one argument", 2),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "isn't allowed", 2),
        (
            "FROM a\nONBUILD FROM x\n",
            "FROM isn't allowed as an ONBUILD trigger",
            2,
        ),
        (
            "FROM a\nONBUILD MAINTAINER x\n",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
            2,
        ),
        (
            "FROM a\nONBUILD\n",
            "ONBUILD requires at least one argument",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK\n",
            "HEALTHCHECK requires at least one argument",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK NONE x\n",
            "HEALTHCHECK NONE takes no arguments",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK CONNECT TCP 7000\n",
            "unknown type `CONNECT`",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK CMD\n",
            "missing command after HEALTHCHECK CMD",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD x\n",
            "missing unit",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK --interval=10us CMD x\n",
            "cannot be less than 1ms",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
            "cannot be negative",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK --retries=x CMD x\n",
            "invalid number",
            2,
        ),
        (
            "FROM a\nHEALTHCHECK --bogus=1 CMD x\n",
            "unknown flag `--bogus`",
            2,
        ),
        ("FROM a\nENV --x=1 a=b\n", "ENV takes no flags", 2),
        (
            "FROM a\nRUN <<EOF\nno end\n",
            "unterminated heredoc `EOF`",
            2,
        ),
        (
            "FROM a\nCOPY a <<EOF\nx\nEOF\n",
            "cannot accept a heredoc as a destination",
            2,
        ),
        ("# escape=x\nFROM a\n", "invalid escape token", 1),
        (
            "# escape=`\n# escape=`\nFROM a\n",
            "only one `escape` parser directive",
            2,
        ),
        (
            "FROM a\nMAINTAINER\n",
            "MAINTAINER requires exactly one argument",
            2,
        ),
        (
            "FROM a\nSTOPSIGNAL\n",
            "STOPSIGNAL requires exactly one argument",
            2,
        ),
    ];
    for (src, needle, line) in cases {
        let e = parse_err(src);
        let text = e.to_string();
        assert!(text.contains(needle), "{src:?}: {text}");
        assert_eq!(e.span.start_line, *line, "{src:?}: {text}");
        assert!(text.starts_with(&format!("Dockerfile:{line}:")), "{text}");
    }
}

#[test]
fn check_directive_filters_warnings() {
    let df = parse_ok(
        "# check=skip=JSONArgsRecommended,MaintainerDeprecated;error=true\nFROM a\nCMD run\nMAINTAINER me\nCMD again\n",
    );
    assert!(df.check.error);
    let rules: Vec<&str> = df.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(rules, ["MultipleInstructionsDisallowed"]);
    let df = parse_ok("# check=skip=all\nFROM a\nCMD run\n");
    assert!(df.warnings.is_empty());
    let df = parse_ok("# check=bogus\nFROM a\n");
    assert_eq!(df.warnings[0].rule, "InvalidCheckDirective");
}

#[test]
fn onbuild_triggers_from_images() {
    let i = parse_onbuild_trigger("RUN echo hi").unwrap();
    assert!(matches!(i.kind, InstructionKind::Run(_)));
    let i = parse_onbuild_trigger("COPY <<EOF /f\nbody\nEOF").unwrap();
    let InstructionKind::Copy(c) = i.kind else {
        panic!()
    };
    assert_eq!(c.heredocs[0].content, "body\n");
    assert!(
        parse_onbuild_trigger("FROM x")
            .unwrap_err()
            .to_string()
            .contains("isn't allowed as an ONBUILD trigger")
    );
    assert!(parse_onbuild_trigger("RUN a\nRUN b").is_err());
    assert!(parse_onbuild_trigger("").is_err());
}

#[test]
fn lint_rules() {
    let df = parse_ok(
        "FROM alpine as Build\nWORKDIR app\nWORKDIR /abs\nWORKDIR rel-ok\nENV DB_PASSWORD=x\nENV legacy value\nARG GITHUB_TOKEN\nARG PUBLIC_KEY\nLABEL a b\n",
    );
    let rules: Vec<&str> = df.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(
        rules,
        [
            "FromAsCasing",
            "StageNameCasing",
            "WorkdirRelativePath",
            "SecretsUsedInArgOrEnv",
            "LegacyKeyValueFormat",
            "SecretsUsedInArgOrEnv",
            "LegacyKeyValueFormat"
        ],
        "{:#?}",
        df.warnings
    );
}

#[test]
fn json_lookalikes_and_helpers() {
    let df = parse_ok("ARG A=1 B\nFROM x AS Main\nCMD ['sh', '-c', 'x']\nRUN [\"ok\"]\n");
    let rules: Vec<&str> = df.warnings.iter().map(|w| w.rule).collect();
    assert!(rules.contains(&"InvalidJSONArgs"), "{rules:?}");
    assert_eq!(df.stage_by_name("MAIN").map(|s| s.index), Some(0));
    let names: Vec<&str> = df.global_arg_decls().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
}
