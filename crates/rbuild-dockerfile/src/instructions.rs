//! Nodes to typed instructions and stages (BuildKit's `instructions`
//! package): argument counts, flags, stage names, ONBUILD restrictions,
//! heredoc attachment, and the warnings BuildKit's linter would give.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ast::*;
use crate::error::{RawError, Span, suggest};
use crate::flags::{FlagKind, parse_flags, parse_go_duration};
use crate::mounts::MountSpec;
use crate::syntax::{Heredoc, Node, RawDockerfile, Warning, parse_heredoc};

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Converts the node layer to stages. `warnings` receives lint findings.
pub(crate) fn build(raw: RawDockerfile, file_name: &str) -> Result<Dockerfile, RawError> {
    let mut warnings = raw.warnings;
    if let Some(syntax) = &raw.directives.syntax {
        warnings.push(Warning {
            rule: "SyntaxDirectiveIgnored",
            message: format!("`# syntax={syntax}` names an external frontend; rbuild uses its built-in Dockerfile frontend instead"),
            span: None,
        });
    }
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    for node in &raw.nodes {
        let kw = node.keyword.to_ascii_uppercase();
        if kw == "FROM" {
            let stage = parse_from(node, stages.len(), &mut warnings)?;
            if let Some(name) = &stage.name {
                if let Some(prev) = names.get(name) {
                    return Err(RawError::new(
                        node.args_span(),
                        format!("duplicate stage name `{name}`"),
                    )
                    .with_hint(format!(
                        "stage `{name}` is already defined on line {}",
                        prev.start_line
                    )));
                }
                names.insert(name.clone(), stage.span);
            }
            stages.push(stage);
            continue;
        }
        let inst = parse_instruction(node, &mut warnings)?;
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(inst),
            None if matches!(inst.kind, InstructionKind::Arg(_)) => global_args.push(inst),
            None => {
                return Err(RawError::new(
                    node.keyword_span(),
                    format!("`{kw}` before the first `FROM`: no build stage in current context"),
                )
                .with_hint(
                    "only `ARG` may come before the first `FROM`; add a `FROM` line above",
                ));
            }
        }
    }
    if stages.is_empty() {
        let span = raw.nodes.last().map_or(Span::point(1, 1), |n| n.span);
        return Err(RawError::new(
            span,
            "the Dockerfile has no `FROM` instruction, so there is no stage to build",
        )
        .with_hint("start a stage with `FROM <image>` or `FROM scratch`"));
    }
    for stage in &stages {
        crate::lint::lint_stage(stage, &mut warnings);
    }
    let (check, problems) = raw
        .directives
        .check
        .as_deref()
        .map(CheckConfig::parse)
        .unwrap_or_default();
    warnings.extend(problems.into_iter().map(|message| Warning {
        rule: "InvalidCheckDirective",
        message,
        span: None,
    }));
    warnings.retain(|w| check.reports(w.rule));
    Ok(Dockerfile {
        file_name: file_name.to_string(),
        directives: raw.directives,
        escape: raw.escape,
        global_args,
        stages,
        warnings,
        check,
    })
}

fn err(span: Span, message: impl Into<String>) -> RawError {
    RawError::new(span, message)
}

fn parse_from(node: &Node, index: usize, warnings: &mut Vec<Warning>) -> Result<Stage, RawError> {
    let flags = parse_flags(node, "FROM", &[("platform", FlagKind::String)])?;
    let args = &node.args;
    let name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => {
            let lower = args[2].to_lowercase();
            let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                && lower.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(err(node.args_span(), format!("invalid name for build stage: `{}`", args[2]))
                    .with_hint("a stage name starts with a letter and contains only letters, digits, `-`, `_` and `.`"));
            }
            let from_upper = node.keyword.chars().all(|c| c.is_ascii_uppercase());
            let as_upper = args[1].chars().all(|c| c.is_ascii_uppercase());
            if from_upper != as_upper {
                warnings.push(Warning {
                    rule: "FromAsCasing",
                    message: format!(
                        "`{}` and `{}` keywords' casing do not match",
                        args[1], node.keyword
                    ),
                    span: Some(node.args_span()),
                });
            }
            if lower != args[2] {
                warnings.push(Warning {
                    rule: "StageNameCasing",
                    message: format!("stage name `{}` should be lowercase", args[2]),
                    span: Some(node.args_span()),
                });
            }
            if matches!(lower.as_str(), "scratch" | "context") {
                warnings.push(Warning {
                    rule: "ReservedStageName",
                    message: format!("stage name `{lower}` is reserved"),
                    span: Some(node.args_span()),
                });
            }
            Some(lower)
        }
        _ => {
            return Err(err(
                if args.is_empty() {
                    node.span
                } else {
                    node.args_span()
                },
                "FROM requires either one or three arguments",
            )
            .with_hint("write `FROM <image>` or `FROM <image> AS <name>`"));
        }
    };
    Ok(Stage {
        index,
        name,
        base: args[0].clone(),
        platform: flags.string("platform"),
        span: node.span,
        original: node.original.trim().to_string(),
        instructions: Vec::new(),
    })
}

