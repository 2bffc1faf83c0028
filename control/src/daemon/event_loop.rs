//! The portable event loop: one thread, a kernel UDP socket, one TUN queue, the control
//! socket's requests, and the tunnel's timers.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use warpline_dataplane::time::Time;
use warpline_dataplane::tun::SCRATCH_LEN;

use super::DaemonError;
use super::data_plane::DataPlane;
use super::gso_batch::{GsoBatch, Route, Run};
use super::interface::Interface;
use super::portable_io::{TunWriter, UdpSender};
use super::snapshot::{self, LoopCounters};
use super::sticky_source::set_int_option;
use crate::config::Config;
use crate::ctl::protocol::{Request, Response};
use crate::ctl::server::CtlServer;
use crate::keys::{PresharedKey, PublicKey};
use crate::metrics::MetricsServer;
use crate::node::{Event, PeerConfig};
use crate::tunnel::Tunnel;

/// Datagrams, or TUN packets, handled in one direction before the other direction, the
/// timers and requests get a turn. Counted in datagrams, not syscalls: with GSO and GRO one
/// syscall moves up to 64 of them, and a turn of 64 syscalls (4 MB) would hold a TCP
/// stream's ACKs, which come the other way, for milliseconds.
const BUDGET: usize = 64;
/// The UDP socket's receive buffer (the kernel doubles it for its own accounting). When the
/// loop is the bottleneck of a bulk flow, this queue is where the flow's standing queue sits,
/// and a loss-based sender (CUBIC, Linux's default) keeps it full: 8 MiB held one TCP stream's
/// packets 4-7 ms (probe p50), 1 MiB 2-3 ms at the same rate within the noise (bench/README.md,
/// tunnel). 1 MiB still holds about 2,500 handshake-sized datagrams (on loopback) or some 25
/// full GRO batches between two drains of the loop.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;
/// The send buffer holds many 64 KB GSO runs without blocking (wireguard-go asks for 7 MB);
/// it builds no standing queue: a full one refuses the send and the datagram is counted.
const SEND_BUFFER: libc::c_int = 8 << 20;
/// The longest the loop sleeps, so a stop request is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// In XDP mode, how often the loop hears the workers (events, traffic for the timers).
const DATA_PLANE_TICK: Duration = Duration::from_millis(5);

/// Everything the loop runs with.
pub struct Parts<'a> {
    pub name: String,
    pub config: Config,
    pub tunnel: Tunnel<OsRng>,
    pub interface: &'a mut Interface,
    /// XDP mode's worker layout; `None` in portable mode.
    pub layout: Option<crate::layout::Layout>,
    pub control_path: PathBuf,
    pub stop: Arc<AtomicBool>,
    pub wall_clock_at_start: Duration,
}

type ControlMessage = (Request, mpsc::SyncSender<Response>);

fn bind_udp(port: u16) -> Result<UdpSocket, DaemonError> {
    // [::] takes IPv4 too (bindv6only is off by default); fall back to IPv4 alone.
    let socket = UdpSocket::bind(("::", port))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
        .map_err(|source| DaemonError::Listen { port, source })?;
    socket.set_nonblocking(true)?;
    // FORCE passes rmem_max/wmem_max with CAP_NET_ADMIN; otherwise the kernel caps the plain
    // request.
    set_buffer(
        &socket,
        [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF],
        RECEIVE_BUFFER,
    );
    set_buffer(
        &socket,
        [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF],
        SEND_BUFFER,
    );
    Ok(socket)
}

/// Sets a socket buffer with the first of `options` the kernel accepts.
fn set_buffer(socket: &UdpSocket, options: [libc::c_int; 2], size: libc::c_int) {
    for option in options {
        if set_int_option(socket, libc::SOL_SOCKET, option, size).is_ok() {
            break;
        }
    }
}

/// Maps an IPv4-mapped IPv6 source back to IPv4, so endpoints print and compare as users
/// expect.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// The address to hand `send_to`: a dual-stack IPv6 socket reaches IPv4 peers through
/// their IPv4-mapped form.
fn outgoing(socket_is_v6: bool, to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) if socket_is_v6 => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        other => other,
    }
}

