//! warpline's XDP steering program (`ebpf/steer.c`), compiled with clang by the
//! build script and embedded here, so binaries need no C toolchain at run time.
//!
//! The constants below are the contract with `steer.c`: program names, map
//! names and verdict counter slots. Change both sides together.

/// 8-byte alignment for the embedded ELF: ELF parsers read its headers in
/// place, which needs the alignment `include_bytes!` alone does not promise.
#[repr(C, align(8))]
struct Aligned<Bytes: ?Sized>(Bytes);

static STEER_OBJECT_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/steer.o")));

/// The compiled BPF ELF object holding both steering programs and their maps.
pub static STEER_OBJECT: &[u8] = &STEER_OBJECT_ALIGNED.0;

/// Program steering WireGuard transport data from the WAN side.
pub const PROGRAM_WAN: &str = "steer_wan";
/// Program steering packets for tunnel prefixes from the LAN side.
pub const PROGRAM_LAN: &str = "steer_lan";
/// Program passing everything: for the receiving end of a veth that frames
/// are redirected into.
pub const PROGRAM_PASS: &str = "pass_all";

/// `HASH<u16 port (host order), u8>`: UDP listen ports (WAN role).
pub const MAP_LISTEN_PORTS: &str = "listen_ports";
/// `XSKMAP<u32 queue, socket>`: the AF_XDP socket of each RX queue.
pub const MAP_XSKS: &str = "xsks";
/// `LPM_TRIE<{u32 prefix_len, [u8; 4]}, u8>`: IPv4 tunnel prefixes (LAN role).
pub const MAP_LAN_PREFIXES_V4: &str = "lan_prefixes_v4";
/// `LPM_TRIE<{u32 prefix_len, [u8; 16]}, u8>`: IPv6 tunnel prefixes (LAN role).
pub const MAP_LAN_PREFIXES_V6: &str = "lan_prefixes_v6";
/// `PERCPU_ARRAY<u32 verdict, u64>`: one packet counter per [`Verdict`].
pub const MAP_VERDICTS: &str = "verdicts";

/// What the program did with a packet; the discriminant is the counter slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Verdict {
    /// Handed to the RX queue's AF_XDP socket.
    Redirected = 0,
    /// Passed: not IPv4/IPv6 (ARP, LLDP, ...).
    PassNotIp = 1,
    /// Passed: could not be parsed safely (truncated, fragment, IPv6
    /// extension header, stacked VLAN tags).
    PassUnparsed = 2,
    /// Passed: not UDP (ICMP, ND, TCP, ...). WAN role.
    PassNotUdp = 3,
    /// Passed: UDP to a port that is not a listen port. WAN role.
    PassOtherPort = 4,
    /// Passed: WireGuard handshake message (types 1-3) for the control plane.
    PassHandshake = 5,
    /// Passed: to a listen port but not a plausible type-4 message.
    PassMalformed = 6,
    /// Passed: would be redirected, but the queue has no AF_XDP socket.
    PassNoSocket = 7,
    /// Passed: destination outside every tunnel prefix. LAN role.
    PassOutsidePrefixes = 8,
}

impl Verdict {
    /// Every verdict, in counter-slot order.
    pub const ALL: [Verdict; 9] = [
        Verdict::Redirected,
        Verdict::PassNotIp,
        Verdict::PassUnparsed,
        Verdict::PassNotUdp,
        Verdict::PassOtherPort,
        Verdict::PassHandshake,
        Verdict::PassMalformed,
        Verdict::PassNoSocket,
        Verdict::PassOutsidePrefixes,
    ];

    /// The counter slot in [`MAP_VERDICTS`].
    pub const fn slot(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EM_BPF: u16 = 247;

    #[test]
    fn embedded_object_is_an_aligned_bpf_elf() {
        assert_eq!(&STEER_OBJECT[..4], b"\x7fELF");
        assert_eq!(STEER_OBJECT.as_ptr() as usize % 8, 0);
        let machine = u16::from_le_bytes([STEER_OBJECT[18], STEER_OBJECT[19]]);
        assert_eq!(machine, EM_BPF);
    }

    #[test]
    fn object_names_every_program_and_map() {
        let contains = |needle: &str| {
            STEER_OBJECT
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        };
        for name in [
            PROGRAM_WAN,
            PROGRAM_LAN,
            PROGRAM_PASS,
            MAP_LISTEN_PORTS,
            MAP_XSKS,
            MAP_LAN_PREFIXES_V4,
            MAP_LAN_PREFIXES_V6,
            MAP_VERDICTS,
        ] {
            assert!(contains(name), "{name} missing from steer.o");
        }
    }

    #[test]
    fn verdict_slots_are_dense() {
        for (index, verdict) in Verdict::ALL.iter().enumerate() {
            assert_eq!(verdict.slot() as usize, index);
        }
    }
}
