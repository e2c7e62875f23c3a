//! Which stages a build needs, in which order, from what.
//!
//! Given the parsed Dockerfile and the build's options this module does
//! what BuildKit does before converting anything:
//!
//! - computes the global (pre-`FROM`) ARG values: automatic platform ARGs,
//!   then each global `ARG` in order (`--build-arg` wins over the default,
//!   defaults may use earlier ARGs);
//! - expands every `FROM` image word and `--platform` with those values
//!   (and only those: stage ARGs and ENV never reach `FROM`);
//! - resolves stage references: `FROM <earlier stage>`, `COPY --from=` and
//!   `RUN --mount=from=` by name (case-insensitive) or index, named build
//!   contexts overriding both stage names and image names, `scratch`;
//! - picks the target (default: the last stage) and returns only the
//!   stages it needs, dependencies first;
//! - rejects unknown targets, bad indexes, cycles, `FROM` of a stage that
//!   is defined later, and reports unused `--build-arg`s as warnings.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ast::{Dockerfile, InstructionKind, Stage};
use crate::error::{ParseError, Span, suggest};
use crate::mounts::MountType;
use crate::syntax::Warning;

/// The project's platform type (containerd's parsing and normalisation),
/// re-exported here because [`ResolveOptions`] and [`ResolvedStage`] use it.
pub use rbuild_oci::platform::Platform;

/// What the build asked for.
#[derive(Debug, Clone)]
pub struct ResolveOptions<'a> {
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// `--target`, matched case-insensitively against stage names.
    pub target: Option<&'a str>,
    /// The platform the build runs on.
    pub build_platform: Platform,
    /// The platform the image is for.
    pub target_platform: Platform,
    /// Names of `--build-context name=…` contexts: they replace stages of
    /// that name and images of that name in FROM / `--from`.
    pub named_contexts: &'a BTreeSet<String>,
}

/// Where a stage starts from, or where a `--from` points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Source {
    /// `scratch`: an empty filesystem.
    Scratch,
    /// Another stage, by index.
    Stage(usize),
    /// An image reference (expanded, not normalised).
    Image(String),
    /// A named build context.
    Context(String),
}

/// A `--from` reference inside a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromRef {
    /// Index of the instruction in [`crate::Stage::instructions`].
    pub instruction: usize,
    /// `Some(i)`: the i-th `--mount` of that RUN; `None`: `COPY --from`.
    pub mount: Option<usize>,
    pub source: Source,
}

/// A stage the build needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedStage {
    pub index: usize,
    pub name: Option<String>,
    pub base: Source,
    /// The expanded `--platform`, if given (else the target platform).
    pub platform: Option<Platform>,
    /// Every `COPY --from` / mount `from=` of the stage, resolved.
    pub from_refs: Vec<FromRef>,
    /// Stages this one needs (base and `--from`), sorted.
    pub deps: Vec<usize>,
}

/// The result: stages to build, dependencies first; the target is last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedStages {
    pub target: usize,
    pub stages: Vec<ResolvedStage>,
    /// Global ARG values after build args and defaults (including the
    /// automatic platform ARGs): what `FROM` lines saw, and what an `ARG X`
    /// without a default inside a stage inherits.
    pub global_args: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
}

/// ARGs every build defines without a declaration; never reported unused.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The automatic platform ARGs for a build.
pub fn platform_args(build: &Platform, target: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

fn is_builtin_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
        || name.starts_with("BUILDKIT_")
        || name == "SOURCE_DATE_EPOCH"
        || ["PLATFORM", "OS", "ARCH", "VARIANT"]
            .iter()
            .any(|s| name == format!("BUILD{s}") || name == format!("TARGET{s}"))
}

fn error(
    df: &Dockerfile,
    span: Span,
    line_text: &str,
    message: String,
    hint: Option<String>,
) -> ParseError {
    let first = line_text.lines().next().unwrap_or("");
    let span = if span.start_line == 0 {
        span
    } else {
        Span {
            end_line: span.start_line,
            end_col: span.start_col + first.chars().count(),
            ..span
        }
    };
    ParseError {
        file_name: df.file_name.clone(),
        span,
        message,
        source_line: format!("{}{}", " ".repeat(span.start_col.saturating_sub(1)), first),
        hint,
    }
}

