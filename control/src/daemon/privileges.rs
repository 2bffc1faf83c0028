//! Least privilege after setup: once the TUN exists, the hooks that bring the interface up
//! have run and the handshake socket is bound, the gateway keeps only the capabilities it
//! still uses and gives up every other one for good.
//!
//! Kept ([`RUNTIME_CAPABILITIES`]): `CAP_NET_ADMIN` (XDP attach, routes for `set`/`syncconf`,
//! tearing the interface down), `CAP_NET_RAW` (AF_XDP sockets), `CAP_BPF` (loading the
//! steering program and its maps), `CAP_IPC_LOCK` (UMEM outside the memlock limit). A root
//! process loses everything else (`CAP_SYS_ADMIN`, `CAP_DAC_OVERRIDE`, `CAP_SETUID`, ...)
//! from its effective, permitted and bounding sets, so not even its hooks' children can get
//! them back. Started without root (systemd's `User=` with `AmbientCapabilities=`), the sets
//! are already that small and this only confirms it.
//!
//! Capabilities belong to threads, and a new thread copies its creator's, so this runs in
//! the main thread before any other thread exists: the workers, the control socket and the
//! metrics server all start with the reduced sets.

use std::io;

/// Capability numbers from linux/capability.h.
const CAP_SETPCAP: u32 = 8;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_BPF: u32 = 39;

/// What the gateway keeps after setup, by name and number.
pub const RUNTIME_CAPABILITIES: [(&str, u32); 4] = [
    ("CAP_NET_ADMIN", CAP_NET_ADMIN),
    ("CAP_NET_RAW", CAP_NET_RAW),
    ("CAP_IPC_LOCK", CAP_IPC_LOCK),
    ("CAP_BPF", CAP_BPF),
];

/// The kept capabilities as a bit mask (bit `n` is capability `n`).
pub fn runtime_mask() -> u64 {
    RUNTIME_CAPABILITIES
        .iter()
        .fold(0, |mask, (_, cap)| mask | 1 << cap)
}

/// A thread's capability sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// Reduces this thread's capabilities to [`RUNTIME_CAPABILITIES`] (those of them it has), and
/// the bounding set too when it may change it (`CAP_SETPCAP`, i.e. when started as root).
/// Returns the sets it ends with.
pub fn keep_runtime_capabilities() -> io::Result<CapabilitySets> {
    let current = capabilities()?;
    let keep = runtime_mask();
    if current.effective & (1 << CAP_SETPCAP) != 0 {
        for cap in 0..=last_capability() {
            if keep & (1 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments touches no memory.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    let reduced = CapabilitySets {
        effective: current.permitted & keep,
        permitted: current.permitted & keep,
        // Ambient capabilities (how a service user's hooks get theirs) must stay inheritable.
        inheritable: current.inheritable & keep,
    };
    set_capabilities(reduced)?;
    capabilities()
}

/// This thread's capability sets (`capget`).
pub fn capabilities() -> io::Result<CapabilitySets> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two version-3 data entries into `data`, which has room for them,
    // and reads the header, both live and laid out as linux/capability.h declares them.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
    Ok(CapabilitySets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn set_capabilities(sets: CapabilitySets) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |set: u64| (set as u32, (set >> 32) as u32);
    let (effective, permitted, inheritable) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: effective.0,
            permitted: permitted.0,
            inheritable: inheritable.0,
        },
        Data {
            effective: effective.1,
            permitted: permitted.1,
            inheritable: inheritable.1,
        },
    ];
    // SAFETY: capset reads the header and two version-3 data entries, all live and laid out
    // as linux/capability.h declares them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`), 40 if unknown.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// The names of the capabilities in `mask`, for the log.
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|cap| mask & (1 << cap) != 0)
        .map(|cap| {
            RUNTIME_CAPABILITIES
                .iter()
                .find(|(_, number)| *number == cap)
                .map_or_else(|| format!("cap {cap}"), |(name, _)| (*name).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_set_is_the_four_the_unit_grants() {
        assert_eq!(runtime_mask(), 0x80_0000_7000);
        let unit = include_str!("../../../dist/systemd/warpline@.service");
        let granted = unit
            .lines()
            .find_map(|line| line.strip_prefix("AmbientCapabilities="))
            .unwrap();
        let mut unit_names: Vec<&str> = granted.split_whitespace().collect();
        let mut ours: Vec<&str> = RUNTIME_CAPABILITIES.iter().map(|(name, _)| *name).collect();
        unit_names.sort_unstable();
        ours.sort_unstable();
        assert_eq!(unit_names, ours, "the unit and the daemon disagree");
    }

    /// Capabilities are per thread: a thread of its own can drop them without touching the
    /// other tests.
    #[test]
    fn a_thread_keeps_only_the_runtime_set() {
        let (before, after, bounding) = std::thread::spawn(|| {
            let before = capabilities().unwrap();
            let after = keep_runtime_capabilities().unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let bounding = status
                .lines()
                .find_map(|line| line.strip_prefix("CapBnd:"))
                .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
                .unwrap();
            (before, after, bounding)
        })
        .join()
        .unwrap();
        assert_eq!(after.effective, before.permitted & runtime_mask());
        assert_eq!(after.permitted, after.effective);
        if before.effective & (1 << CAP_SETPCAP) != 0 {
            assert_eq!(bounding, runtime_mask(), "bounding set not reduced");
        }
    }

    #[test]
    fn reads_this_threads_sets() {
        let sets = capabilities().unwrap();
        assert_eq!(
            sets.effective & !sets.permitted,
            0,
            "effective within permitted"
        );
        assert_eq!(names(runtime_mask()).len(), 4);
    }
}
