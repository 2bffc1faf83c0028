//! The queue and core layout keys of `[Interface]` (warpline extensions for XDP mode):
//! `Workers`, `Cores`, `Queues`, `ZeroCopy`, `FrameSize`, `RingSize`, `BusyPoll`.
//!
//! Values are checked here, one key at a time; combinations that the config alone can refute
//! (Workers against Queues, Cores and the MTU against FrameSize) are checked by
//! [`LayoutKeys::check_combination`]; what needs the host's facts (queue counts, online CPUs)
//! is `crate::layout`'s job.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use super::values::{ValueError, list_items, parse_decimal, value_error};

/// The layout keys of one `[Interface]`; every key defaults to letting warpline choose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutKeys {
    /// `Workers`: how many AF_XDP workers (one per queue of each `Attach` NIC).
    pub workers: Count,
    /// `Cores`: the CPUs workers are pinned to, worker `i` on the `i`-th listed CPU; `None`
    /// lets warpline pick CPUs near the NIC.
    pub cores: Option<CoreList>,
    /// `Queues`: how many queues of each `Attach` NIC carry tunnels.
    pub queues: Count,
    /// `ZeroCopy`: whether AF_XDP sockets bind in zero-copy mode.
    pub zero_copy: ZeroCopy,
    /// `FrameSize`: bytes per UMEM frame.
    pub frame_size: FrameSize,
    /// `RingSize`: descriptors in each AF_XDP ring (fill, RX, TX, completion).
    pub ring_size: RingSize,
    /// `BusyPoll`: workers poll the NIC queue instead of sleeping on interrupts.
    pub busy_poll: bool,
}

/// A count that warpline may derive (`auto`) or that the config fixes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Count {
    /// Derived from the NIC's queues and the CPUs near it.
    #[default]
    Auto,
    /// Exactly this many.
    Exactly(NonZeroU32),
}

impl Count {
    /// The fixed number, if the config sets one.
    pub fn fixed(self) -> Option<u32> {
        match self {
            Self::Auto => None,
            Self::Exactly(n) => Some(n.get()),
        }
    }
}

/// Most workers or queues a config may ask for: the kernel's `NR_CPUS` limit.
pub const MAX_COUNT: u32 = 8192;

impl FromStr for Count {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        parse_decimal(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n <= MAX_COUNT)
            .and_then(NonZeroU32::new)
            .map(Self::Exactly)
            .ok_or_else(|| {
                value_error!("{text:?} is neither auto nor a number from 1 to {MAX_COUNT}")
            })
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Exactly(n) => write!(f, "{n}"),
        }
    }
}

/// Highest CPU number `Cores` accepts (the kernel's `NR_CPUS` limit is 8192).
pub const MAX_CPU: u32 = MAX_COUNT - 1;

/// `Cores`: CPU numbers in the kernel's cpulist syntax (`2-7`, `1,3,5`, `0-3,8-11`), kept in
/// the order written because worker `i` runs on the `i`-th CPU. Never empty, no repeats.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoreList(Vec<u32>);

impl CoreList {
    /// A list of distinct CPUs, each at most [`MAX_CPU`]; `None` if it is empty, repeats a
    /// CPU or names one out of range.
    pub fn new(cpus: Vec<u32>) -> Option<Self> {
        let mut seen = std::collections::HashSet::new();
        let valid = !cpus.is_empty() && cpus.iter().all(|&cpu| cpu <= MAX_CPU && seen.insert(cpu));
        valid.then_some(Self(cpus))
    }

    /// The CPUs in the order written.
    pub fn cpus(&self) -> &[u32] {
        &self.0
    }
}

impl FromStr for CoreList {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let cpus = parse_cpu_list(text)?;
        if cpus.is_empty() {
            return Err(value_error!(
                "{text:?} names no CPU (expected a list like 2-7 or 1,3,5)"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) = cpus.iter().find(|&&cpu| !seen.insert(cpu)) {
            return Err(value_error!(
                "{text:?} lists CPU {repeated} twice; each worker needs a core of its own"
            ));
        }
        Ok(Self(cpus))
    }
}

impl fmt::Display for CoreList {
    /// Consecutive ascending runs as `a-b`, the rest as single numbers, comma-separated: the
    /// kernel's cpulist format, which parses back to the same order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &cpu in &self.0 {
            match runs.last_mut() {
                Some((_, end)) if end.checked_add(1) == Some(cpu) => *end = cpu,
                _ => runs.push((cpu, cpu)),
            }
        }
        for (index, (start, end)) in runs.into_iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// Parses the kernel's cpulist syntax (`0-3,8,10-11`) in the order written. Shared with the
/// readers of `/sys/devices/system/cpu/online` and `node*/cpulist`, where an empty list is
/// valid (a node without CPUs).
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, ValueError> {
    let mut cpus = Vec::new();
    for item in list_items(text) {
        let bad_item = || {
            value_error!(
                "{item:?} is not a CPU number or range (expected e.g. 2, 2-7; CPUs 0 to {MAX_CPU})"
            )
        };
        let cpu = |digits: &str| {
            parse_decimal(digits.trim())
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n <= MAX_CPU)
                .ok_or_else(bad_item)
        };
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (cpu(first)?, cpu(last)?);
                if first > last {
                    return Err(value_error!(
                        "{item:?} is a range that runs backwards; write {last}-{first}"
                    ));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(cpu(item)?),
        }
    }
    Ok(cpus)
}

