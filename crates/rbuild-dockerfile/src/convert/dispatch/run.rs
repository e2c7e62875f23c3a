//! RUN: the exec vertex, its mounts and its history text.

use super::*;

impl Converter<'_> {
    pub(super) fn run(&mut self, state: &mut StageState, ins: &Instruction, run: &Run, name: String) -> Result<(), ConvertError> {
        let mut inputs = vec![state.vertex];
        let mut mounts = self.run_mounts(state, ins, run, &mut inputs)?;
        let args = match run.script() {
            RunScript::Exec(args) => args,
            RunScript::Shell(script) => {
                let mut a = state.shell();
                a.push(script);
                a
            }
            RunScript::File { name: script, content } => {
                // As BuildKit: the script is a read-only file at
                // /dev/pipes/<name>, started through the shell like any
                // shell-form RUN (`/bin/sh -c /dev/pipes/EOF`: its #! line
                // picks the interpreter), which is also what history shows.
                let file = FileAction::Mkfile { path: format!("/{script}"), mode: 0o755, data: content.into_bytes(), chown: None };
                let scratch = self.add(Op::Scratch, vec![], "[internal] scratch".into());
                let v = self.add(Op::File(FileOp { actions: vec![file] }), vec![scratch], format!("{name} (script)"));
                inputs.push(v);
                let target = format!("/dev/pipes/{script}");
                let kind = ExecMountKind::Bind { input: inputs.len() - 1, source: format!("/{script}"), readonly: true };
                mounts.push(ExecMount { target: target.clone(), kind });
                let mut a = state.shell();
                a.push(target);
                a
            }
        };
        let mut env: Vec<String> = state.config.config.env.clone().unwrap_or_default();
        for (k, v) in &state.args {
            let entry = format!("{k}={v}");
            match env.iter_mut().find(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k)) {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
        }
        let arg_parts = run_history_args(state);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let network = match run.network {
            None => self.opts.default_network.unwrap_or(Network::Sandbox),
            Some(crate::NetworkMode::Default) => Network::Sandbox,
            Some(crate::NetworkMode::None) => Network::None,
            Some(crate::NetworkMode::Host) => Network::Host,
        };
        let security = match run.security {
            Some(crate::SecurityMode::Insecure) => Security::Insecure,
            _ => Security::Sandbox,
        };
        let proxy_env = proxy_env(&self.opts.build_args, &env);
        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env,
            cwd: state.workdir(),
            user: state.config.config.user.clone().unwrap_or_default(),
            network,
            security,
            mounts,
            platform: state.platform.clone(),
            proxy_env,
        });
        state.vertex = self.add(op, inputs, name);
        let prefix = if arg_parts.is_empty() { String::new() } else { format!("|{} {} ", arg_parts.len(), arg_parts.join(" ")) };
        self.history(state, format!("RUN {prefix}{}", args.join(" ")), true);
        Ok(())
    }

    /// RUN --mount flags as graph mounts; inputs they read are appended to
    /// `inputs` (index 0 is the RUN's rootfs).
    pub(super) fn run_mounts(
        &mut self,
        state: &StageState,
        ins: &Instruction,
        run: &Run,
        inputs: &mut Vec<VertexId>,
    ) -> Result<Vec<ExecMount>, ConvertError> {
        let lookup = state.lookup();
        let specs = run.resolve_mounts(&lookup, self.df.escape).map_err(|e| self.err(ins, e.to_string()))?;
        drop(lookup);
        let mut out = Vec::new();
        for m in specs {
            let target = m.target.clone().map(|t| resolve_dest(&state.workdir(), &t).trim_end_matches('/').to_string());
            let need_target = |kind: &str| {
                target.clone().ok_or_else(|| self.err(ins, format!("--mount type={kind} needs a target")))
            };
            let mut input_for = |c: &mut Self, from: &Option<String>, default_context: bool| -> Result<Option<usize>, ConvertError> {
                let v = match from {
                    Some(f) => c.vertex_named_by_from(state, f)?,
                    None if default_context => c.context_vertex(),
                    None => return Ok(None),
                };
                inputs.push(v);
                Ok(Some(inputs.len() - 1))
            };
            let (target, kind) = match m.kind {
                MountType::Bind => {
                    let t = need_target("bind")?;
                    let input = input_for(self, &m.from, true)?.unwrap_or(0);
                    let source = m.source.clone().unwrap_or_else(|| "/".into());
                    (t, ExecMountKind::Bind { input, source, readonly: m.readonly })
                }
                MountType::Cache => {
                    let t = need_target("cache")?;
                    let input = input_for(self, &m.from, false)?;
                    let id = m.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| t.clone());
                    let sharing = match m.sharing {
                        crate::CacheSharing::Shared => CacheSharing::Shared,
                        crate::CacheSharing::Private => CacheSharing::Private,
                        crate::CacheSharing::Locked => CacheSharing::Locked,
                    };
                    let kind = ExecMountKind::Cache {
                        id,
                        sharing,
                        input,
                        source: m.source.clone().unwrap_or_else(|| "/".into()),
                        readonly: m.readonly,
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    };
                    (t, kind)
                }
                MountType::Tmpfs => (need_target("tmpfs")?, ExecMountKind::Tmpfs { size: m.size }),
                MountType::Secret => {
                    let id = m.id.clone().or_else(|| m.source.clone()).or_else(|| {
                        m.target.as_deref().map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                    });
                    let id = id.or_else(|| m.env.clone()).unwrap_or_default();
                    let t = target.clone().unwrap_or_else(|| format!("/run/secrets/{id}"));
                    let kind = ExecMountKind::Secret {
                        id,
                        env: m.env.clone(),
                        required: m.required,
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    };
                    (t, kind)
                }
                MountType::Ssh => {
                    let t = need_target("ssh")?;
                    let kind = ExecMountKind::Ssh {
                        id: m.id.clone().unwrap_or_else(|| "default".into()),
                        required: m.required,
                        mode: m.mode.unwrap_or(0o600),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    };
                    (t, kind)
                }
            };
            out.push(ExecMount { target, kind });
        }
        Ok(out)
    }
}

/// The `K=V` list of a RUN history entry's `|N` prefix: every ARG name
/// declared in the stage, once, where it was first declared (as current
/// BuildKit; older versions repeated a re-declared name), valued as the RUN
/// sees it, else by its last declaration, `K=` when it has no value.
fn run_history_args(state: &StageState) -> Vec<String> {
    let lookup = state.lookup();
    let mut order: Vec<&str> = Vec::new();
    let mut last: BTreeMap<&str, Option<&String>> = BTreeMap::new();
    for (k, v) in &state.declared_args {
        if !last.contains_key(k.as_str()) {
            order.push(k);
        }
        last.insert(k, v.as_ref());
    }
    order
        .into_iter()
        .map(|k| {
            let declared = last.get(k).copied().flatten().cloned();
            let value = lookup(k).or(declared).unwrap_or_default();
            format!("{k}={value}")
        })
        .collect()
}

/// `--build-arg` proxy variables not otherwise set for a RUN (BuildKit
/// passes them without an ARG declaration and keeps them out of history
/// and cache keys).
fn proxy_env(build_args: &BTreeMap<String, String>, env: &[String]) -> Vec<String> {
    crate::stages::PROXY_ARGS
        .iter()
        .filter_map(|k| build_args.get(*k).map(|v| (*k, v)))
        .filter(|(k, _)| !env.iter().any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == *k)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}
