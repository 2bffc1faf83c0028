//! The data plane's receive path, [`decap_batch`], on hostile frames: outer Ethernet/IP/UDP
//! parsing, the transport header, the session lookup, the replay window, AEAD opening, inner
//! IP parsing and the allowed-IPs source check, over batches and across batches.
//!
//! The input is a program of frames. A frame is either raw bytes, or built by the harness:
//! a transport message sealed with a lab session's key (or the wrong key) around a plaintext
//! the fuzzer chooses, optionally with one byte of the finished frame flipped. Frames can be
//! replayed, their descriptors bent out of their buffer, and batches cut anywhere.
//!
//! Asserts, per frame: raw bytes and wrong-key frames never authenticate; a frame that did
//! authenticate carried a counter the replay model had not accepted (no replay gets
//! through, across batches too); an intact sealed frame is refused only for a reason that
//! applies to it (expired session, replay model), and once authenticated gets exactly the
//! verdict its plaintext calls for, with the inner packet byte-identical; every `ToInner`
//! lies inside its buffer, parses as IP of the verdict's length and comes from a source its
//! peer is allowed; frames handed to the kernel or dropped before decryption are untouched;
//! the drop counters add up to the verdicts; endpoint events only name peers that
//! authenticated in that batch.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use warpline_dataplane::pipeline::{
    DropCounters, DropReason, Events, FrameRef, PeerId, Verdict, decap_batch,
};
use warpline_dataplane::replay::ReplayError;
use warpline_dataplane::sessions::{MAX_COUNTER_SPAN, REJECT_AFTER_TIME, Snapshot};
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::{ipv4, ipv6};

use crate::input::{Reader, Writer};
use crate::lab::{self, FrameSpec, LabSession, SESSIONS};
use crate::model::ReplayModel;

/// Frames per batch at most (the workers use 64; fewer keeps inputs short).
const MAX_BATCH: usize = 32;
/// Frames per input at most, so one input cannot run for long.
const MAX_FRAMES: usize = 256;

/// Where a frame came from, which decides what may become of it.
#[derive(Debug, Clone)]
enum Origin {
    /// Bytes from the fuzzer: it cannot know a key, so they must never authenticate.
    Raw,
    /// Sealed by the harness.
    Sealed(Sealed),
}

#[derive(Debug, Clone)]
struct Sealed {
    session: usize,
    counter: u64,
    /// The bytes that were sealed (plaintext plus any padding).
    sealed_plaintext: Vec<u8>,
    /// Where those bytes start in the frame.
    plaintext_offset: usize,
    /// Sealed with the other session's key: must never authenticate.
    wrong_key: bool,
    /// A byte of the frame was flipped after sealing.
    corrupted: bool,
}

#[derive(Debug, Clone)]
struct Frame {
    buffer: Vec<u8>,
    offset: usize,
    len: usize,
    origin: Origin,
    /// The descriptor no longer says where the frame was built.
    bent: bool,
}

/// The flag bits of a sealed-frame operation.
pub mod flags {
    /// Outer IPv6 (else IPv4).
    pub const IPV6: u8 = 1;
    /// An 802.1Q tag.
    pub const VLAN: u8 = 1 << 1;
    /// The second lab session (AES-256-GCM, peer 1), else the first.
    pub const SECOND_SESSION: u8 = 1 << 2;
    /// Seal with the other session's key.
    pub const WRONG_KEY: u8 = 1 << 3;
    /// Zero-pad the plaintext to a multiple of 16.
    pub const PAD: u8 = 1 << 4;
    /// Flip a byte of the finished frame.
    pub const CORRUPT: u8 = 1 << 5;
    /// Read an explicit counter (else the session's next one).
    pub const EXPLICIT_COUNTER: u8 = 1 << 6;
    /// Send from peer 0's known MAC (else a new one).
    pub const KNOWN_MAC: u8 = 1 << 7;
}

/// Seed-building operations, encoded as [`run`] decodes them.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    /// A raw frame at `headroom` bytes into its buffer.
    Raw {
        /// Bytes before the frame in its buffer.
        headroom: u8,
        /// The frame.
        frame: &'a [u8],
    },
    /// A sealed frame.
    Sealed {
        /// [`flags`] bits.
        flags: u8,
        /// Used with [`flags::EXPLICIT_COUNTER`].
        counter: u64,
        /// Low 32 bits of the outer source address.
        source: u32,
        /// Outer source port.
        port: u16,
        /// VLAN tag control information, with [`flags::VLAN`].
        tci: u16,
        /// What to seal.
        plaintext: &'a [u8],
        /// With [`flags::CORRUPT`]: which byte to flip, and how.
        flip: (u16, u8),
    },
    /// Send an earlier frame again.
    Replay(u8),
    /// Point the last frame's descriptor elsewhere.
    Bend {
        /// New offset.
        offset: u16,
        /// New length.
        len: u16,
    },
    /// Run the pending frames as one batch.
    Flush,
}

