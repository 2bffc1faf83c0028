//! `handshake`: how many handshakes one core answers per second, and how cheaply it turns
//! away a flood with cookie replies.
//!
//! Each implementation answers the same number of fresh initiations (one per initiating
//! peer, so no per-peer rate limit or timestamp rule interferes), pre-built outside the
//! timed loop; the median of three runs is reported, each run against a fresh responder.
//! - warpline: `Node::handle_datagram` — MAC1 check, peer lookup by decrypted static key,
//!   timestamp check, response with MAC1, session install.
//! - boringtun: `Tunn::decapsulate` on the peer's own `Tunn` (boringtun's device finds the
//!   peer first; that lookup is not timed, which favours boringtun slightly).
//! - snow: the bare Noise IKpsk2 responder (no MAC1, no lookup, no session), the crate
//!   the issue asked to evaluate first.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use rand_core::OsRng;
use warpline_control::keys::PrivateKey;
use warpline_control::node::{Node, NodeConfig, PeerConfig, Received};
use warpline_dataplane::time::Time;

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{Row, machine, median, median_of, output_path, publish, rate};

const PROLOGUE: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const ORIGIN_WALL: Duration = Duration::from_secs(1_760_000_000);

fn responder_addr() -> SocketAddr {
    "127.0.0.1:51820".parse().unwrap()
}

fn initiator_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::from([127, 0, (i >> 8) as u8, i as u8]), 40000)
}

struct WarplineCase {
    responder_key: PrivateKey,
    initiator_keys: Vec<PrivateKey>,
    initiations: Vec<Vec<u8>>,
}

impl WarplineCase {
    fn new(peers: usize) -> Self {
        let responder_key = PrivateKey::generate();
        let initiator_keys: Vec<PrivateKey> = (0..peers).map(|_| PrivateKey::generate()).collect();
        let initiations = initiator_keys
            .iter()
            .map(|key| {
                let mut node = Node::new(NodeConfig::new(key.clone(), ORIGIN_WALL), OsRng);
                let mut peer = PeerConfig::new(responder_key.public_key());
                peer.endpoint = Some(responder_addr());
                let id = node.add_peer(peer).expect("fresh key");
                node.initiate(Time::from_secs(1), id);
                node.poll_transmit().expect("an initiation").payload
            })
            .collect();
        Self {
            responder_key,
            initiator_keys,
            initiations,
        }
    }

    fn responder(&self) -> Node<OsRng> {
        let mut config = NodeConfig::new(self.responder_key.clone(), ORIGIN_WALL);
        config.under_load_initiations_per_second = u32::MAX;
        let mut node = Node::new(config, OsRng);
        for key in &self.initiator_keys {
            node.add_peer(PeerConfig::new(key.public_key()))
                .expect("fresh key");
        }
        node
    }

    fn handshakes_per_second(&self) -> f64 {
        let mut node = self.responder();
        let mut inputs = self.initiations.clone();
        let start = Instant::now();
        for (i, datagram) in inputs.iter_mut().enumerate() {
            let outcome = node.handle_datagram(Time::from_secs(2), initiator_addr(i), datagram);
            assert!(matches!(outcome, Ok(Received::Handshake(_))), "{outcome:?}");
            std::hint::black_box(node.poll_transmit());
        }
        self.initiations.len() as f64 / start.elapsed().as_secs_f64()
    }

    fn cookie_replies_per_second(&self, budget: Duration) -> f64 {
        let mut node = self.responder();
        node.force_under_load(true);
        let n = self.initiations.len();
        let mut scratch = self.initiations[0].clone();
        rate(budget, |i| {
            scratch.copy_from_slice(&self.initiations[i % n]);
            let outcome =
                node.handle_datagram(Time::from_secs(2), initiator_addr(i % n), &mut scratch);
            debug_assert!(matches!(outcome, Ok(Received::CookieReplySent)));
            std::hint::black_box(node.poll_transmit());
        })
    }
}

struct BoringtunCase {
    responder_key: PrivateKey,
    initiator_keys: Vec<PrivateKey>,
    initiations: Vec<Vec<u8>>,
}

fn tunn(own: &PrivateKey, peer: &PrivateKey, index: u32) -> Tunn {
    Tunn::new(
        x25519_dalek::StaticSecret::from(*own.as_bytes()),
        x25519_dalek::PublicKey::from(peer.public_key().0),
        None,
        None,
        index,
        None,
    )
}

impl BoringtunCase {
    fn new(peers: usize) -> Self {
        let responder_key = PrivateKey::generate();
        let initiator_keys: Vec<PrivateKey> = (0..peers).map(|_| PrivateKey::generate()).collect();
        let initiations = initiator_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut out = vec![0u8; 256];
                match tunn(key, &responder_key, i as u32)
                    .format_handshake_initiation(&mut out, true)
                {
                    TunnResult::WriteToNetwork(d) => d.to_vec(),
                    other => panic!("boringtun made no initiation: {other:?}"),
                }
            })
            .collect();
        Self {
            responder_key,
            initiator_keys,
            initiations,
        }
    }

    fn handshakes_per_second(&self) -> f64 {
        let mut responders: Vec<Tunn> = self
            .initiator_keys
            .iter()
            .enumerate()
            .map(|(i, key)| tunn(&self.responder_key, key, i as u32))
            .collect();
        let mut out = vec![0u8; 256];
        let start = Instant::now();
        for (i, (responder, datagram)) in responders.iter_mut().zip(&self.initiations).enumerate() {
            let result = responder.decapsulate(Some(initiator_addr(i).ip()), datagram, &mut out);
            assert!(
                matches!(result, TunnResult::WriteToNetwork(_)),
                "{result:?}"
            );
        }
        self.initiations.len() as f64 / start.elapsed().as_secs_f64()
    }
}