/// Resolves stages for a build. See the module docs.
#[allow(clippy::result_large_err)] // errors are rare and carry the rendered context
pub fn resolve(df: &Dockerfile, opts: &ResolveOptions<'_>) -> Result<ResolvedStages, ParseError> {
    let (globals, declared) = global_args(df, opts)?;
    let r = Resolver {
        df,
        opts,
        globals,
        by_name: df
            .stages
            .iter()
            .filter_map(|s| s.name.as_ref().map(|n| (n.clone(), s.index)))
            .collect(),
    };
    let mut resolved = Vec::with_capacity(df.stages.len());
    for stage in &df.stages {
        resolved.push(r.stage(stage)?);
    }
    r.apply_named_contexts(&mut resolved);
    let target = r.target()?;
    let mut state = vec![0u8; resolved.len()]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::new();
    visit(df, &resolved, target, &mut state, &mut order)?;
    let mut warnings = undefined_args_in_from(df, &declared);
    warnings.extend(unused_build_args(df, opts, declared, &order));
    let stages = order.iter().map(|&i| resolved[i].clone()).collect();
    Ok(ResolvedStages {
        target,
        stages,
        global_args: r.globals,
        warnings,
    })
}

/// The global ARG values (platform ARGs, then each global `ARG` in order,
/// `--build-arg` winning over defaults) and the names declared.
#[allow(clippy::result_large_err)]
fn global_args(
    df: &Dockerfile,
    opts: &ResolveOptions<'_>,
) -> Result<(BTreeMap<String, String>, BTreeSet<String>), ParseError> {
    let mut globals = platform_args(&opts.build_platform, &opts.target_platform);
    let mut declared = BTreeSet::new();
    for inst in &df.global_args {
        let InstructionKind::Arg(decls) = &inst.kind else {
            continue;
        };
        let fail =
            |e: crate::ExpandError| error(df, inst.span, &inst.original, e.to_string(), None);
        for d in decls {
            let lookup = |k: &str| globals.get(k).cloned();
            let name = crate::expand_word(&d.name, &lookup, df.escape).map_err(fail)?;
            let value = match (opts.build_args.get(&name), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(def)) => {
                    Some(crate::expand_word(def, &lookup, df.escape).map_err(fail)?)
                }
                (None, None) => None,
            };
            declared.insert(name.clone());
            if let Some(v) = value {
                globals.insert(name, v);
            }
        }
    }
    Ok((globals, declared))
}

struct Resolver<'a> {
    df: &'a Dockerfile,
    opts: &'a ResolveOptions<'a>,
    globals: BTreeMap<String, String>,
    /// Lowercased stage name → index.
    by_name: BTreeMap<String, usize>,
}

