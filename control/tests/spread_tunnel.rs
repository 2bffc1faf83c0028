//! One tunnel spread over two AF_XDP workers (`Spread = on`), as root, in a namespace lab:
//!
//! ```text
//!  gw A (portable, 10.88.0.1) ── WAN veth, 2 queues ── gw B (XDP, Workers = 2, Spread = on)
//!                                                      TUN 10.88.0.2, receiver on :9000
//! ```
//!
//! A sends bursts of sequence-numbered datagrams through the tunnel: one outer 5-tuple, so
//! they all arrive on one of B's queues, and its worker deals chunks to the other. Checked:
//! the receiver sees no datagram out of order, the second worker really decrypted chunks for
//! the first, and a transport message captured on the wire and sent again is refused as a
//! replay. Without root the test prints `skipping: <reason>` and passes.

mod gateway_support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use gateway_support::{TempDir, serial, warpline_up, worker_sum};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::capture::TransportCapture;
use warpline_dataplane::lab::{Veth, require_root};

/// Datagrams per round, and rounds at most.
const DATAGRAMS: u32 = 20_000;
const ROUNDS: u32 = 10;
const BURST: u32 = 100;

#[test]
fn one_tunnel_over_two_workers_keeps_order_and_refuses_replays() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let a = warpline_dataplane::lab::Host::new("sa").unwrap();
    let b = warpline_dataplane::lab::Host::new("sb").unwrap();
    let wan = Veth::new(&a, &b, 2).unwrap();
    a.add_address(&wan.a, "10.203.0.1".parse().unwrap(), 24)
        .unwrap();
    b.add_address(&wan.b, "10.203.0.2".parse().unwrap(), 24)
        .unwrap();
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    let dir = TempDir::new();
    let config_a = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.1/32\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.2/32\nEndpoint = 10.203.0.2:51820\n",
        key_a.to_base64(),
        key_b.public_key().to_base64()
    );
    let config_b = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.88.0.2/32\n\
         Attach = {}\nXdpMode = native\nWorkers = 2\nSpread = on\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.88.0.1/32\n",
        key_b.to_base64(),
        wan.b.name,
        key_a.public_key().to_base64()
    );
    let gw_a = warpline_up(&a, &dir, "wlsa", &config_a);
    let gw_b = warpline_up(&b, &dir, "wlsb", &config_b);

    let capture = TransportCapture::start(&a, wan.a.index, 51820).expect("a capture on A's WAN");

    let receiver = b.run(|| UdpSocket::bind("10.88.0.2:9000").expect("bind on B's tunnel"));
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let receiving = std::thread::spawn(move || {
        let mut order = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((len, _)) = receiver.recv_from(&mut buf) {
            if len == 1000 {
                order.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        order
    });
    a.run(|| {
        let sender = UdpSocket::bind("10.88.0.1:0").unwrap();
        sender.connect("10.88.0.2:9000").unwrap();
        // The first datagrams start the handshake; give it a moment.
        let ready = Instant::now() + Duration::from_secs(5);
        while Instant::now() < ready && worker_sum(&gw_b, "counters", "rx_frames") == 0 {
            sender.send(&[0u8; 8]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        // Bursts make the receiving worker's batches large enough to deal out; how often
        // that happens depends on the machine, so rounds go on until it has, a while.
        let mut payload = [0x5au8; 1000];
        let mut seq = 0u32;
        for _round in 0..ROUNDS {
            for _ in 0..DATAGRAMS {
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                let _ = sender.send(&payload);
                if seq % BURST == BURST - 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                seq += 1;
            }
            if worker_sum(&gw_b, "counters", "chunks_helped") >= 20 {
                break;
            }
        }
    });
    let order = receiving.join().unwrap();
    let inversions = order.windows(2).filter(|pair| pair[1] <= pair[0]).count();
    let dealt = worker_sum(&gw_b, "counters", "chunks_dealt");
    let helped = worker_sum(&gw_b, "counters", "chunks_helped");
    println!(
        "received {} datagrams, {inversions} out of order; chunks dealt {dealt}, \
         helped {helped}",
        order.len()
    );
    // A floods far faster than the 2-core lab can carry; what matters is the order of what
    // arrives, so only enough of it must.
    assert!(order.len() >= 200, "only {} datagrams arrived", order.len());
    assert_eq!(inversions, 0, "datagrams arrived out of order");
    assert!(
        dealt > 0 && helped > 0,
        "the tunnel was not spread (dealt {dealt}, helped {helped})"
    );

    std::thread::sleep(Duration::from_millis(200));
    let replay = capture
        .finish()
        .pop()
        .expect("a transport message was captured");
    let before = worker_sum(&gw_b, "drops", "replayed");
    a.run(|| {
        let socket = UdpSocket::bind("10.203.0.1:0").unwrap();
        for _ in 0..3 {
            socket.send_to(&replay, "10.203.0.2:51820").unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while worker_sum(&gw_b, "drops", "replayed") < before + 3 {
        assert!(
            Instant::now() < deadline,
            "the replayed message was not refused as a replay"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw_a.down();
    gw_b.down();
}
