//! Loads the XDP steering program (`ebpf/steer.c`, embedded by
//! `warpline-ebpf`) with aya, attaches it to an interface and fills its maps.
//!
//! The attachment is a BPF link owned by this process (aya creates one with
//! `bpf_link_create` on kernels that have it, 5.9+): when the process exits
//! or is killed, the kernel closes the link and the program is detached, so
//! a crashed gateway never leaves an interface steering into a dead socket.

use std::{
    net::IpAddr,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        HashMap, MapError, PerCpuArray, XskMap,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, Xdp, XdpMode},
};
pub use warpline_ebpf::Verdict;
use warpline_ebpf::{
    MAP_LAN_PREFIXES_V4, MAP_LAN_PREFIXES_V6, MAP_LISTEN_PORTS, MAP_VERDICTS, MAP_XSKS,
    PROGRAM_LAN, PROGRAM_PASS, PROGRAM_WAN, STEER_OBJECT,
};

use crate::lab::Netlink;

/// Which side of the gateway an interface is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Internet side: WireGuard transport data (type 4) to a listen port goes
    /// to AF_XDP; handshakes and everything else to the kernel.
    Wan,
    /// Tunnel side: packets to a tunnel prefix go to AF_XDP.
    Lan,
}

/// How to attach, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// In the driver; fails where the driver has no XDP support.
    Native,
    /// In the generic (skb) path: works everywhere, slower.
    Generic,
    /// Native where possible, generic otherwise.
    #[default]
    Auto,
}

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// In the generic path.
    Generic,
}

