//! `warpline show` output: `wg show`'s text for people, JSON for machines.
//!
//! The text repeats wireguard-tools' `show` layout and wording exactly (same labels, same
//! two-space indents, peers sorted by latest handshake, `1 minute, 5 seconds ago`,
//! `1.20 MiB received, 3.40 KiB sent`), so that people, scripts and habits built on `wg show`
//! carry over. It is plain text: no terminal colours. warpline's own additions come where `wg`
//! has nothing to say: a `cipher` line for a peer whose suite is not the WireGuard default, and a
//! section per data plane worker with its packet counters and drop reasons.
//!
//! Time is passed in (`now_unix_secs`) so the output is a pure function of its inputs.

use std::fmt::Write as _;

use super::model::{InterfaceSnapshot, PeerSnapshot, WorkerSnapshot};

/// The cipher `wg` peers use; a peer on it gets no `cipher` line, as in `wg show`.
const DEFAULT_CIPHER: &str = "chacha20poly1305";

/// Renders `snapshot` as `wg show <interface>` would, plus warpline's worker section.
///
/// `now_unix_secs` is the current time, for "latest handshake: ... ago".
pub fn render_show(snapshot: &InterfaceSnapshot, now_unix_secs: u64) -> String {
    let mut out = String::new();
    // `fmt::Write` for `String` cannot fail; the results are ignored for that reason.
    let _ = writeln!(out, "interface: {}", snapshot.name);
    let _ = writeln!(out, "  public key: {}", snapshot.public_key);
    if let Some(port) = snapshot.listen_port.filter(|&port| port != 0) {
        let _ = writeln!(out, "  listening port: {port}");
    }

    let mut peers: Vec<&PeerSnapshot> = snapshot.peers.iter().collect();
    // As `wg show`: most recent handshake first, peers that never had one last.
    peers.sort_by_key(|peer| std::cmp::Reverse(handshake(peer).unwrap_or(0)));
    for peer in peers {
        out.push('\n');
        render_peer(&mut out, peer, now_unix_secs);
    }

    for worker in &snapshot.workers {
        out.push('\n');
        render_worker(&mut out, worker);
    }
    out
}

/// The snapshot as pretty-printed JSON (the [`InterfaceSnapshot`] fields), newline-terminated:
/// `warpline show --json`.
pub fn render_json(snapshot: &InterfaceSnapshot) -> String {
    // Strings, integers, booleans, options and lists only: serializing cannot fail.
    let mut json = serde_json::to_string_pretty(snapshot).unwrap_or_else(|error| {
        serde_json::json!({ "error": format!("cannot encode: {error}") }).to_string()
    });
    json.push('\n');
    json
}

/// A handshake time of 0 means "never", as in `wg`.
fn handshake(peer: &PeerSnapshot) -> Option<u64> {
    peer.latest_handshake_unix_secs.filter(|&secs| secs != 0)
}

