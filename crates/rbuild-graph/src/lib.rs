//! The build graph: the only contract between a frontend (the Dockerfile
//! converter) and the solver.
//!
//! A [`Graph`] is a DAG of [`Vertex`]es. Each vertex is one [`Op`] plus the
//! vertices it reads from. Every vertex has a content digest: the SHA-256 of
//! the canonical JSON encoding of its op and its inputs' digests. Equal
//! operations on equal inputs therefore get equal digests in every run and on
//! every machine, and a change to one vertex changes exactly the digests of
//! the vertices downstream of it.
//!
//! What a vertex *is* (its op) is kept apart from how a build wants to treat
//! it ([`VertexMeta`]: progress names, `--no-cache`): the latter must never
//! change a digest.
//!
//! Context sources are special: their digest covers only which context they
//! are and which files are visible (`.dockerignore`), not file contents. The
//! solver derives cache keys for ops that read a context from the content hash
//! of exactly the files each op selects, so editing an unrelated file does not
//! invalidate a `COPY requirements.txt .`.

mod digest;
mod op;

pub use digest::{Digest, DigestError};
pub use op::{
    CacheSharing, Chown, ContextSource, CopyAction, Credentials, ExecMount, ExecMountKind, ExecOp, FileAction,
    FileOp, GitSource, HttpSource, ImageSource, Network, Op, Security,
};

use std::collections::HashMap;

/// Index of a vertex inside its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId(pub usize);

/// Per-build treatment of a vertex; never part of its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VertexMeta {
    /// What progress output calls this step, e.g. `[build 2/4] RUN make`.
    pub name: String,
    /// Run the vertex even when a cached result exists (`--no-cache`).
    pub ignore_cache: bool,
}

/// One node of the graph.
#[derive(Clone, Debug)]
pub struct Vertex {
    pub op: Op,
    pub inputs: Vec<VertexId>,
    pub meta: VertexMeta,
    digest: Digest,
}

impl Vertex {
    /// The content digest of this vertex (op + input digests).
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// A build graph. Vertices are stored in insertion order, which is always a
/// topological order: a vertex can only name inputs that already exist.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    vertices: Vec<Vertex>,
    by_digest: HashMap<Digest, VertexId>,
}

/// Errors from building a graph.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("vertex input {input:?} does not exist (the graph has {len} vertices)")]
    UnknownInput { input: VertexId, len: usize },
    #[error("op refers to input #{index} but the vertex has only {len} inputs")]
    InputIndex { index: usize, len: usize },
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex and returns its id. Adding a vertex equal to an existing
    /// one (same digest) returns the existing id, so identical work is
    /// represented once; the first metadata wins, except that `ignore_cache`
    /// is sticky.
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        meta: VertexMeta,
    ) -> Result<VertexId, GraphError> {
        for input in &inputs {
            if input.0 >= self.vertices.len() {
                return Err(GraphError::UnknownInput { input: *input, len: self.vertices.len() });
            }
        }
        if let Some(index) = op.max_input_index()
            && index >= inputs.len()
        {
            return Err(GraphError::InputIndex { index, len: inputs.len() });
        }
        let input_digests: Vec<&Digest> =
            inputs.iter().map(|i| &self.vertices[i.0].digest).collect();
        let digest = Digest::of_json(&(&op, &input_digests));
        if let Some(id) = self.by_digest.get(&digest) {
            if meta.ignore_cache {
                self.vertices[id.0].meta.ignore_cache = true;
            }
            return Ok(*id);
        }
        let id = VertexId(self.vertices.len());
        self.vertices.push(Vertex { op, inputs, meta, digest: digest.clone() });
        self.by_digest.insert(digest, id);
        Ok(id)
    }

    pub fn get(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0]
    }

    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// All vertices in topological order.
    pub fn iter(&self) -> impl Iterator<Item = (VertexId, &Vertex)> {
        self.vertices.iter().enumerate().map(|(i, v)| (VertexId(i), v))
    }

    /// The vertices `roots` depend on (including themselves), in topological
    /// order. Everything else in the graph is not needed for those roots.
    pub fn ancestors(&self, roots: &[VertexId]) -> Vec<VertexId> {
        let mut needed = vec![false; self.vertices.len()];
        let mut stack: Vec<VertexId> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if !needed[id.0] {
                needed[id.0] = true;
                stack.extend(self.vertices[id.0].inputs.iter().copied());
            }
        }
        (0..self.vertices.len()).filter(|i| needed[*i]).map(VertexId).collect()
    }

    /// Marks a vertex to be rebuilt even when cached.
    pub fn set_ignore_cache(&mut self, id: VertexId) {
        self.vertices[id.0].meta.ignore_cache = true;
    }
}

#[cfg(test)]
mod tests;
