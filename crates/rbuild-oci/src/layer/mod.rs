//! Layer tars: create one from an overlay upperdir (streamed into the
//! content store with diffID and compressed digest in one pass) and apply
//! one to a directory (contained, whatever the tar says).
//!
//! The on-disk overlay format is the one agreed for rbuild: a whiteout is a
//! character device 0:0, an opaque directory carries `user.overlay.opaque=y`
//! (`trusted.overlay.opaque` is accepted on read), and layer tars never carry
//! overlay xattrs in either direction.

mod apply;
mod create;
mod fsutil;
mod tarfmt;

use std::io::{self, BufWriter, Write};
use std::path::Path;

pub use apply::{ApplyOptions, ApplyStats, OPAQUE_XATTR, WhiteoutMode, apply_layer, decompress, uncompressed_digest};
pub use create::{TarOptions, TarStats, write_layer_tar};
pub use fsutil::openat2_scoped;
pub use tarfmt::TarError;
pub(crate) use tarfmt::{TarDirEntry, write_tar};

use crate::descriptor::Descriptor;
use crate::digest::{Digest, DigestWriter};
use crate::media_types::{self, LayerCompression};
use crate::store::{ContentStore, StoreError};

/// Errors from creating or applying layers; each names the entry or path.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A filesystem operation on an entry failed.
    #[error("layer entry `{path}`: {op} failed")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The tar stream is malformed or uses something we refuse.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// An entry name that tries to leave the target (`..`, whiteout of `..`).
    #[error("layer entry `{0}` has an unsafe path (`..` or a whiteout of `.`/`..`); refusing the layer")]
    UnsafePath(String),
    /// An entry that cannot be applied as described.
    #[error("layer entry `{path}`: {reason}")]
    BadEntry { path: String, reason: String },
    /// The media type is not a layer we can unpack.
    #[error("unsupported layer media type `{0}`")]
    UnsupportedMediaType(String),
    /// Decompression failed (corrupt or truncated stream).
    #[error("layer decompression failed")]
    Decompress(#[source] io::Error),
    /// Compression failed.
    #[error("layer compression failed")]
    Compress(#[source] io::Error),
    /// Storing the blob failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LayerError {
    pub(crate) fn io(path: String, op: &'static str, source: io::Error) -> Self {
        LayerError::Io { path, op, source }
    }
}

/// How to compress a created layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar (diffID == digest).
    None,
    /// gzip, level 0-9 (BuildKit's default is gzip at level 6 or so).
    Gzip { level: u32 },
    /// zstd, level 1-22 (3 is the zstd default).
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The compression family (for media types).
    pub fn kind(self) -> LayerCompression {
        match self {
            Compression::None => LayerCompression::None,
            Compression::Gzip { .. } => LayerCompression::Gzip,
            Compression::Zstd { .. } => LayerCompression::Zstd,
        }
    }
}

/// Options for [`create_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateOptions {
    /// Compression of the stored blob.
    pub compression: Compression,
    /// Clamp mtimes to `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// Use Docker v2s2 layer media types instead of OCI ones.
    pub docker_media_types: bool,
}

/// A layer stored in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the config's rootfs).
    pub diff_id: Digest,
    /// The compressed blob (goes into the manifest).
    pub descriptor: Descriptor,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Size of the independently compressed blocks. Each block becomes one
/// complete gzip member / zstd frame; decoders (Go's gzip and zstd readers,
/// pigz, zstd, flate2's MultiGzDecoder) read concatenated members as one
/// stream. Boundaries depend only on the uncompressed offset, so the output
/// is the same whatever the number of cores; a layer smaller than one block
/// is byte-identical to a plain single-stream encoding.
const GZIP_BLOCK: usize = 1 << 20;
const ZSTD_BLOCK: usize = 4 << 20;

/// Compresses fixed-size blocks on helper threads (at most one per core in
/// flight) while the caller keeps walking, tarring and hashing, then writes
/// the compressed blocks in order. This is how a layer uses both cores.
struct BlockEncoder<W: Write> {
    out: W,
    compression: Compression,
    block_size: usize,
    block: Vec<u8>,
    inflight: std::collections::VecDeque<std::thread::JoinHandle<io::Result<Vec<u8>>>>,
    max_inflight: usize,
    dispatched_any: bool,
}

