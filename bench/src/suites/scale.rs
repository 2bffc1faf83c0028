//! `scale`: how the data path scales with worker cores, for many peers and for one peer.
//!
//! N worker threads, each pinned to its own CPU, run the real batch pipeline
//! (`dataplane::pipeline::{encap,decap}_batch`) over their own 64-frame batches in memory,
//! against one shared [`SessionTable`] that each worker reads through its own
//! [`SnapshotReader`], loaded once per batch as a real worker does. Nothing but the pipeline is
//! shared, so what stops N workers from doing N times the work of one is what the pipeline
//! shares: per-session atomics (send counter, replay window, traffic counters), the snapshot,
//! and the machine itself (caches, memory bandwidth, SMT siblings, turbo headroom).
//!
//! Two peer layouts:
//! - **many peers**: every worker has its own 64 peers (sessions, routes, endpoints) and
//!   spreads each batch over them round robin, as a gateway with many clients whose flows RSS
//!   spreads over queues. Workers share no session, so this should scale nearly linearly.
//! - **one peer**: every worker sends to and receives from the same peer, so all of them seal
//!   with the same `SharedSession` (contending on its atomic send counter and traffic counters)
//!   and open with it (contending on its shared replay window): a site-to-site tunnel whose
//!   flows are spread over queues. This is the contention case.
//!
//! Directions, at 64 and 1420 B inner packets:
//! - **encap**: inner packets to the gateway's peers: route, take a counter, pad, seal, outer
//!   headers with checksums. Between batches the 20-byte inner header the seal overwrote is
//!   put back (untimed; the payload's contents do not matter to the timing).
//! - **decap**: transport frames from the peers: parse, session lookup, replay check, open,
//!   replay commit, allowed-IPs check. Each frame must carry a counter the receiving session
//!   has never seen, and with one peer, counters unique across all workers: so before each
//!   timed batch the worker seals its frames on the peers' side of the tunnels (a second,
//!   "mirror" snapshot holding the peers' halves of the same sessions), untimed, with
//!   `encap_batch` itself, which takes the counters from the peer session's shared atomic send
//!   counter. A worker opens its frames right after sealing them, so the counters arriving at
//!   the shared replay window stay within a few batches of each other, far inside its
//!   8192-counter window; a frame that still fell behind is counted as a drop and reported.
//!
//! Only the pipeline call (snapshot load included) is timed, as in the `pipeline` suite:
//! a worker's rate is its packets over its time inside `encap_batch`/`decap_batch`, and the
//! total is the sum over workers, who all start together (barrier) and run for the same
//! duration. For decap about half of each worker's time goes to the untimed sealing, so the
//! shared replay window sees roughly half the traffic it would from workers that only
//! decapsulate: one-peer decap contention is, if anything, understated.
//!
//! Scaling efficiency is `rate(N) / (N * rate(1))` with both rates measured in the same
//! invocation, interleaved (every worker count once per run, runs repeated), medians of the
//! runs. Workers are placed one per physical core first (sysfs topology), SMT siblings only
//! once every physical core has a worker; the table says how many workers share a core.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use warpline_dataplane::aead::Suite;
use warpline_dataplane::allowed_ips::IpPrefix;
use warpline_dataplane::pipeline::{
    DROP_REASONS, DropCounters, DropReason, Events, HEADROOM, L2Info, TAILROOM, Verdict,
    decap_batch, encap_batch,
};
use warpline_dataplane::session::SessionParams;
use warpline_dataplane::sessions::{Endpoint, PeerId, SessionTable, SharedSession, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::{IpProtocol, ipv4};
use warpline_dataplane::worker::pin_to_core;

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{Row, machine, median, output_path, write_json};
use crate::suites::pipeline::frame_refs;

const BATCH: usize = 64;
const SIZES: [usize; 2] = [64, 1420];
const PEERS_PER_WORKER: u32 = 64;
const DEFAULT_WORKERS: [usize; 5] = [1, 2, 4, 8, 12];
const MTU: usize = 1420;
/// Sessions are established at time zero and never expire at this time.
const NOW: Time = Time::from_secs(1);
/// Batches each worker runs before the barrier: faults in its buffers, warms caches and
/// branch predictors, and checks that every frame of the first batch goes through.
const WARMUP_BATCHES: usize = 32;

const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const PEERS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEERS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const PORT: u16 = 51820;

/// What the command line asked for.
#[derive(Debug, Default)]
pub struct Options {
    /// Short runs, for smoke tests.
    pub quick: bool,
    /// Worker counts to measure (`--workers 1,2,4`); default 1, 2, 4, 8, 12.
    pub workers: Option<Vec<usize>>,
    /// Seconds each point runs (`--seconds`).
    pub seconds: Option<f64>,
    /// Runs of every point; the median is reported (`--runs`, at least 3 by default).
    pub runs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    ManyPeers,
    OnePeer,
}

impl Layout {
    const ALL: [Layout; 2] = [Layout::ManyPeers, Layout::OnePeer];

    fn name(self) -> &'static str {
        match self {
            Layout::ManyPeers => "many peers",
            Layout::OnePeer => "one peer",
        }
    }

    /// The peers worker `worker` sends to and receives from.
    fn peers_of(self, worker: usize) -> std::ops::Range<u32> {
        match self {
            Layout::ManyPeers => {
                let first = worker as u32 * PEERS_PER_WORKER;
                first..first + PEERS_PER_WORKER
            }
            Layout::OnePeer => 0..1,
        }
    }

    fn peer_count(self, workers: usize) -> u32 {
        match self {
            Layout::ManyPeers => workers as u32 * PEERS_PER_WORKER,
            Layout::OnePeer => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encap,
    Decap,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Encap, Direction::Decap];

    fn name(self) -> &'static str {
        match self {
            Direction::Encap => "encap",
            Direction::Decap => "decap",
        }
    }
}

