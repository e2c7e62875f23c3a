//! The typed Dockerfile: stages and instructions.
//!
//! Values that BuildKit expands at build time are kept *unexpanded* here
//! (see the expansion table in the crate docs); flags whose values are
//! constants are parsed and validated here.

use std::time::Duration;

use serde::Serialize;

use crate::error::Span;
use crate::mounts::{MountError, MountSpec, MountType};
use crate::shell::ExpandError;
use crate::syntax::{Directives, Heredoc, Warning};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub file_name: String,
    pub directives: Directives,
    /// The escape character in effect (`\` unless `# escape=` says otherwise);
    /// pass it to the expansion functions.
    pub escape: char,
    /// `ARG` instructions before the first `FROM` (and only those): they
    /// are visible to `FROM` lines, and inside a stage after re-declaration.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// Lint findings, already filtered by `# check=skip=…`.
    pub warnings: Vec<Warning>,
    /// The `# check=` directive, parsed.
    pub check: CheckConfig,
}

/// `# check=skip=Rule1,Rule2;error=true` (BuildKit's lint configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckConfig {
    /// `skip=all`: no lint warnings at all.
    pub skip_all: bool,
    /// Rule names whose warnings are dropped.
    pub skip: Vec<String>,
    /// `error=true`: the build must fail when any warning remains (the
    /// caller decides when; [`Dockerfile::warnings`] holds what is left).
    pub error: bool,
}

impl CheckConfig {
    /// Parses the directive value; unknown keys produce a message.
    pub fn parse(value: &str) -> (CheckConfig, Vec<String>) {
        let mut c = CheckConfig::default();
        let mut problems = Vec::new();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part
                .split_once('=')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
            {
                Some((k, v)) if k == "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        } else {
                            c.skip.push(rule.to_string());
                        }
                    }
                }
                Some((k, v)) if k == "error" => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => c.error = true,
                    "false" | "0" => c.error = false,
                    _ => problems.push(format!(
                        "invalid value `{v}` for `error` in `# check={value}`"
                    )),
                },
                _ => problems.push(format!(
                    "unknown setting `{part}` in `# check={value}`; expected `skip=` or `error=`"
                )),
            }
        }
        (c, problems)
    }

    /// Is a warning of this rule reported?
    pub fn reports(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|s| s.eq_ignore_ascii_case(rule))
    }
}

impl Dockerfile {
    /// The stage named `name` (case-insensitive), if any.
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Names and defaults of the global ARGs, in order.
    pub fn global_arg_decls(&self) -> impl Iterator<Item = &ArgDecl> {
        self.global_args.iter().flat_map(|i| match &i.kind {
            InstructionKind::Arg(decls) => decls.as_slice(),
            _ => &[],
        })
    }
}

/// One `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among all stages (what `COPY --from=0` refers to).
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The image word of `FROM`, unexpanded.
    pub base: String,
    /// `FROM --platform=`, unexpanded.
    pub platform: Option<String>,
    /// The span of the `FROM` line.
    pub span: Span,
    /// The `FROM` line as written (continuations joined).
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction inside a stage (or a global `ARG`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    pub span: Span,
    /// The instruction as written, continuations joined, trimmed (BuildKit
    /// uses this for the image history's `created_by`).
    pub original: String,
    pub kind: InstructionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum InstructionKind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// `SHELL ["…"]` (JSON only, never empty).
    Shell(Vec<String>),
    Label(Vec<KeyValue>),
    Maintainer(String),
    /// Port specs as written (`80`, `8000-8010/udp`, `$PORT`), unexpanded.
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Add(Copy),
    Copy(Copy),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(Onbuild),
    StopSignal(String),
    Healthcheck(Healthcheck),
}

impl InstructionKind {
    /// The keyword in upper case (`RUN`, `COPY`…).
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

/// Exec form or shell form of RUN/CMD/ENTRYPOINT/HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// `["prog", "arg"]`: run as is, no shell.
    Exec(Vec<String>),
    /// Shell form: the raw text (continuations joined, indentation kept),
    /// to be run as `SHELL + [text]`. Never expanded by the builder.
    Shell(String),
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: Command,
    /// Heredoc bodies (shell form only), `content` already tab-chomped for
    /// `<<-`. See [`Run::script`] for how BuildKit runs them.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` values parsed without expansion; entries with
    /// `needs_expansion` must be re-parsed: use [`Run::resolve_mounts`].
    pub mounts: Vec<MountSpec>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

/// How to execute a RUN, following BuildKit's treatment of heredocs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Exec form: run these arguments directly.
    Exec(Vec<String>),
    /// Run `SHELL + [script]`.
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: BuildKit writes the body to
    /// a file (mode 0755) in a read-only mount at `/dev/pipes/<name>` and
    /// executes that path directly.
    File { name: String, content: String },
}