impl Resolver<'_> {
    #[allow(clippy::result_large_err)]
    fn expand(&self, word: &str, span: Span, text: &str) -> Result<String, ParseError> {
        let lookup = |k: &str| self.globals.get(k).cloned();
        crate::expand_word(word, &lookup, self.df.escape)
            .map_err(|e| error(self.df, span, text, e.to_string(), None))
    }

    /// The named context a word refers to, if any (exact, then lowercased).
    fn context_for(&self, word: &str) -> Option<String> {
        let contexts = self.opts.named_contexts;
        if contexts.contains(word) {
            return Some(word.to_string());
        }
        let lower = word.to_lowercase();
        contexts.contains(&lower).then_some(lower)
    }

    #[allow(clippy::result_large_err)]
    fn stage(&self, stage: &Stage) -> Result<ResolvedStage, ParseError> {
        let df = self.df;
        let base_word = self.expand(&stage.base, stage.span, &stage.original)?;
        if base_word.trim().is_empty() {
            let hint = Some("check that the ARG it uses has a value".into());
            return Err(error(
                df,
                stage.span,
                &stage.original,
                format!("base name `{}` should not be blank", stage.base),
                hint,
            ));
        }
        let base = if let Some(c) = self.context_for(&base_word) {
            Source::Context(c)
        } else if base_word.eq_ignore_ascii_case("scratch") {
            Source::Scratch
        } else {
            match self.by_name.get(&base_word.to_lowercase()) {
                Some(&i) if i < stage.index => Source::Stage(i),
                Some(&i) => {
                    let message = format!(
                        "stage `{base_word}` is used before it is defined (line {})",
                        df.stages[i].span.start_line
                    );
                    let hint = Some(
                        "a stage can only start FROM a stage defined above it; move the stage up"
                            .into(),
                    );
                    return Err(error(df, stage.span, &stage.original, message, hint));
                }
                None => Source::Image(base_word),
            }
        };
        let platform = match &stage.platform {
            None => None,
            Some(p) => {
                let v = self.expand(p, stage.span, &stage.original)?;
                let hint = || Some("use `os/arch[/variant]`, e.g. `linux/arm64`".into());
                let message = || format!("invalid platform `{v}` in `--platform={p}`");
                Some(
                    Platform::parse(&v)
                        .map_err(|_| error(df, stage.span, &stage.original, message(), hint()))?,
                )
            }
        };
        let from_refs = self.collect_from_refs(stage)?;
        let mut resolved = ResolvedStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            platform,
            from_refs,
            deps: Vec::new(),
        };
        resolved.deps = deps_of(&resolved);
        Ok(resolved)
    }

    /// Every `COPY --from` and bind/cache `--mount from=` of a stage.
    #[allow(clippy::result_large_err)]
    fn collect_from_refs(&self, stage: &Stage) -> Result<Vec<FromRef>, ParseError> {
        let df = self.df;
        let mut refs = Vec::new();
        for (i, inst) in stage.instructions.iter().enumerate() {
            let mut words: Vec<(Option<usize>, &str)> = Vec::new();
            match &inst.kind {
                InstructionKind::Copy(c) => words.extend(c.from.as_deref().map(|f| (None, f))),
                InstructionKind::Run(r) => {
                    for (m_i, m) in r.mounts.iter().enumerate() {
                        if matches!(m.kind, MountType::Bind | MountType::Cache) {
                            words.extend(m.from.as_deref().map(|f| (Some(m_i), f)));
                        }
                    }
                }
                _ => {}
            }
            for (mount, word) in words {
                let word = self.expand(word, inst.span, &inst.original)?;
                let source = if let Some(c) = self.context_for(&word) {
                    Source::Context(c)
                } else if let Ok(n) = word.parse::<i64>() {
                    match usize::try_from(n).ok().filter(|&n| n < df.stages.len()) {
                        Some(n) => Source::Stage(n),
                        None => {
                            let hint = Some(format!(
                                "this Dockerfile has stages 0 to {}",
                                df.stages.len() - 1
                            ));
                            return Err(error(
                                df,
                                inst.span,
                                &inst.original,
                                format!("invalid stage index `{word}`"),
                                hint,
                            ));
                        }
                    }
                } else if word.eq_ignore_ascii_case("scratch") {
                    Source::Scratch
                } else {
                    match self.by_name.get(&word.to_lowercase()) {
                        Some(&n) => Source::Stage(n),
                        None => Source::Image(word),
                    }
                };
                refs.push(FromRef {
                    instruction: i,
                    mount,
                    source,
                });
            }
        }
        Ok(refs)
    }

    /// A stage whose name is a named context is replaced by the context
    /// (and then never built).
    fn apply_named_contexts(&self, resolved: &mut [ResolvedStage]) {
        let replaced = |n: usize| {
            self.df.stages[n]
                .name
                .as_deref()
                .and_then(|name| self.context_for(name))
        };
        for r in resolved.iter_mut() {
            if let Source::Stage(n) = r.base
                && let Some(c) = replaced(n)
            {
                r.base = Source::Context(c);
            }
            for f in &mut r.from_refs {
                if let Source::Stage(n) = f.source
                    && let Some(c) = replaced(n)
                {
                    f.source = Source::Context(c);
                }
            }
            r.deps = deps_of(r);
        }
    }

    #[allow(clippy::result_large_err)]
    fn target(&self) -> Result<usize, ParseError> {
        let Some(t) = self.opts.target else {
            return Ok(self.df.stages.len() - 1);
        };
        if let Some(&i) = self.by_name.get(&t.to_lowercase()) {
            return Ok(i);
        }
        let names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        let hint = match suggest(t, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "this Dockerfile has no named stages".into(),
            None => format!(
                "stages are: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(ParseError {
            file_name: self.df.file_name.clone(),
            span: Span::default(),
            message: format!("target stage `{t}` could not be found"),
            source_line: String::new(),
            hint: Some(hint),
        })
    }
}

