//! Exec vertices: a RUN in the sandbox on an overlay of the input chain; the
//! overlay's upper dir becomes the vertex's snapshot.

use crate::progress::{Event, Stream, now_ms};
use crate::solve::{Ctx, Solved};
use crate::SolveError;
use rbuild_graph::{ExecOp, Network, Security, Vertex};
use rbuild_sandbox::{OutputStream, Rootfs, RunSpec};
use std::collections::VecDeque;
use std::sync::Arc;

/// How many trailing output lines a failure report quotes.
const TAIL_LINES: usize = 10;

/// Keeps the last lines a process printed, for error messages.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
}

impl Tail {
    fn push(&mut self, data: &str) {
        self.partial.push_str(data);
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            self.lines.push_back(line.trim_end_matches(['\n', '\r']).to_string());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines.push_back(std::mem::take(&mut self.partial));
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

fn to_sandbox_network(n: Network) -> rbuild_sandbox::Network {
    match n {
        Network::Sandbox => rbuild_sandbox::Network::Sandbox,
        Network::None => rbuild_sandbox::Network::None,
        Network::Host => rbuild_sandbox::Network::Host,
    }
}

/// Checks the entitlements an exec asks for.
fn check_entitlements(ctx: &Ctx, exec: &ExecOp) -> Result<(), SolveError> {
    if exec.network == Network::Host && !ctx.opts.entitlements.network_host {
        return Err(SolveError::Entitlement("network.host"));
    }
    if exec.security == Security::Insecure && !ctx.opts.entitlements.security_insecure {
        return Err(SolveError::Entitlement("security.insecure"));
    }
    Ok(())
}

/// Runs the exec; returns the committed snapshot.
pub(crate) async fn solve_exec(
    ctx: &Arc<Ctx>,
    vertex: &Vertex,
    key: &str,
    exec: &ExecOp,
    inputs: &[Arc<Solved>],
) -> Result<Option<String>, SolveError> {
    check_entitlements(ctx, exec)?;
    let engine = &ctx.engine;
    let parent = inputs.first().and_then(|i| i.snapshot()).map(str::to_string);
    let (mounts, _resources) = {
        // Locking a cache mount can wait for another build: off the runtime.
        let (ctx, exec, inputs) = (ctx.clone(), exec.clone(), inputs.to_vec());
        tokio::task::spawn_blocking(move || crate::mounts::prepare(&ctx, &exec, &inputs))
            .await
            .map_err(|_| SolveError::Cancelled)??
    };
    let active = crate::prepare(engine, parent.as_deref())?;
    let spec = RunSpec {
        rootfs: if active.is_full_tree() {
            Rootfs::Dir(active.upper.clone())
        } else {
            Rootfs::Overlay { lowerdirs: active.lowers.clone(), upperdir: active.upper.clone(), workdir: active.work.clone() }
        },
        args: exec.args.clone(),
        env: exec.env.iter().chain(&exec.proxy_env).cloned().collect(),
        cwd: exec.cwd.clone(),
        user: exec.user.clone(),
        hostname: "rbuild".into(),
        network: to_sandbox_network(exec.network),
        security: match exec.security {
            Security::Sandbox => rbuild_sandbox::Security::Sandbox,
            Security::Insecure => rbuild_sandbox::Security::Insecure,
        },
        mounts,
        platform_arch: exec.platform.split('/').nth(1).map(str::to_string),
        ..RunSpec::default()
    };
    let digest = vertex.digest().to_string();
    let progress = ctx.progress().clone();
    let mut tail = Tail::default();
    let mut on_output = |stream: OutputStream, data: &[u8]| {
        let text = String::from_utf8_lossy(data).into_owned();
        tail.push(&text);
        let stream = match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        progress.emit(Event::Log { vertex: digest.clone(), stream, data: text, time_ms: now_ms() });
    };
    let result = engine.executor.run(&spec, &mut on_output).await;
    let tail = tail.finish();
    let failure = match result {
        Ok(r) if r.success() => None,
        Ok(r) => Some(SolveError::ProcessFailed {
            step: vertex.meta.name.clone(),
            command: exec.args.clone(),
            status: match r {
                rbuild_sandbox::RunResult::Exited(c) => format!("exit code: {c}"),
                rbuild_sandbox::RunResult::Signaled(s) => format!("killed by signal {s}"),
            },
            tail,
        }),
        Err(e) => Some(SolveError::Sandbox { step: vertex.meta.name.clone(), message: crate::chain(&e) }),
    };
    if let Some(err) = failure {
        drop(active);
        return Err(err);
    }
    let snapshot = engine.commit_snapshot(active, key, parent.as_deref(), &vertex.meta.name, vertex.meta.ignore_cache).await?;
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn tail_keeps_the_last_lines_across_chunks() {
        let mut t = Tail::default();
        for i in 0..15 {
            t.push(&format!("line {i}\n"));
        }
        t.push("partial");
        let lines = t.finish();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines.last().unwrap(), "partial");
        assert_eq!(lines[0], "line 6");
    }
}
