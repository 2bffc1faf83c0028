//! The doctor's view of the kernel: ioctls, netlink and syscalls, each wrapped once with
//! its `unsafe` justified. Nothing here shells out; the target machines have neither
//! ethtool nor iproute2.

pub mod ethtool;
pub mod kernel;
pub mod netdev;
