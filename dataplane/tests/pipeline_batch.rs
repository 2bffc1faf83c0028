//! The batch pipeline end to end, in memory: encapsulation on one side, decapsulation on the
//! other, every drop reason, replay across batches, expiry by `now`, and arbitrary bytes.

mod pipeline_support;

use std::time::Duration;

use pipeline_support::*;
use proptest::prelude::*;
use warpline_dataplane::pipeline::{
    DropCounters, DropReason, Events, FrameRef, HEADROOM, HandshakeReason, Verdict, decap_batch,
    encap_batch,
};
use warpline_dataplane::replay::REJECT_AFTER_MESSAGES;
use warpline_dataplane::sessions::{Endpoint, PeerId, Snapshot};
use warpline_dataplane::time::Time;

const NOW: Time = Time::from_secs(110);

#[test]
fn round_trip_all_families_with_and_without_vlan() {
    for outer_v6 in [false, true] {
        for inner_v6 in [false, true] {
            for vlan in [None, Some(0x2000 | 42)] {
                let a = side_a(outer_v6, 0);
                let b = side_b(outer_v6);
                let l2 = l2_a(vlan);
                // Sizes around the padding boundary, a minimum packet and the MTU.
                let sizes: &[usize] = if inner_v6 {
                    &[40, 41, 56, 100, 1419, MTU]
                } else {
                    &[20, 21, 36, 100, 1419, MTU]
                };
                let inners: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| inner_packet(inner_a(inner_v6), inner_b(inner_v6), n, i as u8))
                    .collect();
                let (mut counters, mut events) = (DropCounters::default(), Events::new());
                let (bufs, verdicts) = encap(NOW, &a, &l2, &inners, &mut counters, &mut events);
                assert_eq!(counters.to_outer, sizes.len() as u64, "{verdicts:?}");
                assert_eq!(events.handshakes().count(), 0);
                let outer: Vec<Vec<u8>> = bufs
                    .iter()
                    .zip(&verdicts)
                    .map(|(buf, v)| outer_frame(buf, *v))
                    .collect();
                for (frame, inner) in outer.iter().zip(&inners) {
                    let message = verify_outer(frame, vlan, outer_v6);
                    let padded = inner.len().next_multiple_of(16).min(MTU);
                    assert_eq!(message.len(), 16 + padded + 16);
                }

                let (mut counters, mut events) = (DropCounters::default(), Events::new());
                let (bufs, verdicts) = decap(NOW, &b, &outer, &mut counters, &mut events);
                for ((buf, verdict), inner) in bufs.iter().zip(&verdicts).zip(&inners) {
                    let Verdict::ToInner { offset, len, peer } = *verdict else {
                        panic!(
                            "outer v6 {outer_v6} inner v6 {inner_v6} vlan {vlan:?}: {verdict:?}"
                        );
                    };
                    assert_eq!(peer, PeerId(0));
                    assert_eq!(&buf[offset..offset + len], &inner[..]);
                }
                assert_eq!(counters.to_inner, sizes.len() as u64);
                // B already knows A at this address: no roaming to report.
                assert_eq!(events.endpoints().count(), 0);
            }
        }
    }
}

#[test]
fn roaming_is_reported_once_per_peer_per_batch() {
    let a = side_a(false, 0);
    let mut b = side_b(false);
    b.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: "198.51.100.1:9".parse().unwrap(),
        mac: MAC_A,
        local: None,
    });
    let inners: Vec<Vec<u8>> = (0..5)
        .map(|_| inner_packet(inner_a(false), inner_b(false), 60, 0))
        .collect();
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let (bufs, verdicts) = encap(NOW, &a, &l2_a(None), &inners, &mut counters, &mut events);
    let outer: Vec<Vec<u8>> = bufs
        .iter()
        .zip(&verdicts)
        .map(|(b, v)| outer_frame(b, *v))
        .collect();
    // A forged copy must not count as a sighting.
    let mut forged = outer[0].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut batch = vec![forged];
    batch.extend(outer);
    let (_, verdicts) = decap(NOW, &b, &batch, &mut counters, &mut events);
    assert_eq!(verdicts[0], Verdict::Drop(DropReason::BadTag));
    let seen: Vec<_> = events.endpoints().collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].peer, PeerId(0));
    assert_eq!(seen[0].addr, addr_a(false));
    assert_eq!(seen[0].endpoint().mac, MAC_A);
    events.clear();
    assert_eq!(events.endpoints().count(), 0);
}

