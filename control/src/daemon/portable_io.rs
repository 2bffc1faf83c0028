//! The kernel-socket side of portable mode's data path, with the offloads that make it
//! carry bulk traffic: sealed datagrams leave in UDP GSO runs ([`super::gso_batch`]),
//! received ones come in UDP GRO batches, and decrypted packets reach the TUN coalesced
//! into GSO frames ([`warpline_dataplane::tun::gro::Coalescer`], the XDP workers' code).
//! One `sendmsg`, one `recvmsg` and one TUN `write` then move up to 64 KB each instead of
//! one datagram, which is what bounds a single-threaded loop (wireguard-go's design).
//!
//! Every offload falls back on its own: a kernel without `UDP_SEGMENT` or a device that
//! cannot checksum for it (`EIO`) turns GSO off with one log line, a failed run is sent again
//! datagram by datagram, a kernel without `UDP_GRO` hands datagrams over one at a time, and a
//! TUN without offloads gets one write per packet. The counters say which is in effect.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use warpline_dataplane::tun::TunQueue;
use warpline_dataplane::tun::gro::Coalescer;

use super::gso_batch::{Route, Run};
use super::sticky_source::{self, WhenGone};

/// Counters of the offloads, shown with the kernel socket's worker in `warpline show`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OffloadCounters {
    /// Sends that carried several datagrams (`UDP_SEGMENT`).
    pub gso_sends: u64,
    /// Datagrams those sends carried.
    pub gso_datagrams: u64,
    /// Runs the kernel refused, sent again one datagram at a time.
    pub gso_fallbacks: u64,
    /// Receives that held several datagrams (`UDP_GRO`).
    pub gro_receives: u64,
    /// Datagrams those receives held.
    pub gro_datagrams: u64,
    /// TUN writes that carried a GSO frame of several packets.
    pub tun_gso_writes: u64,
    /// Datagrams the socket would not take (buffer full, no route, address gone).
    pub udp_send_errors: u64,
    /// Packets the TUN would not take.
    pub tun_write_errors: u64,
}

impl OffloadCounters {
    /// The events (not drops), named as `show` and the metrics list them.
    pub fn named(&self) -> Vec<(String, u64)> {
        [
            ("udp_gso_sends", self.gso_sends),
            ("udp_gso_datagrams", self.gso_datagrams),
            ("udp_gso_fallbacks", self.gso_fallbacks),
            ("udp_gro_receives", self.gro_receives),
            ("udp_gro_datagrams", self.gro_datagrams),
            ("tun_gso_writes", self.tun_gso_writes),
        ]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
    }

    /// The drops among them, named like the kernel socket's other drop reasons.
    pub fn drops(&self) -> impl Iterator<Item = (String, u64)> + use<> {
        [
            ("UDP send failed", self.udp_send_errors),
            ("TUN write failed", self.tun_write_errors),
        ]
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .map(|(reason, count)| (reason.to_owned(), count))
    }
}

/// Runs sent one datagram at a time after a refusal before GSO is tried again for their
/// size: the path may have changed (a route, an MTU).
const RETRY_AFTER_RUNS: u32 = 1024;

/// Sends runs of sealed datagrams on the kernel socket.
#[derive(Debug)]
pub struct UdpSender {
    when_gone: WhenGone,
    /// Whether runs go out in one `UDP_SEGMENT` send.
    gso: bool,
    /// The smallest datagram size of a run the kernel refused (other than for good, `EIO`):
    /// usually a path MTU below the datagrams, which the kernel would have to fragment.
    /// Runs of at least this size skip the doomed GSO attempt until the retry.
    refused_segment: Option<usize>,
    runs_since_refusal: u32,
}

impl UdpSender {
    /// A sender for `socket`, with GSO when the kernel knows `UDP_SEGMENT`.
    pub fn new(socket: &UdpSocket, when_gone: WhenGone) -> Self {
        let gso = kernel_knows_udp_segment(socket);
        if !gso {
            tracing::info!("the kernel has no UDP GSO: datagrams are sent one at a time");
        }
        Self {
            when_gone,
            gso,
            refused_segment: None,
            runs_since_refusal: 0,
        }
    }

