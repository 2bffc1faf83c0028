//! The event loop's side of high availability: the sans-IO [`Cluster`] driven by the sync
//! links' events, the node's state, and the `warpline ha` requests.

use std::time::Duration;

use rand_core::CryptoRngCore;
use warpline_dataplane::time::Time;
use warpline_dataplane::wire::wireguard::Transport;

use super::DaemonError;
use super::ha_link::{HaLinks, LinkEvent};
use crate::config::HaConfig;
use crate::config::HaMode;
use crate::ctl::model::{HaPartnerSnapshot, HaSnapshot};
use crate::ctl::protocol::Response;
use crate::ha::{Cluster, Election, HEARTBEAT_INTERVAL, Role, SyncMessage};

use super::tracked::TrackedInterfaces;
use super::vip::VirtualIps;
use crate::node::Node;

/// The longest the event loop may sleep with HA on: sync events and checkpoints must not
/// wait for the portable loop's 100 ms tick.
pub const MAX_SLEEP: Duration = Duration::from_millis(5);

/// HA for one running interface.
#[derive(Debug)]
pub struct Ha {
    cluster: Cluster,
    links: HaLinks,
    builtin: Option<Builtin>,
    /// When this node next tells its partners its role and epoch.
    next_status: Time,
}

/// `HaMode = builtin`: the election and the virtual IPs it moves.
#[derive(Debug)]
struct Builtin {
    election: Election,
    vips: VirtualIps,
    tracked: TrackedInterfaces,
    /// The partner's role in its last status (`None`: not heard since it was lost).
    partner_active: Option<bool>,
}

impl Ha {
    /// Starts the sync links and puts the node in its starting role.
    pub fn start<R: CryptoRngCore>(
        config: &HaConfig,
        node: &mut Node<R>,
    ) -> Result<Self, DaemonError> {
        let cluster = Cluster::new(config.node_id, config.mode, config.checkpoint);
        cluster.start(node);
        let builtin = match config.mode {
            HaMode::Builtin => Some(Builtin {
                election: Election::new(
                    config.priority,
                    config.node_id,
                    config.preempt,
                    Time::ZERO,
                ),
                vips: VirtualIps::resolve(&config.virtual_ips)?,
                tracked: TrackedInterfaces::new(&config.track_interfaces)?,
                partner_active: None,
            }),
            HaMode::Keepalived | HaMode::ActiveActive => None,
        };
        let links = HaLinks::start(config)?;
        tracing::info!(
            mode = %config.mode,
            node_id = config.node_id,
            role = cluster.role().name(),
            listen = %config.listen,
            partners = ?config.partners,
            "HA cluster member"
        );
        Ok(Self {
            cluster,
            links,
            builtin,
            next_status: Time::ZERO,
        })
    }

