//! The TUN device and its queues: the only code in [`crate::tun`] that makes syscalls.

use super::gso::{self, GsoError};
use super::vnet::{self, VnetHeader};
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

const TUN_PATH: &CStr = c"/dev/net/tun";
/// Most queues a TUN device takes (`MAX_TAP_QUEUES` in `drivers/net/tun.c`).
pub const MAX_QUEUES: usize = 256;
/// Scratch buffer length [`TunQueue::read_packets`] needs: the virtio-net header and the
/// largest IP packet (an IPv6 header plus a 64 KB payload).
pub const SCRATCH_LEN: usize = vnet::HEADER_LEN + 40 + 65_535;

/// Which offloads to ask the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offloads {
    /// TCP segmentation offload (`TUN_F_TSO4 | TUN_F_TSO6`): reads carry TCP frames of up
    /// to 64 KB, which warpline splits.
    pub tcp: bool,
    /// UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`, Linux 6.2+): reads carry UDP
    /// GSO frames.
    pub udp: bool,
}

impl Offloads {
    /// Plain per-packet TUN: no virtio-net header, the kernel segments and checksums.
    pub const NONE: Self = Self {
        tcp: false,
        udp: false,
    };
    /// TSO and USO, as far as the kernel accepts them.
    pub const ALL: Self = Self {
        tcp: true,
        udp: true,
    };

    fn any(self) -> bool {
        self.tcp || self.udp
    }
}