    /// Whether to try `run` with GSO.
    fn try_gso(&mut self, run: &Run<'_>) -> bool {
        if !self.gso || run.count < 2 {
            return false;
        }
        match self.refused_segment {
            Some(refused) if run.segment >= refused => {
                self.runs_since_refusal += 1;
                if self.runs_since_refusal < RETRY_AFTER_RUNS {
                    return false;
                }
                self.refused_segment = None;
                true
            }
            _ => true,
        }
    }

    /// Sends `run`: in one call when it holds several datagrams and GSO works, else one
    /// datagram at a time. Returns how many datagrams left.
    pub fn send(
        &mut self,
        socket: &UdpSocket,
        run: &Run<'_>,
        counters: &mut OffloadCounters,
    ) -> u64 {
        let Route { to, source } = run.route;
        if self.try_gso(run)
            && let Ok(segment) = u16::try_from(run.segment)
        {
            match sticky_source::send_segments(socket, run.bytes, segment, to, source) {
                Ok(_) => {
                    counters.gso_sends += 1;
                    counters.gso_datagrams += run.count as u64;
                    return run.count as u64;
                }
                Err(error) if is_full(&error) => {
                    counters.udp_send_errors += run.count as u64;
                    return 0;
                }
                // Sent again one by one below. Should the kernel have sent part of the run
                // before failing (a device error mid-list), the peer drops the repeats as
                // replays: their counters are the same.
                Err(error) => {
                    counters.gso_fallbacks += 1;
                    self.runs_since_refusal = 0;
                    self.refused_segment = Some(
                        self.refused_segment
                            .map_or(run.segment, |r| r.min(run.segment)),
                    );
                    if error.raw_os_error() == Some(libc::EIO) {
                        // The egress device cannot checksum a GSO send (or IPsec is in the
                        // way): it will not get better for this socket.
                        self.gso = false;
                        tracing::warn!(
                            %error,
                            "UDP GSO refused by the kernel: sending datagrams one at a time from now on"
                        );
                    }
                }
            }
        }
        let mut sent = 0;
        for datagram in run.datagrams() {
            if sticky_source::send(socket, datagram, to, source, self.when_gone).is_ok() {
                sent += 1;
            } else {
                counters.udp_send_errors += 1;
            }
        }
        sent
    }

    /// Whether runs still go out with GSO.
    #[cfg(test)]
    pub fn gso(&self) -> bool {
        self.gso
    }
}

/// Send buffer or queue full: resending one by one would only fail again.
fn is_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || error.raw_os_error() == Some(libc::ENOBUFS)
}

/// Asks for `UDP_SEGMENT`, as wireguard-go does: a kernel without UDP GSO (before 4.18)
/// does not know the option.
fn kernel_knows_udp_segment(socket: &UdpSocket) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and writable, and `len` is the size of `value`; the
    // fd is open.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Decrypted packets on their way into the TUN queue, coalesced when it takes offloads.
#[derive(Debug)]
pub struct TunWriter {
    coalescer: Option<Coalescer>,
}

impl TunWriter {
    pub fn new(queue: &TunQueue) -> Self {
        let coalescer = queue.vnet_hdr().then(|| {
            let mut coalescer = Coalescer::new();
            coalescer.set_udp(queue.accepts_udp_gso());
            coalescer
        });
        Self { coalescer }
    }

    /// Writes `packet`, or keeps it to merge with the next ones; call
    /// [`TunWriter::flush`] before the loop waits.
    pub fn write(&mut self, queue: &TunQueue, packet: &[u8], counters: &mut OffloadCounters) {
        let result = match &mut self.coalescer {
            // Lost packets are counted by the coalescer (a failed GSO frame loses all of
            // them) and copied into `counters` at the flush.
            Some(coalescer) => coalescer.push(packet, |header, frame| {
                queue.write_with_header(header, frame)
            }),
            None => queue.write_packet(packet).inspect_err(|_| {
                counters.tun_write_errors += 1;
            }),
        };
        if let Err(error) = result {
            tracing::debug!("TUN write failed: {error}");
        }
    }

