//! A worker's counters, published for the control plane to read.
//!
//! The worker counts in plain integers ([`DropCounters`]) and copies them here once per batch
//! with relaxed stores: each counter has one writer, so readers see a recent, exact total
//! without any read-modify-write on the hot path. The struct is cache-line aligned so two
//! workers' counters never share a line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::{DROP_REASONS, DropCounters, DropReason};
use crate::xsk::Statistics;

/// Counters one worker publishes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    drops: [AtomicU64; DROP_REASONS],
    to_inner: AtomicU64,
    to_outer: AtomicU64,
    to_control: AtomicU64,
    keepalives: AtomicU64,
    extra: [AtomicU64; EXTRA_COUNTERS],
}

/// Worker-level events that are not pipeline verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum WorkerCounter {
    /// Frames received on the AF_XDP socket.
    RxFrames,
    /// Frames handed to the AF_XDP TX ring.
    TxFrames,
    /// Packets read from the TUN queue (GSO frames count once per segment).
    TunReads,
    /// Inner packets that could not be written to the TUN queue.
    TunWriteErrors,
    /// Frames dropped because the TX ring stayed full.
    TxRingFull,
    /// Inner packets dropped because no free UMEM frame was left.
    NoFreeFrame,
    /// Events for the control plane lost because its queue was full.
    EventsLost,
    /// Times the worker went to sleep in `poll` after its busy-poll budget ran out.
    Sleeps,
    /// Frames received on the LAN socket (full bypass).
    LanRxFrames,
    /// Frames handed to the LAN socket's TX ring (full bypass).
    LanTxFrames,
    /// Decapsulated packets handed to the kernel (TUN queue) because their destination's
    /// next hop on the LAN NIC is not resolved yet, or is not on the LAN NIC (full bypass).
    ToKernel,
    /// IPv4 packets from the LAN without DF larger than the tunnel MTU, handed to the kernel
    /// to fragment (full bypass).
    TooBigToKernel,
    /// ICMP "fragmentation needed" / "packet too big" errors sent to LAN hosts whose packets
    /// were larger than the tunnel MTU (full bypass).
    IcmpTooBig,
    /// Such errors not sent because the worker's budget (1,000 a second) was spent.
    IcmpRateLimited,
    /// Chunks of received frames this worker dealt to other workers (`Spread = on`).
    ChunksDealt,
    /// Chunks other workers dealt to this one, decapsulated here (`Spread = on`).
    ChunksHelped,
    /// Frames the kernel dropped before they reached the worker's AF_XDP sockets because
    /// their RX ring was full (the worker fell behind), from `XDP_STATISTICS`.
    XskRxRingFull,
    /// Times the kernel found the sockets' fill ring empty (no free frame to receive into).
    /// The frames this cost are among `XskRxDropped`: an event that explains drops, not a
    /// drop reason of its own.
    XskFillRingEmpty,
    /// Other frames the kernel dropped on the way to the sockets: no free frame (empty fill
    /// ring), too large for a frame, invalid descriptors.
    XskRxDropped,
    /// TX descriptors the kernel refused.
    XskTxInvalid,
}

const EXTRA_COUNTERS: usize = 20;

impl WorkerCounter {
    /// Every counter, in index order.
    pub const ALL: [WorkerCounter; EXTRA_COUNTERS] = [
        WorkerCounter::RxFrames,
        WorkerCounter::TxFrames,
        WorkerCounter::TunReads,
        WorkerCounter::TunWriteErrors,
        WorkerCounter::TxRingFull,
        WorkerCounter::NoFreeFrame,
        WorkerCounter::EventsLost,
        WorkerCounter::Sleeps,
        WorkerCounter::LanRxFrames,
        WorkerCounter::LanTxFrames,
        WorkerCounter::ToKernel,
        WorkerCounter::TooBigToKernel,
        WorkerCounter::IcmpTooBig,
        WorkerCounter::IcmpRateLimited,
        WorkerCounter::ChunksDealt,
        WorkerCounter::ChunksHelped,
        WorkerCounter::XskRxRingFull,
        WorkerCounter::XskFillRingEmpty,
        WorkerCounter::XskRxDropped,
        WorkerCounter::XskTxInvalid,
    ];

    /// A stable snake_case name, for `show` and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            WorkerCounter::RxFrames => "rx_frames",
            WorkerCounter::TxFrames => "tx_frames",
            WorkerCounter::TunReads => "tun_reads",
            WorkerCounter::TunWriteErrors => "tun_write_errors",
            WorkerCounter::TxRingFull => "tx_ring_full",
            WorkerCounter::NoFreeFrame => "no_free_frame",
            WorkerCounter::EventsLost => "events_lost",
            WorkerCounter::Sleeps => "sleeps",
            WorkerCounter::LanRxFrames => "lan_rx_frames",
            WorkerCounter::LanTxFrames => "lan_tx_frames",
            WorkerCounter::ToKernel => "to_kernel",
            WorkerCounter::TooBigToKernel => "too_big_to_kernel",
            WorkerCounter::IcmpTooBig => "icmp_too_big",
            WorkerCounter::IcmpRateLimited => "icmp_rate_limited",
            WorkerCounter::ChunksDealt => "chunks_dealt",
            WorkerCounter::ChunksHelped => "chunks_helped",
            WorkerCounter::XskRxRingFull => "xsk_rx_ring_full",
            WorkerCounter::XskFillRingEmpty => "xsk_fill_ring_empty",
            WorkerCounter::XskRxDropped => "xsk_rx_dropped",
            WorkerCounter::XskTxInvalid => "xsk_tx_invalid",
        }
    }
}

