//! `pipeline`: the batch hot path on one core, in memory, against what bounds it.
//!
//! For each inner packet size (64, 128, 512, 1420 B), in batches of 64:
//! - warpline `encap_batch` (route, counter, pad, seal, WireGuard/UDP/IPv4/Ethernet headers with
//!   full checksums) and `decap_batch` (parse, session lookup, replay check, open, replay
//!   commit, inner header and allowed-IPs check, endpoint check);
//! - raw AEAD alone (`PacketKey::seal_in_place` / `open_in_place`, ChaCha20-Poly1305, same
//!   padded sizes): the ceiling, so `x_raw_aead` is the pipeline's efficiency;
//! - boringtun's `Tunn::encapsulate` / `Tunn::decapsulate` on an established pair: equivalent
//!   work (boringtun writes into a separate buffer and builds no UDP/IP/Ethernet headers, which
//!   favours it), so `x_boringtun` is per-packet throughput relative to it.
//!
//! Only the batch call is timed; preparing the next batch (restoring inner headers for
//! encapsulation, sealing fresh counters for decapsulation, so the replay window never sees a
//! counter twice) happens outside the clock. Cases are interleaved round by round and the
//! median round is reported, because the benchmark machine is shared and noisy.
//!
//! Then the two lookups every packet makes, each against a baseline in the same run:
//! - session lookup by receiver index in a snapshot of 100k sessions, against a std `HashMap`
//!   with its default (SipHash) hasher holding the same `Arc`s;
//! - allowed-IPs longest-prefix match (`AllowedIps`, the routing trie) in tables of 10k and 1M
//!   random prefixes per family (IPv4: 60% /32, 30% /24, 10% /8-/31; IPv6: 60% /128, 30% /64,
//!   10% /16-/127), looking up 64k addresses inside random inserted prefixes and 64k uniform
//!   random addresses, against one `BTreeMap` per prefix length probed longest first (the
//!   answers of both are compared first). The same tables as
//!   `dataplane/examples/allowed_ips_lookup.rs`, which also reports build time and memory.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::aead::{PacketKey, Suite};
use warpline_dataplane::allowed_ips::{AllowedIps, IpPrefix};
use warpline_dataplane::pipeline::{
    DropCounters, Events, FrameRef, HEADROOM, L2Info, TAILROOM, Verdict, decap_batch, encap_batch,
};
use warpline_dataplane::session::SessionParams;
use warpline_dataplane::sessions::{Endpoint, PeerId, SharedSession, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::{IpProtocol, checksum, ipv4};

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{Row, machine, median, output_path, publish};

const SIZES: [usize; 4] = [64, 128, 512, 1420];
const BATCH: usize = 64;
const MTU: usize = 1420;
const NOW: Time = Time::from_secs(1);

/// Times `timed` (one batch) repeatedly, running `prepare` untimed before each, until the
/// timed total reaches `budget`; returns packets per second.
fn batch_rate(
    case: &mut Case,
    budget: Duration,
    prepare: fn(&mut Case),
    timed: fn(&mut Case),
) -> f64 {
    let mut spent = Duration::ZERO;
    let mut batches = 0u64;
    while spent < budget {
        prepare(case);
        let start = Instant::now();
        timed(case);
        spent += start.elapsed();
        batches += 1;
    }
    (batches * BATCH as u64) as f64 / spent.as_secs_f64()
}

fn session(local: u32, remote: u32, send: [u8; 32], recv: [u8; 32]) -> Arc<SharedSession> {
    let params = SessionParams {
        local_index: local,
        remote_index: remote,
        suite: Suite::ChaCha20Poly1305,
        we_initiated: false,
        established: Time::ZERO,
    };
    let (mut send, mut recv) = (send, recv);
    Arc::new(SharedSession::new(
        &params,
        PeerId(0),
        &mut send,
        &mut recv,
        0,
    ))
}

/// Both sides of one tunnel: A (10.1/16) routes 10.2/16 to B, B routes 10.1/16 to A.
pub(crate) fn snapshots() -> (Snapshot, Snapshot, L2Info) {
    let (k_ab, k_ba) = ([0x11; 32], [0x22; 32]);
    let mut a = Snapshot::new();
    a.install(session(1, 2, k_ab, k_ba));
    a.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: "192.0.2.11:51820".parse().expect("address"),
        mac: [2, 0, 0, 0, 0, 0xb],
        local: None,
    });
    a.routes_mut()
        .insert("10.2.0.0/16".parse().expect("prefix"), PeerId(0));
    let mut b = Snapshot::new();
    b.install(session(2, 1, k_ba, k_ab));
    b.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: "192.0.2.10:51820".parse().expect("address"),
        mac: [2, 0, 0, 0, 0, 0xa],
        local: None,
    });
    b.routes_mut()
        .insert("10.1.0.0/16".parse().expect("prefix"), PeerId(0));
    let l2 = L2Info {
        src_mac: [2, 0, 0, 0, 0, 0xa],
        vlan_tci: None,
        local_v4: Some(Ipv4Addr::new(192, 0, 2, 10)),
        local_v6: None,
        port: 51820,
        ttl: 64,
        mtu: MTU,
    };
    (a, b, l2)
}

