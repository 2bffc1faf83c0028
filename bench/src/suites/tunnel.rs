//! `tunnel`: site to site through real gateways, every implementation in the same lab and the
//! same run. Four namespaces joined by veth:
//!
//! ```text
//!   client 10.230.1.2 ── 10.230.1.1 gw A 10.230.2.1 ══ WAN ══ 10.230.2.2 gw B 10.230.3.1 ── 10.230.3.2 server
//! ```
//!
//! The client routes the server's LAN via gw A, the server routes the client's LAN via gw B;
//! both gateways forward. What carries 10.230.1.0/24 <-> 10.230.3.0/24 between A and B is the
//! variant under test, brought up for its turn and torn down after it:
//!
//! - `plain`: kernel forwarding, no tunnel (routes via the WAN): the ceiling of this lab;
//! - `warpline-*`: `warpline up` on both gateways, TUN inner side; kernel UDP socket
//!   (portable mode) or `Attach = <WAN veth>` (XDP/AF_XDP workers, native XDP), with
//!   ChaCha20-Poly1305 or the AES-256-GCM suite (`Cipher = aes256gcm`);
//! - `warpline-full-bypass`: AF_XDP on both sides (`Attach = <WAN veth>`, `Inner = <LAN
//!   veth>`), no TUN copy; ChaCha20-Poly1305. For its turn the end hosts compute their own
//!   TCP/UDP checksums (TX checksum offload off on their veths: AF_XDP passes frames as they
//!   are, and a veth peer leaves checksums for hardware that never runs; hosts behind a real
//!   wire always send full ones). Its config goes through `warpline check-config` first; a
//!   binary that refuses it makes the suite print `full bypass: not available (<why>)`;
//! - `boringtun-1`, `boringtun-4`: the stock boringtun-cli 0.7.1 with 1 and 4 threads,
//!   configured with `wg setconf`;
//! - `openvpn-aes`, `openvpn-chacha`: OpenVPN 2.6 (Debian's, userspace: `disable-dco`), p2p
//!   TLS mode with `data-ciphers AES-256-GCM` or `CHACHA20-POLY1305`, self-signed EC
//!   certificates made with `openssl` at run time and pinned with `peer-fingerprint`.
//!
//! For each variant, client to server: iperf3 TCP with 1 and 4 streams; iperf3 UDP flood
//! (`-b 0`) with 64 B and 1400 B IP packets, reported as packets/s received; and during the
//! 1-stream TCP test a paced UDP probe (one 16-byte echo per millisecond to the server) whose
//! round-trip times go into an HDR histogram (p50, p99, p99.9). Variants are interleaved run by
//! run; the figures are medians over runs and each ratio is the median of the per-run ratios
//! (both sides measured in the same run).
//!
//! The end hosts' TCP congestion control is set in their namespaces (CUBIC, Linux's default,
//! unless `--congestion` names another) rather than inherited from the host's sysctl, so a
//! host configured for BBR does not silently change every TCP figure.
//!
//! Percentiles come from `hdrhistogram` (a bench-only dependency): fixed memory, three
//! significant digits from 1 us to 60 s, and exact enough at p99.9 for a few thousand samples,
//! where sorting a vector would do too but a histogram also merges and bounds memory for long
//! `--seconds`.
//!
//! Needs root, iperf3, boringtun-cli, wg, openvpn and openssl (`cargo xtask bench tunnel`
//! installs what is missing) and the `warpline` binary beside this one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use warpline_control::doctor::sys::ethtool::EthtoolSocket;
use warpline_control::keys::{PrivateKey, PublicKey};
use warpline_dataplane::lab::{Host, NetNs, Veth, require_root, unique_name};

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{self, Row, machine, median};

/// Command-line options of the suite.
#[derive(Debug, Default)]
pub struct Options {
    /// Seconds per iperf3 test (default 2, 1 with `--quick`).
    pub seconds: Option<f64>,
    /// Runs; figures are medians over them (default 3, 1 with `--quick`).
    pub runs: Option<usize>,
    /// Only these variants (default all).
    pub variants: Option<Vec<String>>,
    /// The end hosts' TCP congestion control (default [`DEFAULT_CONGESTION`]).
    pub congestion: Option<String>,
    /// A short run for smoke tests.
    pub quick: bool,
}

/// The end hosts' TCP congestion control unless `--congestion` names another: Linux's own
/// default, so the figures do not depend on the sysctl of the machine the suite runs on (new
/// namespaces inherit the host's choice, and a host set to BBR paces a stream that CUBIC
/// would not).
pub(super) const DEFAULT_CONGESTION: &str = "cubic";

const CLIENT: &str = "10.230.1.2";
const A_LAN: &str = "10.230.1.1";
pub(super) const A_WAN: &str = "10.230.2.1";
pub(super) const B_WAN: &str = "10.230.2.2";
const B_LAN: &str = "10.230.3.1";
const SERVER: &str = "10.230.3.2";
const CLIENT_NET: &str = "10.230.1.0";
const SERVER_NET: &str = "10.230.3.0";
/// Tunnel addresses of gw A and gw B (warpline, boringtun and OpenVPN alike).
const A_INNER: &str = "10.231.0.1";
const B_INNER: &str = "10.231.0.2";
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 9100;
pub(super) const WG_PORT: u16 = 51820;
const OVPN_PORT: u16 = 1194;
/// WireGuard's usual inner MTU, for boringtun's TUN (warpline's default is the same).
const WG_MTU: u32 = 1420;
/// One latency probe per this long.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);
/// UDP tests: IP packet sizes (iperf3 payload = size - 28).
const UDP_SIZES: [usize; 2] = [64, 1400];
/// Issue targets: TCP against boringtun-cli and OpenVPN, UDP 1400 B against plain forwarding.
const TARGET_TCP_X: f64 = 5.0;
const TARGET_UDP_X_PLAIN: f64 = 0.7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cipher {
    ChaCha,
    Aes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    /// `xdp`: gw A attaches its WAN veth; `xdp_b`: gw B does too (both, in this suite).
    Warpline {
        cipher: Cipher,
        xdp: bool,
        xdp_b: bool,
    },
    FullBypass,
    Boringtun {
        threads: u32,
    },
    OpenVpn {
        cipher: Cipher,
    },
}

#[derive(Debug)]
pub(super) struct Variant {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

pub(super) const VARIANTS: [Variant; 10] = [
    Variant {
        name: "plain",
        kind: Kind::Plain,
    },
    Variant {
        name: "warpline-chacha",
        kind: Kind::Warpline {
            cipher: Cipher::ChaCha,
            xdp: false,
            xdp_b: false,
        },
    },
    Variant {
        name: "warpline-aes",
        kind: Kind::Warpline {
            cipher: Cipher::Aes,
            xdp: false,
            xdp_b: false,
        },
    },
    Variant {
        name: "warpline-xdp-chacha",
        kind: Kind::Warpline {
            cipher: Cipher::ChaCha,
            xdp: true,
            xdp_b: true,
        },
    },
    Variant {
        name: "warpline-xdp-aes",
        kind: Kind::Warpline {
            cipher: Cipher::Aes,
            xdp: true,
            xdp_b: true,
        },
    },
    Variant {
        name: "warpline-full-bypass",
        kind: Kind::FullBypass,
    },
    Variant {
        name: "boringtun-1",
        kind: Kind::Boringtun { threads: 1 },
    },
    Variant {
        name: "boringtun-4",
        kind: Kind::Boringtun { threads: 4 },
    },
    Variant {
        name: "openvpn-aes",
        kind: Kind::OpenVpn {
            cipher: Cipher::Aes,
        },
    },
    Variant {
        name: "openvpn-chacha",
        kind: Kind::OpenVpn {
            cipher: Cipher::ChaCha,
        },
    },
];

/// What one variant measured in one run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    /// iperf3 TCP received bit/s with 1 and 4 streams.
    tcp: [f64; 2],
    /// UDP packets/s received at each of `UDP_SIZES`.
    udp: [f64; 2],
    /// Probe round trips during the 1-stream TCP test: p50, p99, p99.9 in microseconds.
    latency: [f64; 3],
    /// Probes lost, as a fraction of those sent.
    probe_loss: f64,
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().expect("a literal address")
}