/// One series of the suite: worker counts vary along it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    layout: Layout,
    direction: Direction,
    size: usize,
}

impl Case {
    fn all() -> Vec<Case> {
        let mut cases = Vec::new();
        for layout in Layout::ALL {
            for direction in Direction::ALL {
                for size in SIZES {
                    cases.push(Case {
                        layout,
                        direction,
                        size,
                    });
                }
            }
        }
        cases
    }

    fn name(self) -> String {
        format!(
            "{} {} {} B",
            self.layout.name(),
            self.direction.name(),
            self.size
        )
    }
}

/// What one worker did during one measurement.
#[derive(Debug, Clone, Copy, Default)]
struct WorkerTally {
    /// Packets that came out as expected (encap: `ToOuter`, decap: `ToInner`).
    delivered: u64,
    /// Every other verdict.
    dropped: u64,
    /// Drops by reason.
    drops: [u64; DROP_REASONS],
    /// Time inside the pipeline calls.
    busy: Duration,
    /// Time from the barrier to the stop.
    wall: Duration,
}

/// One measurement of N workers: the sum of their rates and how they spent their time.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Sum over workers of delivered packets per second of pipeline time.
    packets_per_s: f64,
    /// Dropped / (delivered + dropped).
    drop_share: f64,
    /// Pipeline time / wall time, averaged over workers.
    busy_share: f64,
    /// Drops by reason, summed over workers.
    drops: [u64; DROP_REASONS],
}

// ---------------------------------------------------------------------------------------------
// CPUs

/// The CPUs this process may run on, in the order workers get them: one per physical core
/// first, then the SMT siblings. Each entry says whether its core already had a worker.
#[derive(Debug, Clone)]
pub(crate) struct CpuPlan {
    /// (cpu, shares its physical core with an earlier entry)
    cpus: Vec<(usize, bool)>,
}

impl CpuPlan {
    pub(crate) fn discover() -> Result<Self, String> {
        let allowed = allowed_cpus()?;
        // (package, core) of each CPU from sysfs; a CPU whose topology is unreadable counts as
        // a core of its own.
        let core_of = |cpu: usize| {
            let read = |field: &str| {
                std::fs::read_to_string(format!(
                    "/sys/devices/system/cpu/cpu{cpu}/topology/{field}"
                ))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
            };
            match (read("physical_package_id"), read("core_id")) {
                (Some(package), Some(core)) => (package, core),
                _ => (-1, cpu as i64),
            }
        };
        let mut seen = Vec::new();
        let (mut first, mut siblings) = (Vec::new(), Vec::new());
        for cpu in allowed {
            let core = core_of(cpu);
            if seen.contains(&core) {
                siblings.push((cpu, true));
            } else {
                seen.push(core);
                first.push((cpu, false));
            }
        }
        first.extend(siblings);
        Ok(Self { cpus: first })
    }

