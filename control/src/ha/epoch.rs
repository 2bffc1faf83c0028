//! Counter epochs: disjoint ranges of send counters, one per promotion of a node.

/// Nodes a cluster may have: the node id lives in an epoch's low bits.
pub const MAX_NODES: u32 = 16;

/// A range of send counters starting at `epoch << 32`, owned by one node for one promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterEpoch(u32);

/// Why an epoch cannot be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// Node ids are 0..16.
    #[error("node id {0} is out of range (0..{MAX_NODES})")]
    NodeId(u32),
    /// Epochs would no longer fit 31 bits (2^27 promotions).
    #[error("counter epochs exhausted")]
    Exhausted,
}

impl CounterEpoch {
    /// The epoch sessions start in after a handshake: counters from 0.
    pub const INITIAL: CounterEpoch = CounterEpoch(0);

    /// The epoch of a counter.
    pub fn of_counter(counter: u64) -> CounterEpoch {
        CounterEpoch((counter >> 32) as u32)
    }

    /// The first epoch above every epoch in `seen` that belongs to `node_id`: what a node
    /// promoting itself uses. Unique per (promotion, node), and higher than anything either
    /// node has sent with.
    pub fn next_for(
        node_id: u32,
        seen: impl IntoIterator<Item = CounterEpoch>,
    ) -> Result<CounterEpoch, EpochError> {
        if node_id >= MAX_NODES {
            return Err(EpochError::NodeId(node_id));
        }
        let highest = seen.into_iter().map(|e| e.0).max().unwrap_or(0);
        let promotion = highest / MAX_NODES + 1;
        let epoch = promotion
            .checked_mul(MAX_NODES)
            .and_then(|e| e.checked_add(node_id))
            .filter(|e| *e < 1 << 31)
            .ok_or(EpochError::Exhausted)?;
        Ok(CounterEpoch(epoch))
    }

    /// The first counter of the epoch.
    pub fn first_counter(self) -> u64 {
        u64::from(self.0) << 32
    }

    /// The epoch number.
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_promotion_gets_a_fresh_higher_epoch_tagged_with_the_node() {
        let a1 = CounterEpoch::next_for(0, []).unwrap();
        assert_eq!(a1.get(), 16);
        let b1 = CounterEpoch::next_for(1, [a1]).unwrap();
        assert_eq!(b1.get(), 33);
        assert!(b1 > a1 && b1.first_counter() > a1.first_counter() + u64::from(u32::MAX));
        // Two nodes promoting from the same knowledge (split brain) still differ.
        let a2 = CounterEpoch::next_for(0, [b1]).unwrap();
        let b2 = CounterEpoch::next_for(1, [b1]).unwrap();
        assert_ne!(a2, b2);
        assert_eq!(CounterEpoch::of_counter(b2.first_counter() + 5), b2);
        assert_eq!(CounterEpoch::next_for(16, []), Err(EpochError::NodeId(16)));
        assert_eq!(
            CounterEpoch::next_for(0, [CounterEpoch((1 << 31) - 1)]),
            Err(EpochError::Exhausted)
        );
    }
}
