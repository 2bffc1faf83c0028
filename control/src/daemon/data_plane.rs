//! XDP mode: the steering program on every `Attach` NIC, one AF_XDP worker per queue, and
//! the control plane's side of the hand-off (ARCHITECTURE principles 3 and 4).
//!
//! The event loop keeps the kernel UDP socket for handshakes (the XDP program passes them)
//! and calls [`DataPlane::tick`] every few milliseconds: it drains the workers' events
//! (handshake needed, endpoint moved), feeds the sessions' traffic counters to the node's
//! timers, and republishes the session table when the node's state changed. Endpoint MAC
//! addresses come from the peer's last packet when a worker saw one, else from the kernel's
//! route and neighbour tables over netlink.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use warpline_dataplane::lab::Netlink;
use warpline_dataplane::pipeline::{HEADROOM, L2Info, TAILROOM};
use warpline_dataplane::sessions::{self, Endpoint, SessionTable, Snapshot};
use warpline_dataplane::spread::Spread;
use warpline_dataplane::time::Time;
use warpline_dataplane::tun::TunQueue;
use warpline_dataplane::wire::ethernet::MacAddr;
use warpline_dataplane::worker::{
    Worker, WorkerConfig, WorkerCounter, WorkerEvent, WorkerStats, WorkerTotals,
};
use warpline_dataplane::xdp::{AttachMode, AttachedMode, Role, Steering};
use warpline_dataplane::xsk::{self, SocketConfig, Umem, UmemConfig, XskSocket};

use super::DaemonError;
use super::lan::LanControl;
use crate::config::{Config, InnerSide, XdpMode};
use crate::ctl::model::WorkerSnapshot;
use crate::layout::{self, HostFacts, Layout, NicFacts};
use crate::tunnel::Tunnel;

/// How long a worker keeps polling after its last frame before it sleeps in `poll`
/// (`BusyPoll = off`): long enough to catch the next packet of a busy flow without a
/// wake-up, short enough that sparse traffic costs little CPU (see the worker's docs).
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);
/// `BusyPoll = on`: how long one syscall may busy-poll the NIC queue, and its packet budget
/// (the kernel documentation's example values for AF_XDP busy polling).
const BUSY_POLL_USECS: u32 = 20;
const BUSY_POLL_BUDGET: u32 = 64;
/// Bound of the workers' event queue.
const EVENT_QUEUE: usize = 4096;
/// Unknown receiver indices kept between two ticks (a flood of garbage indices is bounded
/// here; a real partner's session shows up again with its next packet).
const MAX_UNKNOWN_INDICES: usize = 256;
/// How often unresolved endpoint MACs are looked up again.
const RESOLVE_RETRY: Duration = Duration::from_millis(500);

/// Test hook for the fault tests: `WARPLINE_TEST_WORKER_PANIC_AFTER=<frames>` makes every
/// worker panic once it has received that many frames. Read once at start.
fn test_panic_after_frames() -> Option<u64> {
    let frames = std::env::var("WARPLINE_TEST_WORKER_PANIC_AFTER")
        .ok()?
        .parse()
        .ok()?;
    tracing::warn!("WARPLINE_TEST_WORKER_PANIC_AFTER is set: workers will panic (fault test)");
    Some(frames)
}

/// One NIC the gateway is attached to.
#[derive(Debug)]
struct Attached {
    name: String,
    if_index: u32,
    steering: Steering,
}

/// The running data plane.
pub struct DataPlane {
    table: SessionTable,
    events: Receiver<WorkerEvent>,
    stats: Vec<(Arc<WorkerStats>, Option<usize>)>,
    stop: Arc<AtomicBool>,
    worker_failed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    attached: Vec<Attached>,
    published_generation: Option<u64>,
    learned: HashMap<sessions::PeerId, Endpoint>,
    netlink: Netlink,
    unresolved_since: Option<Instant>,
    /// Receiver indices the workers did not know since the last take (HA takeover).
    unknown_indices: Vec<u32>,
    /// Our address each remote endpoint sent to, as the workers saw it (bounded like
    /// `learned`: one entry per peer's latest endpoint).
    learned_locals: HashMap<SocketAddr, IpAddr>,
    /// The LAN NIC with full bypass (`Inner = <nic>`).
    lan: Option<LanControl>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("workers", &self.stats.len())
            .finish_non_exhaustive()
    }
}

