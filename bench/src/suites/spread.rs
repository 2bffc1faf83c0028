//! `spread`: one tunnel's packet rate with 1..N workers sharing its decryption
//! (`Spread = on`, [`warpline_dataplane::spread`]).
//!
//! A site-to-site tunnel arrives on one NIC queue, so one worker receives all of it. Here that
//! worker (the dispatcher, on the first CPU of the plan) takes rounds of 4,096 transport frames
//! of one session into its UMEM (a copy from a ciphertext buffer, standing in for the NIC's
//! DMA), deals them out in chunks through [`Spread`] to N - 1 helper threads pinned to their
//! own CPUs, and takes every frame back, in order, as the real worker does. With one worker
//! it runs `decap_batch` on 64-frame batches itself. The rate is frames over wall time, the
//! copy included for every worker count, medians of `--runs` runs, interleaved.
//!
//! Each round opens the same ciphertexts with a fresh receiving session (a new replay
//! window), published through a [`SessionTable`] as the control plane does, so every frame
//! is accepted and the round is the full decap path: parse, lookup, replay check, open,
//! allowed-IPs check.
//!
//! Needs root (the UMEMs are AF_XDP sockets' memory); no NIC, namespace or tool is used, so it
//! runs on the bare 16-core test machine.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use warpline_dataplane::pipeline::{
    DropCounters, Events, FrameRef, HEADROOM, TAILROOM, Verdict, decap_batch, encap_batch,
};
use warpline_dataplane::sessions::{SessionTable, Snapshot};
use warpline_dataplane::spread::{Job, Spread};
use warpline_dataplane::time::Time;
use warpline_dataplane::worker::pin_to_core;
use warpline_dataplane::xsk::{Frame, Packet, Umem, UmemConfig, raise_memlock_limit};

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{Row, machine, median, output_path, write_json};
use crate::suites::pipeline::snapshots;
use crate::suites::scale::{CpuPlan, Options, inner_packet, worker_counts};

const ROUND: usize = 4096;
const BATCH: usize = 64;
const SIZES: [usize; 2] = [64, 1420];
const DEFAULT_WORKERS: [usize; 5] = [1, 2, 4, 8, 12];
const FRAME_SIZE: u32 = 2048;
/// Where a received frame's packet starts, as AF_XDP places it.
const RX_OFFSET: usize = 256;
const NOW: Time = Time::from_secs(1);

/// The tunnel's transport frames, sealed once (the pipeline suite's tunnel, side A to B).
fn ciphertexts(size: usize) -> Result<Vec<Vec<u8>>, String> {
    let (sender, _, l2) = snapshots();
    let (sender_net, receiver_net) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1));
    let inner = inner_packet(size, sender_net, receiver_net);
    let mut out = Vec::with_capacity(ROUND);
    let mut verdicts = [Verdict::Consumed; BATCH];
    while out.len() < ROUND {
        let mut buffers: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| {
                let mut buf = vec![0u8; HEADROOM + size + TAILROOM];
                buf[HEADROOM..HEADROOM + size].copy_from_slice(&inner);
                buf
            })
            .collect();
        let mut frames: Vec<FrameRef<'_>> = buffers
            .iter_mut()
            .map(|buf| FrameRef::new(buf, HEADROOM, size))
            .collect();
        encap_batch(
            NOW,
            &sender,
            &mut frames,
            &mut verdicts,
            &mut DropCounters::default(),
            &mut Events::new(),
            &l2,
        );
        drop(frames);
        for (buf, verdict) in buffers.iter().zip(verdicts) {
            match verdict {
                Verdict::ToOuter { offset, len } => out.push(buf[offset..offset + len].to_vec()),
                other => return Err(format!("sealing a frame failed: {other:?}")),
            }
        }
    }
    out.truncate(ROUND);
    Ok(out)
}

/// Side B of the tunnel with a fresh session (a replay window that has seen nothing).
fn receiver() -> Snapshot {
    snapshots().1
}