fn deps_of(r: &ResolvedStage) -> Vec<usize> {
    let stage_of = |s: &Source| {
        if let Source::Stage(n) = s {
            Some(*n)
        } else {
            None
        }
    };
    let deps: BTreeSet<usize> = r
        .from_refs
        .iter()
        .filter_map(|f| stage_of(&f.source))
        .chain(stage_of(&r.base))
        .collect();
    deps.into_iter().collect()
}

/// FROM lines using variables no global ARG declares (a `--build-arg`
/// cannot reach them, so they only ever take their `${x:-default}`).
fn undefined_args_in_from(df: &Dockerfile, declared: &BTreeSet<String>) -> Vec<Warning> {
    let mut out = Vec::new();
    for stage in &df.stages {
        let words = std::iter::once(stage.base.as_str()).chain(stage.platform.as_deref());
        let mut names = BTreeSet::new();
        for w in words {
            names.extend(crate::referenced_variables(w, df.escape));
        }
        for name in names {
            if !declared.contains(&name) && !is_builtin_arg(&name) {
                out.push(Warning {
                    rule: "UndefinedArgInFrom",
                    message: format!(
                        "FROM uses `${name}`, which no ARG before the first FROM declares"
                    ),
                    span: Some(stage.span),
                });
            }
        }
    }
    out
}

/// `--build-arg`s no ARG of the built stages (or the global scope) declares.
fn unused_build_args(
    df: &Dockerfile,
    opts: &ResolveOptions<'_>,
    mut consumed: BTreeSet<String>,
    order: &[usize],
) -> Vec<Warning> {
    for &i in order {
        for inst in &df.stages[i].instructions {
            if let InstructionKind::Arg(decls) = &inst.kind {
                consumed.extend(decls.iter().map(|d| d.name.clone()));
            }
        }
    }
    opts.build_args
        .keys()
        .filter(|name| !consumed.contains(*name) && !is_builtin_arg(name))
        .map(|name| Warning {
            rule: "UnusedBuildArg",
            message: format!("build argument `{name}` was provided but not consumed by any `ARG` of the stages being built"),
            span: None,
        })
        .collect()
}

/// Depth-first post-order from `i`; an edge back to a stage still on the
/// stack is a cycle. Iterative, so hostile inputs cannot exhaust the stack.
#[allow(clippy::result_large_err)]
fn visit(
    df: &Dockerfile,
    stages: &[ResolvedStage],
    start: usize,
    state: &mut [u8],
    order: &mut Vec<usize>,
) -> Result<(), ParseError> {
    let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
    state[start] = 1;
    while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        if let Some(&dep) = stages[node].deps.get(*next) {
            *next += 1;
            match state[dep] {
                0 => {
                    state[dep] = 1;
                    stack.push((dep, 0));
                }
                1 => {
                    let stage = &df.stages[node];
                    let name = stage
                        .name
                        .clone()
                        .unwrap_or_else(|| stage.index.to_string());
                    let dep_name = df.stages[dep]
                        .name
                        .clone()
                        .unwrap_or_else(|| dep.to_string());
                    let (span, text) = first_ref(df, &stages[node], dep);
                    return Err(error(
                        df,
                        span,
                        &text,
                        if dep == node {
                            format!(
                                "circular dependency detected on stage `{name}`: it refers to itself"
                            )
                        } else {
                            format!(
                                "circular dependency detected on stage `{name}`: it needs `{dep_name}`, which needs it"
                            )
                        },
                        Some("a stage cannot (directly or indirectly) copy from itself".into()),
                    ));
                }
                _ => {}
            }
        } else {
            state[node] = 2;
            order.push(node);
            stack.pop();
        }
    }
    Ok(())
}

/// The span and text of the first place `stage` refers to `dep`.
fn first_ref(df: &Dockerfile, stage: &ResolvedStage, dep: usize) -> (Span, String) {
    let s = &df.stages[stage.index];
    if stage.base == Source::Stage(dep) {
        return (s.span, s.original.clone());
    }
    for f in &stage.from_refs {
        if f.source == Source::Stage(dep)
            && let Some(inst) = s.instructions.get(f.instruction)
        {
            return (inst.span, inst.original.clone());
        }
    }
    (s.span, s.original.clone())
}
