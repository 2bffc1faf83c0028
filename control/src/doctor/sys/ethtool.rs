//! The ethtool ioctls (`SIOCETHTOOL`) and the link MTU ioctls, straight to the kernel: the
//! machines warpline runs on have neither ethtool nor iproute2.
//!
//! Commands are built as byte buffers with the field offsets of `<linux/ethtool.h>`, so the
//! only unsafe code is the one `ioctl` call, and the kernel never reads or writes past a
//! buffer because each is sized for its command (see [`EthtoolSocket::ethtool`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCSIFMTU: libc::c_ulong = 0x8922;

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GRXFH: u32 = 0x29;
const ETHTOOL_SRXFH: u32 = 0x2a;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// `struct ethtool_drvinfo`: cmd, then five 32-byte strings, reserved bytes and counters.
const DRVINFO_LEN: usize = 196;
/// `struct ethtool_channels`: nine `u32`s.
const CHANNELS_LEN: usize = 36;
/// Room for `struct ethtool_rxnfc` (192 bytes on 64-bit kernels); `ETHTOOL_[GS]RXFH` use
/// only its first 16 bytes, but newer kernels may copy the whole struct.
const RXNFC_LEN: usize = 256;

/// Which UDP flows' receive hashing to look at (`UDP_V4_FLOW`, `UDP_V6_FLOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpFlow {
    /// UDP over IPv4.
    V4,
    /// UDP over IPv6.
    V6,
}

impl UdpFlow {
    fn flow_type(self) -> u32 {
        match self {
            Self::V4 => 0x02,
            Self::V6 => 0x06,
        }
    }

    /// The name ethtool's `rx-flow-hash` takes.
    pub fn ethtool_name(self) -> &'static str {
        match self {
            Self::V4 => "udp4",
            Self::V6 => "udp6",
        }
    }
}

/// `RXH_*` bits of a flow hash.
pub mod rxh {
    /// Source IP address.
    pub const IP_SRC: u64 = 1 << 4;
    /// Destination IP address.
    pub const IP_DST: u64 = 1 << 5;
    /// First two bytes of the L4 header: the source port.
    pub const L4_B_0_1: u64 = 1 << 6;
    /// Bytes 2-3 of the L4 header: the destination port.
    pub const L4_B_2_3: u64 = 1 << 7;
    /// Addresses and ports: what ethtool calls `sdfn`.
    pub const ADDRESSES_AND_PORTS: u64 = IP_SRC | IP_DST | L4_B_0_1 | L4_B_2_3;
}

/// What `ETHTOOL_GDRVINFO` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name, e.g. `ice`.
    pub driver: String,
    /// Driver version.
    pub version: String,
    /// Firmware version, if any.
    pub firmware: String,
    /// Bus address, e.g. `0000:3b:00.0`; empty for virtual NICs.
    pub bus: String,
}

/// `struct ethtool_channels`: queue counts, now and at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    /// Most RX-only channels.
    pub max_rx: u32,
    /// Most TX-only channels.
    pub max_tx: u32,
    /// Most "other" channels (link interrupts and the like).
    pub max_other: u32,
    /// Most combined (RX+TX) channels.
    pub max_combined: u32,
    /// RX-only channels now.
    pub rx: u32,
    /// TX-only channels now.
    pub tx: u32,
    /// Other channels now.
    pub other: u32,
    /// Combined channels now.
    pub combined: u32,
}

impl Channels {
    /// RX queues now: every combined and every RX-only channel has one.
    pub fn rx_queues(&self) -> u32 {
        self.combined + self.rx
    }

    /// Most RX queues the NIC can have.
    pub fn max_rx_queues(&self) -> u32 {
        if self.max_combined > 0 {
            self.max_combined + self.max_rx
        } else {
            self.max_rx
        }
    }

    /// The settings that give `queues` RX queues (and as many TX queues): combined
    /// channels where the NIC has them (RX-only ones dropped), RX and TX channels otherwise
    /// (veth, some virtual NICs). `None` when the NIC cannot have that many.
    pub fn with_rx_queues(&self, queues: u32) -> Option<Self> {
        if queues == 0 || queues > self.max_rx_queues() {
            return None;
        }
        let mut wanted = *self;
        if self.max_combined > 0 {
            if queues > self.max_combined {
                return None;
            }
            wanted.combined = queues;
            wanted.rx = 0;
            wanted.tx = 0;
        } else {
            wanted.rx = queues;
            wanted.tx = queues.min(self.max_tx.max(1));
        }
        Some(wanted)
    }