fn render_peer(out: &mut String, peer: &PeerSnapshot, now: u64) {
    let _ = writeln!(out, "peer: {}", peer.public_key);
    if peer.preshared_key {
        let _ = writeln!(out, "  preshared key: (hidden)");
    }
    if let Some(endpoint) = &peer.endpoint {
        let _ = writeln!(out, "  endpoint: {endpoint}");
    }
    if let Some(failover) = &peer.failover {
        // Per-endpoint keepalives, in the config's syntax, only where they differ.
        let keepalives = &failover.keepalive_secs;
        let show_keepalives = keepalives.windows(2).any(|pair| pair[0] != pair[1]);
        let list: Vec<String> = failover
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| {
                let keepalive = match keepalives.get(index) {
                    Some(Some(secs)) if show_keepalives => format!(" keepalive={secs}"),
                    Some(None) if show_keepalives => " keepalive=off".to_owned(),
                    _ => String::new(),
                };
                match (failover.active == Some(index), &failover.active_address) {
                    (true, Some(address)) if *address != *endpoint => {
                        format!("{endpoint}{keepalive} (active: {address})")
                    }
                    (true, _) => format!("{endpoint}{keepalive} (active)"),
                    (false, _) => format!("{endpoint}{keepalive}"),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "  endpoints: {} ({} failovers)",
            list.join(", "),
            failover.switches
        );
    }
    if peer.allowed_ips.is_empty() {
        let _ = writeln!(out, "  allowed ips: (none)");
    } else {
        let _ = writeln!(out, "  allowed ips: {}", peer.allowed_ips.join(", "));
    }
    if let Some(at) = handshake(peer) {
        let _ = writeln!(out, "  latest handshake: {}", ago(at, now));
    }
    if peer.rx_bytes != 0 || peer.tx_bytes != 0 {
        let _ = writeln!(
            out,
            "  transfer: {} received, {} sent",
            bytes(peer.rx_bytes),
            bytes(peer.tx_bytes)
        );
    }
    if let Some(secs) = peer.persistent_keepalive_secs.filter(|&secs| secs != 0) {
        let _ = writeln!(
            out,
            "  persistent keepalive: every {}",
            pretty_time(u64::from(secs))
        );
    }
    if !peer.cipher.eq_ignore_ascii_case(DEFAULT_CIPHER) {
        let _ = writeln!(out, "  cipher: {}", peer.cipher);
    }
}

fn render_worker(out: &mut String, worker: &WorkerSnapshot) {
    let _ = writeln!(out, "worker: {}", worker.id);
    if let Some(core) = worker.core {
        let _ = writeln!(out, "  core: {core}");
    }
    let _ = writeln!(
        out,
        "  packets: {} received, {} sent",
        worker.rx_packets, worker.tx_packets
    );
    let total = worker
        .drops
        .iter()
        .fold(0u64, |sum, (_, count)| sum.saturating_add(*count));
    let reasons: Vec<String> = worker
        .drops
        .iter()
        .filter(|(_, count)| *count != 0)
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    if reasons.is_empty() {
        let _ = writeln!(out, "  drops: {total}");
    } else {
        let _ = writeln!(out, "  drops: {total} ({})", reasons.join(", "));
    }
}

/// `wg`'s `ago()`: "Now", "N units ago", or a warning when the clock went backwards.
fn ago(then: u64, now: u64) -> String {
    match now.checked_sub(then) {
        Some(0) => "Now".to_owned(),
        Some(elapsed) => format!("{} ago", pretty_time(elapsed)),
        None => "(System clock wound backward; connection problems may ensue.)".to_owned(),
    }
}

/// `wg`'s `pretty_time()`: years (of 365 days), days, hours, minutes, seconds; zero parts
/// left out, each part singular or plural, joined by ", ".
fn pretty_time(secs: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    let parts = [
        (secs / YEAR, "year"),
        (secs % YEAR / DAY, "day"),
        (secs % DAY / HOUR, "hour"),
        (secs % HOUR / MINUTE, "minute"),
        (secs % MINUTE, "second"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|&(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `wg`'s `bytes()`: whole bytes below 1 KiB, else two decimals of KiB, MiB, GiB or TiB,
/// computed and rounded as C's `printf("%.2f", (double)b / unit)` does.
fn bytes(b: u64) -> String {
    const KIB: u64 = 1024;
    if b < KIB {
        return format!("{b} B");
    }
    let (unit, name) = [
        (KIB, "KiB"),
        (KIB.pow(2), "MiB"),
        (KIB.pow(3), "GiB"),
        (KIB.pow(4), "TiB"),
    ]
    .into_iter()
    .find(|&(unit, _)| b < unit * KIB)
    .unwrap_or((KIB.pow(4), "TiB"));
    // As in C: the count as a double, divided by a power of two (exact); `{:.2}` rounds the
    // exact value half-to-even, like glibc.
    #[allow(clippy::cast_precision_loss)]
    let value = b as f64 / unit as f64;
    format!("{value:.2} {name}")
}

/// `warpline ha status` as text.
pub fn ha_status(status: &super::model::HaSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ha: {} node {} ({}), counter epoch {}",
        status.role, status.node_id, status.mode, status.highest_epoch
    );
    let _ = writeln!(
        out,
        "  sessions: {} owned, {} held for takeover",
        status.sessions_owned, status.records_held
    );
    for partner in &status.partners {
        let id = partner
            .node_id
            .map_or_else(|| "?".to_owned(), |id| id.to_string());
        let heard = partner
            .last_heard_ms_ago
            .map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms ago"));
        let _ = writeln!(
            out,
            "  partner {} (node {id}): {}, {} sessions synced, last heard {heard}",
            partner.address,
            if partner.connected {
                "connected"
            } else {
                "down"
            },
            partner.records
        );
    }
    let _ = writeln!(
        out,
        "  takeovers: {} ({} sessions), yielded {}, import failures {}, protocol errors {}",
        status.takeovers,
        status.sessions_taken_over,
        status.sessions_yielded,
        status.import_failures,
        status.protocol_errors
    );
    if !status.tracked_down.is_empty() {
        let _ = writeln!(
            out,
            "  faulted: tracked interface down: {} (not eligible to be active)",
            status.tracked_down.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::EndpointsSnapshot;

    const NOW: u64 = 1_764_000_000;

    fn snapshot() -> InterfaceSnapshot {
        InterfaceSnapshot {
            name: "wg0".into(),
            public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into(),
            listen_port: Some(51820),
            peers: vec![
                PeerSnapshot {
                    public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                    endpoint: None,
                    allowed_ips: vec![],
                    latest_handshake_unix_secs: None,
                    handshakes: 0,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive_secs: None,
                    cipher: "chacha20poly1305".into(),
                    preshared_key: false,
                    failover: None,
                },
                PeerSnapshot {
                    public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=".into(),
                    endpoint: Some("[2001:db8::1]:51820".into()),
                    allowed_ips: vec!["10.192.124.0/24".into(), "fd00:1::/64".into()],
                    latest_handshake_unix_secs: Some(NOW - 65),
                    handshakes: 0,
                    rx_bytes: 1_258_291,
                    tx_bytes: 3_482,
                    persistent_keepalive_secs: Some(25),
                    cipher: "aes256gcm".into(),
                    preshared_key: true,
                    failover: None,
                },
                PeerSnapshot {
                    public_key: "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=".into(),
                    endpoint: Some("203.0.113.7:51820".into()),
                    allowed_ips: vec!["10.10.10.230/32".into()],
                    latest_handshake_unix_secs: Some(NOW),
                    handshakes: 0,
                    rx_bytes: 512,
                    tx_bytes: 0,
                    persistent_keepalive_secs: None,
                    cipher: "chacha20poly1305".into(),
                    preshared_key: false,
                    failover: None,
                },
            ],
            workers: vec![
                WorkerSnapshot {
                    id: 0,
                    core: Some(2),
                    rx_packets: 1_000_000,
                    tx_packets: 999_990,
                    drops: vec![
                        ("replay".into(), 7),
                        ("bad tag".into(), 0),
                        ("no route".into(), 3),
                    ],
                    counters: vec![("lan_rx_frames".into(), 5)],
                },
                WorkerSnapshot {
                    id: 1,
                    core: None,
                    rx_packets: 0,
                    tx_packets: 0,
                    drops: vec![],
                    counters: vec![],
                },
            ],
        }
    }

    #[test]
    fn show_text_matches_wg_layout() {
        let expected = "\
interface: wg0
  public key: HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
  listening port: 51820

peer: gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=
  endpoint: 203.0.113.7:51820
  allowed ips: 10.10.10.230/32
  latest handshake: Now
  transfer: 512 B received, 0 B sent

peer: TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
  preshared key: (hidden)
  endpoint: [2001:db8::1]:51820
  allowed ips: 10.192.124.0/24, fd00:1::/64
  latest handshake: 1 minute, 5 seconds ago
  transfer: 1.20 MiB received, 3.40 KiB sent
  persistent keepalive: every 25 seconds
  cipher: aes256gcm

peer: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
  allowed ips: (none)

worker: 0
  core: 2
  packets: 1000000 received, 999990 sent
  drops: 10 (replay 7, no route 3)

worker: 1
  packets: 0 received, 0 sent
  drops: 0
";
        assert_eq!(render_show(&snapshot(), NOW), expected);
    }

    #[test]
    fn bare_interface() {
        let snapshot = InterfaceSnapshot {
            name: "wg1".into(),
            public_key: "k".into(),
            listen_port: None,
            peers: vec![],
            workers: vec![],
        };
        assert_eq!(
            render_show(&snapshot, NOW),
            "interface: wg1\n  public key: k\n"
        );
    }

    #[test]
    fn times_like_wg() {
        assert_eq!(ago(NOW, NOW), "Now");
        assert_eq!(ago(NOW - 1, NOW), "1 second ago");
        assert_eq!(ago(NOW - 60, NOW), "1 minute ago");
        assert_eq!(ago(NOW - 3_600 - 2, NOW), "1 hour, 2 seconds ago");
        assert_eq!(
            ago(NOW - (366 * 86_400 + 2 * 3_600 + 3 * 60 + 4), NOW),
            "1 year, 1 day, 2 hours, 3 minutes, 4 seconds ago"
        );
        assert_eq!(ago(NOW - 2 * 365 * 86_400, NOW), "2 years ago");
        assert_eq!(
            ago(NOW + 5, NOW),
            "(System clock wound backward; connection problems may ensue.)"
        );
        assert_eq!(pretty_time(25), "25 seconds");
        assert_eq!(pretty_time(120), "2 minutes");
    }

    #[test]
    fn bytes_like_wg() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1152), "1.12 KiB"); // 1.125: half-to-even, as glibc
        assert_eq!(bytes(1_048_575), "1024.00 KiB");
        assert_eq!(bytes(1_048_576), "1.00 MiB");
        assert_eq!(
            bytes(5 * 1024 * 1024 * 1024 + 1024 * 1024 * 1024 / 2),
            "5.50 GiB"
        );
        assert_eq!(bytes(3 << 40), "3.00 TiB");
        assert_eq!(bytes(u64::MAX), "16777216.00 TiB");
    }

    #[test]
    fn json_round_trips_and_has_no_secrets() {
        let snapshot = snapshot();
        let json = render_json(&snapshot);
        assert!(json.ends_with("}\n"));
        let back: InterfaceSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["peers"][1]["preshared_key"],
            serde_json::Value::Bool(true)
        );
        assert_eq!(value["workers"][0]["drops"][0][0], "replay");
    }

    #[test]
    fn endpoint_lists_show_keepalives_only_where_they_differ() {
        let mut peer = snapshot().peers[2].clone();
        let mut failover = EndpointsSnapshot {
            endpoints: vec!["203.0.113.7:51820".into(), "gw.example.net:51820".into()],
            keepalive_secs: vec![Some(25), None],
            active: Some(0),
            active_address: Some("203.0.113.7:51820".into()),
            switches: 1,
        };
        peer.failover = Some(failover.clone());
        let mut out = String::new();
        render_peer(&mut out, &peer, NOW);
        assert!(
            out.contains(
                "  endpoints: 203.0.113.7:51820 keepalive=25 (active), \
                 gw.example.net:51820 keepalive=off (1 failovers)\n"
            ),
            "{out}"
        );
        failover.keepalive_secs = vec![Some(25), Some(25)];
        peer.failover = Some(failover);
        let mut out = String::new();
        render_peer(&mut out, &peer, NOW);
        assert!(
            out.contains("  endpoints: 203.0.113.7:51820 (active), gw.example.net:51820 (1"),
            "{out}"
        );
    }
}