/// `ZeroCopy`: how AF_XDP sockets bind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ZeroCopy {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy only: refuse to start on a NIC whose driver lacks it.
    On,
    /// Copy mode always (the kernel copies each packet into the UMEM).
    Off,
}

impl FromStr for ZeroCopy {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        [Self::Auto, Self::On, Self::Off]
            .into_iter()
            .find(|mode| mode.to_string().eq_ignore_ascii_case(text))
            .ok_or_else(|| value_error!("{text:?} is not a zero-copy mode; valid: auto, on, off"))
    }
}

impl fmt::Display for ZeroCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// `FrameSize`: bytes per UMEM frame, 2048 or 4096 (the kernel's aligned-chunk mode takes a
/// power of two from 2048 up to the page size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameSize(u32);

impl FrameSize {
    /// The sizes accepted.
    pub const VALID: [u32; 2] = [2048, 4096];

    /// `bytes` as a frame size, if it is one of [`FrameSize::VALID`].
    pub fn new(bytes: u32) -> Result<Self, ValueError> {
        if Self::VALID.contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(value_error!(
                "{bytes} is not a frame size; valid: 2048, 4096 (the default)"
            ))
        }
    }

    /// Bytes per frame.
    pub fn bytes(self) -> u32 {
        self.0
    }
}

impl Default for FrameSize {
    /// A page: room for MTUs up to about 3.7 KB.
    fn default() -> Self {
        Self(4096)
    }
}

impl FromStr for FrameSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let bytes = parse_decimal(text)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| value_error!("{text:?} is not a frame size; valid: 2048, 4096"))?;
        Self::new(bytes)
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `RingSize`: descriptors per AF_XDP ring, a power of two from 64 to 16384.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RingSize(u32);

impl RingSize {
    /// Smallest ring: below one batch or two the worker stalls on every kick.
    pub const MIN: u32 = 64;
    /// Largest ring: beyond it the rings outgrow the UMEM frames that feed them.
    pub const MAX: u32 = 16384;

    /// `descriptors` as a ring size, if it is a power of two in [`Self::MIN`]..=[`Self::MAX`].
    pub fn new(descriptors: u32) -> Result<Self, ValueError> {
        if descriptors.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&descriptors) {
            Ok(Self(descriptors))
        } else {
            Err(value_error!(
                "{descriptors} is not a ring size (expected a power of two from {} to {}, e.g. \
                 2048)",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    /// Descriptors per ring.
    pub fn descriptors(self) -> u32 {
        self.0
    }
}

impl Default for RingSize {
    fn default() -> Self {
        Self(2048)
    }
}

impl FromStr for RingSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let descriptors = parse_decimal(text)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                value_error!("{text:?} is not a ring size (expected a power of two, e.g. 2048)")
            })?;
        Self::new(descriptors)
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses `BusyPoll`: `on` or `off`.
pub(crate) fn parse_on_off(text: &str) -> Result<bool, ValueError> {
    if text.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(value_error!("{text:?} is neither on nor off"))
    }
}

/// Bytes in front of a received packet that the frame cannot use: the kernel's
/// `XDP_PACKET_HEADROOM`.
const KERNEL_HEADROOM: u32 = 256;
/// The largest outer header stack (Ethernet with a VLAN tag, IPv6, UDP, WireGuard header)
/// and the padding and tag behind the inner packet.
const OUTER_OVERHEAD: u32 = (warpline_dataplane::pipeline::MAX_OUTER_HEADERS
    + warpline_dataplane::pipeline::TAILROOM) as u32;

/// The largest inner MTU whose encrypted packets fit a frame of `frame_size`.
pub fn max_mtu_for(frame_size: FrameSize) -> u32 {
    frame_size.bytes() - KERNEL_HEADROOM - OUTER_OVERHEAD
}

/// A combination of layout keys the config alone shows to be impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConflict {
    /// The key to change, in its documented spelling.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