    /// The ethtool command that applies these settings.
    pub fn ethtool_command(&self, nic: &str) -> String {
        if self.max_combined > 0 {
            format!("ethtool -L {nic} combined {}", self.combined)
        } else {
            format!("ethtool -L {nic} rx {} tx {}", self.rx, self.tx)
        }
    }

    fn decode(buf: &[u8]) -> Self {
        let field = |index: usize| u32_at(buf, 4 + 4 * index);
        Self {
            max_rx: field(0),
            max_tx: field(1),
            max_other: field(2),
            max_combined: field(3),
            rx: field(4),
            tx: field(5),
            other: field(6),
            combined: field(7),
        }
    }

    fn encode(&self, cmd: u32) -> Vec<u8> {
        let mut buf = vec![0; CHANNELS_LEN];
        let fields = [
            cmd,
            self.max_rx,
            self.max_tx,
            self.max_other,
            self.max_combined,
            self.rx,
            self.tx,
            self.other,
            self.combined,
        ];
        for (index, value) in fields.into_iter().enumerate() {
            put_u32(&mut buf, 4 * index, value);
        }
        buf
    }
}

/// The device features and their state (`ETHTOOL_GFEATURES` named by `ETH_SS_FEATURES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `(name, active, changeable)` for each feature the kernel knows.
    pub features: Vec<(String, bool, bool)>,
    /// Feature words (`ETHTOOL_DEV_FEATURE_WORDS`), needed to change them.
    words: u32,
}

impl Features {
    /// Whether feature `name` (e.g. `rx-lro`) is on; `None` if the kernel has no such
    /// feature.
    pub fn is_active(&self, name: &str) -> Option<bool> {
        self.features
            .iter()
            .find(|(feature, _, _)| feature == name)
            .map(|&(_, active, _)| active)
    }
}

/// An `AF_INET` datagram socket for interface ioctls, in the caller's network namespace.
#[derive(Debug)]
pub struct EthtoolSocket {
    fd: OwnedFd,
}

/// `struct ifreq` with `ifr_data` (a pointer) in its union.
#[repr(C)]
struct IfreqPointer {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _rest: [u8; 16],
}

/// `struct ifreq` with `ifr_mtu` (an int) in its union.
#[repr(C)]
struct IfreqInt {
    name: [u8; libc::IFNAMSIZ],
    value: libc::c_int,
    _rest: [u8; 20],
}

const _: () = assert!(std::mem::size_of::<IfreqPointer>() == 40);
const _: () = assert!(std::mem::size_of::<IfreqInt>() == 40);

fn ifname(nic: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let bytes = nic.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{nic:?} is not an interface name"),
        ));
    }
    let mut name = [0u8; libc::IFNAMSIZ];
    name[..bytes.len()].copy_from_slice(bytes);
    Ok(name)
}

