//! `hostile`: a real peer's TCP throughput through a gateway while an attacker floods it, in the
//! tunnel suite's site-to-site lab (client — gw A — WAN — gw B — server). gw B is the real
//! peer; the attacker sits on the WAN next to it (an address of its own, and packets that claim
//! gw B's address) and sends gw A the flood of the hostile-traffic test
//! (`warpline_control::hostile`): truncated and oversized packets, wrong types, unknown
//! receiver indices, forged tags on the live session and replays of its messages (captured on
//! the WAN first), initiations with a bad MAC1 and a burst of valid-MAC1 initiations from
//! unknown keys every round.
//!
//! Per variant and run, same tunnel, back to back: iperf3 TCP (1 stream) unloaded, then the
//! same under the flood; the ratio is the figure (target >= 0.8). Also measured:
//! gw A's process CPU with the flood alone against idle (the gateway's own cost of refusing
//! it, per hostile packet), and the generator's CPU. The XDP program and the veth's softirq
//! work run on the sending CPU and are not in gw A's figure. On a small machine the
//! generator, both gateways and both iperf3 ends share the cores: the generator's share is
//! printed beside the ratio, because it is taken from the tunnel whatever the gateway does.
//! To take it out, each run ends with a control: TCP under the same flood sent to a closed
//! port of gw A, which costs the generator and the kernel's path up to the socket lookup the
//! same and the gateway nothing. Flooded / that is the gateway's own effect on the peer.
//!
//! Variants: `warpline-xdp-chacha` (the gateway under test), `warpline-chacha` (portable)
//! and `boringtun-4`, the same flood against each. For warpline's XDP variants gw B runs on
//! the kernel's UDP socket: its AF_XDP transmissions would bypass the capture. Needs what
//! the tunnel suite needs.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use warpline_control::hostile::{Flood, FloodReport, stranger_initiations};
use warpline_dataplane::lab::capture::TransportCapture;
use warpline_dataplane::lab::require_root;

use super::tunnel::{
    self, A_WAN, B_WAN, EchoServer, Kind, Lab, Running, TempDir, Tools, Up, VARIANTS, Variant,
    WG_PORT, ip,
};
use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{self, Row, machine, median};

/// Command-line options of the suite.
#[derive(Debug, Default)]
pub struct Options {
    /// Seconds per iperf3 test (default 3, 1 with `--quick`).
    pub seconds: Option<f64>,
    /// Runs; figures are medians (default 3, 1 with `--quick`).
    pub runs: Option<usize>,
    /// Only these variants.
    pub variants: Option<Vec<String>>,
    /// Hostile packets per second (default 30,000, the hostile-traffic test's rate).
    pub rate: Option<f64>,
    /// The end hosts' TCP congestion control (default [`tunnel::DEFAULT_CONGESTION`]).
    pub congestion: Option<String>,
    /// A short run for smoke tests.
    pub quick: bool,
}

const DEFAULT_VARIANTS: [&str; 3] = ["warpline-xdp-chacha", "warpline-chacha", "boringtun-4"];
const DEFAULT_RATE: f64 = 30_000.0;
/// The attacker's own address on the WAN, beside gw B's.
const ATTACKER: &str = "10.230.2.9";
/// Valid-MAC1 initiations per round (the test's mix: most of the flood's packets).
const INITIATIONS_PER_ROUND: usize = 8;
/// The target: the real peer keeps this share of its unloaded throughput.
const TARGET_RATIO: f64 = 0.8;
/// A port of gw A's WAN address that nothing in its namespace listens on: the control flood's
/// destination.
const CLOSED_PORT: u16 = WG_PORT + 1;

/// One run of one variant.
#[derive(Debug, Clone)]
struct Measured {
    /// iperf3 TCP, 1 stream, bit/s: unloaded, then under the flood.
    unloaded: f64,
    flooded: f64,
    /// gw A's process CPU (fraction of one core) idle and under the flood alone.
    gateway_idle: f64,
    gateway_flooded: f64,
    /// Under the flood alone, by thread name.
    gateway_threads: Vec<(String, f64)>,
    /// What the flood sent, the flood-alone phase and the loaded test together.
    flood: FloodReport,
    /// iperf3 TCP, 1 stream, bit/s, under the same flood sent to a closed port of gw A: what
    /// the generator and the kernel's path up to the socket lookup cost the tunnel, without
    /// the gateway.
    closed_port_flooded: f64,
}