    pub(crate) fn len(&self) -> usize {
        self.cpus.len()
    }

    /// The CPU the `i`-th worker gets.
    pub(crate) fn cpu(&self, i: usize) -> usize {
        self.cpus[i].0
    }

    /// Workers among the first `workers` that share a physical core with another.
    fn shared_cores(&self, workers: usize) -> usize {
        let shared = self.cpus[..workers].iter().filter(|c| c.1).count();
        // A sibling pair counts both of its workers.
        (shared * 2).min(workers)
    }

    pub(crate) fn describe(&self, workers: usize) -> String {
        let list: Vec<String> = self.cpus[..workers]
            .iter()
            .map(|(cpu, _)| cpu.to_string())
            .collect();
        list.join(",")
    }
}

/// The CPUs in this thread's affinity mask (what `taskset`/cgroups allow), ascending.
fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: cpu_set_t is plain data (a bit array); all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A receiver index that looks random, as the control plane's are; `salt` keeps the two
/// sides' indices apart. Odd multiplier and xor: distinct for distinct peers.
fn index(peer: u32, salt: u32) -> u32 {
    peer.wrapping_mul(0x9e37_79b1) ^ salt
}

/// A 32-byte key per peer and direction.
fn key(peer: u32, direction: u8) -> [u8; 32] {
    let mut key = [direction; 32];
    key[..4].copy_from_slice(&peer.to_le_bytes());
    key
}

/// `10.<net>.<peer / 256>.<peer % 256>`: peer addresses (net 1) and, on the peers' side, the
/// addresses that route back to each peer's session (net 2).
fn peer_address(net: u8, peer: u32) -> Ipv4Addr {
    let [lo, hi, ..] = peer.to_le_bytes();
    Ipv4Addr::new(10, net, hi, lo)
}

fn shared_session(
    local: u32,
    remote: u32,
    peer: u32,
    mut send: [u8; 32],
    mut recv: [u8; 32],
) -> Arc<SharedSession> {
    let params = SessionParams {
        local_index: local,
        remote_index: remote,
        suite: Suite::ChaCha20Poly1305,
        we_initiated: false,
        established: Time::ZERO,
    };
    Arc::new(SharedSession::new(
        &params,
        PeerId(peer),
        &mut send,
        &mut recv,
        0,
    ))
}

/// One end of peer `k`'s tunnel: (local, remote) indices, (send, receive) keys, the far end's
/// address and MAC, and the inner address routed into the tunnel.
struct Side {
    indices: (u32, u32),
    keys: ([u8; 32], [u8; 32]),
    far_end: (Ipv4Addr, [u8; 6]),
    routed: Ipv4Addr,
}

impl Side {
    fn install(self, snapshot: &mut Snapshot, k: u32) {
        let (local, remote) = self.indices;
        let (send, receive) = self.keys;
        snapshot.install(shared_session(local, remote, k, send, receive));
        snapshot.peer_mut(PeerId(k)).endpoint = Some(Endpoint {
            addr: (self.far_end.0, PORT).into(),
            mac: self.far_end.1,
            local: None,
        });
        snapshot
            .routes_mut()
            .insert(IpPrefix::host(self.routed.into()), PeerId(k));
    }
}

/// The gateway under test (published in a [`SessionTable`]) and the peers' halves of the same
/// tunnels (the mirror, which only seals decap traffic). Peer `k` of the gateway is peer `k` of
/// the mirror; its allowed IP is `10.1.x.y`, and the mirror routes `10.2.x.y` to it.
struct Fixture {
    table: SessionTable,
    mirror: Snapshot,
    gateway_l2: L2Info,
    mirror_l2: L2Info,
}

