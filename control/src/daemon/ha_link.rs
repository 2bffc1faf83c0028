//! The sync channel's I/O: the TCP listener that serves this node's sessions to partners,
//! and one dialer per `HaPeer` that receives a partner's sessions. Threads talk to the event
//! loop over channels only; the cluster logic itself is [`crate::ha::Cluster`] (sans-IO).
//!
//! Each pair of nodes has two connections, one per direction, so the roles can change
//! without reconnecting: whoever owns sessions streams them on its accepted connections.
//! A partner that goes quiet for [`PARTNER_DEAD_AFTER`] (it heartbeats every
//! [`HEARTBEAT_INTERVAL`]) is reported lost and dialed again.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use zeroize::Zeroizing;

use super::DaemonError;
use crate::config::HaConfig;
use crate::ha::{
    HEARTBEAT_INTERVAL, PARTNER_DEAD_AFTER, PartnerKey, SYNC_VERSION, SyncChannel, SyncError,
    SyncMessage,
};

/// How long connecting and the Noise handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one write may block before the partner counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between two dial attempts to a partner that is down.
const REDIAL_AFTER: Duration = Duration::from_millis(200);
/// Batches queued for one subscriber; a partner that falls this far behind is cut off and
/// gets a full snapshot when it reconnects.
const OUTBOX_BATCHES: usize = 1024;

/// A batch of messages for a subscriber (shared: records are not cloned per partner).
pub type Batch = Arc<Vec<SyncMessage>>;

/// What the link threads tell the event loop.
pub enum LinkEvent {
    /// A partner connected to our listener and wants our sessions: send it a snapshot
    /// first, then every change.
    Subscribed {
        /// Where it connected from.
        from: SocketAddr,
        /// Its node id (from its hello).
        node_id: u8,
        /// Where its batches go.
        outbox: SyncSender<Batch>,
    },
    /// We connected to partner `partner` (an index into `HaPeer`).
    Connected(PartnerKey),
    /// A message from partner `partner`.
    Message(PartnerKey, SyncMessage),
    /// Our connection to partner `partner` ended.
    Lost(PartnerKey, String),
}

