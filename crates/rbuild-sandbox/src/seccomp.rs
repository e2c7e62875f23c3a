//! A small seccomp filter for RUN steps, in the spirit of Docker's default
//! profile: with Docker's capability set most dangerous calls already fail,
//! but some need no capability and expose kernel attack surface. Those are
//! refused with `EPERM`: new namespaces (`unshare`, `setns`, `clone` with
//! namespace flags; `clone3` gets `ENOSYS` so libc falls back to `clone`,
//! whose flags can be inspected), the kernel keyring, `userfaultfd`,
//! `perf_event_open`, `bpf`, `kexec_*`, `open_by_handle_at`. The x32 ABI is
//! refused; on x86-64 the i386 ABI gets the same rules with its numbers.
//! Not installed with `--security=insecure`.

use libc::sock_filter;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const NS_FLAGS: u32 = 0x7E02_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | (e as u32 & 0xffff)
}

/// Syscall numbers of one ABI.
struct Table {
    arch: u32,
    clone: u32,
    clone3: u32,
    deny: &'static [u32],
    x32_bit: bool,
}

/// The denied calls in the build target's own numbering (libc's constants);
/// the x86-64 table also lists the i386 numbers separately.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NATIVE_DENY: &[u32] = &[
    libc::SYS_unshare as u32,
    libc::SYS_setns as u32,
    libc::SYS_keyctl as u32,
    libc::SYS_add_key as u32,
    libc::SYS_request_key as u32,
    libc::SYS_userfaultfd as u32,
    libc::SYS_perf_event_open as u32,
    libc::SYS_bpf as u32,
    libc::SYS_kexec_load as u32,
    libc::SYS_kexec_file_load as u32,
    libc::SYS_open_by_handle_at as u32,
];

#[cfg(target_arch = "x86_64")]
const TABLES: &[Table] = &[
    Table {
        arch: 0xC000_003E, // AUDIT_ARCH_X86_64
        clone: libc::SYS_clone as u32,
        clone3: 435,
        deny: NATIVE_DENY,
        x32_bit: true,
    },
    Table {
        arch: 0x4000_0003, // AUDIT_ARCH_I386
        clone: 120,
        clone3: 435,
        // unshare, setns, keyctl, add_key, request_key, userfaultfd,
        // perf_event_open, bpf, kexec_load, open_by_handle_at
        deny: &[310, 346, 288, 286, 287, 374, 336, 357, 283, 342],
        x32_bit: false,
    },
];

#[cfg(target_arch = "aarch64")]
const TABLES: &[Table] = &[Table {
    arch: 0xC000_00B7, // AUDIT_ARCH_AARCH64
    clone: libc::SYS_clone as u32,
    clone3: 435,
    deny: NATIVE_DENY,
    x32_bit: false,
}];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TABLES: &[Table] = &[];

/// The rules for one ABI; every path ends in a return.
fn block(t: &Table) -> Vec<sock_filter> {
    let mut p = vec![stmt(LD_W_ABS, OFF_NR)];
    if t.x32_bit {
        p.push(jump(JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(RET_K, errno(libc::ENOSYS)));
    }
    p.push(jump(JEQ_K, t.clone3, 0, 1));
    p.push(stmt(RET_K, errno(libc::ENOSYS)));
    for nr in t.deny {
        p.push(jump(JEQ_K, *nr, 0, 1));
        p.push(stmt(RET_K, errno(libc::EPERM)));
    }
    p.push(jump(JEQ_K, t.clone, 1, 0));
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(LD_W_ABS, OFF_ARG0_LO));
    p.push(jump(JSET_K, NS_FLAGS, 0, 1));
    p.push(stmt(RET_K, errno(libc::EPERM)));
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// The whole program: dispatch on the architecture, then its block;
/// unknown architectures are allowed (nothing to match them against).
pub fn program() -> Vec<sock_filter> {
    let mut p = Vec::new();
    for t in TABLES {
        let b = block(t);
        p.push(stmt(LD_W_ABS, OFF_ARCH));
        // Blocks are a few dozen instructions: the offset fits in a u8.
        p.push(jump(
            JEQ_K,
            t.arch,
            0,
            u8::try_from(b.len()).unwrap_or(u8::MAX),
        ));
        p.extend(b);
    }
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// Installs the filter on the calling thread (after `no_new_privs`).
pub fn install() -> Result<(), std::io::Error> {
    let prog = program();
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(std::io::Error::other)?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const fprog,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_branch_stays_inside_the_program() {
        let p = program();
        assert!(p.len() < 200);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                // a jump: both targets must exist
                assert!(
                    i + 1 + usize::from(ins.jt) < p.len(),
                    "jt out of range at {i}"
                );
                assert!(
                    i + 1 + usize::from(ins.jf) < p.len(),
                    "jf out of range at {i}"
                );
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(RET_K));
    }
}