fn compress_block(data: &[u8], c: Compression) -> io::Result<Vec<u8>> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip { level } => {
            let mut enc = flate2::GzBuilder::new().write(Vec::with_capacity(data.len() / 2), flate2::Compression::new(level.min(9)));
            enc.write_all(data)?;
            enc.finish()
        }
        Compression::Zstd { level } => zstd::stream::encode_all(data, level.clamp(1, 22)),
    }
}

impl<W: Write> BlockEncoder<W> {
    fn new(out: W, compression: Compression) -> Self {
        let block_size = match compression {
            Compression::Zstd { .. } => ZSTD_BLOCK,
            _ => GZIP_BLOCK,
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        BlockEncoder {
            out,
            compression,
            block_size,
            block: Vec::with_capacity(block_size),
            inflight: std::collections::VecDeque::new(),
            max_inflight: cores.clamp(1, 4),
            dispatched_any: false,
        }
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(h) = self.inflight.pop_front() {
            let bytes = h.join().map_err(|_| io::Error::other("compression thread panicked"))??;
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    fn dispatch(&mut self) -> io::Result<()> {
        while self.inflight.len() >= self.max_inflight {
            self.drain_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_size));
        let c = self.compression;
        let handle = std::thread::Builder::new()
            .name("rbuild-compress".into())
            .spawn(move || compress_block(&data, c))?;
        self.inflight.push_back(handle);
        self.dispatched_any = true;
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || !self.dispatched_any {
            self.dispatch()?;
        }
        while !self.inflight.is_empty() {
            self.drain_one()?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for BlockEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == self.block_size {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Encoder<W: Write> {
    None(W),
    Blocks(BlockEncoder<W>),
}

impl<W: Write> Encoder<W> {
    fn new(w: W, c: Compression) -> Self {
        match c {
            Compression::None => Encoder::None(w),
            c => Encoder::Blocks(BlockEncoder::new(w, c)),
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Blocks(b) => b.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Blocks(b) => b.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Blocks(b) => b.flush(),
        }
    }
}

const BUF: usize = 256 * 1024;

/// Tars `dir` (an overlay upperdir), compresses it and stores the blob, in
/// one streamed pass: walk → tar → sha256 (diffID) → compressor → store
/// ingest (which computes the blob digest and publishes atomically).
pub fn create_layer(store: &ContentStore, dir: &Path, opts: &CreateOptions) -> Result<LayerInfo, LayerError> {
    let ingest = store.ingest(None)?;
    let encoder = Encoder::new(BufWriter::with_capacity(BUF, ingest), opts.compression);
    let hashed = BufWriter::with_capacity(BUF, DigestWriter::new(encoder));
    let tar_opts = TarOptions { source_date_epoch: opts.source_date_epoch };
    let (hashed, _stats) = write_layer_tar(dir, hashed, &tar_opts)?;
    let hashed = hashed.into_inner().map_err(|e| LayerError::Compress(e.into_error()))?;
    let (encoder, diff_id, uncompressed_size) = hashed.finish();
    let buffered = encoder.finish().map_err(LayerError::Compress)?;
    let ingest = buffered.into_inner().map_err(|e| LayerError::Compress(e.into_error()))?;
    let (digest, size) = ingest.commit()?;
    let media_type = media_types::layer_type(opts.compression.kind(), !opts.docker_media_types);
    Ok(LayerInfo { diff_id, descriptor: Descriptor::new(media_type, digest, size), uncompressed_size })
}

#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod tests;

/// Reads a whole (small) tar into a name → contents map, for other modules' tests.
#[cfg(test)]
pub(crate) fn tarfmt_reader_for_tests(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut tr = tarfmt::TarReader::new(bytes);
    let mut out = std::collections::BTreeMap::new();
    while let Some(e) = tr.next_entry().expect("valid tar") {
        let mut d = Vec::new();
        tr.data().read_to_end(&mut d).expect("entry data");
        out.insert(String::from_utf8_lossy(&e.path).into_owned(), d);
    }
    out
}
