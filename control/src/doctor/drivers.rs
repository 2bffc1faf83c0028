//! What warpline knows about NIC drivers: native XDP and AF_XDP zero-copy support, and from
//! which kernel. On kernels 6.3+ the driver's own declaration (`xdp-features` over netlink)
//! takes precedence; this table answers on older kernels and explains what it means.

/// One driver's XDP support in mainline Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSupport {
    /// The name `ETHTOOL_GDRVINFO` reports.
    pub driver: &'static str,
    /// Native (driver-mode) XDP with `XDP_REDIRECT`, from this kernel on; `None` if never.
    pub native_xdp_since: Option<&'static str>,
    /// AF_XDP zero-copy, from this kernel on; `None` if never.
    pub zero_copy_since: Option<&'static str>,
    /// A software device (no hardware queues, no interrupts, no RSS).
    pub is_virtual: bool,
}

const fn driver(
    driver: &'static str,
    native_xdp_since: Option<&'static str>,
    zero_copy_since: Option<&'static str>,
) -> DriverSupport {
    DriverSupport {
        driver,
        native_xdp_since,
        zero_copy_since,
        is_virtual: false,
    }
}

const fn virtual_driver(
    name: &'static str,
    native_xdp_since: Option<&'static str>,
    zero_copy_since: Option<&'static str>,
) -> DriverSupport {
    DriverSupport {
        is_virtual: true,
        ..driver(name, native_xdp_since, zero_copy_since)
    }
}

/// Drivers warpline has facts for, from the kernel's `xdp_features` declarations and
/// changelogs.
pub const KNOWN_DRIVERS: &[DriverSupport] = &[
    driver("ice", Some("5.5"), Some("5.5")),
    driver("i40e", Some("4.13"), Some("4.20")),
    driver("ixgbe", Some("4.12"), Some("5.0")),
    driver("igc", Some("5.13"), Some("5.14")),
    driver("igb", Some("5.10"), Some("6.12")),
    driver("mlx5_core", Some("4.9"), Some("5.3")),
    driver("mlx4_en", Some("4.8"), None),
    driver("bnxt_en", Some("4.11"), None),
    driver("ena", Some("5.5"), None),
    driver("gve", Some("6.4"), Some("6.4")),
    driver("nfp", Some("4.10"), Some("5.18")),
    driver("sfc", Some("5.5"), None),
    driver("stmmac", Some("5.13"), Some("5.13")),
    driver("qede", Some("4.10"), None),
    driver("ixgbevf", Some("4.17"), None),
    driver("hv_netvsc", Some("5.6"), None),
    driver("e1000e", None, None),
    driver("r8169", None, None),
    // Paravirtual, but with per-queue interrupts and (with VIRTIO_NET_F_RSS) RSS.
    driver("virtio_net", Some("4.10"), Some("6.11")),
    virtual_driver("veth", Some("4.19"), None),
    virtual_driver("tun", Some("4.14"), None),
];

/// The table entry for `name`, if warpline knows the driver.
pub fn lookup(name: &str) -> Option<&'static DriverSupport> {
    KNOWN_DRIVERS.iter().find(|known| known.driver == name)
}

/// `(major, minor)` of a kernel release like `6.8.0-45-generic`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether kernel `release` is at least `since` (`"5.10"`).
pub fn at_least(release: &str, since: &str) -> bool {
    match (kernel_version(release), kernel_version(since)) {
        (Some(running), Some(needed)) => running >= needed,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_the_common_drivers_once_each() {
        for name in [
            "ice",
            "i40e",
            "ixgbe",
            "igc",
            "mlx5_core",
            "bnxt_en",
            "virtio_net",
            "veth",
        ] {
            assert!(lookup(name).is_some(), "{name}");
        }
        let mut names: Vec<&str> = KNOWN_DRIVERS.iter().map(|d| d.driver).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN_DRIVERS.len());
        assert_eq!(lookup("veth").unwrap().zero_copy_since, None);
        assert!(lookup("veth").unwrap().is_virtual);
    }

    #[test]
    fn kernel_versions_compare_numerically() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4"), Some((5, 4)));
        assert!(at_least("6.18.44-fc", "6.3"));
        assert!(at_least("5.10.0-28-amd64", "5.10"));
        assert!(!at_least("5.9.16", "5.10"));
        assert!(!at_least("garbage", "5.10"));
    }
}