#[test]
fn replies_leave_from_the_address_the_peer_sent_to_and_unknown_indices_are_reported() {
    // A virtual IP: side A answers from it instead of its NIC's address.
    let vip: std::net::IpAddr = "198.51.100.100".parse().unwrap();
    let mut a = side_a(false, 0);
    a.peer_mut(PeerId(0)).endpoint = Some(Endpoint {
        addr: addr_b(false),
        mac: MAC_B,
        local: Some(vip),
    });
    let inners = vec![inner_packet(inner_a(false), inner_b(false), 60, 0)];
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let (bufs, verdicts) = encap(NOW, &a, &l2_a(None), &inners, &mut counters, &mut events);
    let frame = outer_frame(&bufs[0], verdicts[0]);
    assert_eq!(
        &frame[14 + 12..14 + 16],
        &[198, 51, 100, 100],
        "outer source is not the VIP"
    );

    // B learns which of its addresses A sent to.
    let mut b = side_b(false);
    b.peer_mut(PeerId(0)).endpoint.as_mut().unwrap().local = None;
    let (_, verdicts) = decap(
        NOW,
        &b,
        std::slice::from_ref(&frame),
        &mut counters,
        &mut events,
    );
    assert!(matches!(verdicts[0], Verdict::ToInner { .. }));
    let seen: Vec<_> = events.endpoints().collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].local, addr_b(false).ip());
    assert_eq!(seen[0].endpoint().local, Some(addr_b(false).ip()));

    // A session B does not have: refused, and its index reported once per batch.
    events.clear();
    let stranger = Snapshot::new();
    let (_, verdicts) = decap(
        NOW,
        &stranger,
        &[frame.clone(), frame],
        &mut counters,
        &mut events,
    );
    assert!(
        verdicts
            .iter()
            .all(|v| *v == Verdict::Drop(DropReason::UnknownIndex))
    );
    assert_eq!(events.unknown_indices(), &[INDEX_B]);
}

#[test]
fn replays_are_refused_across_batches_and_windows_move() {
    let a = side_a(false, 0);
    let b = side_b(false);
    let inners: Vec<Vec<u8>> = (0..8)
        .map(|i| inner_packet(inner_a(false), inner_b(false), 64, i))
        .collect();
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let (bufs, verdicts) = encap(NOW, &a, &l2_a(None), &inners, &mut counters, &mut events);
    let outer: Vec<Vec<u8>> = bufs
        .iter()
        .zip(&verdicts)
        .map(|(b, v)| outer_frame(b, *v))
        .collect();
    // Deliver the second half first (reordering is fine), then everything again.
    let (_, v1) = decap(NOW, &b, &outer[4..], &mut counters, &mut events);
    assert!(v1.iter().all(|v| matches!(v, Verdict::ToInner { .. })));
    let (_, v2) = decap(NOW, &b, &outer, &mut counters, &mut events);
    assert!(v2[..4].iter().all(|v| matches!(v, Verdict::ToInner { .. })));
    assert!(
        v2[4..]
            .iter()
            .all(|v| *v == Verdict::Drop(DropReason::Replayed))
    );
    assert_eq!(counters.get(DropReason::Replayed), 4);
    // Duplicates inside one batch: only the first copy passes.
    let (_, v3) = decap(
        NOW,
        &b,
        &[outer[0].clone(), outer[0].clone()],
        &mut counters,
        &mut events,
    );
    assert_eq!(v3, [Verdict::Drop(DropReason::Replayed); 2]);

    // A far newer counter pushes counter 0..7 out of the window.
    let ahead = side_a(false, 10_000);
    let (bufs, verdicts) = encap(
        NOW,
        &ahead,
        &l2_a(None),
        &inners[..1],
        &mut counters,
        &mut events,
    );
    let newer = outer_frame(&bufs[0], verdicts[0]);
    let b2 = side_b(false);
    let (_, v) = decap(
        NOW,
        &b2,
        &[newer, outer[1].clone()],
        &mut counters,
        &mut events,
    );
    assert!(matches!(v[0], Verdict::ToInner { .. }));
    assert_eq!(v[1], Verdict::Drop(DropReason::TooOld));
}