pub fn run(options: &Options) -> Result<(), String> {
    require_root()?;
    let (seconds, runs) =
        seconds_and_runs("tunnel", options.seconds, options.runs, options.quick, 2.0)?;
    let chosen: Vec<&Variant> = match &options.variants {
        None => VARIANTS.iter().collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                VARIANTS.iter().find(|v| v.name == name).ok_or_else(|| {
                    format!(
                        "tunnel: unknown variant '{name}' (variants: {})",
                        VARIANTS.map(|v| v.name).join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let tools = Tools::find(&chosen)?;
    let congestion = options.congestion.as_deref().unwrap_or(DEFAULT_CONGESTION);

    println!(
        "tunnel: {} variants x {runs} run(s), {seconds} s per iperf3 test; {}",
        chosen.len(),
        machine()
    );
    println!("  tools: {}", tools.versions());
    println!("  {}", congestion_note(congestion));
    println!("  load average at start: {}", load_average());
    match udp_buffer_capped() {
        None => println!(
            "  UDP tests: {} MiB socket buffers (iperf3 -w)",
            UDP_SOCKET_BUFFER >> 20
        ),
        Some(max) => println!(
            "  UDP tests: socket buffers capped at net.core.rmem_max = {max} bytes, below \
             {} MiB: a starved receiver overflows sooner, UDP figures run low",
            UDP_SOCKET_BUFFER >> 20
        ),
    }
    let lab = Lab::new(congestion).map_err(|e| format!("tunnel lab: {e}"))?;
    let dir = TempDir::new()?;
    let certs = if chosen
        .iter()
        .any(|v| matches!(v.kind, Kind::OpenVpn { .. }))
    {
        Some(OpenVpnCerts::make(&tools, &dir.0)?)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let _echo = EchoServer::start(&lab.server, Arc::clone(&stop))?;
    let mut iperf_server = iperf_server(&lab, &tools, &dir)?;

    // [run][variant]: measured, or why not.
    let mut results: Vec<Vec<Result<Measured, String>>> = Vec::new();
    let mut unavailable: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut progress = Progress::new("tunnel", runs * chosen.len() * 4);
    for run in 0..runs {
        let mut row = Vec::new();
        for variant in &chosen {
            if let Some(reason) = unavailable.get(variant.name) {
                row.push(Err(reason.clone()));
                progress.step(format!(
                    "run {}/{runs} {}: not available",
                    run + 1,
                    variant.name
                ));
                continue;
            }
            progress.step(format!("run {}/{runs} {}: starting", run + 1, variant.name));
            let outcome = bring_up(&lab, &tools, &dir.0, certs.as_ref(), variant.kind);
            let measured = match outcome {
                Ok(Up::Running(mut running)) => {
                    let measured = measure(
                        &lab,
                        &tools,
                        seconds,
                        &mut progress,
                        run,
                        runs,
                        variant.name,
                        &mut iperf_server,
                    );
                    // After a failed test, whether the tunnel still carries anything tells a
                    // stuck tool from a stuck data path.
                    let measured = measured.map_err(|e| {
                        let after = match wait_ready(&lab, &mut running, Duration::from_secs(2)) {
                            Ok(()) => "afterwards UDP echoes still pass".to_owned(),
                            Err(why) => format!("afterwards: {why}"),
                        };
                        let mut message =
                            format!("{e} ({after}){}", running.counters(&tools.warpline));
                        if std::env::var_os("WARPLINE_BENCH_DEBUG").is_some() {
                            for (label, host) in [("gw A", &lab.a), ("gw B", &lab.b)] {
                                let links = run_in(host.netns(), &tools.ip, &["-s", "link"]);
                                let _ = write!(
                                    message,
                                    "\n--- {label}: ip -s link\n{}",
                                    links.unwrap_or_else(|e| e)
                                );
                            }
                            for (label, host) in [("client", &lab.client), ("server", &lab.server)]
                            {
                                let sockets = run_in(host.netns(), Path::new("ss"), &["-tinu"]);
                                let _ = write!(
                                    message,
                                    "\n--- {label}: ss -tinu\n{}",
                                    sockets.unwrap_or_else(|e| e)
                                );
                            }
                        }
                        message
                    });
                    // Checks that the variant's processes survived, then tears it down.
                    let alive = running.check();
                    measured.and_then(|m| alive.map(|()| m))
                }
                Ok(Up::Unavailable(reason)) => {
                    println!("  {}: not available ({reason})", variant.name);
                    unavailable.insert(variant.name, reason.clone());
                    Err(reason)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &measured
                && !unavailable.contains_key(variant.name)
            {
                eprintln!("\n  {} (run {}): {e}", variant.name, run + 1);
            }
            row.push(measured);
        }
        results.push(row);
    }
    progress.finish();
    println!("  load average at the end: {}", load_average());
    stop.store(true, Ordering::Relaxed);
    drop(iperf_server);
    publish(&chosen, &results, &unavailable, seconds, runs, congestion)?;
    let failed: Vec<&str> = chosen
        .iter()
        .enumerate()
        .filter(|(i, v)| {
            !unavailable.contains_key(v.name) && results.iter().any(|run| run[*i].is_err())
        })
        .map(|(_, v)| v.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tunnel: some runs failed: {} (see the messages above)",
            failed.join(", ")
        ))
    }
}

/// `--seconds` (whole seconds per iperf3 test, `default` unless `quick`, then 1) and `--runs`
/// (3, or 1 with `quick`), checked; errors name `suite`.
pub(super) fn seconds_and_runs(
    suite: &str,
    seconds: Option<f64>,
    runs: Option<usize>,
    quick: bool,
    default: f64,
) -> Result<(u32, usize), String> {
    let seconds = seconds.unwrap_or(if quick { 1.0 } else { default });
    if !((1.0..=600.0).contains(&seconds) && seconds.fract() == 0.0) {
        return Err(format!(
            "{suite}: --seconds {seconds}: give whole seconds from 1 to 600 (iperf3 -t)"
        ));
    }
    let runs = runs.unwrap_or(if quick { 1 } else { 3 });
    if !(1..=50).contains(&runs) {
        return Err(format!("{suite}: --runs {runs}: give 1 to 50"));
    }
    Ok((seconds as u32, runs))
}

/// The iperf3 server on the server host, logging into `dir`.
pub(super) fn iperf_server(lab: &Lab, tools: &Tools, dir: &TempDir) -> Result<Proc, String> {
    let mut command = lab.server.netns().command(&tools.iperf3);
    command.args(["-s", "-B", SERVER, "-p", &IPERF_PORT.to_string()]);
    Proc::spawn(command, "iperf3 server", &dir.0.join("iperf3-server.log"))
}

// --- tools ----------------------------------------------------------------------------------

/// The external programs the variants use.
#[derive(Debug)]
pub(super) struct Tools {
    warpline: PathBuf,
    pub(super) iperf3: PathBuf,
    ip: PathBuf,
    boringtun: Option<PathBuf>,
    wg: Option<PathBuf>,
    openvpn: Option<PathBuf>,
    openssl: Option<PathBuf>,
}

const INSTALL_HINT: &str = "`cargo xtask bench tunnel` installs it";

impl Tools {
    pub(super) fn find(chosen: &[&Variant]) -> Result<Self, String> {
        let need = |program: &str, from: &str| {
            find_tool(program)
                .ok_or_else(|| format!("tunnel: {program} ({from}) is missing: {INSTALL_HINT}"))
        };
        let uses = |pred: fn(&Kind) -> bool| chosen.iter().any(|v| pred(&v.kind));
        let boringtun = uses(|k| matches!(k, Kind::Boringtun { .. }));
        let openvpn = uses(|k| matches!(k, Kind::OpenVpn { .. }));
        if boringtun && !Path::new("/dev/net/tun").exists() {
            return Err("tunnel: /dev/net/tun is missing (modprobe tun)".into());
        }
        Ok(Self {
            warpline: warpline_binary()?,
            iperf3: need("iperf3", "apt iperf3")?,
            ip: need("ip", "apt iproute2")?,
            boringtun: boringtun
                .then(|| {
                    need(
                        "boringtun-cli",
                        "cargo install boringtun-cli --version 0.7.1",
                    )
                })
                .transpose()?,
            wg: boringtun
                .then(|| need("wg", "apt wireguard-tools"))
                .transpose()?,
            openvpn: openvpn
                .then(|| need("openvpn", "apt openvpn"))
                .transpose()?,
            openssl: openvpn
                .then(|| need("openssl", "apt openssl"))
                .transpose()?,
        })
    }

    /// The first line of each tool's `--version`, for the conditions beside the figures.
    pub(super) fn versions(&self) -> String {
        let version = |path: &Path| {
            let output = Command::new(path).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            text.lines().next().map(|line| line.trim().to_owned())
        };
        [
            Some(&self.iperf3),
            self.boringtun.as_ref(),
            self.openvpn.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|path| version(path))
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// `/proc/loadavg`'s 1, 5 and 15-minute figures: on a shared machine, how busy it was.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// `program` on `PATH` or in cargo's install directory (where boringtun-cli goes).
fn find_tool(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The `warpline` binary in the same directory as this one.
fn warpline_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| format!("tunnel: where am I: {e}"))?;
    let binary = here.with_file_name("warpline");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "tunnel needs {} (`cargo xtask bench tunnel` builds it; or `cargo build --profile \
             bench -p warpline-control`)",
            binary.display()
        ))
    }
}

// --- the lab --------------------------------------------------------------------------------

/// The four hosts and three links; namespaces (and every link and process route in them) go
/// away when this is dropped, after the processes, which are dropped first.
pub(super) struct Lab {
    client: Host,
    a: Host,
    pub(super) b: Host,
    pub(super) server: Host,
    /// gw A's end of the WAN link (gw B's is `wan_b`).
    wan_a: String,
    pub(super) wan_b: String,
    /// The gateways' LAN ends, for the full-bypass slot.
    lan_a: String,
    lan_b: String,
    /// The client's and the server's ends of their LAN links.
    client_end: String,
    server_end: String,
}

impl Lab {
    /// The lab, its end hosts' TCP using the `congestion` algorithm.
    pub(super) fn new(congestion: &str) -> Result<Self, String> {
        let lab = Self::build().map_err(|e| e.to_string())?;
        for host in [&lab.client, &lab.server] {
            set_congestion(host, congestion)?;
        }
        Ok(lab)
    }

    fn build() -> std::io::Result<Self> {
        let client = Host::new("tc")?;
        let a = Host::new("ta")?;
        let b = Host::new("tb")?;
        let server = Host::new("ts")?;
        // Two queues everywhere: the XDP variants run one AF_XDP worker per WAN queue, and
        // full bypass binds the same queue numbers on the LAN.
        let lan_a = Veth::new(&client, &a, 2)?;
        let wan = Veth::new(&a, &b, 2)?;
        let lan_b = Veth::new(&b, &server, 2)?;
        client.add_address(&lan_a.a, ip(CLIENT), 24)?;
        a.add_address(&lan_a.b, ip(A_LAN), 24)?;
        a.add_address(&wan.a, ip(A_WAN), 24)?;
        b.add_address(&wan.b, ip(B_WAN), 24)?;
        b.add_address(&lan_b.a, ip(B_LAN), 24)?;
        server.add_address(&lan_b.b, ip(SERVER), 24)?;
        client.netlink(|n| n.add_route_via(ip(SERVER_NET), 24, ip(A_LAN)))?;
        server.netlink(|n| n.add_route_via(ip(CLIENT_NET), 24, ip(B_LAN)))?;
        for gateway in [&a, &b] {
            gateway.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))?;
        }
        Ok(Self {
            client,
            a,
            b,
            server,
            wan_a: wan.a.name,
            wan_b: wan.b.name,
            lan_a: lan_a.b.name,
            lan_b: lan_b.a.name,
            client_end: lan_a.a.name,
            server_end: lan_b.b.name,
        })
    }
}

/// Sets the TCP congestion control of `host`'s namespace (the kernel loads its module if it
/// is built as one).
fn set_congestion(host: &Host, congestion: &str) -> Result<(), String> {
    const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
    host.run(|| std::fs::write(SYSCTL, congestion))
        .map_err(|e| {
            let available =
                std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
                    .unwrap_or_default();
            format!(
                "--congestion {congestion}: the kernel refused it ({e}); loaded now: {}",
                available.trim()
            )
        })
}

/// The header line naming the end hosts' congestion control and the host's own.
pub(super) fn congestion_note(congestion: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    format!(
        "TCP congestion control of the end hosts: {congestion} (--congestion; this host's \
         default: {host})"
    )
}

/// A scratch directory (configs, keys, logs), removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("warpline-tunnel-{}", unique_name()));
        std::fs::create_dir_all(&path).map_err(|e| format!("tunnel: temp dir: {e}"))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a root-only file (configs and keys).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).map_err(|e| format!("tunnel: write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("tunnel: chmod {}: {e}", path.display()))
}

/// A background process with its log, killed and reaped on drop; `cleanup` files are removed
/// then.
pub(super) struct Proc {
    pub(super) child: Child,
    label: String,
    log: PathBuf,
    cleanup: Vec<PathBuf>,
    /// warpline's interface name and control socket, for `warpline show`.
    control: Option<(String, PathBuf)>,
}

impl Proc {
    /// Starts `command` with stdout and stderr into `log`.
    pub(super) fn spawn(mut command: Command, label: &str, log: &Path) -> Result<Self, String> {
        let file = std::fs::File::create(log)
            .map_err(|e| format!("tunnel: log {}: {e}", log.display()))?;
        let copy = file
            .try_clone()
            .map_err(|e| format!("tunnel: log {}: {e}", log.display()))?;
        let child = command
            .stdout(Stdio::from(copy))
            .stderr(Stdio::from(file))
            .spawn()
            .map_err(|e| format!("tunnel: start {label}: {e}"))?;
        Ok(Self {
            child,
            label: label.to_owned(),
            log: log.to_owned(),
            cleanup: Vec::new(),
            control: None,
        })
    }

    /// `Err` with the end of its log if the process has exited.
    pub(super) fn check(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}): {}",
                self.label,
                self.log_tail()
            )),
            Err(e) => Err(format!("{}: {e}", self.label)),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// Waits until `done()` while the process runs; `Err` naming `what` after `timeout`.
    fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !done() {
            self.check()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{}: no {what} after {timeout:?}: {}",
                    self.label,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for path in &self.cleanup {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs `program args` inside `netns` to completion; `Err` with its output if it fails.
fn run_in(netns: &NetNs, program: &Path, args: &[&str]) -> Result<String, String> {
    let output = netns
        .command(program)
        .args(args)
        .output()
        .map_err(|e| format!("tunnel: run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{} {}` failed ({}): {}{}",
            program.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

// --- variants -------------------------------------------------------------------------------

/// A variant brought up: its processes (killed on drop, which takes their TUN devices and
/// routes with them) and routes of its own to delete.
pub(super) struct Running<'a> {
    pub(super) procs: Vec<Proc>,
    /// (host, destination/len) routes added by hand, deleted on drop.
    routes: Vec<(&'a Host, String)>,
    /// (host, NIC) whose TX checksum offload was turned off, turned back on on drop.
    offloads_off: Vec<(&'a Host, &'a str)>,
    ip: &'a Path,
    /// gw A's WireGuard public key, for the variants that have one.
    pub(super) gateway_a_key: Option<PublicKey>,
}

impl Running<'_> {
    /// The warpline gateways' non-zero drop reasons and worker counters (`warpline show
    /// --json`), one line each, for the message of a failed test.
    fn counters(&self, warpline: &Path) -> String {
        let mut text = String::new();
        for proc in &self.procs {
            let Some((name, socket)) = &proc.control else {
                continue;
            };
            let output = Command::new(warpline)
                .args(["show", name, "--json", "--control-socket"])
                .arg(socket)
                .output();
            let Some(shown) = output
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            else {
                let _ = write!(text, "\n    {}: no `warpline show`", proc.label);
                continue;
            };
            let _ = write!(text, "\n    {}:", proc.label);
            for worker in shown["workers"].as_array().into_iter().flatten() {
                let pairs = ["drops", "counters"].into_iter().flat_map(|key| {
                    worker[key]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                });
                let non_zero: Vec<String> = pairs
                    .filter(|pair| pair[1].as_u64().is_some_and(|n| n > 0))
                    .map(|pair| format!("{}={}", pair[0].as_str().unwrap_or("?"), pair[1]))
                    .collect();
                let _ = write!(
                    text,
                    " [worker {} rx {} tx {} {}]",
                    worker["id"],
                    worker["rx_packets"],
                    worker["tx_packets"],
                    non_zero.join(" ")
                );
            }
        }
        text
    }

    pub(super) fn check(mut self) -> Result<(), String> {
        for proc in &mut self.procs {
            proc.check()?;
        }
        Ok(())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        for (host, route) in &self.routes {
            let _ = run_in(host.netns(), self.ip, &["route", "del", route]);
        }
        // Processes go before the next variant starts (TUN names, ports, sockets).
        self.procs.clear();
        for (host, nic) in &self.offloads_off {
            let _ = set_tx_checksum_offload(host, nic, true);
        }
    }
}

/// TX checksum offload (`tx-checksum-ip-generic`, which TSO depends on) of a host's veth.
fn set_tx_checksum_offload(host: &Host, nic: &str, on: bool) -> std::io::Result<()> {
    host.run(|| {
        EthtoolSocket::open()
            .and_then(|ethtool| ethtool.set_features(nic, &["tx-checksum-ip-generic"], on))
    })
}

pub(super) enum Up<'a> {
    Running(Running<'a>),
    Unavailable(String),
}

pub(super) fn bring_up<'a>(
    lab: &'a Lab,
    tools: &'a Tools,
    dir: &Path,
    certs: Option<&OpenVpnCerts>,
    kind: Kind,
) -> Result<Up<'a>, String> {
    let mut running = Running {
        procs: Vec::new(),
        routes: Vec::new(),
        offloads_off: Vec::new(),
        ip: &tools.ip,
        gateway_a_key: None,
    };
    match kind {
        Kind::Plain => {
            lab.a
                .netlink(|n| n.add_route_via(ip(SERVER_NET), 24, ip(B_WAN)))
                .map_err(|e| format!("plain: route on gw A: {e}"))?;
            running.routes.push((&lab.a, format!("{SERVER_NET}/24")));
            lab.b
                .netlink(|n| n.add_route_via(ip(CLIENT_NET), 24, ip(A_WAN)))
                .map_err(|e| format!("plain: route on gw B: {e}"))?;
            running.routes.push((&lab.b, format!("{CLIENT_NET}/24")));
        }
        Kind::Warpline { cipher, xdp, xdp_b } => {
            let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
            running.gateway_a_key = Some(key_a.public_key());
            let attach = |nic: &str, on: bool| {
                if on {
                    format!("Attach = {nic}\nXdpMode = native\n")
                } else {
                    String::new()
                }
            };
            let config_a = warpline_config(&key_a, &key_b, cipher, &attach(&lab.wan_a, xdp), true);
            let config_b =
                warpline_config(&key_b, &key_a, cipher, &attach(&lab.wan_b, xdp_b), false);
            running
                .procs
                .push(warpline_up(&lab.a, tools, dir, "a", &config_a)?);
            running
                .procs
                .push(warpline_up(&lab.b, tools, dir, "b", &config_b)?);
        }
        Kind::FullBypass => {
            let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
            running.gateway_a_key = Some(key_a.public_key());
            let config_a = full_bypass_config(&key_a, &key_b, lab, true);
            let config_b = full_bypass_config(&key_b, &key_a, lab, false);
            let path = dir.join(format!("{}fb.conf", unique_name()));
            write_private(&path, &config_a)?;
            let output = Command::new(&tools.warpline)
                .arg("check-config")
                .arg(&path)
                .output()
                .map_err(|e| format!("tunnel: warpline check-config: {e}"))?;
            if !output.status.success() {
                let text = String::from_utf8_lossy(&output.stderr).into_owned()
                    + &String::from_utf8_lossy(&output.stdout);
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|line| !line.is_empty())
                    .unwrap_or("refused without a message");
                return Ok(Up::Unavailable(format!(
                    "warpline check-config: {}",
                    refusal_reason(line)
                )));
            }
            for (host, nic) in [
                (&lab.client, &lab.client_end),
                (&lab.server, &lab.server_end),
            ] {
                set_tx_checksum_offload(host, nic, false)
                    .map_err(|e| format!("full bypass: checksum offload off on {nic}: {e}"))?;
                running.offloads_off.push((host, nic.as_str()));
            }
            // Accepted: run it. A failure to come up is reported as the slot's reason, not as
            // a failure of the suite.
            let started = warpline_up(&lab.a, tools, dir, "a", &config_a)
                .and_then(|a| Ok((a, warpline_up(&lab.b, tools, dir, "b", &config_b)?)));
            match started {
                Ok((a, b)) => running.procs.extend([a, b]),
                Err(e) => return Ok(Up::Unavailable(format!("accepted, but: {e}"))),
            }
        }
        Kind::Boringtun { threads } => {
            let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
            running.gateway_a_key = Some(key_a.public_key());
            running.procs.push(boringtun_up(
                lab, tools, dir, threads, &key_a, &key_b, true,
            )?);
            running.procs.push(boringtun_up(
                lab, tools, dir, threads, &key_b, &key_a, false,
            )?);
        }
        Kind::OpenVpn { cipher } => {
            let certs = certs.ok_or("tunnel: OpenVPN certificates were not made")?;
            running
                .procs
                .push(openvpn_up(lab, tools, dir, certs, cipher, true)?);
            running
                .procs
                .push(openvpn_up(lab, tools, dir, certs, cipher, false)?);
            let (a, b) = (
                running.procs[0].label.clone(),
                running.procs[1].label.clone(),
            );
            let (a_log, b_log) = (running.procs[0].log.clone(), running.procs[1].log.clone());
            for (i, log) in [a_log, b_log].iter().enumerate() {
                running.procs[i].wait_until(
                    "\"Initialization Sequence Completed\"",
                    Duration::from_secs(20),
                    || {
                        std::fs::read_to_string(log)
                            .is_ok_and(|t| t.contains("Initialization Sequence Completed"))
                    },
                )?;
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let expected = format!("Data Channel: cipher '{}'", openvpn_cipher(cipher));
                if !text.contains(&expected) {
                    return Err(format!(
                        "{}: the data channel did not agree on {}",
                        [&a, &b][i],
                        openvpn_cipher(cipher)
                    ));
                }
            }
            // Routes into the tunnel, added once the TUN is configured.
            for (host, name, net) in [(&lab.a, &a, SERVER_NET), (&lab.b, &b, CLIENT_NET)] {
                let ifname = name.rsplit(' ').next().unwrap_or_default().to_owned();
                host.netlink(move |n| {
                    let index = n.link_by_name(&ifname)?.index;
                    n.add_route(index, ip(net), 24)
                })
                .map_err(|e| format!("{name}: route into the tunnel: {e}"))?;
            }
        }
    }
    wait_ready(lab, &mut running, Duration::from_secs(20))?;
    Ok(Up::Running(running))
}

/// A site-to-site warpline config for gw A (`is_a`) or gw B.
fn warpline_config(
    key: &PrivateKey,
    peer: &PrivateKey,
    cipher: Cipher,
    attach: &str,
    is_a: bool,
) -> String {
    let (inner, peer_inner, peer_wan, remote_net) = if is_a {
        (A_INNER, B_INNER, B_WAN, SERVER_NET)
    } else {
        (B_INNER, A_INNER, A_WAN, CLIENT_NET)
    };
    let cipher = match cipher {
        Cipher::ChaCha => "",
        Cipher::Aes => "Cipher = aes256gcm\n",
    };
    format!(
        "[Interface]\nPrivateKey = {}\nListenPort = {WG_PORT}\nAddress = {inner}/32\n{attach}\n\
         [Peer]\nPublicKey = {}\nEndpoint = {peer_wan}:{WG_PORT}\n\
         AllowedIPs = {peer_inner}/32, {remote_net}/24\n{cipher}",
        key.to_base64(),
        peer.public_key().to_base64()
    )
}

/// The full-bypass variant: AF_XDP on the LAN side as well as the WAN (`Inner`).
fn full_bypass_config(key: &PrivateKey, peer: &PrivateKey, lab: &Lab, is_a: bool) -> String {
    let (wan, lan) = if is_a {
        (&lab.wan_a, &lab.lan_a)
    } else {
        (&lab.wan_b, &lab.lan_b)
    };
    let attach = format!("Attach = {wan}\nInner = {lan}\nXdpMode = native\n");
    warpline_config(key, peer, Cipher::ChaCha, &attach, is_a)
}

/// The heart of a config error line: without the temporary file's path (`warpline:
/// /tmp/...conf:7: `) and the list of valid keys that follows an unknown key.
fn refusal_reason(line: &str) -> &str {
    let line = line.split("; valid keys").next().unwrap_or(line);
    match line.find(".conf:") {
        Some(at) => line[at + ".conf:".len()..]
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == ' '),
        None => line,
    }
}

