//! The four typed rings of an AF_XDP socket. Frames move between them by
//! value: filling consumes [`Frame`]s, receiving yields [`Packet`]s,
//! transmitting consumes `Packet`s and completion yields `Frame`s, so a frame
//! is never on two rings at once. Batch calls never allocate: outputs go into
//! the caller's `Vec` only up to its spare capacity.

use super::{
    ring::{ConsumerCursor, ProducerCursor},
    sys::Mapping,
    umem::{Frame, Geometry, Packet},
};

/// An RX/TX descriptor (`struct xdp_desc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct XdpDesc {
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) options: u32,
}

const XDP_RING_NEED_WAKEUP: u32 = 1;

fn spare(out: &Vec<impl Sized>) -> usize {
    out.capacity() - out.len()
}

fn batch(max: usize, limit: usize) -> u32 {
    max.min(limit).min(u32::MAX as usize) as u32
}

/// Frames we give the kernel to receive into.
#[derive(Debug)]
pub struct FillRing {
    cursor: ProducerCursor<u64>,
    geometry: Geometry,
    _mapping: Option<Mapping>,
}

impl FillRing {
    pub(crate) fn new(
        cursor: ProducerCursor<u64>,
        geometry: Geometry,
        mapping: Option<Mapping>,
    ) -> Self {
        Self {
            cursor,
            geometry,
            _mapping: mapping,
        }
    }

    /// Moves up to `max` frames from the end of `frames` onto the ring and
    /// returns how many moved.
    pub fn fill(&mut self, frames: &mut Vec<Frame>, max: usize) -> usize {
        let count = self.cursor.free(batch(max, frames.len()));
        for offset in 0..count {
            let frame = frames.pop().expect("counted above");
            assert_eq!(
                frame_umem(&frame),
                self.geometry.umem_id,
                "frame from another UMEM"
            );
            self.cursor.write(offset, frame.base());
        }
        self.cursor.submit(count);
        count as usize
    }

    /// Whether the kernel asks for a wakeup (`poll`/`recvfrom`) to pick up
    /// newly filled frames. Meaningful when bound with need_wakeup.
    pub fn needs_wakeup(&self) -> bool {
        self.cursor.flags() & XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring size in descriptors.
    pub fn size(&self) -> u32 {
        self.cursor.size()
    }
}

/// Frames the kernel has finished transmitting.
#[derive(Debug)]
pub struct CompletionRing {
    cursor: ConsumerCursor<u64>,
    geometry: Geometry,
    _mapping: Option<Mapping>,
    /// Frames taken back since the ring was made.
    reclaimed: u64,
}

impl CompletionRing {
    pub(crate) fn new(
        cursor: ConsumerCursor<u64>,
        geometry: Geometry,
        mapping: Option<Mapping>,
    ) -> Self {
        Self {
            cursor,
            geometry,
            _mapping: mapping,
            reclaimed: 0,
        }
    }

    /// Frames taken back since the ring was made.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    /// Appends up to `max` completed frames to `frames` (within its spare
    /// capacity) and returns how many.
    pub fn reclaim(&mut self, frames: &mut Vec<Frame>, max: usize) -> usize {
        let count = self.cursor.available(batch(max, spare(frames)));
        for offset in 0..count {
            frames.push(Frame::from_kernel(self.cursor.read(offset), self.geometry));
        }
        self.cursor.release(count);
        self.reclaimed += u64::from(count);
        count as usize
    }

    /// Ring size in descriptors.
    pub fn size(&self) -> u32 {
        self.cursor.size()
    }
}

/// Received packets.
#[derive(Debug)]
pub struct RxRing {
    cursor: ConsumerCursor<XdpDesc>,
    geometry: Geometry,
    _mapping: Option<Mapping>,
}

impl RxRing {
    pub(crate) fn new(
        cursor: ConsumerCursor<XdpDesc>,
        geometry: Geometry,
        mapping: Option<Mapping>,
    ) -> Self {
        Self {
            cursor,
            geometry,
            _mapping: mapping,
        }
    }