#[test]
fn sessions_expire_by_the_time_passed_in() {
    let a = side_a(false, 0);
    let b = side_b(false);
    let inner = vec![inner_packet(inner_a(false), inner_b(false), 64, 0)];
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let (bufs, verdicts) = encap(NOW, &a, &l2_a(None), &inner, &mut counters, &mut events);
    let frame = outer_frame(&bufs[0], verdicts[0]);
    let late = ESTABLISHED + Duration::from_secs(180);
    let just_in_time = ESTABLISHED + Duration::from_millis(179_999);
    let (_, v) = decap(
        late,
        &b,
        std::slice::from_ref(&frame),
        &mut counters,
        &mut events,
    );
    assert_eq!(v[0], Verdict::Drop(DropReason::Expired));
    let (_, v) = decap(just_in_time, &b, &[frame], &mut counters, &mut events);
    assert!(matches!(v[0], Verdict::ToInner { .. }));

    let (_, v) = encap(late, &a, &l2_a(None), &inner, &mut counters, &mut events);
    assert_eq!(v[0], Verdict::Drop(DropReason::Expired));
    assert_eq!(
        events.handshakes().collect::<Vec<_>>(),
        [(PeerId(0), HandshakeReason::Expired)]
    );
    // Past Rekey-After-Time the initiator still sends, and asks for a new handshake.
    let mut events = Events::new();
    let rekey = ESTABLISHED + Duration::from_secs(121);
    let (_, v) = encap(rekey, &a, &l2_a(None), &inner, &mut counters, &mut events);
    assert!(matches!(v[0], Verdict::ToOuter { .. }));
    assert_eq!(
        events.handshakes().collect::<Vec<_>>(),
        [(PeerId(0), HandshakeReason::Rekey)]
    );
}

