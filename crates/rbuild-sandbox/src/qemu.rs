//! Foreign-architecture RUN steps through QEMU user emulation.
//!
//! A RUN for another architecture works only if binfmt_misc has a handler
//! for its ELF machine with the `F` (fix binary) flag: the kernel then holds
//! the interpreter open, so it runs inside the sandbox's root without a QEMU
//! binary in the image. This is checked before starting, with a clear error.

use std::io::Read;
use std::path::Path;

/// Why a foreign architecture cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error("architecture `{0}` is not known to rbuild")]
    UnknownArch(String),
    #[error(
        "cannot run `{arch}` binaries on this `{host}` host: no QEMU binfmt_misc handler with the `F` flag is registered in `{dir}`\nhint: on Debian `apt-get install qemu-user-static binfmt-support` (handlers are registered with the F flag), or `docker run --privileged --rm tonistiigi/binfmt --install {arch}`"
    )]
    NoHandler {
        arch: String,
        host: String,
        dir: String,
    },
}

/// ELF `e_machine` of an OCI architecture name.
fn elf_machine(arch: &str) -> Option<u16> {
    Some(match arch {
        "amd64" | "x86_64" => 62,
        "386" | "i386" => 3,
        "arm64" | "aarch64" => 183,
        "arm" => 40,
        "ppc64le" | "ppc64" => 21,
        "s390x" => 22,
        "riscv64" => 243,
        "mips64le" | "mips64" | "mipsle" | "mips" => 8,
        "loong64" => 258,
        _ => return None,
    })
}

/// The host's architecture as an OCI name.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Whether the host runs `arch` natively (same arch, or a 32-bit sibling).
pub fn is_native(arch: &str) -> bool {
    let host = host_arch();
    let arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    arch == host || (host == "amd64" && arch == "386")
}

/// Checks that `arch` can run here, natively or through a binfmt handler
/// registered in `binfmt_dir` (normally `/proc/sys/fs/binfmt_misc`).
pub fn check_arch(arch: &str, binfmt_dir: &Path) -> Result<(), EmulationError> {
    if is_native(arch) {
        return Ok(());
    }
    let machine = elf_machine(arch).ok_or_else(|| EmulationError::UnknownArch(arch.to_string()))?;
    let none = || EmulationError::NoHandler {
        arch: arch.to_string(),
        host: host_arch().to_string(),
        dir: binfmt_dir.display().to_string(),
    };
    let entries = std::fs::read_dir(binfmt_dir).map_err(|_| none())?;
    for e in entries.flatten() {
        let name = e.file_name();
        if name == "register" || name == "status" {
            continue;
        }
        let mut text = String::new();
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        if f.take(8192).read_to_string(&mut text).is_err() {
            continue;
        }
        if handler_matches(&text, machine) {
            return Ok(());
        }
    }
    Err(none())
}

/// Parses one binfmt_misc entry: enabled, flag `F`, and an ELF magic whose
/// `e_machine` (bytes 18-19, either endianness) is `machine`.
pub fn handler_matches(entry: &str, machine: u16) -> bool {
    let mut enabled = false;
    let mut fix = false;
    let mut magic = None;
    for line in entry.lines() {
        let line = line.trim();
        if line == "enabled" {
            enabled = true;
        } else if let Some(f) = line.strip_prefix("flags:") {
            fix = f.contains('F');
        } else if let Some(m) = line.strip_prefix("magic ") {
            magic = Some(m.trim().to_string());
        }
    }
    let Some(magic) = magic else { return false };
    let bytes: Vec<u8> = (0..magic.len() / 2)
        .filter_map(|i| {
            magic
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    if bytes.len() < 20 || bytes[..4] != [0x7f, b'E', b'L', b'F'] {
        return false;
    }
    let le = u16::from_le_bytes([bytes[18], bytes[19]]);
    let be = u16::from_be_bytes([bytes[18], bytes[19]]);
    let big_endian = bytes.get(5) == Some(&2);
    enabled && fix && (if big_endian { be } else { le }) == machine
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn binfmt_entries() {
        assert!(handler_matches(AARCH64, 183));
        assert!(!handler_matches(AARCH64, 40));
        assert!(
            !handler_matches(&AARCH64.replace("POCF", "POC"), 183),
            "F flag required"
        );
        assert!(!handler_matches(
            &AARCH64.replace("enabled", "disabled"),
            183
        ));
    }

    #[test]
    fn missing_handler_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            AARCH64.replace("POCF", "OC"),
        )
        .expect("write");
        let foreign = if host_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let err = check_arch(foreign, dir.path()).expect_err("no F flag");
        assert!(err.to_string().contains("qemu-user-static"), "{err}");
        assert!(check_arch(host_arch(), dir.path()).is_ok());
        if host_arch() == "amd64" {
            std::fs::write(dir.path().join("qemu-aarch64"), AARCH64).expect("write");
            assert!(check_arch("arm64", dir.path()).is_ok());
        }
    }
}
