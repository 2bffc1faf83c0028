//! AF_XDP sockets: UMEM, the four rings, bind, wakeups and statistics.
//!
//! A thin layer of our own over the syscalls (`socket`, `setsockopt`,
//! `mmap`, `bind`, `sendto`, `poll`), written from the kernel's AF_XDP
//! documentation (Documentation/networking/af_xdp.rst). What it guarantees in
//! types: a UMEM frame has exactly one owner ([`Frame`] and [`Packet`] are
//! not `Clone`; rings take and give them by value), batch calls never
//! allocate, and frame bytes are reached only through the owning handle.
//!
//! # Why not an existing crate
//! Compared before writing this (facts from their docs):
//! - `xsk-rs`: wraps libxdp/libbpf, so it builds C and links libbpf; it has
//!   shared UMEM, but its frame descriptors are plain values the caller must
//!   not reuse (its docs list the rules: ownership is by convention, not type).
//! - `afxdp` (AFXDP-rs): wraps libbpf through `libbpf-sys` (a C build), with
//!   an API its author describes as still changing.
//! - `s2n-quic-xdp`: pure Rust with a well-tested ring cursor (a model for
//!   ours), but its IO side is built around `s2n-quic-core`'s traits and
//!   s2n-quic's release cadence.
//! - `xdp` (Quilkin's): pure Rust with shared UMEM, but by its own words
//!   early days and shaped by one project's needs.
//! - libxdp/libbpf bindings directly: a C toolchain at build time and a C
//!   library at run time, which the self-contained binaries must avoid.
//!
//! What warpline needs is small (aligned UMEM, four rings, copy/zero-copy bind
//! with fallback, `XDP_SHARED_UMEM` across the WAN and LAN interfaces of a
//! queue, need_wakeup, `XDP_STATISTICS`), so a few hundred lines we test
//! ourselves — ring bookkeeping against a model without a kernel, and the
//! rest in network namespaces — cost less than adapting any of the above.

mod ring;
mod rings;
mod socket;
mod sys;
mod umem;

use std::io;

pub use rings::{CompletionRing, FillRing, RxRing, TxRing};
pub use socket::{BindMode, BoundMode, SocketConfig, Statistics, XskSocket};
pub use umem::{Frame, Packet, Umem, UmemConfig, XDP_PACKET_HEADROOM};

/// What went wrong setting up AF_XDP, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The process lacks a capability AF_XDP needs.
    #[error(
        "{call}: permission denied; AF_XDP needs root or CAP_NET_RAW + CAP_NET_ADMIN \
         (and CAP_IPC_LOCK or a memlock limit above the UMEM size): {source}"
    )]
    NotPermitted {
        /// The failing call.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel could not pin the UMEM.
    #[error(
        "{call}: the UMEM exceeds the locked-memory limit; call raise_memlock_limit() at \
         start, run with CAP_IPC_LOCK, or raise `ulimit -l`: {source}"
    )]
    MemlockTooLow {
        /// The failing call.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// No interface with that index in this network namespace.
    #[error("AF_XDP bind: no interface with index {if_index} in this network namespace: {source}")]
    InterfaceNotFound {
        /// The interface index asked for.
        if_index: u32,
        /// The OS error.
        source: io::Error,
    },
    /// The bind was refused: typically a queue the interface does not have,
    /// a queue already taken by another socket, or an unsupported mode.
    #[error(
        "AF_XDP bind to interface {if_index} queue {queue} refused: {source}; check that the \
         queue exists (queue count mismatch?), that no other socket holds it, and that the \
         driver supports the requested mode (zero-copy needs driver support; use copy or auto)"
    )]
    BindRefused {
        /// The interface index.
        if_index: u32,
        /// The queue.
        queue: u32,
        /// The OS error.
        source: io::Error,
    },
    /// The UMEM's first socket failed to bind, so the UMEM cannot be used.
    #[error(
        "this UMEM's first socket failed to bind, so the UMEM has no registered socket to \
         share; create a new UMEM and bind again"
    )]
    UmemUnusable,
    /// A ring size that is not a power of two.
    #[error("{ring} = {size}: ring sizes must be powers of two")]
    InvalidRingSize {
        /// Which ring.
        ring: &'static str,
        /// The size given.
        size: u32,
    },
    /// A UMEM configuration the kernel would refuse.
    #[error("invalid UMEM configuration: {0}")]
    InvalidConfig(&'static str),
    /// The running kernel lacks a needed AF_XDP feature.
    #[error("kernel too old: {0}")]
    KernelTooOld(&'static str),
    /// Any other failing syscall.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The failing call.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl XskError {
    pub(crate) fn from_errno(call: &'static str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::NotPermitted { call, source },
            Some(libc::ENOBUFS | libc::ENOMEM) if call.contains("UMEM_REG") => {
                Self::MemlockTooLow { call, source }
            }
            Some(libc::EAFNOSUPPORT) => {
                Self::KernelTooOld("no AF_XDP support (CONFIG_XDP_SOCKETS)")
            }
            _ => Self::Syscall { call, source },
        }
    }

    pub(crate) fn from_bind(if_index: u32, queue: u32, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENODEV) => Self::InterfaceNotFound { if_index, source },
            Some(libc::EPERM | libc::EACCES) => Self::NotPermitted {
                call: "bind(AF_XDP)",
                source,
            },
            _ => Self::BindRefused {
                if_index,
                queue,
                source,
            },
        }
    }
}

/// Raises `RLIMIT_MEMLOCK` as far as allowed (to infinity with
/// `CAP_SYS_RESOURCE`, else the soft limit to the hard one) and returns the
/// new soft limit in bytes (`u64::MAX` for unlimited). Call once at start:
/// the kernel pins UMEM pages against this limit and refuses with `ENOBUFS`.
pub fn raise_memlock_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return Ok(u64::MAX);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if raised.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        raised.rlim_cur
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn errors_name_the_fix() {
        assert!(matches!(
            XskError::from_errno("setsockopt(XDP_UMEM_REG)", os(libc::ENOBUFS)),
            XskError::MemlockTooLow { .. }
        ));
        assert!(matches!(
            XskError::from_errno("socket(AF_XDP)", os(libc::EPERM)),
            XskError::NotPermitted { .. }
        ));
        assert!(matches!(
            XskError::from_bind(3, 0, os(libc::ENODEV)),
            XskError::InterfaceNotFound { if_index: 3, .. }
        ));
        assert!(matches!(
            XskError::from_bind(3, 7, os(libc::EINVAL)),
            XskError::BindRefused { queue: 7, .. }
        ));
        let message =
            XskError::from_errno("setsockopt(XDP_UMEM_REG)", os(libc::ENOBUFS)).to_string();
        assert!(message.contains("raise_memlock_limit"), "{message}");
    }

    #[test]
    fn memlock_limit_can_be_raised_to_at_least_its_old_value() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `before` is a valid out-pointer for the call.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut before) };
        assert_eq!(rc, 0);
        let raised = raise_memlock_limit().expect("raise within the hard limit");
        assert!(raised >= before.rlim_cur || raised == u64::MAX);
    }
}
