use super::*;
use rand_core::OsRng;
use std::time::Duration;

struct Pair {
    initiator: LocalStatic,
    responder: LocalStatic,
    responder_as_seen_by_initiator: RemoteStatic,
    initiator_as_seen_by_responder: RemoteStatic,
}

fn pair(psk_i: [u8; 32], psk_r: [u8; 32], suite_i: Suite, suite_r: Suite) -> Pair {
    let initiator = LocalStatic::new(&PrivateKey::generate());
    let responder = LocalStatic::new(&PrivateKey::generate());
    let responder_as_seen_by_initiator = RemoteStatic::new(
        &initiator,
        *responder.public(),
        PresharedKey::from_bytes(psk_i),
        suite_i,
    )
    .unwrap();
    let initiator_as_seen_by_responder = RemoteStatic::new(
        &responder,
        *initiator.public(),
        PresharedKey::from_bytes(psk_r),
        suite_r,
    )
    .unwrap();
    Pair {
        initiator,
        responder,
        responder_as_seen_by_initiator,
        initiator_as_seen_by_responder,
    }
}

fn now() -> Tai64N {
    Tai64N::from_unix(Duration::from_secs(1_700_000_000))
}

fn run(p: &Pair) -> Result<(SessionKeys, SessionKeys), HandshakeError> {
    let (init, state) = create_initiation(
        &p.initiator,
        &p.responder_as_seen_by_initiator,
        7,
        now(),
        &mut OsRng,
    )?;
    let view = Initiation::new_checked(&init[..]).unwrap();
    let received = consume_initiation(&p.responder, &view, |key| {
        (key == p.initiator_as_seen_by_responder.public())
            .then_some(&p.initiator_as_seen_by_responder)
    })?;
    assert_eq!(received.peer, *p.initiator.public());
    assert_eq!(received.remote_index, 7);
    assert_eq!(received.timestamp, now());
    let (response, responder_keys) =
        create_response(&p.initiator_as_seen_by_responder, received, 9, &mut OsRng)?;
    let view = Response::new_checked(&response[..]).unwrap();
    assert_eq!(view.receiver_index(), 7);
    let initiator_keys = consume_response(
        &p.initiator,
        &p.responder_as_seen_by_initiator,
        &state,
        &view,
    )?;
    Ok((initiator_keys, responder_keys))
}

#[test]
fn both_suites_agree_on_transport_keys() {
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let (i, r) = run(&pair([0; 32], [0; 32], suite, suite)).unwrap();
        assert_eq!(i.send, r.recv);
        assert_eq!(i.recv, r.send);
        assert_ne!(i.send, i.recv);
        assert_eq!((i.local_index, i.remote_index), (7, 9));
        assert_eq!((r.local_index, r.remote_index), (9, 7));
        assert!(i.we_initiated && !r.we_initiated);
        assert_eq!((i.suite, r.suite), (suite, suite));
    }
}

#[test]
fn matching_preshared_keys_complete_and_mismatched_ones_fail_at_the_response() {
    assert!(
        run(&pair(
            [5; 32],
            [5; 32],
            Suite::ChaCha20Poly1305,
            Suite::ChaCha20Poly1305
        ))
        .is_ok()
    );
    let mismatched = pair(
        [5; 32],
        [6; 32],
        Suite::ChaCha20Poly1305,
        Suite::ChaCha20Poly1305,
    );
    assert_eq!(run(&mismatched).unwrap_err(), HandshakeError::DecryptFailed);
}

#[test]
fn a_suite_mismatch_fails_the_handshake_cleanly() {
    let p = pair([0; 32], [0; 32], Suite::Aes256Gcm, Suite::ChaCha20Poly1305);
    assert_eq!(run(&p).unwrap_err(), HandshakeError::SuiteMismatch);
    let p = pair([0; 32], [0; 32], Suite::ChaCha20Poly1305, Suite::Aes256Gcm);
    assert_eq!(run(&p).unwrap_err(), HandshakeError::SuiteMismatch);
}

#[test]
fn unknown_initiators_and_tampered_messages_are_refused() {
    let p = pair(
        [0; 32],
        [0; 32],
        Suite::ChaCha20Poly1305,
        Suite::ChaCha20Poly1305,
    );
    let (init, _) = create_initiation(
        &p.initiator,
        &p.responder_as_seen_by_initiator,
        1,
        now(),
        &mut OsRng,
    )
    .unwrap();
    let view = Initiation::new_checked(&init[..]).unwrap();
    assert_eq!(
        consume_initiation(&p.responder, &view, |_| None).unwrap_err(),
        HandshakeError::UnknownPeer
    );
    for byte in [8, 40, 87, 88, 115] {
        let mut tampered = init;
        tampered[byte] ^= 0x01;
        let view = Initiation::new_checked(&tampered[..]).unwrap();
        let result = consume_initiation(&p.responder, &view, |_| {
            Some(&p.initiator_as_seen_by_responder)
        });
        assert!(result.is_err(), "flipping byte {byte} went unnoticed");
    }
}

#[test]
fn low_order_public_keys_are_refused() {
    let local = LocalStatic::new(&PrivateKey::generate());
    let zero_point = PublicKey([0u8; 32]);
    assert_eq!(
        RemoteStatic::new(
            &local,
            zero_point,
            PresharedKey::none(),
            Suite::ChaCha20Poly1305
        )
        .unwrap_err(),
        HandshakeError::WeakKey
    );
}
