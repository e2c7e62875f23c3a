//! The local image store: names of images built here (`rbuild build -t`,
//! `--load`, `-o type=image`), so that `rbuild images|run|save|push|rmi|tag`
//! and a later `FROM name` find them without asking a registry.
//!
//! Only names live here. A row of the `local_images` table maps a
//! normalised reference (`docker.io/library/app:latest`) to a manifest in
//! the content store; the blobs stay where the build wrote them, shared with
//! the build cache. Removing a name (`rmi`) leaves them for `prune`, which
//! must treat every manifest named here as a root. Keeping names apart from
//! the registry resolution cache (the `images` table) is deliberate: a name
//! built here must win over whatever a registry once answered for it, and
//! `--pull` must be able to bypass the one without forgetting the other.

use crate::db::{Db, DbError};
use crate::{Engine, ExportedImage, SolveError, SolveOptions};
use rbuild_graph::{Graph, ImageSource, Op, VertexMeta};
use rbuild_oci::config::ImageConfig;
use rbuild_oci::descriptor::Descriptor;
use rbuild_oci::digest::Digest;
use rbuild_oci::manifest::ImageManifest;
use rbuild_oci::platform::Platform;
use rbuild_oci::reference::{Reference, ReferenceError};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::sync::Arc;
use crate::lease::now;

/// Errors of the local image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    #[error("invalid image name `{name}`: {source}")]
    Name {
        name: String,
        #[source]
        source: ReferenceError,
    },
    #[error("image name `{0}` has a digest; a local name needs a tag\nhint: use NAME:TAG")]
    DigestName(String),
    #[error("no local image `{0}`\nhint: `rbuild images` lists local images; `rbuild build -t NAME .` makes one")]
    NotFound(String),
    #[error("`{input}` matches several local images: {matches}\nhint: give the image's name or a longer ID prefix")]
    Ambiguous { input: String, matches: String },
    #[error("image `{input}` has several names: {names}\nhint: remove one name (`rbuild rmi NAME`), or all of them with --force")]
    SeveralNames { input: String, names: String },
    #[error("local image `{name}`: {message}")]
    Content { name: String, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One named image of the local store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalImage {
    /// The normalised reference (`docker.io/library/app:latest`).
    pub name: String,
    /// The image manifest in the content store.
    pub manifest: Descriptor,
    /// The config digest (Docker's "image ID").
    pub config_digest: String,
    /// `os/arch[/variant]` of the image.
    pub platform: String,
    /// Bytes of config and layer blobs, as stored (compressed).
    pub size: u64,
    /// The config's `created` (RFC 3339), when it has one.
    pub created: Option<String>,
    /// When the name was set (seconds since the epoch).
    pub tagged: i64,
}

impl LocalImage {
    /// The short form users typed (`app:latest`, `host:5000/x:1`).
    pub fn familiar_name(&self) -> String {
        Reference::parse(&self.name).map(|r| r.familiar()).unwrap_or_else(|_| self.name.clone())
    }
}

const COLUMNS: &str =
    "name, manifest_digest, media_type, manifest_size, config_digest, platform, size, created, tagged";

fn row_to_image(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocalImageRow> {
    Ok(LocalImageRow {
            name: r.get(0)?,
            manifest_digest: r.get(1)?,
            media_type: r.get(2)?,
            manifest_size: r.get::<_, i64>(3)? as u64,
            config_digest: r.get(4)?,
            platform: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            created: r.get(7)?,
            tagged: r.get(8)?,
    })
}

/// A row as stored; the digest is validated when it becomes a [`LocalImage`].
struct LocalImageRow {
    name: String,
    manifest_digest: String,
    media_type: String,
    manifest_size: u64,
    config_digest: String,
    platform: String,
    size: u64,
    created: Option<String>,
    tagged: i64,
}

impl LocalImageRow {
    /// Rows with a digest that does not parse (a hand-edited DB) are skipped.
    fn into_image(self) -> Option<LocalImage> {
        let digest = Digest::parse(&self.manifest_digest).ok()?;
        Some(LocalImage {
            name: self.name,
            manifest: Descriptor::new(self.media_type, digest, self.manifest_size),
            config_digest: self.config_digest,
            platform: self.platform,
            size: self.size,
            created: self.created,
            tagged: self.tagged,
        })
    }
}

impl Db {
    /// Sets (or moves) a local image name.
    pub fn put_local_image(&self, image: &LocalImage) -> Result<(), DbError> {
        self.conn().execute(
            &format!("INSERT OR REPLACE INTO local_images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                image.name,
                image.manifest.digest.as_str(),
                image.manifest.media_type,
                image.manifest.size as i64,
                image.config_digest,
                image.platform,
                image.size as i64,
                image.created,
                image.tagged,
            ],
        )?;
        Ok(())
    }

    /// The local image of a normalised name.
    pub fn local_image(&self, name: &str) -> Result<Option<LocalImage>, DbError> {
        let row = self
            .conn()
            .query_row(&format!("SELECT {COLUMNS} FROM local_images WHERE name = ?1"), [name], row_to_image)
            .optional()?;
        Ok(row.and_then(LocalImageRow::into_image))
    }

    /// Every local image, by name. Garbage collection keeps what these
    /// manifests reference.
    pub fn local_images(&self) -> Result<Vec<LocalImage>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM local_images ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_image)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(image) = row?.into_image() {
                out.push(image);
            }
        }
        Ok(out)
    }

    /// Removes a name; returns whether it existed.
    pub fn remove_local_image(&self, name: &str) -> Result<bool, DbError> {
        Ok(self.conn().execute("DELETE FROM local_images WHERE name = ?1", [name])? > 0)
    }
}

