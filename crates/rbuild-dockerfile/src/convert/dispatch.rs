//! Walking each needed stage's instructions: the graph vertices they make and
//! the image config they change, as BuildKit's dockerfile2llb does.

use super::stages::{Base, Resolved, lookup_name};
use super::{BaseImage, BuildPlan, ConvertError, ConvertOptions, ImageKey};
use crate::{Command, Copy, Dockerfile, Healthcheck, Instruction, InstructionKind, Run, RunScript, expand_word};
use crate::MountType;
use rbuild_graph::{
    CacheSharing, Chown, ContextSource, ExecMount, ExecMountKind, CopyAction, ExecOp, FileAction, FileOp, Graph, ImageSource, Network, Op, Security,
    VertexId, VertexMeta,
};
use rbuild_oci::config::{History, ImageConfig};
use rbuild_oci::platform::Platform;
use std::collections::BTreeMap;

mod copy;
mod gofmt;
mod run;

#[cfg(test)]
pub(super) use gofmt::{go_duration, go_quote_rune};
use gofmt::*;


/// PATH for images that set none (as BuildKit's default for Linux).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of a stage being converted.
#[derive(Clone, Debug)]
pub(super) struct StageState {
    pub vertex: VertexId,
    pub config: ImageConfig,
    /// ARG values in the build environment, in declaration order. As in
    /// BuildKit, where an ARG adds to the same environment ENV sets, the
    /// later of the two wins: an ENV removes its name from here, an ARG
    /// declared after an ENV shadows it (for expansion and RUN, never in
    /// the image's `Env`).
    pub args: Vec<(String, String)>,
    /// Every ARG declared in this stage, in order, with its value if it has
    /// one: the `|N K=V` prefix of RUN history entries (BuildKit lists each
    /// declaration, valueless ones as `K=`).
    pub declared_args: Vec<(String, Option<String>)>,
    /// Whether CMD was set in this stage (ENTRYPOINT resets an inherited CMD).
    pub cmd_set: bool,
    pub platform: String,
}

impl StageState {
    fn new(vertex: VertexId, config: ImageConfig, platform: &str) -> Self {
        StageState { vertex, config, args: Vec::new(), declared_args: Vec::new(), cmd_set: false, platform: platform.to_string() }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config
            .config
            .env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// Variable lookup for expansion: whichever of ARG and ENV set the name
    /// last (see `args`).
    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        let env = self.env();
        move |name: &str| {
            self.args.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| {
                env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        }
    }

    fn set_env(&mut self, key: &str, value: &str) {
        self.args.retain(|(k, _)| k != key);
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key) || e.as_str() == key) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    fn workdir(&self) -> String {
        self.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }

    fn shell(&self) -> Vec<String> {
        self.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

pub(super) struct Converter<'a> {
    df: &'a Dockerfile,
    opts: &'a ConvertOptions,
    images: &'a BTreeMap<ImageKey, BaseImage>,
    resolved: Resolved,
    graph: Graph,
    context: Option<VertexId>,
    /// The stage being converted is in `--no-cache-filter`.
    stage_ignores_cache: bool,
    done: Vec<Option<StageState>>,
    warnings: Vec<String>,
}

pub(super) fn run(
    df: &Dockerfile,
    opts: &ConvertOptions,
    images: &BTreeMap<ImageKey, BaseImage>,
    resolved: Resolved,
) -> Result<BuildPlan, ConvertError> {
    let target = resolved.target;
    let mut c = Converter {
        df,
        opts,
        images,
        done: vec![None; df.stages.len()],
        resolved,
        graph: Graph::new(),
        context: None,
        stage_ignores_cache: false,
        warnings: Vec::new(),
    };
    c.stage(target)?;
    let mut state = c.done[target].take().expect("target stage was converted");
    for (k, v) in &opts.labels {
        state.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k.clone(), v.clone());
    }
    state.config.created = opts.created.clone();
    // Unused build args and undefined ARGs in FROM are found by stage
    // resolution, which sees every stage the target needs.
    c.warnings.extend(c.resolved.warnings.iter().cloned());
    Ok(BuildPlan { graph: c.graph, target: state.vertex, config: state.config, warnings: c.warnings })
}

