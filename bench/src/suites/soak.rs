//! `soak`: a gateway under traffic for a long time. An XDP gateway and `--peers` warpline
//! clients in namespaces; every client echoes paced UDP through its tunnel the whole time;
//! protocol timers run 30 times faster (`TestTimerScale`), so every session rekeys every 4 s;
//! every roaming interval all clients move to another outer address. At each sample the
//! gateway's resident memory, open file descriptors, drops by reason, handshakes and the
//! echo loss are recorded; the suite prints the samples, writes `soak.json` and charts them
//! (`soak.svg`). A healthy gateway is flat: memory and descriptors do not grow with time,
//! and drops and lost echoes stay near zero after the first rekeys.
//!
//! With `--failovers` (or `--failover-every S`) the gateway is an active-active HA pair
//! (`HaMode = active-active`, sessions synced over a link of their own) and every client
//! lists both (`Endpoint = A, B`, `FailoverAfter = 1`, `FailBack = 5`). Every failover
//! interval the clients' path to A is cut for 3 s: they move to B, which resumes the synced
//! sessions, and fail back to A once it is reachable again, which takes them back; both
//! gateways live throughout, so their memory and descriptors show what repeated takeovers
//! and yields leave behind. The samples then add B's memory and descriptors, the path cuts
//! so far and the sessions taken over (both gateways); the outputs are `soak-failover.*`.
//!
//! Needs root (namespaces, XDP) and the `warpline` binary next to this one:
//! `cargo xtask bench soak` builds both.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root, unique_name};

use crate::chart::{self, Panel, Series};
use crate::progress::Progress;
use crate::report::{self, Row};

/// Command-line options of the suite.
#[derive(Debug, Default)]
pub struct Options {
    /// How long to run (default 10 minutes, 1 with `--quick`).
    pub minutes: Option<f64>,
    /// Warpline clients, one peer each (default 16).
    pub peers: Option<usize>,
    /// A short run for smoke tests.
    pub quick: bool,
    /// Run an HA pair and cut the clients' path to the first gateway every this many
    /// seconds (`Some(None)`: the default interval); `None`: one gateway.
    pub failover_every: Option<Option<f64>>,
}

const GATEWAY_OUTER: &str = "10.210.0.1";
/// The clients' outer addresses, alternated at each roaming step.
const CLIENT_OUTER: [&str; 2] = ["10.210.0.2", "10.210.0.3"];
const GATEWAY_INNER: &str = "10.97.0.1";
// The clients share one namespace, so each routes to a gateway address of its own
// (`gateway_inner_for`): one route per tunnel, as with clients on separate hosts.
const ECHO_PORT: u16 = 9000;
/// The HA pair's second gateway and the clients' addresses on their link to it.
const GATEWAY_B_OUTER: &str = "10.211.0.1";
const CLIENT_OUTER_B: [&str; 2] = ["10.211.0.2", "10.211.0.3"];
/// The pair's sync link.
const SYNC: [&str; 2] = ["10.212.0.1", "10.212.0.2"];
/// How long each cut of the path to gateway A lasts: longer than the clients' detection
/// (`FailoverAfter = 1`), shorter than their `FailBack = 5`, so each cut is one move to B
/// and one back.
const OUTAGE: Duration = Duration::from_secs(3);
/// Protocol timers divided by this: rekey every 120 s / 30 = 4 s.
const TIMER_SCALE: u32 = 30;
/// One echo per client every this long.
const SEND_INTERVAL: Duration = Duration::from_millis(5);

/// A `warpline up` process, killed when dropped.
struct Daemon {
    child: Child,
    name: String,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one sample found.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    rss_kib: u64,
    fds: u64,
    drops: BTreeMap<String, u64>,
    handshakes: u64,
    echoes_sent: u64,
    echoes_back: u64,
    /// With an HA pair: gateway B's figures, the path cuts so far, and the sessions both
    /// gateways took over.
    pair: Option<PairSample>,
}