/// Normalises a name for the store: tag `latest` when none is given; a
/// digest is refused (a name that points at a fixed manifest is not a name).
pub fn normalise_name(input: &str) -> Result<Reference, ImageStoreError> {
    let r = Reference::parse(input).map_err(|source| ImageStoreError::Name { name: input.to_string(), source })?;
    if r.digest.is_some() {
        return Err(ImageStoreError::DigestName(input.to_string()));
    }
    Ok(r)
}

/// Whether `input` looks like an image ID prefix (`sha256:abc…` or hex).
fn id_prefix(input: &str) -> Option<&str> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    let ok = hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(hex)
}

/// The image whose ID (config digest) or manifest digest starts with
/// `prefix`; several names of one image are one match.
fn match_id_prefix(all: &[LocalImage], input: &str, prefix: &str) -> Result<LocalImage, ImageStoreError> {
    let matching: Vec<&LocalImage> = all
        .iter()
        .filter(|i| {
            i.config_digest.strip_prefix("sha256:").is_some_and(|h| h.starts_with(prefix))
                || i.manifest.digest.hex().starts_with(prefix)
        })
        .collect();
    let distinct: std::collections::BTreeSet<&str> = matching.iter().map(|i| i.manifest.digest.as_str()).collect();
    match (matching.first(), distinct.len()) {
        (Some(image), 1) => Ok((*image).clone()),
        (None, _) => Err(ImageStoreError::NotFound(input.to_string())),
        _ => Err(ImageStoreError::Ambiguous {
            input: input.to_string(),
            matches: matching.iter().map(|i| i.familiar_name()).collect::<Vec<_>>().join(", "),
        }),
    }
}