impl<'a> Converter<'a> {
    fn err(&self, ins: &Instruction, message: impl Into<String>) -> ConvertError {
        ConvertError::At { file: self.df.file_name.clone(), line: ins.span.start_line, message: message.into() }
    }

    fn add(&mut self, op: Op, inputs: Vec<VertexId>, name: String) -> VertexId {
        let meta = VertexMeta { name, ignore_cache: self.opts.no_cache || self.stage_ignores_cache };
        // Inputs always exist and ops built here index only their inputs.
        self.graph.add(op, inputs, meta).expect("converter builds valid vertices")
    }

    fn image_vertex(&mut self, name: &str, platform: &str) -> Result<(VertexId, ImageConfig), ConvertError> {
        let key = (name.to_string(), platform.to_string());
        let base = self
            .images
            .get(&key)
            .ok_or_else(|| ConvertError::Unresolved(name.to_string(), platform.to_string()))?;
        let op = Op::Image(ImageSource { reference: base.reference.clone(), platform: platform.to_string() });
        let v = self.add(op, vec![], format!("[internal] load {}", base.reference));
        Ok((v, base.config.clone()))
    }

    /// A `--build-context name=DIR` source.
    fn named_context_vertex(&mut self, name: &str) -> VertexId {
        let op = Op::Context(ContextSource { name: name.to_string(), exclude_patterns: Vec::new() });
        self.add(op, vec![], format!("[internal] load build context {name}"))
    }

    fn context_vertex(&mut self) -> VertexId {
        if let Some(v) = self.context {
            return v;
        }
        let op = Op::Context(ContextSource {
            name: "context".into(),
            exclude_patterns: self.opts.context_excludes.clone(),
        });
        let v = self.add(op, vec![], "[internal] load build context".into());
        self.context = Some(v);
        v
    }

    /// Converts stage `i` (after the stages it depends on).
    fn stage(&mut self, i: usize) -> Result<(), ConvertError> {
        if self.done[i].is_some() {
            return Ok(());
        }
        let name = self.df.stages[i].name.clone();
        let filtered = self.opts.no_cache_filter.iter().any(|f| {
            name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f.parse::<usize>() == Ok(i)
        });
        // Stages converted on the way (bases, --from) set their own flag.
        let outer = std::mem::replace(&mut self.stage_ignores_cache, filtered);
        let result = self.stage_inner(i);
        self.stage_ignores_cache = outer;
        result
    }