pub fn run(options: &Options) -> Result<(), String> {
    require_root()?;
    let (seconds, runs) =
        tunnel::seconds_and_runs("hostile", options.seconds, options.runs, options.quick, 3.0)?;
    let rate = options.rate.unwrap_or(DEFAULT_RATE);
    if !(100.0..=1e7).contains(&rate) {
        return Err(format!(
            "hostile: --rate {rate}: give packets/s from 100 to 10000000"
        ));
    }
    let names: Vec<String> = options.variants.clone().unwrap_or_else(|| {
        DEFAULT_VARIANTS
            .iter()
            .map(|name| (*name).to_owned())
            .collect()
    });
    let chosen: Vec<&Variant> = names
        .iter()
        .map(|name| {
            VARIANTS
                .iter()
                .find(|v| v.name == name && v.name != "plain")
                .ok_or_else(|| {
                    format!(
                        "hostile: unknown variant '{name}' (any tunnel variant but plain: {})",
                        VARIANTS.map(|v| v.name)[1..].join(", ")
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let tools = Tools::find(&chosen)?;
    let idle_window = Duration::from_secs(if options.quick { 1 } else { 2 });

    println!(
        "hostile: {} variants x {runs} run(s), {seconds} s per iperf3 test, flood {rate:.0} \
         packets/s; {}",
        chosen.len(),
        machine()
    );
    let congestion = options
        .congestion
        .as_deref()
        .unwrap_or(tunnel::DEFAULT_CONGESTION);
    println!("  tools: {}", tools.versions());
    println!("  {}", tunnel::congestion_note(congestion));
    println!("  load average at start: {}", tunnel::load_average());
    let lab = Lab::new(congestion).map_err(|e| format!("hostile lab: {e}"))?;
    let wan_b = lab
        .b
        .netlink(|n| n.link_by_name(&lab.wan_b))
        .map_err(|e| format!("hostile lab: gw B's WAN: {e}"))?
        .index;
    lab.b
        .netlink(|n| n.add_address(wan_b, ip(ATTACKER), 24))
        .map_err(|e| format!("hostile lab: the attacker's address: {e}"))?;
    let dir = TempDir::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let _echo = EchoServer::start(&lab.server, Arc::clone(&stop))?;
    let mut iperf_server = tunnel::iperf_server(&lab, &tools, &dir)?;

    let mut results: Vec<Vec<Result<Measured, String>>> = vec![Vec::new(); chosen.len()];
    let mut progress = Progress::new("hostile", runs * chosen.len() * 4);
    for run in 0..runs {
        for (slot, variant) in chosen.iter().enumerate() {
            let step = |progress: &mut Progress, what: &str| {
                progress.step(format!("run {}/{runs} {}: {what}", run + 1, variant.name));
            };
            step(&mut progress, "starting");
            let measured =
                match tunnel::bring_up(&lab, &tools, &dir.0, None, peer_portable(variant.kind)) {
                    Ok(Up::Running(mut running)) => {
                        iperf_server.check()?;
                        let measured = measure(
                            &lab,
                            &tools,
                            &mut running,
                            wan_b,
                            seconds,
                            rate,
                            idle_window,
                            |what| step(&mut progress, what),
                        );
                        let alive = running.check();
                        measured.and_then(|m| alive.map(|()| m))
                    }
                    Ok(Up::Unavailable(reason)) => Err(reason),
                    Err(e) => Err(e),
                };
            if let Err(e) = &measured {
                eprintln!("\n  {} (run {}): {e}", variant.name, run + 1);
            }
            results[slot].push(measured);
        }
    }
    progress.finish();
    println!("  load average at the end: {}", tunnel::load_average());
    stop.store(true, Ordering::Relaxed);
    drop(iperf_server);
    publish(&chosen, &results, rate, seconds, runs, congestion)?;
    let failed: Vec<&str> = chosen
        .iter()
        .zip(&results)
        .filter(|(_, runs)| runs.iter().any(Result::is_err))
        .map(|(v, _)| v.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "hostile: some runs failed: {} (see the messages above)",
            failed.join(", ")
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    lab: &Lab,
    tools: &Tools,
    running: &mut Running<'_>,
    wan_b: u32,
    seconds: u32,
    rate: f64,
    idle_window: Duration,
    mut step: impl FnMut(&str),
) -> Result<Measured, String> {
    let gateway = running
        .procs
        .first()
        .map(|p| p.child.id())
        .ok_or("hostile: no gateway process")?;
    // Messages of the live session, B to A, for the replays and forged tags.
    let capture = TransportCapture::start(&lab.b, wan_b, WG_PORT)
        .map_err(|e| format!("hostile: capture on gw B's WAN: {e}"))?;
    for _ in 0..20 {
        tunnel::wait_ready(lab, running, Duration::from_secs(5))?;
    }
    let transport = capture.finish();
    if transport.is_empty() {
        return Err("hostile: no transport message of the live session was seen on the WAN".into());
    }
    let (gateway_idle, _) = cpu_share(gateway, idle_window)?;
    let unloaded = tunnel::tcp_rate(lab, tools, seconds, 1)?;

    step("flood alone");
    let target = SocketAddr::new(ip(A_WAN), WG_PORT);
    let gateway_key = running
        .gateway_a_key
        .ok_or("hostile: the variant has no WireGuard key for gw A")?;
    let initiations = stranger_initiations(&gateway_key, target, INITIATIONS_PER_ROUND);
    let per_round = initiations.len() + 7;
    let flood = Flood {
        transport,
        initiations,
        round_interval: Flood::interval_for(per_round, rate),
    };
    let (socket, spoofed) = lab
        .b
        .run(|| {
            Ok::<_, std::io::Error>((
                UdpSocket::bind((ip(ATTACKER), 40000))?,
                UdpSocket::bind((ip(B_WAN), 40001))?,
            ))
        })
        .map_err(|e| format!("hostile: the attacker's sockets: {e}"))?;
    let flooding = |to: SocketAddr| FloodTo {
        flood: &flood,
        socket: &socket,
        spoofed: &spoofed,
        to,
    };
    let (((gateway_flooded, gateway_threads), flooded), report) =
        flooding(target).during(|| {
            let gateway_flooded = cpu_share(gateway, idle_window)?;
            step("TCP under the flood");
            Ok((gateway_flooded, tunnel::tcp_rate(lab, tools, seconds, 1)?))
        })?;
    // The control: the same packets at the same rate, to a port the kernel refuses.
    step("TCP under the flood to a closed port");
    let (closed_port_flooded, _) = flooding(SocketAddr::new(ip(A_WAN), CLOSED_PORT))
        .during(|| tunnel::tcp_rate(lab, tools, seconds, 1))?;
    Ok(Measured {
        unloaded,
        flooded,
        gateway_idle,
        gateway_flooded,
        gateway_threads,
        flood: report,
        closed_port_flooded,
    })
}

/// The flood, from the attacker's sockets, to one destination.
struct FloodTo<'a> {
    flood: &'a Flood,
    socket: &'a UdpSocket,
    spoofed: &'a UdpSocket,
    to: SocketAddr,
}

impl FloodTo<'_> {
    /// Runs `work` under the flood, started 300 ms before it and stopped after it: what
    /// `work` found, and what the flood sent.
    fn during<T>(
        &self,
        work: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, FloodReport), String> {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let flooding =
                scope.spawn(|| self.flood.run(self.socket, self.spoofed, self.to, &stop));
            std::thread::sleep(Duration::from_millis(300));
            let found = work();
            stop.store(true, Ordering::Relaxed);
            let report = flooding
                .join()
                .map_err(|_| "hostile: the flood thread panicked".to_owned())?;
            Ok((found?, report))
        })
    }
}

/// The variant with gw B, the real peer, on the kernel's UDP socket: a peer sending through
/// AF_XDP bypasses the packet taps, so its messages could not be captured for the replays
/// and forgeries. gw A, the gateway under attack, keeps the variant's data path.
fn peer_portable(kind: Kind) -> Kind {
    match kind {
        Kind::Warpline { cipher, xdp, .. } => Kind::Warpline {
            cipher,
            xdp,
            xdp_b: false,
        },
        other => other,
    }
}

/// The share of one core `pid` used (all threads) over `window`, and each thread's share by
/// name (threads of one name summed), busiest first.
fn cpu_share(pid: u32, window: Duration) -> Result<(f64, Vec<(String, f64)>), String> {
    let before = thread_cpu(pid)?;
    let started = Instant::now();
    std::thread::sleep(window);
    let after = thread_cpu(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, seconds)) in &after {
        let earlier = before.get(tid).map_or(0.0, |(_, s)| *s);
        *by_name.entry(name.clone()).or_default() += (seconds - earlier) / elapsed;
    }
    let total = by_name.values().sum();
    let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((total, threads))
}

/// Each thread of `pid`: its name and the CPU seconds it has used (utime + stime), by id.
fn thread_cpu(pid: u32) -> Result<BTreeMap<u32, (String, f64)>, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("hostile: /proc/{pid}/task: {e}"))?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut threads = BTreeMap::new();
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread that ended meanwhile is simply gone.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (name) state ...": the name may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) {
            threads.insert(
                tid,
                (stat[open + 1..close].to_owned(), (utime + stime) / hz),
            );
        }
    }
    if threads.is_empty() {
        return Err(format!("hostile: no threads of {pid} in /proc"));
    }
    Ok(threads)
}