fn inner_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    let mut ip = ipv4::Packet::new_unchecked(&mut p[..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(len as u16);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr(Ipv4Addr::new(10, 1, 0, 5));
    ip.set_dst_addr(Ipv4Addr::new(10, 2, 0, 7));
    ip.fill_checksum();
    p
}

/// One size's fixtures: warpline frames, raw AEAD buffers, a boringtun pair.
struct Case {
    size: usize,
    inner: Vec<u8>,
    a: Snapshot,
    b: Snapshot,
    l2: L2Info,
    frames: Vec<Vec<u8>>,
    outer: Vec<(usize, usize)>,
    verdicts: Vec<Verdict>,
    counters: DropCounters,
    events: Events,
    key_send: PacketKey,
    key_recv: PacketKey,
    raw: Vec<Vec<u8>>,
    raw_counter: u64,
    bt_a: Tunn,
    bt_b: Tunn,
    bt_wire: Vec<Vec<u8>>,
    bt_out: Vec<Vec<u8>>,
}

fn boringtun_pair() -> (Tunn, Tunn) {
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let tunn = |own: &PrivateKey, peer: &PrivateKey, index| {
        Tunn::new(
            x25519_dalek::StaticSecret::from(*own.as_bytes()),
            x25519_dalek::PublicKey::from(peer.public_key().0),
            None,
            None,
            index,
            None,
        )
    };
    let (mut a, mut b) = (tunn(&ka, &kb, 1), tunn(&kb, &ka, 2));
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let init = match a.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        other => panic!("boringtun made no initiation: {other:?}"),
    };
    // Pump messages between the two until neither has anything to send.
    let mut to_b = vec![init];
    let mut to_a: Vec<Vec<u8>> = Vec::new();
    let src: IpAddr = Ipv4Addr::LOCALHOST.into();
    for _ in 0..8 {
        for m in std::mem::take(&mut to_b) {
            if let TunnResult::WriteToNetwork(d) = b.decapsulate(Some(src), &m, &mut out) {
                to_a.push(d.to_vec());
            }
        }
        for m in std::mem::take(&mut to_a) {
            if let TunnResult::WriteToNetwork(d) = a.decapsulate(Some(src), &m, &mut out) {
                to_b.push(d.to_vec());
            }
        }
    }
    (a, b)
}

impl Case {
    fn new(size: usize) -> Self {
        let (a, b, l2) = snapshots();
        let inner = inner_packet(size);
        let padded = size.next_multiple_of(16).min(MTU);
        let (bt_a, bt_b) = boringtun_pair();
        let mut case = Self {
            size,
            frames: vec![vec![0u8; HEADROOM + size + TAILROOM]; BATCH],
            outer: vec![(0, 0); BATCH],
            verdicts: vec![Verdict::ToControl; BATCH],
            counters: DropCounters::default(),
            events: Events::new(),
            key_send: PacketKey::new(Suite::ChaCha20Poly1305, &[0x33; 32]),
            key_recv: PacketKey::new(Suite::ChaCha20Poly1305, &[0x33; 32]),
            raw: vec![vec![0x5a; padded + 16]; BATCH],
            raw_counter: 0,
            bt_a,
            bt_b,
            bt_wire: vec![Vec::new(); BATCH],
            bt_out: vec![vec![0u8; size + 256]; BATCH],
            inner,
            a,
            b,
            l2,
        };
        // Check that every path really works before timing it.
        case.prepare_encap();
        case.encap();
        assert!(
            case.verdicts
                .iter()
                .all(|v| matches!(v, Verdict::ToOuter { .. })),
            "encap failed: {:?}",
            case.verdicts[0]
        );
        case.prepare_decap();
        case.decap();
        assert!(
            case.verdicts
                .iter()
                .all(|v| matches!(v, Verdict::ToInner { len, .. } if *len == size)),
            "decap failed: {:?}",
            case.verdicts[0]
        );
        case.prepare_bt_decap();
        case.bt_decap();
        case
    }