    fn stage_inner(&mut self, i: usize) -> Result<(), ConvertError> {
        let info = self.resolved.stages.get(&i).cloned().ok_or_else(|| ConvertError::File {
            file: self.df.file_name.clone(),
            message: format!("stage {i} is needed but was not resolved"),
        })?;
        let stage = &self.df.stages[i];
        let mut state = match &info.base {
            Base::Stage(j) => {
                self.stage(*j)?;
                let mut s = self.done[*j].clone().expect("converted above");
                // As BuildKit: the base stage's ARG values stay in the
                // environment later instructions expand against (and RUNs
                // see), but its declarations are not this stage's: no
                // `|N` prefix in RUN history.
                s.declared_args.clear();
                s.cmd_set = false;
                s
            }
            Base::Scratch => {
                let platform = Platform::parse(&info.platform)
                    .map_err(|e| ConvertError::At { file: self.df.file_name.clone(), line: stage.span.start_line, message: e.to_string() })?;
                let mut config = ImageConfig::new(&platform);
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                config.config.working_dir = Some("/".into());
                let v = self.add(Op::Scratch, vec![], "[internal] scratch".into());
                StageState::new(v, config, &info.platform)
            }
            Base::Image(name) => {
                let (v, mut config) = self.image_vertex(name, &info.platform)?;
                config.created = None;
                // As BuildKit: PATH is always set, even when the image has none.
                let env = config.config.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == "PATH")) {
                    env.push(format!("PATH={DEFAULT_PATH}"));
                }
                StageState::new(v, config, &info.platform)
            }
            Base::Context(ctx_name) => {
                // FROM a local directory: its files are the filesystem.
                let platform = Platform::parse(&info.platform)
                    .map_err(|e| ConvertError::At { file: self.df.file_name.clone(), line: stage.span.start_line, message: e.to_string() })?;
                let mut config = ImageConfig::new(&platform);
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                config.config.working_dir = Some("/".into());
                let src = self.named_context_vertex(ctx_name);
                let scratch = self.add(Op::Scratch, vec![], "[internal] scratch".into());
                let copy = CopyAction {
                    follow_symlinks: true,
                    ..CopyAction::literal(1, vec!["/".into()], "/".into())
                };
                let op = Op::File(FileOp { actions: vec![FileAction::Copy(copy)] });
                let v = self.add(op, vec![scratch, src], format!("[{}] FROM context {ctx_name}", info.display));
                StageState::new(v, config, &info.platform)
            }
        };
        if let Ok(p) = Platform::parse(&info.platform) {
            state.config.architecture = p.architecture.clone();
            state.config.os = p.os.clone();
            state.config.variant = p.variant.clone();
        }
        let triggers = state.config.config.on_build.take().unwrap_or_default();
        let total = stage.instructions.len() + 1;
        let mut onbuild = Vec::new();
        for t in &triggers {
            let trigger = crate::parse_onbuild_trigger(t).map_err(|e| ConvertError::At {
                file: self.df.file_name.clone(),
                line: stage.span.start_line,
                message: format!("ONBUILD trigger `{t}` of the base image: {e}"),
            })?;
            onbuild.push(trigger);
        }
        for ins in &onbuild {
            let name = format!("[{} 1/{total}] ONBUILD {}", info.display, ins.original.trim());
            self.instruction(&mut state, ins, name)?;
        }
        for (n, ins) in stage.instructions.iter().enumerate() {
            let name = format!("[{} {}/{total}] {}", info.display, n + 2, display_text(ins));
            self.instruction(&mut state, ins, name)?;
        }
        self.done[i] = Some(state);
        Ok(())
    }

    /// A history entry; steps with a layer (RUN, COPY, ADD) get BuildKit's
    /// ` # buildkit` marker.
    fn history(&self, state: &mut StageState, created_by: String, layer: bool) {
        let created_by = if layer { format!("{created_by} # buildkit") } else { created_by };
        self.history_entry(state, created_by, layer);
    }

    fn history_entry(&self, state: &mut StageState, created_by: String, layer: bool) {
        state.config.history.push(History {
            created: self.opts.created.clone(),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: !layer,
            ..History::default()
        });
    }

    fn expand(&self, state: &StageState, ins: &Instruction, word: &str) -> Result<String, ConvertError> {
        let lookup = state.lookup();
        expand_word(word, &lookup, self.df.escape).map_err(|e| self.err(ins, e.to_string()))
    }

    fn instruction(&mut self, state: &mut StageState, ins: &Instruction, name: String) -> Result<(), ConvertError> {
        match &ins.kind {
            InstructionKind::Env(kvs) => {
                // As BuildKit: every value is expanded against the
                // environment before this instruction (`ENV A=2 B=$A` sees
                // the old A).
                let mut values = Vec::new();
                for kv in kvs {
                    values.push(self.expand(state, ins, &kv.value)?);
                }
                let mut parts = Vec::new();
                for (kv, v) in kvs.iter().zip(values) {
                    state.set_env(&kv.key, &v);
                    parts.push(format!("{}={}", kv.key, v));
                }
                self.history(state, format!("ENV {}", parts.join(" ")), false);
            }
            InstructionKind::Arg(decls) => {
                let mut parts = Vec::new();
                for d in decls {
                    let value = if let Some(v) = self.opts.build_args.get(&d.name) {
                        Some(v.clone())
                    } else if let Some(def) = &d.default {
                        Some(self.expand(state, ins, def)?)
                    } else {
                        self.resolved.global_args.get(&d.name).cloned()
                    };
                    state.declared_args.push((d.name.clone(), value.clone()));
                    if let Some(v) = value {
                        parts.push(format!("{}={}", d.name, v));
                        state.args.retain(|(k, _)| k != &d.name);
                        state.args.push((d.name.clone(), v));
                    } else {
                        parts.push(d.name.clone());
                    }
                }
                self.history(state, format!("ARG {}", parts.join(" ")), false);
            }
            InstructionKind::Label(kvs) => {
                let mut parts = Vec::new();
                for kv in kvs {
                    let k = self.expand(state, ins, &kv.key)?;
                    let v = self.expand(state, ins, &kv.value)?;
                    parts.push(format!("{k}={v}"));
                    state.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                self.history(state, format!("LABEL {}", parts.join(" ")), false);
            }
            InstructionKind::Maintainer(m) => {
                state.config.author = Some(m.clone());
                self.history(state, format!("MAINTAINER {m}"), false);
            }
            InstructionKind::Workdir(w) => self.workdir(state, ins, w, name)?,
            InstructionKind::User(u) => {
                let u = self.expand(state, ins, u)?;
                state.config.config.user = Some(u.clone());
                self.history(state, format!("USER {u}"), false);
            }
            InstructionKind::Cmd(cmd) => {
                let args = self.command_args(state, cmd);
                self.history(state, format!("CMD {}", go_quoted(&args)), false);
                state.config.config.cmd = Some(args);
                // BuildKit sets it for every CMD (a Windows-era field Docker
                // still reads), on Linux too.
                state.config.config.args_escaped = Some(true);
                state.cmd_set = true;
            }
            InstructionKind::Entrypoint(cmd) => {
                let args = self.command_args(state, cmd);
                self.history(state, format!("ENTRYPOINT {}", go_quoted(&args)), false);
                state.config.config.entrypoint = Some(args);
                if !state.cmd_set {
                    state.config.config.cmd = None;
                }
            }
            InstructionKind::Shell(sh) => {
                state.config.config.shell = Some(sh.clone());
                self.history(state, format!("SHELL [{}]", sh.join(" ")), false);
            }
            InstructionKind::Expose(ports) => {
                // BuildKit's history lists the ports as written: in order,
                // ranges expanded, repeats kept (`EXPOSE [80/tcp 80/tcp]`).
                let mut list = Vec::new();
                for p in ports {
                    for word in self.expand(state, ins, p)?.split_whitespace() {
                        let container = expose_container_port(word).map_err(|m| self.err(ins, m))?;
                        let keys = crate::parse_port_spec(container).map_err(|e| self.err(ins, e.to_string()))?;
                        list.extend(keys);
                    }
                }
                for port in &list {
                    state.config.config.exposed_ports.get_or_insert_with(BTreeMap::new).insert(port.clone(), Default::default());
                }
                self.history(state, format!("EXPOSE [{}]", list.join(" ")), false);
            }
            InstructionKind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(state, ins, v)?;
                    if v.trim().is_empty() {
                        return Err(self.err(ins, "VOLUME specified can not be an empty string"));
                    }
                    list.push(v.clone());
                    state.config.config.volumes.get_or_insert_with(BTreeMap::new).insert(v, Default::default());
                }
                self.history(state, format!("VOLUME [{}]", list.join(" ")), false);
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(state, ins, s)?;
                crate::parse_stop_signal(&s).map_err(|e| self.err(ins, e.to_string()))?;
                state.config.config.stop_signal = Some(s.clone());
                self.history(state, format!("STOPSIGNAL {s}"), false);
            }
            InstructionKind::Healthcheck(h) => {
                state.config.config.healthcheck = Some(healthcheck(h));
                self.history(state, format!("HEALTHCHECK {}", go_healthcheck(h)), false);
            }
            InstructionKind::Onbuild(onbuild) => {
                let text = onbuild.expression.clone();
                // BuildKit records the trigger in the config only, with no
                // history entry.
                state.config.config.on_build.get_or_insert_with(Vec::new).push(text);
            }
            InstructionKind::Run(run) => self.run(state, ins, run, name)?,
            InstructionKind::Copy(copy) => self.copy(state, ins, copy, name, false)?,
            InstructionKind::Add(copy) => self.copy(state, ins, copy, name, true)?,
        }
        Ok(())
    }

    fn command_args(&self, state: &StageState, cmd: &Command) -> Vec<String> {
        match cmd {
            Command::Exec(args) => args.clone(),
            Command::Shell(s) => {
                let mut a = state.shell();
                a.push(s.clone());
                a
            }
        }
    }

    fn workdir(&mut self, state: &mut StageState, ins: &Instruction, w: &str, name: String) -> Result<(), ConvertError> {
        let w = self.expand(state, ins, w)?;
        let path = clean_path(&join_path(&state.workdir(), &w));
        state.config.config.working_dir = Some(path.clone());
        // As BuildKit: `/` needs no mkdir and makes no layer; any other
        // WORKDIR claims a layer (empty when the directory exists) but, not
        // being a run or copy, gets no ` # buildkit` marker.
        if path == "/" {
            self.history(state, format!("WORKDIR {path}"), false);
            return Ok(());
        }
        let user = state.config.config.user.clone().filter(|u| !u.is_empty());
        let op = Op::File(FileOp {
            actions: vec![FileAction::Mkdir { path: path.clone(), mode: 0o755, parents: true, chown: user.map(Chown) }],
        });
        state.vertex = self.add(op, vec![state.vertex], name);
        self.history_entry(state, format!("WORKDIR {path}"), true);
        Ok(())
    }

    /// The vertex a `--from` names: a stage (by name or index) or an image.
    fn vertex_named_by_from(&mut self, state: &StageState, from: &str) -> Result<VertexId, ConvertError> {
        match lookup_name(self.df, self.opts, from) {
            Base::Stage(j) => {
                self.stage(j)?;
                Ok(self.done[j].as_ref().expect("converted above").vertex)
            }
            Base::Context(name) => Ok(self.named_context_vertex(&name)),
            Base::Image(name) => Ok(self.image_vertex(&name, &state.platform)?.0),
            Base::Scratch => Ok(self.add(Op::Scratch, vec![], "[internal] scratch".into())),
        }
    }

}