/// Starts `warpline up` in `host` and waits for its control socket.
fn warpline_up(
    host: &Host,
    tools: &Tools,
    dir: &Path,
    label: &str,
    config: &str,
) -> Result<Proc, String> {
    let name = format!("{}{label}", unique_name());
    let path = dir.join(format!("{name}.conf"));
    write_private(&path, config)?;
    let socket = dir.join(format!("{name}.sock"));
    let mut command = host.netns().command(&tools.warpline);
    command
        .arg("up")
        .arg(&path)
        .arg("--control-socket")
        .arg(&socket);
    let mut proc = Proc::spawn(
        command,
        &format!("warpline up ({label})"),
        &dir.join(format!("{name}.log")),
    )?;
    proc.wait_until("control socket", Duration::from_secs(15), || {
        socket.exists()
    })?;
    proc.control = Some((name, socket));
    Ok(proc)
}

/// Starts boringtun-cli on gw A (`is_a`) or gw B, gives its TUN the tunnel address, MTU and
/// routes over netlink, and configures it with `wg setconf`.
fn boringtun_up(
    lab: &Lab,
    tools: &Tools,
    dir: &Path,
    threads: u32,
    key: &PrivateKey,
    peer: &PrivateKey,
    is_a: bool,
) -> Result<Proc, String> {
    let (host, inner, peer_inner, peer_wan, remote_net) = if is_a {
        (&lab.a, A_INNER, B_INNER, B_WAN, SERVER_NET)
    } else {
        (&lab.b, B_INNER, A_INNER, A_WAN, CLIENT_NET)
    };
    let boringtun = tools.boringtun.as_ref().ok_or("boringtun-cli not found")?;
    let wg = tools.wg.as_ref().ok_or("wg not found")?;
    let ifname = format!("{}w", unique_name());
    let mut command = host.netns().command(boringtun);
    command
        .args([
            "--foreground",
            "--threads",
            &threads.to_string(),
            "--disable-drop-privileges",
            "--verbosity",
            "error",
            &ifname,
        ])
        .env("WG_SUDO", "1");
    let socket = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    let mut proc = Proc::spawn(
        command,
        &format!("boringtun-cli {ifname}"),
        &dir.join(format!("{ifname}.log")),
    )?;
    proc.cleanup.push(socket.clone());
    proc.wait_until("control socket", Duration::from_secs(10), || {
        socket.exists()
    })?;
    let name = ifname.clone();
    host.netlink(move |n| {
        let index = n.link_by_name(&name)?.index;
        n.set_mtu(index, WG_MTU)?;
        n.add_address(index, ip(inner), 32)?;
        n.set_up(index)?;
        n.add_route(index, ip(peer_inner), 32)?;
        n.add_route(index, ip(remote_net), 24)
    })
    .map_err(|e| format!("boringtun TUN {ifname}: {e}"))?;
    let config = dir.join(format!("{ifname}.conf"));
    write_private(
        &config,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = {WG_PORT}\n\n[Peer]\nPublicKey = {}\n\
             Endpoint = {peer_wan}:{WG_PORT}\nAllowedIPs = {peer_inner}/32, {remote_net}/24\n",
            key.to_base64(),
            peer.public_key().to_base64()
        ),
    )?;
    let config = config.to_str().ok_or("temp path is not UTF-8")?;
    run_in(host.netns(), wg, &["setconf", &ifname, config])?;
    proc.check()?;
    Ok(proc)
}

