//! A small, strict tar reader and writer (ustar + PAX, GNU long names on read).
//!
//! We parse tar ourselves instead of using the `tar` crate's archive reader
//! because layer tars are hostile input: extension records (PAX, GNU long
//! names) are size-limited here instead of read into memory whole, sparse
//! files are refused, and every field is checked. The writer emits ustar and
//! adds a PAX record only when a value does not fit, like Go's archive/tar,
//! so output is deterministic and readable by every tool.

use std::io::{self, Read, Write};

pub(crate) const BLOCK: usize = 512;
/// Upper bound for a PAX header or GNU long name/link payload.
const MAX_EXTENSION: u64 = 1 << 20;

/// Errors from tar parsing (reported with the entry offset).
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Underlying read/write failed.
    #[error("tar I/O error")]
    Io(#[from] io::Error),
    /// The header at `offset` is malformed.
    #[error("malformed tar header at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    /// The archive uses a feature we refuse.
    #[error("unsupported tar entry at byte {offset}: {reason}")]
    Unsupported { offset: u64, reason: String },
}

/// Entry kinds we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    CharDev,
    BlockDev,
    Dir,
    Fifo,
    /// Unknown type flags: data is skipped, nothing created.
    Other(u8),
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDev => b'3',
            Kind::BlockDev => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
            Kind::Other(f) => f,
        }
    }
}

/// One logical entry, extensions already merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub devmajor: u32,
    pub devminor: u32,
    /// `SCHILY.xattr.*` records, in the order they appeared (sorted on write).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn new(path: Vec<u8>, kind: Kind) -> Self {
        Entry {
            path,
            link: Vec::new(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------- reading

/// Streaming tar reader. Call [`TarReader::next_entry`], then read the data
/// with [`TarReader::data`] (unread data is skipped automatically).
pub(crate) struct TarReader<R: Read> {
    r: R,
    offset: u64,
    remaining: u64,
    padding: u64,
    done: bool,
}

fn parse_octal_or_binary(field: &[u8], what: &str, offset: u64) -> Result<u64, TarError> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        // GNU base-256: big-endian, first byte's top bit is the marker.
        if first == 0xff {
            return Err(TarError::Malformed { offset, reason: format!("negative {what}") });
        }
        let mut v: u64 = u64::from(first & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256).and_then(|v| v.checked_add(u64::from(b))).ok_or_else(|| {
                TarError::Malformed { offset, reason: format!("{what} overflows") }
            })?;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field.iter().copied().take_while(|&b| b != 0).collect();
    let t = String::from_utf8_lossy(&s);
    let t = t.trim_matches(|c: char| c == ' ');
    if t.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(t, 8).map_err(|_| TarError::Malformed { offset, reason: format!("bad {what} field `{t}`") })
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn checksum(h: &[u8; BLOCK]) -> u64 {
    h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum()
}

#[derive(Default)]
struct Overrides {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader { r, offset: 0, remaining: 0, padding: 0, done: false }
    }

    /// The wrapped reader (for draining trailing bytes).
    pub fn into_inner(self) -> R {
        self.r
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            let got = self.r.read(&mut buf[..want])?;
            if got == 0 {
                return Err(TarError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "tar truncated")));
            }
            n -= got as u64;
            self.offset += got as u64;
        }
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = self.r.read(&mut buf[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(TarError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "tar header truncated")));
            }
            filled += n;
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    fn read_extension(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::Unsupported { offset, reason: format!("extension header of {size} bytes") });
        }
        let mut v = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.r.read_exact(&mut v)?;
        self.offset += size;
        let pad = padding(size);
        self.skip(pad)?;
        Ok(v)
    }

    /// Reads the next entry header (merging PAX / GNU extension entries).
    /// Returns `None` at the end-of-archive marker or at EOF.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let pending = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(pending)?;
        let mut ov = Overrides::default();
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut gnu_link: Option<Vec<u8>> = None;
        loop {
            let offset = self.offset;
            let mut h = [0u8; BLOCK];
            if !self.read_block(&mut h)? || h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let stored = parse_octal_or_binary(&h[148..156], "checksum", offset)?;
            if stored != checksum(&h) {
                return Err(TarError::Malformed { offset, reason: "header checksum mismatch".into() });
            }
            let flag = h[156];
            let header_size = parse_octal_or_binary(&h[124..136], "size", offset)?;
            match flag {
                b'x' => {
                    let data = self.read_extension(header_size, offset)?;
                    parse_pax(&data, &mut ov, offset)?;
                    continue;
                }
                b'g' => {
                    // Global headers: read and ignore (bounded), as containerd does for paths.
                    self.read_extension(header_size, offset)?;
                    continue;
                }
                b'L' => {
                    gnu_name = Some(cstr(&self.read_extension(header_size, offset)?).to_vec());
                    continue;
                }
                b'K' => {
                    gnu_link = Some(cstr(&self.read_extension(header_size, offset)?).to_vec());
                    continue;
                }
                b'S' => return Err(TarError::Unsupported { offset, reason: "GNU sparse file".into() }),
                _ => {}
            }
            let ustar = &h[257..263] == b"ustar\0";
            let mut path = cstr(&h[0..100]).to_vec();
            if ustar {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(&path);
                    path = p;
                }
            }
            let kind = match flag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDev,
                b'4' => Kind::BlockDev,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                other => Kind::Other(other),
            };
            let size = ov.size.unwrap_or(header_size);
            let mtime = match ov.mtime {
                Some(m) => m,
                None => i64::try_from(parse_octal_or_binary(&h[136..148], "mtime", offset)?).unwrap_or(i64::MAX),
            };
            let num32 = |field: &[u8], what: &str| -> Result<u32, TarError> {
                let v = parse_octal_or_binary(field, what, offset)?;
                u32::try_from(v).map_err(|_| TarError::Malformed { offset, reason: format!("{what} {v} too large") })
            };
            let path = ov.path.take().or(gnu_name.take()).unwrap_or(path);
            // Pre-POSIX archives mark directories only by a trailing slash
            // (Go and GNU tar read them the same way).
            let kind = if flag == 0 && path.ends_with(b"/") { Kind::Dir } else { kind };
            let entry = Entry {
                path,
                link: ov.link.take().or(gnu_link.take()).unwrap_or_else(|| cstr(&h[157..257]).to_vec()),
                kind,
                mode: num32(&h[100..108], "mode")? & 0o7777,
                uid: ov.uid.unwrap_or(parse_octal_or_binary(&h[108..116], "uid", offset)?),
                gid: ov.gid.unwrap_or(parse_octal_or_binary(&h[116..124], "gid", offset)?),
                size,
                mtime,
                devmajor: num32(&h[329..337], "devmajor")?,
                devminor: num32(&h[337..345], "devminor")?,
                xattrs: std::mem::take(&mut ov.xattrs),
            };
            // Links, dirs and devices carry no data even if a size is claimed
            // (GNU tar and Go agree); only regular files and unknown types do.
            let data = match kind {
                Kind::File | Kind::Other(_) => size,
                _ => 0,
            };
            self.remaining = data;
            self.padding = padding(data);
            return Ok(Some(entry));
        }
    }

    /// Reader over the current entry's data.
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { tr: self }
    }
}

