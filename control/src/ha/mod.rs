//! High availability: handing established sessions to another gateway so a failover needs no
//! new handshake (ARCHITECTURE principle 5).
//!
//! A gateway pair shares the WireGuard identity (private key), so a client cannot tell which
//! node answers. What the standby must also have is each session: its keys, indices and how
//! far its counters got. [`SessionRecord`] carries that state (encoded for a sync channel);
//! [`Node::export_session_records`](crate::node::Node::export_session_records) and
//! [`Node::import_session_record`](crate::node::Node::import_session_record) move it between
//! nodes. This module is sans-IO like the node: the sync transport lives elsewhere.
//!
//! ## Why resumed sessions are safe
//!
//! *No (key, counter) pair is ever used twice*, even when both nodes send at once (split
//! brain): a node that takes a session over sends from the start of a fresh
//! [`CounterEpoch`], `epoch << 32`. Epochs grow with every promotion and carry the node's id
//! in their low bits, so two promotions never share one; and a node sends fewer than 2^32
//! messages on one session in its 180 s lifetime (that would be 24 Mpps on one key), so an
//! epoch's counters never reach the next epoch's. The stock client accepts the jump: its
//! replay window only asks for counters to grow.
//!
//! *Replays*: the standby's receive window resumes from the last checkpointed highest
//! counter, so nothing at or below it is accepted again. Packets between the last checkpoint
//! and the failover could be replayed to the new node once each; the checkpoint interval
//! bounds that window (strongSwan's HA plugin does not sync ESP sequence numbers at all;
//! OpenBSD's pfsync jumps replay counters by a fixed 16384).

mod cluster;
mod election;
mod epoch;
mod keepalived;
mod pools;
mod record;
mod sync;

pub use cluster::{
    Cluster, ClusterError, ClusterStats, HEARTBEAT_INTERVAL, PARTNER_DEAD_AFTER, PartnerKey,
    REKEY_AFTER_TAKEOVER, Role,
};
pub use election::Election;
pub use epoch::{CounterEpoch, EpochError, MAX_NODES};
pub use keepalived::{FifoLineError, MAX_FIFO_LINE, WantedRole, instance_for, wanted_role};
pub use pools::{PoolRoutes, RouteChanges};
pub use record::{RECORD_VERSION, RecordError, SessionRecord, SessionSlot};
pub use sync::{NOISE_PROTOCOL, SYNC_VERSION, SyncChannel, SyncError, SyncMessage};