/// The container part of an EXPOSE word. BuildKit still accepts the
/// `[ip:]host:container[/proto]` forms of `docker run -p` and exposes the
/// container port; the IP and host port are checked, then dropped.
fn expose_container_port(word: &str) -> Result<&str, String> {
    let Some((head, container)) = word.rsplit_once(':') else { return Ok(word) };
    let (ip, host) = head.rsplit_once(':').map_or(("", head), |(ip, host)| (ip, host));
    let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address `{ip}` in EXPOSE `{word}`"));
    }
    if !host.is_empty() {
        let (lo, hi) = host.split_once('-').unwrap_or((host, host));
        if lo.parse::<u16>().is_err() || hi.parse::<u16>().is_err() {
            return Err(format!("invalid host port `{host}` in EXPOSE `{word}`"));
        }
    }
    Ok(container)
}

/// What progress shows for an instruction: its source text on one line.
fn display_text(ins: &Instruction) -> String {
    let one_line: String = ins.original.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line
}

fn join_path(base: &str, p: &str) -> String {
    if p.starts_with('/') { p.to_string() } else { format!("{}/{}", base.trim_end_matches('/'), p) }
}

/// Lexical path cleaning (`a/./b/../c` → `/a/c`), always absolute: Go's
/// `path.Clean` of the path made absolute.
pub(super) fn clean_path(p: &str) -> String {
    crate::ignore::clean_path(&format!("/{p}"))
}

/// A COPY destination made absolute against the workdir; a trailing `/` (or
/// a destination of `.`) keeps meaning "into this directory".
pub(super) fn resolve_dest(workdir: &str, dest: &str) -> String {
    let dir_hint = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest.is_empty();
    let cleaned = clean_path(&join_path(workdir, dest));
    if dir_hint && cleaned != "/" { format!("{cleaned}/") } else { cleaned }
}

