//! The built-in two-node mode (`HaMode = builtin`), sans-IO: who of two nodes owns the
//! virtual IPs, decided from heartbeats over the sync channel instead of keepalived's VRRP.
//!
//! Each node sends its priority and role with every heartbeat. A node whose partner has
//! been silent for [`PARTNER_DEAD_AFTER`](super::PARTNER_DEAD_AFTER) (or was never heard
//! since start-up) becomes active. With a live partner: of two active nodes the lower
//! (priority, node id) steps down; a standby with the higher priority takes over from an
//! active partner only with preemption on (`HaPreempt`); of two standbys the higher takes
//! over.
//!
//! Interface tracking (`HaTrackInterface`): while a tracked interface is down the node is
//! *faulted*: it steps down, never becomes active, and announces priority 0, which ranks
//! below every configured priority (1-255), so its partner takes over even without
//! preemption. When the interface returns the node ranks as configured again, and takes
//! the role back only with preemption, as any returning node.

use warpline_dataplane::time::Time;

use super::cluster::{PARTNER_DEAD_AFTER, Role};

/// What the partner last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartnerView {
    rank: (u8, u8),
    active: bool,
    heard: Time,
}

/// One node's side of the election.
#[derive(Debug, Clone)]
pub struct Election {
    rank: (u8, u8),
    preempt: bool,
    started: Time,
    partner: Option<PartnerView>,
    /// A tracked interface is down.
    faulted: bool,
}

impl Election {
    /// A node with `priority` (higher wins) and `node_id` (breaks ties), started at `now`.
    pub fn new(priority: u8, node_id: u8, preempt: bool, now: Time) -> Self {
        Self {
            rank: (priority, node_id),
            preempt,
            started: now,
            partner: None,
            faulted: false,
        }
    }

    /// Whether a tracked interface is down (the node may not be active).
    pub fn set_faulted(&mut self, faulted: bool) {
        self.faulted = faulted;
    }

    /// Whether the node is faulted.
    pub fn faulted(&self) -> bool {
        self.faulted
    }

    /// The priority this node announces in its status: 0 while faulted.
    pub fn announced_priority(&self) -> u8 {
        if self.faulted { 0 } else { self.rank.0 }
    }

    /// The partner's status arrived.
    pub fn heard(&mut self, now: Time, priority: u8, node_id: u8, active: bool) {
        self.partner = Some(PartnerView {
            rank: (priority, node_id),
            active,
            heard: now,
        });
    }

    /// The partner's connection closed: it counts as gone at once.
    pub fn lost(&mut self) {
        self.partner = None;
    }

