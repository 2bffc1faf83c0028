//! Frames the kernel drops before an AF_XDP worker sees them are counted (as root, in a
//! namespace lab): a gateway in XDP mode with the smallest rings (`RingSize = 64`) is sent
//! bursts of junk transport messages from two threads, faster than one worker drains 64
//! descriptors. The kernel's `XDP_STATISTICS` (RX ring full, no free frame) must show up in
//! `warpline show --json` as the worker's drops, and everything the worker counted plus what
//! the kernel dropped cannot exceed what was sent: each lost frame is counted once. Without root the test prints
//! `skipping: <reason>` and passes.

mod gateway_support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use gateway_support::{TempDir, serial, warpline_up, worker_sum};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root};

const SENDERS: usize = 2;
const PER_SENDER: u32 = 100_000;

#[test]
fn frames_lost_to_full_rings_are_counted_as_drops() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let _serial = serial();
    let sender = Host::new("ka").unwrap();
    let gateway = Host::new("kb").unwrap();
    let wan = Veth::new(&sender, &gateway, 1).unwrap();
    sender
        .add_address(&wan.a, "10.207.0.1".parse().unwrap(), 24)
        .unwrap();
    gateway
        .add_address(&wan.b, "10.207.0.2".parse().unwrap(), 24)
        .unwrap();
    let dir = TempDir::new();
    let config = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.89.0.1/32\n\
         Attach = {}\nXdpMode = native\nWorkers = 1\nRingSize = 64\n\n\
         [Peer]\nPublicKey = {}\nAllowedIPs = 10.89.0.2/32\n",
        PrivateKey::generate().to_base64(),
        wan.b.name,
        PrivateKey::generate().public_key().to_base64()
    );
    let gw = warpline_up(&gateway, &dir, "wlkd", &config);

    // Transport messages (type 4) with receiver indices no session has: the XDP program
    // steers them to the worker, which drops them as `unknown_index` if it gets them.
    let mut junk = vec![4u8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    junk.resize(64, 0x5a);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..SENDERS {
            let socket = sender.run(|| UdpSocket::bind("10.207.0.1:0").unwrap());
            let junk = &junk;
            scope.spawn(move || {
                for _ in 0..PER_SENDER {
                    // A full veth queue refuses some: fine, the bound below allows for it.
                    let _ = socket.send_to(junk, "10.207.0.2:51820");
                }
            });
        }
    });
    println!(
        "sent {} junk messages in {:?}",
        SENDERS as u32 * PER_SENDER,
        started.elapsed()
    );

    // The worker reads the kernel's counters every 100 ms.
    let kernel_drops = || {
        ["xsk_rx_ring_full", "xsk_rx_dropped"]
            .iter()
            .map(|name| worker_sum(&gw, "drops", name))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while kernel_drops() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let unknown = worker_sum(&gw, "drops", "unknown_index");
    let dropped = kernel_drops();
    println!(
        "worker: {unknown} unknown_index; kernel: {dropped} dropped before the worker \
         ({} RX ring full; fill ring found empty {} times)",
        worker_sum(&gw, "drops", "xsk_rx_ring_full"),
        worker_sum(&gw, "counters", "xsk_fill_ring_empty")
    );
    assert!(unknown > 0, "no junk reached the worker");
    assert!(
        dropped > 0,
        "{} messages into 64-descriptor rings and not one counted as dropped by the kernel",
        SENDERS as u32 * PER_SENDER
    );
    assert!(
        unknown + dropped <= u64::from(SENDERS as u32 * PER_SENDER),
        "more counted ({unknown} + {dropped}) than sent"
    );
    gw.down();
}
