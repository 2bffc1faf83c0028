//! Packet rate of the AF_XDP reflector against a kernel UDP reflector
//! (`recvmmsg`/`sendmmsg`), measured in the same run on the same lab: a
//! generator namespace and a gateway namespace joined by a one-queue veth.
//! The generator keeps a window of minimum-size WireGuard transport messages
//! (32-byte UDP payload, 74-byte frames) in flight and counts echoes.
//!
//! Usage: `xsk_reflector [--seconds N] [--xdp native|generic|auto] [--window N]`
//! (root needed: namespaces, veth, XDP). Self-contained: no iproute2 needed.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use warpline_dataplane::{
    lab::{
        Host, Veth, require_root,
        traffic::{
            LoadReport, closed_loop_load, mmsg_reflector, xsk_closed_loop_load, xsk_reflector,
        },
    },
    xdp::{AttachMode, Role, Steering, Verdict},
    xsk::{SocketConfig, Umem, UmemConfig, XskSocket, raise_memlock_limit},
};

const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 51820;

struct Options {
    seconds: f64,
    mode: AttachMode,
    window: usize,
    /// Generate with AF_XDP (default) rather than a kernel UDP socket, which on a small
    /// machine saturates before either reflector does.
    xsk_generator: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seconds: 3.0,
        mode: AttachMode::Native,
        xsk_generator: true,
        window: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--window" => {
                options.window = value()?.parse().map_err(|e| format!("--window: {e}"))?
            }
            "--xdp" => {
                options.mode = match value()?.as_str() {
                    "native" => AttachMode::Native,
                    "generic" => AttachMode::Generic,
                    "auto" => AttachMode::Auto,
                    other => return Err(format!("--xdp: unknown mode {other:?}")),
                }
            }
            "--generator" => {
                options.xsk_generator = match value()?.as_str() {
                    "xsk" => true,
                    "udp" => false,
                    other => return Err(format!("--generator: {other:?} is not xsk or udp")),
                }
            }
            "--help" | "-h" => {
                return Err(
                    "usage: xsk_reflector [--seconds N] [--xdp native|generic|auto] [--window N] \
                     [--generator xsk|udp]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(options)
}

fn wireguard_keepalive() -> [u8; 32] {
    let mut message = [0u8; 32];
    message[0] = 4;
    message
}

fn udp_socket(host: &Host, address: SocketAddr) -> std::io::Result<UdpSocket> {
    host.run(|| UdpSocket::bind(address))
}

/// What drives the load: a kernel UDP socket in the generator namespace, or an AF_XDP
/// socket on the generator's veth end with the steering program sending echoes to it.
enum Generator {
    Udp(UdpSocket),
    Xsk(Box<XskGenerator>),
}

/// The AF_XDP generator's parts; the steering program stays attached while it lives.
struct XskGenerator {
    _steering: Steering,
    socket: XskSocket,
    pool: Vec<warpline_dataplane::xsk::Frame>,
    template: Vec<u8>,
}

const GEN_PORT: u16 = 40_000;

/// The Ethernet frame the AF_XDP generator sends: a 32-byte type-4 message to the reflector.
fn load_frame(generator_mac: [u8; 6], gateway_mac: [u8; 6]) -> Vec<u8> {
    use warpline_dataplane::wire::{ethernet, udp};
    let payload = wireguard_keepalive();
    let mut frame = vec![0u8; ethernet::HEADER_LEN + udp::IPV4_UDP_HEADERS_LEN + payload.len()];
    ethernet::write_header(
        &mut frame,
        gateway_mac,
        generator_mac,
        None,
        ethernet::EtherType::IPV4,
    )
    .expect("room for the header");
    let ip_start = ethernet::HEADER_LEN;
    frame[ip_start + udp::IPV4_UDP_HEADERS_LEN..].copy_from_slice(&payload);
    let header = udp::Ipv4UdpHeader {
        src: std::net::SocketAddrV4::new(GEN_IP, GEN_PORT),
        dst: std::net::SocketAddrV4::new(GW_IP, PORT),
        ttl: 64,
        dscp_ecn: 0,
        ident: 1,
    };
    udp::write_ipv4_udp(&mut frame[ip_start..], &header, payload.len()).expect("headers fit");
    frame
}

fn xsk_generator(generator: &Host, veth: &Veth) -> Generator {
    let if_index = veth.b.index;
    generator.run(|| {
        let mut steering =
            Steering::attach(if_index, Role::Wan, AttachMode::Native, 1).expect("generator XDP");
        steering.add_listen_port(GEN_PORT).expect("generator port");
        let (umem, pool) = Umem::new(UmemConfig {
            frame_size: 2048,
            frame_count: 8192,
            headroom: 0,
        })
        .expect("generator UMEM");
        let socket = XskSocket::bind(&umem, &SocketConfig::new(if_index, 0)).expect("bind");
        steering
            .set_socket(0, socket.as_fd())
            .expect("generator XSKMAP");
        Generator::Xsk(Box::new(XskGenerator {
            _steering: steering,
            socket,
            pool,
            template: load_frame(veth.b.mac, veth.a.mac),
        }))
    })
}

fn run_load(generator: &Host, load: &mut Generator, options: &Options, seconds: f64) -> LoadReport {
    let socket = match load {
        Generator::Udp(socket) => socket,
        Generator::Xsk(xsk) => {
            let XskGenerator {
                socket,
                pool,
                template,
                ..
            } = &mut **xsk;
            return xsk_closed_loop_load(
                socket,
                pool,
                template,
                options.window,
                Duration::from_secs_f64(seconds),
            );
        }
    };
    generator
        .run(|| {
            closed_loop_load(
                socket,
                SocketAddr::new(GW_IP.into(), PORT),
                &wireguard_keepalive(),
                options.window,
                Duration::from_secs_f64(seconds),
            )
        })
        .expect("load generator")
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(reason) = require_root() {
        eprintln!("xsk_reflector: {reason}");
        return ExitCode::FAILURE;
    }
    raise_memlock_limit().expect("raise RLIMIT_MEMLOCK");
    let generator = Host::new("gen").expect("generator namespace");
    let gateway = Host::new("gw").expect("gateway namespace");
    let veth = Veth::new(&gateway, &generator, 1).expect("veth pair");
    gateway
        .add_address(&veth.a, GW_IP.into(), 24)
        .expect("gateway address");
    generator
        .add_address(&veth.b, GEN_IP.into(), 24)
        .expect("generator address");
    let mut load = if options.xsk_generator {
        xsk_generator(&generator, &veth)
    } else {
        Generator::Udp(udp_socket(&generator, SocketAddr::new(GEN_IP.into(), 0)).expect("socket"))
    };

    // Baseline: the kernel's UDP stack with batched syscalls.
    let kernel = {
        let reflector_socket =
            udp_socket(&gateway, SocketAddr::new(GW_IP.into(), PORT)).expect("reflector socket");
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reflector = scope.spawn(|| mmsg_reflector(&reflector_socket, &stop));
            run_load(&generator, &mut load, &options, 0.3); // warm-up, ARP
            let report = run_load(&generator, &mut load, &options, options.seconds);
            stop.store(true, Ordering::Relaxed);
            reflector
                .join()
                .expect("reflector thread")
                .expect("reflector");
            report
        })
    };

    // AF_XDP: steering program + one socket on the only queue.
    let if_index = veth.a.index;
    let (mut steering, mut socket, mut pool) = gateway.run(|| {
        let mut steering =
            Steering::attach(if_index, Role::Wan, options.mode, 1).expect("attach XDP");
        steering.add_listen_port(PORT).expect("listen port");
        let (umem, pool) = Umem::new(UmemConfig {
            frame_size: 2048,
            frame_count: 8192,
            headroom: 0,
        })
        .expect("UMEM");
        let socket = XskSocket::bind(&umem, &SocketConfig::new(if_index, 0)).expect("bind");
        steering.set_socket(0, socket.as_fd()).expect("XSKMAP");
        (steering, socket, pool)
    });
    let af_xdp = {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let socket = &mut socket;
            let pool = &mut pool;
            let stop = &stop;
            let reflector = scope.spawn(move || xsk_reflector(socket, pool, stop));
            run_load(&generator, &mut load, &options, 0.3);
            let report = run_load(&generator, &mut load, &options, options.seconds);
            stop.store(true, Ordering::Relaxed);
            reflector.join().expect("reflector thread");
            report
        })
    };
    let stats = socket.statistics().expect("XDP_STATISTICS");
    let verdicts = steering.verdicts().expect("verdicts");
    steering.clear_socket(0).expect("clear XSKMAP");

    let describe = |name: &str, report: &LoadReport| {
        println!(
            "{name:<44} {:>10.0} pps  (sent {}, echoed {}, {:.2} s)",
            report.echo_rate(),
            report.sent,
            report.received,
            report.elapsed.as_secs_f64()
        );
    };
    println!(
        "lab: one-queue veth, 74-byte frames (32-byte WireGuard type-4 payload), window {}, \
         {} generator",
        options.window,
        if options.xsk_generator {
            "AF_XDP"
        } else {
            "kernel UDP"
        }
    );
    describe("kernel UDP reflector (recvmmsg/sendmmsg)", &kernel);
    describe(
        &format!(
            "AF_XDP reflector ({:?} XDP, {:?} bind)",
            steering.attached_mode(),
            socket.bound_mode()
        ),
        &af_xdp,
    );
    let ratio = af_xdp.echo_rate() / kernel.echo_rate().max(1.0);
    println!("ratio AF_XDP / kernel: {ratio:.2} (target >= 1.5)");
    println!("AF_XDP socket statistics: {stats:?}");
    println!(
        "XDP verdicts: redirected {}, total {}",
        verdicts.get(Verdict::Redirected),
        verdicts.total()
    );
    ExitCode::SUCCESS
}
