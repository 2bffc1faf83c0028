//! Hostile traffic for the lab: what an attacker on the path sends a gateway, for the
//! hostile-traffic test and the `hostile` benchmark. Nothing here runs in the gateway.
//!
//! One round of a [`Flood`] sends one packet of each kind the gateway must refuse, plus a
//! burst of handshake initiations with a valid MAC1 from keys the gateway does not know (the
//! costly kind: they pass the MAC check and push the gateway under load, onto the cookie
//! path). Rounds are paced, so a flood has a known rate; the report says what was sent and
//! what sending cost the generator's own thread.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand_core::OsRng;

use crate::keys::{PrivateKey, PublicKey};
use crate::node::{Node, NodeConfig, PeerConfig};
use warpline_dataplane::time::Time;

/// The kinds of hostile packet, in the order a round sends them.
pub const KINDS: [&str; 8] = [
    "truncated",
    "oversized unknown index",
    "wrong type",
    "bad tag",
    "replayed",
    "bad mac1",
    "valid mac1 initiation",
    "spoofed source",
];

/// Handshake initiations to `gateway` at `endpoint` from `count` fresh keys: each carries a
/// valid MAC1 (it was made for the gateway's public key), and no gateway knows the sender.
pub fn stranger_initiations(
    gateway: &PublicKey,
    endpoint: SocketAddr,
    count: usize,
) -> Vec<Vec<u8>> {
    (0..count)
        .filter_map(|_| {
            let mut node = Node::new(
                NodeConfig::new(PrivateKey::generate(), Duration::from_secs(1_750_000_000)),
                OsRng,
            );
            let mut peer = PeerConfig::new(*gateway);
            peer.endpoint = Some(endpoint);
            let id = node.add_peer(peer).ok()?;
            node.initiate(Time::ZERO, id);
            Some(node.poll_transmit()?.payload)
        })
        .collect()
}

/// What a flood sends, and how fast.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Transport messages of a live session, seen on the wire: replayed as they are, and
    /// with a flipped tag byte as forgeries. At least one.
    pub transport: Vec<Vec<u8>>,
    /// Valid-MAC1 initiations (see [`stranger_initiations`]), all sent every round.
    pub initiations: Vec<Vec<u8>>,
    /// One round every this long.
    pub round_interval: Duration,
}

/// What a flood sent.
#[derive(Debug, Clone, Default)]
pub struct FloodReport {
    /// Packets the socket accepted, by kind (see [`KINDS`]).
    pub sent: BTreeMap<&'static str, u64>,
    /// How long the flood ran.
    pub elapsed: Duration,
    /// CPU time the sending thread used (user + system): on a small lab machine the
    /// generator competes with the gateway for cores, and this says by how much.
    pub cpu: Duration,
}

impl FloodReport {
    /// Packets sent, all kinds.
    pub fn total(&self) -> u64 {
        self.sent.values().sum()
    }

    /// Packets per second, all kinds.
    pub fn rate(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Flood {
    /// Packets per round: one of each kind but the initiations, which go all at once.
    pub fn packets_per_round(&self) -> usize {
        KINDS.len() - 1 + self.initiations.len()
    }

    /// The round interval for `packets_per_second` (at least one round a microsecond).
    pub fn interval_for(packets_per_round: usize, packets_per_second: f64) -> Duration {
        let rounds = (packets_per_second / packets_per_round.max(1) as f64).max(1e-3);
        Duration::from_secs_f64(1.0 / rounds).max(Duration::from_micros(1))
    }

    /// Sends rounds to `target` until `stop`; `spoofed` is a socket bound to the real peer's
    /// address (another port), for packets that claim to come from it.
    pub fn run(
        &self,
        socket: &UdpSocket,
        spoofed: &UdpSocket,
        target: SocketAddr,
        stop: &AtomicBool,
    ) -> FloodReport {
        let started = Instant::now();
        let cpu_before = thread_cpu_time();
        let mut sent: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut send = |kind: &'static str, socket: &UdpSocket, bytes: &[u8]| {
            if socket.send_to(bytes, target).is_ok() {
                *sent.entry(kind).or_default() += 1;
            }
        };
        let live_index: [u8; 4] = self
            .transport
            .first()
            .and_then(|message| message.get(4..8))
            .and_then(|index| index.try_into().ok())
            .unwrap_or_default();
        let mut round = 0usize;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            send(KINDS[0], socket, &[4, 0, 0, 0, 1, 2, 3]);
            // A receiver index no session has (the round number), at full size.
            let mut oversized = vec![4u8, 0, 0, 0];
            oversized.extend_from_slice(&(round as u32 | 0x8000_0000).to_le_bytes());
            oversized.resize(1400, 0xab);
            send(KINDS[1], socket, &oversized);
            send(KINDS[2], socket, &[7u8; 64]);
            if let Some(real) = self.transport.get(round % self.transport.len().max(1)) {
                let mut forged = real.clone();
                forged[4..8].copy_from_slice(&live_index);
                let last = forged.len() - 1;
                forged[last] ^= 0x55;
                send(KINDS[3], socket, &forged);
                send(KINDS[4], socket, real);
            }
            if let Some(initiation) = self.initiations.get(round % self.initiations.len().max(1)) {
                let mut bad_mac1 = initiation.clone();
                // MAC1 is bytes 116..132 of an initiation.
                bad_mac1[120] ^= 1;
                send(KINDS[5], socket, &bad_mac1);
            }
            for initiation in &self.initiations {
                send(KINDS[6], socket, initiation);
            }
            send(KINDS[7], spoofed, &oversized);
            let due = started + self.round_interval * round as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        FloodReport {
            sent,
            elapsed: started.elapsed(),
            cpu: thread_cpu_time().saturating_sub(cpu_before),
        }
    }
}

/// User + system CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    // SAFETY: rusage is plain data; all zeroes is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live rusage the call writes; RUSAGE_THREAD needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_sends_every_kind_at_the_paced_rate() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let target = receiver.local_addr().unwrap();
        let gateway = PrivateKey::generate().public_key();
        let mut live = vec![4u8, 0, 0, 0, 9, 9, 9, 9];
        live.resize(48, 1);
        let flood = Flood {
            transport: vec![live],
            initiations: stranger_initiations(&gateway, target, 2),
            round_interval: Flood::interval_for(9, 9_000.0),
        };
        assert_eq!(flood.initiations.len(), 2);
        assert!(
            flood
                .initiations
                .iter()
                .all(|m| m.len() == 148 && m[0] == 1)
        );
        assert_eq!(flood.packets_per_round(), 9);
        assert_eq!(flood.round_interval, Duration::from_millis(1));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let spoofed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stop = AtomicBool::new(false);
        let report = std::thread::scope(|scope| {
            let flooding = scope.spawn(|| flood.run(&socket, &spoofed, target, &stop));
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
            flooding.join().unwrap()
        });
        for kind in KINDS {
            assert!(report.sent.get(kind).copied().unwrap_or(0) > 0, "{kind}");
        }
        let rounds = report.sent["truncated"];
        assert_eq!(report.sent["valid mac1 initiation"], 2 * rounds);
        // Paced at one round a millisecond: about 50 rounds, never a free-running burst.
        assert!(rounds <= 80, "{rounds} rounds in 50 ms");
        let mut first = [0u8; 2048];
        let (len, _) = receiver.recv_from(&mut first).unwrap();
        assert_eq!(&first[..len], &[4, 0, 0, 0, 1, 2, 3]);
    }
}
