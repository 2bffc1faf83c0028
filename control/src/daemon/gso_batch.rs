//! Sealed datagrams gathered for UDP segmentation offload in portable mode.
//!
//! Portable mode pays the kernel's UDP send path once per datagram, and with a 1420-byte
//! tunnel MTU that path, not the AEAD, bounds a bulk TCP flow. But a TUN read in offload mode
//! hands us a whole TSO superframe, whose segments seal into datagrams of one size for one
//! peer: exactly what one `sendmsg` with `UDP_SEGMENT` carries (the kernel, or the NIC,
//! splits it at the last moment), as wireguard-go does. [`GsoBatch`] is where they gather:
//! datagrams are sealed straight into its buffer, and it hands back a run of them whenever
//! the next one cannot join. The receiving side asks for `UDP_GRO`, so the run often arrives
//! in one receive too.
//!
//! A datagram joins the run when it goes the same way (destination and source address), is
//! no longer than the first (the kernel cuts every segment at the first's size; only the
//! last may be shorter, so a shorter one ends the run), the run has fewer than
//! [`MAX_SEGMENTS`] datagrams and stays within [`MAX_RUN_BYTES`]. Order is kept: a datagram
//! that does not join is sent after the run before it.
//!
//! Sans-IO: the caller seals into [`GsoBatch::tail`], reports with [`GsoBatch::commit`],
//! and gets runs to send through a closure.

use std::net::{IpAddr, SocketAddr};

/// Datagrams in one run (Linux's `UDP_MAX_SEGMENTS` up to 6.10; 128 since).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes in one run: a UDP length field's worth, less the IPv4 and UDP headers, which bound
/// an IPv4 send (`ip_append_data` refuses more with `EMSGSIZE`).
pub const MAX_RUN_BYTES: usize = 65_535 - 20 - 8;
/// The most a single sealed datagram may need at the tail: a 64 KB inner packet, its
/// WireGuard header, padding and tag.
pub const MAX_DATAGRAM: usize = 65_536 + 64;

/// Where a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub to: SocketAddr,
    /// The local address to send from, when one is remembered for `to`.
    pub source: Option<IpAddr>,
}

/// Datagrams to send in one call: `bytes` holds `count` datagrams of `segment` bytes each,
/// the last possibly shorter.
#[derive(Debug, PartialEq, Eq)]
pub struct Run<'a> {
    pub bytes: &'a [u8],
    pub segment: usize,
    pub count: usize,
    pub route: Route,
}

impl Run<'_> {
    /// Each datagram on its own, for a send without segmentation offload.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks(self.segment.max(1))
    }
}

/// The run under construction.
#[derive(Debug, Clone, Copy)]
struct Open {
    route: Route,
    segment: usize,
    count: usize,
    /// A shorter datagram ended it.
    closed: bool,
}

/// A run of sealed datagrams under construction. Owns one buffer, allocated once.
#[derive(Debug)]
pub struct GsoBatch {
    buffer: Box<[u8]>,
    len: usize,
    open: Option<Open>,
}

impl Default for GsoBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl GsoBatch {
    pub fn new() -> Self {
        Self {
            buffer: vec![0u8; MAX_RUN_BYTES + MAX_DATAGRAM].into_boxed_slice(),
            len: 0,
            open: None,
        }
    }

