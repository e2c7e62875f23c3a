#![allow(dead_code, clippy::print_stderr)]
//! Test helpers: build trees from a tiny spec and describe trees as lines.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use rbuild_fileop::{CopyError, CopyOptions, CopyStats, copy};

/// Apply spec lines to `root`:
/// `d path [mode]`, `f path content [mode]`, `l path target`, `h path existing`.
pub fn build(root: &Path, spec: &[&str]) {
    for line in spec {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        let p = root.join(parts[1].trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        match parts[0] {
            "d" => {
                fs::create_dir_all(&p).unwrap();
                if let Some(m) = parts.get(2) {
                    fs::set_permissions(
                        &p,
                        fs::Permissions::from_mode(u32::from_str_radix(m, 8).unwrap()),
                    )
                    .unwrap();
                }
            }
            "f" => {
                fs::write(&p, parts.get(2).copied().unwrap_or("")).unwrap();
                if let Some(m) = parts.get(3) {
                    fs::set_permissions(
                        &p,
                        fs::Permissions::from_mode(u32::from_str_radix(m, 8).unwrap()),
                    )
                    .unwrap();
                }
            }
            "l" => symlink(parts[2], &p).unwrap(),
            "h" => fs::hard_link(root.join(parts[2].trim_start_matches('/')), &p).unwrap(),
            other => panic!("bad spec {other}"),
        }
    }
}

/// Every entry below `root`, sorted: `dir/`, `file=content`, `link->target`.
pub fn list(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut ents: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            out.push(format!(
                "{rel}->{}",
                fs::read_link(&p).unwrap().to_string_lossy()
            ));
        } else if md.is_dir() {
            out.push(format!("{rel}/"));
            walk(root, &p, out);
        } else {
            out.push(format!(
                "{rel}={}",
                fs::read_to_string(&p).unwrap_or_default()
            ));
        }
    }
}

pub fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

pub fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Owned strings from string literals.
pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Copies `sources` of `src_root` to `dest` under `dest_root` with the
/// Dockerfile defaults.
pub fn copy_dockerfile(src_root: &Path, sources: &[&str], dest_root: &Path, dest: &str) -> Result<CopyStats, CopyError> {
    copy(src_root, &s(sources), dest_root, dest, &CopyOptions::dockerfile())
}