    /// Appends up to `max` received packets to `packets` (within its spare
    /// capacity) and returns how many.
    pub fn receive(&mut self, packets: &mut Vec<Packet>, max: usize) -> usize {
        let count = self.cursor.available(batch(max, spare(packets)));
        for offset in 0..count {
            let desc = self.cursor.read(offset);
            let frame = Frame::from_kernel(desc.addr, self.geometry);
            let in_frame = (desc.addr & self.geometry.frame_mask) as u32;
            packets.push(Packet::from_kernel(frame, in_frame, desc.len));
        }
        self.cursor.release(count);
        count as usize
    }

    /// Ring size in descriptors.
    pub fn size(&self) -> u32 {
        self.cursor.size()
    }
}

/// Packets to transmit.
#[derive(Debug)]
pub struct TxRing {
    cursor: ProducerCursor<XdpDesc>,
    geometry: Geometry,
    _mapping: Option<Mapping>,
    /// Descriptors submitted since the ring was made.
    submitted: u64,
}

impl TxRing {
    pub(crate) fn new(
        cursor: ProducerCursor<XdpDesc>,
        geometry: Geometry,
        mapping: Option<Mapping>,
    ) -> Self {
        Self {
            cursor,
            geometry,
            _mapping: mapping,
            submitted: 0,
        }
    }

    /// Descriptors submitted since the ring was made.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Moves packets from the front of `packets` onto the ring, in order,
    /// as many as fit; returns how many moved. Kick the socket afterwards
    /// ([`super::XskSocket::kick_tx`]).
    pub fn transmit(&mut self, packets: &mut Vec<Packet>) -> usize {
        let count = self.cursor.free(batch(packets.len(), packets.len()));
        for (offset, packet) in packets.drain(..count as usize).enumerate() {
            assert_eq!(
                frame_umem(packet.frame()),
                self.geometry.umem_id,
                "frame from another UMEM"
            );
            let desc = XdpDesc {
                addr: packet.addr(),
                len: packet.len(),
                options: 0,
            };
            self.cursor.write(offset as u32, desc);
        }
        self.cursor.submit(count);
        self.submitted += u64::from(count);
        count as usize
    }

    /// Descriptors on the ring the kernel has not taken yet.
    pub fn pending(&mut self) -> u32 {
        self.cursor.outstanding()
    }

    /// Whether the kernel asks for a `sendto` kick to transmit.
    pub fn needs_wakeup(&self) -> bool {
        self.cursor.flags() & XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring size in descriptors.
    pub fn size(&self) -> u32 {
        self.cursor.size()
    }
}

fn frame_umem(frame: &Frame) -> u32 {
    frame.umem_id()
}

#[cfg(test)]
mod tests {
    //! The typed rings against a model of the kernel: the test plays the
    //! kernel through the same shared-index protocol (fill → RX, TX →
    //! completion) and checks that every frame has exactly one owner after
    //! every step, and that the rings behave like FIFO queues.
    use super::*;
    use crate::xsk::ring::{RingPointers, testing::HeapRing};
    use proptest::prelude::*;
    use std::collections::{BTreeSet, VecDeque};

    const FRAME_SIZE: u64 = 2048;
    const UMEM_ID: u32 = 7;

    fn geometry() -> Geometry {
        Geometry {
            umem_id: UMEM_ID,
            frame_mask: FRAME_SIZE - 1,
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Fill(usize),
        KernelReceive { count: u32, len: u32 },
        Receive(usize),
        Transmit(usize),
        KernelTransmit(u32),
        Reclaim(usize),
        RecycleRx(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (0usize..24).prop_map(Step::Fill),
                (0u32..24, 60u32..1500).prop_map(|(count, len)| Step::KernelReceive { count, len }),
                (0usize..24).prop_map(Step::Receive),
                (0usize..24).prop_map(Step::Transmit),
                (0u32..24).prop_map(Step::KernelTransmit),
                (0usize..24).prop_map(Step::Reclaim),
                (0usize..24).prop_map(Step::RecycleRx),
            ],
            0..300,
        )
    }

    struct Rings {
        fill: FillRing,
        rx: RxRing,
        tx: TxRing,
        comp: CompletionRing,
        kernel_fill: ConsumerCursor<u64>,
        kernel_rx: ProducerCursor<XdpDesc>,
        kernel_tx: ConsumerCursor<XdpDesc>,
        kernel_comp: ProducerCursor<u64>,
    }

