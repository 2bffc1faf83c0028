//! The lab demo behind `cargo xtask demo`: a warpline gateway, two warpline clients
//! (ChaCha20-Poly1305 and the AES-256-GCM extension) and a stock WireGuard client
//! (boringtun-cli configured with `wg`, when installed), each in its own network namespace,
//! joined by veth links; the gateway attaches XDP to its links and runs AF_XDP workers; every client streams TCP through its tunnel to the gateway for a
//! few seconds while a live line shows throughput; then a summary table and the gateway's
//! `warpline show`. Needs root (namespaces, TUN); everything it creates goes away with it.
//!
//! Usage: gateway_demo <path to the warpline binary> [seconds]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use warpline_control::ctl::{self, Request, Response};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, NetNs, Veth, require_root, unique_name};

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = ctl::request(&self.socket, &Request::Down);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_in(binary: &Path, netns: &NetNs, config: &Path, socket: &Path, log: &Path) -> Daemon {
    let log_path = log.to_path_buf();
    let log = std::fs::File::create(log).expect("demo log file");
    let mut command = netns.command(binary);
    command
        .arg("up")
        .arg(config)
        .arg("--control-socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut daemon = Daemon {
        child: command.spawn().expect("start warpline up"),
        socket: socket.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.socket.exists() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!(
                "warpline up exited early ({status}); see {}",
                log_path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "warpline up did not start in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// How a client runs its end of the tunnel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Warpline,
    /// The stock WireGuard client boringtun-cli, configured with `wg setconf`.
    Stock,
}

struct Client {
    kind: Kind,
    label: &'static str,
    host: Host,
    key: PrivateKey,
    tunnel_ip: String,
    cipher: &'static str,
    bytes: Arc<AtomicU64>,
}

/// `program` from PATH or cargo's bin directory (where `cargo xtask deps` installs).
fn find_tool(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A boringtun-cli process, killed on drop (its UAPI socket removed).
struct StockClient {
    child: Child,
    socket: PathBuf,
}

impl Drop for StockClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Starts boringtun-cli in the client's namespace, addresses and routes its TUN over netlink,
/// and configures it with `wg setconf`, as a user of the stock tools would.
fn start_stock_client(
    boringtun: &Path,
    wg: &Path,
    dir: &Path,
    client: &Client,
    index: usize,
    gateway: &PrivateKey,
) -> StockClient {
    let ifname = format!("{}s", unique_name());
    let socket = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    let log = std::fs::File::create(dir.join("boringtun.log")).expect("log file");
    let child = client
        .host
        .netns()
        .command(boringtun)
        .args(["--foreground", "--disable-drop-privileges", &ifname])
        .env("WG_SUDO", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start boringtun-cli");
    let stock = StockClient {
        child,
        socket: socket.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "boringtun-cli did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    client
        .host
        .netlink(|netlink| {
            let link = netlink.link_by_name(&ifname)?.index;
            netlink.add_address(link, client.tunnel_ip.parse().expect("IPv4"), 32)?;
            netlink.set_up(link)?;
            netlink.add_route(link, "10.99.0.1".parse().expect("IPv4"), 32)
        })
        .expect("address the stock client's TUN");
    let config = write_config(
        dir,
        &ifname,
        &format!(
            "[Interface]\nPrivateKey = {}\n\n[Peer]\nPublicKey = {}\n\
             AllowedIPs = 10.99.0.1/32\nEndpoint = 10.{}.0.1:51820\n",
            client.key.to_base64(),
            gateway.public_key(),
            100 + index
        ),
    );
    let status = client
        .host
        .netns()
        .command(wg)
        .arg("setconf")
        .arg(&ifname)
        .arg(&config)
        .status()
        .expect("run wg setconf");
    assert!(status.success(), "wg setconf failed: {status}");
    stock
}

fn main() {
    let mut args = std::env::args().skip(1);
    let binary = PathBuf::from(
        args.next()
            .expect("usage: gateway_demo <warpline binary> [seconds]"),
    );
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    if let Err(reason) = require_root() {
        eprintln!("the lab demo {reason}; run `cargo xtask demo` as root");
        std::process::exit(1);
    }
    let dir = std::env::temp_dir().join(format!("warpline-demo-{}", unique_name()));
    std::fs::create_dir_all(&dir).expect("demo directory");

    println!(
        "warpline lab demo: a gateway and its clients in network namespaces, {seconds} s of TCP"
    );
    println!(
        "  the gateway runs in XDP mode: the steering program on each client link, one AF_XDP \
         worker per link queue; the clients run warpline's portable mode or boringtun-cli"
    );
    let gateway = Host::new("gw").expect("namespace");
    let gateway_key = PrivateKey::generate();
    let stock_tools = find_tool("boringtun-cli").zip(find_tool("wg"));
    let mut clients = vec![
        Client {
            kind: Kind::Warpline,
            label: "warpline client (ChaCha20-Poly1305)",
            host: Host::new("c1").expect("namespace"),
            key: PrivateKey::generate(),
            tunnel_ip: "10.99.0.2".into(),
            cipher: "chacha20poly1305",
            bytes: Arc::default(),
        },
        Client {
            kind: Kind::Warpline,
            label: "warpline client (AES-256-GCM)",
            host: Host::new("c2").expect("namespace"),
            key: PrivateKey::generate(),
            tunnel_ip: "10.99.0.3".into(),
            cipher: "aes256gcm",
            bytes: Arc::default(),
        },
    ];
    if stock_tools.is_some() {
        clients.push(Client {
            kind: Kind::Stock,
            label: "stock WireGuard client (boringtun-cli)",
            host: Host::new("c3").expect("namespace"),
            key: PrivateKey::generate(),
            tunnel_ip: "10.99.0.4".into(),
            cipher: "chacha20poly1305",
            bytes: Arc::default(),
        });
    } else {
        println!(
            "  (boringtun-cli or wg not found: `cargo xtask deps` installs them; running without the stock client)"
        );
    }
    let mut gateway_peers = String::new();
    let mut gateway_links = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let veth = Veth::new(&gateway, &client.host, 1).expect("veth");
        gateway_links.push(veth.a.name.clone());
        let subnet = 100 + i;
        gateway
            .add_address(&veth.a, format!("10.{subnet}.0.1").parse().unwrap(), 24)
            .expect("address");
        client
            .host
            .add_address(&veth.b, format!("10.{subnet}.0.2").parse().unwrap(), 24)
            .expect("address");
        gateway_peers += &format!(
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\nCipher = {}\n",
            client.key.public_key(),
            client.tunnel_ip,
            client.cipher
        );
    }
    let gw_name = format!("{}g", unique_name());
    let gw_config = write_config(
        &dir,
        &gw_name,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.99.0.1/32\n\
             Attach = {}\nXdpMode = native\n{gateway_peers}",
            gateway_key.to_base64(),
            gateway_links.join(", ")
        ),
    );
    let gw_socket = dir.join("gateway.sock");
    let _gw = spawn_in(
        &binary,
        gateway.netns(),
        &gw_config,
        &gw_socket,
        &dir.join("gateway.log"),
    );
    let mut daemons = Vec::new();
    let mut stock_clients = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        if client.kind == Kind::Stock {
            let (boringtun, wg) = stock_tools.clone().expect("checked above");
            stock_clients.push(start_stock_client(
                &boringtun,
                &wg,
                &dir,
                client,
                i,
                &gateway_key,
            ));
            continue;
        }
        let name = format!("{}c", unique_name());
        let config = write_config(
            &dir,
            &name,
            &format!(
                "[Interface]\nPrivateKey = {}\nAddress = {}/32\n\n[Peer]\nPublicKey = {}\n\
                 AllowedIPs = 10.99.0.1/32\nEndpoint = 10.{}.0.1:51820\nCipher = {}\n",
                client.key.to_base64(),
                client.tunnel_ip,
                gateway_key.public_key(),
                100 + i,
                client.cipher
            ),
        );
        daemons.push(spawn_in(
            &binary,
            client.host.netns(),
            &config,
            &dir.join(format!("{name}.sock")),
            &dir.join(format!("{name}.log")),
        ));
    }

    // A TCP sink on the gateway's tunnel address; each client streams into it.
    let listener = gateway.run(|| TcpListener::bind("10.99.0.1:5201").expect("listen"));
    let stop = Arc::new(AtomicBool::new(false));
    let sink_stop = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let stop = sink_stop.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 65536];
                while !stop.load(Relaxed) && matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let mut senders = Vec::new();
    for client in &mut clients {
        let bytes = client.bytes.clone();
        let stop = stop.clone();
        let stream = client.host.run(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match TcpStream::connect_timeout(
                    &"10.99.0.1:5201".parse().unwrap(),
                    Duration::from_secs(2),
                ) {
                    Ok(stream) => break stream,
                    Err(e) if Instant::now() > deadline => panic!("no TCP through the tunnel: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        senders.push(std::thread::spawn(move || {
            let mut stream = stream;
            let chunk = vec![0x5au8; 64 * 1024];
            while !stop.load(Relaxed) {
                match stream.write(&chunk) {
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Relaxed);
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    let legend: Vec<&str> = clients.iter().map(|c| c.label).collect();
    println!(
        "  live rate per client, in this order: {}",
        legend.join(" | ")
    );
    let start = Instant::now();
    let mut last_packets = (0u64, Instant::now());
    let mut gateway_line = String::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(250));
        let secs = start.elapsed().as_secs_f64();
        if let Ok(Response::Show(snapshot)) = ctl::request(&gw_socket, &Request::Show) {
            let packets: u64 = snapshot
                .workers
                .iter()
                .map(|w| w.rx_packets + w.tx_packets)
                .sum();
            let elapsed = last_packets.1.elapsed().as_secs_f64().max(1e-3);
            let rate = packets.saturating_sub(last_packets.0) as f64 / elapsed;
            last_packets = (packets, Instant::now());
            let up = snapshot
                .peers
                .iter()
                .filter(|p| p.latest_handshake_unix_secs.is_some())
                .count();
            gateway_line = format!(
                "| gateway {:>6.0} kpps, {up}/{} peers handshaken",
                rate / 1e3,
                snapshot.peers.len()
            );
        }
        let rates: Vec<String> = clients
            .iter()
            .map(|c| {
                format!(
                    "{:>7.1} Mbit/s",
                    c.bytes.load(Relaxed) as f64 * 8.0 / secs / 1e6
                )
            })
            .collect();
        print!(
            "\r  {secs:4.1} s   {}   {gateway_line}  ",
            rates.join("   ")
        );
        let _ = std::io::stdout().flush();
    }
    stop.store(true, Relaxed);
    for sender in senders {
        let _ = sender.join();
    }
    println!("\n");
    println!(
        "  {:<38} {:>12} {:>14}",
        "client", "sent (MiB)", "rate (Mbit/s)"
    );
    for client in &clients {
        let bytes = client.bytes.load(Relaxed);
        println!(
            "  {:<38} {:>12.1} {:>14.1}",
            client.label,
            bytes as f64 / (1024.0 * 1024.0),
            bytes as f64 * 8.0 / seconds as f64 / 1e6
        );
    }
    println!("\n$ warpline show {gw_name}");
    match ctl::request(&gw_socket, &Request::Show) {
        Ok(Response::Show(snapshot)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            print!("{}", ctl::render::render_show(&snapshot, now));
        }
        other => println!("(no answer from the gateway: {other:?})"),
    }
    let all_passed = clients.iter().all(|c| c.bytes.load(Relaxed) > 0);
    drop(daemons);
    drop(stock_clients);
    let _ = std::fs::remove_dir_all(&dir);
    if all_passed {
        println!("\ndemo OK: every client's traffic crossed its tunnel");
    } else {
        println!("\ndemo FAILED: a client moved no data");
        std::process::exit(1);
    }
}
