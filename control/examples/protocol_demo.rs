//! The protocol demo that `cargo xtask demo` runs until the XDP gateway lands: a warpline
//! gateway node, a stock WireGuard client (the boringtun crate) and a warpline client on the
//! AES-256-GCM suite, talking over real UDP sockets on 127.0.0.1. The clients send inner
//! IPv4 packets through their tunnels; the gateway decrypts each one and sends it back
//! encrypted; the clients check what comes back. The warpline client rekeys every 2 seconds
//! (a shortened timer) to show rekeying under traffic.
//!
//! Clients offer packets as fast as they can; what loopback socket buffers cannot hold is
//! dropped before it reaches the gateway, so "offered" exceeds "echoed" by design.
//!
//! Usage: protocol_demo [seconds]   (default 5)

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::{Tunn, TunnResult};
use rand_core::OsRng;
use warpline_control::keys::PrivateKey;
use warpline_control::node::{Node, NodeConfig, PeerConfig, Received};
use warpline_control::timers::Timers;
use warpline_dataplane::aead::Suite;
use warpline_dataplane::time::Time;

const PACKET_LEN: usize = 1200;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    echoed: AtomicU64,
    bad_echo: AtomicU64,
    handshakes: Arc<AtomicU64>,
}

fn inner_packet(seq: u64) -> Vec<u8> {
    let mut p = vec![0u8; PACKET_LEN];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PACKET_LEN as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 8, 0, 2]);
    p[16..20].copy_from_slice(&[10, 8, 0, 1]);
    p[20..28].copy_from_slice(&seq.to_be_bytes());
    p
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    s
}

/// Runs a warpline node: decrypts what arrives, calls `on_packet` with each inner packet
/// (its return value is sent back through the tunnel), keeps timers running.
fn run_node(
    mut node: Node<OsRng>,
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
    mut on_tick: impl FnMut(&mut Node<OsRng>, Time, &UdpSocket),
    mut on_packet: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    handshakes: Arc<AtomicU64>,
) {
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    while !stop.load(Relaxed) {
        let now = Time::from_duration(start.elapsed());
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            let reply = match node.handle_datagram(now, from, &mut buf[..len]) {
                Ok(Received::Packet { peer, packet }) => on_packet(packet).map(|r| (peer, r)),
                _ => None,
            };
            if let Some((peer, reply)) = reply
                && let Ok(Some((to, n))) = node.send_packet(now, peer, &reply, &mut out)
            {
                let _ = sock.send_to(&out[..n], to);
            }
        }
        on_tick(&mut node, now, &sock);
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        while let Some(t) = node.poll_transmit() {
            let _ = sock.send_to(&t.payload, t.destination);
        }
        while let Some(event) = node.poll_event() {
            if matches!(event, warpline_control::node::Event::HandshakeCompleted(_)) {
                handshakes.fetch_add(1, Relaxed);
            }
        }
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let gateway_key = PrivateKey::generate();
    let stock_key = PrivateKey::generate();
    let warpline_client_key = PrivateKey::generate();
    let (gw_sock, stock_sock, wl_sock) = (socket(), socket(), socket());
    let gw_addr = gw_sock.local_addr().unwrap();
    println!("warpline protocol demo: gateway on {gw_addr}, {seconds} s of traffic");
    println!("  peer 1: stock WireGuard client (boringtun crate), ChaCha20-Poly1305");
    println!("  peer 2: warpline client, AES-256-GCM suite, rekeying every 2 s");

    let stop = Arc::new(AtomicBool::new(false));
    let stock = Arc::new(Counters::default());
    let wl = Arc::new(Counters::default());
    let gw_handshakes = Arc::new(AtomicU64::new(0));

    // The gateway: answers every inner packet by sending it back.
    let mut gateway = Node::new(NodeConfig::new(gateway_key.clone(), wall_clock()), OsRng);
    gateway
        .add_peer(PeerConfig::new(stock_key.public_key()))
        .unwrap();
    let mut aes_peer = PeerConfig::new(warpline_client_key.public_key());
    aes_peer.suite = Suite::Aes256Gcm;
    gateway.add_peer(aes_peer).unwrap();
    let gw_thread = {
        let (stop, handshakes) = (stop.clone(), gw_handshakes.clone());
        thread::spawn(move || {
            run_node(
                gateway,
                gw_sock,
                stop,
                |_, _, _| {},
                |p| Some(p.to_vec()),
                handshakes,
            )
        })
    };

    // The warpline client.
    let mut client_config = NodeConfig::new(warpline_client_key, wall_clock());
    client_config.timers = Timers {
        rekey_after_time: Duration::from_secs(2),
        ..Timers::WIREGUARD
    };
    let mut client = Node::new(client_config, OsRng);
    let mut to_gateway = PeerConfig::new(gateway_key.public_key());
    to_gateway.suite = Suite::Aes256Gcm;
    to_gateway.endpoint = Some(gw_addr);
    let gw_peer = client.add_peer(to_gateway).unwrap();
    let wl_thread = {
        let (stop, counters) = (stop.clone(), wl.clone());
        let echo_counters = wl.clone();
        let handshakes = wl.handshakes.clone();
        let mut seq = 0u64;
        let mut out = vec![0u8; 2048];
        thread::spawn(move || {
            run_node(
                client,
                wl_sock,
                stop,
                move |node, now, sock| {
                    for _ in 0..4 {
                        seq += 1;
                        counters.sent.fetch_add(1, Relaxed);
                        if let Ok(Some((to, n))) =
                            node.send_packet(now, gw_peer, &inner_packet(seq), &mut out)
                        {
                            let _ = sock.send_to(&out[..n], to);
                        }
                    }
                },
                move |packet| {
                    let seq = u64::from_be_bytes(packet[20..28].try_into().unwrap());
                    let counter = if packet == inner_packet(seq) {
                        &echo_counters.echoed
                    } else {
                        &echo_counters.bad_echo
                    };
                    counter.fetch_add(1, Relaxed);
                    None
                },
                handshakes,
            )
        })
    };

    // The stock client.
    let stock_thread = {
        let (stop, counters) = (stop.clone(), stock.clone());
        thread::spawn(move || {
            run_boringtun(
                stock_key,
                gateway_key.public_key(),
                stock_sock,
                gw_addr,
                stop,
                counters,
            )
        })
    };

    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_millis(250));
        let secs = start.elapsed().as_secs_f64();
        let echoed = stock.echoed.load(Relaxed) + wl.echoed.load(Relaxed);
        print!(
            "\r  {secs:4.1} s  {:>8} packets echoed  {:>7.1} Mbit/s  handshakes {:>3}   ",
            echoed,
            (echoed * PACKET_LEN as u64 * 2 * 8) as f64 / secs / 1e6,
            gw_handshakes.load(Relaxed)
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    stop.store(true, Relaxed);
    for t in [gw_thread, wl_thread, stock_thread] {
        t.join().expect("demo thread panicked");
    }
    println!();
    println!();
    println!(
        "  {:<26} {:>10} {:>10} {:>10} {:>11}",
        "peer", "offered", "echoed", "corrupt", "handshakes"
    );
    for (name, c) in [
        ("stock WireGuard (boringtun)", &stock),
        ("warpline client (AES-GCM)", &wl),
    ] {
        println!(
            "  {:<26} {:>10} {:>10} {:>10} {:>11}",
            name,
            c.sent.load(Relaxed),
            c.echoed.load(Relaxed),
            c.bad_echo.load(Relaxed),
            c.handshakes.load(Relaxed)
        );
    }
    let ok = stock.echoed.load(Relaxed) > 0
        && wl.echoed.load(Relaxed) > 0
        && stock.bad_echo.load(Relaxed) + wl.bad_echo.load(Relaxed) == 0
        && wl.handshakes.load(Relaxed) >= 2;
    println!();
    if ok {
        println!(
            "demo OK: both clients' packets went through the gateway and back intact; the warpline client rekeyed under traffic"
        );
    } else {
        println!(
            "demo FAILED: expected echoes from both clients, no corruption, and at least 2 handshakes from the rekeying client"
        );
        std::process::exit(1);
    }
}