    fn rings(
        fill: RingPointers<u64>,
        comp: RingPointers<u64>,
        rx: RingPointers<XdpDesc>,
        tx: RingPointers<XdpDesc>,
    ) -> Rings {
        // SAFETY (for each constructor below): the heap rings outlive `Rings`
        // (the test drops them last); each ring gets one producer and one
        // consumer cursor.
        Rings {
            // SAFETY: see above.
            fill: FillRing::new(unsafe { ProducerCursor::new(fill) }, geometry(), None),
            // SAFETY: see above.
            comp: CompletionRing::new(unsafe { ConsumerCursor::new(comp) }, geometry(), None),
            // SAFETY: see above.
            rx: RxRing::new(unsafe { ConsumerCursor::new(rx) }, geometry(), None),
            // SAFETY: see above.
            tx: TxRing::new(unsafe { ProducerCursor::new(tx) }, geometry(), None),
            // SAFETY: see above.
            kernel_fill: unsafe { ConsumerCursor::new(fill) },
            // SAFETY: see above.
            kernel_rx: unsafe { ProducerCursor::new(rx) },
            // SAFETY: see above.
            kernel_tx: unsafe { ConsumerCursor::new(tx) },
            // SAFETY: see above.
            kernel_comp: unsafe { ProducerCursor::new(comp) },
        }
    }

    #[test]
    fn need_wakeup_is_read_from_the_ring_flags() {
        let mut fill_memory = HeapRing::<u64>::new(4, 0);
        let mut tx_memory = HeapRing::<XdpDesc>::new(4, 0);
        // SAFETY: the heap rings outlive the cursors; one cursor per ring.
        let fill = FillRing::new(
            unsafe { ProducerCursor::new(fill_memory.pointers()) },
            geometry(),
            None,
        );
        // SAFETY: as above.
        let tx = TxRing::new(
            unsafe { ProducerCursor::new(tx_memory.pointers()) },
            geometry(),
            None,
        );
        assert!(!fill.needs_wakeup() && !tx.needs_wakeup());
        fill_memory.set_flags(XDP_RING_NEED_WAKEUP);
        tx_memory.set_flags(XDP_RING_NEED_WAKEUP);
        assert!(fill.needs_wakeup() && tx.needs_wakeup());
        drop((fill, tx));
    }

