//! Scheduling: every needed vertex runs as soon as its inputs are ready, in
//! parallel up to a limit; each vertex runs at most once per solve; the first
//! failure cancels everything still running (dropping a sandbox future kills
//! its process tree).

use crate::progress::{Event, ProgressSink, now_ms};
use crate::{Engine, SolveError, SolveOptions};
use futures_util::future::{BoxFuture, FutureExt, Shared, try_join_all};
use rbuild_graph::{Digest, Graph, Op, Vertex, VertexId};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What a solved vertex yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A filesystem: the top snapshot of a chain, `None` for an empty one.
    Snapshot(Option<String>),
    /// A local directory (a build context), read in place; `ignore` holds
    /// its `.dockerignore` patterns (what the build must not see).
    Directory { path: PathBuf, ignore: Arc<Vec<String>> },
}

/// A solved vertex: its cache key and result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solved {
    pub key: String,
    pub output: Output,
}

impl Solved {
    /// The top snapshot, for ops that need a filesystem input.
    pub fn snapshot(&self) -> Option<&str> {
        match &self.output {
            Output::Snapshot(s) => s.as_deref(),
            Output::Directory { .. } => None,
        }
    }
}

type SharedResult = Shared<BoxFuture<'static, Result<Arc<Solved>, Arc<SolveError>>>>;

/// Everything a vertex run needs, shared by the tasks of one solve.
pub(crate) struct Ctx {
    pub engine: Arc<Engine>,
    pub graph: Arc<Graph>,
    pub opts: Arc<SolveOptions>,
    pub limit: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    pub fn progress(&self) -> &ProgressSink {
        &self.opts.progress
    }

    /// Runs `work` for vertex `digest` between a `Started` event and a
    /// `Done` (with its duration) or `Failed` one, so that every kind of
    /// vertex reports alike. With `announce` false only a failure is
    /// reported (image pulls emit their own start and end).
    pub(crate) async fn reported<T>(
        &self,
        digest: String,
        name: String,
        announce: bool,
        work: impl Future<Output = Result<T, SolveError>>,
    ) -> Result<T, SolveError> {
        let started = Instant::now();
        if announce {
            self.progress().emit(Event::Started { vertex: digest.clone(), name: name.clone(), time_ms: now_ms() });
        }
        match work.await {
            Ok(done) => {
                if announce {
                    let duration_ms = started.elapsed().as_millis() as u64;
                    self.progress().emit(Event::Done { vertex: digest, name, time_ms: now_ms(), duration_ms });
                }
                Ok(done)
            }
            Err(e) => {
                self.progress().emit(Event::Failed { vertex: digest, name, error: e.to_string(), time_ms: now_ms() });
                Err(e)
            }
        }
    }
}

/// Solves `roots` and everything they need.
pub(crate) async fn solve(ctx: Arc<Ctx>, roots: &[VertexId]) -> Result<Vec<Arc<Solved>>, SolveError> {
    let needed = ctx.graph.ancestors(roots);
    let mut futures: Vec<Option<SharedResult>> = vec![None; ctx.graph.len()];
    for id in needed {
        let inputs: Vec<SharedResult> = ctx
            .graph
            .get(id)
            .inputs
            .iter()
            .map(|i| futures[i.0].clone().expect("inputs precede their consumers"))
            .collect();
        let ctx = ctx.clone();
        let fut = async move {
            let inputs = try_join_all(inputs).await?;
            run_vertex(&ctx, id, inputs).await.map(Arc::new).map_err(Arc::new)
        }
        .boxed()
        .shared();
        futures[id.0] = Some(fut);
    }
    let wanted = roots.iter().map(|r| futures[r.0].clone().expect("roots are needed"));
    try_join_all(wanted).await.map_err(SolveError::Shared)
}