#[test]
fn every_drop_reason_is_triggered_and_counted() {
    let mut a = side_a(false, 0);
    let b = side_b(false);
    let l2 = l2_a(None);
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let ok = inner_packet(inner_a(false), inner_b(false), 64, 0);

    // --- encapsulation ---
    // Peer 1: a route, no session. Peer 2: a session but no endpoint.
    a.routes_mut().insert(prefix("10.3.0.0/16"), PeerId(1));
    a.peer_mut(PeerId(1));
    a.install(session_for(PeerId(2), 77, 78, [5; 32], [6; 32], 0));
    a.routes_mut().insert(prefix("10.4.0.0/16"), PeerId(2));
    // Peer 3: IPv6 endpoint, for the missing local address case.
    a.install(session_for(PeerId(3), 79, 80, [5; 32], [6; 32], 0));
    a.peer_mut(PeerId(3)).endpoint = Some(Endpoint {
        addr: addr_b(true),
        mac: MAC_B,
        local: None,
    });
    a.routes_mut().insert(prefix("10.5.0.0/16"), PeerId(3));

    let mut bad_len = ok.clone();
    bad_len[3] = 200; // total length past the packet
    let mut not_ip = ok.clone();
    not_ip[0] = 0x00;
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (not_ip, DropReason::NotIp),
        (bad_len, DropReason::InnerMalformed),
        (
            inner_packet(inner_a(false), v4([10, 99, 0, 1]), 64, 0),
            DropReason::NoRoute,
        ),
        (
            inner_packet(inner_a(false), v4([10, 3, 0, 1]), 64, 0),
            DropReason::NoSession,
        ),
        (
            inner_packet(inner_a(false), v4([10, 4, 0, 1]), 64, 0),
            DropReason::NoEndpoint,
        ),
        (
            inner_packet(inner_a(false), v4([10, 5, 0, 1]), 64, 0),
            DropReason::NoLocalAddress,
        ),
        (
            inner_packet(inner_a(false), inner_b(false), MTU + 1, 0),
            DropReason::TooBig,
        ),
    ];
    let mut l2_v4_only = l2;
    l2_v4_only.local_v6 = None;
    let inners: Vec<Vec<u8>> = cases.iter().map(|c| c.0.clone()).collect();
    let (_, verdicts) = encap(NOW, &a, &l2_v4_only, &inners, &mut counters, &mut events);
    for ((_, reason), verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(*verdict, Verdict::Drop(*reason));
    }
    assert_eq!(
        events.handshakes().collect::<Vec<_>>(),
        [(PeerId(1), HandshakeReason::NoSession)]
    );

    // No room: headroom too small, tailroom too small, descriptor outside the buffer.
    let mut tight = ok.clone();
    tight.extend_from_slice(&[0; 40]);
    let mut short_tail = encap_buffer(&ok);
    short_tail.truncate(HEADROOM + ok.len() + 10);
    let mut outside = vec![0u8; 10];
    let mut frames = vec![
        FrameRef::new(&mut tight, 0, 64),
        FrameRef::new(&mut short_tail, HEADROOM, 64),
        FrameRef::new(&mut outside, 5, 64),
    ];
    let mut verdicts = [Verdict::ToControl; 3];
    encap_batch(
        NOW,
        &a,
        &mut frames,
        &mut verdicts,
        &mut counters,
        &mut events,
        &l2,
    );
    assert_eq!(
        verdicts,
        [
            Verdict::Drop(DropReason::NoRoom),
            Verdict::Drop(DropReason::NoRoom),
            Verdict::Drop(DropReason::Malformed)
        ]
    );
    // Send counter exhausted.
    let spent = side_a(false, REJECT_AFTER_MESSAGES);
    let (_, v) = encap(
        NOW,
        &spent,
        &l2,
        std::slice::from_ref(&ok),
        &mut counters,
        &mut events,
    );
    assert_eq!(v[0], Verdict::Drop(DropReason::CounterExhausted));

    // --- decapsulation ---
    let (bufs, v) = encap(
        NOW,
        &side_a(false, 0),
        &l2,
        &[ok.clone(), ok.clone()],
        &mut counters,
        &mut events,
    );
    let good = outer_frame(&bufs[0], v[0]);
    let good2 = outer_frame(&bufs[1], v[1]);
    let mut unknown = good.clone();
    unknown[14 + 28 + 4] ^= 0xff;
    let mut tampered = good2.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut truncated_ip = good.clone();
    truncated_ip.truncate(30);
    let mut bad_ip_checksum = good.clone();
    bad_ip_checksum[14 + 8] ^= 1; // TTL, covered by the header checksum
    let (from, to) = (addr_a(false), addr_b(false));
    let not_ip_payload = craft_transport(&KEY_A_TO_B, INDEX_B, 100, &[0x11; 32], from, to);
    let broken_inner = craft_transport(&KEY_A_TO_B, INDEX_B, 101, &[0x45, 0, 0, 1], from, to);
    let spoofed = craft_transport(
        &KEY_A_TO_B,
        INDEX_B,
        102,
        &inner_packet(v4([10, 2, 9, 9]), inner_b(false), 48, 0),
        from,
        to,
    );
    let beyond_limit = craft_transport(&KEY_A_TO_B, INDEX_B, REJECT_AFTER_MESSAGES, &ok, from, to);
    let keepalive = craft_transport(&KEY_A_TO_B, INDEX_B, 103, &[], from, to);
    let mut handshake = craft_transport(&KEY_A_TO_B, INDEX_B, 104, &[0; 116], from, to);
    handshake[14 + 28] = 1; // type 1 with the 148-byte length of an initiation
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);

    let batch = vec![
        good.clone(),
        good.clone(),
        unknown,
        tampered,
        truncated_ip,
        bad_ip_checksum,
        not_ip_payload,
        broken_inner,
        spoofed,
        beyond_limit,
        keepalive,
        handshake,
        arp,
    ];
    let (_, v) = decap(NOW, &b, &batch, &mut counters, &mut events);
    assert!(matches!(v[0], Verdict::ToInner { .. }), "{v:?}");
    assert_eq!(
        v[1..],
        [
            Verdict::Drop(DropReason::Replayed),
            Verdict::Drop(DropReason::UnknownIndex),
            Verdict::Drop(DropReason::BadTag),
            Verdict::Drop(DropReason::Malformed),
            Verdict::Drop(DropReason::Malformed),
            Verdict::Drop(DropReason::NotIp),
            Verdict::Drop(DropReason::InnerMalformed),
            Verdict::Drop(DropReason::SourceNotAllowed),
            Verdict::Drop(DropReason::CounterExhausted),
            Verdict::Consumed,
            Verdict::ToControl,
            Verdict::ToControl,
        ]
    );
    // Too old and expired have their own tests; count them here too for the full table.
    let far = craft_transport(&KEY_A_TO_B, INDEX_B, 50_000, &ok, from, to);
    let old = craft_transport(&KEY_A_TO_B, INDEX_B, 1_000, &ok, from, to);
    let (_, v) = decap(NOW, &b, &[far, old, good2], &mut counters, &mut events);
    assert_eq!(v[1], Verdict::Drop(DropReason::TooOld));
    let (_, v) = decap(
        Time::from_secs(1000),
        &b,
        &batch[..1],
        &mut counters,
        &mut events,
    );
    assert_eq!(v[0], Verdict::Drop(DropReason::Expired));

    for reason in DropReason::ALL {
        assert!(counters.get(reason) >= 1, "{} never counted", reason.name());
    }
    assert_eq!(counters.keepalives, 1);
    assert_eq!(counters.to_control, 2);
}

