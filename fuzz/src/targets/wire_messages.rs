//! The WireGuard message views (`dataplane::wire::wireguard`) on arbitrary bytes.
//!
//! Asserts: [`classify`] and every view's `new_checked` agree on what a message is; an
//! accepted handshake message, rebuilt field by field through the writing API, gives back the
//! same bytes (so no field is lost, overlapped or misplaced); the transport header reads back
//! what [`write_transport_header`] writes; [`padded_len`] never pads past the MTU and never
//! shrinks a payload.

use warpline_dataplane::wire::wireguard::{
    COOKIE_REPLY_LEN, CookieReply, INITIATION_LEN, Initiation, KEEPALIVE_LEN, MessageError,
    MessageKind, PADDING_MULTIPLE, RESPONSE_LEN, Response, TAG_LEN, TRANSPORT_HEADER_LEN,
    Transport, classify, mac1_offset, mac2_offset, padded_len, write_transport_header,
};

/// One input: a UDP payload as it arrives.
pub fn run(data: &[u8]) {
    let kind = classify(data);
    check_classification(data, kind);

    let initiation = Initiation::new_checked(data);
    assert_eq!(initiation.is_ok(), kind == Ok(MessageKind::Initiation));
    if let Ok(message) = initiation {
        let mut rebuilt = [0u8; INITIATION_LEN];
        let mut copy = Initiation::new_zeroed(&mut rebuilt[..]).expect("exact size");
        copy.set_sender_index(message.sender_index());
        *copy.unencrypted_ephemeral_mut() = *message.unencrypted_ephemeral();
        *copy.encrypted_static_mut() = *message.encrypted_static();
        *copy.encrypted_timestamp_mut() = *message.encrypted_timestamp();
        *copy.mac1_mut() = *message.mac1();
        *copy.mac2_mut() = *message.mac2();
        assert_eq!(
            &rebuilt[..],
            data,
            "initiation fields do not cover the message"
        );
        assert_eq!(&data[mac1_offset(data.len())..][..16], message.mac1());
        assert_eq!(&data[mac2_offset(data.len())..], message.mac2());
    }

    let response = Response::new_checked(data);
    assert_eq!(response.is_ok(), kind == Ok(MessageKind::Response));
    if let Ok(message) = response {
        let mut rebuilt = [0u8; RESPONSE_LEN];
        let mut copy = Response::new_zeroed(&mut rebuilt[..]).expect("exact size");
        copy.set_sender_index(message.sender_index());
        copy.set_receiver_index(message.receiver_index());
        *copy.unencrypted_ephemeral_mut() = *message.unencrypted_ephemeral();
        *copy.encrypted_nothing_mut() = *message.encrypted_nothing();
        *copy.mac1_mut() = *message.mac1();
        *copy.mac2_mut() = *message.mac2();
        assert_eq!(
            &rebuilt[..],
            data,
            "response fields do not cover the message"
        );
        assert_eq!(&data[mac1_offset(data.len())..][..16], message.mac1());
        assert_eq!(&data[mac2_offset(data.len())..], message.mac2());
    }

    let cookie_reply = CookieReply::new_checked(data);
    assert_eq!(cookie_reply.is_ok(), kind == Ok(MessageKind::CookieReply));
    if let Ok(message) = cookie_reply {
        let mut rebuilt = [0u8; COOKIE_REPLY_LEN];
        let mut copy = CookieReply::new_zeroed(&mut rebuilt[..]).expect("exact size");
        copy.set_receiver_index(message.receiver_index());
        *copy.nonce_mut() = *message.nonce();
        *copy.encrypted_cookie_mut() = *message.encrypted_cookie();
        assert_eq!(
            &rebuilt[..],
            data,
            "cookie reply fields do not cover the message"
        );
    }

    let transport = Transport::new_checked(data);
    assert_eq!(transport.is_ok(), kind == Ok(MessageKind::Transport));
    if let Ok(message) = transport {
        assert_eq!(
            message.ciphertext().len(),
            data.len() - TRANSPORT_HEADER_LEN
        );
        assert!(message.ciphertext().len() >= TAG_LEN);
        assert_eq!(message.is_keepalive(), data.len() == KEEPALIVE_LEN);
        let mut rebuilt = data.to_vec();
        rebuilt[..TRANSPORT_HEADER_LEN].fill(0xa5);
        write_transport_header(&mut rebuilt, message.receiver_index(), message.counter())
            .expect("room for a header");
        assert_eq!(rebuilt, data, "transport header does not round-trip");
    }

    check_padding(data);
}

/// The error kinds follow from the first four bytes and the length alone.
fn check_classification(data: &[u8], kind: Result<MessageKind, MessageError>) {
    let Some(header) = data.get(..4) else {
        assert_eq!(kind, Err(MessageError::Truncated));
        return;
    };
    let message_type = u32::from_le_bytes(header.try_into().expect("4 bytes"));
    let expected_len_ok = match message_type {
        1 => data.len() == INITIATION_LEN,
        2 => data.len() == RESPONSE_LEN,
        3 => data.len() == COOKIE_REPLY_LEN,
        4 => data.len() >= KEEPALIVE_LEN,
        _ => {
            assert_eq!(kind, Err(MessageError::UnknownType));
            return;
        }
    };
    assert_eq!(kind.is_ok(), expected_len_ok, "type {message_type}");
    if !expected_len_ok {
        assert_eq!(kind, Err(MessageError::BadLength));
    }
}

/// Reads a payload length and an MTU from the first four bytes and checks the padding rule.
fn check_padding(data: &[u8]) {
    let Some(&[a, b, c, d]) = data.get(..4) else {
        return;
    };
    let payload_len = usize::from(u16::from_le_bytes([a, b]));
    let mtu = usize::from(u16::from_le_bytes([c, d]));
    let padded = padded_len(payload_len, mtu);
    assert!(
        padded >= payload_len,
        "padding shrank {payload_len} to {padded}"
    );
    if payload_len <= mtu {
        assert!(
            padded <= mtu,
            "padded {payload_len} past mtu {mtu} to {padded}"
        );
        assert!(padded - payload_len < PADDING_MULTIPLE);
        assert!(padded.is_multiple_of(PADDING_MULTIPLE) || padded == mtu);
    } else {
        assert_eq!(padded, payload_len, "a payload above the MTU is not padded");
    }
}