/// What went wrong loading or attaching, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// Missing privileges.
    #[error(
        "{what}: permission denied; loading XDP programs needs root or CAP_BPF + \
         CAP_NET_ADMIN (CAP_SYS_ADMIN on kernels before 5.8)"
    )]
    NotPermitted {
        /// What was being done.
        what: &'static str,
    },
    /// No such interface in this network namespace.
    #[error(
        "interface index {if_index} does not exist in this network namespace; check the name/index"
    )]
    InterfaceNotFound {
        /// The index asked for.
        if_index: u32,
    },
    /// The driver or kernel refused the attach mode.
    #[error(
        "attaching XDP in {mode:?} mode to interface {if_index} failed: {source} ({reason}); the \
         driver may lack native XDP (use generic or auto), or another XDP program is attached"
    )]
    ModeUnsupported {
        /// The mode tried.
        mode: AttachMode,
        /// The interface.
        if_index: u32,
        /// The kernel's reason, when it gave one.
        reason: String,
        /// aya's error.
        source: ProgramError,
    },
    /// More AF_XDP queues configured than the interface has.
    #[error(
        "interface {if_index} has {available} RX queues but {configured} were configured; \
         configure at most {available} or add queues (ethtool -L)"
    )]
    QueueCountMismatch {
        /// The interface.
        if_index: u32,
        /// Queues configured.
        configured: u32,
        /// Queues the interface has.
        available: u32,
    },
    /// The verifier rejected the program.
    #[error("the kernel verifier rejected {program}: {io_error}\nverifier log:\n{log}")]
    VerifierRejected {
        /// The program.
        program: &'static str,
        /// The syscall error.
        io_error: std::io::Error,
        /// The verifier's log.
        log: String,
    },
    /// The object failed to load (maps, BTF, relocation).
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// Another program error.
    #[error("XDP program {program}: {source}")]
    Program {
        /// The program.
        program: &'static str,
        /// aya's error.
        source: ProgramError,
    },
    /// A map update or read failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// aya's error.
        source: MapError,
    },
    /// Netlink failed while inspecting the interface.
    #[error("reading interface {if_index} over netlink: {source}")]
    Netlink {
        /// The interface.
        if_index: u32,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Per-verdict packet counts, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerdictCounts {
    counts: [u64; Verdict::ALL.len()],
}

impl VerdictCounts {
    /// Packets that got `verdict`.
    pub fn get(&self, verdict: Verdict) -> u64 {
        self.counts[verdict.slot() as usize]
    }

    /// All packets seen.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The steering program, loaded and attached to one interface. Dropping it
/// detaches the program; so does the process dying.
#[derive(Debug)]
pub struct Steering {
    ebpf: Ebpf,
    role: Role,
    mode: AttachedMode,
    if_index: u32,
    queue_count: u32,
}

impl Steering {
    /// Loads the program for `role` and attaches it to `if_index` (resolved
    /// in the calling thread's network namespace) for `queue_count` AF_XDP
    /// queues.
    pub fn attach(
        if_index: u32,
        role: Role,
        mode: AttachMode,
        queue_count: u32,
    ) -> Result<Self, SteerError> {
        let link = Netlink::open()
            .and_then(|mut netlink| netlink.link_by_index(if_index))
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENODEV) => SteerError::InterfaceNotFound { if_index },
                _ => SteerError::Netlink { if_index, source },
            })?;
        if queue_count == 0 || queue_count > link.rx_queues {
            return Err(SteerError::QueueCountMismatch {
                if_index,
                configured: queue_count,
                available: link.rx_queues,
            });
        }
        let program = match role {
            Role::Wan => PROGRAM_WAN,
            Role::Lan => PROGRAM_LAN,
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_XSKS, queue_count)
            .load(STEER_OBJECT)
            .map_err(|error| match &error {
                aya::EbpfError::MapError(MapError::CreateError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EPERM) =>
                {
                    SteerError::NotPermitted {
                        what: "creating BPF maps",
                    }
                }
                _ => SteerError::Load(error),
            })?;
        let mode = attach_program(&mut ebpf, program, if_index, mode)?;
        Ok(Self {
            ebpf,
            role,
            mode,
            if_index,
            queue_count,
        })
    }

    /// The role it steers for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Native or generic, as attached.
    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }

    /// The interface it is attached to.
    pub fn if_index(&self) -> u32 {
        self.if_index
    }

    /// Registers the AF_XDP socket for `queue`.
    pub fn set_socket(&mut self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), SteerError> {
        if queue >= self.queue_count {
            return Err(SteerError::QueueCountMismatch {
                if_index: self.if_index,
                configured: queue + 1,
                available: self.queue_count,
            });
        }
        let mut sockets = self.map::<XskMap<_>>(MAP_XSKS)?;
        sockets
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(|source| SteerError::Map {
                map: MAP_XSKS,
                source,
            })
    }

    /// Unregisters the socket of `queue`; its packets go to the kernel.
    pub fn clear_socket(&mut self, queue: u32) -> Result<(), SteerError> {
        let mut sockets = self.map::<XskMap<_>>(MAP_XSKS)?;
        sockets.unset(queue).map_err(|source| SteerError::Map {
            map: MAP_XSKS,
            source,
        })
    }

    /// Adds a UDP listen port (WAN role).
    pub fn add_listen_port(&mut self, port: u16) -> Result<(), SteerError> {
        let mut ports = self.map::<HashMap<_, u16, u8>>(MAP_LISTEN_PORTS)?;
        ports.insert(port, 1, 0).map_err(|source| SteerError::Map {
            map: MAP_LISTEN_PORTS,
            source,
        })
    }

    /// Removes a UDP listen port.
    pub fn remove_listen_port(&mut self, port: u16) -> Result<(), SteerError> {
        let mut ports = self.map::<HashMap<_, u16, u8>>(MAP_LISTEN_PORTS)?;
        ports.remove(&port).map_err(|source| SteerError::Map {
            map: MAP_LISTEN_PORTS,
            source,
        })
    }

    /// Adds a tunnel prefix (LAN role). Bits past `prefix_len` are ignored.
    pub fn add_prefix(&mut self, address: IpAddr, prefix_len: u8) -> Result<(), SteerError> {
        match address {
            IpAddr::V4(v4) => {
                let mut trie = self.map::<LpmTrie<_, [u8; 4], u8>>(MAP_LAN_PREFIXES_V4)?;
                trie.insert(&Key::new(u32::from(prefix_len.min(32)), v4.octets()), 1, 0)
                    .map_err(|source| SteerError::Map {
                        map: MAP_LAN_PREFIXES_V4,
                        source,
                    })
            }
            IpAddr::V6(v6) => {
                let mut trie = self.map::<LpmTrie<_, [u8; 16], u8>>(MAP_LAN_PREFIXES_V6)?;
                trie.insert(&Key::new(u32::from(prefix_len.min(128)), v6.octets()), 1, 0)
                    .map_err(|source| SteerError::Map {
                        map: MAP_LAN_PREFIXES_V6,
                        source,
                    })
            }
        }
    }

    /// Removes a tunnel prefix.
    pub fn remove_prefix(&mut self, address: IpAddr, prefix_len: u8) -> Result<(), SteerError> {
        match address {
            IpAddr::V4(v4) => {
                let mut trie = self.map::<LpmTrie<_, [u8; 4], u8>>(MAP_LAN_PREFIXES_V4)?;
                trie.remove(&Key::new(u32::from(prefix_len.min(32)), v4.octets()))
                    .map_err(|source| SteerError::Map {
                        map: MAP_LAN_PREFIXES_V4,
                        source,
                    })
            }
            IpAddr::V6(v6) => {
                let mut trie = self.map::<LpmTrie<_, [u8; 16], u8>>(MAP_LAN_PREFIXES_V6)?;
                trie.remove(&Key::new(u32::from(prefix_len.min(128)), v6.octets()))
                    .map_err(|source| SteerError::Map {
                        map: MAP_LAN_PREFIXES_V6,
                        source,
                    })
            }
        }
    }

    /// Packet counts per verdict, summed over CPUs.
    pub fn verdicts(&self) -> Result<VerdictCounts, SteerError> {
        let map = self.ebpf.map(MAP_VERDICTS).ok_or(SteerError::Map {
            map: MAP_VERDICTS,
            source: MapError::InvalidName {
                name: MAP_VERDICTS.to_owned(),
            },
        })?;
        let counters = PerCpuArray::<_, u64>::try_from(map).map_err(|source| SteerError::Map {
            map: MAP_VERDICTS,
            source,
        })?;
        let mut counts = VerdictCounts::default();
        for verdict in Verdict::ALL {
            let per_cpu = counters
                .get(&verdict.slot(), 0)
                .map_err(|source| SteerError::Map {
                    map: MAP_VERDICTS,
                    source,
                })?;
            counts.counts[verdict.slot() as usize] = per_cpu.iter().sum();
        }
        Ok(counts)
    }

    fn map<'a, M>(&'a mut self, name: &'static str) -> Result<M, SteerError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(SteerError::Map {
            map: name,
            source: MapError::InvalidName {
                name: name.to_owned(),
            },
        })?;
        M::try_from(map).map_err(|source| SteerError::Map { map: name, source })
    }
}