/// The data of the current entry.
pub(crate) struct EntryData<'a, R: Read> {
    tr: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tr.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.tr.remaining.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = self.tr.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "tar entry data truncated"));
        }
        self.tr.remaining -= n as u64;
        self.tr.offset += n as u64;
        Ok(n)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn parse_pax(data: &[u8], ov: &mut Overrides, offset: u64) -> Result<(), TarError> {
    let bad = |r: &str| TarError::Malformed { offset, reason: format!("PAX header: {r}") };
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length out of range"));
        }
        let record = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("record without `=`"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let num = |v: &[u8]| -> Result<u64, TarError> {
            std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad number"))
        };
        match key {
            b"path" => ov.path = Some(value.to_vec()),
            b"linkpath" => ov.link = Some(value.to_vec()),
            b"size" => ov.size = Some(num(value)?),
            b"uid" => ov.uid = Some(num(value)?),
            b"gid" => ov.gid = Some(num(value)?),
            b"mtime" => {
                let s = std::str::from_utf8(value).map_err(|_| bad("bad mtime"))?;
                let secs = s.split('.').next().unwrap_or("");
                ov.mtime = Some(secs.parse().map_err(|_| bad("bad mtime"))?);
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                ov.xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()));
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(TarError::Unsupported { offset, reason: "PAX sparse file".into() });
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- writing

/// Deterministic tar writer.
pub(crate) struct TarWriter<W: Write> {
    w: W,
}

fn put_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> key=value\n", where len counts its own digits.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits a path into ustar (prefix, name) if it fits.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The split must be at a '/', prefix <= 155, name <= 100 and non-empty.
    let start = path.len().saturating_sub(101);
    for i in start..path.len().min(156) {
        if path[i] == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i + 1 < path.len() {
            return Some((&path[..i], &path[i + 1..]));
        }
    }
    None
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        TarWriter { w }
    }

    fn header_block(e: &Entry, name: &[u8], prefix: &[u8], link: &[u8], pax: &mut Vec<u8>) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        put_octal(&mut h[100..108], u64::from(e.mode & 0o7777));
        if !put_octal(&mut h[108..116], e.uid) {
            pax_record(pax, b"uid", e.uid.to_string().as_bytes());
            put_octal(&mut h[108..116], 0);
        }
        if !put_octal(&mut h[116..124], e.gid) {
            pax_record(pax, b"gid", e.gid.to_string().as_bytes());
            put_octal(&mut h[116..124], 0);
        }
        if !put_octal(&mut h[124..136], e.size) {
            pax_record(pax, b"size", e.size.to_string().as_bytes());
            put_octal(&mut h[124..136], 0);
        }
        match u64::try_from(e.mtime) {
            Ok(m) if put_octal(&mut h[136..148], m) => {}
            _ => {
                pax_record(pax, b"mtime", e.mtime.to_string().as_bytes());
                put_octal(&mut h[136..148], 0);
            }
        }
        h[156] = e.kind.flag();
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        put_octal(&mut h[329..337], u64::from(e.devmajor));
        put_octal(&mut h[337..345], u64::from(e.devminor));
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h
    }

    fn seal(h: &mut [u8; BLOCK]) {
        let sum = checksum(h);
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
    }

    /// Writes one entry; `data` must yield exactly `e.size` bytes for files.
    pub fn append(&mut self, e: &Entry, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut pax = Vec::new();
        let (prefix, name) = match split_ustar(&e.path) {
            Some(pn) => pn,
            None => {
                pax_record(&mut pax, b"path", &e.path);
                (&[][..], &e.path[..e.path.len().min(100)])
            }
        };
        let link: &[u8] = if e.link.len() <= 100 {
            &e.link
        } else {
            pax_record(&mut pax, b"linkpath", &e.link);
            &e.link[..100]
        };
        let mut h = Self::header_block(e, name, prefix, link, &mut pax);
        let mut xattrs: Vec<&(Vec<u8>, Vec<u8>)> = e.xattrs.iter().collect();
        xattrs.sort();
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        Self::seal(&mut h);
        if !pax.is_empty() {
            let base = e.path.rsplit(|&b| b == b'/').find(|s| !s.is_empty()).unwrap_or(b"entry");
            let mut pname = b"PaxHeaders.0/".to_vec();
            pname.extend_from_slice(base);
            pname.truncate(100);
            let mut pe = Entry::new(pname.clone(), Kind::Other(b'x'));
            pe.size = pax.len() as u64;
            let mut ph = Self::header_block(&pe, &pname, &[], &[], &mut Vec::new());
            Self::seal(&mut ph);
            self.w.write_all(&ph)?;
            self.w.write_all(&pax)?;
            self.w.write_all(&[0u8; BLOCK][..usize::try_from(padding(pax.len() as u64)).unwrap_or(0)])?;
        }
        self.w.write_all(&h)?;
        if e.kind == Kind::File && e.size > 0 {
            let data = data.ok_or_else(|| io::Error::other("file entry without data"))?;
            let copied = io::copy(&mut data.take(e.size), &mut self.w)?;
            if copied != e.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while archiving: expected {} bytes, read {copied}", e.size),
                ));
            }
            self.w.write_all(&[0u8; BLOCK][..usize::try_from(padding(e.size)).unwrap_or(0)])?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.w)
    }
}