fn run_boringtun(
    key: PrivateKey,
    gateway: warpline_control::keys::PublicKey,
    sock: UdpSocket,
    gw_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut tunn = Tunn::new(
        x25519_dalek::StaticSecret::from(*key.as_bytes()),
        x25519_dalek::PublicKey::from(gateway.0),
        None,
        None,
        1,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let mut seq = 0u64;
    let mut had_session = false;
    while !stop.load(Relaxed) {
        for _ in 0..4 {
            seq += 1;
            counters.sent.fetch_add(1, Relaxed);
            if let TunnResult::WriteToNetwork(d) = tunn.encapsulate(&inner_packet(seq), &mut out) {
                let _ = sock.send_to(d, gw_addr);
            }
        }
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            let mut datagram = buf[..len].to_vec();
            loop {
                match tunn.decapsulate(Some(from.ip()), &datagram, &mut out) {
                    TunnResult::WriteToNetwork(d) => {
                        let _ = sock.send_to(d, gw_addr);
                        datagram.clear();
                    }
                    TunnResult::WriteToTunnelV4(p, _) => {
                        let seq = u64::from_be_bytes(p[20..28].try_into().unwrap());
                        let counter = if p == inner_packet(seq).as_slice() {
                            &counters.echoed
                        } else {
                            &counters.bad_echo
                        };
                        counter.fetch_add(1, Relaxed);
                        break;
                    }
                    _ => break,
                }
            }
        }
        if let TunnResult::WriteToNetwork(d) = tunn.update_timers(&mut out) {
            let _ = sock.send_to(d, gw_addr);
        }
        let has_session = tunn.time_since_last_handshake().is_some();
        if has_session && !had_session {
            counters.handshakes.fetch_add(1, Relaxed);
        }
        had_session = has_session;
    }
}
