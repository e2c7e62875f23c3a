//! Which stages a target needs, what each is based on, and which base
//! images must be resolved.

use super::{ConvertError, ConvertOptions, ImageKey, NamedContext};
use crate::{Dockerfile, InstructionKind, expand_word};
use std::collections::BTreeMap;

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image name (expanded, as written).
    Image(String),
    /// A local named build context (`--build-context name=DIR`).
    Context(String),
}

/// What a `--from`/FROM name means: a named context, then a stage, else an
/// image name.
pub(crate) fn lookup_name(df: &Dockerfile, opts: &ConvertOptions, name: &str, before: usize) -> Base {
    match opts.named_contexts.get(name) {
        Some(NamedContext::Local) => return Base::Context(name.to_string()),
        Some(NamedContext::Image(r)) => return Base::Image(r.clone()),
        None => {}
    }
    match find_stage(df, name, before) {
        Some(j) => Base::Stage(j),
        None => Base::Image(name.to_string()),
    }
}

/// A stage after FROM expansion.
#[derive(Clone, Debug)]
pub(crate) struct StageInfo {
    pub base: Base,
    pub platform: String,
    /// `name` or `stage-N`, for progress output.
    pub display: String,
}

/// The outcome of stage resolution.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub stages: Vec<StageInfo>,
    pub target: usize,
    /// Global ARG values (build args applied), visible to stages that
    /// re-declare them.
    pub global_args: BTreeMap<String, String>,
    /// Automatic platform args.
    pub platform_args: BTreeMap<String, String>,
    pub images: Vec<ImageKey>,
}

fn platform_args(prefix: &str, platform: &str, out: &mut BTreeMap<String, String>) {
    let mut parts = platform.splitn(3, '/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().unwrap_or_default();
    let variant = parts.next().unwrap_or_default();
    out.insert(format!("{prefix}PLATFORM"), platform.to_string());
    out.insert(format!("{prefix}OS"), os.to_string());
    out.insert(format!("{prefix}ARCH"), arch.to_string());
    out.insert(format!("{prefix}VARIANT"), variant.to_string());
}

/// The automatic platform args (TARGETPLATFORM, BUILDARCH, …).
pub(crate) fn automatic_args(opts: &ConvertOptions) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    platform_args("TARGET", &opts.target_platform, &mut out);
    platform_args("BUILD", &opts.build_platform, &mut out);
    out
}

/// Finds a stage by name (case-insensitive) or index, among stages before
/// `before`.
pub(crate) fn find_stage(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(i) = df.stages[..before].iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Some(i);
    }
    name.parse::<usize>().ok().filter(|i| *i < before)
}