/// Self-signed EC certificates for the two OpenVPN gateways, pinned by fingerprint
/// (`peer-fingerprint`, OpenVPN 2.6), made once per run with `openssl`.
#[derive(Debug)]
pub(super) struct OpenVpnCerts {
    /// (certificate, key, SHA-256 fingerprint) of gw A and gw B.
    sides: [(PathBuf, PathBuf, String); 2],
}

impl OpenVpnCerts {
    fn make(tools: &Tools, dir: &Path) -> Result<Self, String> {
        let openssl = tools.openssl.as_ref().ok_or("openssl not found")?;
        let side = |name: &str| -> Result<(PathBuf, PathBuf, String), String> {
            let (cert, key) = (
                dir.join(format!("ovpn-{name}.crt")),
                dir.join(format!("ovpn-{name}.key")),
            );
            let made = Command::new(openssl)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=warpline-bench-{name}"),
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .map_err(|e| format!("tunnel: openssl: {e}"))?;
            if !made.status.success() {
                return Err(format!(
                    "tunnel: openssl req failed: {}",
                    String::from_utf8_lossy(&made.stderr)
                ));
            }
            let fingerprint = Command::new(openssl)
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                .arg(&cert)
                .output()
                .map_err(|e| format!("tunnel: openssl: {e}"))?;
            let text = String::from_utf8_lossy(&fingerprint.stdout);
            let value = text
                .trim()
                .split_once('=')
                .map(|(_, v)| v.to_owned())
                .ok_or_else(|| format!("tunnel: no fingerprint in openssl's output: {text}"))?;
            Ok((cert, key, value))
        };
        Ok(Self {
            sides: [side("a")?, side("b")?],
        })
    }
}