/// The running sync links.
pub struct HaLinks {
    events: Receiver<LinkEvent>,
    subscribers: Vec<(SocketAddr, u8, SyncSender<Batch>)>,
    partners: Vec<SocketAddr>,
    connected: Vec<bool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaLinks")
            .field("partners", &self.partners)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl HaLinks {
    /// Binds `HaListen` and starts dialing every `HaPeer`.
    pub fn start(config: &HaConfig) -> Result<Self, DaemonError> {
        let listener = TcpListener::bind(config.listen).map_err(|e| {
            DaemonError::Control(format!(
                "cannot listen for HA sync on HaListen = {}: {e}",
                config.listen
            ))
        })?;
        listener.set_nonblocking(true)?;
        let (events_tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let key = Arc::new(Zeroizing::new(*config.key.as_bytes()));
        let mut threads = Vec::new();
        {
            let (events_tx, stop, key) = (events_tx.clone(), stop.clone(), key.clone());
            let node_id = config.node_id;
            threads.push(spawn("ha-listen", move || {
                listen(&listener, node_id, &key, &events_tx, &stop)
            })?);
        }
        for (index, &partner) in config.partners.iter().enumerate() {
            let (events_tx, stop, key) = (events_tx.clone(), stop.clone(), key.clone());
            let node_id = config.node_id;
            threads.push(spawn("ha-dial", move || {
                dial(index, partner, node_id, &key, &events_tx, &stop)
            })?);
        }
        Ok(Self {
            events,
            subscribers: Vec::new(),
            partners: config.partners.clone(),
            connected: vec![false; config.partners.len()],
            stop,
            threads,
        })
    }

    /// The next event, if one is waiting.
    pub fn try_event(&mut self) -> Option<LinkEvent> {
        let event = self.events.try_recv().ok()?;
        match &event {
            LinkEvent::Connected(key) => self.connected[*key] = true,
            LinkEvent::Lost(key, _) => self.connected[*key] = false,
            _ => {}
        }
        Some(event)
    }

    /// Adds a subscriber that has been sent its snapshot.
    pub fn add_subscriber(&mut self, from: SocketAddr, node_id: u8, outbox: SyncSender<Batch>) {
        self.subscribers.push((from, node_id, outbox));
    }

    /// Whether anyone receives our sessions.
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Sends `messages` to every subscriber; one that is gone or too far behind is dropped
    /// (its connection closes; it resyncs from a snapshot when it reconnects).
    pub fn broadcast(&mut self, messages: Vec<SyncMessage>) {
        if messages.is_empty() {
            return;
        }
        let batch: Batch = Arc::new(messages);
        self.subscribers.retain(
            |(from, node_id, outbox)| match outbox.try_send(batch.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(%from, node_id, "HA partner fell behind; it will resync");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        );
    }

    /// The configured partners with whether we hold a connection to each.
    pub fn partner_states(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.partners
            .iter()
            .copied()
            .zip(self.connected.iter().copied())
    }

    /// The node ids that receive our sessions.
    pub fn subscriber_ids(&self) -> Vec<u8> {
        self.subscribers.iter().map(|(_, id, _)| *id).collect()
    }
}

impl Drop for HaLinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.subscribers.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, DaemonError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map_err(DaemonError::Io)
}

fn listen(
    listener: &TcpListener,
    node_id: u8,
    key: &Arc<Zeroizing<[u8; 32]>>,
    events: &mpsc::Sender<LinkEvent>,
    stop: &Arc<AtomicBool>,
) {
    let mut servers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => {
                let (key, events, stop) = (key.clone(), events.clone(), stop.clone());
                if let Ok(server) = spawn("ha-serve", move || {
                    if let Err(error) = serve(stream, from, node_id, &key, &events, &stop) {
                        tracing::info!(%from, %error, "HA sync subscriber left");
                    }
                }) {
                    servers.push(server);
                }
                servers.retain(|s| !s.is_finished());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("HA sync listener: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for server in servers {
        let _ = server.join();
    }
}

fn prepare(stream: &TcpStream) -> Result<(), SyncError> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(())
}

/// One subscriber: handshake, its hello, then our batches (or heartbeats) until it goes.
fn serve(
    stream: TcpStream,
    from: SocketAddr,
    node_id: u8,
    key: &[u8; 32],
    events: &mpsc::Sender<LinkEvent>,
    stop: &AtomicBool,
) -> Result<(), SyncError> {
    prepare(&stream)?;
    let mut channel = SyncChannel::accept(stream, key)?;
    let partner_id = match channel.receive()? {
        SyncMessage::Hello { node_id, version } if version == SYNC_VERSION => node_id,
        SyncMessage::Hello { version, .. } => return Err(SyncError::Version(version)),
        _ => return Err(SyncError::Malformed("expected a hello")),
    };
    if partner_id == node_id {
        return Err(SyncError::Malformed(
            "the other node has the same HaNodeId; give every node its own",
        ));
    }
    let (outbox, batches) = mpsc::sync_channel::<Batch>(OUTBOX_BATCHES);
    if events
        .send(LinkEvent::Subscribed {
            from,
            node_id: partner_id,
            outbox,
        })
        .is_err()
    {
        return Ok(());
    }
    tracing::info!(%from, partner = partner_id, "HA partner subscribed to this node's sessions");
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match batches.recv_timeout(HEARTBEAT_INTERVAL) {
            Ok(batch) => {
                for message in batch.iter() {
                    channel.send(message)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                sequence += 1;
                channel.send(&SyncMessage::Heartbeat { sequence })?;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

/// Keeps a connection to one partner, forwarding what it sends.
fn dial(
    index: PartnerKey,
    partner: SocketAddr,
    node_id: u8,
    key: &[u8; 32],
    events: &mpsc::Sender<LinkEvent>,
    stop: &AtomicBool,
) {
    let mut logged_down = false;
    while !stop.load(Ordering::Relaxed) {
        match receive_from(index, partner, node_id, key, events, stop) {
            Ok(()) => return,
            Err((connected, error)) => {
                if connected {
                    let why = match &error {
                        SyncError::Io(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            format!("no heartbeat for {} ms", PARTNER_DEAD_AFTER.as_millis())
                        }
                        other => other.to_string(),
                    };
                    tracing::warn!(%partner, reason = %why, "HA partner lost");
                    let _ = events.send(LinkEvent::Lost(index, why));
                    logged_down = false;
                } else if !logged_down {
                    tracing::info!(%partner, %error, "HA partner not reachable yet; retrying");
                    logged_down = true;
                }
            }
        }
        std::thread::sleep(REDIAL_AFTER);
    }
}

/// One connection to a partner: `Err((was_connected, why))` when it ends.
fn receive_from(
    index: PartnerKey,
    partner: SocketAddr,
    node_id: u8,
    key: &[u8; 32],
    events: &mpsc::Sender<LinkEvent>,
    stop: &AtomicBool,
) -> Result<(), (bool, SyncError)> {
    let not_yet = |e: SyncError| (false, e);
    let stream =
        TcpStream::connect_timeout(&partner, CONNECT_TIMEOUT).map_err(|e| not_yet(e.into()))?;
    prepare(&stream).map_err(not_yet)?;
    let mut channel = SyncChannel::connect(stream, key).map_err(not_yet)?;
    channel
        .send(&SyncMessage::Hello {
            node_id,
            version: SYNC_VERSION,
        })
        .map_err(not_yet)?;
    channel
        .stream()
        .set_read_timeout(Some(PARTNER_DEAD_AFTER))
        .map_err(|e| not_yet(e.into()))?;
    if events.send(LinkEvent::Connected(index)).is_err() {
        return Ok(());
    }
    tracing::info!(%partner, "HA sync connected: receiving the partner's sessions");
    while !stop.load(Ordering::Relaxed) {
        let message = channel.receive().map_err(|e| (true, e))?;
        if events.send(LinkEvent::Message(index, message)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