#[derive(Debug, Clone, Copy)]
struct PairSample {
    rss_b_kib: u64,
    fds_b: u64,
    path_cuts: u64,
    sessions_taken_over: u64,
}

/// One gateway's figures at a sample.
struct GatewayFigures {
    rss_kib: u64,
    fds: u64,
    drops: BTreeMap<String, u64>,
    handshakes: u64,
    sessions_taken_over: u64,
}

/// The HA pair's second gateway and its links, kept for the run.
struct SecondGateway {
    daemon: Daemon,
    host: Host,
    client_link: Veth,
    _sync_link: Veth,
}

impl Sample {
    fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    require_root()?;
    let binary = warpline_binary()?;
    let minutes = options
        .minutes
        .unwrap_or(if options.quick { 1.0 } else { 10.0 });
    if !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
        return Err(format!(
            "--minutes {minutes}: give a duration from a few seconds to a day"
        ));
    }
    let peers = options.peers.unwrap_or(16);
    if !(1..=150).contains(&peers) {
        return Err(format!("--peers {peers}: give 1 to 150"));
    }
    let duration = Duration::from_secs_f64(minutes * 60.0);
    // Ten samples at least, one a minute on long runs.
    let sample_every = (duration / 10).min(Duration::from_secs(60));
    let roam_every = (duration / 6).clamp(Duration::from_secs(5), Duration::from_secs(120));
    let failover_every = match options.failover_every {
        None => None,
        Some(None) => Some((duration / 6).clamp(Duration::from_secs(10), Duration::from_secs(120))),
        Some(Some(seconds)) if (8.0..=3600.0).contains(&seconds) => {
            Some(Duration::from_secs_f64(seconds))
        }
        Some(Some(seconds)) => {
            return Err(format!(
                "--failover-every {seconds}: give 8 to 3600 seconds (a cut lasts {} s and the \
                 clients fail back after 5 s)",
                OUTAGE.as_secs()
            ));
        }
    };
    println!(
        "soak: {peers} peers for {minutes} min; rekey every {} s, roaming every {} s, a sample \
         every {} s{}",
        120 / TIMER_SCALE,
        roam_every.as_secs(),
        sample_every.as_secs(),
        failover_every.map_or(String::new(), |every| format!(
            "; active-active pair, the path to gateway A cut for {} s every {} s",
            OUTAGE.as_secs(),
            every.as_secs()
        ))
    );

    let lab_error = |what: &'static str| move |e: std::io::Error| format!("soak lab: {what}: {e}");
    let gateway_host = Host::new("sg").map_err(lab_error("gateway namespace"))?;
    let client_host = Host::new("sc").map_err(lab_error("client namespace"))?;
    let veth = Veth::new(&gateway_host, &client_host, 2).map_err(lab_error("veth"))?;
    gateway_host
        .add_address(&veth.a, ip(GATEWAY_OUTER), 24)
        .map_err(lab_error("gateway address"))?;
    client_host
        .add_address(&veth.b, ip(CLIENT_OUTER[0]), 24)
        .map_err(lab_error("client address"))?;
    let dir = TempDir(std::env::temp_dir().join(format!("warpline-soak-{}", unique_name())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("soak: temp dir: {e}"))?;

    let gateway_key = PrivateKey::generate();
    // Any 32 random bytes in base64 make a sync key.
    let ha_key = PrivateKey::generate().to_base64();
    let client_keys: Vec<PrivateKey> = (0..peers).map(|_| PrivateKey::generate()).collect();
    let addresses: Vec<String> = std::iter::once(format!("{GATEWAY_INNER}/16"))
        .chain((0..peers).map(|i| format!("{}/32", gateway_inner_for(i))))
        .collect();
    let mut gateway_config = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = {}\n\
         Attach = {}\nTestTimerScale = {TIMER_SCALE}\n",
        gateway_key.to_base64(),
        addresses.join(", "),
        veth.a.name
    );
    for (i, key) in client_keys.iter().enumerate() {
        gateway_config.push_str(&format!(
            "[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n",
            key.public_key().to_base64(),
            client_inner(i)
        ));
    }
    let ha_keys = |node: usize| {
        format!(
            "HaMode = active-active\nHaNodeId = {node}\nHaKey = {ha_key}\n\
             HaListen = {}:51900\nHaPeer = {}:51900\n",
            SYNC[node],
            SYNC[1 - node]
        )
    };
    let peers_section = gateway_config
        .find("[Peer]")
        .map_or(String::new(), |at| gateway_config[at..].to_owned());
    let interface_section = gateway_config[..gateway_config.len() - peers_section.len()].to_owned();
    if failover_every.is_some() {
        gateway_config = format!("{interface_section}{}{peers_section}", ha_keys(0));
    }
    // Gateway B's namespace and links come first: A listens on the sync link.
    let second_lab = match failover_every {
        None => None,
        Some(_) => {
            let host = Host::new("sb").map_err(lab_error("gateway B namespace"))?;
            let client_link = Veth::new(&host, &client_host, 2).map_err(lab_error("veth B"))?;
            host.add_address(&client_link.a, ip(GATEWAY_B_OUTER), 24)
                .map_err(lab_error("gateway B address"))?;
            client_host
                .add_address(&client_link.b, ip(CLIENT_OUTER_B[0]), 24)
                .map_err(lab_error("client address towards B"))?;
            let sync_link = Veth::new(&gateway_host, &host, 1).map_err(lab_error("sync veth"))?;
            gateway_host
                .add_address(&sync_link.a, ip(SYNC[0]), 24)
                .map_err(lab_error("sync address A"))?;
            host.add_address(&sync_link.b, ip(SYNC[1]), 24)
                .map_err(lab_error("sync address B"))?;
            Some((host, client_link, sync_link))
        }
    };
    let mut gateway = start(&gateway_host, &binary, &dir.0, "g", &gateway_config)?;
    let mut second = match second_lab {
        None => None,
        Some((host, client_link, sync_link)) => {
            let config = format!(
                "{}{}{peers_section}",
                interface_section.replace(&veth.a.name, &client_link.a.name),
                ha_keys(1)
            );
            let daemon = start(&host, &binary, &dir.0, "gb", &config)?;
            Some(SecondGateway {
                daemon,
                host,
                client_link,
                _sync_link: sync_link,
            })
        }
    };
    let endpoints = match failover_every {
        None => format!("{GATEWAY_OUTER}:51820"),
        Some(_) => format!(
            "{GATEWAY_OUTER}:51820, {GATEWAY_B_OUTER}:51820\nFailoverAfter = 1\nFailBack = 5"
        ),
    };
    let mut clients = Vec::new();
    for (i, key) in client_keys.iter().enumerate() {
        let config = format!(
            "[Interface]\nPrivateKey = {}\nAddress = {}/32\nTestTimerScale = {TIMER_SCALE}\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n\
             Endpoint = {endpoints}\nPersistentKeepalive = 5\n",
            key.to_base64(),
            client_inner(i),
            gateway_key.public_key().to_base64(),
            gateway_inner_for(i)
        );
        clients.push(start(
            &client_host,
            &binary,
            &dir.0,
            &format!("c{i}"),
            &config,
        )?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let echo_hosts = std::iter::once(&gateway_host).chain(second.as_ref().map(|b| &b.host));
    let echoes: Vec<JoinHandle<()>> = echo_hosts
        .flat_map(|host| {
            (0..peers).map(|i| echo_server(host, ip(&gateway_inner_for(i)), Arc::clone(&stop)))
        })
        .collect::<Result<_, _>>()?;
    let sent = Arc::new(AtomicU64::new(0));
    let back = Arc::new(AtomicU64::new(0));
    let senders: Vec<JoinHandle<()>> = (0..peers)
        .map(|i| sender(&client_host, i, &stop, &sent, &back))
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    let mut samples = Vec::new();
    let expected_samples =
        (duration.as_secs_f64() / sample_every.as_secs_f64()).ceil() as usize + 1;
    let mut progress = Progress::new("soak", expected_samples);
    let mut next_sample = started;
    let mut next_roam = started + roam_every;
    let mut outer = 0;
    // The path to A is cut by taking the clients' address on that link away.
    let mut next_cut = failover_every.map(|every| started + every / 2);
    let mut cut_until: Option<Instant> = None;
    let mut path_cuts = 0u64;
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_sample {
            let sample = take_sample(
                &binary,
                &gateway,
                second.as_ref().map(|b| &b.daemon),
                started,
                (&sent, &back),
                path_cuts,
            )?;
            progress.step(format!(
                "{:.0} s: RSS {} KiB, {} fds, {} drops, {} handshakes, {}/{} echoes{}",
                sample.seconds,
                sample.rss_kib,
                sample.fds,
                sample.drops_total(),
                sample.handshakes,
                sample.echoes_back,
                sample.echoes_sent,
                sample.pair.map_or(String::new(), |pair| format!(
                    "; B: RSS {} KiB, {} fds; {} path cuts, {} sessions taken over",
                    pair.rss_b_kib, pair.fds_b, pair.path_cuts, pair.sessions_taken_over
                ))
            ));
            samples.push(sample);
            next_sample += sample_every;
        }
        if now >= next_roam {
            let (old, new) = (CLIENT_OUTER[outer], CLIENT_OUTER[1 - outer]);
            // While the path to A is cut the clients have no address there; the restore
            // brings the new one.
            if cut_until.is_none() {
                client_host
                    .netlink(|netlink| netlink.delete_address(veth.b.index, ip(old), 24))
                    .map_err(lab_error("roaming: delete the old address"))?;
                client_host
                    .add_address(&veth.b, ip(new), 24)
                    .map_err(lab_error("roaming: add the new address"))?;
            }
            if let Some(b) = &second {
                let (old, new) = (CLIENT_OUTER_B[outer], CLIENT_OUTER_B[1 - outer]);
                let index = b.client_link.b.index;
                client_host
                    .netlink(|netlink| netlink.delete_address(index, ip(old), 24))
                    .map_err(lab_error("roaming: delete the old address towards B"))?;
                client_host
                    .add_address(&b.client_link.b, ip(new), 24)
                    .map_err(lab_error("roaming: add the new address towards B"))?;
            }
            outer = 1 - outer;
            next_roam += roam_every;
        }
        if let (Some(at), Some(every)) = (next_cut, failover_every)
            && now >= at
            && cut_until.is_none()
        {
            client_host
                .netlink(|netlink| {
                    netlink.delete_address(veth.b.index, ip(CLIENT_OUTER[outer]), 24)
                })
                .map_err(lab_error("failover: cut the path to A"))?;
            cut_until = Some(now + OUTAGE);
            path_cuts += 1;
            next_cut = Some(at + every);
        }
        if cut_until.is_some_and(|until| now >= until) {
            client_host
                .add_address(&veth.b, ip(CLIENT_OUTER[outer]), 24)
                .map_err(lab_error("failover: restore the path to A"))?;
            cut_until = None;
        }
        check_alive(&mut gateway)?;
        if let Some(b) = &mut second {
            check_alive(&mut b.daemon)?;
        }
        for client in &mut clients {
            check_alive(client)?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    samples.push(take_sample(
        &binary,
        &gateway,
        second.as_ref().map(|b| &b.daemon),
        started,
        (&sent, &back),
        path_cuts,
    )?);
    progress.finish();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let _ = sender.join();
    }
    for echo in echoes {
        let _ = echo.join();
    }
    drop(clients);
    drop(second);
    drop(gateway);
    publish(&samples, peers, failover_every)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a literal address")
}

/// The gateway address client `i` echoes through.
fn gateway_inner_for(i: usize) -> String {
    format!("10.97.0.{}", 101 + i)
}

fn client_inner(i: usize) -> String {
    format!("10.97.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// The `warpline` binary in the same directory as this one.
fn warpline_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| format!("soak: where am I: {e}"))?;
    let binary = here.with_file_name("warpline");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "soak needs {} (`cargo xtask bench soak` builds it; or `cargo build --profile \
             bench -p warpline-control`)",
            binary.display()
        ))
    }
}

