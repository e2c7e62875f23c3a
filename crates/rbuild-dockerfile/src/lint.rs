//! Lint rules BuildKit reports as warnings (its rule names are kept so
//! `# check=skip=<Rule>` works the same way).

use crate::ast::{Instruction, InstructionKind, Stage};
use crate::syntax::Warning;

/// Per-stage rules: several CMD/ENTRYPOINT/HEALTHCHECK, relative WORKDIR,
/// legacy `ENV key value`, secrets in ARG/ENV names.
pub(crate) fn lint_stage(stage: &Stage, warnings: &mut Vec<Warning>) {
    for kw in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
        let all: Vec<&Instruction> = stage
            .instructions
            .iter()
            .filter(|i| i.kind.keyword() == kw)
            .collect();
        for inst in all.iter().rev().skip(1).rev() {
            warnings.push(Warning {
                rule: "MultipleInstructionsDisallowed",
                message: format!(
                    "multiple `{kw}` instructions in one stage: only the last one takes effect"
                ),
                span: Some(inst.span),
            });
        }
    }
    let mut absolute_workdir = false;
    for inst in &stage.instructions {
        match &inst.kind {
            InstructionKind::Workdir(dir) => {
                let windows_abs = dir.len() > 2
                    && dir.as_bytes()[0].is_ascii_alphabetic()
                    && dir[1..].starts_with(':');
                if dir.starts_with('/') || dir.starts_with('$') || windows_abs {
                    absolute_workdir = true;
                } else if !absolute_workdir {
                    warnings.push(Warning {
                        rule: "WorkdirRelativePath",
                        message: format!(
                            "relative WORKDIR `{dir}` without an absolute WORKDIR before it: it depends on the base image"
                        ),
                        span: Some(inst.span),
                    });
                }
            }
            InstructionKind::Env(kvs) | InstructionKind::Label(kvs) => {
                let kw = inst.kind.keyword();
                for kv in kvs.iter().filter(|kv| kv.legacy) {
                    warnings.push(Warning {
                        rule: "LegacyKeyValueFormat",
                        message: format!(
                            "`{kw} {} <value>` is a legacy form; write `{kw} {}=<value>`",
                            kv.key, kv.key
                        ),
                        span: Some(inst.span),
                    });
                }
                if kw == "ENV" {
                    secrets(kvs.iter().map(|kv| kv.key.as_str()), "ENV", inst, warnings);
                }
            }
            InstructionKind::Arg(decls) => {
                secrets(decls.iter().map(|d| d.name.as_str()), "ARG", inst, warnings)
            }
            _ => {}
        }
    }
}

/// Names that look like they hold credentials: values of ARG and ENV end
/// up in the image config or history.
fn secrets<'a>(
    names: impl Iterator<Item = &'a str>,
    kw: &str,
    inst: &Instruction,
    warnings: &mut Vec<Warning>,
) {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    for name in names {
        let lower = name.to_ascii_lowercase();
        if lower.contains("public") {
            continue;
        }
        if lower
            .split(['_', '-', '.'])
            .any(|part| WORDS.contains(&part))
        {
            warnings.push(Warning {
                rule: "SecretsUsedInArgOrEnv",
                message: format!(
                    "do not use {kw} for sensitive data (`{name}`): its value is kept in the image; use `RUN --mount=type=secret`"
                ),
                span: Some(inst.span),
            });
        }
    }
}