fn umem(frames: u32) -> Result<(Umem, Vec<Frame>), String> {
    Umem::new(UmemConfig {
        frame_size: FRAME_SIZE,
        frame_count: frames,
        headroom: 0,
    })
    .map_err(|e| format!("UMEM: {e} (the spread suite needs root)"))
}

/// One measurement: frames per second through `workers` workers for `duration`.
fn measure(
    ciphertexts: &[Vec<u8>],
    workers: usize,
    plan: &CpuPlan,
    duration: Duration,
) -> Result<f64, String> {
    let (dispatcher_umem, mut pool) = umem((ROUND + BATCH * 4) as u32)?;
    let mut umems = vec![dispatcher_umem.clone()];
    for _ in 1..workers {
        umems.push(umem(64)?.0);
    }
    let mut spreads = Spread::mesh(&umems).map_err(|e| format!("linking workers: {e}"))?;
    let table = SessionTable::new(receiver());
    let stop = Arc::new(AtomicBool::new(false));
    let helpers: Vec<_> = spreads
        .drain(1..)
        .enumerate()
        .map(|(i, mut spread)| {
            let (stop, cpu) = (Arc::clone(&stop), plan.cpu(i + 1));
            std::thread::spawn(move || {
                let _ = pin_to_core(cpu);
                while !stop.load(Ordering::Relaxed) {
                    spread.help(NOW);
                }
            })
        })
        .collect();
    let mut dispatcher = spreads.pop().expect("the dispatcher's link");
    let _ = pin_to_core(plan.cpu(0));
    let mut reader = table.reader();
    let mut verdicts = [Verdict::Consumed; BATCH];
    let mut counters = DropCounters::default();
    let mut events = Events::new();
    let mut frames_done = 0usize;
    let mut accepted = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        table.publish(receiver());
        let mut next = 0;
        while next < ROUND || !dispatcher.is_idle() {
            let room = if workers == 1 {
                BATCH
            } else {
                dispatcher.capacity()
            }
            .min(BATCH);
            let mut batch = Vec::with_capacity(BATCH);
            for wire in ciphertexts[next..].iter().take(room) {
                let mut frame = pool.pop().ok_or("out of UMEM frames")?;
                dispatcher_umem.frame_bytes_mut(&mut frame)[RX_OFFSET..RX_OFFSET + wire.len()]
                    .copy_from_slice(wire);
                batch.push(
                    Packet::new(frame, RX_OFFSET as u32, wire.len() as u32, FRAME_SIZE)
                        .map_err(|_| "frame too small")?,
                );
            }
            next += batch.len();
            let snapshot = reader.load_shared();
            if workers == 1 {
                let count = batch.len();
                let mut refs: [FrameRef<'_>; BATCH] =
                    std::array::from_fn(|_| FrameRef::new(&mut [], 0, 0));
                for (slot, packet) in refs.iter_mut().zip(batch.iter_mut()) {
                    let (offset, len) = (packet.offset() as usize, packet.len() as usize);
                    *slot = FrameRef::new(dispatcher_umem.packet_frame_mut(packet), offset, len);
                }
                decap_batch(
                    NOW,
                    snapshot,
                    &mut refs[..count],
                    &mut verdicts[..count],
                    &mut counters,
                    &mut events,
                );
                pool.extend(batch.drain(..).map(Packet::into_frame));
                continue;
            }
            dispatcher.dispatch(&mut batch, &dispatcher_umem, NOW, snapshot, Job::Decap);
            while let Some(mut chunk) = dispatcher.next_done() {
                counters.absorb(&mut chunk.counters);
                events.absorb(&mut chunk.events);
                pool.extend(chunk.packets.drain(..).map(Packet::into_frame));
                dispatcher.recycle(chunk);
            }
        }
        frames_done += ROUND;
        accepted = counters.to_inner;
        events.clear();
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for helper in helpers {
        helper.join().map_err(|_| "a helper thread panicked")?;
    }
    if accepted != frames_done as u64 {
        return Err(format!(
            "{} of {frames_done} frames were not decrypted: {:?}",
            frames_done as u64 - accepted,
            counters.drops
        ));
    }
    Ok(frames_done as f64 / elapsed.as_secs_f64())
}

/// Runs the suite.
pub fn run(options: &Options) -> Result<(), String> {
    raise_memlock_limit().map_err(|e| format!("raising RLIMIT_MEMLOCK: {e}"))?;
    let plan = CpuPlan::discover()?;
    let requested = options.workers.as_deref().unwrap_or(&DEFAULT_WORKERS);
    if requested.contains(&0) {
        return Err("--workers: counts start at 1".into());
    }
    let counts = worker_counts(requested, plan.len());
    let seconds = options
        .seconds
        .unwrap_or(if options.quick { 0.2 } else { 1.0 });
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err("--seconds must be a positive number".into());
    }
    let runs = options.runs.unwrap_or(3).max(1);
    println!(
        "spread: one tunnel, sizes {SIZES:?} x workers {counts:?} x {runs} runs, {seconds} s \
         each; CPUs in order {}",
        plan.describe(*counts.last().expect("1 is always measured"))
    );
    let mut progress = Progress::new("spread", SIZES.len() * counts.len() * runs);
    let mut samples = vec![vec![Vec::new(); counts.len()]; SIZES.len()];
    for run in 0..runs {
        for (size_samples, &size) in samples.iter_mut().zip(&SIZES) {
            let frames = ciphertexts(size)?;
            for (count_samples, &workers) in size_samples.iter_mut().zip(&counts) {
                progress.step(format_args!(
                    "run {}/{runs}: {size} B, {workers} worker(s)",
                    run + 1
                ));
                count_samples.push(measure(
                    &frames,
                    workers,
                    &plan,
                    Duration::from_secs_f64(seconds),
                )?);
            }
        }
    }
    progress.finish();
    println!("\nspread — {}", machine());
    println!(
        "  {:>6} {:>8} {:>10} {:>10} {:>11}",
        "size", "workers", "Mpps", "Gbit/s", "efficiency"
    );
    let mut rows = Vec::new();
    let mut panels = Vec::new();
    for (size_samples, &size) in samples.iter().zip(&SIZES) {
        let rates: Vec<f64> = size_samples.iter().map(|s| median(s.clone())).collect();
        let mut points = Vec::new();
        for (&workers, &rate) in counts.iter().zip(&rates) {
            let efficiency = rate / (workers as f64 * rates[0]);
            println!(
                "  {:>5}B {:>8} {:>10.3} {:>10.2} {:>11.2}",
                size,
                workers,
                rate / 1e6,
                rate * size as f64 * 8.0 / 1e9,
                efficiency
            );
            rows.push(Row {
                name: format!("one tunnel, {size} B, {workers} workers"),
                figures: vec![
                    ("workers", workers as f64),
                    ("size_B", size as f64),
                    ("Mpps", rate / 1e6),
                    ("efficiency", efficiency),
                ],
            });
            points.push((workers as f64, rate / 1e6));
        }
        let efficiency: Vec<(f64, f64)> = points
            .iter()
            .map(|&(workers, mpps)| (workers, mpps / (workers * points[0].1)))
            .collect();
        panels.push(Panel::Lines {
            title: format!("one tunnel, {size} B: packet rate"),
            x_label: "workers".into(),
            y_label: "Mpps".into(),
            series: vec![Series::line("Spread = on", points)],
            reference: None,
        });
        panels.push(Panel::Lines {
            title: format!("one tunnel, {size} B: efficiency, rate(N) / (N x rate(1))"),
            x_label: "workers".into(),
            y_label: "efficiency".into(),
            series: vec![Series::line("Spread = on", efficiency)],
            reference: Some(0.7),
        });
    }
    println!(
        "  medians of {runs} runs; efficiency = rate(N) / (N x rate(1)), same invocation; the \
         issue's target is >= 0.7 up to 8 workers"
    );
    write_json("spread", &rows)?;
    chart::draw(
        &output_path("spread", "svg")?,
        &format!("warpline spread: one tunnel over N workers, {}", machine()),
        &panels,
        2,
    )
}