fn no_flags(node: &Node, kw: &str) -> Result<(), RawError> {
    parse_flags(node, kw, &[]).map(|_| ())
}

fn exactly_one(node: &Node, kw: &str) -> Result<String, RawError> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(err(
            node.span,
            format!("{kw} requires exactly one argument"),
        )),
    }
}

fn at_least_one(node: &Node, kw: &str) -> Result<(), RawError> {
    if node.args.is_empty() {
        return Err(err(
            node.span,
            format!("{kw} requires at least one argument"),
        ));
    }
    Ok(())
}

fn command(node: &Node) -> Command {
    if node.json {
        Command::Exec(node.args.clone())
    } else {
        Command::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn kvs(node: &Node, kw: &str) -> Result<Vec<KeyValue>, RawError> {
    at_least_one(node, kw)?;
    let mut out = Vec::new();
    for chunk in node.args.chunks(3) {
        let [key, value, sep] = chunk else {
            return Err(err(
                node.span,
                format!("bad input to {kw}, too many arguments"),
            ));
        };
        if key.is_empty() {
            return Err(err(
                node.args_span(),
                format!("{kw} names can not be blank"),
            ));
        }
        out.push(KeyValue {
            key: key.clone(),
            value: value.clone(),
            legacy: sep.is_empty(),
        });
    }
    Ok(out)
}

/// Heredoc bodies for typed use: `<<-` bodies lose their leading tabs.
fn chomped(docs: &[Heredoc]) -> Vec<Heredoc> {
    docs.iter()
        .map(|d| {
            let mut d = d.clone();
            if d.chomp_tabs {
                d.content = d
                    .content
                    .split_inclusive('\n')
                    .map(|l| l.trim_start_matches('\t'))
                    .collect();
            }
            d
        })
        .collect()
}

/// Parses one non-FROM node.
pub(crate) fn parse_instruction(
    node: &Node,
    warnings: &mut Vec<Warning>,
) -> Result<Instruction, RawError> {
    let kw = node.keyword.to_ascii_uppercase();
    if matches!(kw.as_str(), "RUN" | "CMD" | "ENTRYPOINT")
        && !node.json
        && node
            .args
            .first()
            .is_some_and(|a| a.trim_start().starts_with('['))
    {
        warnings.push(Warning {
            rule: "InvalidJSONArgs",
            message: format!(
                "the arguments of `{kw}` look like a JSON array but are not valid JSON (strings need double quotes), so they run as a shell command"
            ),
            span: Some(node.args_span()),
        });
    }
    let kind = match kw.as_str() {
        "RUN" => InstructionKind::Run(parse_run(node)?),
        "CMD" | "ENTRYPOINT" => {
            no_flags(node, &kw)?;
            if !node.json && !node.args.is_empty() {
                warnings.push(Warning {
                    rule: "JSONArgsRecommended",
                    message: format!("JSON arguments recommended for `{kw}` to prevent unintended behavior related to OS signals"),
                    span: Some(node.span),
                });
            }
            let cmd = command(node);
            if kw == "CMD" {
                InstructionKind::Cmd(cmd)
            } else {
                InstructionKind::Entrypoint(cmd)
            }
        }
        "SHELL" => {
            no_flags(node, &kw)?;
            if !node.json {
                return Err(err(
                    node.args_span(),
                    "SHELL requires the arguments to be in JSON form",
                )
                .with_hint("write e.g. `SHELL [\"/bin/bash\", \"-c\"]`"));
            }
            at_least_one(node, "SHELL")?;
            InstructionKind::Shell(node.args.clone())
        }
        "ADD" | "COPY" => parse_copy(node, &kw)?,
        "MAINTAINER" => {
            no_flags(node, &kw)?;
            warnings.push(Warning {
                rule: "MaintainerDeprecated",
                message: "MAINTAINER is deprecated; use `LABEL org.opencontainers.image.authors=…`"
                    .into(),
                span: Some(node.span),
            });
            InstructionKind::Maintainer(exactly_one(node, "MAINTAINER")?)
        }
        "LABEL" | "ENV" | "EXPOSE" | "VOLUME" | "USER" | "WORKDIR" | "STOPSIGNAL" | "ARG" => {
            parse_simple(node, &kw)?
        }
        "ONBUILD" => InstructionKind::Onbuild(parse_onbuild(node, warnings)?),
        "HEALTHCHECK" => InstructionKind::Healthcheck(parse_healthcheck(node, warnings)?),
        "FROM" => {
            return Err(err(node.keyword_span(), "FROM is not allowed here"));
        }
        _ => {
            let e = err(
                node.keyword_span(),
                format!("unknown instruction `{}`", node.keyword),
            );
            return Err(match suggest(&node.keyword, KEYWORDS) {
                Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                None => e.with_hint("instructions are FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, …"),
            });
        }
    };
    if node.keyword != kw && node.keyword != kw.to_ascii_lowercase() {
        warnings.push(Warning {
            rule: "ConsistentInstructionCasing",
            message: format!("instruction `{}` should be written `{kw}`", node.keyword),
            span: Some(node.keyword_span()),
        });
    }
    Ok(Instruction {
        span: node.span,
        original: node.original.trim().to_string(),
        kind,
    })
}

/// Instructions without flags whose arguments need only counting/splitting.
fn parse_simple(node: &Node, kw: &str) -> Result<InstructionKind, RawError> {
    no_flags(node, kw)?;
    Ok(match kw {
        "LABEL" => InstructionKind::Label(kvs(node, "LABEL")?),
        "ENV" => InstructionKind::Env(kvs(node, "ENV")?),
        "EXPOSE" => {
            at_least_one(node, "EXPOSE")?;
            InstructionKind::Expose(node.args.clone())
        }
        "VOLUME" => {
            at_least_one(node, "VOLUME")?;
            let mut vols = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(err(
                        node.args_span(),
                        "VOLUME specified can not be an empty string",
                    ));
                }
                vols.push(v.to_string());
            }
            InstructionKind::Volume(vols)
        }
        "USER" => InstructionKind::User(exactly_one(node, "USER")?),
        "WORKDIR" => InstructionKind::Workdir(exactly_one(node, "WORKDIR")?),
        "STOPSIGNAL" => InstructionKind::StopSignal(exactly_one(node, "STOPSIGNAL")?),
        "ARG" => {
            at_least_one(node, "ARG")?;
            let mut decls = Vec::new();
            for a in &node.args {
                let decl = match a.split_once('=') {
                    Some(("", _)) => {
                        return Err(err(node.args_span(), "ARG names can not be blank"));
                    }
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: a.clone(),
                        default: None,
                    },
                };
                decls.push(decl);
            }
            InstructionKind::Arg(decls)
        }
        _ => {
            return Err(err(
                node.keyword_span(),
                format!("unknown instruction `{}`", node.keyword),
            ));
        }
    })
}