struct SnowCase {
    responder_secret: [u8; 32],
    initiations: Vec<Vec<u8>>,
}

fn noise_params() -> snow::params::NoiseParams {
    "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
        .parse()
        .expect("a valid Noise protocol name")
}

impl SnowCase {
    fn new(peers: usize) -> Self {
        let responder = PrivateKey::generate();
        let initiations = (0..peers)
            .map(|_| {
                let key = PrivateKey::generate();
                let responder_public = responder.public_key();
                let mut initiator = snow::Builder::new(noise_params())
                    .local_private_key(key.as_bytes())
                    .and_then(|b| b.remote_public_key(responder_public.as_bytes()))
                    .and_then(|b| b.prologue(PROLOGUE))
                    .and_then(|b| b.psk(2, &[0u8; 32]))
                    .and_then(|b| b.build_initiator())
                    .expect("snow initiator");
                let mut out = vec![0u8; 256];
                let len = initiator
                    .write_message(&[0u8; 12], &mut out)
                    .expect("snow message");
                out.truncate(len);
                out
            })
            .collect();
        Self {
            responder_secret: *responder.as_bytes(),
            initiations,
        }
    }

    fn handshakes_per_second(&self) -> f64 {
        let mut payload = vec![0u8; 256];
        let mut out = vec![0u8; 256];
        let start = Instant::now();
        for initiation in &self.initiations {
            let mut responder = snow::Builder::new(noise_params())
                .local_private_key(&self.responder_secret)
                .and_then(|b| b.prologue(PROLOGUE))
                .and_then(|b| b.psk(2, &[0u8; 32]))
                .and_then(|b| b.build_responder())
                .expect("snow responder");
            responder
                .read_message(initiation, &mut payload)
                .expect("valid initiation");
            responder.write_message(&[], &mut out).expect("response");
            std::hint::black_box(responder.dangerously_get_raw_split());
        }
        self.initiations.len() as f64 / start.elapsed().as_secs_f64()
    }
}

/// Runs the suite and publishes its table.
pub fn run(quick: bool) -> Result<(), String> {
    let peers = if quick { 300 } else { 3000 };
    let budget = Duration::from_millis(if quick { 200 } else { 1000 });
    let mut progress = Progress::new("handshake", 3 + 3 * 3 + 1);
    progress.step(format_args!("preparing {peers} initiations for warpline"));
    let warpline = WarplineCase::new(peers);
    progress.step(format_args!("preparing {peers} initiations for boringtun"));
    let boringtun = BoringtunCase::new(peers);
    progress.step(format_args!("preparing {peers} initiations for snow"));
    let snow = SnowCase::new(peers);
    // Interleaved rounds, so a burst of load from a neighbour hits all three alike.
    let (mut ours, mut theirs, mut snows) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=3 {
        progress.step(format_args!("round {round}/3: warpline"));
        ours.push(warpline.handshakes_per_second());
        progress.step(format_args!("round {round}/3: boringtun"));
        theirs.push(boringtun.handshakes_per_second());
        progress.step(format_args!("round {round}/3: snow"));
        snows.push(snow.handshakes_per_second());
    }
    let (ours, theirs, snows) = (median(ours), median(theirs), median(snows));
    progress.step("cookie replies under a flood");
    let cookies = median_of(3, || warpline.cookie_replies_per_second(budget));
    progress.finish();
    let rows = vec![
        Row {
            name: "warpline responder (Node, full path)".into(),
            figures: vec![("per_s", ours), ("x_boringtun", ours / theirs)],
        },
        Row {
            name: "boringtun responder (Tunn::decapsulate)".into(),
            figures: vec![("per_s", theirs), ("x_boringtun", 1.0)],
        },
        Row {
            name: "snow responder (bare Noise, no MACs)".into(),
            figures: vec![("per_s", snows), ("x_boringtun", snows / theirs)],
        },
        Row {
            name: "warpline cookie replies under load".into(),
            figures: vec![("per_s", cookies), ("x_boringtun", f64::NAN)],
        },
    ];
    publish("handshake", &rows)?;
    chart::draw(
        &output_path("handshake", "svg")?,
        &format!("warpline handshake: responder on one core, {}", machine()),
        &[Panel::Bars {
            title: format!(
                "median of 3 rounds of {peers} initiations; \
                 warpline cookie replies under a flood: {cookies:.0}/s"
            ),
            y_label: "responder handshakes/s".into(),
            groups: vec!["fresh initiations, one core".into()],
            series: vec![
                Series::bars("warpline Node (full path)", [ours]),
                Series::bars("boringtun Tunn::decapsulate", [theirs]),
                Series::bars("snow (bare Noise, no MACs)", [snows]),
            ],
        }],
        1,
    )?;
    println!(
        "  target: >= 3000 responder handshakes/s on one core: {}",
        if ours >= 3000.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