pub(crate) fn resolve(df: &Dockerfile, opts: &ConvertOptions) -> Result<Resolved, ConvertError> {
    let file = df.file_name.clone();
    let at = |line: usize, message: String| ConvertError::At { file: file.clone(), line, message };
    if df.stages.is_empty() {
        return Err(ConvertError::File { file, message: "the Dockerfile has no FROM instruction".into() });
    }
    let platform_args = automatic_args(opts);
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    for ins in &df.global_args {
        if let InstructionKind::Arg(decls) = &ins.kind {
            for d in decls {
                let lookup = |n: &str| global_args.get(n).or_else(|| platform_args.get(n)).cloned();
                let value = match (opts.build_args.get(&d.name), &d.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(def)) => Some(
                        expand_word(def, &lookup, df.escape).map_err(|e| at(ins.span.start_line, e.to_string()))?,
                    ),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    global_args.insert(d.name.clone(), v);
                }
            }
        }
    }
    let lookup = |n: &str| global_args.get(n).or_else(|| platform_args.get(n)).cloned();
    let mut stages = Vec::with_capacity(df.stages.len());
    for (i, s) in df.stages.iter().enumerate() {
        let line = s.span.start_line;
        let base_name = expand_word(&s.base, &lookup, df.escape).map_err(|e| at(line, e.to_string()))?;
        if base_name.is_empty() {
            return Err(at(line, format!("base name `{}` expands to nothing", s.base)));
        }
        let base = if base_name.eq_ignore_ascii_case("scratch") && !opts.named_contexts.contains_key(&base_name) {
            Base::Scratch
        } else if base_name.chars().all(|c| c.is_ascii_digit()) {
            // FROM takes no stage indexes.
            Base::Image(base_name)
        } else {
            lookup_name(df, opts, &base_name, i)
        };
        let platform = match &s.platform {
            Some(p) => expand_word(p, &lookup, df.escape).map_err(|e| at(line, e.to_string()))?,
            None => match &base {
                Base::Stage(j) => stages.get(*j).map(|s: &StageInfo| s.platform.clone()).unwrap_or_default(),
                _ => opts.target_platform.clone(),
            },
        };
        let display = s.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        stages.push(StageInfo { base, platform, display });
    }
    let target = match &opts.target {
        None => df.stages.len() - 1,
        Some(t) => find_stage(df, t, df.stages.len())
            .filter(|i| df.stages[*i].name.is_some() || t.parse::<usize>().is_ok())
            .ok_or_else(|| ConvertError::File {
                file: file.clone(),
                message: format!("target stage `{t}` could not be found"),
            })?,
    };
    let needed = needed_stages(df, opts, &stages, target, &lookup)?;
    let mut images: Vec<ImageKey> = Vec::new();
    let mut add = |k: ImageKey| {
        if !images.contains(&k) {
            images.push(k);
        }
    };
    for &i in &needed {
        if let Base::Image(name) = &stages[i].base {
            add((name.clone(), stages[i].platform.clone()));
        }
        for from in stage_refs(df, i, &lookup)? {
            if let Base::Image(name) = lookup_name(df, opts, &from, df.stages.len()) {
                add((name, stages[i].platform.clone()));
            }
        }
    }
    Ok(Resolved { stages, target, global_args, platform_args, images })
}

/// `--from` values of COPY and RUN --mount in stage `i`, expanded with the
/// global args.
pub(crate) fn stage_refs(
    df: &Dockerfile,
    i: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConvertError> {
    let mut out = Vec::new();
    for ins in &df.stages[i].instructions {
        let froms: Vec<&String> = match &ins.kind {
            InstructionKind::Copy(c) | InstructionKind::Add(c) => c.from.iter().collect(),
            InstructionKind::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
            _ => Vec::new(),
        };
        for f in froms {
            let v = expand_word(f, lookup, df.escape).map_err(|e| ConvertError::At {
                file: df.file_name.clone(),
                line: ins.span.start_line,
                message: e.to_string(),
            })?;
            out.push(v);
        }
    }
    Ok(out)
}

/// The stages `target` depends on (itself included), in index order;
/// cycles are errors.
fn needed_stages(
    df: &Dockerfile,
    opts: &ConvertOptions,
    stages: &[StageInfo],
    target: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<usize>, ConvertError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        None,
        Visiting,
        Done,
    }
    let mut marks = vec![Mark::None; stages.len()];
    fn visit(
        df: &Dockerfile,
        opts: &ConvertOptions,
        stages: &[StageInfo],
        i: usize,
        marks: &mut Vec<Mark>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConvertError> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                return Err(ConvertError::At {
                    file: df.file_name.clone(),
                    line: df.stages[i].span.start_line,
                    message: format!("circular dependency through stage `{}`", stages[i].display),
                });
            }
            Mark::None => {}
        }
        marks[i] = Mark::Visiting;
        if let Base::Stage(j) = stages[i].base {
            visit(df, opts, stages, j, marks, lookup)?;
        }
        for from in stage_refs(df, i, lookup)? {
            if let Base::Stage(j) = lookup_name(df, opts, &from, df.stages.len()) {
                visit(df, opts, stages, j, marks, lookup)?;
            }
        }
        marks[i] = Mark::Done;
        Ok(())
    }
    visit(df, opts, stages, target, &mut marks, lookup)?;
    Ok((0..stages.len()).filter(|i| marks[*i] == Mark::Done).collect())
}