impl Engine {
    fn read_manifest(&self, name: &str, desc: &Descriptor) -> Result<(ImageManifest, ImageConfig), ImageStoreError> {
        let content_err = |message: String| ImageStoreError::Content { name: name.to_string(), message };
        let store = &self.state.content;
        let manifest_bytes = store.read_all(&desc.digest).map_err(|e| content_err(crate::chain(&e)))?;
        let manifest = ImageManifest::from_slice(&manifest_bytes).map_err(|e| content_err(crate::chain(&e)))?;
        let config_bytes = store.read_all(&manifest.config.digest).map_err(|e| content_err(crate::chain(&e)))?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| content_err(format!("image config: {e}")))?;
        Ok((manifest, config))
    }

    /// Records `names` for an image the build wrote to the content store.
    pub fn store_image(&self, names: &[Reference], image: &ExportedImage) -> Result<Vec<LocalImage>, ImageStoreError> {
        let Some(first) = names.first() else { return Ok(Vec::new()) };
        let (manifest, config) = self.read_manifest(&first.to_string(), &image.manifest)?;
        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let platform = config.platform().to_string();
        let tagged = now();
        let mut out = Vec::new();
        for r in names {
            if r.digest.is_some() {
                return Err(ImageStoreError::DigestName(r.to_string()));
            }
            let rec = LocalImage {
                name: r.to_string(),
                manifest: Descriptor::new(
                    image.manifest.media_type.clone(),
                    image.manifest.digest.clone(),
                    image.manifest.size,
                ),
                config_digest: manifest.config.digest.to_string(),
                platform: platform.clone(),
                size,
                created: config.created.clone(),
                tagged,
            };
            self.state.db.put_local_image(&rec)?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Every local image, by name.
    pub fn local_images(&self) -> Result<Vec<LocalImage>, ImageStoreError> {
        Ok(self.state.db.local_images()?)
    }

    /// Finds a local image by name (`app`, `app:1`, `host:5000/app:1`) or
    /// by a unique prefix (4+ hex digits) of its ID (config digest) or
    /// manifest digest, as `docker` accepts.
    pub fn find_local_image(&self, input: &str) -> Result<LocalImage, ImageStoreError> {
        if let Ok(r) = Reference::parse(input)
            && r.digest.is_none()
            && let Some(image) = self.state.db.local_image(&r.to_string())?
        {
            return Ok(image);
        }
        let Some(prefix) = id_prefix(input) else {
            normalise_name(input)?;
            return Err(ImageStoreError::NotFound(input.to_string()));
        };
        match_id_prefix(&self.state.db.local_images()?, input, prefix)
    }

    /// Gives the image `src` (a name or ID) the name `dst` too.
    pub fn tag_local_image(&self, src: &str, dst: &str) -> Result<LocalImage, ImageStoreError> {
        let image = self.find_local_image(src)?;
        let dst = normalise_name(dst)?;
        let rec = LocalImage { name: dst.to_string(), tagged: now(), ..image };
        self.state.db.put_local_image(&rec)?;
        Ok(rec)
    }

    /// Removes a name; given an image ID, removes its only name, or every
    /// name when `all_names` (docker's `rmi -f ID`). The blobs and
    /// snapshots stay until `prune`. Returns the removed records.
    pub fn remove_local_image(&self, input: &str, all_names: bool) -> Result<Vec<LocalImage>, ImageStoreError> {
        let image = self.find_local_image(input)?;
        let by_name = Reference::parse(input).is_ok_and(|r| r.to_string() == image.name);
        let targets: Vec<LocalImage> = if by_name {
            vec![image]
        } else {
            let same: Vec<LocalImage> = self
                .state
                .db
                .local_images()?
                .into_iter()
                .filter(|i| i.manifest.digest == image.manifest.digest)
                .collect();
            if same.len() > 1 && !all_names {
                return Err(ImageStoreError::SeveralNames {
                    input: input.to_string(),
                    names: same.iter().map(LocalImage::familiar_name).collect::<Vec<_>>().join(", "),
                });
            }
            same
        };
        for t in &targets {
            self.state.db.remove_local_image(&t.name)?;
        }
        Ok(targets)
    }

    /// The local image a base-image name resolves to, as BuildKit's docker
    /// driver does it: a name (no digest) stored here, for the platform
    /// asked, whose manifest and config are still in the content store.
    /// Returns the reference pinned to the manifest digest and the config.
    pub fn local_base_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<(Reference, ImageConfig)>, ImageStoreError> {
        if reference.digest.is_some() {
            return Ok(None);
        }
        let Some(image) = self.state.db.local_image(&reference.to_string())? else { return Ok(None) };
        let same_platform = Platform::parse(&image.platform).is_ok_and(|p| platform.matches(&p));
        if !same_platform || !self.state.content.contains(&image.manifest.digest) {
            return Ok(None);
        }
        match self.read_manifest(&image.name, &image.manifest) {
            Ok((_, config)) => Ok(Some((reference.with_digest(image.manifest.digest.clone()), config))),
            // Blobs were pruned under the name: fall back to the registry.
            Err(e) => {
                tracing::debug!(image = %image.name, error = %e, "local image unusable");
                Ok(None)
            }
        }
    }

    /// A `hint:` line for a base image the registry could not give, when
    /// the local store has that name: used with `--pull`, or stored for
    /// another platform. Empty otherwise.
    pub(crate) fn local_image_hint(&self, reference: &Reference, platform: &Platform, pull: bool) -> String {
        if reference.digest.is_some() {
            return String::new();
        }
        let Ok(Some(image)) = self.state.db.local_image(&reference.to_string()) else { return String::new() };
        let name = image.familiar_name();
        if Platform::parse(&image.platform).is_ok_and(|p| platform.matches(&p)) {
            if pull {
                return format!("\nhint: `{name}` is a local image; build without --pull to use it");
            }
            return String::new();
        }
        format!(
            "\nhint: the local image `{name}` is for {}, not {platform}; build it for {platform} or pass --platform {}",
            image.platform, image.platform
        )
    }

    /// Brings a local image's root filesystem into snapshots (unpacking
    /// layer blobs from the content store where no snapshot has them yet)
    /// and returns the top snapshot (`None` for an image without layers).
    pub async fn image_rootfs(
        self: &Arc<Self>,
        image: &LocalImage,
        opts: SolveOptions,
    ) -> Result<Option<String>, SolveError> {
        let image_err = |message: String| SolveError::Image { reference: image.name.clone(), message };
        let reference = Reference::parse(&image.name).map_err(|e| image_err(crate::chain(&e)))?;
        let pinned = reference.with_digest(image.manifest.digest.clone());
        let mut graph = Graph::new();
        let src = ImageSource { reference: pinned.to_string(), platform: image.platform.clone() };
        let meta = VertexMeta { name: format!("[internal] load {}", image.familiar_name()), ..VertexMeta::default() };
        let root = graph.add(Op::Image(src), Vec::new(), meta).map_err(|e| image_err(e.to_string()))?;
        let solved = self.solve(Arc::new(graph), &[root], opts).await?;
        Ok(solved.first().and_then(|s| s.snapshot()).map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest_char: char, config_char: char) -> LocalImage {
        LocalImage {
            name: name.to_string(),
            manifest: Descriptor::new(
                "application/vnd.oci.image.manifest.v1+json",
                Digest::parse(&format!("sha256:{}", digest_char.to_string().repeat(64))).unwrap(),
                100,
            ),
            config_digest: format!("sha256:{}", config_char.to_string().repeat(64)),
            platform: "linux/amd64".into(),
            size: 1234,
            created: Some("2026-01-01T00:00:00Z".into()),
            tagged: 5,
        }
    }

    #[test]
    fn names_are_stored_moved_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db")).unwrap();
        let a = image("docker.io/library/app:latest", 'a', 'c');
        db.put_local_image(&a).unwrap();
        assert_eq!(db.local_image("docker.io/library/app:latest").unwrap(), Some(a.clone()));
        let b = image("docker.io/library/app:latest", 'b', 'd');
        db.put_local_image(&b).unwrap();
        assert_eq!(db.local_images().unwrap(), vec![b]);
        assert!(db.remove_local_image("docker.io/library/app:latest").unwrap());
        assert!(!db.remove_local_image("docker.io/library/app:latest").unwrap());
        assert!(db.local_images().unwrap().is_empty());
    }

    #[test]
    fn rows_with_bad_digests_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.db")).unwrap();
        db.conn()
            .execute(
                &format!("INSERT INTO local_images ({COLUMNS}) VALUES ('x', 'sha256:zz', 'm', 1, 'c', 'p', 1, NULL, 0)"),
                [],
            )
            .unwrap();
        assert_eq!(db.local_image("x").unwrap(), None);
        assert!(db.local_images().unwrap().is_empty());
    }

    #[test]
    fn names_are_normalised_and_digests_refused() {
        assert_eq!(normalise_name("app").unwrap().to_string(), "docker.io/library/app:latest");
        assert_eq!(normalise_name("127.0.0.1:5000/x/y:1").unwrap().to_string(), "127.0.0.1:5000/x/y:1");
        let pinned = format!("app@sha256:{}", "a".repeat(64));
        assert!(matches!(normalise_name(&pinned), Err(ImageStoreError::DigestName(_))));
        assert!(matches!(normalise_name("UPPER"), Err(ImageStoreError::Name { .. })));
    }

    #[test]
    fn id_prefixes_match_config_or_manifest_digests_once() {
        let all = vec![
            image("docker.io/library/a:1", 'a', 'c'),
            image("docker.io/library/a:2", 'a', 'c'),
            image("docker.io/library/b:1", 'b', 'd'),
        ];
        assert_eq!(match_id_prefix(&all, "cccc", "cccc").unwrap().manifest.digest.hex(), "a".repeat(64));
        assert_eq!(match_id_prefix(&all, "bbbb", "bbbb").unwrap().name, "docker.io/library/b:1");
        assert!(matches!(match_id_prefix(&all, "eeee", "eeee"), Err(ImageStoreError::NotFound(_))));
        let mut clash = all.clone();
        clash.push(image("docker.io/library/c:1", 'e', 'a'));
        let err = match_id_prefix(&clash, "aaaa", "aaaa").unwrap_err();
        assert!(matches!(err, ImageStoreError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains("a:1") && err.to_string().contains("c:1"), "{err}");
    }

    #[test]
    fn id_prefixes_need_four_hex_digits() {
        assert_eq!(id_prefix("sha256:abcd"), Some("abcd"));
        assert_eq!(id_prefix("abc"), None);
        assert_eq!(id_prefix("app"), None);
        assert_eq!(id_prefix(&"f".repeat(65)), None);
    }
}