/// Starts `warpline up` in `host` for `config` and waits for its control socket.
fn start(
    host: &Host,
    binary: &Path,
    dir: &Path,
    label: &str,
    config: &str,
) -> Result<Daemon, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let name = format!("{}{label}", unique_name());
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, config).map_err(|e| format!("soak: write {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("soak: chmod {}: {e}", path.display()))?;
    let socket = dir.join(format!("{name}.sock"));
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("soak: log file: {e}"))?;
    let child = host
        .netns()
        .command(binary)
        .arg("up")
        .arg(&path)
        .arg("--control-socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("soak: start {}: {e}", binary.display()))?;
    let mut daemon = Daemon {
        child,
        name,
        socket,
        log: log_path,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !daemon.socket.exists() {
        check_alive(&mut daemon)?;
        if Instant::now() > deadline {
            return Err(format!("soak: {} did not come up in 15 s", daemon.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(daemon)
}

fn check_alive(daemon: &mut Daemon) -> Result<(), String> {
    match daemon.child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => {
            // The temp dir goes with the run: show the end of the log now.
            let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!(
                "soak: {} exited ({status}); the end of its log:\n{}",
                daemon.name,
                tail.join("\n")
            ))
        }
        Err(e) => Err(format!("soak: {}: {e}", daemon.name)),
    }
}

/// Echoes every datagram sent to `address` in the gateway (bound to it, so answers come
/// from the address the client's AllowedIPs name).
fn echo_server(
    host: &Host,
    address: IpAddr,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let address = SocketAddr::new(address, ECHO_PORT);
    let socket = host
        .run(|| UdpSocket::bind(address))
        .map_err(|e| format!("soak: echo socket: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("soak: echo socket: {e}"))?;
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], from);
            }
        }
    }))
}