    /// Where to seal the next datagram: at least [`MAX_DATAGRAM`] bytes (the run is sent
    /// first when less is left). Report what was written with [`GsoBatch::commit`];
    /// anything written and not committed is ignored.
    pub fn tail(&mut self, send: impl FnMut(Run<'_>)) -> &mut [u8] {
        if self.buffer.len() - self.len < MAX_DATAGRAM {
            self.flush(send);
        }
        &mut self.buffer[self.len..]
    }

    /// Adds the `len` bytes just sealed at the tail, going along `route`. Sends the run
    /// before it first when it cannot join that run.
    pub fn commit(&mut self, len: usize, route: Route, mut send: impl FnMut(Run<'_>)) {
        let start = self.len;
        let len = len.min(self.buffer.len() - start);
        let joins = self.open.is_some_and(|open| {
            !open.closed
                && open.route == route
                && len <= open.segment
                && open.count < MAX_SEGMENTS
                && start + len <= MAX_RUN_BYTES
        });
        if !joins {
            self.flush(&mut send);
            self.buffer.copy_within(start..start + len, 0);
        }
        let open = self.open.get_or_insert(Open {
            route,
            segment: len,
            count: 0,
            closed: false,
        });
        open.count += 1;
        open.closed = len < open.segment;
        self.len += len;
    }

    /// Sends the run under construction, if any. Call before the loop sleeps.
    pub fn flush(&mut self, mut send: impl FnMut(Run<'_>)) {
        let Some(open) = self.open.take() else {
            return;
        };
        let bytes = &self.buffer[..self.len];
        self.len = 0;
        send(Run {
            bytes,
            segment: open.segment,
            count: open.count,
            route: open.route,
        });
    }

    /// Whether a run is waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.open.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(port: u16) -> Route {
        Route {
            to: SocketAddr::from(([192, 0, 2, 1], port)),
            source: None,
        }
    }

    /// Runs sent, as (datagrams, segment, route).
    type Sent = Vec<(Vec<Vec<u8>>, usize, Route)>;

    fn record(sent: &mut Sent, run: Run<'_>) {
        let datagrams: Vec<Vec<u8>> = run.datagrams().map(<[u8]>::to_vec).collect();
        assert_eq!(datagrams.len(), run.count);
        sent.push((datagrams, run.segment, run.route));
    }

    /// Seals (fills) one datagram of `len` bytes of `fill` and commits it.
    fn push(batch: &mut GsoBatch, len: usize, fill: u8, route: Route, sent: &mut Sent) {
        batch.tail(|run| record(sent, run))[..len].fill(fill);
        batch.commit(len, route, |run| record(sent, run));
    }

    fn flush(batch: &mut GsoBatch, sent: &mut Sent) {
        batch.flush(|run| record(sent, run));
    }

    #[test]
    fn equal_datagrams_to_one_peer_make_one_run_and_a_short_one_ends_it() {
        let mut batch = GsoBatch::new();
        let mut sent = Vec::new();
        for fill in 0..10 {
            push(&mut batch, 1452, fill, route(1), &mut sent);
        }
        push(&mut batch, 700, 10, route(1), &mut sent);
        assert!(sent.is_empty(), "nothing is sent while the run can grow");
        // After the short one nothing more joins, even of the same size.
        push(&mut batch, 700, 11, route(1), &mut sent);
        assert_eq!(sent.len(), 1);
        let (datagrams, segment, to) = &sent[0];
        assert_eq!((*segment, *to, datagrams.len()), (1452, route(1), 11));
        assert_eq!(datagrams[10], vec![10u8; 700]);
        flush(&mut batch, &mut sent);
        assert_eq!(sent[1].0, vec![vec![11u8; 700]]);
        assert!(batch.is_empty());
    }

    #[test]
    fn another_route_or_a_longer_datagram_starts_a_new_run() {
        let mut batch = GsoBatch::new();
        let mut sent = Vec::new();
        push(&mut batch, 100, 1, route(1), &mut sent);
        push(&mut batch, 100, 2, route(2), &mut sent);
        push(&mut batch, 200, 3, route(2), &mut sent);
        let sourced = Route {
            source: Some(IpAddr::from([192, 0, 2, 9])),
            ..route(2)
        };
        push(&mut batch, 200, 4, sourced, &mut sent);
        flush(&mut batch, &mut sent);
        let fills: Vec<(u8, Route)> = sent.iter().map(|(d, _, r)| (d[0][0], *r)).collect();
        assert_eq!(
            fills,
            vec![(1, route(1)), (2, route(2)), (3, route(2)), (4, sourced)]
        );
        assert!(sent.iter().all(|(d, _, _)| d.len() == 1));
    }

    #[test]
    fn a_run_stops_at_the_segment_and_byte_limits() {
        let mut batch = GsoBatch::new();
        let mut sent = Vec::new();
        for _ in 0..MAX_SEGMENTS + 1 {
            push(&mut batch, 16, 0, route(1), &mut sent);
        }
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.len(), MAX_SEGMENTS);
        flush(&mut batch, &mut sent);
        sent.clear();
        // 1452-byte datagrams: 45 fit in MAX_RUN_BYTES, the 46th starts a new run.
        let fit = MAX_RUN_BYTES / 1452;
        for _ in 0..=fit {
            push(&mut batch, 1452, 0, route(1), &mut sent);
        }
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.len(), fit);
        assert!(fit * 1452 <= MAX_RUN_BYTES);
    }

    #[test]
    fn a_datagram_as_large_as_the_tail_is_sent_alone() {
        let mut batch = GsoBatch::new();
        let mut sent = Vec::new();
        push(&mut batch, 1000, 1, route(1), &mut sent);
        push(&mut batch, 60_000, 2, route(1), &mut sent);
        push(&mut batch, MAX_DATAGRAM, 3, route(1), &mut sent);
        flush(&mut batch, &mut sent);
        let shape: Vec<(usize, usize)> = sent.iter().map(|(d, s, _)| (d.len(), *s)).collect();
        assert_eq!(shape, vec![(1, 1000), (1, 60_000), (1, MAX_DATAGRAM)]);
        assert_eq!(sent[2].0[0], vec![3u8; MAX_DATAGRAM]);
    }

    proptest! {
        /// Whatever the sizes and routes, every datagram is sent exactly once, in order, with
        /// its bytes, and every run is one the kernel would take.
        #[test]
        fn datagrams_leave_once_in_order_in_valid_runs(
            pushes in prop::collection::vec((1usize..3000, 0u16..3), 0..200),
        ) {
            let mut batch = GsoBatch::new();
            let mut sent = Vec::new();
            for (index, &(len, port)) in pushes.iter().enumerate() {
                push(&mut batch, len, index as u8, route(port), &mut sent);
            }
            flush(&mut batch, &mut sent);
            let mut out = Vec::new();
            for (datagrams, segment, to) in &sent {
                prop_assert!(datagrams.len() <= MAX_SEGMENTS);
                prop_assert!(datagrams.iter().map(Vec::len).sum::<usize>() <= MAX_RUN_BYTES);
                let (last, rest) = datagrams.split_last().unwrap();
                prop_assert!(rest.iter().all(|d| d.len() == *segment));
                prop_assert!(last.len() <= *segment);
                out.extend(datagrams.iter().map(|d| (d.len(), d[0], *to)));
            }
            let expected: Vec<_> = pushes
                .iter()
                .enumerate()
                .map(|(index, &(len, port))| (len, index as u8, route(port)))
                .collect();
            prop_assert_eq!(out, expected);
        }
    }
}
