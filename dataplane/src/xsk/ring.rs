//! Single-producer/single-consumer ring cursors over the memory the kernel
//! shares with us, following the protocol in the kernel's AF_XDP documentation
//! (Documentation/networking/af_xdp.rst) and `xsk_queue.h`.
//!
//! Each ring is `producer: u32`, `consumer: u32`, `flags: u32` and `size`
//! descriptors; indices run freely and wrap at `u32::MAX`, the slot is
//! `index & (size - 1)`. The producer publishes with a release store after
//! writing descriptors; the consumer reads the producer index with an acquire
//! load before reading them, and the reverse for slots handed back.
//!
//! The cursors cache the other side's index and refresh it only when the
//! cached view cannot satisfy a request, so a batch costs one shared-memory
//! load and one store.

use std::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

/// Raw pointers into one ring's shared memory. Whoever builds it keeps the
/// memory mapped for as long as the cursors using it live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingPointers<T> {
    pub(crate) producer: NonNull<AtomicU32>,
    pub(crate) consumer: NonNull<AtomicU32>,
    pub(crate) flags: NonNull<AtomicU32>,
    pub(crate) descs: NonNull<T>,
    pub(crate) size: u32,
}

impl<T> RingPointers<T> {
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the builder of `RingPointers` guarantees the pointer is valid,
        // aligned and mapped for the cursor's lifetime; the kernel writes it only
        // through atomic stores.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }

    fn slot(&self, index: u32) -> *mut T {
        let slot = (index & (self.size - 1)) as usize;
        // SAFETY: `slot < size` and the descriptor array holds `size` entries.
        unsafe { self.descs.as_ptr().add(slot) }
    }
}

/// Our side of a ring we produce into (fill, TX).
#[derive(Debug)]
pub(crate) struct ProducerCursor<T> {
    ring: RingPointers<T>,
    cached_producer: u32,
    cached_consumer: u32,
    _descs: PhantomData<T>,
}

// SAFETY: the cursor is the ring's only user-space producer; moving it to
// another thread moves that role with it. The memory it points to stays
// mapped (see `RingPointers`).
unsafe impl<T: Send> Send for ProducerCursor<T> {}

impl<T: Copy> ProducerCursor<T> {
    /// # Safety
    /// `ring` must point to a mapped ring of `ring.size` (a power of two)
    /// descriptors that stays mapped while the cursor lives, and no other
    /// user-space producer may exist for it.
    pub(crate) unsafe fn new(ring: RingPointers<T>) -> Self {
        debug_assert!(ring.size.is_power_of_two());
        let cached_producer = ring.producer().load(Ordering::Relaxed);
        let cached_consumer = ring.consumer().load(Ordering::Acquire);
        Self {
            ring,
            cached_producer,
            cached_consumer,
            _descs: PhantomData,
        }
    }

    pub(crate) fn size(&self) -> u32 {
        self.ring.size
    }

    /// Free slots, at most `wanted`; looks at the consumer index only when
    /// the cached view shows fewer than `wanted`.
    pub(crate) fn free(&mut self, wanted: u32) -> u32 {
        let mut free = self.ring.size - self.cached_producer.wrapping_sub(self.cached_consumer);
        if free < wanted {
            self.cached_consumer = self.ring.consumer().load(Ordering::Acquire);
            free = self.ring.size - self.cached_producer.wrapping_sub(self.cached_consumer);
        }
        free.min(wanted)
    }

    /// Writes the `offset`-th descriptor after the last submitted one.
    /// The caller has seen `free() > offset`.
    pub(crate) fn write(&mut self, offset: u32, desc: T) {
        debug_assert!(
            offset < self.ring.size - self.cached_producer.wrapping_sub(self.cached_consumer)
        );
        let slot = self.ring.slot(self.cached_producer.wrapping_add(offset));
        // SAFETY: the slot lies in the mapped descriptor array, and the consumer
        // does not read it until `submit` publishes it (it is free per `free`).
        unsafe { slot.write_volatile(desc) };
    }

    /// Publishes the next `count` written descriptors to the consumer.
    pub(crate) fn submit(&mut self, count: u32) {
        self.cached_producer = self.cached_producer.wrapping_add(count);
        self.ring
            .producer()
            .store(self.cached_producer, Ordering::Release);
    }

    /// Descriptors submitted but not yet consumed by the other side, as of
    /// the last look at its index.
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.cached_consumer = self.ring.consumer().load(Ordering::Acquire);
        self.cached_producer.wrapping_sub(self.cached_consumer)
    }

    pub(crate) fn flags(&self) -> u32 {
        self.ring.flags().load(Ordering::Relaxed)
    }
}

/// Our side of a ring we consume from (RX, completion).
#[derive(Debug)]
pub(crate) struct ConsumerCursor<T> {
    ring: RingPointers<T>,
    cached_producer: u32,
    cached_consumer: u32,
    _descs: PhantomData<T>,
}

// SAFETY: as for `ProducerCursor`: the single consumer role moves with it.
unsafe impl<T: Send> Send for ConsumerCursor<T> {}