fn openvpn_cipher(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::ChaCha => "CHACHA20-POLY1305",
        Cipher::Aes => "AES-256-GCM",
    }
}

/// Starts OpenVPN on gw A (TLS server) or gw B (TLS client), p2p, userspace data channel.
fn openvpn_up(
    lab: &Lab,
    tools: &Tools,
    dir: &Path,
    certs: &OpenVpnCerts,
    cipher: Cipher,
    is_a: bool,
) -> Result<Proc, String> {
    let openvpn = tools.openvpn.as_ref().ok_or("openvpn not found")?;
    let (host, wan, peer_wan, inner, peer_inner, role, me, them) = if is_a {
        (
            &lab.a,
            A_WAN,
            B_WAN,
            A_INNER,
            B_INNER,
            "tls-server\ndh none",
            0,
            1,
        )
    } else {
        (&lab.b, B_WAN, A_WAN, B_INNER, A_INNER, "tls-client", 1, 0)
    };
    let ifname = format!("{}o", unique_name());
    let (cert, key, _) = &certs.sides[me];
    let fingerprint = &certs.sides[them].2;
    let config = dir.join(format!("{ifname}.conf"));
    write_private(
        &config,
        &format!(
            "dev {ifname}\ndev-type tun\ndisable-dco\nproto udp\nlocal {wan}\nlport {OVPN_PORT}\n\
             remote {peer_wan} {OVPN_PORT}\nifconfig {inner} {peer_inner}\n{role}\n\
             cert {}\nkey {}\npeer-fingerprint {fingerprint}\ndata-ciphers {}\nverb 3\n",
            cert.display(),
            key.display(),
            openvpn_cipher(cipher)
        ),
    )?;
    let mut command = host.netns().command(openvpn);
    command.arg("--config").arg(&config);
    Proc::spawn(
        command,
        &format!("openvpn {ifname}"),
        &dir.join(format!("{ifname}.log")),
    )
}