fn failed(what: &'static str) -> impl FnOnce(String) -> DaemonError {
    move |reason| DaemonError::DataPlane { what, reason }
}

fn attach_mode(mode: XdpMode) -> AttachMode {
    match mode {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
    }
}

/// The NIC's MAC and its first IPv4 and global IPv6 address.
pub(super) fn local_addresses(
    netlink: &mut Netlink,
    name: &str,
    if_index: u32,
) -> Result<(MacAddr, Option<Ipv4Addr>, Option<Ipv6Addr>), DaemonError> {
    let link = netlink
        .link_by_index(if_index)
        .map_err(|e| failed("reading the NIC")(format!("{name}: {e}")))?;
    let mac = MacAddr::try_from(&link.mac[..]).map_err(|_| {
        failed("reading the NIC")(format!(
            "{name} has no Ethernet address; attach an Ethernet NIC"
        ))
    })?;
    let addresses = netlink
        .addresses(if_index)
        .map_err(|e| failed("reading the NIC's addresses")(format!("{name}: {e}")))?;
    let v4 = addresses.iter().find_map(|(ip, _)| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    let v6 = addresses.iter().find_map(|(ip, _)| match ip {
        IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(*v6),
        _ => None,
    });
    Ok((mac, v4, v6))
}

impl DataPlane {
    /// Attaches the steering program to every `Attach` NIC, binds one AF_XDP socket on each
    /// of the first `layout.queues_per_nic` queues of each, and starts a worker per socket on
    /// `tun_queues` (one TUN queue each; [`DataPlane::tun_queues_needed`] says how many). Each
    /// worker is pinned to [`Layout::cpu_for`] its NIC and queue. With `Inner = <nic>` each
    /// worker also gets a socket on the same queue of the LAN NIC over its UMEM, and the TUN
    /// (`tun_name`) becomes the kernel's path for what the workers cannot send themselves.
    pub fn start(
        config: &Config,
        layout: &Layout,
        listen_port: u16,
        mut tun_queues: Vec<TunQueue>,
        origin: Instant,
        tun_name: &str,
    ) -> Result<Self, DaemonError> {
        let mtu = config.interface.mtu.map_or(super::DEFAULT_MTU, usize::from);
        let frame_size = layout.frame_size;
        let room = frame_size as usize - HEADROOM - TAILROOM;
        if mtu > room {
            return Err(failed("checking the MTU")(format!(
                "MTU {mtu} does not fit a {frame_size}-byte UMEM frame; with FrameSize = \
                 {frame_size} XDP mode takes MTU <= {room}"
            )));
        }
        xsk::raise_memlock_limit().map_err(|e| failed("raising RLIMIT_MEMLOCK")(e.to_string()))?;
        let mut netlink = Netlink::open().map_err(|e| failed("opening netlink")(e.to_string()))?;
        let (events_tx, events) = mpsc::sync_channel(EVENT_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let table = SessionTable::new(Snapshot::new());
        let spin_before_sleep = if layout.busy_poll {
            Duration::MAX
        } else {
            SPIN_BEFORE_SLEEP
        };
        let mut lan = match &config.interface.inner {
            InnerSide::Tun => None,
            InnerSide::Nic(name) => Some(LanControl::attach(
                &mut netlink,
                name,
                attach_mode(config.interface.xdp_mode),
                tun_name,
            )?),
        };
        let mut attached = Vec::new();
        let mut workers = Vec::new();
        for (nic_index, name) in config.interface.attach.iter().enumerate() {
            let link = netlink
                .link_by_name(name)
                .map_err(|e| failed("finding the Attach NIC")(format!("{name}: {e}")))?;
            let (mac, local_v4, local_v6) = local_addresses(&mut netlink, name, link.index)?;
            let queues = link.rx_queues.max(1);
            let mut steering = Steering::attach(
                link.index,
                Role::Wan,
                attach_mode(config.interface.xdp_mode),
                queues,
            )
            .map_err(|e| failed("attaching XDP")(format!("{name}: {e}")))?;
            steering
                .add_listen_port(listen_port)
                .map_err(|e| failed("configuring XDP")(format!("{name}: {e}")))?;
            let l2 = L2Info {
                src_mac: mac,
                vlan_tci: None,
                local_v4,
                local_v6,
                port: listen_port,
                ttl: 64,
                mtu,
            };
            for placement in &layout.workers {
                let queue = placement.queue;
                let (umem, pool) = Umem::new(UmemConfig {
                    frame_size,
                    frame_count: layout.frames_per_worker,
                    headroom: 0,
                })
                .map_err(|e| failed("creating a UMEM")(e.to_string()))?;
                let socket_config = SocketConfig {
                    rx_size: layout.ring_size,
                    tx_size: layout.ring_size,
                    fill_size: layout.ring_size,
                    completion_size: layout.ring_size,
                    bind_mode: layout.bind_mode,
                    ..SocketConfig::new(link.index, queue)
                };
                let socket = XskSocket::bind(&umem, &socket_config)
                    .map_err(|e| failed("binding AF_XDP")(format!("{name} queue {queue}: {e}")))?;
                if layout.busy_poll
                    && let Err(e) = socket.enable_busy_poll(BUSY_POLL_USECS, BUSY_POLL_BUDGET)
                {
                    return Err(failed("enabling busy polling (BusyPoll = on)")(format!(
                        "{name} queue {queue}: {e} (needs Linux 5.11+; set BusyPoll = off)"
                    )));
                }
                steering
                    .set_socket(queue, socket.as_fd())
                    .map_err(|e| failed("registering the socket")(format!("{name}: {e}")))?;
                let lan_side = match &mut lan {
                    Some(lan) => Some(lan.bind_worker_socket(&umem, queue, layout.ring_size)?),
                    None => None,
                };
                let index = workers.len();
                let tun = tun_queues.pop().ok_or_else(|| {
                    failed("starting workers")("fewer TUN queues than NIC queues".to_owned())
                })?;
                let core = layout.cpu_for(nic_index, queue) as usize;
                tracing::info!(
                    nic = %name,
                    queue,
                    worker = index,
                    core,
                    bind = ?socket.bound_mode(),
                    lan = lan.as_ref().map(LanControl::name),
                    ring = layout.ring_size,
                    frames = layout.frames_per_worker,
                    busy_poll = layout.busy_poll,
                    "AF_XDP worker ready"
                );
                workers.push(Worker {
                    socket,
                    pool,
                    tun,
                    lan: lan_side,
                    spread: None,
                    sessions: table.reader(),
                    events: events_tx.clone(),
                    stats: Arc::new(WorkerStats::default()),
                    config: WorkerConfig {
                        index,
                        core: Some(core),
                        l2,
                        spin_before_sleep,
                        origin,
                        panic_after_frames: test_panic_after_frames(),
                        report_unknown_indices: config.interface.ha.is_some(),
                    },
                });
            }
            let mode = match steering.attached_mode() {
                AttachedMode::Native => "native",
                AttachedMode::Generic => "generic",
            };
            tracing::info!(nic = %name, queues, mode, port = listen_port, "XDP attached");
            attached.push(Attached {
                name: name.clone(),
                if_index: link.index,
                steering,
            });
        }
        if config.interface.spread && workers.len() > 1 {
            let umems: Vec<Umem> = workers.iter().map(|w| w.socket.umem().clone()).collect();
            let spreads = Spread::mesh(&umems)
                .map_err(|e| failed("linking the workers (Spread = on)")(e.to_string()))?;
            for (worker, spread) in workers.iter_mut().zip(spreads) {
                worker.spread = Some(spread);
            }
            tracing::info!(
                workers = workers.len(),
                "Spread = on: each worker deals large batches out to the others, order kept"
            );
        } else if config.interface.spread {
            tracing::warn!("Spread = on has nothing to spread over: one AF_XDP worker");
        }
        let stats = workers
            .iter()
            .map(|w| (Arc::clone(&w.stats), w.config.core))
            .collect();
        let worker_failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for worker in workers {
            let stop = Arc::clone(&stop);
            let worker_failed = Arc::clone(&worker_failed);
            let thread = std::thread::Builder::new()
                .name(format!("wl-worker-{}", worker.config.index))
                .spawn(move || {
                    // A worker that dies must take the gateway down with it: a data plane
                    // missing a queue would blackhole that queue's tunnels while looking up.
                    let run = std::panic::AssertUnwindSafe(|| worker.run(&stop));
                    if std::panic::catch_unwind(run).is_err() {
                        // The panic hook has printed the panic with this thread's name; the
                        // event loop logs the consequence. (Logging from this thread after
                        // the unwind was seen to block on the stderr lock, so it does not.)
                        worker_failed.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                })
                .map_err(|e| failed("starting a worker thread")(e.to_string()))?;
            threads.push(thread);
        }
        Ok(Self {
            table,
            events,
            stats,
            stop,
            worker_failed,
            threads,
            attached,
            published_generation: None,
            learned: HashMap::new(),
            netlink,
            unresolved_since: None,
            unknown_indices: Vec::new(),
            learned_locals: HashMap::new(),
            lan,
        })
    }

    /// The worker layout for `config` on this host ([`crate::layout::plan`]): CPUs from
    /// sysfs, each `Attach` NIC's queue count from netlink. (Sysfs lists the NICs of the
    /// network namespace it was mounted in, so inside a namespace only netlink sees them.)
    pub fn plan_layout(config: &Config) -> Result<Layout, DaemonError> {
        let sys = std::path::Path::new("/sys");
        let cpus =
            layout::read_cpus(sys).map_err(|e| failed("reading the host's CPUs")(e.to_string()))?;
        let mut netlink = Netlink::open().map_err(|e| failed("opening netlink")(e.to_string()))?;
        let mut nics = Vec::new();
        for name in &config.interface.attach {
            let link = netlink.link_by_name(name).map_err(|e| {
                failed("finding the Attach NIC")(format!(
                    "{name}: {e} (is the name right, and in this network namespace?)"
                ))
            })?;
            let numa_node =
                layout::read_numa_node(&sys.join("class/net").join(name).join("device/numa_node"))
                    .ok()
                    .flatten();
            nics.push(NicFacts {
                name: name.clone(),
                queues: link.rx_queues.max(1),
                numa_node,
                zero_copy: None,
            });
        }
        let layout = layout::plan(&config.interface, &HostFacts { cpus, nics })
            .map_err(|e| DaemonError::Layout(e.to_string()))?;
        for warning in &layout.warnings {
            tracing::warn!("layout: {warning}");
        }
        Ok(layout)
    }

    /// TUN queues the data plane needs: one per worker, a worker per planned queue of every
    /// `Attach` NIC.
    pub fn tun_queues_needed(layout: &Layout) -> usize {
        layout.worker_count()
    }

    /// Our address that `remote` last sent an authenticated packet to, as the workers saw it:
    /// the kernel socket's handshakes and keepalives leave from it too (a VIP), or the peer
    /// would roam to this node's own address.
    pub fn local_address_for(&self, remote: SocketAddr) -> Option<IpAddr> {
        self.learned_locals.get(&remote).copied()
    }

    /// The receiver indices workers saw without a session since the last call.
    pub fn take_unknown_indices(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.unknown_indices)
    }

    /// Runs the control plane's side: worker events, traffic-driven timers, table updates.
    pub fn tick<R: CryptoRngCore>(&mut self, now: Time, tunnel: &mut Tunnel<R>) {
        let mut endpoints_moved = false;
        while let Ok(event) = self.events.try_recv() {
            let node = tunnel.node_mut();
            match event {
                WorkerEvent::EndpointSeen(seen) => {
                    if let Some(id) = node.peer_from_data_plane(seen.peer) {
                        if let Some(old) = self.learned.insert(seen.peer, seen.endpoint()) {
                            self.learned_locals.remove(&old.addr);
                        }
                        self.learned_locals.insert(seen.addr, seen.local);
                        node.data_plane_endpoint_seen(id, seen.addr);
                        endpoints_moved = true;
                    }
                }
                WorkerEvent::HandshakeNeeded(peer, _) => {
                    if let Some(id) = node.peer_from_data_plane(peer) {
                        node.initiate(now, id);
                    }
                }
                WorkerEvent::NextHopNeeded(destination) => {
                    if let Some(lan) = &mut self.lan {
                        lan.want(destination, Instant::now());
                    }
                }
                WorkerEvent::UnknownIndex(index) => {
                    if self.unknown_indices.len() < MAX_UNKNOWN_INDICES
                        && !self.unknown_indices.contains(&index)
                    {
                        self.unknown_indices.push(index);
                    }
                }
            }
        }
        tunnel.node_mut().absorb_data_plane_traffic(now);
        if let Some(lan) = &mut self.lan {
            lan.refresh(&mut self.netlink, Instant::now());
        }
        let retry_due = self
            .unresolved_since
            .is_some_and(|since| since.elapsed() >= RESOLVE_RETRY);
        if endpoints_moved || retry_due || self.published_generation != Some(tunnel.generation()) {
            self.publish(tunnel);
        }
    }

    fn publish<R: CryptoRngCore>(&mut self, tunnel: &Tunnel<R>) {
        let mut snapshot = Snapshot::new();
        let mut unresolved = false;
        for peer in tunnel.node().data_plane_peers() {
            let id = peer.id.data_plane();
            for session in peer.receiving {
                snapshot.insert_session(session);
            }
            let endpoint = peer.endpoint.and_then(|addr| {
                let endpoint = self.endpoint_with_mac(id, addr);
                unresolved |= endpoint.is_none();
                endpoint
            });
            let entry = snapshot.peer_mut(id);
            entry.current = peer.sending;
            entry.endpoint = endpoint;
        }
        for (prefix, peer) in tunnel.routes() {
            snapshot.routes_mut().insert(prefix, peer.data_plane());
        }
        if let Some(lan) = &mut self.lan {
            lan.steer(tunnel.routes().map(|(prefix, _)| prefix));
        }
        self.table.publish(snapshot);
        self.published_generation = Some(tunnel.generation());
        self.unresolved_since = unresolved.then(Instant::now);
    }

    /// The endpoint with the MAC of its next hop: learned from the peer's last packet, else
    /// from the kernel's route and neighbour tables.
    fn endpoint_with_mac(&mut self, peer: sessions::PeerId, addr: SocketAddr) -> Option<Endpoint> {
        if let Some(learned) = self.learned.get(&peer).filter(|e| e.addr == addr) {
            return Some(*learned);
        }
        let route = self.netlink.route_to(addr.ip()).ok()?;
        if !self.attached.iter().any(|a| a.if_index == route.if_index) {
            tracing::debug!(%addr, "endpoint is not reached through an attached NIC");
            return None;
        }
        let mac = self
            .netlink
            .neighbour(route.if_index, route.next_hop(addr.ip()))
            .ok()??;
        Some(Endpoint {
            addr,
            mac,
            local: None,
        })
    }

    /// The workers' counters, for `show` and metrics.
    pub fn worker_snapshots(&self) -> Vec<WorkerSnapshot> {
        self.stats
            .iter()
            .enumerate()
            .map(|(id, (stats, core))| worker_snapshot(id, *core, &stats.read()))
            .collect()
    }

    /// Whether a worker died: the gateway must stop.
    pub fn worker_failed(&self) -> bool {
        self.worker_failed.load(Ordering::Relaxed)
    }
}

impl Drop for DataPlane {
    /// Stops the workers, then detaches XDP (sockets and UMEMs go with the workers), on
    /// every way out of the event loop.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        drop(self.lan.take());
        for attached in self.attached.drain(..) {
            drop(attached.steering);
            tracing::info!(nic = %attached.name, "XDP detached");
        }
    }
}

fn worker_snapshot(id: usize, core: Option<usize>, totals: &WorkerTotals) -> WorkerSnapshot {
    let mut drops: Vec<(String, u64)> = warpline_dataplane::pipeline::DropReason::ALL
        .iter()
        .map(|reason| (reason.name().to_owned(), totals.pipeline.get(*reason)))
        .chain(
            [
                WorkerCounter::TunWriteErrors,
                WorkerCounter::TxRingFull,
                WorkerCounter::NoFreeFrame,
                WorkerCounter::EventsLost,
                WorkerCounter::XskRxRingFull,
                WorkerCounter::XskRxDropped,
                WorkerCounter::XskTxInvalid,
            ]
            .iter()
            .map(|c| (c.name().to_owned(), totals.get(*c))),
        )
        .filter(|(_, count)| *count > 0)
        .collect();
    drops.sort();
    WorkerSnapshot {
        id,
        core,
        rx_packets: totals.get(WorkerCounter::RxFrames) + totals.get(WorkerCounter::LanRxFrames),
        tx_packets: totals.get(WorkerCounter::TxFrames) + totals.get(WorkerCounter::LanTxFrames),
        drops,
        counters: WorkerCounter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), totals.get(*c)))
            .collect(),
    }
}