/// Marks every packet the socket sends (`SO_MARK`), so policy routing keeps the tunnel's own
/// packets out of the tunnel.
fn set_mark(socket: &UdpSocket, mark: u32) -> Result<(), DaemonError> {
    // The kernel reads the mark as a u32 of the same size and bits.
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_MARK, mark as libc::c_int).map_err(|error| {
        DaemonError::Io(std::io::Error::other(format!(
            "cannot set fwmark {mark} on the UDP socket: {error}"
        )))
    })
}

fn wait(fds: &[i32], timeout: Duration) -> std::io::Result<()> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `pollfds` is a live, exclusively borrowed array of `pollfds.len()` initialised
    // pollfd structs for the duration of the call; poll only writes their `revents`.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, millis) };
    if rc < 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

/// Runs until `stop` is set (signal) or a `Down` request arrives.
pub fn run(parts: Parts<'_>) -> Result<(), DaemonError> {
    let Parts {
        name,
        config,
        mut tunnel,
        interface,
        layout,
        control_path,
        stop,
        wall_clock_at_start,
    } = parts;
    let port = config.interface.listen_port.unwrap_or(0);
    let udp = bind_udp(port)?;
    if let Some(mark) = interface.fwmark {
        set_mark(&udp, mark)?;
    }
    let listen_port = udp.local_addr().ok().map(|a| a.port());
    // Everything that needs more than the runtime capabilities is done (TUN, PreUp/PostUp
    // hooks, the socket on a possibly privileged port), and no thread exists yet: drop the
    // rest here, so every thread started from now on has only what the gateway still uses.
    let kept =
        super::privileges::keep_runtime_capabilities().map_err(|e| DaemonError::DataPlane {
            what: "dropping capabilities",
            reason: e.to_string(),
        })?;
    tracing::info!(
        kept = ?super::privileges::names(kept.effective),
        "capabilities reduced to those the running gateway uses"
    );
    let start = Instant::now();
    let mut data_plane = match &layout {
        None => None,
        Some(layout) => {
            let queues = std::mem::take(&mut interface.worker_queues);
            Some(DataPlane::start(
                &config,
                layout,
                listen_port.unwrap_or(port),
                queues,
                start,
                &name,
            )?)
        }
    };
    let mut ha = match &config.interface.ha {
        Some(ha_config) => Some(super::ha::Ha::start(ha_config, tunnel.node_mut())?),
        None => None,
    };
    let mut foreign_client_routes =
        super::pool_routes::ForeignClientRoutes::new(&config, interface)?;
    let v6 = udp.local_addr().is_ok_and(|a| a.is_ipv6());
    if let Err(error) = super::sticky_source::enable(&udp, v6) {
        tracing::warn!(%error, "cannot learn local addresses: replies leave from the kernel's choice");
    }
    let mut locals = super::sticky_source::LocalAddresses::default();
    let when_gone = if ha.is_some() {
        super::sticky_source::WhenGone::Drop
    } else {
        super::sticky_source::WhenGone::KernelChoice
    };
    let mut failovers = super::endpoints::Failovers::from_config(
        &config,
        tunnel.node(),
        Time::from_duration(start.elapsed()),
    );
    let mut preshared: HashSet<PublicKey> = config
        .peers
        .iter()
        .filter(|p| {
            p.preshared_key
                .as_ref()
                .is_some_and(|k| *k != PresharedKey::none())
        })
        .map(|p| p.public_key)
        .collect();

    let (control_tx, control_rx) = mpsc::sync_channel::<ControlMessage>(16);
    let _metrics = match config.interface.metrics_address {
        None => None,
        Some(address) => {
            let metrics_tx = control_tx.clone();
            let fetch = move || {
                let (reply_tx, reply_rx) = mpsc::sync_channel(1);
                metrics_tx.send((Request::Show, reply_tx)).ok()?;
                match reply_rx.recv_timeout(Duration::from_secs(2)).ok()? {
                    Response::Show(snapshot) => Some(snapshot),
                    _ => None,
                }
            };
            let server = MetricsServer::start(address, fetch).map_err(|e| {
                DaemonError::Control(format!("cannot serve metrics on {address}: {e}"))
            })?;
            tracing::info!(%address, "Prometheus metrics on http://{address}/metrics");
            Some(server)
        }
    };
    let server = CtlServer::bind(&control_path).map_err(|e| DaemonError::Control(e.to_string()))?;
    let control = server
        .serve(move |request| {
            let (reply_tx, reply_rx) = mpsc::sync_channel(1);
            if control_tx.send((request, reply_tx)).is_err() {
                return Response::error("the daemon is shutting down");
            }
            reply_rx
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_else(|_| Response::error("the daemon did not answer in time"))
        })
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    // Up: TUN, routes, sockets, data plane and control socket are all in place.
    super::notify::ready(&match &layout {
        Some(layout) => format!(
            "{name} up (XDP mode): {} peers, {} AF_XDP workers",
            config.peers.len(),
            layout.worker_count()
        ),
        None => format!("{name} up (portable mode): {} peers", config.peers.len()),
    });

    let mut counters = LoopCounters::default();
    let mut datagram = vec![0u8; 65536];
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut batch = GsoBatch::new();
    let mut sender = UdpSender::new(&udp, when_gone);
    let mut tun_writer = TunWriter::new(&interface.queue);
    // Without UDP GRO (before Linux 5.0) datagrams come one per receive: the same, slower.
    if let Err(error) = super::sticky_source::enable_gro(&udp) {
        tracing::info!(%error, "no UDP GRO on the socket: datagrams are received one at a time");
    }
    // In XDP mode the workers own the TUN queues; the loop only writes (kernel-path packets).
    let fds_both = [udp.as_raw_fd(), interface.queue.as_fd().as_raw_fd()];
    let fds = if data_plane.is_some() {
        &fds_both[..1]
    } else {
        &fds_both[..]
    };
    let mut max_sleep = if data_plane.is_some() {
        DATA_PLANE_TICK
    } else {
        MAX_SLEEP
    };
    if ha.is_some() {
        max_sleep = max_sleep.min(super::ha::MAX_SLEEP);
    }
    let mut down_requested = false;

    while !stop.load(Ordering::Relaxed) && !down_requested {
        let now = Time::from_duration(start.elapsed());
        let sleep = tunnel
            .node()
            .poll_timeout()
            .map_or(max_sleep, |t| t.saturating_since(now).min(max_sleep));
        wait(fds, sleep)?;
        let now = Time::from_duration(start.elapsed());

        let mut budget = BUDGET;
        while budget > 0 {
            let received = match super::sticky_source::recv(&udp, &mut datagram) {
                Ok(received) => received,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            };
            let (from, local) = (canonical(received.from), received.local);
            let datagrams = received.datagrams();
            counters.rx_packets += datagrams.len() as u64;
            budget = budget.saturating_sub(datagrams.len());
            if received.segment.is_some() {
                counters.offloads.gro_receives += 1;
                counters.offloads.gro_datagrams += datagrams.len() as u64;
            }
            // The datagrams of one receive share a sender and a local address: learn the
            // pair once, when any of them authenticates.
            let mut authenticated = false;
            for range in datagrams {
                let datagram = &mut datagram[range];
                if let Some(ha) = &mut ha {
                    ha.before_inbound(now, datagram, tunnel.node_mut());
                }
                match tunnel.inbound(now, from, datagram) {
                    Ok(Some(packet)) => {
                        tun_writer.write(&interface.queue, packet, &mut counters.offloads);
                        authenticated = true;
                    }
                    Ok(None) => authenticated = true,
                    Err(reason) => *counters.drops.entry(reason).or_default() += 1,
                }
            }
            if authenticated {
                locals.learn(from, local);
            }
        }
        tun_writer.flush(&interface.queue, &mut counters.offloads);

        let mut budget = BUDGET;
        while budget > 0 {
            if data_plane.is_some() {
                break;
            }
            let LoopCounters {
                tx_packets,
                drops,
                offloads,
                ..
            } = &mut counters;
            let mut send = |run: Run<'_>| *tx_packets += sender.send(&udp, &run, offloads);
            let read = interface.queue.read_packets(&mut scratch, |packet| {
                let sealed = batch.tail(&mut send);
                match tunnel.outbound(now, packet, sealed) {
                    Ok(Some((to, len))) => {
                        let source = locals.for_remote(to);
                        let route = Route {
                            to: outgoing(v6, to),
                            source,
                        };
                        batch.commit(len, route, &mut send);
                    }
                    Ok(None) => {}
                    Err(reason) => *drops.entry(reason).or_default() += 1,
                }
            });
            match read {
                Ok(packets) => budget = budget.saturating_sub(packets.max(1)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        batch.flush(|run| counters.tx_packets += sender.send(&udp, &run, &mut counters.offloads));

        if let Some(data_plane) = &mut data_plane {
            if data_plane.worker_failed() {
                control.shutdown();
                return Err(DaemonError::DataPlane {
                    what: "a worker",
                    reason: "a data-plane worker panicked; stopping the gateway with XDP \
                             detached rather than leaving a half-working data plane (see the \
                             log above for the panic)"
                        .to_owned(),
                });
            }
            data_plane.tick(now, &mut tunnel);
            if let Some(ha) = &mut ha {
                for index in data_plane.take_unknown_indices() {
                    ha.index_arrived(now, index, tunnel.node_mut());
                }
            }
        }
        if tunnel.node().poll_timeout().is_some_and(|t| t <= now) {
            tunnel.node_mut().handle_timeout(now);
        }
        if let Some(ha) = &mut ha {
            ha.tick(now, tunnel.node_mut());
        }
        if let Some(routes) = &mut foreign_client_routes {
            routes.tick(&tunnel);
        }
        failovers.tick(now, tunnel.node_mut());
        while let Some(transmit) = tunnel.node_mut().poll_transmit() {
            let source = locals.for_remote(transmit.destination).or_else(|| {
                data_plane
                    .as_ref()
                    .and_then(|d| d.local_address_for(transmit.destination))
            });
            let to = outgoing(v6, transmit.destination);
            if super::sticky_source::send(&udp, &transmit.payload, to, source, when_gone).is_ok() {
                counters.tx_packets += 1;
            }
        }
        while let Some(event) = tunnel.node_mut().poll_event() {
            log_event(&name, &tunnel, event);
        }
        while let Ok((request, reply)) = control_rx.try_recv() {
            let response = match request {
                Request::Show => Response::Show(snapshot::build(
                    &name,
                    &config,
                    &tunnel,
                    snapshot::workers(
                        &counters,
                        tunnel.node().cookie_replies_sent(),
                        data_plane.as_ref().map(DataPlane::worker_snapshots),
                    ),
                    listen_port,
                    wall_clock_at_start,
                    &snapshot::PeerFacts {
                        preshared: &|key| preshared.contains(key),
                        failover: &|id| failovers.snapshot(id),
                    },
                )),
                Request::Down => {
                    down_requested = true;
                    Response::Ok
                }
                request @ Request::SetPeer { .. } => set_peer(&mut tunnel, &mut preshared, request),
                Request::RemovePeer { public_key } => match PublicKey::from_base64(&public_key)
                    .ok()
                    .and_then(|key| tunnel.node().peer_by_key(&key))
                {
                    Some(id) => {
                        tunnel.remove_peer(id);
                        Response::Ok
                    }
                    None => Response::error(format!("no peer with public key {public_key}")),
                },
                Request::HaPromote | Request::HaDemote | Request::HaStatus => match &mut ha {
                    None => Response::error(
                        "HA is not configured on this interface (set HaMode in [Interface])",
                    ),
                    Some(ha) => match request {
                        Request::HaPromote | Request::HaDemote
                            if let Some(refused) = ha.manual_switch_refused() =>
                        {
                            refused
                        }
                        Request::HaPromote => ha.promote(now, tunnel.node_mut()),
                        Request::HaDemote => ha.demote(now, tunnel.node_mut()),
                        _ => Response::Ha(ha.snapshot(now, tunnel.node())),
                    },
                },
            };
            let _ = reply.send(response);
        }
    }
    super::notify::stopping();
    control.shutdown();
    drop(ha);
    drop(data_plane);
    Ok(())
}

fn log_event(name: &str, tunnel: &Tunnel<OsRng>, event: Event) {
    let key = |id| tunnel.node().peer(id).public_key().to_base64();
    match event {
        Event::HandshakeCompleted(id) => {
            tracing::info!(interface = %name, peer = %key(id), "handshake completed")
        }
        Event::HandshakeAbandoned(id) => tracing::warn!(
            interface = %name, peer = %key(id),
            "no handshake response for 90 s: giving up until there is traffic for the peer"
        ),
        Event::KeysWiped(id) => {
            tracing::info!(interface = %name, peer = %key(id), "idle: session keys erased")
        }
        Event::EndpointChanged(id, endpoint) => {
            tracing::info!(interface = %name, peer = %key(id), %endpoint, "peer endpoint")
        }
    }
}

/// `warpline set`: adds a peer, or changes an existing one's routes and endpoint. Validates
/// everything before changing anything.
fn set_peer(
    tunnel: &mut Tunnel<OsRng>,
    preshared: &mut HashSet<PublicKey>,
    request: Request,
) -> Response {
    let Request::SetPeer {
        public_key: key_text,
        preshared_key,
        allowed_ips,
        endpoint,
        persistent_keepalive,
        cipher,
    } = request
    else {
        return Response::error("not a set-peer request");
    };
    let Ok(public_key) = PublicKey::from_base64(&key_text) else {
        return Response::error(format!("{key_text:?} is not a public key"));
    };
    let mut prefixes = Vec::with_capacity(allowed_ips.len());
    for text in &allowed_ips {
        match crate::config::parse_allowed_ip(text) {
            Ok(prefix) => prefixes.push(prefix),
            Err(e) => return Response::error(format!("allowed IPs: {e}")),
        }
    }
    let endpoint = match endpoint.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(_)) => return Response::error("endpoint must be a numeric IP:PORT"),
    };
    let psk = match preshared_key.as_deref().map(PresharedKey::from_base64) {
        None => None,
        Some(Ok(psk)) => Some(psk),
        Some(Err(_)) => return Response::error("preshared key is not a base64 32-byte key"),
    };
    let suite = match cipher.as_deref() {
        None => None,
        Some(name) => match crate::config::parse_cipher_suite(name) {
            Ok(suite) => Some(suite),
            Err(e) => return Response::error(format!("cipher: {e}")),
        },
    };
    if let Some(id) = tunnel.node().peer_by_key(&public_key) {
        // Validated above; nothing is changed unless every part of the request is possible.
        if suite.is_some_and(|suite| suite != tunnel.node().peer(id).suite()) {
            return Response::error(
                "changing the cipher of a live peer needs remove + set (its handshakes run \
                 under another protocol name)",
            );
        }
        tunnel.set_allowed_ips(id, &prefixes);
        let node = tunnel.node_mut();
        if endpoint.is_some() {
            node.set_endpoint(id, endpoint);
        }
        if persistent_keepalive.is_some() {
            node.set_persistent_keepalive(id, persistent_keepalive_of(persistent_keepalive));
        }
        if let Some(psk) = psk
            && !node.peer(id).has_preshared_key(&psk)
        {
            if psk == PresharedKey::none() {
                preshared.remove(&public_key);
            } else {
                preshared.insert(public_key);
            }
            node.set_preshared_key(id, psk);
        }
        return Response::Ok;
    }
    let has_psk = psk.as_ref().is_some_and(|k| *k != PresharedKey::none());
    let mut peer = PeerConfig::new(public_key);
    peer.preshared_key = psk.unwrap_or_else(PresharedKey::none);
    peer.suite = suite.unwrap_or_default();
    peer.endpoint = endpoint;
    peer.persistent_keepalive = persistent_keepalive_of(persistent_keepalive);
    match tunnel.add_peer(peer, &prefixes) {
        Ok(_) => {
            if has_psk {
                preshared.insert(public_key);
            }
            Response::Ok
        }
        Err(e) => Response::error(format!("peer {key_text}: {e}")),
    }
}

fn persistent_keepalive_of(seconds: Option<u16>) -> Option<Duration> {
    seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::node::{Node, NodeConfig};

    fn tunnel() -> Tunnel<OsRng> {
        Tunnel::new(Node::new(
            NodeConfig::new(PrivateKey::generate(), Duration::ZERO),
            OsRng,
        ))
    }

    fn request(key: &str) -> Request {
        Request::SetPeer {
            public_key: key.to_owned(),
            preshared_key: None,
            allowed_ips: vec!["10.9.0.0/24".into()],
            endpoint: Some("192.0.2.4:51820".into()),
            persistent_keepalive: Some(25),
            cipher: Some("aes256gcm".into()),
        }
    }

    #[test]
    fn set_peer_adds_then_updates_and_validates_before_changing_anything() {
        let mut tunnel = tunnel();
        let mut preshared = HashSet::new();
        let key = PrivateKey::generate().public_key();
        assert_eq!(
            set_peer(&mut tunnel, &mut preshared, request(&key.to_base64())),
            Response::Ok
        );
        let id = tunnel.node().peer_by_key(&key).expect("added");
        assert_eq!(
            tunnel.node().peer(id).suite(),
            warpline_dataplane::aead::Suite::Aes256Gcm
        );
        assert_eq!(
            tunnel.node().peer(id).persistent_keepalive(),
            Some(Duration::from_secs(25))
        );

        let update = Request::SetPeer {
            public_key: key.to_base64(),
            preshared_key: None,
            allowed_ips: vec!["10.10.0.0/16".into()],
            endpoint: Some("[2001:db8::1]:4000".into()),
            persistent_keepalive: None,
            cipher: None,
        };
        assert_eq!(set_peer(&mut tunnel, &mut preshared, update), Response::Ok);
        let routes: Vec<String> = tunnel.allowed_ips_of(id).map(|p| p.to_string()).collect();
        assert_eq!(routes, vec!["10.10.0.0/16"]);
        assert_eq!(
            tunnel.node().peer(id).endpoint(),
            Some("[2001:db8::1]:4000".parse().unwrap())
        );

        let bad = Request::SetPeer {
            public_key: key.to_base64(),
            preshared_key: None,
            allowed_ips: vec!["10.0.0.0/8".into(), "not-a-prefix".into()],
            endpoint: None,
            persistent_keepalive: None,
            cipher: None,
        };
        assert!(matches!(
            set_peer(&mut tunnel, &mut preshared, bad),
            Response::Error { .. }
        ));
        let routes: Vec<String> = tunnel.allowed_ips_of(id).map(|p| p.to_string()).collect();
        assert_eq!(
            routes,
            vec!["10.10.0.0/16"],
            "a refused request changes nothing"
        );

        let fresh = || PrivateKey::generate().public_key().to_base64();
        let with = |change: &dyn Fn(&mut Request)| {
            let mut r = request(&fresh());
            change(&mut r);
            r
        };
        for broken in [
            request("nope"),
            with(&|r| {
                if let Request::SetPeer { endpoint, .. } = r {
                    *endpoint = Some("host:1".into());
                }
            }),
            with(&|r| {
                if let Request::SetPeer { cipher, .. } = r {
                    *cipher = Some("rot13".into());
                }
            }),
        ] {
            assert!(matches!(
                set_peer(&mut tunnel, &mut preshared, broken),
                Response::Error { .. }
            ));
        }
    }

    #[test]
    fn mapped_addresses_round_trip_through_a_dual_stack_socket() {
        let v4: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mapped = outgoing(true, v4);
        assert_eq!(mapped.to_string(), "[::ffff:192.0.2.1]:51820");
        assert_eq!(canonical(mapped), v4);
        assert_eq!(outgoing(false, v4), v4);
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
