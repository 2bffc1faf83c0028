//! Host probes that need a syscall: the kernel release, a tiny BPF program (does the BPF
//! syscall work, and does the JIT compile it?), an `AF_XDP` socket, process limits and
//! capabilities.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain bytes, valid when zeroed.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is a valid out-pointer for the call.
    if unsafe { libc::uname(&mut names) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = names
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What loading a two-instruction socket filter showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfProbe {
    /// The JIT compiled it (the kernel reports native code for it).
    pub jited: bool,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// Loads `r0 = 0; exit` as a socket filter, asks the kernel whether it was JIT-compiled,
/// and unloads it. Needs `CAP_BPF` (or unprivileged BPF).
pub fn probe_bpf() -> io::Result<BpfProbe> {
    // BPF_MOV64_IMM(BPF_REG_0, 0) and BPF_EXIT_INSN().
    let instructions: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]), 0x95];
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, then log and
    // version fields left zero. The kernel zero-extends a shorter attr.
    let mut attr = [0u64; 6];
    attr[0] = u64::from(BPF_PROG_TYPE_SOCKET_FILTER) | (2u64 << 32);
    attr[1] = instructions.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    let program = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: a successful BPF_PROG_LOAD returns a fresh descriptor we now own.
    let program = unsafe { OwnedFd::from_raw_fd(program) };
    // struct bpf_prog_info up to jited_prog_len (offset 16) and xlated_prog_len.
    let mut info = [0u64; 3];
    let mut attr = [0u64; 2];
    attr[0] = u64::from(program.as_raw_fd() as u32) | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let jited_prog_len = info[2] & 0xffff_ffff;
    Ok(BpfProbe {
        jited: jited_prog_len != 0,
    })
}

/// `bpf(cmd, attr, size)`; the pointers inside `attr` must be valid for the command.
fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<libc::c_int> {
    let size = std::mem::size_of_val(attr);
    // SAFETY: `attr` is a writable buffer of `size` bytes; the callers fill it with pointers
    // to live buffers of the lengths the command's fields say.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as libc::c_int)
    }
}

/// Opens and closes an `AF_XDP` socket: fails with `EAFNOSUPPORT` on kernels without
/// `CONFIG_XDP_SOCKETS`.
pub fn probe_af_xdp() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns; dropping it closes it.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    Ok(())
}

/// A resource limit, `None` meaning unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The soft limit, which the kernel enforces.
    pub soft: Option<u64>,
    /// The hard limit, up to which the process may raise the soft one.
    pub hard: Option<u64>,
}

/// This process's `RLIMIT_MEMLOCK`.
pub fn memlock_limit() -> io::Result<Limit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let finite = |value: libc::rlim_t| (value != libc::RLIM_INFINITY).then_some(value);
    Ok(Limit {
        soft: finite(limit.rlim_cur),
        hard: finite(limit.rlim_max),
    })
}

/// Capability numbers the checks look at (`<linux/capability.h>`).
pub mod cap {
    /// Network configuration: XDP attach, ethtool settings, MTU.
    pub const NET_ADMIN: u32 = 12;
    /// Raw sockets, AF_XDP among them.
    pub const NET_RAW: u32 = 13;
    /// Locked memory without `RLIMIT_MEMLOCK`.
    pub const IPC_LOCK: u32 = 14;
    /// The catch-all that also allows BPF on older kernels.
    pub const SYS_ADMIN: u32 = 21;
    /// Raising hard resource limits.
    pub const SYS_RESOURCE: u32 = 24;
    /// BPF programs and maps (kernel 5.8+).
    pub const BPF: u32 = 39;

    /// The name `setcap` and `capsh` use.
    pub fn name(cap: u32) -> &'static str {
        match cap {
            NET_ADMIN => "cap_net_admin",
            NET_RAW => "cap_net_raw",
            IPC_LOCK => "cap_ipc_lock",
            SYS_ADMIN => "cap_sys_admin",
            SYS_RESOURCE => "cap_sys_resource",
            BPF => "cap_bpf",
            _ => "cap_unknown",
        }
    }
}

/// This process's effective capabilities (`CapEff` in `/proc/self/status`) as a bit set.
pub fn effective_capabilities() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_cap_eff(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no CapEff line in /proc/self/status",
        )
    })
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_parsed() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn kernel_release_and_limits_are_readable() {
        assert!(
            kernel_release()
                .unwrap()
                .starts_with(|c: char| c.is_ascii_digit())
        );
        memlock_limit().unwrap();
        effective_capabilities().unwrap();
    }

    #[test]
    fn bpf_probe_loads_a_program_when_privileged() {
        let is_root = effective_capabilities().is_ok_and(|caps| caps & (1 << cap::SYS_ADMIN) != 0);
        match probe_bpf() {
            Ok(_) => {}
            Err(error) => assert!(!is_root, "root could not load a BPF program: {error}"),
        }
    }
}