/// Sends a paced, numbered echo through client `i`'s tunnel and counts the answers.
fn sender(
    host: &Host,
    i: usize,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
    back: &Arc<AtomicU64>,
) -> Result<JoinHandle<()>, String> {
    let local = SocketAddr::new(ip(&client_inner(i)), 0);
    let socket = host
        .run(|| UdpSocket::bind(local))
        .map_err(|e| format!("soak: sender {i}: {e}"))?;
    socket
        .set_read_timeout(Some(SEND_INTERVAL))
        .map_err(|e| format!("soak: sender {i}: {e}"))?;
    let target = SocketAddr::new(ip(&gateway_inner_for(i)), ECHO_PORT);
    let (stop, sent, back) = (Arc::clone(stop), Arc::clone(sent), Arc::clone(back));
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let mut message = n.to_be_bytes().to_vec();
            message.resize(200, i as u8);
            // A send fails while the client has no outer address (roaming): that counts as
            // sent and lost, as a user would see it.
            let _ = socket.send_to(&message, target);
            sent.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + SEND_INTERVAL;
            while Instant::now() < deadline {
                match socket.recv(&mut buf) {
                    Ok(len) if buf[..len.min(8)] == message[..8] => {
                        back.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(_) => {} // a late answer to an earlier echo
                    Err(_) => break,
                }
            }
            if let Some(rest) = deadline.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
    }))
}

