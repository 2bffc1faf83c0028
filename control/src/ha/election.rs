//! The built-in two-node mode (`HaMode = builtin`), sans-IO: who of two nodes owns the
//! virtual IPs, decided from heartbeats over the sync channel instead of keepalived's VRRP.
//!
//! Each node sends its priority and role with every heartbeat. A node whose partner has
//! been silent for [`PARTNER_DEAD_AFTER`](super::PARTNER_DEAD_AFTER) (or was never heard
//! since start-up) becomes active. With a live partner: of two active nodes the lower
//! (priority, node id) steps down; a standby with the higher priority takes over from an
//! active partner only with preemption on (`HaPreempt`); of two standbys the higher takes
//! over.

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
}

impl Election {
    /// A node with `priority` (higher wins) and `node_id` (breaks ties), started at `now`.
    pub fn new(priority: u8, node_id: u8, preempt: bool, now: Time) -> Self {
        Self {
            rank: (priority, node_id),
            preempt,
            started: now,
            partner: None,
        }
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
}
