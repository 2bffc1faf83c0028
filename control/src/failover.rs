//! Endpoint failover for a peer with several endpoints (warpline as a client or branch
//! gateway), sans-IO: OpenVPN's `remote` list, done without renegotiating when it can be.
//!
//! The candidates are the peer's `Endpoint` list; a host name stands for every address it
//! resolves to (DNS round-robin), and names are resolved again each time they come up, so
//! the walk is over (candidate, address) pairs. The current endpoint is *dead* when the peer
//! has stayed silent for `FailoverAfter` while we sent data, or handshakes have failed for
//! that long. Then the next address is tried:
//!
//! - the session is kept: if the new gateway is the dead one's HA partner it holds the
//!   session, answers at once, and no handshake happens;
//! - if nothing authenticated arrives within [`HANDSHAKE_AFTER_SWITCH`], it is not (or not
//!   synced) and a handshake starts right away instead of after WireGuard's 15 s.
//!
//! `FailBack = N` returns to the first candidate after N seconds on a later one. Each
//! candidate may carry its own keepalive (`Endpoint = a:1 keepalive=25, b:2`): moving to
//! it makes that the peer's keepalive.
//! Resolving is the caller's job ([`Action::Resolve`]), since it blocks.

use std::net::SocketAddr;
use std::time::Duration;

use rand_core::RngCore;
use warpline_dataplane::time::Time;

use crate::config::{Endpoint, EndpointPolicy, FailoverKeys};
use crate::peer::Liveness;

/// How long a new endpoint may stay silent before a handshake is started on it.
pub const HANDSHAKE_AFTER_SWITCH: Duration = Duration::from_secs(1);

/// What the caller must do for the failover to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Resolve candidate `index` (a host name) and report it with
    /// [`EndpointFailover::resolved`].
    Resolve {
        /// The candidate's index in the configured list.
        index: usize,
        /// The endpoint to resolve.
        endpoint: Endpoint,
    },
    /// Send to `address` from now on (the session is kept), with `keepalive` as the peer's
    /// persistent keepalive.
    UseEndpoint {
        /// Where to send.
        address: SocketAddr,
        /// The keepalive of the candidate the address belongs to.
        keepalive: Option<Duration>,
    },
    /// Start a handshake now: the new endpoint did not answer on the old session.
    Handshake,
}

/// One entry of a peer's endpoint list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it is.
    pub endpoint: Endpoint,
    /// The peer's persistent keepalive while it is in use (its `keepalive=` setting, else
    /// the peer's `PersistentKeepalive`).
    pub keepalive: Option<Duration>,
}

/// Where the walk is.
#[derive(Debug, Clone)]
enum State {
    /// Using `address`, candidate `position` of the round.
    Using {
        address: SocketAddr,
        since: Time,
        /// A handshake is still owed if the new endpoint stays silent.
        probing: bool,
    },
    /// Waiting for candidate `position` to resolve.
    Resolving,
}

/// One peer's endpoint list and its position in it.
#[derive(Debug, Clone)]
pub struct EndpointFailover {
    candidates: Vec<Candidate>,
    keys: FailoverKeys,
    /// The round's order of candidate indices.
    order: Vec<usize>,
    /// Index into `order`.
    position: usize,
    /// The current candidate's addresses, and which one is in use.
    addresses: Vec<SocketAddr>,
    address_index: usize,
    state: State,
    /// Failovers so far.
    switches: u64,
}

impl EndpointFailover {
    /// The list for `candidates` (at least one), starting on `first`, the address the first
    /// candidate resolved to at start-up (or `None` if none did yet).
    pub fn new(
        candidates: Vec<Candidate>,
        keys: FailoverKeys,
        first: Option<(usize, Vec<SocketAddr>)>,
        now: Time,
        rng: &mut impl RngCore,
    ) -> Self {
        let mut list = Self {
            order: (0..candidates.len()).collect(),
            candidates,
            keys,
            position: 0,
            addresses: Vec::new(),
            address_index: 0,
            state: State::Resolving,
            switches: 0,
        };
        list.shuffle(rng);
        if let Some((index, addresses)) = first
            && let Some(position) = list.order.iter().position(|&i| i == index)
            && let Some(&address) = addresses.first()
        {
            // The round starts where start-up connected.
            list.order.swap(0, position);
            list.addresses = addresses;
            list.state = State::Using {
                address,
                since: now,
                probing: false,
            };
        }
        list
    }

