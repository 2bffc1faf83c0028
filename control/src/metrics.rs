//! Prometheus metrics: the same snapshot `warpline show` prints, in the text exposition
//! format, served over plain HTTP on an address the operator chooses (`MetricsAddress`).
//!
//! A tiny server of our own on `std::net`: one GET path, no keep-alive, bounded request
//! size and time; a scraper is one client every few seconds, which does not warrant an HTTP
//! stack as a dependency.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ctl::model::InterfaceSnapshot;

/// Largest request head read before answering; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// Escapes a label value as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot as Prometheus text (format version 0.0.4).
pub fn render_prometheus(snapshot: &InterfaceSnapshot) -> String {
    let mut out = String::new();
    let iface = label(&snapshot.name);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{interface=\"{iface}\"{labels}}} {value}");
        }
    };
    let peer_samples = |f: &dyn Fn(&crate::ctl::model::PeerSnapshot) -> Option<u64>| {
        snapshot
            .peers
            .iter()
            .filter_map(|p| f(p).map(|v| (format!(",peer=\"{}\"", label(&p.public_key)), v)))
            .collect::<Vec<_>>()
    };
    family(
        "warpline_peer_receive_bytes_total",
        "counter",
        "Transport bytes received from the peer.",
        &peer_samples(&|p| Some(p.rx_bytes)),
    );
    family(
        "warpline_peer_transmit_bytes_total",
        "counter",
        "Transport bytes sent to the peer.",
        &peer_samples(&|p| Some(p.tx_bytes)),
    );
    family(
        "warpline_peer_handshakes_total",
        "counter",
        "Handshakes completed with the peer since the gateway started.",
        &peer_samples(&|p| Some(p.handshakes)),
    );
    family(
        "warpline_peer_latest_handshake_seconds",
        "gauge",
        "Unix time of the peer's latest completed handshake.",
        &peer_samples(&|p| p.latest_handshake_unix_secs),
    );
    let worker = |w: &crate::ctl::model::WorkerSnapshot| format!(",worker=\"{}\"", w.id);
    family(
        "warpline_worker_receive_packets_total",
        "counter",
        "Packets received by the worker.",
        &snapshot
            .workers
            .iter()
            .map(|w| (worker(w), w.rx_packets))
            .collect::<Vec<_>>(),
    );
    family(
        "warpline_worker_transmit_packets_total",
        "counter",
        "Packets sent by the worker.",
        &snapshot
            .workers
            .iter()
            .map(|w| (worker(w), w.tx_packets))
            .collect::<Vec<_>>(),
    );
    family(
        "warpline_worker_dropped_packets_total",
        "counter",
        "Packets dropped by the worker, by reason.",
        &snapshot
            .workers
            .iter()
            .flat_map(|w| {
                w.drops.iter().map(move |(reason, count)| {
                    (
                        format!("{},reason=\"{}\"", worker(w), label(reason)),
                        *count,
                    )
                })
            })
            .collect::<Vec<_>>(),
    );
    family(
        "warpline_worker_events_total",
        "counter",
        "Worker events by name: frames per socket, packets handed to the kernel, ICMP errors \
         sent, chunks dealt and helped (see docs/metrics.md).",
        &snapshot
            .workers
            .iter()
            .flat_map(|w| {
                w.counters.iter().map(move |(name, count)| {
                    (format!("{},event=\"{}\"", worker(w), label(name)), *count)
                })
            })
            .collect::<Vec<_>>(),
    );
    out
}

/// A running metrics endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `GET /metrics` on `address`; `fetch` returns the current snapshot (or `None`
    /// when the daemon cannot produce one, answered with 503).
    pub fn start(
        address: SocketAddr,
        fetch: impl Fn() -> Option<InterfaceSnapshot> + Send + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warpline-metrics".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = answer(stream, &fetch);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(Self {
            stop,
            local,
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    mut stream: TcpStream,
    fetch: &impl Fn() -> Option<InterfaceSnapshot>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return respond(&mut stream, "400 Bad Request", "bad request\n");
        }
        head.extend_from_slice(&buf[..n]);
    }
    let first_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    if !(first_line.starts_with(b"GET /metrics ") || first_line.starts_with(b"GET / ")) {
        return respond(&mut stream, "404 Not Found", "try /metrics\n");
    }
    match fetch() {
        Some(snapshot) => respond(&mut stream, "200 OK", &render_prometheus(&snapshot)),
        None => respond(&mut stream, "503 Service Unavailable", "daemon busy\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::{PeerSnapshot, WorkerSnapshot};

    fn snapshot() -> InterfaceSnapshot {
        InterfaceSnapshot {
            name: "wl0".into(),
            public_key: "A".repeat(43) + "=",
            listen_port: Some(51820),
            peers: vec![PeerSnapshot {
                public_key: "B".repeat(43) + "=",
                endpoint: None,
                allowed_ips: vec![],
                latest_handshake_unix_secs: Some(1_700_000_000),
                handshakes: 7,
                rx_bytes: 1234,
                tx_bytes: 99,
                persistent_keepalive_secs: None,
                cipher: "chacha20poly1305".into(),
                preshared_key: false,
                failover: None,
            }],
            workers: vec![WorkerSnapshot {
                id: 0,
                core: None,
                rx_packets: 10,
                tx_packets: 11,
                drops: vec![("bad \"tag\"".into(), 3)],
                counters: vec![("lan_rx_frames".into(), 9)],
            }],
        }
    }

    #[test]
    fn exposition_has_typed_families_and_escaped_labels() {
        let text = render_prometheus(&snapshot());
        let peer = format!("peer=\"{}\"", "B".repeat(43) + "=");
        assert!(text.contains("# TYPE warpline_peer_receive_bytes_total counter"));
        assert!(text.contains(&format!(
            "warpline_peer_receive_bytes_total{{interface=\"wl0\",{peer}}} 1234"
        )));
        assert!(text.contains(&format!(
            "warpline_peer_handshakes_total{{interface=\"wl0\",{peer}}} 7"
        )));
        assert!(text.contains(
            "warpline_worker_dropped_packets_total{interface=\"wl0\",worker=\"0\",\
             reason=\"bad \\\"tag\\\"\"} 3"
        ));
        assert!(
            !text.contains(&"A".repeat(43)),
            "the interface key is not a metric label"
        );
    }

    #[test]
    fn serves_metrics_over_http_and_refuses_other_paths() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), || Some(snapshot())).unwrap();
        let get = |path: &str| {
            let mut stream = TcpStream::connect(server.local_addr()).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            text
        };
        let metrics = get("/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(metrics.contains("warpline_worker_transmit_packets_total"));
        assert!(
            metrics.contains(
                "warpline_worker_events_total{interface=\"wl0\",worker=\"0\",event=\"lan_rx_frames\"} 9"
            ),
            "{metrics}"
        );
        assert!(get("/secret").starts_with("HTTP/1.1 404"));
        let mut garbage = TcpStream::connect(server.local_addr()).unwrap();
        garbage.write_all(&[b'x'; MAX_REQUEST + 10]).unwrap();
        let mut text = String::new();
        let _ = garbage.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
}