fn parse_run(node: &Node) -> Result<Run, RawError> {
    let flags = parse_flags(
        node,
        "RUN",
        &[
            ("mount", FlagKind::Strings),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
        ],
    )?;
    let flag_span = |name: &str| flags.span(node, name);
    let mut mounts = Vec::new();
    let mount_indexes: Vec<usize> = node
        .flags
        .iter()
        .enumerate()
        .filter(|(_, f)| f.starts_with("--mount="))
        .map(|(i, _)| i)
        .collect();
    for (n, raw) in flags.strings("mount").into_iter().enumerate() {
        let span = mount_indexes
            .get(n)
            .and_then(|&i| node.flag_ranges.get(i))
            .map_or(node.span, |&(s, e)| node.range_span(s, e));
        let parsed = MountSpec::parse_deferred(&raw).map_err(|e| err(span, e.to_string()))?;
        mounts.push(parsed);
    }
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => {
            return Err(err(
                flag_span("network"),
                format!("network mode `{other}` not supported"),
            )
            .with_hint("use `default`, `none` or `host`"));
        }
    };
    let security = match flags.string("security").as_deref() {
        None => None,
        Some("sandbox") => Some(SecurityMode::Sandbox),
        Some("insecure") => Some(SecurityMode::Insecure),
        Some(other) => {
            return Err(err(
                flag_span("security"),
                format!("security mode `{other}` not supported"),
            )
            .with_hint("use `sandbox` or `insecure`"));
        }
    };
    let heredocs = if node.json {
        Vec::new()
    } else {
        chomped(&node.heredocs)
    };
    Ok(Run {
        command: command(node),
        heredocs,
        mounts,
        network,
        security,
    })
}