/// Encodes a seed: the time in seconds, then the operations.
pub fn encode(now_secs: u8, ops: &[Op<'_>]) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u8(now_secs);
    for op in ops {
        match op {
            Op::Raw { headroom, frame } => writer.u8(0).u8(*headroom).chunk(frame),
            Op::Sealed {
                flags: bits,
                counter,
                source,
                port,
                tci,
                plaintext,
                flip,
            } => {
                writer.u8(1).u8(*bits);
                if bits & flags::EXPLICIT_COUNTER != 0 {
                    writer.u64(*counter);
                }
                writer.u32(*source).u16(*port);
                if bits & flags::VLAN != 0 {
                    writer.u16(*tci);
                }
                writer.chunk(plaintext);
                if bits & flags::CORRUPT != 0 {
                    writer.u16(flip.0).u8(flip.1);
                }
                &mut writer
            }
            Op::Replay(index) => writer.u8(2).u8(*index),
            Op::Bend { offset, len } => writer.u8(3).u16(*offset).u16(*len),
            Op::Flush => writer.u8(4),
        };
    }
    writer.finish()
}

struct World {
    now: Time,
    snapshot: Snapshot,
    models: [ReplayModel; 2],
    next_counter: [u64; 2],
    history: Vec<Frame>,
    pending: Vec<Frame>,
    counters: DropCounters,
    events: Events,
}

/// One input: see the module docs.
pub fn run(data: &[u8]) {
    let mut input = Reader::new(data);
    let mut world = World {
        now: Time::from_secs(u64::from(input.u8())),
        snapshot: lab::receiver_snapshot(),
        models: std::array::from_fn(|_| ReplayModel::default().with_limit(MAX_COUNTER_SPAN)),
        next_counter: [0; 2],
        history: Vec::new(),
        pending: Vec::new(),
        counters: DropCounters::default(),
        events: Events::new(),
    };
    let mut built = 0;
    while !input.is_empty() && built < MAX_FRAMES {
        match input.u8() % 5 {
            0 => {
                let headroom = usize::from(input.u8() % 64);
                let bytes = input.chunk();
                world.push(placed(bytes, headroom, Origin::Raw));
                built += 1;
            }
            1 => {
                let frame = sealed_frame(&mut input, &mut world.next_counter);
                world.push(frame);
                built += 1;
            }
            2 => {
                let index = usize::from(input.u8());
                if !world.history.is_empty() {
                    let mut frame = world.history[index % world.history.len()].clone();
                    frame.bent = false;
                    world.push(frame);
                    built += 1;
                }
            }
            3 => {
                let (offset, len) = (usize::from(input.u16()), usize::from(input.u16()));
                if let Some(frame) = world.pending.last_mut() {
                    frame.offset = offset;
                    frame.len = len;
                    frame.bent = true;
                }
            }
            _ => world.flush(),
        }
        if world.pending.len() == MAX_BATCH {
            world.flush();
        }
    }
    world.flush();
}

/// `bytes` in a buffer of their own, `headroom` filler bytes in and some filler after.
fn placed(bytes: &[u8], headroom: usize, origin: Origin) -> Frame {
    let mut buffer = vec![0xa5; headroom];
    buffer.extend_from_slice(bytes);
    buffer.extend_from_slice(&[0x5a; 7]);
    Frame {
        buffer,
        offset: headroom,
        len: bytes.len(),
        origin,
        bent: false,
    }
}

fn sealed_frame(input: &mut Reader<'_>, next_counter: &mut [u64; 2]) -> Frame {
    let bits = input.u8();
    let session_number = usize::from(bits & flags::SECOND_SESSION != 0);
    let counter = if bits & flags::EXPLICIT_COUNTER != 0 {
        input.u64()
    } else {
        let counter = next_counter[session_number];
        next_counter[session_number] += 1;
        counter
    };
    let source_bits = input.u32();
    let port = input.u16();
    let source = if bits & flags::IPV6 != 0 {
        let address =
            Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000 | u128::from(source_bits));
        SocketAddr::V6(SocketAddrV6::new(address, port, 0, 0))
    } else {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(source_bits), port))
    };
    let vlan_tci = (bits & flags::VLAN != 0).then(|| input.u16());
    let plaintext = input.chunk();
    let session: &LabSession = &SESSIONS[session_number];
    let wrong_key = bits & flags::WRONG_KEY != 0;
    let key = lab::sender_key(&SESSIONS[session_number ^ usize::from(wrong_key)]);
    let spec = FrameSpec {
        vlan_tci,
        source,
        source_mac: if bits & flags::KNOWN_MAC != 0 {
            lab::PEER0_ENDPOINT.mac
        } else {
            [0x02, 0, 0, 0, 0x99, 0x01]
        },
        receiver_index: session.index,
        counter,
        plaintext,
        pad: bits & flags::PAD != 0,
    };
    let (mut bytes, plaintext_offset) = lab::build_frame(&spec, &key);
    let sealed_len = bytes.len() - plaintext_offset - 16;
    let sealed_plaintext = {
        let mut padded = plaintext.to_vec();
        padded.resize(sealed_len, 0);
        padded
    };
    let corrupted = bits & flags::CORRUPT != 0;
    if corrupted {
        let at = usize::from(input.u16()) % bytes.len();
        bytes[at] ^= input.u8() | 1;
    }
    let origin = Origin::Sealed(Sealed {
        session: session_number,
        counter,
        sealed_plaintext,
        plaintext_offset,
        wrong_key,
        corrupted,
    });
    placed(&bytes, 0, origin)
}

