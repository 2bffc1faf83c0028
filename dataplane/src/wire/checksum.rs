//! The Internet checksum (RFC 1071): one's-complement sum of big-endian 16-bit words.
//!
//! Partial sums are carried as `u64` values in one's-complement arithmetic: because
//! 2^16 = 1 (mod 2^16 - 1), summing 64-bit big-endian chunks with end-around carry and folding
//! at the end gives the same result as summing 16-bit words, at a quarter of the additions.
//! Partial sums of pieces combine with [`combine`] in any order, as long as every piece but
//! the last has an even length.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words, an odd last byte padded with
/// zero. Unfolded: pass it to [`fold`] or [`combine`] it with other sums.
pub fn sum(data: &[u8]) -> u64 {
    // Blocks small enough that the u64 accumulators below cannot overflow (each takes at most
    // 2^30 / 16 u32 words, far from 2^32); IP packets are one block.
    data.chunks(1 << 30)
        .fold(0, |acc, block| combine(acc, sum_block(block)))
}

/// `sum` of at most 1 GiB. Little-endian 32-bit words go into four independent u64
/// accumulators: no carry chain from one word to the next and no byte swap per word, so the
/// adds run in parallel and vectorise. Summing byte-swapped words gives the byte-swapped
/// one's-complement sum (RFC 1071 section 2B), so one swap of the folded result at the end
/// gives the big-endian sum; any grouping of the 16-bit words gives the same sum modulo
/// 0xffff, which is all the checksum keeps.
fn sum_block(data: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        for (lane, word) in acc.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes")));
        }
    }
    let tail = blocks.remainder();
    let mut padded = [0u8; 16];
    padded[..tail.len()].copy_from_slice(tail);
    for (lane, word) in acc.iter_mut().zip(padded.chunks_exact(4)) {
        *lane += u64::from(u32::from_le_bytes(word.try_into().expect("4 bytes")));
    }
    let little_endian = fold(acc.iter().fold(0, |total, lane| combine(total, *lane)));
    u64::from(little_endian.swap_bytes())
}

/// One's-complement addition of two partial sums.
pub fn combine(a: u64, b: u64) -> u64 {
    let (sum, carry) = a.overflowing_add(b);
    // Cannot overflow: with a carry out, `sum` is at most u64::MAX - 1.
    sum + u64::from(carry)
}

/// Folds a partial sum to 16 bits (still not complemented).
pub fn fold(sum: u64) -> u16 {
    let sum = (sum >> 32) + (sum & 0xffff_ffff);
    let sum = (sum >> 32) + (sum & 0xffff_ffff);
    let sum = (sum >> 16) + (sum & 0xffff);
    let sum = (sum >> 16) + (sum & 0xffff);
    sum as u16
}

/// The checksum to store for `data` (whose checksum field must be zero).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header (RFC 768) for an upper-layer packet of `length` bytes.
pub fn pseudo_header_ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    let addresses = u64::from(src.to_bits()) << 32 | u64::from(dst.to_bits());
    combine(addresses, u64::from(protocol) << 16 | u64::from(length))
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200, section 8.1) for an upper-layer packet of
/// `length` bytes.
pub fn pseudo_header_ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
    let addresses = combine(sum_u128(src.to_bits()), sum_u128(dst.to_bits()));
    combine(addresses, u64::from(length) << 32 | u64::from(next_header))
}

fn sum_u128(value: u128) -> u64 {
    combine((value >> 64) as u64, value as u64)
}

/// Updates a stored checksum after a 16-bit word of the covered data changed from `old` to
/// `new` (RFC 1624, equation 3). Callers storing UDP checksums must map a result of 0 to
/// 0xffff themselves, since 0 means "no checksum" there.
pub fn update_word(checksum: u16, old: u16, new: u16) -> u16 {
    update_sum(checksum, u64::from(old), u64::from(new))
}

/// Updates a stored checksum after an IPv4 address in the covered data (or pseudo-header)
/// changed, as when rewriting a source or destination address.
pub fn update_ipv4_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_sum(checksum, u64::from(old.to_bits()), u64::from(new.to_bits()))
}

/// Updates a stored checksum after an IPv6 address in the covered data (or pseudo-header)
/// changed.
pub fn update_ipv6_addr(checksum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    update_sum(checksum, sum_u128(old.to_bits()), sum_u128(new.to_bits()))
}