    fn shuffle(&mut self, rng: &mut impl RngCore) {
        if self.keys.policy == EndpointPolicy::Random {
            // Fisher-Yates.
            for i in (1..self.order.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
        }
    }

    /// The configured endpoints, in config order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The candidate in use (its index in the config list) and its address, if any.
    pub fn active(&self) -> Option<(usize, SocketAddr)> {
        match self.state {
            State::Using { address, .. } => Some((self.order[self.position], address)),
            State::Resolving => None,
        }
    }

    /// Where the peer must send when it now sends to `current`: the address in use, if
    /// `current` differs. WireGuard roams a peer to the source of any authenticated packet,
    /// so a late packet from the gateway the list just left (an echo still in flight) would
    /// pull the peer back to it and undo the move; the list decides instead.
    pub fn pinned_address(&self, current: Option<SocketAddr>) -> Option<SocketAddr> {
        match self.state {
            State::Using { address, .. } if current != Some(address) => Some(address),
            _ => None,
        }
    }

    /// Failovers so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The address that candidate resolution produced; `addresses` empty when it failed.
    pub fn resolved(
        &mut self,
        now: Time,
        index: usize,
        addresses: Vec<SocketAddr>,
    ) -> Option<Action> {
        if !matches!(self.state, State::Resolving) || self.order[self.position] != index {
            return None; // a late answer for a candidate we moved past
        }
        self.addresses = addresses;
        self.address_index = 0;
        match self.addresses.first() {
            Some(&address) => Some(self.switch_to(now, address)),
            None => self.advance_candidate(now),
        }
    }

    fn switch_to(&mut self, now: Time, address: SocketAddr) -> Action {
        self.switches += 1;
        self.state = State::Using {
            address,
            since: now,
            probing: true,
        };
        Action::UseEndpoint {
            address,
            keepalive: self.candidates[self.order[self.position]].keepalive,
        }
    }

    /// Moves to the next candidate of the round (a new round after the last).
    fn advance_candidate(&mut self, now: Time) -> Option<Action> {
        self.position += 1;
        if self.position >= self.order.len() {
            self.position = 0;
        }
        self.enter_candidate(now)
    }

    fn enter_candidate(&mut self, now: Time) -> Option<Action> {
        let index = self.order[self.position];
        match &self.candidates[index].endpoint {
            Endpoint::Addr(address) => {
                let address = *address;
                self.addresses = vec![address];
                self.address_index = 0;
                Some(self.switch_to(now, address))
            }
            endpoint @ Endpoint::Host { .. } => {
                self.state = State::Resolving;
                Some(Action::Resolve {
                    index,
                    endpoint: endpoint.clone(),
                })
            }
        }
    }

    /// Decides at `now` from the peer's liveness; at most one action per call.
    pub fn poll(
        &mut self,
        now: Time,
        liveness: Liveness,
        rng: &mut impl RngCore,
    ) -> Option<Action> {
        let State::Using { since, probing, .. } = &mut self.state else {
            return None;
        };
        let since = *since;
        let heard_since_switch = liveness.last_received.is_some_and(|t| t >= since);
        if heard_since_switch {
            *probing = false;
        }
        let silent_since = liveness
            .unanswered_data_since
            .map(|t| t.max(since))
            .into_iter()
            .chain(liveness.handshaking_since.map(|t| t.max(since)))
            .min();
        if silent_since.is_some_and(|t| now.saturating_since(t) >= self.keys.after) {
            return self.fail_over(now, rng);
        }
        if *probing
            && now.saturating_since(since) >= HANDSHAKE_AFTER_SWITCH
            && liveness.unanswered_data_since.is_some()
        {
            *probing = false;
            return Some(Action::Handshake);
        }
        if let Some(fail_back) = self.keys.fail_back
            && self.position != 0
            && heard_since_switch
            && now.saturating_since(since) >= fail_back
        {
            self.position = 0;
            return self.enter_candidate(now);
        }
        None
    }

    /// The current address is dead: the next address of the candidate, else the next
    /// candidate (reshuffled at the start of a round under `random`).
    fn fail_over(&mut self, now: Time, rng: &mut impl RngCore) -> Option<Action> {
        if self.address_index + 1 < self.addresses.len() {
            self.address_index += 1;
            return Some(self.switch_to(now, self.addresses[self.address_index]));
        }
        if self.position + 1 >= self.order.len() {
            self.shuffle(rng);
        }
        self.advance_candidate(now)
    }
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;

    const A: &str = "192.0.2.1:51820";
    const B: &str = "192.0.2.2:51820";

    fn keys(after: u64, fail_back: Option<u64>) -> FailoverKeys {
        FailoverKeys {
            policy: EndpointPolicy::Ordered,
            after: Duration::from_secs(after),
            fail_back: fail_back.map(Duration::from_secs),
        }
    }

    fn at(secs: f64) -> Time {
        Time::from_duration(Duration::from_secs_f64(secs))
    }

    fn list(candidates: &[&str], keys: FailoverKeys) -> EndpointFailover {
        let without_keepalives: Vec<_> = candidates.iter().map(|&c| (c, None)).collect();
        list_with_keepalives(&without_keepalives, keys)
    }

    fn list_with_keepalives(
        candidates: &[(&str, Option<u64>)],
        keys: FailoverKeys,
    ) -> EndpointFailover {
        let candidates: Vec<Candidate> = (candidates.iter())
            .map(|&(endpoint, keepalive)| Candidate {
                endpoint: endpoint.parse().unwrap(),
                keepalive: keepalive.map(Duration::from_secs),
            })
            .collect();
        let first = match &candidates[0].endpoint {
            Endpoint::Addr(address) => Some((0, vec![*address])),
            Endpoint::Host { .. } => None,
        };
        EndpointFailover::new(candidates, keys, first, Time::ZERO, &mut OsRng)
    }

    fn use_endpoint(address: SocketAddr) -> Action {
        Action::UseEndpoint {
            address,
            keepalive: None,
        }
    }

    fn silent_since(t: f64) -> Liveness {
        Liveness {
            last_received: Some(at(0.5)),
            unanswered_data_since: Some(at(t)),
            handshaking_since: None,
        }
    }

    #[test]
    fn a_silent_endpoint_fails_over_after_the_configured_time_only() {
        let mut list = list(&[A, B], keys(3, None));
        assert_eq!(list.active(), Some((0, A.parse().unwrap())));
        let healthy = Liveness {
            last_received: Some(at(9.0)),
            ..Liveness::default()
        };
        assert_eq!(list.poll(at(10.0), healthy, &mut OsRng), None);
        assert_eq!(list.poll(at(3.9), silent_since(1.0), &mut OsRng), None);
        assert_eq!(
            list.poll(at(4.0), silent_since(1.0), &mut OsRng),
            Some(use_endpoint(B.parse().unwrap()))
        );
        assert_eq!(list.active(), Some((1, B.parse().unwrap())));
        // The synced partner answers at once: no handshake.
        let answered = Liveness {
            last_received: Some(at(4.1)),
            ..Liveness::default()
        };
        assert_eq!(list.poll(at(5.5), answered, &mut OsRng), None);
    }

    #[test]
    fn a_new_endpoint_that_stays_silent_gets_a_handshake_then_the_next_failover() {
        let mut list = list(&[A, B], keys(3, None));
        list.poll(at(4.0), silent_since(1.0), &mut OsRng);
        assert_eq!(list.poll(at(4.5), silent_since(1.0), &mut OsRng), None);
        assert_eq!(
            list.poll(at(5.0), silent_since(1.0), &mut OsRng),
            Some(Action::Handshake)
        );
        // Handshakes to B fail too: back to A after FailoverAfter counted from the switch.
        let failing = Liveness {
            handshaking_since: Some(at(5.0)),
            ..silent_since(1.0)
        };
        assert_eq!(list.poll(at(6.9), failing, &mut OsRng), None);
        assert_eq!(
            list.poll(at(7.0), failing, &mut OsRng),
            Some(use_endpoint(A.parse().unwrap()))
        );
        assert_eq!(list.switches(), 2);
    }

    #[test]
    fn every_address_of_a_name_is_tried_and_names_resolve_at_each_attempt() {
        let mut list = list(&[A, "gw.example.net:51820"], keys(2, None));
        let action = list.poll(at(3.0), silent_since(1.0), &mut OsRng);
        let Some(Action::Resolve { index: 1, endpoint }) = action else {
            panic!("expected a resolution, got {action:?}");
        };
        assert_eq!(endpoint.to_string(), "gw.example.net:51820");
        assert_eq!(list.active(), None);
        let round_robin: Vec<SocketAddr> = vec![
            "198.51.100.1:51820".parse().unwrap(),
            "198.51.100.2:51820".parse().unwrap(),
        ];
        assert_eq!(
            list.resolved(at(3.1), 1, round_robin.clone()),
            Some(use_endpoint(round_robin[0]))
        );
        // The first address is dead too: the name's second address, without resolving.
        let later = silent_since(1.0);
        assert_eq!(
            list.poll(at(5.2), later, &mut OsRng),
            Some(use_endpoint(round_robin[1]))
        );
        // Both dead: a new round starts at A.
        assert_eq!(
            list.poll(at(7.3), later, &mut OsRng),
            Some(use_endpoint(A.parse().unwrap()))
        );
        // A failed resolution skips the name.
        list.poll(at(9.4), later, &mut OsRng);
        assert_eq!(
            list.resolved(at(9.5), 1, Vec::new()),
            Some(use_endpoint(A.parse().unwrap()))
        );
        // A late answer for a candidate no longer wanted is ignored.
        assert_eq!(list.resolved(at(9.6), 1, round_robin), None);
    }

    #[test]
    fn fail_back_returns_to_the_first_endpoint_after_its_time_on_a_later_one() {
        let mut list = list(&[A, B], keys(2, Some(30)));
        list.poll(at(3.0), silent_since(1.0), &mut OsRng);
        let healthy = |t| Liveness {
            last_received: Some(at(t)),
            ..Liveness::default()
        };
        assert_eq!(list.poll(at(32.9), healthy(32.0), &mut OsRng), None);
        assert_eq!(
            list.poll(at(33.0), healthy(32.0), &mut OsRng),
            Some(use_endpoint(A.parse().unwrap()))
        );
        let mut never = super::tests::list(&[A, B], keys(2, None));
        never.poll(at(3.0), silent_since(1.0), &mut OsRng);
        assert_eq!(never.poll(at(1000.0), healthy(999.0), &mut OsRng), None);
    }

    #[test]
    fn random_policy_visits_every_candidate_each_round() {
        let candidates = ["192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1", "192.0.2.4:1"];
        let mut list = list(
            &candidates,
            FailoverKeys {
                policy: EndpointPolicy::Random,
                ..keys(1, None)
            },
        );
        let mut seen = std::collections::HashSet::new();
        let mut t = 0.0;
        for _ in 0..candidates.len() {
            seen.insert(list.active().map(|(index, _)| index));
            t += 2.0;
            list.poll(at(t), silent_since(t - 1.5), &mut OsRng);
        }
        assert_eq!(seen.len(), candidates.len(), "{seen:?}");
    }

    #[test]
    fn each_move_brings_the_keepalive_of_the_endpoint_moved_to() {
        const C: &str = "gw.example.net:51820";
        let mut list =
            list_with_keepalives(&[(A, Some(25)), (B, None), (C, Some(5))], keys(2, Some(60)));
        let moved = |address: &str, keepalive: Option<u64>| {
            Some(Action::UseEndpoint {
                address: address.parse().unwrap(),
                keepalive: keepalive.map(Duration::from_secs),
            })
        };
        assert_eq!(
            list.poll(at(3.0), silent_since(1.0), &mut OsRng),
            moved(B, None)
        );
        let action = list.poll(at(5.0), silent_since(1.0), &mut OsRng);
        assert!(
            matches!(action, Some(Action::Resolve { index: 2, .. })),
            "{action:?}"
        );
        // Every address of the name is the same candidate: all bring its keepalive.
        let addresses = vec![
            "198.51.100.1:51820".parse().unwrap(),
            "198.51.100.2:51820".parse().unwrap(),
        ];
        assert_eq!(
            list.resolved(at(5.1), 2, addresses),
            moved("198.51.100.1:51820", Some(5))
        );
        assert_eq!(
            list.poll(at(7.2), silent_since(1.0), &mut OsRng),
            moved("198.51.100.2:51820", Some(5))
        );
        assert_eq!(
            list.poll(at(9.3), silent_since(1.0), &mut OsRng),
            moved(A, Some(25))
        );
        // Fail-back to the first endpoint brings its keepalive back too.
        list.poll(at(11.4), silent_since(1.0), &mut OsRng);
        assert_eq!(list.active().map(|(index, _)| index), Some(1));
        let healthy = Liveness {
            last_received: Some(at(71.0)),
            ..Liveness::default()
        };
        assert_eq!(list.poll(at(71.4), healthy, &mut OsRng), moved(A, Some(25)));
    }

    #[test]
    fn a_late_packet_from_the_endpoint_left_does_not_pull_the_peer_back() {
        let mut list = list(&[A, B], keys(2, Some(4)));
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        assert_eq!(list.pinned_address(Some(a)), None);
        list.poll(at(3.0), silent_since(1.0), &mut OsRng);
        // Still sending to A (the move is not applied yet, or a packet from A roamed it).
        assert_eq!(list.pinned_address(Some(a)), Some(b));
        assert_eq!(list.pinned_address(Some(b)), None);
        // While a name resolves there is nothing to pin to.
        let mut named = super::tests::list(&[A, "gw.example.net:1"], keys(2, None));
        named.poll(at(3.0), silent_since(1.0), &mut OsRng);
        assert_eq!(named.pinned_address(Some(a)), None);
    }
}