fn valid_frame() -> Vec<u8> {
    let inner = vec![inner_packet(inner_a(false), inner_b(false), 64, 3)];
    let (mut counters, mut events) = (DropCounters::default(), Events::new());
    let (bufs, v) = encap(
        NOW,
        &side_a(false, 0),
        &l2_a(Some(5)),
        &inner,
        &mut counters,
        &mut events,
    );
    outer_frame(&bufs[0], v[0])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes, and valid frames with bytes flipped or cut, never panic either
    /// direction, and every verdict stays inside its buffer.
    #[test]
    fn arbitrary_frames_never_panic(
        random in prop::collection::vec(any::<u8>(), 0..300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        offset in 0usize..200,
        len in 0usize..400,
    ) {
        let b = side_b(false);
        let a = side_a(false, 0);
        let mut mutated = valid_frame();
        for (at, x) in &flips {
            let i = at.index(mutated.len());
            mutated[i] ^= x;
        }
        let keep = cut.index(mutated.len() + 1);
        mutated.truncate(keep);
        let mut bufs = [random.clone(), mutated, random.clone()];
        let lens: Vec<usize> = bufs.iter().map(Vec::len).collect();
        let mut frames: Vec<FrameRef<'_>> = bufs.iter_mut().zip(&lens).enumerate().map(|(i, (buf, &n))| {
            if i == 2 { FrameRef::new(buf, offset, len) } else { FrameRef::new(buf, 0, n) }
        }).collect();
        let mut verdicts = [Verdict::ToControl; 3];
        let (mut counters, mut events) = (DropCounters::default(), Events::new());
        decap_batch(NOW, &b, &mut frames, &mut verdicts, &mut counters, &mut events);
        for (v, n) in verdicts.iter().zip(&lens) {
            if let Verdict::ToInner { offset, len, .. } = v {
                prop_assert!(offset + len <= *n);
            }
        }
        let mut encap_bufs = [random.clone(), encap_buffer(&random)];
        let n0 = encap_bufs[0].len();
        let mut frames: Vec<FrameRef<'_>> = encap_bufs.iter_mut().enumerate().map(|(i, buf)| {
            if i == 0 { FrameRef::new(buf, offset, len.min(n0)) } else { FrameRef::new(buf, HEADROOM, random.len()) }
        }).collect();
        let mut verdicts = [Verdict::ToControl; 2];
        encap_batch(NOW, &a, &mut frames, &mut verdicts, &mut counters, &mut events, &l2_a(None));
        prop_assert_eq!(counters.to_outer + counters.total_drops() + counters.to_inner
            + counters.to_control + counters.keepalives, 5);
    }
}