    proptest! {
        #[test]
        fn frames_have_one_owner_and_rings_are_fifo(
            frame_count in 1u64..48,
            size_log2 in 0u32..5,
            start_index in prop_oneof![Just(0u32), Just(u32::MAX - 20)],
            rx_offset in 0u32..300,
            steps in steps(),
        ) {
            let size = 1u32 << size_log2;
            let mut fill_memory = HeapRing::<u64>::new(size, start_index);
            let mut comp_memory = HeapRing::<u64>::new(size, start_index);
            let mut rx_memory = HeapRing::<XdpDesc>::new(size, start_index);
            let mut tx_memory = HeapRing::<XdpDesc>::new(size, start_index);
            let mut r = rings(
                fill_memory.pointers(),
                comp_memory.pointers(),
                rx_memory.pointers(),
                tx_memory.pointers(),
            );

            let all: BTreeSet<u64> = (0..frame_count).map(|i| i * FRAME_SIZE).collect();
            let mut pool: Vec<Frame> = all
                .iter()
                .map(|&base| Frame::from_kernel(base, geometry()))
                .collect();
            pool.reserve(all.len());
            let mut received: Vec<Packet> = Vec::with_capacity(all.len());
            // The model: what each ring and the kernel hold, in order.
            let mut model_fill: VecDeque<u64> = VecDeque::new();
            let mut model_rx: VecDeque<(u64, u32)> = VecDeque::new();
            let mut model_tx: VecDeque<(u64, u32)> = VecDeque::new();
            let mut model_comp: VecDeque<u64> = VecDeque::new();

            for step in steps {
                match step {
                    Step::Fill(max) => {
                        // `fill` pops from the end of the pool.
                        let pop_order: Vec<u64> = pool.iter().rev().map(Frame::base).collect();
                        let moved = r.fill.fill(&mut pool, max);
                        let expected = max.min(pop_order.len()).min(size as usize - model_fill.len());
                        prop_assert_eq!(moved, expected);
                        model_fill.extend(&pop_order[..moved]);
                    }
                    Step::KernelReceive { count, len } => {
                        // The kernel takes frames from fill and returns them on RX.
                        let count = r.kernel_fill.available(count).min(r.kernel_rx.free(count));
                        for i in 0..count {
                            let base = r.kernel_fill.read(i);
                            prop_assert_eq!(Some(base & !(FRAME_SIZE - 1)), model_fill.pop_front());
                            r.kernel_rx.write(i, XdpDesc { addr: base + u64::from(rx_offset), len, options: 0 });
                            model_rx.push_back((base, len));
                        }
                        r.kernel_fill.release(count);
                        r.kernel_rx.submit(count);
                    }
                    Step::Receive(max) => {
                        let before = received.len();
                        let got = r.rx.receive(&mut received, max);
                        prop_assert_eq!(got, max.min(model_rx.len()).min(all.len() - before));
                        for packet in &received[before..] {
                            let (base, len) = model_rx.pop_front().expect("model has it");
                            prop_assert_eq!(packet.frame().base(), base);
                            prop_assert_eq!(packet.offset(), rx_offset);
                            prop_assert_eq!(packet.len(), len);
                        }
                    }
                    Step::Transmit(max) => {
                        let max = max.min(received.len());
                        let mut batch: Vec<Packet> = received.drain(..max).collect();
                        let expected: Vec<(u64, u32)> =
                            batch.iter().map(|p| (p.addr(), p.len())).collect();
                        let sent = r.tx.transmit(&mut batch);
                        prop_assert_eq!(sent, max.min(size as usize - model_tx.len()));
                        model_tx.extend(expected[..sent].iter().copied());
                        // Unsent packets go back to the front, order kept.
                        for (i, packet) in batch.into_iter().enumerate() {
                            received.insert(i, packet);
                        }
                    }
                    Step::KernelTransmit(count) => {
                        let count = r.kernel_tx.available(count).min(r.kernel_comp.free(count));
                        for i in 0..count {
                            let desc = r.kernel_tx.read(i);
                            prop_assert_eq!(Some((desc.addr, desc.len)), model_tx.pop_front());
                            r.kernel_comp.write(i, desc.addr);
                            model_comp.push_back(desc.addr & !(FRAME_SIZE - 1));
                        }
                        r.kernel_tx.release(count);
                        r.kernel_comp.submit(count);
                    }
                    Step::Reclaim(max) => {
                        let before = pool.len();
                        let got = r.comp.reclaim(&mut pool, max);
                        prop_assert_eq!(got, max.min(model_comp.len()));
                        for frame in &pool[before..] {
                            prop_assert_eq!(Some(frame.base()), model_comp.pop_front());
                        }
                    }
                    Step::RecycleRx(max) => {
                        let max = max.min(received.len());
                        pool.extend(received.drain(..max).map(Packet::into_frame));
                    }
                }
                // Conservation: every frame is in exactly one place.
                let mut owners: Vec<u64> = Vec::new();
                owners.extend(pool.iter().map(Frame::base));
                owners.extend(received.iter().map(|p| p.frame().base()));
                owners.extend(model_fill.iter().copied());
                owners.extend(model_rx.iter().map(|&(base, _)| base));
                owners.extend(model_tx.iter().map(|&(addr, _)| addr & !(FRAME_SIZE - 1)));
                owners.extend(model_comp.iter().copied());
                owners.sort_unstable();
                let unique: BTreeSet<u64> = owners.iter().copied().collect();
                prop_assert_eq!(owners.len(), unique.len(), "a frame has two owners");
                prop_assert_eq!(&unique, &all, "a frame was lost");
                prop_assert!(pool.capacity() >= all.len());
                // In flight: submitted for transmission and not reclaimed yet, which is what
                // a worker waits for before it sleeps.
                prop_assert_eq!(
                    r.tx.submitted() - r.comp.reclaimed(),
                    (model_tx.len() + model_comp.len()) as u64
                );
            }
            drop(r);
            drop((fill_memory, comp_memory, rx_memory, tx_memory));
        }
    }
}
