//! One tunnel's decryption spread over three workers ([`Spread`]), on real threads: every
//! frame comes back, in the order it arrived, however the helpers race; a replayed frame is
//! still refused; and most chunks really were decrypted by the helpers.
//!
//! Needs root only to create the UMEMs' AF_XDP sockets (no NIC is touched); skips with a
//! printed reason otherwise.

mod pipeline_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pipeline_support::*;
use warpline_dataplane::pipeline::{DropCounters, DropReason, Events, Verdict};
use warpline_dataplane::spread::{Job, Spread};
use warpline_dataplane::xsk::{Packet, Umem, UmemConfig};

const FRAMES: usize = 2_000;
const BATCH: usize = 64;
const FRAME_SIZE: u32 = 2048;

fn umem() -> (Umem, Vec<warpline_dataplane::xsk::Frame>) {
    Umem::new(UmemConfig {
        frame_size: FRAME_SIZE,
        frame_count: 512,
        headroom: 0,
    })
    .expect("UMEM")
}

/// A dispatcher and two helper threads that help until `stop`.
struct Workers {
    dispatcher_umem: Umem,
    pool: Vec<warpline_dataplane::xsk::Frame>,
    dispatcher: Spread,
    stop: Arc<AtomicBool>,
    helpers: Vec<std::thread::JoinHandle<usize>>,
}

fn workers(now: warpline_dataplane::time::Time) -> Workers {
    let (dispatcher_umem, pool) = umem();
    let (helper_umems, _): (Vec<Umem>, Vec<_>) = (0..2).map(|_| umem()).unzip();
    let mut spreads = Spread::mesh(
        &[dispatcher_umem.clone()]
            .into_iter()
            .chain(helper_umems)
            .collect::<Vec<_>>(),
    )
    .expect("mesh");
    let stop = Arc::new(AtomicBool::new(false));
    let helpers = spreads
        .drain(1..)
        .map(|mut spread| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut helped = 0;
                while !stop.load(Ordering::Relaxed) {
                    helped += spread.help(now);
                }
                helped
            })
        })
        .collect();
    let dispatcher = spreads.pop().expect("the dispatcher's spread");
    Workers {
        dispatcher_umem,
        pool,
        dispatcher,
        stop,
        helpers,
    }
}

/// Stops the helpers; returns how many chunks they processed.
fn stop_helpers(stop: &AtomicBool, helpers: Vec<std::thread::JoinHandle<usize>>) -> usize {
    stop.store(true, Ordering::Relaxed);
    helpers.into_iter().map(|h| h.join().unwrap()).sum()
}

/// The sequence number an inner packet carries (its last four bytes).
fn sequence(inner: &[u8]) -> u32 {
    u32::from_be_bytes(inner[inner.len() - 4..].try_into().unwrap())
}