/// A plain file or directory for [`write_tar`] (export tars).
pub(crate) enum TarDirEntry {
    Dir(String),
    Bytes(String, Vec<u8>),
    Reader(String, u64, Box<dyn Read>),
}

/// Writes a simple tar of directories and files (mode 0755/0644, uid 0,
/// mtime 0) in the given order, streaming readers.
pub(crate) fn write_tar<W: Write>(out: W, entries: Vec<TarDirEntry>) -> io::Result<W> {
    let mut tw = TarWriter::new(out);
    for e in entries {
        match e {
            TarDirEntry::Dir(name) => {
                let mut h = Entry::new(name.into_bytes(), Kind::Dir);
                h.mode = 0o755;
                tw.append(&h, None)?;
            }
            TarDirEntry::Bytes(name, bytes) => {
                let mut h = Entry::new(name.into_bytes(), Kind::File);
                h.size = bytes.len() as u64;
                tw.append(&h, Some(&mut &bytes[..]))?;
            }
            TarDirEntry::Reader(name, size, mut r) => {
                let mut h = Entry::new(name.into_bytes(), Kind::File);
                h.size = size;
                tw.append(&h, Some(&mut r))?;
            }
        }
    }
    tw.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(entries: &[(Entry, Vec<u8>)]) -> Vec<(Entry, Vec<u8>)> {
        let mut tw = TarWriter::new(Vec::new());
        for (e, d) in entries {
            tw.append(e, Some(&mut &d[..])).unwrap();
        }
        let bytes = tw.finish().unwrap();
        let mut tr = TarReader::new(&bytes[..]);
        let mut out = Vec::new();
        while let Some(e) = tr.next_entry().unwrap() {
            let mut d = Vec::new();
            tr.data().read_to_end(&mut d).unwrap();
            out.push((e, d));
        }
        out
    }

    #[test]
    fn long_names_big_ids_xattrs_and_negative_mtime_survive() {
        let mut f = Entry::new(format!("{}/file", "d".repeat(150)).into_bytes(), Kind::File);
        f.size = 3;
        f.uid = 5_000_000;
        f.gid = 7;
        f.mtime = -5;
        f.xattrs = vec![(b"security.capability".to_vec(), vec![1, 0, 0, 2, 0xff]), (b"user.a".to_vec(), b"b".to_vec())];
        let mut l = Entry::new(b"link".to_vec(), Kind::Symlink);
        l.link = "t".repeat(300).into_bytes();
        let mut s = Entry::new(format!("{}/{}", "p".repeat(120), "n".repeat(90)).into_bytes(), Kind::File);
        s.size = 0;
        let input = vec![(f, b"abc".to_vec()), (l, vec![]), (s, vec![])];
        let out = roundtrip(&input);
        assert_eq!(out.len(), 3);
        for ((a, ad), (b, bd)) in input.iter().zip(&out) {
            assert_eq!(a, b);
            assert_eq!(ad, bd);
        }
    }

    #[test]
    #[allow(clippy::print_stderr)] // tests print a note when they skip
    fn gnu_tar_reads_our_output_and_we_read_gnu_tar() {
        if std::process::Command::new("tar").arg("--version").output().is_err() {
            eprintln!("note: tar not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut e = Entry::new(format!("{}/x", "a".repeat(200)).into_bytes(), Kind::File);
        e.size = 5;
        e.mode = 0o755;
        let mut tw = TarWriter::new(Vec::new());
        tw.append(&e, Some(&mut &b"hello"[..])).unwrap();
        let bytes = tw.finish().unwrap();
        let tarfile = dir.path().join("t.tar");
        std::fs::write(&tarfile, &bytes).unwrap();
        let out = std::process::Command::new("tar").arg("-tf").arg(&tarfile).output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&e.path));
        // And the other way: GNU format with a long name and a long symlink target.
        let src = dir.path().join("src");
        let deep = src.join("b".repeat(120));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"data").unwrap();
        std::os::unix::fs::symlink("c".repeat(150), src.join("l")).unwrap();
        let gnu = dir.path().join("gnu.tar");
        let st = std::process::Command::new("tar")
            .args(["--format=gnu", "-cf"])
            .arg(&gnu)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let data = std::fs::read(&gnu).unwrap();
        let mut tr = TarReader::new(&data[..]);
        let mut seen = Vec::new();
        while let Some(e) = tr.next_entry().unwrap() {
            if e.kind == Kind::Symlink {
                assert_eq!(e.link, "c".repeat(150).into_bytes());
            }
            if e.kind == Kind::File {
                let mut d = Vec::new();
                tr.data().read_to_end(&mut d).unwrap();
                assert_eq!(d, b"data");
            }
            seen.push(String::from_utf8_lossy(&e.path).into_owned());
        }
        assert!(seen.iter().any(|p| p.ends_with(&format!("{}/f", "b".repeat(120)))), "{seen:?}");
    }

    #[test]
    fn hostile_headers_are_refused() {
        // Bad checksum.
        let mut tw = TarWriter::new(Vec::new());
        tw.append(&Entry::new(b"a".to_vec(), Kind::Dir), None).unwrap();
        let mut bytes = tw.finish().unwrap();
        bytes[0] = b'b';
        assert!(matches!(TarReader::new(&bytes[..]).next_entry(), Err(TarError::Malformed { .. })));
        // A PAX header claiming 1 GiB is refused before allocating.
        let mut pe = Entry::new(b"PaxHeaders.0/x".to_vec(), Kind::Other(b'x'));
        pe.size = 1 << 30;
        let mut h = TarWriter::<Vec<u8>>::header_block(&pe, b"PaxHeaders.0/x", &[], &[], &mut Vec::new());
        TarWriter::<Vec<u8>>::seal(&mut h);
        assert!(matches!(TarReader::new(&h[..]).next_entry(), Err(TarError::Unsupported { .. })));
        // Truncated data is an error, not silent success.
        let mut f = Entry::new(b"f".to_vec(), Kind::File);
        f.size = 1000;
        let mut h = TarWriter::<Vec<u8>>::header_block(&f, b"f", &[], &[], &mut Vec::new());
        TarWriter::<Vec<u8>>::seal(&mut h);
        let mut v = h.to_vec();
        v.extend_from_slice(&[1u8; 10]);
        let mut tr = TarReader::new(&v[..]);
        tr.next_entry().unwrap().unwrap();
        assert!(tr.data().read_to_end(&mut Vec::new()).is_err());
    }
}