impl Fixture {
    fn new(layout: Layout, workers: usize) -> Self {
        let peers = layout.peer_count(workers);
        assert!(peers <= 1 << 16, "peer addresses have 16 bits");
        let mut gateway = Snapshot::new();
        let mut mirror = Snapshot::new();
        for k in 0..peers {
            let (to_peer, to_gateway) = (key(k, 0x11), key(k, 0x22));
            let (gateway_index, peer_index) = (index(k, 0x5bd1_e995), index(k, 0x2545_f491));
            let gateway_side = Side {
                indices: (gateway_index, peer_index),
                keys: (to_peer, to_gateway),
                far_end: (PEERS_IP, PEERS_MAC),
                routed: peer_address(1, k),
            };
            gateway_side.install(&mut gateway, k);
            let mirror_side = Side {
                indices: (peer_index, gateway_index),
                keys: (to_gateway, to_peer),
                far_end: (GATEWAY_IP, GATEWAY_MAC),
                routed: peer_address(2, k),
            };
            mirror_side.install(&mut mirror, k);
        }
        let l2 = |mac, ip| L2Info {
            src_mac: mac,
            vlan_tci: None,
            local_v4: Some(ip),
            local_v6: None,
            port: PORT,
            ttl: 64,
            mtu: MTU,
        };
        Self {
            table: SessionTable::new(gateway),
            mirror,
            gateway_l2: l2(GATEWAY_MAC, GATEWAY_IP),
            mirror_l2: l2(PEERS_MAC, PEERS_IP),
        }
    }
}