fn u32_at(buf: &[u8], offset: usize) -> u32 {
    buf.get(offset..offset + 4)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    if let Some(slot) = buf.get_mut(offset..offset + 4) {
        slot.copy_from_slice(&value.to_ne_bytes());
    }
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl EthtoolSocket {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Runs one ethtool command on `nic`. `command` starts with the command number and must
    /// be as long as the kernel's struct for it, variable parts included: the kernel reads
    /// and writes that many bytes, as sized by the header fields the caller filled in.
    fn ethtool(&self, nic: &str, command: &mut [u8]) -> io::Result<libc::c_int> {
        let mut request = IfreqPointer {
            name: ifname(nic)?,
            data: command.as_mut_ptr().cast(),
            _rest: [0; 16],
        };
        // SAFETY: `request` is a valid 40-byte ifreq whose data pointer is `command`, which
        // is writable and, per this function's contract, as long as the command's struct;
        // both outlive the call.
        let result = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL, &mut request) };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(result)
        }
    }

    /// `ETHTOOL_GDRVINFO`.
    pub fn driver_info(&self, nic: &str) -> io::Result<DriverInfo> {
        let mut buf = vec![0u8; DRVINFO_LEN];
        put_u32(&mut buf, 0, ETHTOOL_GDRVINFO);
        self.ethtool(nic, &mut buf)?;
        Ok(DriverInfo {
            driver: c_string(&buf[4..36]),
            version: c_string(&buf[36..68]),
            firmware: c_string(&buf[68..100]),
            bus: c_string(&buf[100..132]),
        })
    }

    /// `ETHTOOL_GCHANNELS`.
    pub fn channels(&self, nic: &str) -> io::Result<Channels> {
        let mut buf = Channels::default().encode(ETHTOOL_GCHANNELS);
        self.ethtool(nic, &mut buf)?;
        Ok(Channels::decode(&buf))
    }

    /// `ETHTOOL_SCHANNELS`.
    pub fn set_channels(&self, nic: &str, channels: &Channels) -> io::Result<()> {
        let mut buf = channels.encode(ETHTOOL_SCHANNELS);
        self.ethtool(nic, &mut buf).map(drop)
    }

    /// `ETHTOOL_GRXFH`: the `RXH_*` fields hashed for `flow`.
    pub fn rx_flow_hash(&self, nic: &str, flow: UdpFlow) -> io::Result<u64> {
        let mut buf = vec![0u8; RXNFC_LEN];
        put_u32(&mut buf, 0, ETHTOOL_GRXFH);
        put_u32(&mut buf, 4, flow.flow_type());
        self.ethtool(nic, &mut buf)?;
        let data: [u8; 8] = buf[8..16].try_into().unwrap_or_default();
        Ok(u64::from_ne_bytes(data))
    }

    /// `ETHTOOL_SRXFH`: hash `flow` over `fields` (`RXH_*` bits).
    pub fn set_rx_flow_hash(&self, nic: &str, flow: UdpFlow, fields: u64) -> io::Result<()> {
        let mut buf = vec![0u8; RXNFC_LEN];
        put_u32(&mut buf, 0, ETHTOOL_SRXFH);
        put_u32(&mut buf, 4, flow.flow_type());
        buf[8..16].copy_from_slice(&fields.to_ne_bytes());
        self.ethtool(nic, &mut buf).map(drop)
    }

    /// The names of the kernel's device features, in bit order.
    fn feature_names(&self, nic: &str) -> io::Result<Vec<String>> {
        // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, then one u32 per set asked.
        let mut info = vec![0u8; 24];
        put_u32(&mut info, 0, ETHTOOL_GSSET_INFO);
        info[8..16].copy_from_slice(&(1u64 << ETH_SS_FEATURES).to_ne_bytes());
        self.ethtool(nic, &mut info)?;
        let count = u32_at(&info, 16) as usize;
        if count == 0 || count > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel reports {count} device features"),
            ));
        }
        // struct ethtool_gstrings: cmd, string_set, len, then `len` 32-byte strings. The
        // kernel writes as many strings as it counted above, so the buffer holds them all.
        let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
        put_u32(&mut strings, 0, ETHTOOL_GSTRINGS);
        put_u32(&mut strings, 4, ETH_SS_FEATURES);
        put_u32(&mut strings, 8, count as u32);
        self.ethtool(nic, &mut strings)?;
        Ok(strings[12..]
            .chunks_exact(ETH_GSTRING_LEN)
            .map(c_string)
            .collect())
    }

    /// `ETHTOOL_GFEATURES`, named.
    pub fn features(&self, nic: &str) -> io::Result<Features> {
        let names = self.feature_names(nic)?;
        let words = names.len().div_ceil(32);
        // struct ethtool_gfeatures: cmd, size, then `size` blocks of four u32s (available,
        // requested, active, never_changed); the kernel writes at most `size` blocks.
        let mut buf = vec![0u8; 8 + 16 * words];
        put_u32(&mut buf, 0, ETHTOOL_GFEATURES);
        put_u32(&mut buf, 4, words as u32);
        self.ethtool(nic, &mut buf)?;
        let bit = |field: usize, index: usize| {
            let word = u32_at(&buf, 8 + 16 * (index / 32) + 4 * field);
            word & (1 << (index % 32)) != 0
        };
        let features = names
            .into_iter()
            .enumerate()
            .map(|(index, name)| {
                let available = bit(0, index);
                let active = bit(2, index);
                let never_changed = bit(3, index);
                (name, active, available && !never_changed)
            })
            .collect();
        Ok(Features {
            features,
            words: words as u32,
        })
    }

    /// `ETHTOOL_SFEATURES`: turns the named features off. The kernel may keep one on that
    /// another depends on; read them back to see what happened.
    pub fn disable_features(&self, nic: &str, names: &[&str]) -> io::Result<()> {
        self.set_features(nic, names, false)
    }

    /// `ETHTOOL_SFEATURES`: turns the named features on or off.
    pub fn set_features(&self, nic: &str, names: &[&str], on: bool) -> io::Result<()> {
        let current = self.features(nic)?;
        // struct ethtool_sfeatures: cmd, size, then `size` blocks of (valid, requested).
        let mut buf = vec![0u8; 8 + 8 * current.words as usize];
        put_u32(&mut buf, 0, ETHTOOL_SFEATURES);
        put_u32(&mut buf, 4, current.words);
        for name in names {
            let index = current
                .features
                .iter()
                .position(|(feature, _, _)| feature == name)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("this kernel has no device feature {name}"),
                    )
                })?;
            let valid_offset = 8 + 8 * (index / 32);
            let valid = u32_at(&buf, valid_offset) | (1 << (index % 32));
            put_u32(&mut buf, valid_offset, valid);
            if on {
                let requested = u32_at(&buf, valid_offset + 4) | (1 << (index % 32));
                put_u32(&mut buf, valid_offset + 4, requested);
            }
        }
        self.ethtool(nic, &mut buf).map(drop)
    }

    /// The link MTU (`SIOCGIFMTU`).
    pub fn mtu(&self, nic: &str) -> io::Result<u32> {
        let mut request = IfreqInt {
            name: ifname(nic)?,
            value: 0,
            _rest: [0; 20],
        };
        // SAFETY: `request` is a valid 40-byte ifreq the kernel reads and writes in place.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCGIFMTU, &mut request) } < 0 {
            return Err(io::Error::last_os_error());
        }
        u32::try_from(request.value)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
    }

    /// Sets the link MTU (`SIOCSIFMTU`).
    pub fn set_mtu(&self, nic: &str, mtu: u32) -> io::Result<()> {
        let mut request = IfreqInt {
            name: ifname(nic)?,
            value: libc::c_int::try_from(mtu)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?,
            _rest: [0; 20],
        };
        // SAFETY: `request` is a valid 40-byte ifreq the kernel only reads.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCSIFMTU, &mut request) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_targets_use_combined_where_the_nic_has_it() {
        let nic = Channels {
            max_combined: 16,
            max_other: 1,
            combined: 8,
            other: 1,
            ..Channels::default()
        };
        assert_eq!(nic.rx_queues(), 8);
        let wanted = nic.with_rx_queues(4).unwrap();
        assert_eq!((wanted.combined, wanted.rx, wanted.other), (4, 0, 1));
        assert_eq!(wanted.ethtool_command("eth0"), "ethtool -L eth0 combined 4");
        assert_eq!(nic.with_rx_queues(17), None);
        assert_eq!(nic.with_rx_queues(0), None);

        let veth = Channels {
            max_rx: 8,
            max_tx: 8,
            rx: 1,
            tx: 1,
            ..Channels::default()
        };
        let wanted = veth.with_rx_queues(4).unwrap();
        assert_eq!((wanted.rx, wanted.tx), (4, 4));
        assert_eq!(wanted.ethtool_command("v0"), "ethtool -L v0 rx 4 tx 4");
        assert_eq!(Channels::decode(&wanted.encode(ETHTOOL_SCHANNELS)), wanted);
    }

    #[test]
    fn interface_names_are_checked_before_any_ioctl() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("").is_err());
        assert!(ifname("sixteen-letters!").is_err());
        assert!(ifname("a\0b").is_err());
    }

    #[test]
    fn loopback_answers_the_read_only_ioctls() {
        let socket = EthtoolSocket::open().unwrap();
        assert!(socket.mtu("lo").unwrap() >= 1280);
        let features = socket.features("lo").unwrap();
        assert_eq!(features.is_active("loopback"), Some(true));
        assert!(socket.mtu("no-such-nic0").is_err());
    }
}