/// Why a TUN device could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// `/dev/net/tun` is missing: the `tun` module is not loaded or the device node is
    /// not there (containers need `--device /dev/net/tun`).
    #[error("/dev/net/tun not found: load the tun module (modprobe tun) or expose the device node")]
    NoDevice,
    /// The caller lacks `CAP_NET_ADMIN` (in the network namespace's user namespace).
    #[error("{operation} on /dev/net/tun not permitted: run with CAP_NET_ADMIN")]
    NotPermitted {
        /// The step that failed.
        operation: &'static str,
    },
    /// The name is empty, longer than 15 bytes, or contains '/', whitespace or NUL.
    #[error(
        "invalid TUN name {name:?}: 1-15 bytes, no '/', whitespace or NUL (\"%d\" picks a number)"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Zero queues, or more than [`MAX_QUEUES`].
    #[error("invalid queue count {queues}: 1 to {MAX_QUEUES}")]
    InvalidQueues {
        /// The count given.
        queues: usize,
    },
    /// An interface of that name exists already (a TUN device or another kind).
    #[error("interface {name:?} already exists: pick another name or remove it")]
    AlreadyExists {
        /// The name given.
        name: String,
    },
    /// Any other failure of a syscall.
    #[error("{operation} for TUN device {name:?} failed: {source}")]
    Io {
        /// The step that failed.
        operation: &'static str,
        /// The device name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn check_name(name: &str) -> Result<(), TunError> {
    let valid = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == '\0' || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(TunError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// A multi-queue TUN device. Hand its queues to workers with [`Tun::into_queues`]; the
/// kernel removes the device when the last queue is closed.
#[derive(Debug)]
pub struct Tun {
    name: String,
    offloads: Offloads,
    vnet_hdr: bool,
    queues: Vec<TunQueue>,
}

impl Tun {
    /// Creates the TUN device `name` (in the calling thread's network namespace) with
    /// `queues` queues, each a non-blocking descriptor.
    ///
    /// With any offload asked for, the queues carry virtio-net headers and the kernel is
    /// asked for checksum offload plus TSO and/or USO; USO is dropped silently when the
    /// kernel refuses it, and if it refuses offloads entirely the device is recreated in
    /// plain per-packet mode (logged at info). [`Tun::offloads`] says what was granted.
    /// A `%d` in `name` lets the kernel pick a number; [`Tun::name`] is the result. Fails
    /// with [`TunError::AlreadyExists`] rather than attaching to an existing device.
    pub fn create(name: &str, queues: usize, offloads: Offloads) -> Result<Self, TunError> {
        check_name(name)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(TunError::InvalidQueues { queues });
        }
        if offloads.any() {
            let (first, actual) = open_queue(name, true, true)?;
            match set_offloads(&first, offloads) {
                Ok(granted) => return Self::finish(actual, first, queues, granted, true),
                Err(error) => {
                    tracing::info!(
                        device = %actual,
                        %error,
                        "TUN offloads refused; falling back to plain per-packet TUN"
                    );
                    // Closing the only queue removes the device; recreate it plainly.
                    drop(first);
                }
            }
        }
        let (first, actual) = open_queue(name, false, true)?;
        Self::finish(actual, first, queues, Offloads::NONE, false)
    }

    fn finish(
        name: String,
        first: OwnedFd,
        queues: usize,
        offloads: Offloads,
        vnet_hdr: bool,
    ) -> Result<Self, TunError> {
        let mut all = Vec::with_capacity(queues);
        let udp_gso = vnet_hdr && offloads.udp;
        all.push(TunQueue::new(first, vnet_hdr, udp_gso));
        for _ in 1..queues {
            let (fd, _) = open_queue(&name, vnet_hdr, false)?;
            all.push(TunQueue::new(fd, vnet_hdr, udp_gso));
        }
        Ok(Self {
            name,
            offloads,
            vnet_hdr,
            queues: all,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offloads the kernel granted ([`Offloads::NONE`] in plain mode).
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Whether the queues carry virtio-net headers (offload mode).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The queues, in creation order.
    pub fn queues_mut(&mut self) -> &mut [TunQueue] {
        &mut self.queues
    }

    /// Gives up the device handle and returns its queues, one per worker.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }
}

/// Opens one queue of `name`; `exclusive` makes the kernel refuse an existing device.
/// Returns the descriptor and the device's actual name.
fn open_queue(name: &str, vnet_hdr: bool, exclusive: bool) -> Result<(OwnedFd, String), TunError> {
    // SAFETY: the path is a NUL-terminated C string; the result is checked below.
    let raw = unsafe {
        libc::open(
            TUN_PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        let source = io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => TunError::NoDevice,
            Some(libc::EPERM | libc::EACCES) => TunError::NotPermitted { operation: "open" },
            _ => TunError::Io {
                operation: "open /dev/net/tun",
                name: name.to_owned(),
                source,
            },
        });
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if exclusive {
        flags |= libc::IFF_TUN_EXCL;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `ifr` is; the name is
    // NUL-terminated because check_name kept it under IFNAMSIZ bytes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EBUSY) if exclusive => TunError::AlreadyExists {
                name: name.to_owned(),
            },
            // An interface of that name that is not a TUN device.
            Some(libc::EINVAL) if exclusive && interface_exists(name) => TunError::AlreadyExists {
                name: name.to_owned(),
            },
            Some(libc::EPERM | libc::EACCES) => TunError::NotPermitted {
                operation: "TUNSETIFF",
            },
            _ => TunError::Io {
                operation: "TUNSETIFF",
                name: name.to_owned(),
                source: error,
            },
        });
    }
    let actual: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((fd, String::from_utf8_lossy(&actual).into_owned()))
}

fn interface_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c_name` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::if_nametoindex(c_name.as_ptr()) != 0 }
}

/// Sets the virtio-net header size and asks for offloads, USO first if wanted, then
/// without it. Returns what was granted.
fn set_offloads(fd: &OwnedFd, wanted: Offloads) -> Result<Offloads, io::Error> {
    let size = vnet::HEADER_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points at `size`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let tso = if wanted.tcp {
        libc::TUN_F_TSO4 | libc::TUN_F_TSO6
    } else {
        0
    };
    let base = libc::TUN_F_CSUM | tso;
    let uso = base | libc::TUN_F_USO4 | libc::TUN_F_USO6;
    let attempts: &[(libc::c_uint, bool)] = if wanted.udp {
        &[(uso, true), (base, false)]
    } else {
        &[(base, false)]
    };
    let mut last = io::Error::other("no attempt");
    for &(bits, uso) in attempts {
        // SAFETY: TUNSETOFFLOAD takes the flags by value as the third argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, bits as libc::c_ulong) } == 0 {
            return Ok(Offloads {
                tcp: wanted.tcp,
                udp: uso,
            });
        }
        last = io::Error::last_os_error();
    }
    Err(last)
}

/// Counters of one queue, for drop accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames read from the kernel.
    pub frames: u64,
    /// IP packets handed out (more than `frames` when GSO frames were split).
    pub packets: u64,
    /// Frames dropped because they were malformed (see `last_error`).
    pub dropped: u64,
    /// The reason for the latest drop.
    pub last_error: Option<QueueDrop>,
}

/// Why a queue dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueDrop {
    /// The virtio-net header was unusable.
    Vnet(vnet::VnetError),
    /// The frame could not be segmented or checksummed.
    Gso(GsoError),
}

impl fmt::Display for QueueDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueDrop::Vnet(error) => error.fmt(f),
            QueueDrop::Gso(error) => error.fmt(f),
        }
    }
}

/// One queue of a TUN device: a non-blocking descriptor, pollable through [`AsFd`].
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    vnet_hdr: bool,
    /// The kernel granted USO, so it also takes `GSO_UDP_L4` frames on writes.
    udp_gso: bool,
    stats: QueueStats,
}

impl TunQueue {
    fn new(fd: OwnedFd, vnet_hdr: bool, udp_gso: bool) -> Self {
        Self {
            fd,
            vnet_hdr,
            udp_gso,
            stats: QueueStats::default(),
        }
    }

    /// A second handle on the same queue (a duplicated descriptor), so another thread can
    /// write packets to the kernel through it; writes are whole packets, so they never
    /// interleave. Its counters start at zero.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self::new(self.fd.try_clone()?, self.vnet_hdr, self.udp_gso))
    }

    /// Whether frames on this queue carry virtio-net headers.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Whether writes may carry UDP GSO frames (`GSO_UDP_L4`): the device was granted USO
    /// (Linux 6.2+), which is also what lets the kernel take such frames from us.
    pub fn accepts_udp_gso(&self) -> bool {
        self.udp_gso
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Reads one frame (one `read`, up to 64 KB plus header) into `scratch` and hands
    /// each IP packet in it to `out`: the frame itself, or, for a GSO frame, its
    /// MTU-sized segments, split in place (see [`gso`]) with complete checksums. Returns
    /// how many packets were handed out: 0 when a malformed frame was dropped (counted in
    /// [`TunQueue::stats`]). Nothing is allocated.
    ///
    /// `scratch` must hold at least [`SCRATCH_LEN`] bytes. Errors with
    /// [`io::ErrorKind::WouldBlock`] when no frame is waiting.
    pub fn read_packets(
        &mut self,
        scratch: &mut [u8],
        out: impl FnMut(&mut [u8]),
    ) -> io::Result<usize> {
        if scratch.len() < SCRATCH_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN read scratch of {} bytes, need {SCRATCH_LEN}",
                    scratch.len()
                ),
            ));
        }
        let len = loop {
            // SAFETY: `scratch` is writable for its whole length.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                )
            };
            if read >= 0 {
                break read as usize;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        };
        self.stats.frames += 1;
        let frame = &mut scratch[..len];
        let result = if self.vnet_hdr {
            match VnetHeader::parse(frame) {
                Ok(header) => gso::segment(&mut frame[vnet::HEADER_LEN..], &header, out)
                    .map_err(QueueDrop::Gso),
                Err(error) => Err(QueueDrop::Vnet(error)),
            }
        } else {
            let mut out = out;
            out(frame);
            Ok(1)
        };
        match result {
            Ok(count) => {
                self.stats.packets += count as u64;
                Ok(count)
            }
            Err(reason) => {
                self.stats.dropped += 1;
                self.stats.last_error = Some(reason);
                Ok(0)
            }
        }
    }

    /// Writes one complete IP packet (checksums filled in) to the kernel, behind an
    /// all-zero virtio-net header in offload mode. Errors with
    /// [`io::ErrorKind::WouldBlock`] when the queue is full.
    pub fn write_packet(&self, packet: &[u8]) -> io::Result<()> {
        if self.vnet_hdr {
            self.write_with_header(&VnetHeader::NONE, packet)
        } else {
            self.write_iov(&[io::IoSlice::new(packet)], packet.len())
        }
    }

    /// Writes a frame with the given virtio-net header: a GSO frame of up to 64 KB the
    /// kernel segments itself, or a packet with a partial checksum. Offload mode only.
    pub fn write_with_header(&self, header: &VnetHeader, packet: &[u8]) -> io::Result<()> {
        if !self.vnet_hdr {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "virtio-net header on a plain TUN queue",
            ));
        }
        let bytes = header.to_bytes();
        self.write_iov(
            &[io::IoSlice::new(&bytes), io::IoSlice::new(packet)],
            bytes.len() + packet.len(),
        )
    }

    fn write_iov(&self, iov: &[io::IoSlice<'_>], len: usize) -> io::Result<()> {
        loop {
            // SAFETY: IoSlice is ABI-compatible with iovec, and each slice is readable for
            // its length during the call.
            let written =
                unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr().cast(), iov.len() as _) };
            if written >= 0 {
                return if written as usize == len {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("TUN took {written} of {len} bytes"),
                    ))
                };
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Waits up to `timeout` for a frame to read; `Ok(false)` on timeout.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `pfd` is one valid pollfd for the call's duration.
            let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
            if ready >= 0 {
                return Ok(ready > 0);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_counts_are_refused_before_any_syscall() {
        for name in ["", "wl1234567890abcd", "a/b", "a b", "a\0b", ".", ".."] {
            assert!(
                matches!(
                    Tun::create(name, 1, Offloads::NONE),
                    Err(TunError::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
        for queues in [0, MAX_QUEUES + 1] {
            assert!(matches!(
                Tun::create("wlok", queues, Offloads::ALL),
                Err(TunError::InvalidQueues { .. })
            ));
        }
        let message = TunError::InvalidName {
            name: "x".repeat(16),
        }
        .to_string();
        assert!(message.contains("1-15 bytes"), "{message}");
    }

    /// The unprivileged path (root runs the real device tests in `tests/tun_*.rs`).
    #[test]
    fn unprivileged_create_says_not_permitted() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            println!("skipping: runs only without root");
            return;
        }
        match Tun::create("wlperm", 1, Offloads::ALL) {
            Err(TunError::NotPermitted { operation }) => assert_eq!(operation, "TUNSETIFF"),
            Err(TunError::NoDevice) => {}
            other => panic!("{other:?}"),
        }
    }
}