/// A worker's counters as plain numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerTotals {
    /// Pipeline verdict counters.
    pub pipeline: DropCounters,
    /// Worker-level counters, indexed by [`WorkerCounter`].
    pub extra: [u64; EXTRA_COUNTERS],
}

impl WorkerTotals {
    /// One worker-level counter.
    pub fn get(&self, counter: WorkerCounter) -> u64 {
        self.extra[counter as usize]
    }

    /// Sets the kernel's drop counters from the `XDP_STATISTICS` of the worker's sockets
    /// (the WAN socket, and the LAN socket in full bypass), summed. The kernel's figures are
    /// totals since each socket was bound, so they replace what was there.
    pub fn set_kernel_drops<'a>(&mut self, sockets: impl IntoIterator<Item = &'a Statistics>) {
        let mut sum = Statistics::default();
        for stats in sockets {
            sum.rx_ring_full += stats.rx_ring_full;
            sum.rx_fill_ring_empty_descs += stats.rx_fill_ring_empty_descs;
            sum.rx_dropped += stats.rx_dropped + stats.rx_invalid_descs;
            sum.tx_invalid_descs += stats.tx_invalid_descs;
        }
        self.extra[WorkerCounter::XskRxRingFull as usize] = sum.rx_ring_full;
        self.extra[WorkerCounter::XskFillRingEmpty as usize] = sum.rx_fill_ring_empty_descs;
        self.extra[WorkerCounter::XskRxDropped as usize] = sum.rx_dropped;
        self.extra[WorkerCounter::XskTxInvalid as usize] = sum.tx_invalid_descs;
    }
}

impl WorkerStats {
    /// Copies the worker's own counters out (one writer: plain stores suffice).
    pub fn publish(&self, totals: &WorkerTotals) {
        let store = |cell: &AtomicU64, value: u64| cell.store(value, Ordering::Relaxed);
        for (cell, value) in self.drops.iter().zip(totals.pipeline.drops) {
            store(cell, value);
        }
        store(&self.to_inner, totals.pipeline.to_inner);
        store(&self.to_outer, totals.pipeline.to_outer);
        store(&self.to_control, totals.pipeline.to_control);
        store(&self.keepalives, totals.pipeline.keepalives);
        for (cell, value) in self.extra.iter().zip(totals.extra) {
            store(cell, value);
        }
    }

    /// The latest published totals.
    pub fn read(&self) -> WorkerTotals {
        let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let mut totals = WorkerTotals::default();
        for (value, cell) in totals.pipeline.drops.iter_mut().zip(&self.drops) {
            *value = load(cell);
        }
        totals.pipeline.to_inner = load(&self.to_inner);
        totals.pipeline.to_outer = load(&self.to_outer);
        totals.pipeline.to_control = load(&self.to_control);
        totals.pipeline.keepalives = load(&self.keepalives);
        for (value, cell) in totals.extra.iter_mut().zip(&self.extra) {
            *value = load(cell);
        }
        totals
    }

    /// Drops for one pipeline reason, as last published.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_are_summed_over_the_sockets_and_replace_the_old_figures() {
        let wan = Statistics {
            rx_dropped: 1,
            rx_invalid_descs: 2,
            tx_invalid_descs: 3,
            rx_ring_full: 4,
            rx_fill_ring_empty_descs: 5,
            tx_ring_empty_descs: 6,
        };
        let lan = Statistics {
            rx_ring_full: 10,
            rx_fill_ring_empty_descs: 20,
            ..Statistics::default()
        };
        let mut totals = WorkerTotals::default();
        totals.extra[WorkerCounter::XskRxRingFull as usize] = 99;
        totals.set_kernel_drops([&wan, &lan]);
        assert_eq!(totals.get(WorkerCounter::XskRxRingFull), 14);
        assert_eq!(totals.get(WorkerCounter::XskFillRingEmpty), 25);
        assert_eq!(totals.get(WorkerCounter::XskRxDropped), 3);
        assert_eq!(totals.get(WorkerCounter::XskTxInvalid), 3);
        let names: Vec<&str> = WorkerCounter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.contains(&"xsk_fill_ring_empty"));
        for (i, counter) in WorkerCounter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, i, "ALL is in index order");
        }
    }

    #[test]
    fn published_totals_read_back_exactly() {
        let stats = WorkerStats::default();
        let mut totals = WorkerTotals::default();
        totals.pipeline.drops[DropReason::BadTag as usize] = 7;
        totals.pipeline.to_inner = 11;
        totals.extra[WorkerCounter::Sleeps as usize] = 3;
        stats.publish(&totals);
        assert_eq!(stats.read(), totals);
        assert_eq!(stats.drops(DropReason::BadTag), 7);
        assert_eq!(stats.read().get(WorkerCounter::Sleeps), 3);
    }
}