/// An IPv4/UDP packet of `len` bytes from `src` to `dst`.
pub(crate) fn inner_packet(len: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut packet = vec![0x5a; len];
    let mut ip = ipv4::Packet::new_unchecked(&mut packet[..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(len as u16);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    packet
}

// ---------------------------------------------------------------------------------------------
// Workers

/// One worker's batch: frame buffers it owns (allocated on its own thread, so on its own NUMA
/// node), the inner packets to restore, and where each frame's packet lies.
struct Batch {
    case: Case,
    buffers: Vec<Vec<u8>>,
    inner: Vec<Vec<u8>>,
    outer: [(usize, usize); BATCH],
    verdicts: [Verdict; BATCH],
    counters: DropCounters,
    mirror_counters: DropCounters,
    events: Events,
}

/// Bytes of the inner header the seal overwrites and encap needs back.
const INNER_HEADER: usize = 20;

impl Batch {
    fn new(case: Case, worker: usize) -> Self {
        let peers: Vec<u32> = case.layout.peers_of(worker).collect();
        let inner: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| {
                let peer = peers[i % peers.len()];
                match case.direction {
                    // From the gateway's LAN to the peer.
                    Direction::Encap => {
                        inner_packet(case.size, Ipv4Addr::new(10, 0, 0, 1), peer_address(1, peer))
                    }
                    // From the peer (its allowed IP) to whatever the mirror routes back to it.
                    Direction::Decap => {
                        inner_packet(case.size, peer_address(1, peer), peer_address(2, peer))
                    }
                }
            })
            .collect();
        let buffers = inner
            .iter()
            .map(|packet| {
                let mut buffer = vec![0u8; HEADROOM + case.size + TAILROOM];
                buffer[HEADROOM..HEADROOM + case.size].copy_from_slice(packet);
                buffer
            })
            .collect();
        Self {
            case,
            buffers,
            inner,
            outer: [(HEADROOM, case.size); BATCH],
            verdicts: [Verdict::ToControl; BATCH],
            counters: DropCounters::default(),
            mirror_counters: DropCounters::default(),
            events: Events::new(),
        }
    }

    /// Untimed work before a batch: put back what the last batch consumed; for decap, seal
    /// fresh frames on the peers' side.
    fn prepare(&mut self, fixture: &Fixture) {
        let size = self.case.size;
        match self.case.direction {
            Direction::Encap => {
                for (buffer, inner) in self.buffers.iter_mut().zip(&self.inner) {
                    let header = INNER_HEADER.min(size);
                    buffer[HEADROOM..HEADROOM + header].copy_from_slice(&inner[..header]);
                }
            }
            Direction::Decap => {
                // A decapsulated frame holds its inner packet in place again (decryption is in
                // place); only frames that were dropped still hold ciphertext.
                for ((buffer, inner), verdict) in
                    self.buffers.iter_mut().zip(&self.inner).zip(&self.verdicts)
                {
                    if !matches!(verdict, Verdict::ToInner { .. }) {
                        buffer[HEADROOM..HEADROOM + size].copy_from_slice(inner);
                    }
                }
                let mut frames = frame_refs(&mut self.buffers, |_| (HEADROOM, size));
                encap_batch(
                    NOW,
                    &fixture.mirror,
                    &mut frames,
                    &mut self.verdicts,
                    &mut self.mirror_counters,
                    &mut self.events,
                    &fixture.mirror_l2,
                );
                self.events.clear();
                for (place, verdict) in self.outer.iter_mut().zip(&self.verdicts) {
                    *place = match *verdict {
                        Verdict::ToOuter { offset, len } => (offset, len),
                        // Not sealed (cannot happen with a sound fixture): decap drops it.
                        _ => (0, 0),
                    };
                }
            }
        }
    }

    /// The timed part: one pipeline call on the snapshot the reader has now.
    fn process(&mut self, snapshot: &Snapshot, fixture: &Fixture) {
        let size = self.case.size;
        match self.case.direction {
            Direction::Encap => {
                let mut frames = frame_refs(&mut self.buffers, |_| (HEADROOM, size));
                encap_batch(
                    NOW,
                    snapshot,
                    &mut frames,
                    &mut self.verdicts,
                    &mut self.counters,
                    &mut self.events,
                    &fixture.gateway_l2,
                );
            }
            Direction::Decap => {
                let outer = &self.outer;
                let mut frames = frame_refs(&mut self.buffers, |i| outer[i]);
                decap_batch(
                    NOW,
                    snapshot,
                    &mut frames,
                    &mut self.verdicts,
                    &mut self.counters,
                    &mut self.events,
                );
            }
        }
        // A real worker drains its events after every batch; there should be none here.
        self.events.clear();
    }

    /// Delivered packets so far: what the direction is supposed to produce.
    fn delivered(&self) -> u64 {
        match self.case.direction {
            Direction::Encap => self.counters.to_outer,
            Direction::Decap => self.counters.to_inner,
        }
    }

    fn dropped(&self) -> u64 {
        let all = self.counters.to_outer
            + self.counters.to_inner
            + self.counters.to_control
            + self.counters.keepalives
            + self.counters.total_drops();
        all - self.delivered()
    }

    /// Whether every frame of the last batch came out as it should.
    fn check_last(&self) -> Result<(), String> {
        let size = self.case.size;
        let wrong = self.verdicts.iter().find(|v| match self.case.direction {
            Direction::Encap => !matches!(v, Verdict::ToOuter { .. }),
            Direction::Decap => !matches!(v, Verdict::ToInner { len, .. } if *len == size),
        });
        match wrong {
            None => Ok(()),
            Some(v) => Err(format!("{}: unexpected verdict {v:?}", self.case.name())),
        }
    }
}

/// One worker thread: pin, build its batch, warm up, wait for the others, run until `stop`.
fn run_worker(
    case: Case,
    worker: usize,
    cpu: usize,
    fixture: &Fixture,
    start: &Barrier,
    stop: &AtomicBool,
) -> Result<WorkerTally, String> {
    let setup = || -> Result<(Batch, _), String> {
        pin_to_core(cpu).map_err(|e| format!("cannot pin worker {worker} to CPU {cpu}: {e}"))?;
        let mut batch = Batch::new(case, worker);
        let mut reader = fixture.table.reader();
        for round in 0..WARMUP_BATCHES {
            batch.prepare(fixture);
            batch.process(reader.load(), fixture);
            if round == 0 {
                batch.check_last()?;
            }
        }
        batch.counters = DropCounters::default();
        Ok((batch, reader))
    };
    let prepared = setup();
    // Every worker reaches the barrier, even one that failed, so none waits forever.
    start.wait();
    let (mut batch, mut reader) = prepared?;
    let started = Instant::now();
    let mut busy = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        batch.prepare(fixture);
        let timer = Instant::now();
        batch.process(reader.load(), fixture);
        busy += timer.elapsed();
    }
    black_box(&batch.buffers);
    Ok(WorkerTally {
        delivered: batch.delivered(),
        dropped: batch.dropped(),
        drops: batch.counters.drops,
        busy,
        wall: started.elapsed(),
    })
}

