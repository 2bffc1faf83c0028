//! Differential tests of the allowed-IPs table against a naive model: a `Vec` of
//! (prefix, value) searched by scanning. Random inserts, removes and peer removals are
//! interleaved with lookups, and every step must agree with the model.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use warpline_dataplane::allowed_ips::{AllowedIps, IpPrefix};

/// The model: masked prefixes in insertion order, longest match by scanning.
#[derive(Debug, Default)]
struct Model {
    entries: Vec<(IpPrefix, u8)>,
}

impl Model {
    fn insert(&mut self, prefix: IpPrefix, value: u8) -> Option<u8> {
        let prefix = prefix.masked();
        match self.entries.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((prefix, value));
                None
            }
        }
    }

    fn remove(&mut self, prefix: IpPrefix) -> Option<u8> {
        let prefix = prefix.masked();
        let i = self.entries.iter().position(|(p, _)| *p == prefix)?;
        Some(self.entries.swap_remove(i).1)
    }

    fn remove_value(&mut self, value: u8) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(_, v)| *v != value);
        before - self.entries.len()
    }

    fn lookup(&self, addr: IpAddr) -> Option<u8> {
        self.entries
            .iter()
            .filter(|(p, _)| p.contains(addr))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, v)| *v)
    }

    fn get(&self, prefix: IpPrefix) -> Option<u8> {
        let prefix = prefix.masked();
        self.entries
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, v)| *v)
    }
}

/// Addresses that share long runs of bits, so prefixes nest and split deep in the trie.
const V4_BASES: [u32; 3] = [0x0a00_0000, 0x0a00_0001, 0xc0a8_ff00];
const V6_BASES: [u128; 3] = [
    0xfd00_0000_0000_0000_0000_0000_0000_0000,
    0xfd00_0000_0000_0000_0000_0000_0000_0001,
    0x2001_0db8_aaaa_bbbb_cccc_dddd_eeee_ffff,
];

/// An address as a 128-bit value and its family's width: uniform, or a base with a few
/// bits flipped, or a base with its low bits randomised.
fn addr_bits() -> impl Strategy<Value = (u128, u8)> {
    let family = prop_oneof![Just(32u8), Just(128u8)];
    family.prop_flat_map(|bits| {
        let base = move |i: usize| {
            if bits == 32 {
                u128::from(V4_BASES[i])
            } else {
                V6_BASES[i]
            }
        };
        let width_mask = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        prop_oneof![
            1 => any::<u128>().prop_map(move |a| (a & width_mask, bits)),
            2 => (0..3usize, 0..bits).prop_map(move |(i, k)| (base(i) ^ (1u128 << k), bits)),
            2 => (0..3usize, any::<u128>(), 0..=bits).prop_map(move |(i, r, k)| {
                let low = if k == 0 { 0 } else { u128::MAX >> (128 - u32::from(k)) };
                (((base(i) & !low) | (r & low)) & width_mask, bits)
            }),
            1 => (0..3usize).prop_map(move |i| (base(i), bits)),
        ]
    })
}

fn to_addr((a, bits): (u128, u8)) -> IpAddr {
    if bits == 32 {
        IpAddr::V4(Ipv4Addr::from(a as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    }
}

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    addr_bits().prop_map(to_addr)
}

/// Prefixes over those addresses, with lengths of every size, weighted to the realistic
/// host routes and to short prefixes that cover many others.
fn arb_prefix() -> impl Strategy<Value = IpPrefix> {
    addr_bits().prop_flat_map(|(a, bits)| {
        let len = prop_oneof![
            2 => 0..=bits,
            1 => Just(bits),
            1 => Just(bits / 2),
            1 => 0..=8u8,
        ];
        len.prop_map(move |len| IpPrefix::new(to_addr((a, bits)), len).unwrap())
    })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(IpPrefix, u8),
    Remove(IpPrefix),
    RemoveValue(u8),
    Lookup(IpAddr),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (arb_prefix(), 0..6u8).prop_map(|(p, v)| Op::Insert(p, v)),
        3 => arb_prefix().prop_map(Op::Remove),
        1 => (0..6u8).prop_map(Op::RemoveValue),
        6 => arb_addr().prop_map(Op::Lookup),
    ]
}