/// Whether a verdict means the AEAD tag verified.
fn authenticated(verdict: Verdict) -> bool {
    matches!(
        verdict,
        Verdict::ToInner { .. }
            | Verdict::Consumed
            | Verdict::Drop(
                DropReason::InnerMalformed | DropReason::NotIp | DropReason::SourceNotAllowed
            )
    )
}

/// Whether a verdict is reached before anything is decrypted, so the frame must be untouched.
/// (Replay-window refusals can also come after decryption: `accept` re-checks, for a racing
/// worker that accepted the same counter first.)
fn before_decryption(verdict: Verdict) -> bool {
    matches!(
        verdict,
        Verdict::ToControl
            | Verdict::Drop(DropReason::Malformed | DropReason::UnknownIndex | DropReason::Expired)
    )
}

fn replay_reason(error: ReplayError) -> DropReason {
    match error {
        ReplayError::Replayed => DropReason::Replayed,
        ReplayError::TooOld => DropReason::TooOld,
        ReplayError::LimitReached => DropReason::CounterExhausted,
    }
}

/// The verdict an authenticated, intact sealed frame must get, from its plaintext alone.
fn expected_after_authentication(
    snapshot: &Snapshot,
    sealed: &Sealed,
    frame_offset: usize,
) -> Verdict {
    let plain = &sealed.sealed_plaintext;
    if plain.is_empty() {
        return Verdict::Consumed;
    }
    let (source, len) = match plain[0] >> 4 {
        4 => match ipv4::Packet::new_checked(&plain[..]) {
            Ok(packet) => (
                IpAddr::from(packet.src_addr()),
                usize::from(packet.total_len()),
            ),
            Err(_) => return Verdict::Drop(DropReason::InnerMalformed),
        },
        6 => match ipv6::Packet::new_checked(&plain[..]) {
            Ok(packet) => (IpAddr::from(packet.src_addr()), packet.total_len()),
            Err(_) => return Verdict::Drop(DropReason::InnerMalformed),
        },
        _ => return Verdict::Drop(DropReason::NotIp),
    };
    let peer = SESSIONS[sealed.session].peer;
    if snapshot.routes().lookup(source) != Some(peer) {
        return Verdict::Drop(DropReason::SourceNotAllowed);
    }
    Verdict::ToInner {
        offset: frame_offset + sealed.plaintext_offset,
        len,
        peer,
    }
}

/// The inner packet's source and length, if `bytes` is a whole IPv4 or IPv6 packet.
fn inner_source(bytes: &[u8]) -> Option<(IpAddr, usize)> {
    match bytes.first()? >> 4 {
        4 => ipv4::Packet::new_checked(bytes)
            .ok()
            .map(|p| (IpAddr::from(p.src_addr()), usize::from(p.total_len()))),
        6 => ipv6::Packet::new_checked(bytes)
            .ok()
            .map(|p| (IpAddr::from(p.src_addr()), p.total_len())),
        _ => None,
    }
}

