//! Lookup throughput of the allowed-IPs table against a naive baseline, single core.
//!
//! Builds tables of 10k and 1M random prefixes per family (IPv4: 60% /32, 30% /24, 10% /8-/31;
//! IPv6: 60% /128, 30% /64, 10% /16-/127; addresses uniform) and times longest-prefix lookups
//! of (a) uniform random addresses and (b) addresses inside a random inserted prefix. The
//! baseline is a `BTreeMap` per prefix length, probed from the longest length down; both run
//! in the same process on the same addresses, and their answers are compared.
//!
//! `cargo run --release -p warpline-dataplane --example allowed_ips_lookup`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use warpline_dataplane::allowed_ips::{AllowedIps, IpPrefix};

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

fn mask(a: u128, len: u8, bits: u8) -> u128 {
    let keep = u128::MAX.checked_shl(u32::from(bits - len)).unwrap_or(0);
    let width = u128::MAX >> (128 - u32::from(bits));
    a & keep & width
}

/// A family-generic view for the benchmark.
#[derive(Clone, Copy)]
struct Family {
    name: &'static str,
    bits: u8,
    /// (length, weight in percent) of the realistic lengths; the rest spreads over `spread`.
    common: [(u8, u64); 2],
    spread: (u8, u8),
}

const V4: Family = Family {
    name: "IPv4",
    bits: 32,
    common: [(32, 60), (24, 30)],
    spread: (8, 31),
};
const V6: Family = Family {
    name: "IPv6",
    bits: 128,
    common: [(128, 60), (64, 30)],
    spread: (16, 127),
};

impl Family {
    fn addr(self, rng: &mut Rng) -> u128 {
        mask(rng.u128(), self.bits, self.bits)
    }

    fn len(self, rng: &mut Rng) -> u8 {
        let r = rng.below(100);
        if r < self.common[0].1 {
            self.common[0].0
        } else if r < self.common[0].1 + self.common[1].1 {
            self.common[1].0
        } else {
            let (lo, hi) = self.spread;
            lo + rng.below(u64::from(hi - lo) + 1) as u8
        }
    }

    fn ip(self, a: u128) -> IpAddr {
        if self.bits == 32 {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }
}

/// The baseline: one ordered map per prefix length, probed longest first.
struct Naive {
    bits: u8,
    by_len: Vec<BTreeMap<u128, u32>>,
    /// Lengths that hold at least one prefix, longest first.
    lens: Vec<u8>,
}

impl Naive {
    fn new(bits: u8) -> Self {
        Self {
            bits,
            by_len: vec![BTreeMap::new(); usize::from(bits) + 1],
            lens: Vec::new(),
        }
    }

    fn insert(&mut self, a: u128, len: u8, v: u32) {
        self.by_len[usize::from(len)].insert(mask(a, len, self.bits), v);
    }

    fn finish(&mut self) {
        self.lens = (0..=self.bits)
            .rev()
            .filter(|&l| !self.by_len[usize::from(l)].is_empty())
            .collect();
    }

    fn lookup(&self, a: u128) -> Option<u32> {
        self.lens.iter().find_map(|&len| {
            self.by_len[usize::from(len)]
                .get(&mask(a, len, self.bits))
                .copied()
        })
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// This thread's CPU time (user + system) in clock ticks (100 Hz), from procfs: on a shared
/// VM, wall time also counts the time other processes held the core.
fn cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which ends with the last ')'.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Runs `f` over `addrs` until at least `min` of CPU time has passed; returns ns per lookup
/// of this thread's CPU time.
fn time(addrs: &[u128], min: Duration, mut f: impl FnMut(u128) -> Option<u32>) -> f64 {
    let ticks0 = cpu_ticks();
    let start = Instant::now();
    let mut done = 0u64;
    let mut sink = 0u64;
    loop {
        for &a in addrs {
            sink = sink.wrapping_add(u64::from(f(black_box(a)).unwrap_or(u32::MAX)));
        }
        done += addrs.len() as u64;
        let cpu = Duration::from_millis((cpu_ticks() - ticks0) * 10);
        if cpu >= min || start.elapsed() >= 4 * min {
            break;
        }
    }
    black_box(sink);
    let ticks = cpu_ticks() - ticks0;
    let ns = if ticks > 0 {
        ticks as f64 * 1e7
    } else {
        start.elapsed().as_nanos() as f64
    };
    ns / done as f64
}

fn bench(fam: Family, n: usize, rng: &mut Rng) {
    let prefixes: Vec<(u128, u8)> = (0..n)
        .map(|_| {
            let len = fam.len(rng);
            (mask(fam.addr(rng), len, fam.bits), len)
        })
        .collect();

    let rss0 = rss_kib();
    let t = Instant::now();
    let mut table = AllowedIps::new();
    for (i, &(a, len)) in prefixes.iter().enumerate() {
        table.insert(IpPrefix::new(fam.ip(a), len).unwrap(), i as u32);
    }
    let build = t.elapsed();
    let rss_table = rss_kib().saturating_sub(rss0);

    let mut naive = Naive::new(fam.bits);
    for (i, &(a, len)) in prefixes.iter().enumerate() {
        naive.insert(a, len, i as u32);
    }
    naive.finish();

    let uniform: Vec<u128> = (0..1 << 20).map(|_| fam.addr(rng)).collect();
    let inside: Vec<u128> = (0..1 << 20)
        .map(|_| {
            let (a, len) = prefixes[rng.below(n as u64) as usize];
            let host = fam.addr(rng) & !mask(u128::MAX, len, fam.bits);
            a | host
        })
        .collect();

    println!(
        "{} {n} prefixes ({} distinct): built in {:.0} ms, table RSS ~{} MiB",
        fam.name,
        table.len(),
        build.as_secs_f64() * 1e3,
        rss_table / 1024
    );
    for (what, addrs) in [("uniform addrs", &uniform), ("addrs in table", &inside)] {
        let fast = |a: u128| {
            if fam.bits == 32 {
                table.lookup_v4(a as u32)
            } else {
                table.lookup_v6(a)
            }
        };
        let mismatches = addrs[..1 << 16]
            .iter()
            .filter(|&&a| fast(a) != naive.lookup(a))
            .count();
        let hits = addrs.iter().filter(|&&a| fast(a).is_some()).count();
        let trie_ns = time(addrs, Duration::from_millis(1000), fast);
        // The baseline is slow; time it on a slice so each run stays short.
        let naive_ns = time(&addrs[..1 << 16], Duration::from_millis(1000), |a| {
            naive.lookup(a)
        });
        println!(
            "  {what:<15} trie {trie_ns:7.1} ns ({:6.1} M/s)  btree-per-len {naive_ns:8.1} ns \
             ({:6.2} M/s)  ratio {:6.1}x  hits {:.0}%  mismatches {mismatches}",
            1e3 / trie_ns,
            1e3 / naive_ns,
            naive_ns / trie_ns,
            100.0 * hits as f64 / addrs.len() as f64,
        );
    }
}

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "CPU: {cpu}, {} threads available; single-threaded; ns are this thread's CPU time",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rng = Rng(0x5eed);
    for fam in [V4, V6] {
        for n in [10_000, 1_000_000] {
            bench(fam, n, &mut rng);
        }
    }
}