impl Run {
    /// What to execute: exec args, a shell script, or a script file.
    pub fn script(&self) -> RunScript {
        match &self.command {
            Command::Exec(args) => RunScript::Exec(args.clone()),
            Command::Shell(text) if self.heredocs.is_empty() => RunScript::Shell(text.clone()),
            Command::Shell(text) => {
                let only_marker = crate::syntax::parse_heredoc(text.trim()).ok().flatten();
                match (only_marker, self.heredocs.first()) {
                    (Some(_), Some(doc)) if self.heredocs.len() == 1 => {
                        if doc.content.starts_with("#!") {
                            RunScript::File {
                                name: doc.name.clone(),
                                content: doc.content.clone(),
                            }
                        } else {
                            RunScript::Shell(doc.content.clone())
                        }
                    }
                    _ => {
                        let mut full = text.clone();
                        for doc in &self.heredocs {
                            full.push('\n');
                            full.push_str(&doc.content);
                            full.push_str(&doc.name);
                        }
                        RunScript::Shell(full)
                    }
                }
            }
        }
    }

    /// All mounts, values expanded with `lookup` (BuildKit expands them with
    /// the stage's ARG/ENV values), with the defaults
    /// that depend on the whole RUN (ssh socket paths) filled in.
    pub fn resolve_mounts(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Vec<MountSpec>, MountError> {
        let expand =
            |s: &str| -> Result<String, ExpandError> { crate::expand_word(s, lookup, escape) };
        let mut out = Vec::with_capacity(self.mounts.len());
        let mut ssh_index = 0;
        for m in &self.mounts {
            // BuildKit expands every value at conversion, which also removes
            // shell quoting, so the mount is always parsed again.
            let mut m = MountSpec::parse(&m.raw, Some(&expand))?;
            if m.kind == MountType::Ssh {
                if m.target.is_none() {
                    m.target = Some(format!("/run/buildkit/ssh_agent.{ssh_index}"));
                }
                ssh_index += 1;
            }
            out.push(m);
        }
        Ok(out)
    }
}

/// `COPY` and `ADD`. Paths and string flags are unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Copy {
    /// Source paths/URLs (heredoc markers removed: see `heredocs`).
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from` (COPY only): stage name, stage index, image or named
    /// context; expanded with the global args.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--exclude` patterns (repeatable).
    pub exclude: Vec<String>,
    pub parents: bool,
    /// Inline files (`COPY <<EOF /dest`): the file name is the heredoc name.
    /// Expand the content (with quote processing off) when `expand` is set.
    pub heredocs: Vec<Heredoc>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: Option<bool>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// The arguments were a JSON array.
    pub json: bool,
}

/// `KEY=value` of ENV/LABEL. Both sides are raw (quotes still in place):
/// expand both with `expand_word` even when no `$` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// `KEY value` legacy form (no `=`).
    pub legacy: bool,
}

/// One name of an `ARG` (raw, like [`KeyValue`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `ONBUILD <trigger>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger text stored in the image config (heredoc bodies
    /// appended the way BuildKit does).
    pub expression: String,
    /// The trigger, parsed and validated.
    pub trigger: Box<Instruction>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub test: HealthTest,
    /// Options are `None` when not given (inherit); `Some(0)` is "default".
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// What the healthcheck runs; maps to the image config's `Test` array as
/// `["NONE"]`, `["CMD", args…]`, `["CMD-SHELL", text]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum HealthTest {
    None,
    Cmd(Vec<String>),
    CmdShell(String),
}

impl HealthTest {
    /// The image-config form of the test.
    pub fn to_config(&self) -> Vec<String> {
        match self {
            HealthTest::None => vec!["NONE".into()],
            HealthTest::Cmd(args) => std::iter::once("CMD".to_string())
                .chain(args.iter().cloned())
                .collect(),
            HealthTest::CmdShell(s) => vec!["CMD-SHELL".into(), s.clone()],
        }
    }
}