    fn prepare_encap(&mut self) {
        // The previous run sealed the inner packet: put its header back (the payload's
        // contents do not matter to the timing).
        let header = 20.min(self.size);
        for f in &mut self.frames {
            f[HEADROOM..HEADROOM + header].copy_from_slice(&self.inner[..header]);
        }
    }

    fn encap(&mut self) {
        let size = self.size;
        let mut frames: [FrameRef<'_>; BATCH] = frame_refs(&mut self.frames, |_| (HEADROOM, size));
        encap_batch(
            NOW,
            &self.a,
            &mut frames,
            &mut self.verdicts,
            &mut self.counters,
            &mut self.events,
            &self.l2,
        );
    }

    fn prepare_decap(&mut self) {
        self.prepare_encap();
        self.encap();
        for (o, v) in self.outer.iter_mut().zip(&self.verdicts) {
            if let Verdict::ToOuter { offset, len } = *v {
                *o = (offset, len);
            }
        }
    }

    fn decap(&mut self) {
        let outer = &self.outer;
        let mut frames: [FrameRef<'_>; BATCH] = frame_refs(&mut self.frames, |i| outer[i]);
        decap_batch(
            NOW,
            &self.b,
            &mut frames,
            &mut self.verdicts,
            &mut self.counters,
            &mut self.events,
        );
    }

    fn raw_seal(&mut self) {
        let padded = self.raw[0].len() - 16;
        for buf in &mut self.raw {
            self.raw_counter += 1;
            self.key_send
                .seal_in_place(self.raw_counter, &[], buf, padded)
                .expect("room for the tag");
        }
    }

    fn raw_open(&mut self) {
        let first = self.raw_counter + 1 - BATCH as u64;
        for (i, buf) in self.raw.iter_mut().enumerate() {
            let len = self
                .key_recv
                .open_in_place(first + i as u64, &[], buf)
                .expect("authentic");
            black_box(len);
        }
    }

    fn bt_encap(&mut self) {
        for out in &mut self.bt_out {
            match self.bt_a.encapsulate(&self.inner, out) {
                TunnResult::WriteToNetwork(d) => {
                    black_box(d.len());
                }
                other => panic!("boringtun did not encapsulate: {other:?}"),
            }
        }
    }

    fn prepare_bt_decap(&mut self) {
        for (wire, out) in self.bt_wire.iter_mut().zip(&mut self.bt_out) {
            match self.bt_a.encapsulate(&self.inner, out) {
                TunnResult::WriteToNetwork(d) => {
                    wire.clear();
                    wire.extend_from_slice(d);
                }
                other => panic!("boringtun did not encapsulate: {other:?}"),
            }
        }
    }

    fn bt_decap(&mut self) {
        let src: IpAddr = Ipv4Addr::LOCALHOST.into();
        for (wire, out) in self.bt_wire.iter().zip(&mut self.bt_out) {
            match self.bt_b.decapsulate(Some(src), wire, out) {
                TunnResult::WriteToTunnelV4(p, _) => {
                    black_box(p.len());
                }
                other => panic!("boringtun did not decapsulate: {other:?}"),
            }
        }
    }
}

/// `BATCH` frames over `bufs`, frame `i` at `place(i)` = (offset, len). The scale suite uses
/// it too.
pub(crate) fn frame_refs<'a>(
    bufs: &'a mut [Vec<u8>],
    place: impl Fn(usize) -> (usize, usize),
) -> [FrameRef<'a>; BATCH] {
    let mut iter = bufs.iter_mut().enumerate();
    std::array::from_fn(|_| {
        let (i, buf) = iter.next().expect("BATCH buffers");
        let (offset, len) = place(i);
        FrameRef::new(buf, offset, len)
    })
}

const KINDS: [&str; 6] = [
    "warpline encap_batch",
    "raw AEAD seal",
    "boringtun encapsulate",
    "warpline decap_batch",
    "raw AEAD open",
    "boringtun decapsulate",
];

/// One step of a measurement: prepare a batch, or process it.
type Step = fn(&mut Case);

fn measure(case: &mut Case, kind: usize, budget: Duration) -> f64 {
    let nothing: Step = |_| {};
    let (prepare, timed): (Step, Step) = match kind {
        0 => (Case::prepare_encap, Case::encap),
        1 => (nothing, Case::raw_seal),
        2 => (nothing, Case::bt_encap),
        3 => (Case::prepare_decap, Case::decap),
        4 => (Case::raw_seal, Case::raw_open),
        _ => (Case::prepare_bt_decap, Case::bt_decap),
    };
    batch_rate(case, budget, prepare, timed)
}

/// The UDP checksum `encap_batch` computes over each outer datagram (WireGuard header,
/// padded payload, tag, UDP header): measured alone, it attributes the size-dependent part
/// of the encapsulation overhead.
fn checksum_rows(quick: bool) -> Vec<Row> {
    let budget = Duration::from_millis(if quick { 20 } else { 100 });
    SIZES
        .iter()
        .map(|&size| {
            let datagram = vec![0xa5u8; 8 + 16 + size.next_multiple_of(16).min(MTU) + 16];
            let per_s = median(
                (0..5)
                    .map(|_| {
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < budget {
                            for _ in 0..64 {
                                black_box(checksum::sum(black_box(&datagram)));
                            }
                            n += 64;
                        }
                        n as f64 / start.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            Row {
                name: format!("wire::checksum::sum of the datagram @ {size} B"),
                figures: vec![("Mpps", per_s / 1e6), ("ns", 1e9 / per_s)],
            }
        })
        .collect()
}

fn lookups(quick: bool) -> Vec<Row> {
    const SESSIONS: u32 = 100_000;
    let mut snapshot = Snapshot::new();
    let mut baseline: HashMap<u32, Arc<SharedSession>> = HashMap::new();
    let mut x = 0x9e37_79b9u32;
    let mut indices = Vec::with_capacity(SESSIONS as usize);
    for _ in 0..SESSIONS {
        // xorshift: random-looking indices, as the control plane picks them.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let s = session(x, x, [1; 32], [2; 32]);
        snapshot.insert_session(Arc::clone(&s));
        baseline.insert(x, s);
        indices.push(x);
    }
    // Probe in a shuffled order, so consecutive lookups hit unrelated buckets.
    let probes: Vec<u32> = (0..1usize << 20)
        .map(|i| indices[(i.wrapping_mul(2_654_435_761)) % indices.len()])
        .collect();
    let budget = Duration::from_millis(if quick { 30 } else { 200 });
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let per_s = |f: &dyn Fn(u32) -> bool| {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < budget {
            for &p in &probes[(n % probes.len())..][..4096.min(probes.len() - n % probes.len())] {
                black_box(f(black_box(p)));
                n += 1;
            }
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    for _ in 0..5 {
        ours.push(per_s(&|i| snapshot.session(i).is_some()));
        theirs.push(per_s(&|i| baseline.contains_key(&i)));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    vec![
        Row {
            name: "session lookup, 100k sessions (Snapshot)".into(),
            figures: vec![
                ("Mlookups_s", ours / 1e6),
                ("ns", 1e9 / ours),
                ("x_baseline", ours / theirs),
            ],
        },
        Row {
            name: "  same, std HashMap (SipHash)".into(),
            figures: vec![
                ("Mlookups_s", theirs / 1e6),
                ("ns", 1e9 / theirs),
                ("x_baseline", 1.0),
            ],
        },
    ]
}

/// splitmix64: deterministic prefixes and addresses, no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `a` with only its first `len` of `bits` bits kept.
fn mask(a: u128, len: u8, bits: u8) -> u128 {
    let keep = u128::MAX.checked_shl(u32::from(bits - len)).unwrap_or(0);
    let width = u128::MAX >> (128 - u32::from(bits));
    a & keep & width
}

/// Allowed-IPs lookups in tables of 10k and 1M prefixes per family, trie against one
/// `BTreeMap` per prefix length; `Err` if the two ever disagree.
fn allowed_ips_rows(quick: bool, progress: &mut Progress) -> Result<Vec<Row>, String> {
    let budget = Duration::from_millis(if quick { 30 } else { 200 });
    let mut rng = SplitMix(0x5eed);
    let mut rows = Vec::new();
    for (family, bits, common) in [("IPv4", 32u8, [32u8, 24]), ("IPv6", 128, [128, 64])] {
        for count in [10_000usize, 1_000_000] {
            progress.step(format_args!("allowed IPs, {family}, {count} prefixes"));
            let mut table = AllowedIps::new();
            let mut by_len: Vec<BTreeMap<u128, u32>> = vec![BTreeMap::new(); usize::from(bits) + 1];
            let mut prefixes = Vec::with_capacity(count);
            let random = |rng: &mut SplitMix| {
                mask(
                    (u128::from(rng.next()) << 64) | u128::from(rng.next()),
                    bits,
                    bits,
                )
            };
            for i in 0..count {
                let len = match rng.below(100) {
                    0..60 => common[0],
                    60..90 => common[1],
                    _ => 8 + rng.below(u64::from(bits - 8)) as u8,
                };
                let a = mask(random(&mut rng), len, bits);
                let ip = if bits == 32 {
                    IpAddr::V4(Ipv4Addr::from(a as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                let prefix = IpPrefix::new(ip, len).map_err(|e| format!("prefix: {e:?}"))?;
                table.insert(prefix, i as u32);
                by_len[usize::from(len)].insert(a, i as u32);
                prefixes.push((a, len));
            }
            let lens: Vec<u8> = (0..=bits)
                .rev()
                .filter(|&l| !by_len[usize::from(l)].is_empty())
                .collect();
            let naive = |a: u128| {
                lens.iter()
                    .find_map(|&len| by_len[usize::from(len)].get(&mask(a, len, bits)).copied())
            };
            let trie = |a: u128| {
                if bits == 32 {
                    table.lookup_v4(a as u32)
                } else {
                    table.lookup_v6(a)
                }
            };
            // Addresses inside a random inserted prefix (every lookup matches something) and
            // uniform random ones (most miss or match a short prefix).
            let inside: Vec<u128> = (0..1 << 16)
                .map(|_| {
                    let (a, len) = prefixes[rng.below(count as u64) as usize];
                    a | (random(&mut rng) & !mask(u128::MAX, len, bits))
                })
                .collect();
            let uniform: Vec<u128> = (0..1 << 16).map(|_| random(&mut rng)).collect();
            let label = if count >= 1_000_000 { "1M" } else { "10k" };
            for (what, addresses) in [
                ("addresses in the table", inside),
                ("uniform addresses", uniform),
            ] {
                if let Some(&a) = addresses.iter().find(|&&a| trie(a) != naive(a)) {
                    return Err(format!(
                        "allowed IPs: the trie and the baseline disagree on {a:#x} ({family}, \
                         {count})"
                    ));
                }
                let per_s = |f: &dyn Fn(u128) -> Option<u32>| {
                    let start = Instant::now();
                    let mut n = 0usize;
                    while start.elapsed() < budget {
                        for &a in &addresses[n % addresses.len()..][..4096] {
                            black_box(f(black_box(a)));
                        }
                        n += 4096;
                    }
                    n as f64 / start.elapsed().as_secs_f64()
                };
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                for _ in 0..5 {
                    ours.push(per_s(&trie));
                    theirs.push(per_s(&naive));
                }
                let (ours, theirs) = (median(ours), median(theirs));
                rows.push(Row {
                    name: format!("allowed-IPs lookup, {family}, {label} prefixes, {what} (trie)"),
                    figures: vec![
                        ("Mlookups_s", ours / 1e6),
                        ("ns", 1e9 / ours),
                        ("x_baseline", ours / theirs),
                    ],
                });
                rows.push(Row {
                    name: "  same, BTreeMap per prefix length".into(),
                    figures: vec![
                        ("Mlookups_s", theirs / 1e6),
                        ("ns", 1e9 / theirs),
                        ("x_baseline", 1.0),
                    ],
                });
            }
        }
    }
    Ok(rows)
}

/// Runs the suite and publishes its table.
pub fn run(quick: bool) -> Result<(), String> {
    let budget = Duration::from_millis(if quick { 20 } else { 150 });
    let rounds = if quick { 3 } else { 7 };
    let mut progress = Progress::new("pipeline", SIZES.len() * (rounds + 1) + 2 + 4);
    let mut cases: Vec<Case> = SIZES
        .iter()
        .map(|&s| {
            progress.step(format_args!(
                "preparing {s} B fixtures (warpline, raw AEAD, boringtun pair)"
            ));
            Case::new(s)
        })
        .collect();
    let mut samples = vec![vec![Vec::new(); KINDS.len()]; SIZES.len()];
    for round in 0..rounds {
        for ((case, case_samples), size) in cases.iter_mut().zip(&mut samples).zip(SIZES) {
            progress.step(format_args!(
                "round {}/{rounds} (interleaved, medians): {size} B",
                round + 1
            ));
            for (kind, kind_samples) in case_samples.iter_mut().enumerate() {
                kind_samples.push(measure(case, kind, budget));
            }
        }
    }
    let mut rows = Vec::new();
    let mut verdict = Vec::new();
    // Mpps per kind, per size, for the chart.
    let mut mpps: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    for (c, &size) in SIZES.iter().enumerate() {
        let rates: Vec<f64> = samples[c].iter().cloned().map(median).collect();
        for (kind_mpps, rate) in mpps.iter_mut().zip(&rates) {
            kind_mpps.push(rate / 1e6);
        }
        for (kind, name) in KINDS.iter().enumerate() {
            let (raw, bt) = if kind < 3 {
                (rates[1], rates[2])
            } else {
                (rates[4], rates[5])
            };
            rows.push(Row {
                name: format!("{name} @ {size} B"),
                figures: vec![
                    ("Mpps", rates[kind] / 1e6),
                    ("Gbit_s", rates[kind] * size as f64 * 8.0 / 1e9),
                    ("x_raw_aead", rates[kind] / raw),
                    ("x_boringtun", rates[kind] / bt),
                ],
            });
        }
        for (name, ours, raw, bt) in [
            ("encap", rates[0], rates[1], rates[2]),
            ("decap", rates[3], rates[4], rates[5]),
        ] {
            verdict.push((name, size, ours / raw, ours / bt));
        }
    }
    progress.step("UDP checksum");
    rows.extend(checksum_rows(quick));
    progress.step("session lookup, 100k sessions");
    rows.extend(lookups(quick));
    rows.extend(allowed_ips_rows(quick, &mut progress)?);
    progress.finish();
    publish("pipeline", &rows)?;
    let panel = |title: &str, kinds: std::ops::Range<usize>| Panel::Bars {
        title: title.into(),
        y_label: "Mpps (one core, 64-packet batches)".into(),
        groups: SIZES.iter().map(|s| format!("{s} B")).collect(),
        series: kinds
            .map(|k| Series::bars(KINDS[k], mpps[k].iter().copied()))
            .collect(),
    };
    chart::draw(
        &output_path("pipeline", "svg")?,
        &format!(
            "warpline pipeline: in-memory data path on one core, {}",
            machine()
        ),
        &[
            panel("encapsulation (seal)", 0..3),
            panel("decapsulation (open)", 3..6),
        ],
        2,
    )?;
    println!(
        "  targets: >= 0.95 x raw AEAD at 1420 B, >= 0.75 at 64 B, >= 1.2 x boringtun at 64 B"
    );
    for (name, size, x_raw, x_bt) in verdict {
        let raw_target = match size {
            1420 => Some(0.95),
            64 => Some(0.75),
            _ => None,
        };
        let mut line =
            format!("    {name} @ {size:>4} B: {x_raw:.2} x raw AEAD, {x_bt:.2} x boringtun");
        if let Some(t) = raw_target {
            line += if x_raw >= t {
                "  [raw: met]"
            } else {
                "  [raw: NOT met]"
            };
        }
        if size == 64 {
            line += if x_bt >= 1.2 {
                " [boringtun: met]"
            } else {
                " [boringtun: NOT met]"
            };
        }
        println!("{line}");
    }
    Ok(())
}