/// A program that passes every packet, for the receiving end of a veth that
/// frames are redirected or XDP_TX'd into. Detached on drop or exit.
#[derive(Debug)]
pub struct PassProgram {
    _ebpf: Ebpf,
    mode: AttachedMode,
}

impl PassProgram {
    /// Attaches it to `if_index` in the calling thread's namespace.
    pub fn attach(if_index: u32, mode: AttachMode) -> Result<Self, SteerError> {
        let mut ebpf = EbpfLoader::new().load(STEER_OBJECT)?;
        let mode = attach_program(&mut ebpf, PROGRAM_PASS, if_index, mode)?;
        Ok(Self { _ebpf: ebpf, mode })
    }

    /// Native or generic, as attached.
    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }
}

/// A program loaded from a BPF object of the caller's, attached until dropped. For tools
/// that bring their own program, and for testing the loader's error paths with a program
/// the verifier refuses.
#[derive(Debug)]
pub struct ObjectProgram {
    _ebpf: Ebpf,
    mode: AttachedMode,
}

impl ObjectProgram {
    /// Loads `object` (an ELF BPF object), then attaches its XDP program `program` to
    /// `if_index` in the calling thread's namespace.
    pub fn attach(
        object: &[u8],
        program: &'static str,
        if_index: u32,
        mode: AttachMode,
    ) -> Result<Self, SteerError> {
        let mut ebpf = EbpfLoader::new().load(object)?;
        let mode = attach_program(&mut ebpf, program, if_index, mode)?;
        Ok(Self { _ebpf: ebpf, mode })
    }

    /// Native or generic, as attached.
    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }
}

fn attach_program(
    ebpf: &mut Ebpf,
    program: &'static str,
    if_index: u32,
    mode: AttachMode,
) -> Result<AttachedMode, SteerError> {
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(SteerError::Program {
            program,
            source: ProgramError::UnexpectedProgramType,
        })?
        .try_into()
        .map_err(|source| SteerError::Program { program, source })?;
    xdp.load().map_err(|source| match source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if io_error.raw_os_error() == Some(libc::EPERM) {
                SteerError::NotPermitted {
                    what: "loading the XDP program",
                }
            } else {
                SteerError::VerifierRejected {
                    program,
                    io_error,
                    log: verifier_log.to_string(),
                }
            }
        }
        source => SteerError::Program { program, source },
    })?;
    let attach =
        |xdp: &mut Xdp, kernel_mode: XdpMode| xdp.attach_to_if_index(if_index, kernel_mode);
    let refused = |source: ProgramError, tried: AttachMode| match &source {
        ProgramError::SyscallError(error)
            if error.io_error.raw_os_error() == Some(libc::ENODEV) =>
        {
            SteerError::InterfaceNotFound { if_index }
        }
        ProgramError::SyscallError(error) if error.io_error.raw_os_error() == Some(libc::EPERM) => {
            SteerError::NotPermitted {
                what: "attaching the XDP program",
            }
        }
        _ => SteerError::ModeUnsupported {
            mode: tried,
            if_index,
            reason: match &source {
                ProgramError::SyscallError(error) => error.io_error.to_string(),
                other => other.to_string(),
            },
            source,
        },
    };
    match mode {
        AttachMode::Native => attach(xdp, XdpMode::Driver)
            .map(|_| AttachedMode::Native)
            .map_err(|e| refused(e, AttachMode::Native)),
        AttachMode::Generic => attach(xdp, XdpMode::Skb)
            .map(|_| AttachedMode::Generic)
            .map_err(|e| refused(e, AttachMode::Generic)),
        AttachMode::Auto => match attach(xdp, XdpMode::Driver) {
            Ok(_) => Ok(AttachedMode::Native),
            Err(native_error) => {
                tracing::info!(
                    if_index,
                    error = %native_error,
                    "native XDP attach refused; falling back to generic mode"
                );
                attach(xdp, XdpMode::Skb)
                    .map(|_| AttachedMode::Generic)
                    .map_err(|e| refused(e, AttachMode::Auto))
            }
        },
    }
}