impl<T: Copy> ConsumerCursor<T> {
    /// # Safety
    /// As for [`ProducerCursor::new`], with "consumer" for "producer".
    pub(crate) unsafe fn new(ring: RingPointers<T>) -> Self {
        debug_assert!(ring.size.is_power_of_two());
        let cached_consumer = ring.consumer().load(Ordering::Relaxed);
        let cached_producer = ring.producer().load(Ordering::Acquire);
        Self {
            ring,
            cached_producer,
            cached_consumer,
            _descs: PhantomData,
        }
    }

    pub(crate) fn size(&self) -> u32 {
        self.ring.size
    }

    /// Filled slots ready to read, at most `wanted`.
    pub(crate) fn available(&mut self, wanted: u32) -> u32 {
        let mut available = self.cached_producer.wrapping_sub(self.cached_consumer);
        if available < wanted {
            self.cached_producer = self.ring.producer().load(Ordering::Acquire);
            available = self.cached_producer.wrapping_sub(self.cached_consumer);
        }
        available.min(wanted)
    }

    /// Reads the `offset`-th unread descriptor. The caller has seen
    /// `available() > offset`.
    pub(crate) fn read(&self, offset: u32) -> T {
        debug_assert!(offset < self.cached_producer.wrapping_sub(self.cached_consumer));
        let slot = self.ring.slot(self.cached_consumer.wrapping_add(offset));
        // SAFETY: the slot lies in the mapped descriptor array and was published
        // by the producer (acquire load in `available`); it stays ours until
        // `release` hands it back.
        unsafe { slot.read_volatile() }
    }

    /// Hands the next `count` read slots back to the producer.
    pub(crate) fn release(&mut self, count: u32) {
        self.cached_consumer = self.cached_consumer.wrapping_add(count);
        self.ring
            .consumer()
            .store(self.cached_consumer, Ordering::Release);
    }
}

/// Heap-backed rings for testing the cursors and the typed rings without a
/// kernel: the test plays the kernel through the same index protocol.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// One ring's memory: the three indices and the descriptors.
    #[derive(Debug)]
    pub(crate) struct HeapRing<T> {
        producer: Box<AtomicU32>,
        consumer: Box<AtomicU32>,
        flags: Box<AtomicU32>,
        descs: Box<[T]>,
    }

    impl<T: Copy + Default> HeapRing<T> {
        pub(crate) fn new(size: u32, start_index: u32) -> Self {
            Self {
                producer: Box::new(AtomicU32::new(start_index)),
                consumer: Box::new(AtomicU32::new(start_index)),
                flags: Box::new(AtomicU32::new(0)),
                descs: vec![T::default(); size as usize].into_boxed_slice(),
            }
        }

        pub(crate) fn pointers(&mut self) -> RingPointers<T> {
            RingPointers {
                producer: NonNull::from(&*self.producer),
                consumer: NonNull::from(&*self.consumer),
                flags: NonNull::from(&*self.flags),
                descs: NonNull::new(self.descs.as_mut_ptr()).expect("boxed slice pointer"),
                size: self.descs.len() as u32,
            }
        }

        pub(crate) fn set_flags(&self, flags: u32) {
            self.flags.store(flags, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::HeapRing;
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        Produce(u32),
        Consume(u32),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u32..40).prop_map(Op::Produce),
                (0u32..40).prop_map(Op::Consume)
            ],
            0..200,
        )
    }

    proptest! {
        /// The cursors behave like a bounded FIFO queue, including across the
        /// wrap of the free-running u32 indices.
        #[test]
        fn cursors_match_a_bounded_fifo(
            size_log2 in 0u32..6,
            start_index in prop_oneof![Just(0u32), Just(u32::MAX - 50), any::<u32>()],
            ops in ops(),
        ) {
            let size = 1u32 << size_log2;
            let mut memory = HeapRing::<u64>::new(size, start_index);
            let pointers = memory.pointers();
            // SAFETY: `memory` outlives both cursors; one producer, one consumer.
            let mut producer = unsafe { ProducerCursor::new(pointers) };
            // SAFETY: as above.
            let mut consumer = unsafe { ConsumerCursor::new(pointers) };
            let mut model: VecDeque<u64> = VecDeque::new();
            let mut next_value = 0u64;
            for op in ops {
                match op {
                    Op::Produce(wanted) => {
                        let free = producer.free(wanted);
                        prop_assert_eq!(free, wanted.min(size - model.len() as u32));
                        for offset in 0..free {
                            producer.write(offset, next_value);
                            model.push_back(next_value);
                            next_value += 1;
                        }
                        producer.submit(free);
                    }
                    Op::Consume(wanted) => {
                        let available = consumer.available(wanted);
                        prop_assert_eq!(available, wanted.min(model.len() as u32));
                        for offset in 0..available {
                            prop_assert_eq!(Some(consumer.read(offset)), model.pop_front());
                        }
                        consumer.release(available);
                    }
                }
                prop_assert_eq!(producer.outstanding(), model.len() as u32);
            }
            drop(memory);
        }
    }
}
