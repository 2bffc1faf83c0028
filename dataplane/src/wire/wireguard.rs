//! WireGuard message views: checked, zero-copy, over byte slices.
//!
//! Every message starts with a little-endian u32 whose low byte is the type and whose three
//! other bytes must be zero (the kernel compares all four). Lengths are exact for the three
//! handshake messages; transport data is a 16-byte header, then a ciphertext of at least a tag.

/// Message type of a handshake initiation.
pub const TYPE_INITIATION: u8 = 1;
/// Message type of a handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Message type of a cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Message type of transport data (and keepalives: transport data with no payload).
pub const TYPE_TRANSPORT: u8 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Size of the transport header in front of the ciphertext.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Size of the AEAD tag at the end of a transport message.
pub const TAG_LEN: usize = 16;
/// Size of a keepalive: a transport header and a tag over an empty payload.
pub const KEEPALIVE_LEN: usize = TRANSPORT_HEADER_LEN + TAG_LEN;
/// Transport payloads are zero-padded to a multiple of this before sealing.
pub const PADDING_MULTIPLE: usize = 16;

/// Why bytes are not a WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Fewer than four bytes: not even a type.
    Truncated,
    /// The type is not 1-4, or a reserved byte is non-zero.
    UnknownType,
    /// A handshake message whose length is not its fixed size, or transport data shorter
    /// than a header and a tag.
    BadLength,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageError::Truncated => "shorter than a message header",
            MessageError::UnknownType => "unknown message type or non-zero reserved bytes",
            MessageError::BadLength => "length does not match the message type",
        })
    }
}

impl std::error::Error for MessageError {}

/// The kinds of WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Handshake initiation (type 1).
    Initiation,
    /// Handshake response (type 2).
    Response,
    /// Cookie reply (type 3).
    CookieReply,
    /// Transport data (type 4).
    Transport,
}