    /// Handles what the links reported and streams the node's changes.
    pub fn tick<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) {
        while let Some(event) = self.links.try_event() {
            match event {
                LinkEvent::Subscribed {
                    from,
                    node_id,
                    outbox,
                } => {
                    // Bring the others up to date first, so the snapshot and what they were
                    // told agree.
                    let changes = self.cluster.changes_to_publish(now, node);
                    self.links.broadcast(changes);
                    let snapshot = self.cluster.snapshot_for_new_partner(now, node);
                    if outbox.try_send(std::sync::Arc::new(snapshot)).is_ok() {
                        self.links.add_subscriber(from, node_id, outbox);
                    }
                }
                LinkEvent::Connected(partner) => self.cluster.partner_connected(partner, now),
                LinkEvent::Message(partner, message) => {
                    if let (
                        Some(builtin),
                        SyncMessage::Status {
                            node_id,
                            priority,
                            active,
                            ..
                        },
                    ) = (&mut self.builtin, &message)
                    {
                        builtin.election.heard(now, *priority, *node_id, *active);
                        // The partner was active too (a split, or it took over while this
                        // node was cut off) and now stepped down: neighbours may still send
                        // the VIPs' traffic to it, so announce them again.
                        // (Also the first status after a reconnect: the partner may have
                        // stepped down before this node heard it.)
                        if builtin.partner_active != Some(false)
                            && !*active
                            && self.cluster.role() == Role::Active
                        {
                            builtin.vips.take();
                        }
                        builtin.partner_active = Some(*active);
                    }
                    if let Err(error) = self.cluster.receive(now, partner, message, node) {
                        tracing::warn!(partner, %error, "HA sync message refused");
                    }
                }
                LinkEvent::Lost(partner, reason) => {
                    if let Some(builtin) = &mut self.builtin {
                        builtin.election.lost();
                        builtin.partner_active = None;
                    }
                    let taken = self.cluster.partner_lost(now, partner, node);
                    if taken > 0 {
                        tracing::warn!(
                            partner,
                            %reason,
                            sessions = taken,
                            "took over the lost partner's sessions (active-active)"
                        );
                    }
                }
            }
        }
        if self.links.has_subscribers() {
            let changes = self.cluster.changes_to_publish(now, node);
            self.links.broadcast(changes);
        }
        self.elect(now, node);
        self.cluster.poll(now, node);
    }

    /// `HaMode = builtin`: tells the partner where this node stands and follows the
    /// election.
    fn elect<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) {
        if let Some(builtin) = &mut self.builtin {
            let mut changed = false;
            if let Some(down) = builtin.tracked.poll(now) {
                if down.is_empty() {
                    tracing::warn!("HA (builtin): tracked interfaces up again; eligible");
                } else {
                    tracing::warn!(?down, "HA (builtin): tracked interface down; not eligible");
                }
                builtin.election.set_faulted(!down.is_empty());
                changed = true;
            }
            let role = self.cluster.role();
            match builtin.election.decide(now, role) {
                Role::Active if role == Role::Standby => {
                    let taken = self.cluster.promote(now, node);
                    builtin.vips.take();
                    tracing::warn!(
                        sessions = taken,
                        "HA (builtin): elected active; virtual IPs taken"
                    );
                    changed = true;
                }
                Role::Standby if role == Role::Active => {
                    builtin.vips.release();
                    self.cluster.demote(node);
                    tracing::warn!(
                        "HA (builtin): stepped down (the partner is active, or this node is faulted)"
                    );
                    changed = true;
                }
                _ => {}
            }
            // The partner acts on a change at once instead of at the next heartbeat.
            if changed {
                self.next_status = now;
            }
        }
        if now >= self.next_status {
            self.next_status = now + HEARTBEAT_INTERVAL;
            self.links.broadcast(vec![SyncMessage::Status {
                node_id: self.cluster.node_id(),
                priority: self
                    .builtin
                    .as_ref()
                    .map_or(0, |b| b.election.announced_priority()),
                active: self.cluster.role() == Role::Active,
                epoch: self.cluster.highest_epoch().get(),
            }]);
        }
    }

    /// Whether `warpline ha promote|demote` may switch the role (not in builtin mode,
    /// where the election decides).
    pub fn manual_switch_refused(&self) -> Option<Response> {
        self.builtin.as_ref().map(|_| {
            Response::error(
                "HaMode = builtin: the election decides the role; change HaPriority (or stop \
                 this node) to move the virtual IPs",
            )
        })
    }

    /// Called with every datagram before the node sees it: a transport packet for a session
    /// a partner owns makes this node take that peer over (when it may).
    pub fn before_inbound<R: CryptoRngCore>(
        &mut self,
        now: Time,
        datagram: &[u8],
        node: &mut Node<R>,
    ) {
        // The protocol's own parser: anything but a well-formed transport message is left
        // to the node.
        if let Ok(transport) = Transport::new_checked(datagram) {
            self.index_arrived(now, transport.receiver_index(), node);
        }
    }

    /// A transport packet for `index` arrived (on the socket or a data-plane worker).
    pub fn index_arrived<R: CryptoRngCore>(&mut self, now: Time, index: u32, node: &mut Node<R>) {
        if !node.has_session_index(index) && self.cluster.transport_arrived(now, index, node) {
            tracing::info!(index, "took a peer over: its traffic arrived here");
        }
    }

    /// `warpline ha promote`.
    pub fn promote<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) -> Response {
        let taken = self.cluster.promote(now, node);
        tracing::warn!(
            sessions = taken,
            epoch = self.cluster.highest_epoch().get(),
            "HA: promoted to active; synced sessions resume without handshakes"
        );
        Response::Ha(self.snapshot(now, node))
    }

    /// `warpline ha demote`.
    pub fn demote<R: CryptoRngCore>(&mut self, now: Time, node: &mut Node<R>) -> Response {
        self.cluster.demote(node);
        tracing::warn!("HA: demoted to standby; own sessions erased, partner's are synced");
        Response::Ha(self.snapshot(now, node))
    }

    /// `warpline ha status`.
    pub fn snapshot<R: CryptoRngCore>(&self, now: Time, node: &Node<R>) -> HaSnapshot {
        let stats = self.cluster.stats();
        let summary = self.cluster.partner_summary();
        let partners = self
            .links
            .partner_states()
            .enumerate()
            .map(|(key, (address, connected))| {
                let known = summary.iter().find(|entry| entry.0 == key);
                HaPartnerSnapshot {
                    address: address.to_string(),
                    node_id: known.and_then(|entry| entry.1),
                    connected,
                    records: known.map_or(0, |entry| entry.2),
                    last_heard_ms_ago: known
                        .and_then(|entry| entry.3)
                        .map(|t| now.saturating_since(t).as_millis() as u64),
                }
            })
            .collect();
        HaSnapshot {
            mode: self.cluster.mode().to_string(),
            node_id: self.cluster.node_id(),
            role: self.cluster.role().name().to_owned(),
            highest_epoch: self.cluster.highest_epoch().get(),
            sessions_owned: node.export_session_records(now).len(),
            records_held: self.cluster.records_held(),
            partners,
            subscribers: self.links.subscriber_ids(),
            takeovers: stats.takeovers,
            sessions_taken_over: stats.sessions_taken_over,
            sessions_yielded: stats.sessions_yielded,
            import_failures: stats.import_failures,
            records_received: stats.records_received,
            records_sent: stats.records_sent,
            protocol_errors: stats.protocol_errors,
            tracked_down: self
                .builtin
                .as_ref()
                .map(|builtin| builtin.tracked.down().to_vec())
                .unwrap_or_default(),
        }
    }
}
