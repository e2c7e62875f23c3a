//! Content digests (`sha256:<hex>`).
//!
//! Every blob, config, manifest and layer diff is named by its digest. The
//! type only admits well-formed sha256 digests so that a digest taken from a
//! hostile manifest can safely become a file name in the content store (no
//! `/`, no `..`, fixed length).

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The only algorithm we produce and accept for now.
pub const SHA256: &str = "sha256";

/// Errors from parsing a digest string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest `{0}`: expected `sha256:<64 hex digits>`")]
    Malformed(String),
    /// The algorithm is not sha256.
    #[error("unsupported digest algorithm in `{0}`: only sha256 is supported")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong length or characters.
    #[error("invalid sha256 digest `{0}`: expected 64 lowercase hex digits")]
    BadHex(String),
}

/// A validated `sha256:<64 lowercase hex>` digest.
///
/// Ordering and hashing follow the string form, so sorted collections of
/// digests are deterministic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_owned()));
        };
        if algo != SHA256 {
            return Err(DigestError::UnsupportedAlgorithm(s.to_owned()));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }

    /// Builds a digest from 32 raw sha256 bytes.
    pub fn from_sha256_bytes(bytes: [u8; 32]) -> Self {
        Digest(format!("{SHA256}:{}", hex::encode(bytes)))
    }

    /// Digest of an in-memory byte string.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self::from_sha256_bytes(Sha256::digest(bytes).into())
    }

    /// Digest of everything a reader yields (streamed, constant memory).
    pub fn sha256_reader(mut r: impl Read) -> io::Result<(Self, u64)> {
        let mut w = DigestWriter::new(io::sink());
        io::copy(&mut r, &mut w)?;
        let (_, d, n) = w.finish();
        Ok((d, n))
    }

    /// The algorithm name (always `sha256` for now).
    pub fn algorithm(&self) -> &str {
        SHA256
    }

    /// The hex part, usable as a file name (`blobs/sha256/<hex>`).
    pub fn hex(&self) -> &str {
        &self.0[SHA256.len() + 1..]
    }

    /// The full `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        Self::sha256(bytes) == *self
    }

    /// The first 12 hex digits, as `docker images` shows image ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count, for callers that receive data in
/// chunks (e.g. an async HTTP body) and cannot use [`DigestWriter`].
#[derive(Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    size: u64,
}

impl Digester {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_sha256_bytes(self.hasher.finalize().into())
    }
}

/// A writer that hashes and counts everything written through it, so the
/// digest of a stream is known the moment the stream ends (one pass).
pub struct DigestWriter<W: Write> {
    inner: W,
    digester: Digester,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, digester: Digester::new() }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.digester.size()
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably (writes through it are not hashed).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let size = self.digester.size();
        (self.inner, self.digester.finish(), size)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub struct DigestReader<R: Read> {
    inner: R,
    digester: Digester,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, digester: Digester::new() }
    }

    /// Bytes read so far.
    pub fn size(&self) -> u64 {
        self.digester.size()
    }

    /// Returns the inner reader, the digest and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        let size = self.digester.size();
        (self.inner, self.digester.finish(), size)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY);
    }

    #[test]
    fn parse_accepts_only_lowercase_sha256() {
        assert!(Digest::parse(EMPTY).is_ok());
        assert_eq!(Digest::parse(&EMPTY.to_uppercase()).unwrap_err(), DigestError::UnsupportedAlgorithm(EMPTY.to_uppercase()));
        let upper_hex = format!("sha256:{}", &EMPTY[7..].to_uppercase());
        assert!(matches!(Digest::parse(&upper_hex), Err(DigestError::BadHex(_))));
        assert!(matches!(Digest::parse("sha256:abc"), Err(DigestError::BadHex(_))));
        assert!(matches!(Digest::parse("sha512:abc"), Err(DigestError::UnsupportedAlgorithm(_))));
        assert!(matches!(Digest::parse("nocolon"), Err(DigestError::Malformed(_))));
        let traversal = format!("sha256:../{}", &EMPTY[10..]);
        assert!(Digest::parse(&traversal).is_err());
    }

    #[test]
    fn serde_round_trip_as_string() {
        let d = Digest::sha256(b"x");
        let s = serde_json::to_string(&d).unwrap();
        assert_eq!(s, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&s).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn writer_and_reader_hash_what_passes() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (buf, d, n) = w.finish();
        assert_eq!(buf, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(d, Digest::sha256(b"hello world"));
        let mut r = DigestReader::new(&b"hello world"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish().1, d);
        assert_eq!(d.hex().len(), 64);
        assert!(d.verify(b"hello world"));
    }
}