/// Addresses just inside and just outside a prefix: its first address, and the address that
/// differs in the first bit past the prefix (still inside), and in the prefix's last bit
/// (outside).
fn probes(prefix: IpPrefix) -> Vec<IpAddr> {
    let (a, bits) = match prefix.addr() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8),
        IpAddr::V6(a) => (u128::from(a), 128u8),
    };
    let len = prefix.prefix_len();
    let mut out = vec![(a, bits)];
    if len < bits {
        out.push((a ^ (1u128 << (bits - 1 - len)), bits));
        let low = u128::MAX >> (128 - u32::from(bits - len));
        out.push((a | low, bits));
    }
    if len > 0 {
        out.push((a ^ (1u128 << (bits - len)), bits));
    }
    out.into_iter().map(to_addr).collect()
}

fn check_all(table: &AllowedIps<u8>, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len(), model.entries.len());
    let mut want = model.entries.clone();
    want.sort();
    let got: Vec<_> = table.iter().collect();
    prop_assert_eq!(&got, &want);
    for (prefix, _) in &want {
        prop_assert_eq!(table.get(*prefix), model.get(*prefix));
        for addr in probes(*prefix) {
            prop_assert_eq!(table.lookup(addr), model.lookup(addr), "probe {}", addr);
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut table = AllowedIps::new();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Insert(p, v) => prop_assert_eq!(table.insert(p, v), model.insert(p, v), "{}", p),
            Op::Remove(p) => prop_assert_eq!(table.remove(p), model.remove(p), "{}", p),
            Op::RemoveValue(v) => prop_assert_eq!(table.remove_value(v), model.remove_value(v)),
            Op::Lookup(a) => {
                prop_assert_eq!(table.lookup(a), model.lookup(a), "{}", a);
                match a {
                    IpAddr::V4(a4) => {
                        prop_assert_eq!(table.lookup_v4(a4.octets()), model.lookup(a));
                        prop_assert_eq!(table.lookup_v4(u32::from(a4)), model.lookup(a));
                    }
                    IpAddr::V6(a6) => {
                        prop_assert_eq!(table.lookup_v6(a6.octets()), model.lookup(a));
                        prop_assert_eq!(table.lookup_v6(u128::from(a6)), model.lookup(a));
                    }
                }
            }
        }
        prop_assert_eq!(table.len(), model.entries.len());
    }
    check_all(&table, &model)?;
    // Drain by peers: the table must end empty.
    for v in 0..6 {
        prop_assert_eq!(table.remove_value(v), model.remove_value(v));
        check_all(&table, &model)?;
    }
    prop_assert!(table.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn interleaved_ops_match_model(ops in prop::collection::vec(arb_op(), 1..300)) {
        run(ops)?;
    }

    /// Every length of one address nested, inserted in a random order, removed in another.
    #[test]
    fn nested_every_length(
        v6 in any::<bool>(),
        addr in any::<u128>(),
        order in Just((0..=128u8).collect::<Vec<_>>()).prop_shuffle(),
        removals in Just((0..=128u8).collect::<Vec<_>>()).prop_shuffle(),
        lookups in prop::collection::vec(any::<u128>(), 0..32),
    ) {
        let bits = if v6 { 128 } else { 32 };
        let addr = if v6 { addr } else { addr & u128::from(u32::MAX) };
        let prefix = |len: u8| IpPrefix::new(to_addr((addr, bits)), len).unwrap();
        let mut ops: Vec<Op> = order
            .iter()
            .filter(|&&l| l <= bits)
            .map(|&l| Op::Insert(prefix(l), l % 6))
            .collect();
        // Lookups that diverge from the address at every depth.
        ops.extend((0..bits).map(|k| Op::Lookup(to_addr((addr ^ (1u128 << k), bits)))));
        ops.extend(lookups.iter().map(|&r| {
            let r = if v6 { r } else { r & u128::from(u32::MAX) };
            Op::Lookup(to_addr((r, bits)))
        }));
        for &l in removals.iter().filter(|&&l| l <= bits) {
            ops.push(Op::Remove(prefix(l)));
            ops.push(Op::Lookup(to_addr((addr, bits))));
            ops.push(Op::Lookup(to_addr((addr ^ 1, bits))));
        }
        run(ops)?;
    }
}