/// The recorded result of `key`, reported as CACHED.
fn cached(ctx: &Ctx, key: &str, digest: &str, name: &str) -> Result<Option<Solved>, SolveError> {
    let Some(snapshot) = ctx.engine.cached(key)? else { return Ok(None) };
    ctx.progress().emit(Event::Cached { vertex: digest.to_string(), name: name.to_string(), time_ms: now_ms() });
    Ok(Some(Solved { key: key.to_string(), output: Output::Snapshot(Some(snapshot)) }))
}

/// The cache key of a vertex: its digest plus its inputs' keys, where a
/// context input contributes the content hash of what this vertex selects.
///
/// A filesystem input contributes the snapshot it resolved to, not its key:
/// when an input is rebuilt (`--no-cache`, `--no-cache-filter`) and yields a
/// new snapshot, everything downstream misses too, and a later build that
/// gets the fresh snapshot from the cache never pairs it with results made
/// on the old one.
fn cache_key(vertex: &Vertex, inputs: &[Arc<Solved>], selections: &[(usize, String)]) -> String {
    let input_ids: Vec<&str> = inputs
        .iter()
        .map(|s| match &s.output {
            Output::Snapshot(Some(id)) => id.as_str(),
            Output::Snapshot(None) => "scratch",
            Output::Directory { .. } => s.key.as_str(),
        })
        .collect();
    Digest::of_json(&(vertex.digest(), input_ids, selections)).to_string()
}

async fn run_vertex(ctx: &Arc<Ctx>, id: VertexId, inputs: Vec<Arc<Solved>>) -> Result<Solved, SolveError> {
    let vertex = ctx.graph.get(id);
    let digest = vertex.digest().to_string();
    match &vertex.op {
        Op::Scratch => return Ok(Solved { key: digest, output: Output::Snapshot(None) }),
        Op::Context(c) => {
            let dir = ctx
                .opts
                .contexts
                .get(&c.name)
                .ok_or_else(|| SolveError::MissingContext(c.name.clone()))?;
            let ignore = Arc::new(c.exclude_patterns.clone());
            return Ok(Solved { key: digest, output: Output::Directory { path: dir.clone(), ignore } });
        }
        Op::Http(src) => return crate::http::solve_http(ctx, vertex, src).await,
        Op::Git(src) => return crate::git::solve_git(ctx, vertex, src).await,
        _ => {}
    }
    let name = vertex.meta.name.clone();
    let selections = crate::file::context_selections(ctx, vertex, &inputs).await?;
    let key = match &vertex.op {
        Op::Image(_) => digest.clone(),
        _ => cache_key(vertex, &inputs, &selections),
    };
    if !vertex.meta.ignore_cache
        && let Some(hit) = cached(ctx, &key, &digest, &name)?
    {
        return Ok(hit);
    }
    let _permit = ctx.limit.acquire().await.map_err(|_| SolveError::Cancelled)?;
    // Another build (in this engine or another process) may be making the
    // same result right now: wait for it rather than doing the work twice.
    let _key_lock = if vertex.meta.ignore_cache {
        None
    } else {
        let lock = crate::keylock::lock(&ctx.engine.state.root.join("locks"), &key).await;
        if let Some(hit) = cached(ctx, &key, &digest, &name)? {
            return Ok(hit);
        }
        lock
    };
    let work = async {
        match &vertex.op {
            Op::Image(src) => crate::image::solve_image(ctx, &digest, &name, src).await,
            Op::Exec(exec) => crate::exec::solve_exec(ctx, vertex, &key, exec, &inputs).await,
            Op::File(file) => crate::file::solve_file(ctx, vertex, &key, file, &inputs).await,
            Op::Merge => crate::merge::solve_merge(ctx, vertex, &key, &inputs).await,
            Op::Scratch | Op::Context(_) | Op::Http(_) | Op::Git(_) => unreachable!("handled above"),
        }
    };
    let announce = !matches!(vertex.op, Op::Image(_));
    let snapshot = ctx.reported(digest.clone(), name.clone(), announce, work).await?;
    Ok(Solved { key, output: Output::Snapshot(snapshot) })
}