    /// The role this node should have at `now`, given the one it has.
    pub fn decide(&mut self, now: Time, role: Role) -> Role {
        if self.faulted {
            return Role::Standby;
        }
        let alive = self
            .partner
            .filter(|p| now.saturating_since(p.heard) <= PARTNER_DEAD_AFTER);
        let Some(partner) = alive else {
            // Alone: wait out one dead-time after start-up, to hear a partner first.
            return if now.saturating_since(self.started) >= PARTNER_DEAD_AFTER {
                Role::Active
            } else {
                role
            };
        };
        let higher = self.rank > partner.rank;
        match (role, partner.active) {
            (Role::Active, true) if !higher => Role::Standby,
            (Role::Standby, true) if higher && self.preempt => Role::Active,
            (Role::Standby, false) if higher => Role::Active,
            (role, _) => role,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn a_lone_node_waits_one_dead_time_then_takes_over() {
        let mut election = Election::new(100, 1, true, at(0));
        assert_eq!(election.decide(at(100), Role::Standby), Role::Standby);
        assert_eq!(election.decide(at(700), Role::Standby), Role::Active);
    }

    #[test]
    fn the_higher_priority_wins_and_preemption_decides_failback() {
        // Both start; the higher (150) takes over, the lower stays standby.
        let mut high = Election::new(150, 0, true, at(0));
        let mut low = Election::new(100, 1, true, at(0));
        high.heard(at(50), 100, 1, false);
        low.heard(at(50), 150, 0, false);
        assert_eq!(high.decide(at(60), Role::Standby), Role::Active);
        assert_eq!(low.decide(at(60), Role::Standby), Role::Standby);

        // The high node dies: after the dead time the low one takes over.
        assert_eq!(low.decide(at(600), Role::Standby), Role::Standby);
        assert_eq!(low.decide(at(700), Role::Standby), Role::Active);

        // It comes back as standby: with preemption it takes over again, and the low node
        // steps down once it sees two actives.
        let mut back = Election::new(150, 0, true, at(1000));
        back.heard(at(1010), 100, 1, true);
        assert_eq!(back.decide(at(1020), Role::Standby), Role::Active);
        low.heard(at(1030), 150, 0, true);
        assert_eq!(low.decide(at(1040), Role::Active), Role::Standby);

        // Without preemption the returning node stays standby.
        let mut polite = Election::new(150, 0, false, at(1000));
        polite.heard(at(1010), 100, 1, true);
        assert_eq!(polite.decide(at(1020), Role::Standby), Role::Standby);
    }

    #[test]
    fn a_split_brain_resolves_to_the_higher_rank_and_ties_break_on_node_id() {
        let mut a = Election::new(100, 0, false, at(0));
        let mut b = Election::new(100, 1, false, at(0));
        a.heard(at(10), 100, 1, true);
        b.heard(at(10), 100, 0, true);
        assert_eq!(a.decide(at(20), Role::Active), Role::Standby);
        assert_eq!(b.decide(at(20), Role::Active), Role::Active);
        // A closed connection is a lost partner at once (after the start-up wait).
        a.lost();
        assert_eq!(a.decide(at(700), Role::Standby), Role::Active);
    }

    #[test]
    fn a_faulted_node_steps_down_and_its_partner_takes_over_without_preemption() {
        let mut high = Election::new(150, 0, false, at(0));
        let mut low = Election::new(100, 1, false, at(0));
        high.heard(at(10), 100, 1, false);
        low.heard(at(10), 150, 0, true);
        assert_eq!(high.decide(at(20), Role::Active), Role::Active);

        // The high node's tracked link goes down: it steps down at once and says so with
        // priority 0; the low node, now the higher rank, takes over though preemption is off.
        high.set_faulted(true);
        assert_eq!(high.decide(at(30), Role::Active), Role::Standby);
        assert_eq!(high.announced_priority(), 0);
        low.heard(at(40), high.announced_priority(), 0, false);
        assert_eq!(low.decide(at(50), Role::Standby), Role::Active);

        // A faulted node never becomes active, not even alone.
        high.lost();
        assert_eq!(high.decide(at(5000), Role::Standby), Role::Standby);

        // The link returns: without preemption it stays standby beside the active partner.
        high.set_faulted(false);
        high.heard(at(5010), 100, 1, true);
        assert_eq!(high.announced_priority(), 150);
        assert_eq!(high.decide(at(5020), Role::Standby), Role::Standby);
        low.heard(at(5030), 150, 0, false);
        assert_eq!(low.decide(at(5040), Role::Active), Role::Active);

        // With preemption it takes the role back, and the partner steps down.
        let mut eager = Election::new(150, 0, true, at(0));
        eager.set_faulted(true);
        eager.heard(at(10), 100, 1, true);
        assert_eq!(eager.decide(at(20), Role::Standby), Role::Standby);
        eager.set_faulted(false);
        assert_eq!(eager.decide(at(30), Role::Standby), Role::Active);
        low.heard(at(40), 150, 0, true);
        assert_eq!(low.decide(at(50), Role::Active), Role::Standby);

        // Both faulted: neither is active.
        let mut other = Election::new(100, 1, true, at(0));
        other.set_faulted(true);
        other.heard(at(10), 0, 0, false);
        assert_eq!(other.decide(at(5000), Role::Standby), Role::Standby);
    }
}