fn parse_copy(node: &Node, kw: &str) -> Result<InstructionKind, RawError> {
    let is_add = kw == "ADD";
    let mut declared = vec![
        ("chown", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::Strings),
        ("parents", FlagKind::Bool),
    ];
    if is_add {
        declared.extend([
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::String),
            ("unpack", FlagKind::Bool),
        ]);
    } else {
        declared.push(("from", FlagKind::String));
    }
    let flags = parse_flags(node, kw, &declared)?;
    if node.args.len() < 2 {
        return Err(err(node.span, format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined"))
            .with_hint(format!("write `{kw} <source>... <destination>`")));
    }
    let (dest, srcs) = node.args.split_last().unwrap_or((&node.args[0], &[]));
    let heredocs = if node.json {
        Vec::new()
    } else {
        chomped(&node.heredocs)
    };
    if !node.json && parse_heredoc(dest).ok().flatten().is_some() {
        return Err(err(
            node.args_span(),
            format!("{kw} cannot accept a heredoc as a destination"),
        ));
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        match (!node.json)
            .then(|| parse_heredoc(src).ok().flatten())
            .flatten()
        {
            Some(marker) => {
                let body = heredocs.iter().find(|h| h.name == marker.name).cloned();
                inline.push(body.unwrap_or(Heredoc {
                    content: String::new(),
                    ..marker
                }));
            }
            None => sources.push(src.clone()),
        }
    }
    let copy = Copy {
        sources,
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.strings("exclude"),
        parents: flags.bool("parents").unwrap_or(false),
        heredocs: inline,
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum: flags.string("checksum"),
        unpack: flags.bool("unpack"),
        json: node.json,
    };
    Ok(if is_add {
        InstructionKind::Add(copy)
    } else {
        InstructionKind::Copy(copy)
    })
}

fn parse_onbuild(node: &Node, warnings: &mut Vec<Warning>) -> Result<Onbuild, RawError> {
    no_flags(node, "ONBUILD")?;
    let Some(sub) = &node.sub else {
        return Err(err(node.span, "ONBUILD requires at least one argument"));
    };
    let trigger_kw = sub.keyword.to_ascii_uppercase();
    match trigger_kw.as_str() {
        "ONBUILD" => {
            return Err(err(
                sub.keyword_span(),
                "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ));
        }
        "MAINTAINER" | "FROM" => {
            return Err(err(
                sub.keyword_span(),
                format!("{trigger_kw} isn't allowed as an ONBUILD trigger"),
            ));
        }
        _ => {}
    }
    let mut sub = (**sub).clone();
    sub.heredocs = node.heredocs.clone();
    sub.span = node.span;
    let trigger = parse_instruction(&sub, warnings)?;
    let original = node.original.trim_start();
    let mut expression = original.get(7..).unwrap_or("").trim_start().to_string();
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(Onbuild {
        expression,
        trigger: Box::new(trigger),
    })
}

fn parse_healthcheck(node: &Node, warnings: &mut Vec<Warning>) -> Result<Healthcheck, RawError> {
    let Some(typ) = node.args.first() else {
        return Err(err(node.span, "HEALTHCHECK requires at least one argument")
            .with_hint("write `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`"));
    };
    let rest = &node.args[1..];
    let upper = typ.to_ascii_uppercase();
    if upper == "NONE" {
        if !rest.is_empty() {
            return Err(err(node.args_span(), "HEALTHCHECK NONE takes no arguments"));
        }
        if !node.flags.is_empty() {
            warnings.push(Warning {
                rule: "HealthcheckNoneFlags",
                message: "flags of `HEALTHCHECK NONE` are ignored".into(),
                span: Some(node.span),
            });
        }
        return Ok(Healthcheck {
            test: HealthTest::None,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        });
    }
    let flags = parse_flags(
        node,
        "HEALTHCHECK",
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    let flag_span = |name: &str| flags.span(node, name);
    if upper != "CMD" {
        return Err(err(
            node.args_span(),
            format!("unknown type `{typ}` in HEALTHCHECK"),
        )
        .with_hint("try `CMD` or `NONE`"));
    }
    let test = if node.json {
        if rest.is_empty() {
            return Err(err(
                node.args_span(),
                "missing command after HEALTHCHECK CMD",
            ));
        }
        HealthTest::Cmd(rest.to_vec())
    } else {
        match rest.first() {
            Some(s) if !s.is_empty() => HealthTest::CmdShell(s.clone()),
            _ => {
                return Err(err(
                    node.args_span(),
                    "missing command after HEALTHCHECK CMD",
                ));
            }
        }
    };
    let duration = |name: &str| -> Result<Option<Duration>, RawError> {
        let Some(v) = flags.string(name) else {
            return Ok(None);
        };
        let (neg, d) =
            parse_go_duration(&v).map_err(|m| err(flag_span(name), format!("--{name}: {m}")))?;
        if d.is_zero() {
            return Ok(Some(Duration::ZERO));
        }
        if neg || d < Duration::from_millis(1) {
            return Err(err(
                flag_span(name),
                format!("--{name} `{v}` cannot be less than 1ms"),
            ));
        }
        Ok(Some(d))
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(v) => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| {
                    err(
                        flag_span("retries"),
                        format!("--retries: invalid number `{v}`"),
                    )
                })?;
            if n < 0 {
                return Err(err(
                    flag_span("retries"),
                    format!("--retries cannot be negative (`{v}`)"),
                ));
            }
            u32::try_from(n).ok()
        }
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}