fn publish(
    chosen: &[&Variant],
    results: &[Vec<Result<Measured, String>>],
    rate: f64,
    seconds: u32,
    runs: usize,
    congestion: &str,
) -> Result<(), String> {
    println!("\nhostile — {}; end hosts' TCP {congestion}", machine());
    println!(
        "  {:<22} {:>10} {:>10} {:>7} {:>11} {:>9} {:>12} {:>12} {:>11} {:>12}",
        "variant",
        "TCP Gb/s",
        "flooded",
        "ratio",
        "closed port",
        "vs it",
        "gw CPU idle",
        "gw CPU flood",
        "us/packet",
        "generator"
    );
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for (variant, runs_of) in chosen.iter().zip(results) {
        let ok: Vec<&Measured> = runs_of.iter().filter_map(|r| r.as_ref().ok()).collect();
        if ok.is_empty() {
            println!("  {:<22} no successful run", variant.name);
            ratios.push([f64::NAN; 2]);
            continue;
        }
        let of = |f: &dyn Fn(&Measured) -> f64| median(ok.iter().map(|m| f(m)).collect());
        let unloaded = of(&|m| m.unloaded / 1e9);
        let flooded = of(&|m| m.flooded / 1e9);
        let ratio = of(&|m| m.flooded / m.unloaded.max(1.0));
        let closed_port = of(&|m| m.closed_port_flooded / 1e9);
        let vs_closed_port = of(&|m| m.flooded / m.closed_port_flooded.max(1.0));
        let idle = of(&|m| m.gateway_idle);
        let flood_cpu = of(&|m| m.gateway_flooded);
        let per_packet =
            of(&|m| (m.gateway_flooded - m.gateway_idle).max(0.0) * 1e6 / m.flood.rate().max(1.0));
        let generator = of(&|m| m.flood.cpu.as_secs_f64() / m.flood.elapsed.as_secs_f64());
        let sent = of(&|m| m.flood.rate());
        println!(
            "  {:<22} {:>10.2} {:>10.2} {:>6.2}x {:>11.2} {:>8.2}x {:>11.0}% {:>11.0}% {:>11.2} \
             {:>11.0}%",
            variant.name,
            unloaded,
            flooded,
            ratio,
            closed_port,
            vs_closed_port,
            idle * 100.0,
            flood_cpu * 100.0,
            per_packet,
            generator * 100.0
        );
        // The threads of the run whose flood-alone CPU is the median.
        let mut by_cost: Vec<&&Measured> = ok.iter().collect();
        by_cost.sort_by(|a, b| a.gateway_flooded.total_cmp(&b.gateway_flooded));
        let threads: Vec<String> = by_cost[by_cost.len() / 2]
            .gateway_threads
            .iter()
            .filter(|(_, share)| *share >= 0.005)
            .map(|(name, share)| format!("{name} {:.0}%", share * 100.0))
            .collect();
        let per_run: Vec<String> = ok
            .iter()
            .map(|m| format!("{:.2}", m.flooded / m.unloaded.max(1.0)))
            .collect();
        println!(
            "  {:<22} ratio per run: {}; gw A's threads under the flood alone: {}",
            "",
            per_run.join(", "),
            threads.join(", ")
        );
        ratios.push([ratio, vs_closed_port]);
        rows.push(Row {
            name: variant.name.to_owned(),
            figures: vec![
                ("tcp_unloaded_gbps", unloaded),
                ("tcp_flooded_gbps", flooded),
                ("ratio", ratio),
                ("tcp_closed_port_flood_gbps", closed_port),
                ("ratio_vs_closed_port", vs_closed_port),
                ("gateway_cpu_idle", idle),
                ("gateway_cpu_flood_alone", flood_cpu),
                ("gateway_us_per_hostile_packet", per_packet),
                ("generator_cpu", generator),
                ("flood_pps", sent),
                ("runs_ok", ok.len() as f64),
            ],
        });
    }
    println!(
        "  medians of {runs} run(s), {seconds} s per iperf3 test; flood {rate:.0} packets/s \
         ({INITIATIONS_PER_ROUND} of every {} are valid-MAC1 initiations); ratio = TCP under the \
         flood / unloaded, same tunnel, back to back (target >= {TARGET_RATIO}); closed port = TCP \
         under the same flood sent to a port of gw A nobody listens on (the generator's and the \
         kernel's share, without the gateway), vs it = flooded / that; gw CPU = gw A's \
         process, % of one core; us/packet = its CPU above idle per hostile packet; generator = \
         the flood thread's CPU, % of one core, taken from this machine's cores",
        INITIATIONS_PER_ROUND + 7
    );
    report::write_json_with("hostile", &[("congestion_control", congestion)], &rows)?;
    chart::draw(
        &report::output_path("hostile", "svg")?,
        &format!(
            "warpline hostile: TCP under a {rate:.0} packets/s flood, {}",
            machine()
        ),
        &[Panel::Bars {
            title: format!("1 TCP stream under the flood (target {TARGET_RATIO} of unloaded)"),
            y_label: "ratio".into(),
            groups: vec![
                "/ unloaded".into(),
                "/ under the flood to a closed port".into(),
            ],
            series: chosen
                .iter()
                .zip(&ratios)
                .map(|(v, r)| Series::bars(v.name, *r))
                .collect(),
        }],
        1,
    )
}