fn take_sample(
    binary: &Path,
    gateway: &Daemon,
    second: Option<&Daemon>,
    started: Instant,
    (sent, back): (&AtomicU64, &AtomicU64),
    path_cuts: u64,
) -> Result<Sample, String> {
    let a = gateway_figures(binary, gateway, second.is_some())?;
    let b = second
        .map(|daemon| gateway_figures(binary, daemon, true))
        .transpose()?;
    let mut drops = a.drops;
    let mut handshakes = a.handshakes;
    if let Some(b) = &b {
        for (reason, count) in &b.drops {
            *drops.entry(reason.clone()).or_default() += count;
        }
        handshakes += b.handshakes;
    }
    Ok(Sample {
        seconds: started.elapsed().as_secs_f64(),
        rss_kib: a.rss_kib,
        fds: a.fds,
        drops,
        handshakes,
        echoes_sent: sent.load(Ordering::Relaxed),
        echoes_back: back.load(Ordering::Relaxed),
        pair: b.map(|b| PairSample {
            rss_b_kib: b.rss_kib,
            fds_b: b.fds,
            path_cuts,
            sessions_taken_over: a.sessions_taken_over + b.sessions_taken_over,
        }),
    })
}

/// Runs `warpline ARGS... <daemon> --json --control-socket <socket>` and parses its JSON.
fn warpline_json(
    binary: &Path,
    daemon: &Daemon,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let output = Command::new(binary)
        .args(args)
        .args([&daemon.name, "--json", "--control-socket"])
        .arg(&daemon.socket)
        .output()
        .map_err(|e| format!("soak: warpline {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "soak: warpline {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("soak: warpline {} printed no JSON: {e}", args.join(" ")))
}

fn gateway_figures(binary: &Path, gateway: &Daemon, ha: bool) -> Result<GatewayFigures, String> {
    let pid = gateway.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("soak: gateway status: {e}"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count() as u64)
        .map_err(|e| format!("soak: gateway fds: {e}"))?;
    let show = warpline_json(binary, gateway, &["show"])?;
    let mut drops = BTreeMap::new();
    for worker in show["workers"].as_array().into_iter().flatten() {
        for pair in worker["drops"].as_array().into_iter().flatten() {
            if let (Some(reason), Some(count)) = (pair[0].as_str(), pair[1].as_u64()) {
                *drops.entry(reason.to_owned()).or_default() += count;
            }
        }
    }
    let handshakes = show["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|peer| peer["handshakes"].as_u64())
        .sum();
    let sessions_taken_over = if ha {
        warpline_json(binary, gateway, &["ha", "status"])?["sessions_taken_over"]
            .as_u64()
            .unwrap_or(0)
    } else {
        0
    };
    Ok(GatewayFigures {
        rss_kib,
        fds,
        drops,
        handshakes,
        sessions_taken_over,
    })
}

/// Growth of `value` from the second sample (after start-up) to the last, as a fraction.
fn growth(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> f64 {
    match (samples.get(1), samples.last()) {
        (Some(first), Some(last)) if value(first) > 0.0 => value(last) / value(first) - 1.0,
        _ => 0.0,
    }
}

fn publish(
    samples: &[Sample],
    peers: usize,
    failover_every: Option<Duration>,
) -> Result<(), String> {
    let suite = if failover_every.is_some() {
        "soak-failover"
    } else {
        "soak"
    };
    let rows: Vec<Row> = samples
        .iter()
        .map(|sample| {
            let mut figures = vec![
                ("seconds", sample.seconds),
                ("rss_kib", sample.rss_kib as f64),
                ("open_fds", sample.fds as f64),
                ("drops", sample.drops_total() as f64),
                ("handshakes", sample.handshakes as f64),
                ("echoes_sent", sample.echoes_sent as f64),
                ("echoes_back", sample.echoes_back as f64),
            ];
            if let Some(pair) = sample.pair {
                figures.extend([
                    ("rss_b_kib", pair.rss_b_kib as f64),
                    ("open_fds_b", pair.fds_b as f64),
                    ("path_cuts", pair.path_cuts as f64),
                    ("sessions_taken_over", pair.sessions_taken_over as f64),
                ]);
            }
            Row {
                name: format!("t = {:.0} s", sample.seconds),
                figures,
            }
        })
        .collect();
    report::publish(suite, &rows)?;
    let last = samples.last().ok_or("soak: no samples")?;
    let lost = last.echoes_sent.saturating_sub(last.echoes_back);
    println!(
        "  {peers} peers, {:.0} s: RSS {:+.1}% and open fds {:+.1}% from the second sample to the \
         last; {} handshakes; {lost} of {} echoes lost ({:.3}%); drops by reason: {:?}",
        last.seconds,
        100.0 * growth(samples, |s| s.rss_kib as f64),
        100.0 * growth(samples, |s| s.fds as f64),
        last.handshakes,
        last.echoes_sent,
        100.0 * lost as f64 / last.echoes_sent.max(1) as f64,
        last.drops
    );
    if let Some(pair) = last.pair {
        println!(
            "  HA pair: gateway B RSS {:+.1}%, open fds {:+.1}% from the second sample to the \
             last; {} path cuts, {} sessions taken over (both gateways)",
            100.0 * growth(samples, |s| s.pair.map_or(0.0, |p| p.rss_b_kib as f64)),
            100.0 * growth(samples, |s| s.pair.map_or(0.0, |p| p.fds_b as f64)),
            pair.path_cuts,
            pair.sessions_taken_over
        );
    }
    let line = |name: &str, value: &dyn Fn(&Sample) -> f64| {
        Series::line(
            name,
            samples.iter().map(|s| (s.seconds, value(s))).collect(),
        )
    };
    let ha = failover_every.is_some();
    let with_b = |first: Series, b: &dyn Fn(PairSample) -> f64| {
        let mut series = vec![first];
        if ha {
            series.push(line("gateway B", &|s| s.pair.map_or(0.0, b)));
        }
        series
    };
    let mut handshake_series = vec![line("handshakes", &|s| s.handshakes as f64)];
    if ha {
        handshake_series.push(line("sessions taken over", &|s| {
            s.pair.map_or(0.0, |p| p.sessions_taken_over as f64)
        }));
        handshake_series.push(line("path cuts", &|s| {
            s.pair.map_or(0.0, |p| p.path_cuts as f64)
        }));
    }
    let first_name = if ha { "gateway A" } else { "RSS" };
    let panels = [
        Panel::Lines {
            title: "gateway resident memory".into(),
            x_label: "seconds".into(),
            y_label: "KiB".into(),
            series: with_b(line(first_name, &|s| s.rss_kib as f64), &|p| {
                p.rss_b_kib as f64
            }),
            reference: None,
        },
        Panel::Lines {
            title: "gateway open file descriptors".into(),
            x_label: "seconds".into(),
            y_label: "fds".into(),
            series: with_b(
                line(if ha { "gateway A" } else { "fds" }, &|s| s.fds as f64),
                &|p| p.fds_b as f64,
            ),
            reference: None,
        },
        Panel::Lines {
            title: "drops and lost echoes (cumulative)".into(),
            x_label: "seconds".into(),
            y_label: "packets".into(),
            series: vec![
                line("drops", &|s| s.drops_total() as f64),
                line("lost echoes", &|s| {
                    s.echoes_sent.saturating_sub(s.echoes_back) as f64
                }),
            ],
            reference: None,
        },
        Panel::Lines {
            title: if ha {
                "handshakes, takeovers, path cuts (cumulative)".into()
            } else {
                "handshakes (cumulative)".into()
            },
            x_label: "seconds".into(),
            y_label: "count".into(),
            series: handshake_series,
            reference: None,
        },
    ];
    let path = report::output_path(suite, "svg")?;
    let title = match failover_every {
        None => format!("soak: {peers} peers, rekey every 4 s, roaming"),
        Some(every) => format!(
            "soak: {peers} peers, rekey every 4 s, roaming, HA pair with the path to A cut every {} s",
            every.as_secs()
        ),
    };
    chart::draw(&path, &title, &panels, 2)
}