#[test]
fn spread_decryption_keeps_arrival_order_and_refuses_replays() {
    if !warpline_dataplane::lab::root_or_skip() {
        return;
    }
    let now = ESTABLISHED + std::time::Duration::from_secs(1);
    // Side A seals FRAMES numbered inner packets of mixed sizes; side B's workers open them.
    let sender = side_a(false, 0);
    let mut inners = Vec::new();
    for seq in 0..FRAMES as u32 {
        let len = [60, 200, 1400][seq as usize % 3];
        let mut inner = inner_packet(v4([10, 1, 0, 1]), v4([10, 2, 0, 1]), len, 7);
        inner[len - 4..].copy_from_slice(&seq.to_be_bytes());
        inners.push(inner);
    }
    let (buffers, verdicts) = encap(
        now,
        &sender,
        &l2_a(None),
        &inners,
        &mut DropCounters::default(),
        &mut Events::new(),
    );
    let wire: Vec<Vec<u8>> = buffers
        .iter()
        .zip(verdicts)
        .map(|(buf, verdict)| outer_frame(buf, verdict))
        .collect();

    let receiver = Arc::new(side_b(false));
    let Workers {
        dispatcher_umem,
        mut pool,
        mut dispatcher,
        stop,
        helpers,
    } = workers(now);

    // Feeds `frames` through the dispatcher in batches; returns what came out, in order.
    let mut run = |frames: &[Vec<u8>],
                   dealt: &mut usize|
     -> (Vec<Verdict>, Vec<u32>, DropCounters) {
        let mut verdicts = Vec::new();
        let mut sequences = Vec::new();
        let mut counters = DropCounters::default();
        let mut events = Events::new();
        let mut next = 0;
        while next < frames.len() || !dispatcher.is_idle() {
            let room = dispatcher.capacity().min(BATCH);
            let mut batch = Vec::new();
            for wire in frames[next..].iter().take(room) {
                let mut frame = pool.pop().expect("free frame");
                dispatcher_umem.frame_bytes_mut(&mut frame)[256..256 + wire.len()]
                    .copy_from_slice(wire);
                batch.push(Packet::new(frame, 256, wire.len() as u32, FRAME_SIZE).unwrap());
            }
            next += batch.len();
            *dealt += dispatcher.dispatch(&mut batch, &dispatcher_umem, now, &receiver, Job::Decap);
            while let Some(mut chunk) = dispatcher.next_done() {
                counters.absorb(&mut chunk.counters);
                events.absorb(&mut chunk.events);
                let chunk_verdicts = chunk.verdicts;
                for (mut packet, verdict) in chunk.packets.drain(..).zip(chunk_verdicts) {
                    if let Verdict::ToInner { offset, len, .. } = verdict {
                        let frame = dispatcher_umem.packet_frame_mut(&mut packet);
                        sequences.push(sequence(&frame[offset..offset + len]));
                    }
                    verdicts.push(verdict);
                    pool.push(packet.into_frame());
                }
                dispatcher.recycle(chunk);
            }
        }
        (verdicts, sequences, counters)
    };

    let mut dealt = 0;
    let (verdicts, sequences, counters) = run(&wire, &mut dealt);
    assert_eq!(verdicts.len(), FRAMES, "every frame comes back");
    assert_eq!(
        sequences,
        (0..FRAMES as u32).collect::<Vec<_>>(),
        "frames must come out in arrival order, all of them decrypted"
    );
    assert_eq!(counters.to_inner, FRAMES as u64);
    // Three workers deal round robin: about two thirds of the chunks go to the helpers.
    let chunks = FRAMES.div_ceil(16);
    assert!(
        dealt * 2 >= chunks,
        "only {dealt} of {chunks} chunks went to helpers"
    );

    // The same frames again, and a few of them once more: every one is a replay.
    let replays: Vec<Vec<u8>> = wire
        .iter()
        .chain(wire.iter().step_by(97))
        .cloned()
        .collect();
    let (verdicts, sequences, counters) = run(&replays, &mut dealt);
    assert!(sequences.is_empty(), "a replayed frame was accepted");
    assert!(
        verdicts
            .iter()
            .all(|v| *v == Verdict::Drop(DropReason::Replayed)),
        "replays must be dropped as replayed: {:?}",
        counters.drops
    );
    assert_eq!(counters.get(DropReason::Replayed), replays.len() as u64);

    let helped = stop_helpers(&stop, helpers);
    assert_eq!(
        helped, dealt,
        "helpers decrypted exactly the chunks dealt to them"
    );
}

#[test]
fn spread_encryption_keeps_order_and_every_counter_unique() {
    if !warpline_dataplane::lab::root_or_skip() {
        return;
    }
    let now = ESTABLISHED + std::time::Duration::from_secs(1);
    let sender = Arc::new(side_a(false, 0));
    let Workers {
        dispatcher_umem,
        mut pool,
        mut dispatcher,
        stop,
        helpers,
    } = workers(now);
    let job = Job::Encap(l2_a(None));
    let mut wire = Vec::new();
    let mut next = 0u32;
    while next < FRAMES as u32 || !dispatcher.is_idle() {
        let mut batch = Vec::new();
        while batch.len() < BATCH.min(dispatcher.capacity()) && next < FRAMES as u32 {
            let len = [60, 200, 1400][next as usize % 3];
            let mut inner = inner_packet(v4([10, 1, 0, 1]), v4([10, 2, 0, 1]), len, 7);
            inner[len - 4..].copy_from_slice(&next.to_be_bytes());
            let mut frame = pool.pop().expect("free frame");
            dispatcher_umem.frame_bytes_mut(&mut frame)[256..256 + len].copy_from_slice(&inner);
            batch.push(Packet::new(frame, 256, len as u32, FRAME_SIZE).unwrap());
            next += 1;
        }
        dispatcher.dispatch(&mut batch, &dispatcher_umem, now, &sender, job);
        assert!(
            batch.is_empty(),
            "dispatch left frames behind within its capacity"
        );
        while let Some(mut chunk) = dispatcher.next_done() {
            let verdicts = chunk.verdicts;
            for (mut packet, verdict) in chunk.packets.drain(..).zip(verdicts) {
                let frame = dispatcher_umem.packet_frame_mut(&mut packet);
                wire.push(outer_frame(frame, verdict));
                pool.push(packet.into_frame());
            }
            dispatcher.recycle(chunk);
        }
    }
    stop_helpers(&stop, helpers);
    // Side B opens them in the order they left: all accepted, numbers in order.
    let receiver = side_b(false);
    let mut counters = DropCounters::default();
    let mut sequences = Vec::new();
    for frames in wire.chunks(BATCH) {
        let (buffers, verdicts) = decap(now, &receiver, frames, &mut counters, &mut Events::new());
        for (buf, verdict) in buffers.iter().zip(verdicts) {
            let Verdict::ToInner { offset, len, .. } = verdict else {
                panic!("not accepted: {verdict:?}");
            };
            sequences.push(sequence(&buf[offset..offset + len]));
        }
    }
    assert_eq!(sequences, (0..FRAMES as u32).collect::<Vec<_>>());
}