/// HC' = ~(~HC + ~m + m'), with the sums of the old and new words standing in for m and m'.
fn update_sum(checksum: u16, old_sum: u64, new_sum: u64) -> u16 {
    let acc = combine(u64::from(!checksum), u64::from(!fold(old_sum)));
    !fold(combine(acc, new_sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 as written: 16-bit words, 32-bit accumulator, carries folded at the end.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            acc += hi | lo;
        }
        while acc > 0xffff {
            acc = (acc >> 16) + (acc & 0xffff);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn empty_and_odd_lengths() {
        assert_eq!(fold(sum(&[])), 0);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0xff; 8])), 0xffff);
        // Four words of 0xffff are one's-complement zero; the padded odd byte remains.
        assert_eq!(fold(sum(&[0xff; 9])), 0xff00);
    }

    #[test]
    fn fold_handles_every_carry() {
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x0001_0000_0000_0000), 0x0001);
        assert_eq!(fold(0xffff_0001), 0x0001);
    }

    #[test]
    fn pseudo_headers_match_their_byte_layout() {
        let src = Ipv4Addr::new(192, 168, 1, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 254);
        let mut v4 = Vec::new();
        v4.extend_from_slice(&src.octets());
        v4.extend_from_slice(&dst.octets());
        v4.extend_from_slice(&[0, 17, 0x05, 0xdc]);
        assert_eq!(fold(pseudo_header_ipv4(src, dst, 17, 1500)), naive_sum(&v4));

        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::ffff:1234:5678".parse().unwrap();
        let mut v6 = Vec::new();
        v6.extend_from_slice(&src.octets());
        v6.extend_from_slice(&dst.octets());
        v6.extend_from_slice(&70_000u32.to_be_bytes());
        v6.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            fold(pseudo_header_ipv6(src, dst, 17, 70_000)),
            naive_sum(&v6)
        );
    }

    proptest! {
        #[test]
        fn fast_sum_matches_naive(data in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), naive_sum(&data));
        }

        #[test]
        fn sums_of_even_pieces_combine(
            data in prop::collection::vec(any::<u8>(), 0..300),
            split in any::<prop::sample::Index>(),
        ) {
            let cut = split.index(data.len() + 1) & !1;
            let (head, tail) = data.split_at(cut);
            prop_assert_eq!(fold(combine(sum(head), sum(tail))), fold(sum(&data)));
        }

        #[test]
        fn incremental_update_matches_recompute(
            mut data in prop::collection::vec(any::<u8>(), 24..64),
            new_v4 in any::<u32>(),
            new_v6 in any::<u128>(),
            new_word in any::<u16>(),
        ) {
            // Layout: a checksum field at 0..2, a word at 2..4, an IPv4 address at 4..8, an
            // IPv6 address at 8..24, then arbitrary bytes.
            data[0..2].fill(0);
            let stored = checksum(&data);
            data[0..2].copy_from_slice(&stored.to_be_bytes());

            let old_word = u16::from_be_bytes([data[2], data[3]]);
            let old_v4 = Ipv4Addr::from(<[u8; 4]>::try_from(&data[4..8]).unwrap());
            let old_v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&data[8..24]).unwrap());
            let new_v4 = Ipv4Addr::from_bits(new_v4);
            let new_v6 = Ipv6Addr::from_bits(new_v6);

            let updated = update_word(stored, old_word, new_word);
            let updated = update_ipv4_addr(updated, old_v4, new_v4);
            let updated = update_ipv6_addr(updated, old_v6, new_v6);

            data[2..4].copy_from_slice(&new_word.to_be_bytes());
            data[4..8].copy_from_slice(&new_v4.octets());
            data[8..24].copy_from_slice(&new_v6.octets());
            data[0..2].copy_from_slice(&updated.to_be_bytes());
            // Whatever representation of zero the update produced, the data must verify.
            prop_assert_eq!(fold(sum(&data)), 0xffff);
            data[0..2].fill(0);
            let recomputed = checksum(&data);
            // 0x0000 and 0xffff are the two zeros of one's complement: either may come out.
            prop_assert!(updated == recomputed || (updated ^ recomputed) == 0xffff);
        }
    }
}
