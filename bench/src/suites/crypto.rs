//! `crypto`: one core sealing transport payloads in place at the sizes that matter, with the
//! backend warpline uses (ring) beside RustCrypto, so the choice stays justified by numbers.
//! This is the per-core ceiling every other figure is measured against.
//!
//! aws-lc-rs (AWS-LC, BoringSSL-derived C and assembly) is the third backend: the other
//! widely used ring-compatible AEAD provider. Its `aws-lc-sys` builds AWS-LC with the `cc`
//! crate (a C compiler, no cmake, Go or bindgen on x86_64 Linux); it is a dependency of this
//! benchmark only. Every backend seals through its in-place, detached-tag API with a fresh
//! nonce per packet, as the data path does.

use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aws_lc_rs::aead as awslc;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use warpline_dataplane::aead::{PacketKey, Suite};

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{Row, machine, median, output_path, publish, rate};

const SIZES: [usize; 5] = [64, 128, 512, 1420, 8192];

type Sealer = Box<dyn FnMut(&mut [u8], usize, u64)>;

fn backends() -> Vec<(&'static str, Sealer)> {
    let key = [7u8; 32];
    let ring_chacha = PacketKey::new(Suite::ChaCha20Poly1305, &key);
    let ring_gcm = PacketKey::new(Suite::Aes256Gcm, &key);
    let rc_chacha = ChaCha20Poly1305::new((&key).into());
    let rc_gcm = Aes256Gcm::new((&key).into());
    let nonce = |counter: u64| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_le_bytes());
        n
    };
    let aws_key = |algorithm: &'static awslc::Algorithm| {
        awslc::LessSafeKey::new(
            awslc::UnboundKey::new(algorithm, &key).expect("a 32-byte key fits both suites"),
        )
    };
    let aws_chacha = aws_key(&awslc::CHACHA20_POLY1305);
    let aws_gcm = aws_key(&awslc::AES_256_GCM);
    let aws_seal = move |key: &awslc::LessSafeKey, buf: &mut [u8], len: usize, counter: u64| {
        let tag = key
            .seal_in_place_separate_tag(
                awslc::Nonce::assume_unique_for_key(nonce(counter)),
                awslc::Aad::empty(),
                &mut buf[..len],
            )
            .expect("within limits");
        buf[len..len + 16].copy_from_slice(tag.as_ref());
    };
    vec![
        (
            "ring ChaCha20-Poly1305 (warpline)",
            Box::new(move |buf: &mut [u8], len, counter| {
                ring_chacha
                    .seal_in_place(counter, &[], buf, len)
                    .expect("room for the tag");
            }),
        ),
        (
            "ring AES-256-GCM (warpline)",
            Box::new(move |buf: &mut [u8], len, counter| {
                ring_gcm
                    .seal_in_place(counter, &[], buf, len)
                    .expect("room for the tag");
            }),
        ),
        (
            "RustCrypto chacha20poly1305 0.10",
            Box::new(move |buf: &mut [u8], len, counter| {
                let tag = rc_chacha
                    .encrypt_in_place_detached(
                        Nonce::from_slice(&nonce(counter)),
                        &[],
                        &mut buf[..len],
                    )
                    .expect("within limits");
                buf[len..len + 16].copy_from_slice(&tag);
            }),
        ),
        (
            "RustCrypto aes-gcm 0.10",
            Box::new(move |buf: &mut [u8], len, counter| {
                let tag = rc_gcm
                    .encrypt_in_place_detached(
                        Nonce::from_slice(&nonce(counter)),
                        &[],
                        &mut buf[..len],
                    )
                    .expect("within limits");
                buf[len..len + 16].copy_from_slice(&tag);
            }),
        ),
        (
            "aws-lc-rs ChaCha20-Poly1305",
            Box::new(move |buf: &mut [u8], len, counter| aws_seal(&aws_chacha, buf, len, counter)),
        ),
        (
            "aws-lc-rs AES-256-GCM",
            Box::new(move |buf: &mut [u8], len, counter| aws_seal(&aws_gcm, buf, len, counter)),
        ),
    ]
}

/// Runs the suite and publishes its table.
pub fn run(quick: bool) -> Result<(), String> {
    let budget = Duration::from_millis(if quick { 50 } else { 300 });
    let mut backends = backends();
    let mut rows = Vec::new();
    let mut progress = Progress::new("crypto", SIZES.len() * 3);
    // Gbit/s per backend, per size, for the chart.
    let mut gbits: Vec<Vec<f64>> = vec![Vec::new(); backends.len()];
    for size in SIZES {
        let mut buf = vec![0u8; size + 16];
        // Interleaved rounds: a neighbour's load burst hits every backend alike.
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); backends.len()];
        for round in 0..3 {
            progress.step(format_args!("{size} B, round {}/3", round + 1));
            for (i, (_, seal)) in backends.iter_mut().enumerate() {
                samples[i].push(rate(budget, |n| seal(&mut buf, size, n as u64)));
            }
        }
        let rates: Vec<f64> = samples.into_iter().map(median).collect();
        for (((name, _), per_s), chart_values) in backends.iter().zip(&rates).zip(&mut gbits) {
            chart_values.push(per_s * size as f64 * 8.0 / 1e9);
            rows.push(Row {
                name: format!("{name} @ {size} B"),
                figures: vec![
                    ("Mpps", per_s / 1e6),
                    ("Gbit_s", per_s * size as f64 * 8.0 / 1e9),
                    ("x_ring_chacha", per_s / rates[0]),
                    // Same suite on ring: ChaCha rows against ring ChaCha, GCM rows against
                    // ring GCM.
                    (
                        "x_ring_same_suite",
                        per_s / rates[usize::from(name.contains("AES") || name.contains("aes"))],
                    ),
                ],
            });
        }
    }
    progress.finish();
    publish("crypto", &rows)?;
    let series = backends
        .iter()
        .zip(gbits)
        .map(|((name, _), values)| Series::bars(*name, values))
        .collect();
    chart::draw(
        &output_path("crypto", "svg")?,
        &format!(
            "warpline crypto: sealing in place on one core, {}",
            machine()
        ),
        &[Panel::Bars {
            title: "throughput by payload size (median of 3 interleaved rounds)".into(),
            y_label: "Gbit/s".into(),
            groups: SIZES.iter().map(|s| format!("{s} B")).collect(),
            series,
        }],
        1,
    )
}
