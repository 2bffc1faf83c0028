//! The inner-side TUN device: decrypted traffic goes to the kernel, which routes it to
//! the protected network, and traffic for tunnels comes back from it. Multi-queue, one
//! queue per worker ([`Tun::create`], [`Tun::into_queues`]); every queue is a
//! non-blocking descriptor to poll.
//!
//! # Offload design
//!
//! Per-packet TUN costs one syscall per 1500-byte packet, which caps a core far below
//! what the AEAD can do. With [`Offloads`] on, the device is opened with `IFF_VNET_HDR`
//! and the kernel is told (`TUNSETOFFLOAD`) that we handle checksum offload and TSO
//! (and USO where the kernel knows it, Linux 6.2+). The kernel then stops segmenting
//! for us: one `read` returns a [`vnet::VnetHeader`] and a TCP or UDP "superframe" of
//! up to 64 KB, and we segment it ourselves ([`gso::segment`]) — in place, with
//! no copy of the payload — into MTU-sized packets with complete checksums, which is
//! what the encryption path needs anyway. This is the technique that took wireguard-go
//! past 10 Gbit/s. Packets without GSO may still carry a partial checksum
//! (`NEEDS_CSUM`), which we complete. Writes carry an all-zero header (a complete
//! packet) through [`TunQueue::write_packet`]; in the other direction,
//! [`gro::Coalescer`] merges consecutive segments of a TCP flow, or datagrams of a UDP flow,
//! into one GSO frame that [`TunQueue::write_with_header`] hands the kernel in one `write`
//! (GRO done by us; the kernel takes a TCP frame like a GRO'd packet, and splits a UDP frame
//! into its datagrams before a socket without UDP GRO sees them).
//!
//! # Fallback
//!
//! USO is asked for first and dropped silently if the kernel refuses it (it then
//! segments UDP itself). If the kernel refuses `TUNSETOFFLOAD` altogether, the device
//! is recreated in plain per-packet mode (no virtio-net header), with one `info` log
//! line; [`Tun::offloads`] and [`Tun::vnet_hdr`] report what is in effect, and
//! [`TunQueue::read_packets`] / [`TunQueue::write_packet`] work the same in both modes.
//!
//! The device is not persistent: the kernel deletes it when its last queue closes.

mod device;
pub mod gro;
pub mod gso;
pub mod vnet;

pub use device::{
    MAX_QUEUES, Offloads, QueueDrop, QueueStats, SCRATCH_LEN, Tun, TunError, TunQueue,
};