// --- traffic --------------------------------------------------------------------------------

/// Echoes every datagram to `SERVER:ECHO_PORT` back to its sender, until `stop`.
pub(super) struct EchoServer {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub(super) fn start(host: &Host, stop: Arc<AtomicBool>) -> Result<Self, String> {
        let socket = host
            .run(|| UdpSocket::bind((ip(SERVER), ECHO_PORT)))
            .map_err(|e| format!("tunnel: echo socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| format!("tunnel: echo socket: {e}"))?;
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..len], from);
                }
            }
        });
        Ok(Self {
            thread: Some(thread),
            stop,
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until a UDP echo from the client reaches the server and comes back (handshakes done,
/// routes in place), checking the variant's processes meanwhile.
pub(super) fn wait_ready(
    lab: &Lab,
    running: &mut Running<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let socket = lab
        .client
        .run(|| UdpSocket::bind((ip(CLIENT), 0)))
        .map_err(|e| format!("tunnel: probe socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("tunnel: probe socket: {e}"))?;
    let target = SocketAddr::new(ip(SERVER), ECHO_PORT);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let _ = socket.send_to(b"ready?", target);
        if let Ok(len) = socket.recv(&mut buf)
            && &buf[..len] == b"ready?"
        {
            return Ok(());
        }
        for proc in &mut running.procs {
            proc.check()?;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = running
                .procs
                .iter()
                .map(|p| format!("{}: {}", p.label, p.log_tail()))
                .collect();
            return Err(format!(
                "no echo through the tunnel after {timeout:?}; {}",
                logs.join("; ")
            ));
        }
    }
}

/// A paced UDP probe from the client to the echo server: one 16-byte datagram (sequence,
/// send time) every `PROBE_INTERVAL`, round trips into an HDR histogram.
struct Probe {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<u64>,
    receiver: JoinHandle<Histogram<u64>>,
}

impl Probe {
    fn start(lab: &Lab) -> Result<Self, String> {
        let socket = lab
            .client
            .run(|| UdpSocket::bind((ip(CLIENT), 0)))
            .map_err(|e| format!("tunnel: probe socket: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| format!("tunnel: probe socket: {e}"))?;
        let sending = socket
            .try_clone()
            .map_err(|e| format!("tunnel: probe socket: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let target = SocketAddr::new(ip(SERVER), ECHO_PORT);
        let flag = Arc::clone(&stop);
        let sender = std::thread::spawn(move || {
            let mut sequence = 0u64;
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let mut message = [0u8; 16];
                message[..8].copy_from_slice(&sequence.to_be_bytes());
                let sent = epoch.elapsed().as_nanos() as u64;
                message[8..].copy_from_slice(&sent.to_be_bytes());
                let _ = sending.send_to(&message, target);
                sequence += 1;
                next += PROBE_INTERVAL;
                // Absolute schedule: a late wake-up sends the next probe at once, so the rate
                // holds over the test even when the machine is busy.
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sequence
        });
        let flag = Arc::clone(&stop);
        let receiver = std::thread::spawn(move || {
            // 1 us to 60 s, 3 significant digits.
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut buf = [0u8; 64];
            // After stop, wait a little for probes still in flight.
            let mut drain_until: Option<Instant> = None;
            loop {
                if drain_until.is_none() && flag.load(Ordering::Relaxed) {
                    drain_until = Some(Instant::now() + Duration::from_millis(200));
                }
                if drain_until.is_some_and(|t| Instant::now() > t) {
                    break;
                }
                if let Ok(16) = socket.recv(&mut buf) {
                    let sent = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
                    let rtt_us = (epoch.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000;
                    histogram.saturating_record(rtt_us.max(1));
                }
            }
            histogram
        });
        Ok(Self {
            stop,
            sender,
            receiver,
        })
    }

    /// Stops the probe: (p50, p99, p99.9) in microseconds and the fraction lost.
    fn finish(self) -> ([f64; 3], f64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.join().unwrap_or(0);
        let histogram = self.receiver.join().unwrap_or_else(|_| {
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
        });
        let received = histogram.len();
        let at = |q: f64| {
            if received == 0 {
                f64::NAN
            } else {
                histogram.value_at_quantile(q) as f64
            }
        };
        let loss = if sent == 0 {
            f64::NAN
        } else {
            sent.saturating_sub(received) as f64 / sent as f64
        };
        ([at(0.5), at(0.99), at(0.999)], loss)
    }
}

/// Runs an iperf3 client in the client host against the suite's server; the JSON report.
/// Retries while the server is busy with the previous test or not listening yet.
fn iperf3(
    lab: &Lab,
    tools: &Tools,
    seconds: u32,
    extra: &[String],
) -> Result<serde_json::Value, String> {
    let mut args: Vec<String> = [
        "-c",
        SERVER,
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
        "--connect-timeout",
        "3000",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().cloned());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = output_within(
            lab.client.netns().command(&tools.iperf3).args(&args),
            Duration::from_secs(u64::from(seconds) + 20),
        )
        .map_err(|e| format!("{e} (iperf3 {})", args.join(" ")))?;
        let report: Option<serde_json::Value> = serde_json::from_slice(&output).ok();
        let error = report
            .as_ref()
            .and_then(|r| r["error"].as_str().map(str::to_owned));
        match (report, error) {
            (Some(report), None) => return Ok(report),
            (_, Some(error))
                if (error.contains("busy") || error.contains("refused"))
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            (_, error) => {
                return Err(format!(
                    "iperf3 {}: {}",
                    args.join(" "),
                    error.unwrap_or_else(|| String::from_utf8_lossy(&output).into_owned())
                ));
            }
        }
    }
}

/// Runs `command` and returns its stdout; kills it after `timeout`.
fn output_within(command: &mut Command, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("tunnel: start iperf3: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("iperf3 without stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("iperf3 did not finish in {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("iperf3: {e}")),
        }
    }
    reader
        .join()
        .map_err(|_| "iperf3 reader panicked".to_owned())
}

/// iperf3 TCP, `streams` parallel streams: received bit/s.
pub(super) fn tcp_rate(
    lab: &Lab,
    tools: &Tools,
    seconds: u32,
    streams: u32,
) -> Result<f64, String> {
    let report = iperf3(lab, tools, seconds, &["-P".into(), streams.to_string()])?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("no received rate in iperf3's report: {}", report["end"]))
}

/// iperf3 UDP flood (`-b 0`) of `size`-byte IP packets: packets/s the server received.
///
/// iperf3 sets up a UDP stream with one cookie datagram each way and no retry (esnet/iperf
/// issues 351 and 862): when one is lost, the client waits forever. Right after a flood the
/// tunnel's queues may still be full and drop it, so the test starts after a pause for them
/// to drain and runs once more after a hang (the lab's runs showed both hangs as UDP tests
/// that never started, while echoes through the tunnel still passed).
/// The UDP tests' socket buffers (iperf3 `-w`, both ends). With the kernel's default
/// (208 KiB) the server's receive buffer overflows whenever the server waits a millisecond
/// for a CPU, which on a 2-vCPU lab running four busy processes is most of the time: the
/// figure then measures the scheduler. 4 MiB absorbs that; high-rate UDP receivers ask for
/// as much (quic-go asks for 7 MiB). The kernel caps it at `net.core.rmem_max`.
const UDP_SOCKET_BUFFER: u64 = 4 << 20;

/// `net.core.rmem_max` when it caps [`UDP_SOCKET_BUFFER`] (a global sysctl, left alone).
fn udp_buffer_capped() -> Option<u64> {
    let max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (max < UDP_SOCKET_BUFFER).then_some(max)
}

fn udp_rate(lab: &Lab, tools: &Tools, seconds: u32, size: usize) -> Result<f64, String> {
    let payload = (size - 28).to_string();
    let args = [
        "-u".into(),
        "-b".into(),
        "0".into(),
        "-l".into(),
        payload,
        "-w".into(),
        UDP_SOCKET_BUFFER.to_string(),
    ];
    std::thread::sleep(Duration::from_millis(300));
    let report = iperf3(lab, tools, seconds, &args).or_else(|e| {
        if e.contains("did not finish") {
            eprintln!("\n  {e}: once more (iperf3's UDP setup has no retry)");
            iperf3(lab, tools, seconds, &args)
        } else {
            Err(e)
        }
    })?;
    let sum = &report["end"]["sum"];
    let (Some(packets), Some(lost), Some(secs)) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    ) else {
        return Err(format!("no UDP packet counts in iperf3's report: {sum}"));
    };
    Ok((packets - lost).max(0.0) / secs.max(1e-9))
}

#[allow(clippy::too_many_arguments)]
fn measure(
    lab: &Lab,
    tools: &Tools,
    seconds: u32,
    progress: &mut Progress,
    run: usize,
    runs: usize,
    name: &str,
    iperf_server: &mut Proc,
) -> Result<Measured, String> {
    let step = |progress: &mut Progress, what: &str| {
        progress.step(format!("run {}/{runs} {name}: {what}", run + 1));
    };
    iperf_server.check()?;
    let probe = Probe::start(lab)?;
    let tcp1 = tcp_rate(lab, tools, seconds, 1);
    let (latency, probe_loss) = probe.finish();
    let tcp1 = tcp1?;
    step(progress, "TCP, 4 streams");
    let tcp4 = tcp_rate(lab, tools, seconds, 4)?;
    step(progress, "UDP 64 B");
    let udp64 = udp_rate(lab, tools, seconds, UDP_SIZES[0])?;
    step(progress, "UDP 1400 B");
    let udp1400 = udp_rate(lab, tools, seconds, UDP_SIZES[1])?;
    Ok(Measured {
        tcp: [tcp1, tcp4],
        udp: [udp64, udp1400],
        latency,
        probe_loss,
    })
}

// --- results --------------------------------------------------------------------------------

/// The per-run figures of one variant, in the order of `FIGURES`.
fn figures(m: &Measured) -> [f64; 8] {
    [
        m.tcp[0] / 1e9,
        m.tcp[1] / 1e9,
        m.udp[0] / 1e3,
        m.udp[1] / 1e3,
        m.latency[0],
        m.latency[1],
        m.latency[2],
        m.probe_loss * 100.0,
    ]
}

const FIGURES: [&str; 8] = [
    "tcp_1_stream_gbit_s",
    "tcp_4_streams_gbit_s",
    "udp_64b_kpps",
    "udp_1400b_kpps",
    "latency_p50_us",
    "latency_p99_us",
    "latency_p999_us",
    "probe_loss_pct",
];

/// Figures compared by ratio: (label, index into `figures`).
const RATIO_FIGURES: [(&str, usize); 4] = [("tcp1", 0), ("tcp4", 1), ("udp64", 2), ("udp1400", 3)];

/// Median over runs of `variant`'s figure `f` divided by the best of `baselines`' in the same
/// run (NaN when no run has both).
fn ratio(
    results: &[Vec<Result<Measured, String>>],
    variant: usize,
    baselines: &[usize],
    f: usize,
) -> f64 {
    let per_run: Vec<f64> = results
        .iter()
        .filter_map(|run| {
            let mine = figures(run[variant].as_ref().ok()?)[f];
            let best = baselines
                .iter()
                .filter_map(|&b| run[b].as_ref().ok().map(|m| figures(m)[f]))
                .fold(f64::NAN, f64::max);
            (best > 0.0).then(|| mine / best)
        })
        .collect();
    median(per_run)
}

fn publish(
    chosen: &[&Variant],
    results: &[Vec<Result<Measured, String>>],
    unavailable: &BTreeMap<&'static str, String>,
    seconds: u32,
    runs: usize,
    congestion: &str,
) -> Result<(), String> {
    let index_of = |pred: fn(&Kind) -> bool| -> Vec<usize> {
        chosen
            .iter()
            .enumerate()
            .filter(|(_, v)| pred(&v.kind))
            .map(|(i, _)| i)
            .collect()
    };
    let plain = index_of(|k| matches!(k, Kind::Plain));
    let boringtun = index_of(|k| matches!(k, Kind::Boringtun { .. }));
    let openvpn = index_of(|k| matches!(k, Kind::OpenVpn { .. }));
    let medians: Vec<Option<[f64; 8]>> = (0..chosen.len())
        .map(|v| {
            let ok: Vec<[f64; 8]> = results
                .iter()
                .filter_map(|run| run[v].as_ref().ok().map(figures))
                .collect();
            (!ok.is_empty())
                .then(|| std::array::from_fn(|f| median(ok.iter().map(|x| x[f]).collect())))
        })
        .collect();

    println!(
        "\ntunnel — {}; veth, end hosts' TCP {congestion}, {seconds} s per test, median of \
         {runs} run(s)",
        machine()
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "variant", "TCP 1", "TCP 4", "UDP 64 B", "UDP 1400", "p50", "p99", "p99.9", "lost"
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "", "Gbit/s", "Gbit/s", "kpps", "kpps", "ms", "ms", "ms", "%"
    );
    for (v, variant) in chosen.iter().enumerate() {
        match &medians[v] {
            Some(m) => println!(
                "  {:<22} {:>9.2} {:>9.2} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>6.1}",
                variant.name,
                m[0],
                m[1],
                m[2],
                m[3],
                m[4] / 1e3,
                m[5] / 1e3,
                m[6] / 1e3,
                m[7]
            ),
            None => {
                let why = unavailable.get(variant.name).map_or_else(
                    || {
                        results
                            .iter()
                            .find_map(|run| run[v].as_ref().err().cloned())
                            .unwrap_or_default()
                    },
                    Clone::clone,
                );
                let label = if matches!(variant.kind, Kind::FullBypass) {
                    "full bypass: not available"
                } else {
                    "failed"
                };
                println!("  {:<22} {label} ({why})", variant.name);
            }
        }
    }
    println!(
        "\n  ratios, median of per-run ratios (baseline: the best of its kind in the same run)"
    );
    println!(
        "  {:<22} {:>27} {:>15} {:>15}",
        "variant", "x plain: TCP1 TCP4 U64 U1400", "x boringtun T1 T4", "x openvpn T1 T4"
    );
    let mut rows = Vec::new();
    for (v, variant) in chosen.iter().enumerate() {
        let mut figures_row: Vec<(&'static str, f64)> = Vec::new();
        let m = medians[v].unwrap_or([f64::NAN; 8]);
        for (label, value) in FIGURES.iter().zip(m) {
            figures_row.push((*label, value));
        }
        let x_plain: Vec<f64> = RATIO_FIGURES
            .iter()
            .map(|&(_, f)| ratio(results, v, &plain, f))
            .collect();
        let x_bt: Vec<f64> = (0..2).map(|f| ratio(results, v, &boringtun, f)).collect();
        let x_ovpn: Vec<f64> = (0..2).map(|f| ratio(results, v, &openvpn, f)).collect();
        const PLAIN_LABELS: [&str; 4] = [
            "tcp1_x_plain",
            "tcp4_x_plain",
            "udp64_x_plain",
            "udp1400_x_plain",
        ];
        for (label, value) in PLAIN_LABELS.iter().zip(&x_plain) {
            figures_row.push((*label, *value));
        }
        figures_row.push(("tcp1_x_boringtun", x_bt[0]));
        figures_row.push(("tcp4_x_boringtun", x_bt[1]));
        figures_row.push(("tcp1_x_openvpn", x_ovpn[0]));
        figures_row.push(("tcp4_x_openvpn", x_ovpn[1]));
        figures_row.push((
            "runs",
            results.iter().filter(|run| run[v].is_ok()).count() as f64,
        ));
        if medians[v].is_some() {
            let fmt = |x: &f64| {
                if x.is_finite() {
                    format!("{x:.2}")
                } else {
                    "-".to_owned()
                }
            };
            let join = |xs: &[f64]| xs.iter().map(fmt).collect::<Vec<_>>().join(" ");
            println!(
                "  {:<22} {:>27} {:>15} {:>15}",
                variant.name,
                join(&x_plain),
                join(&x_bt),
                join(&x_ovpn)
            );
        }
        rows.push(Row {
            name: variant.name.to_owned(),
            figures: figures_row,
        });
    }

    // The issue's targets, for each warpline variant that ran.
    let mut verdicts = String::new();
    for row in &rows {
        let Some(variant) = chosen.iter().find(|v| v.name == row.name) else {
            continue;
        };
        if !matches!(variant.kind, Kind::Warpline { .. } | Kind::FullBypass)
            || !row.figures[0].1.is_finite()
        {
            continue;
        }
        let get = |label: &str| {
            row.figures
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(f64::NAN, |(_, x)| *x)
        };
        let check = |value: f64, target: f64| {
            if !value.is_finite() {
                "not measured".to_owned()
            } else if value >= target {
                format!("{value:.2}x, met")
            } else {
                format!("{value:.2}x, NOT met")
            }
        };
        let _ = writeln!(
            verdicts,
            "  {}: TCP1 vs boringtun {}; TCP4 vs boringtun {}; TCP1 vs OpenVPN {}; TCP4 vs \
             OpenVPN {}; UDP 1400 B vs plain {}",
            row.name,
            check(get("tcp1_x_boringtun"), TARGET_TCP_X),
            check(get("tcp4_x_boringtun"), TARGET_TCP_X),
            check(get("tcp1_x_openvpn"), TARGET_TCP_X),
            check(get("tcp4_x_openvpn"), TARGET_TCP_X),
            check(get("udp1400_x_plain"), TARGET_UDP_X_PLAIN),
        );
    }
    println!(
        "\n  issue targets: TCP >= {TARGET_TCP_X}x boringtun-cli and OpenVPN, UDP at 1400 B >= \
         {TARGET_UDP_X_PLAIN}x plain forwarding\n{verdicts}"
    );
    report::write_json_with("tunnel", &[("congestion_control", congestion)], &rows)?;
    draw(chosen, &medians, &rows, congestion)
}

fn draw(
    chosen: &[&Variant],
    medians: &[Option<[f64; 8]>],
    rows: &[Row],
    congestion: &str,
) -> Result<(), String> {
    let ran: Vec<usize> = (0..chosen.len())
        .filter(|&v| medians[v].is_some())
        .collect();
    let bars = |pick: &dyn Fn(&[f64; 8]) -> Vec<f64>| -> Vec<Series> {
        ran.iter()
            .map(|&v| Series::bars(chosen[v].name, pick(&medians[v].expect("ran"))))
            .collect()
    };
    let figure = |v: usize, label: &str| {
        rows[v]
            .figures
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(f64::NAN, |(_, x)| *x)
    };
    // Ratio panels leave out plain forwarding (its bars would dwarf the tunnels'), keeping
    // each variant's colour from the other panels.
    let ratio_series = |labels: &[&str]| -> Vec<Series> {
        ran.iter()
            .map(|&v| {
                let values: Vec<f64> = if matches!(chosen[v].kind, Kind::Plain) {
                    vec![f64::NAN; labels.len()]
                } else {
                    labels.iter().map(|label| figure(v, label)).collect()
                };
                Series::bars(chosen[v].name, values)
            })
            .collect()
    };
    let panels = [
        Panel::Bars {
            title: "TCP throughput (iperf3)".into(),
            y_label: "Gbit/s".into(),
            groups: vec!["1 stream".into(), "4 streams".into()],
            series: bars(&|m| vec![m[0], m[1]]),
        },
        Panel::Bars {
            title: "UDP packet rate received (iperf3 -u -b 0)".into(),
            y_label: "kpps".into(),
            groups: vec!["64 B".into(), "1400 B".into()],
            series: bars(&|m| vec![m[2], m[3]]),
        },
        Panel::Bars {
            title: "round trip of a 1 kHz probe under 1 TCP stream".into(),
            y_label: "ms".into(),
            groups: vec!["p50".into(), "p99".into(), "p99.9".into()],
            series: bars(&|m| vec![m[4] / 1e3, m[5] / 1e3, m[6] / 1e3]),
        },
        Panel::Bars {
            title: "TCP against the best boringtun-cli of the same run".into(),
            y_label: "x boringtun-cli".into(),
            groups: vec!["TCP 1 stream".into(), "TCP 4 streams".into()],
            series: ratio_series(&["tcp1_x_boringtun", "tcp4_x_boringtun"]),
        },
        Panel::Bars {
            title: "UDP packet rate against plain forwarding, same run".into(),
            y_label: "x plain".into(),
            groups: vec!["64 B".into(), "1400 B".into()],
            series: ratio_series(&["udp64_x_plain", "udp1400_x_plain"]),
        },
    ];
    let path = report::output_path("tunnel", "svg")?;
    chart::draw(
        &path,
        &format!(
            "tunnel: site to site through two gateways, end hosts' TCP {congestion}, {}",
            machine()
        ),
        &panels,
        3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reason_keeps_the_problem_only() {
        assert_eq!(
            refusal_reason(
                "warpline: /tmp/x/wlfb.conf:7: [Interface] unknown key \"Role\"; valid keys are A, B"
            ),
            "[Interface] unknown key \"Role\""
        );
        assert_eq!(refusal_reason("something else"), "something else");
    }

    #[test]
    fn variant_names_are_unique() {
        let names: std::collections::BTreeSet<&str> = VARIANTS.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), VARIANTS.len());
    }
}