/// Classifies a datagram by its header and length without looking further.
pub fn classify(datagram: &[u8]) -> Result<MessageKind, MessageError> {
    let header: [u8; 4] = datagram
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(MessageError::Truncated)?;
    let (kind, length_ok) = match u32::from_le_bytes(header) {
        1 => (MessageKind::Initiation, datagram.len() == INITIATION_LEN),
        2 => (MessageKind::Response, datagram.len() == RESPONSE_LEN),
        3 => (MessageKind::CookieReply, datagram.len() == COOKIE_REPLY_LEN),
        4 => (MessageKind::Transport, datagram.len() >= KEEPALIVE_LEN),
        _ => return Err(MessageError::UnknownType),
    };
    if length_ok {
        Ok(kind)
    } else {
        Err(MessageError::BadLength)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4-byte range"))
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    bytes[at..at + N].try_into().expect("range of N bytes")
}

fn array_mut<const N: usize>(bytes: &mut [u8], at: usize) -> &mut [u8; N] {
    (&mut bytes[at..at + N])
        .try_into()
        .expect("range of N bytes")
}

/// Declares a fixed-size handshake message view with named fields at fixed offsets.
macro_rules! fixed_message {
    (
        $(#[$doc:meta])* $name:ident, $type:expr, $len:expr,
        u32: { $($u32_field:ident, $u32_set:ident @ $u32_at:expr;)* }
        bytes: { $($field:ident, $field_mut:ident @ $at:expr, $n:expr;)* }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<T>(T);

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` after checking its type and exact length.
            pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
                let bytes = buffer.as_ref();
                if bytes.len() < 4 {
                    return Err(MessageError::Truncated);
                }
                if read_u32(bytes, 0) != u32::from($type) {
                    return Err(MessageError::UnknownType);
                }
                if bytes.len() != $len {
                    return Err(MessageError::BadLength);
                }
                Ok(Self(buffer))
            }

            /// The underlying buffer.
            pub fn into_inner(self) -> T {
                self.0
            }

            /// The whole message.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_ref()
            }

            $(
                #[doc = concat!("The `", stringify!($u32_field), "` field.")]
                pub fn $u32_field(&self) -> u32 {
                    read_u32(self.0.as_ref(), $u32_at)
                }
            )*
            $(
                #[doc = concat!("The `", stringify!($field), "` field.")]
                pub fn $field(&self) -> &[u8; $n] {
                    array(self.0.as_ref(), $at)
                }
            )*
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Zeroes `buffer`, writes the message type, and wraps it.
            /// `buffer` must be exactly the message's size.
            pub fn new_zeroed(mut buffer: T) -> Result<Self, MessageError> {
                let bytes = buffer.as_mut();
                if bytes.len() != $len {
                    return Err(MessageError::BadLength);
                }
                bytes.fill(0);
                bytes[0] = $type;
                Ok(Self(buffer))
            }

            $(
                #[doc = concat!("Sets the `", stringify!($u32_field), "` field.")]
                pub fn $u32_set(&mut self, value: u32) {
                    self.0.as_mut()[$u32_at..$u32_at + 4].copy_from_slice(&value.to_le_bytes());
                }
            )*
            $(
                #[doc = concat!("The `", stringify!($field), "` field, writable.")]
                pub fn $field_mut(&mut self) -> &mut [u8; $n] {
                    array_mut(self.0.as_mut(), $at)
                }
            )*
        }
    };
}

fixed_message! {
    /// Handshake initiation (type 1, 148 bytes).
    Initiation, TYPE_INITIATION, INITIATION_LEN,
    u32: { sender_index, set_sender_index @ 4; }
    bytes: {
        unencrypted_ephemeral, unencrypted_ephemeral_mut @ 8, 32;
        encrypted_static, encrypted_static_mut @ 40, 48;
        encrypted_timestamp, encrypted_timestamp_mut @ 88, 28;
        mac1, mac1_mut @ 116, 16;
        mac2, mac2_mut @ 132, 16;
    }
}

fixed_message! {
    /// Handshake response (type 2, 92 bytes).
    Response, TYPE_RESPONSE, RESPONSE_LEN,
    u32: { sender_index, set_sender_index @ 4; receiver_index, set_receiver_index @ 8; }
    bytes: {
        unencrypted_ephemeral, unencrypted_ephemeral_mut @ 12, 32;
        encrypted_nothing, encrypted_nothing_mut @ 44, 16;
        mac1, mac1_mut @ 60, 16;
        mac2, mac2_mut @ 76, 16;
    }
}

fixed_message! {
    /// Cookie reply (type 3, 64 bytes).
    CookieReply, TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN,
    u32: { receiver_index, set_receiver_index @ 4; }
    bytes: {
        nonce, nonce_mut @ 8, 24;
        encrypted_cookie, encrypted_cookie_mut @ 32, 32;
    }
}

/// Offset of MAC1 in a handshake message of `len` bytes: the two MACs are its last 32 bytes.
pub const fn mac1_offset(len: usize) -> usize {
    len - 32
}

/// Offset of MAC2 in a handshake message of `len` bytes.
pub const fn mac2_offset(len: usize) -> usize {
    len - 16
}

/// Transport data (type 4): header, then ciphertext (padded payload and tag).
#[derive(Debug, Clone, Copy)]
pub struct Transport<T>(T);

impl<T: AsRef<[u8]>> Transport<T> {
    /// Wraps `buffer` after checking the type and that it holds a header and a tag.
    pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
        match classify(buffer.as_ref())? {
            MessageKind::Transport => Ok(Self(buffer)),
            _ => Err(MessageError::UnknownType),
        }
    }

    /// The index the receiver chose for this session.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.0.as_ref(), 4)
    }

    /// The sender's message counter (the AEAD nonce).
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(*array(self.0.as_ref(), 8))
    }

    /// The ciphertext: encrypted, padded payload followed by the tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.0.as_ref()[TRANSPORT_HEADER_LEN..]
    }

    /// True for a keepalive (an empty payload).
    pub fn is_keepalive(&self) -> bool {
        self.0.as_ref().len() == KEEPALIVE_LEN
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Transport<T> {
    /// The ciphertext, writable for in-place decryption.
    pub fn ciphertext_mut(&mut self) -> &mut [u8] {
        &mut self.0.as_mut()[TRANSPORT_HEADER_LEN..]
    }
}

/// Writes a transport header (type, receiver index, counter) into the first 16 bytes.
/// Returns `BadLength` if `buffer` is shorter than a header.
pub fn write_transport_header(
    buffer: &mut [u8],
    receiver_index: u32,
    counter: u64,
) -> Result<(), MessageError> {
    let header = buffer
        .get_mut(..TRANSPORT_HEADER_LEN)
        .ok_or(MessageError::BadLength)?;
    header[..4].copy_from_slice(&u32::from(TYPE_TRANSPORT).to_le_bytes());
    header[4..8].copy_from_slice(&receiver_index.to_le_bytes());
    header[8..].copy_from_slice(&counter.to_le_bytes());
    Ok(())
}

/// Length of `payload_len` bytes once zero-padded to a multiple of 16, capped at `mtu` (WireGuard
/// never pads past the MTU).
pub const fn padded_len(payload_len: usize, mtu: usize) -> usize {
    let padded = payload_len.next_multiple_of(PADDING_MULTIPLE);
    if padded > mtu && payload_len <= mtu {
        mtu
    } else if padded > mtu {
        payload_len
    } else {
        padded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classify_by_type_and_exact_length() {
        let mut init = [0u8; INITIATION_LEN];
        init[0] = 1;
        assert_eq!(classify(&init), Ok(MessageKind::Initiation));
        assert_eq!(classify(&init[..147]), Err(MessageError::BadLength));
        init[1] = 1;
        assert_eq!(classify(&init), Err(MessageError::UnknownType));
        let mut data = [0u8; KEEPALIVE_LEN];
        data[0] = 4;
        assert_eq!(classify(&data), Ok(MessageKind::Transport));
        assert_eq!(classify(&data[..31]), Err(MessageError::BadLength));
        assert_eq!(classify(&[4, 0, 0]), Err(MessageError::Truncated));
        assert_eq!(classify(&[5, 0, 0, 0]), Err(MessageError::UnknownType));
    }

    #[test]
    fn fields_sit_at_wireguards_offsets() {
        let mut buf = [0u8; RESPONSE_LEN];
        let mut response = Response::new_zeroed(&mut buf[..]).unwrap();
        response.set_sender_index(0x0403_0201);
        response.set_receiver_index(0x0807_0605);
        response.unencrypted_ephemeral_mut()[0] = 0xee;
        response.mac2_mut()[15] = 0xaa;
        assert_eq!(buf[..12], [2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf[12], 0xee);
        assert_eq!(buf[91], 0xaa);
        let parsed = Response::new_checked(&buf[..]).unwrap();
        assert_eq!(parsed.receiver_index(), 0x0807_0605);
        assert_eq!(mac1_offset(RESPONSE_LEN), 60);
    }

    #[test]
    fn transport_header_round_trip() {
        let mut buf = [0u8; 48];
        write_transport_header(&mut buf, 77, 0x1122_3344_5566_7788).unwrap();
        let transport = Transport::new_checked(&buf[..]).unwrap();
        assert_eq!(transport.receiver_index(), 77);
        assert_eq!(transport.counter(), 0x1122_3344_5566_7788);
        assert_eq!(transport.ciphertext().len(), 32);
        assert!(!transport.is_keepalive());
        assert_eq!(
            write_transport_header(&mut [0u8; 15], 1, 1),
            Err(MessageError::BadLength)
        );
    }

    #[test]
    fn padding_never_exceeds_the_mtu() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(1419, 1420), 1420);
        assert_eq!(padded_len(1420, 1420), 1420);
        assert_eq!(padded_len(1417, 1420), 1420);
        assert_eq!(padded_len(1500, 1420), 1500);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let kind = classify(&bytes);
            let _ = Initiation::new_checked(&bytes[..]).map(|m| (m.sender_index(), *m.mac2()));
            let _ = Response::new_checked(&bytes[..]).map(|m| (m.receiver_index(), *m.mac1()));
            let _ = CookieReply::new_checked(&bytes[..]).map(|m| *m.nonce());
            let transport = Transport::new_checked(&bytes[..]);
            prop_assert_eq!(transport.is_ok(), kind == Ok(MessageKind::Transport));
            if let Ok(t) = transport {
                prop_assert!(t.ciphertext().len() >= TAG_LEN);
            }
        }
    }
}