/// Runs `workers` workers on the first CPUs of `plan` for `duration`.
fn measure(
    case: Case,
    workers: usize,
    plan: &CpuPlan,
    duration: Duration,
) -> Result<Sample, String> {
    let fixture = Fixture::new(case.layout, workers);
    let start = Barrier::new(workers + 1);
    let stop = AtomicBool::new(false);
    let tallies: Vec<Result<WorkerTally, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan.cpus[..workers]
            .iter()
            .enumerate()
            .map(|(worker, &(cpu, _))| {
                let (fixture, start, stop) = (&fixture, &start, &stop);
                std::thread::Builder::new()
                    .name(format!("scale-{worker}"))
                    .spawn_scoped(scope, move || {
                        run_worker(case, worker, cpu, fixture, start, stop)
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        start.wait();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let tallies = tallies.into_iter().collect::<Result<Vec<_>, _>>()?;
    let packets_per_s = tallies
        .iter()
        .map(|t| t.delivered as f64 / t.busy.as_secs_f64().max(1e-9))
        .sum();
    let (delivered, dropped) = tallies
        .iter()
        .fold((0, 0), |(d, x), t| (d + t.delivered, x + t.dropped));
    let busy_share = tallies
        .iter()
        .map(|t| t.busy.as_secs_f64() / t.wall.as_secs_f64().max(1e-9))
        .sum::<f64>()
        / workers as f64;
    let mut drops = [0; DROP_REASONS];
    for t in &tallies {
        for (sum, n) in drops.iter_mut().zip(t.drops) {
            *sum += n;
        }
    }
    Ok(Sample {
        drops,
        packets_per_s,
        drop_share: dropped as f64 / (delivered + dropped).max(1) as f64,
        busy_share,
    })
}

// ---------------------------------------------------------------------------------------------
// The suite

/// Worker counts to measure: the request clamped to the CPUs there are, deduplicated, sorted,
/// with 1 always included (efficiency is relative to one worker).
pub(crate) fn worker_counts(requested: &[usize], available: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = requested
        .iter()
        .map(|&n| n.clamp(1, available))
        .chain([1])
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// Medians of one (case, worker count) point over the runs.
#[derive(Debug, Clone, Copy)]
struct Point {
    workers: usize,
    packets_per_s: f64,
    spread: f64,
    drop_share: f64,
    busy_share: f64,
}

fn summarise(workers: usize, samples: &[Sample]) -> Point {
    let rates: Vec<f64> = samples.iter().map(|s| s.packets_per_s).collect();
    let middle = median(rates.clone());
    let (low, high) = rates
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
    Point {
        workers,
        packets_per_s: middle,
        spread: (high - low) / middle,
        drop_share: median(samples.iter().map(|s| s.drop_share).collect()),
        busy_share: median(samples.iter().map(|s| s.busy_share).collect()),
    }
}

/// Runs the suite and publishes its table, JSON and chart.
pub fn run(options: &Options) -> Result<(), String> {
    let plan = CpuPlan::discover()?;
    let requested = options.workers.as_deref().unwrap_or(&DEFAULT_WORKERS);
    if requested.contains(&0) {
        return Err("--workers: counts start at 1".into());
    }
    let counts = worker_counts(requested, plan.len());
    if requested.iter().any(|&n| n > plan.len()) {
        println!(
            "scale: only {} CPUs available; worker counts clamped to {counts:?}",
            plan.len()
        );
    }
    let seconds = options
        .seconds
        .unwrap_or(if options.quick { 0.1 } else { 1.0 });
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let duration = Duration::from_secs_f64(seconds);
    let runs = options.runs.unwrap_or(3).max(1);
    let cases = Case::all();
    let max_workers = *counts.last().expect("1 is always measured");
    println!(
        "scale: {} cases x workers {counts:?} x {runs} runs, {seconds} s each (about {:.0} s); \
         CPUs in order {}",
        cases.len(),
        (cases.len() * counts.len() * runs) as f64 * (seconds + 0.02),
        plan.describe(max_workers)
    );

    let mut progress = Progress::new("scale", cases.len() * counts.len() * runs);
    // samples[case][count] over runs, interleaved: each run measures every count of a case
    // back to back, so rate(N) and rate(1) see the same neighbours.
    let mut samples = vec![vec![Vec::new(); counts.len()]; cases.len()];
    for run in 0..runs {
        for (case_samples, &case) in samples.iter_mut().zip(&cases) {
            for (count_samples, &workers) in case_samples.iter_mut().zip(&counts) {
                progress.step(format_args!(
                    "run {}/{runs}: {}, {workers} worker{}",
                    run + 1,
                    case.name(),
                    if workers == 1 { "" } else { "s" }
                ));
                count_samples.push(measure(case, workers, &plan, duration)?);
            }
        }
    }
    progress.finish();

    let mut rows = Vec::new();
    let mut results = Vec::new();
    for (case, case_samples) in cases.iter().zip(&samples) {
        let points: Vec<Point> = counts
            .iter()
            .zip(case_samples)
            .map(|(&workers, s)| summarise(workers, s))
            .collect();
        let single = points[0].packets_per_s;
        for p in &points {
            rows.push(Row {
                name: format!("{}, {} workers", case.name(), p.workers),
                figures: vec![
                    ("workers", p.workers as f64),
                    ("size_B", case.size as f64),
                    ("Mpps", p.packets_per_s / 1e6),
                    ("Gbit_s", p.packets_per_s * case.size as f64 * 8.0 / 1e9),
                    ("Mpps_per_worker", p.packets_per_s / p.workers as f64 / 1e6),
                    ("efficiency", p.packets_per_s / (p.workers as f64 * single)),
                    ("spread_pct", p.spread * 100.0),
                    ("drop_pct", p.drop_share * 100.0),
                    ("busy_pct", p.busy_share * 100.0),
                    ("smt_shared", plan.shared_cores(p.workers) as f64),
                ],
            });
        }
        results.push((*case, points));
    }
    print_table(&results, &plan);
    println!(
        "  {seconds} s per point, median of {runs} runs; rates count time inside the pipeline \
         calls only (busy = that time / wall time); spread = (max - min) / median over runs"
    );
    write_json("scale", &rows)?;
    println!("  scaling efficiency at {max_workers} workers (1.00 = linear):");
    for (case, points) in &results {
        let last = points.last().expect("a point per count");
        println!(
            "    {:<26} {:>5.2}  ({:.2} Mpps with 1 worker, {:.2} with {})",
            case.name(),
            last.packets_per_s / (last.workers as f64 * points[0].packets_per_s),
            points[0].packets_per_s / 1e6,
            last.packets_per_s / 1e6,
            last.workers
        );
    }
    let mut drops = [0u64; DROP_REASONS];
    for sample in samples.iter().flatten().flatten() {
        for (sum, n) in drops.iter_mut().zip(sample.drops) {
            *sum += n;
        }
    }
    if drops.iter().any(|&n| n > 0) {
        let reasons: Vec<String> = DropReason::ALL
            .iter()
            .zip(drops)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{} {n}", reason.name()))
            .collect();
        println!(
            "  drops over all runs: {} (too_old: a worker fell more than the replay window \
             behind the others, e.g. preempted)",
            reasons.join(", ")
        );
    }
    chart::draw(
        &output_path("scale", "svg")?,
        &format!("warpline scale: in-process workers, {}", machine()),
        &chart_panels(&results),
        2,
    )
}

fn print_table(results: &[(Case, Vec<Point>)], plan: &CpuPlan) {
    println!("\nscale — {}", machine());
    println!(
        "  {:<26} {:>7} {:>8} {:>8} {:>11} {:>10} {:>7} {:>6} {:>5} {:>11}",
        "case",
        "workers",
        "Mpps",
        "Gbit/s",
        "Mpps/worker",
        "efficiency",
        "spread",
        "drops",
        "busy",
        "SMT shared"
    );
    for (case, points) in results {
        let single = points[0].packets_per_s;
        for p in points {
            println!(
                "  {:<26} {:>7} {:>8.2} {:>8.2} {:>11.2} {:>10.2} {:>6.0}% {:>5.1}% {:>4.0}% {:>11}",
                case.name(),
                p.workers,
                p.packets_per_s / 1e6,
                p.packets_per_s * case.size as f64 * 8.0 / 1e9,
                p.packets_per_s / p.workers as f64 / 1e6,
                p.packets_per_s / (p.workers as f64 * single),
                p.spread * 100.0,
                p.drop_share * 100.0,
                p.busy_share * 100.0,
                plan.shared_cores(p.workers)
            );
        }
    }
}

/// Per size: total Mpps against workers, and scaling efficiency against workers.
fn chart_panels(results: &[(Case, Vec<Point>)]) -> Vec<Panel> {
    let mut panels = Vec::new();
    for size in SIZES {
        let of_size: Vec<&(Case, Vec<Point>)> =
            results.iter().filter(|(c, _)| c.size == size).collect();
        let series = |figure: &dyn Fn(&Point, &Point) -> f64| {
            of_size
                .iter()
                .map(|(case, points)| {
                    Series::line(
                        format!("{} {}", case.layout.name(), case.direction.name()),
                        points
                            .iter()
                            .map(|p| (p.workers as f64, figure(p, &points[0])))
                            .collect(),
                    )
                })
                .collect::<Vec<_>>()
        };
        panels.push(Panel::Lines {
            title: format!("{size} B: total packet rate"),
            x_label: "workers".into(),
            y_label: "Mpps (sum over workers)".into(),
            series: series(&|p, _| p.packets_per_s / 1e6),
            reference: None,
        });
        panels.push(Panel::Lines {
            title: format!("{size} B: scaling efficiency, rate(N) / (N x rate(1))"),
            x_label: "workers".into(),
            y_label: "efficiency".into(),
            series: series(&|p, one| p.packets_per_s / (p.workers as f64 * one.packets_per_s)),
            reference: Some(1.0),
        });
    }
    panels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counts_are_clamped_deduplicated_and_start_at_one() {
        assert_eq!(worker_counts(&[1, 2, 4, 8, 12], 2), vec![1, 2]);
        assert_eq!(worker_counts(&[1, 2, 4, 8, 12], 6), vec![1, 2, 4, 6]);
        assert_eq!(worker_counts(&[4, 2], 16), vec![1, 2, 4]);
    }

    /// Every case's fixture works for every worker of a multi-worker layout: encap produces
    /// frames, decap opens the sealed frames, with no drop, batch after batch.
    #[test]
    fn every_case_delivers_every_frame_for_every_worker() {
        const WORKERS: usize = 3;
        for case in Case::all() {
            let fixture = Fixture::new(case.layout, WORKERS);
            let mut readers: Vec<_> = (0..WORKERS).map(|_| fixture.table.reader()).collect();
            let mut batches: Vec<_> = (0..WORKERS).map(|w| Batch::new(case, w)).collect();
            // Interleave workers, as concurrent ones would reach the shared session.
            for _ in 0..3 {
                for (batch, reader) in batches.iter_mut().zip(&mut readers) {
                    batch.prepare(&fixture);
                    batch.process(reader.load(), &fixture);
                    batch.check_last().unwrap();
                }
            }
            for batch in &batches {
                assert_eq!(batch.delivered(), 3 * BATCH as u64, "{}", case.name());
                assert_eq!(batch.dropped(), 0, "{}", case.name());
            }
        }
    }

    /// With one peer, both workers seal with the one session: its send counter moved for both.
    #[test]
    fn one_peer_workers_take_counters_from_the_same_session() {
        let case = Case {
            layout: Layout::OnePeer,
            direction: Direction::Encap,
            size: 64,
        };
        let fixture = Fixture::new(case.layout, 2);
        let mut reader = fixture.table.reader();
        let mut first = Batch::new(case, 0);
        let mut second = Batch::new(case, 1);
        for batch in [&mut first, &mut second] {
            batch.prepare(&fixture);
            batch.process(reader.load(), &fixture);
        }
        let snapshot = reader.load();
        let session = snapshot
            .peer(PeerId(0))
            .and_then(|p| p.current.as_ref())
            .unwrap();
        assert_eq!(session.next_send_counter(), 2 * BATCH as u64);
    }

    #[test]
    fn the_cpu_plan_lists_each_allowed_cpu_once() {
        let plan = CpuPlan::discover().unwrap();
        let mut cpus: Vec<usize> = plan.cpus.iter().map(|c| c.0).collect();
        let count = cpus.len();
        cpus.sort_unstable();
        cpus.dedup();
        assert_eq!(cpus.len(), count);
        assert!(count >= 1);
        assert_eq!(plan.shared_cores(1), 0);
    }
}