    /// Writes what is being coalesced, and brings the coalescer's counts into `counters`.
    pub fn flush(&mut self, queue: &TunQueue, counters: &mut OffloadCounters) {
        let Some(coalescer) = &mut self.coalescer else {
            return;
        };
        if let Err(error) = coalescer.flush(|header, frame| queue.write_with_header(header, frame))
        {
            tracing::debug!("TUN write failed: {error}");
        }
        let stats = coalescer.stats();
        counters.tun_gso_writes = stats.gso_writes;
        counters.tun_write_errors = stats.lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::gso_batch::GsoBatch;
    use std::time::Duration;

    /// Sends `count` datagrams of `segment` bytes (numbered in their first byte) as one run,
    /// and receives them on a GRO socket; returns the datagrams and how many receives.
    fn round_trip(
        sender_socket: &UdpSocket,
        sender: &mut UdpSender,
        count: usize,
    ) -> (Vec<Vec<u8>>, usize, OffloadCounters) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        sticky_source::enable_gro(&receiver).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let to = receiver.local_addr().unwrap();
        let mut batch = GsoBatch::new();
        let mut counters = OffloadCounters::default();
        let mut runs = 0;
        let route = Route { to, source: None };
        for index in 0..count {
            let len = if index + 1 == count { 300 } else { 1200 };
            let mut send = |run: Run<'_>| {
                runs += 1;
                sender.send(sender_socket, &run, &mut counters);
            };
            let tail = batch.tail(&mut send);
            tail[..len].fill(index as u8);
            batch.commit(len, route, &mut send);
        }
        batch.flush(|run| {
            runs += 1;
            sender.send(sender_socket, &run, &mut counters);
        });
        assert_eq!(runs, 1, "one run for equal datagrams to one peer");
        let mut buf = vec![0u8; 65_536];
        let mut datagrams = Vec::new();
        let mut receives = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while datagrams.len() < count && std::time::Instant::now() < deadline {
            match sticky_source::recv(&receiver, &mut buf) {
                Ok(received) => {
                    receives += 1;
                    datagrams.extend(received.datagrams().map(|range| buf[range].to_vec()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(error) => panic!("recv: {error}"),
            }
        }
        (datagrams, receives, counters)
    }

    fn check(datagrams: &[Vec<u8>], count: usize) {
        assert_eq!(datagrams.len(), count);
        for (index, datagram) in datagrams.iter().enumerate() {
            let len = if index + 1 == count { 300 } else { 1200 };
            assert_eq!(datagram, &vec![index as u8; len], "datagram {index}");
        }
    }

    #[test]
    fn a_run_leaves_in_one_send_and_arrives_in_one_receive() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sender = UdpSender::new(&socket, WhenGone::KernelChoice);
        assert!(sender.gso(), "this kernel knows UDP_SEGMENT");
        let (datagrams, receives, counters) = round_trip(&socket, &mut sender, 20);
        check(&datagrams, 20);
        assert_eq!((counters.gso_sends, counters.gso_datagrams), (1, 20));
        assert_eq!(counters.gso_fallbacks, 0);
        // Loopback keeps a GSO send whole up to a GRO socket.
        assert_eq!(receives, 1);
    }

    #[test]
    fn a_refused_run_is_sent_again_one_datagram_at_a_time() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // No UDP checksums on this socket: the kernel refuses GSO sends from it (EINVAL).
        sticky_source::set_int_option(&socket, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let mut sender = UdpSender::new(&socket, WhenGone::KernelChoice);
        let (datagrams, receives, counters) = round_trip(&socket, &mut sender, 12);
        check(&datagrams, 12);
        assert_eq!(counters.gso_sends, 0);
        assert_eq!(counters.gso_fallbacks, 1);
        assert_eq!(receives, 12, "sent one by one, received one by one");
        // The refusal is remembered: the next runs of that size skip the doomed attempt...
        for _ in 1..RETRY_AFTER_RUNS {
            let (datagrams, _, counters) = round_trip(&socket, &mut sender, 3);
            check(&datagrams, 3);
            assert_eq!(counters.gso_fallbacks, 0);
        }
        // ...until the retry, which is refused again here.
        let (datagrams, _, counters) = round_trip(&socket, &mut sender, 3);
        check(&datagrams, 3);
        assert_eq!(counters.gso_fallbacks, 1);
        assert!(
            sender.gso(),
            "a refusal other than EIO does not turn GSO off"
        );
    }
}
