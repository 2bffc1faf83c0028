//! The length of the inner IP packet inside a decrypted, padded transport payload.

/// The inner packet's length from its IPv4 or IPv6 header, or `None` if the header is not a
/// plausible IP header or claims more bytes than were received.
pub(crate) fn packet_len(plaintext: &[u8]) -> Option<usize> {
    let len = match plaintext.first()? >> 4 {
        4 => {
            let total = usize::from(u16::from_be_bytes([*plaintext.get(2)?, *plaintext.get(3)?]));
            (total >= 20).then_some(total)?
        }
        6 => 40 + usize::from(u16::from_be_bytes([*plaintext.get(4)?, *plaintext.get(5)?])),
        _ => return None,
    };
    (len <= plaintext.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::packet_len;

    #[test]
    fn lengths_come_from_the_ip_header() {
        let mut v4 = [0u8; 32];
        v4[0] = 0x45;
        v4[3] = 28;
        assert_eq!(packet_len(&v4), Some(28));
        v4[3] = 40;
        assert_eq!(packet_len(&v4), None, "claims more than received");
        v4[3] = 12;
        assert_eq!(packet_len(&v4), None, "shorter than a header");
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        assert_eq!(packet_len(&v6), Some(48));
        assert_eq!(packet_len(&[0x50; 40]), None);
        assert_eq!(packet_len(&[]), None);
        assert_eq!(packet_len(&[0x45, 0]), None);
    }
}