impl World {
    fn push(&mut self, frame: Frame) {
        if self.history.len() < MAX_FRAMES {
            self.history.push(frame.clone());
        }
        self.pending.push(frame);
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.pending);
        let before: Vec<Vec<u8>> = batch.iter().map(|f| f.buffer.clone()).collect();
        let mut verdicts = vec![Verdict::ToControl; batch.len()];
        let counters_before = self.counters.clone();
        self.events.clear();
        {
            let mut frames: Vec<FrameRef<'_>> = batch
                .iter_mut()
                .map(|f| FrameRef::new(&mut f.buffer, f.offset, f.len))
                .collect();
            decap_batch(
                self.now,
                &self.snapshot,
                &mut frames,
                &mut verdicts,
                &mut self.counters,
                &mut self.events,
            );
        }
        self.check_counters(&counters_before, &verdicts);

        let mut authenticated_peers = HashSet::new();
        for ((frame, verdict), original) in batch.iter().zip(&verdicts).zip(&before) {
            let verdict = *verdict;
            if before_decryption(verdict) {
                assert_eq!(
                    &frame.buffer, original,
                    "{verdict:?} changed the frame's bytes"
                );
            }
            if let Verdict::ToInner { offset, len, peer } = verdict {
                let inner = offset
                    .checked_add(len)
                    .and_then(|end| frame.buffer.get(offset..end))
                    .expect("ToInner points outside the frame buffer");
                let (source, inner_len) =
                    inner_source(inner).expect("ToInner is not a whole IP packet");
                assert_eq!(inner_len, len, "ToInner length is not the IP length");
                assert_eq!(
                    self.snapshot.routes().lookup(source),
                    Some(peer),
                    "inner source {source} is not allowed from {peer:?}"
                );
            }
            if authenticated(verdict) {
                let Origin::Sealed(sealed) = &frame.origin else {
                    panic!("a raw frame authenticated: {verdict:?}");
                };
                assert!(
                    !sealed.wrong_key,
                    "a frame sealed with the wrong key authenticated"
                );
                let fresh = self.models[sealed.session].accept(sealed.counter);
                assert_eq!(
                    fresh,
                    Ok(()),
                    "counter {} of session {} was accepted although the model refuses it",
                    sealed.counter,
                    sealed.session
                );
                authenticated_peers.insert(SESSIONS[sealed.session].peer);
            }
            if let Origin::Sealed(sealed) = &frame.origin
                && !sealed.wrong_key
                && !sealed.corrupted
                && !frame.bent
            {
                self.check_intact_sealed(sealed, frame.offset, verdict);
            }
        }
        for seen in self.events.endpoints() {
            assert!(
                authenticated_peers.contains(&seen.peer),
                "endpoint event for {:?}, which sent nothing authentic in this batch",
                seen.peer
            );
        }
        let handshakes: Vec<(PeerId, _)> = self.events.handshakes().collect();
        assert!(
            handshakes.is_empty(),
            "decap asked for handshakes: {handshakes:?}"
        );
    }

    /// A frame the harness sealed correctly and left alone.
    fn check_intact_sealed(&self, sealed: &Sealed, frame_offset: usize, verdict: Verdict) {
        let session = &SESSIONS[sealed.session];
        if authenticated(verdict) {
            let expected = expected_after_authentication(&self.snapshot, sealed, frame_offset);
            assert_eq!(
                verdict, expected,
                "authenticated frame got the wrong verdict"
            );
            return;
        }
        let expired = self.now.saturating_since(session.established) >= REJECT_AFTER_TIME;
        // The model already holds this frame's own acceptance if it had one, so "refused by
        // the model now" is what the window must have said.
        let replay = self.models[sealed.session].check(sealed.counter).err();
        let allowed: Vec<Verdict> = expired
            .then_some(DropReason::Expired)
            .into_iter()
            .chain(replay.map(replay_reason))
            .map(Verdict::Drop)
            .collect();
        assert!(
            allowed.contains(&verdict),
            "intact frame (counter {}, session {}) got {verdict:?}; reasons that apply: {allowed:?}",
            sealed.counter,
            sealed.session
        );
    }

    fn check_counters(&self, before: &DropCounters, verdicts: &[Verdict]) {
        let mut expected = before.clone();
        for verdict in verdicts {
            match *verdict {
                Verdict::ToInner { .. } => expected.to_inner += 1,
                Verdict::ToOuter { .. } => panic!("decap produced ToOuter"),
                Verdict::ToControl => expected.to_control += 1,
                Verdict::Consumed => expected.keepalives += 1,
                Verdict::Drop(reason) => expected.drops[reason as usize] += 1,
            }
        }
        assert_eq!(
            self.counters, expected,
            "drop counters do not match the verdicts"
        );
    }
}
