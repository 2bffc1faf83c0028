//! A network-namespace lab for tests, the demo and benchmarks: hosts (network
//! namespaces) joined by veth links with addresses and several queues, built
//! over netlink (no `ip` binary needed) and torn down by `Drop`, so a
//! panicking test leaves nothing behind.
//!
//! Namespaces are created with `unshare(CLONE_NEWNET)` on a short-lived
//! thread and kept alive by an open `/proc/thread-self/ns/net` descriptor;
//! code runs inside one via [`Host::run`], which does `setns` on a scoped
//! thread (namespaces are per thread, so the caller's thread never moves).
//! Dropping the last descriptor lets the kernel destroy the namespace and
//! every veth end in it. Names carry the process id and a counter, so
//! parallel tests and parallel test binaries cannot clash.
//!
//! Needs root (`CAP_SYS_ADMIN` + `CAP_NET_ADMIN`); see [`require_root`].

pub mod capture;
mod netlink;
mod ping;
pub mod traffic;

use std::{
    fs::File,
    io,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    sync::atomic::{AtomicU32, Ordering},
};

pub use netlink::{LinkInfo, Netlink, RouteTo, RoutingRule};
pub use ping::ping;

/// `Err(reason)` when the process is not root, for tests to print
/// `skipping: <reason>` and return.
pub fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(format!(
            "needs root for network namespaces, veth and XDP (running as uid {euid})"
        ))
    }
}

/// For privileged tests: true when running as root; otherwise prints
/// `skipping: <reason>` (the line CI logs show) and returns false.
pub fn root_or_skip() -> bool {
    match require_root() {
        Ok(()) => true,
        Err(reason) => {
            println!("skipping: {reason}");
            false
        }
    }
}

static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `wl<pid><counter>`, at most 12
/// bytes, leaving room for a one- to three-byte suffix in a 15-byte ifname.
pub fn unique_name() -> String {
    let counter = NEXT_NAME.fetch_add(1, Ordering::Relaxed);
    format!("wl{}{}", std::process::id() % 1_000_000, base36(counter))
}

fn base36(mut value: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    // Separate pid and counter unambiguously.
    format!("x{}", String::from_utf8(out).expect("ASCII digits"))
}

/// A network namespace, alive while this value (or a thread or socket in
/// it) lives.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Creates a fresh network namespace with its loopback up.
    pub fn new() -> io::Result<Self> {
        let fd = std::thread::spawn(|| -> io::Result<OwnedFd> {
            // SAFETY: unshare only changes this (short-lived) thread's namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let file = File::open("/proc/thread-self/ns/net")?;
            let mut netlink = Netlink::open()?;
            let lo = netlink.link_by_name("lo")?;
            netlink.set_up(lo.index)?;
            Ok(OwnedFd::from(file))
        })
        .join()
        .map_err(|_| io::Error::other("namespace creation thread panicked"))??;
        Ok(Self { fd })
    }

    /// Opens the namespace a `/proc/.../ns/net` path names (for a child
    /// process joining its parent's lab).
    pub fn open(path: &str) -> io::Result<Self> {
        Ok(Self {
            fd: OwnedFd::from(File::open(path)?),
        })
    }

    /// Moves the calling thread into this namespace, for good.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        // SAFETY: setns on a namespace descriptor we own; it affects only the
        // calling thread.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `work` on a thread inside this namespace and returns its result;
    /// a panic in `work` resumes on the caller's thread.
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                self.enter_current_thread()
                    .expect("setns into a namespace we hold");
                work()
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A command whose process starts inside this namespace (`setns` between fork and
    /// exec) and is killed when the thread that spawned it exits, so a test that dies
    /// leaves no process behind. Spawn it while this namespace is alive.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let fd = self.fd.as_raw_fd();
        let mut command = std::process::Command::new(program);
        command.stdin(std::process::Stdio::null());
        let enter = move || {
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: setns only reads the descriptor, which the parent keeps open until
            // the child has exec'd (the caller holds this NetNs while spawning); it
            // changes only the child's namespace.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: between fork and exec the hook calls only prctl and setns and reads
        // errno, all async-signal-safe; it allocates nothing and takes no locks.
        unsafe { command.pre_exec(enter) };
        command
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One end of a veth link, as seen inside its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Interface name.
    pub name: String,
    /// Interface index inside the host's namespace.
    pub index: u32,
    /// MAC address.
    pub mac: [u8; 6],
}

/// A host: a named network namespace.
#[derive(Debug)]
pub struct Host {
    name: String,
    netns: NetNs,
}

impl Host {
    /// A new host in a fresh namespace.
    pub fn new(label: &str) -> io::Result<Self> {
        Ok(Self {
            name: format!("{}{label}", unique_name()),
            netns: NetNs::new()?,
        })
    }

    /// The host's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace.
    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// Runs `work` inside the host's namespace (see [`NetNs::run`]).
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.netns.run(work)
    }

    /// Runs `work` with a netlink socket in the host's namespace.
    pub fn netlink<R: Send>(
        &self,
        work: impl FnOnce(&mut Netlink) -> io::Result<R> + Send,
    ) -> io::Result<R> {
        self.run(|| work(&mut Netlink::open()?))
    }

    /// Adds `address/prefix_len` to one of the host's interfaces.
    pub fn add_address(
        &self,
        endpoint: &Endpoint,
        address: IpAddr,
        prefix_len: u8,
    ) -> io::Result<()> {
        self.netlink(|netlink| netlink.add_address(endpoint.index, address, prefix_len))
    }

    /// Link facts for one of the host's interfaces.
    pub fn link(&self, index: u32) -> io::Result<LinkInfo> {
        self.netlink(|netlink| netlink.link_by_index(index))
    }
}

/// A veth pair between two hosts, both ends up.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The end in the first host.
    pub a: Endpoint,
    /// The end in the second host.
    pub b: Endpoint,
}

impl Veth {
    /// Creates a veth pair with `queues` RX/TX queues per end, end `a` in
    /// host `a` and end `b` in host `b`, and sets both up. Dropped with the
    /// hosts' namespaces.
    pub fn new(a: &Host, b: &Host, queues: u32) -> io::Result<Self> {
        let base = unique_name();
        let (name_a, name_b) = (format!("{base}a"), format!("{base}b"));
        let peer_netns = b.netns.as_fd();
        let a_end = a.netlink(|netlink| {
            netlink.create_veth(&name_a, &name_b, queues, Some(peer_netns))?;
            let info = netlink.link_by_name(&name_a)?;
            netlink.set_up(info.index)?;
            endpoint(info)
        })?;
        let b_end = b.netlink(|netlink| {
            let info = netlink.link_by_name(&name_b)?;
            netlink.set_up(info.index)?;
            endpoint(info)
        })?;
        Ok(Self { a: a_end, b: b_end })
    }
}

fn endpoint(info: LinkInfo) -> io::Result<Endpoint> {
    let mac: [u8; 6] = info
        .mac
        .as_slice()
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "veth without a 6-byte MAC"))?;
    Ok(Endpoint {
        name: info.name,
        index: info.index,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_an_ifname_with_a_suffix() {
        let names: Vec<String> = (0..2000).map(|_| unique_name()).collect();
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(names.iter().all(|name| name.len() + 3 <= 15), "{names:?}");
    }
}