impl LayoutKeys {
    /// Checks what the config alone can refute. `xdp_mode_mtu` is the tunnel MTU when the
    /// config attaches NICs (frames only exist in XDP mode), `None` in the portable mode.
    pub fn check_combination(&self, xdp_mode_mtu: Option<u32>) -> Result<(), KeyConflict> {
        if let (Some(workers), Some(queues)) = (self.workers.fixed(), self.queues.fixed())
            && workers != queues
        {
            return Err(KeyConflict {
                key: "Workers",
                problem: format!(
                    "Workers = {workers} but Queues = {queues}: each worker serves one queue, so \
                     they must match (or set one of them to auto)"
                ),
            });
        }
        let wanted = self.workers.fixed().or(self.queues.fixed());
        if let (Some(wanted), Some(cores)) = (wanted, &self.cores)
            && cores.cpus().len() < wanted as usize
        {
            let key = if self.workers.fixed().is_some() {
                "Workers"
            } else {
                "Queues"
            };
            return Err(KeyConflict {
                key: "Cores",
                problem: format!(
                    "Cores = {cores} lists {} CPUs but {key} = {wanted} needs one per worker; \
                     list at least {wanted} CPUs or lower {key}",
                    cores.cpus().len()
                ),
            });
        }
        let max_mtu = max_mtu_for(self.frame_size);
        if let Some(mtu) = xdp_mode_mtu
            && mtu > max_mtu
        {
            return Err(KeyConflict {
                key: "FrameSize",
                problem: format!(
                    "FrameSize = {} holds tunnel packets up to MTU {max_mtu}, but the MTU is \
                     {mtu}; use FrameSize = 4096 or lower MTU to {max_mtu}",
                    self.frame_size
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_auto_or_positive() {
        assert_eq!("AUTO".parse(), Ok(Count::Auto));
        assert_eq!("4".parse::<Count>().unwrap().fixed(), Some(4));
        for bad in ["0", "-1", "8193", "four", ""] {
            assert!(bad.parse::<Count>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn core_lists_keep_their_order_and_print_back_as_cpulists() {
        let cores: CoreList = "2-4, 7,0".parse().unwrap();
        assert_eq!(cores.cpus(), [2, 3, 4, 7, 0]);
        assert_eq!(cores.to_string(), "2-4,7,0");
        assert_eq!(cores.to_string().parse::<CoreList>().unwrap(), cores);
        assert_eq!("5-5".parse::<CoreList>().unwrap().to_string(), "5");
        let cases = [
            ("7-2", "runs backwards"),
            ("1,2,1", "lists CPU 1 twice"),
            ("2-8192", "not a CPU number or range"),
            ("", "names no CPU"),
            ("a-b", "not a CPU number"),
        ];
        for (text, expected) in cases {
            let message = text.parse::<CoreList>().unwrap_err().into_message();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), [0, 1]);
    }

    #[test]
    fn frame_and_ring_sizes_are_checked() {
        assert_eq!("2048".parse::<FrameSize>().unwrap().bytes(), 2048);
        assert!("3000".parse::<FrameSize>().is_err());
        assert!("8192".parse::<FrameSize>().is_err());
        assert_eq!("64".parse::<RingSize>().unwrap().descriptors(), 64);
        assert_eq!("16384".parse::<RingSize>().unwrap().descriptors(), 16384);
        for bad in ["32", "100", "32768", "0", "x"] {
            assert!(bad.parse::<RingSize>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_on_off("ON"), Ok(true));
        assert!(parse_on_off("yes").is_err());
    }

    #[test]
    fn impossible_combinations_name_the_key() {
        let keys = |workers: &str, queues: &str, cores: Option<&str>| LayoutKeys {
            workers: workers.parse().unwrap(),
            queues: queues.parse().unwrap(),
            cores: cores.map(|c| c.parse().unwrap()),
            ..LayoutKeys::default()
        };
        assert_eq!(
            keys("4", "auto", Some("2-5")).check_combination(Some(1420)),
            Ok(())
        );
        let conflict = keys("4", "8", None)
            .check_combination(Some(1420))
            .unwrap_err();
        assert_eq!(conflict.key, "Workers");
        let conflict = keys("4", "auto", Some("2-4"))
            .check_combination(Some(1420))
            .unwrap_err();
        assert_eq!(conflict.key, "Cores");
        assert!(
            conflict.problem.contains("lists 3 CPUs but Workers = 4"),
            "{conflict:?}"
        );
        let conflict = keys("auto", "6", Some("1"))
            .check_combination(Some(1420))
            .unwrap_err();
        assert!(conflict.problem.contains("Queues = 6"), "{conflict:?}");
        let small = LayoutKeys {
            frame_size: FrameSize::new(2048).unwrap(),
            ..LayoutKeys::default()
        };
        assert_eq!(small.check_combination(Some(1500)), Ok(()));
        let conflict = small.check_combination(Some(9000)).unwrap_err();
        assert_eq!(conflict.key, "FrameSize");
        assert!(LayoutKeys::default().check_combination(Some(9000)).is_err());
        assert_eq!(LayoutKeys::default().check_combination(None), Ok(()));
    }
}
