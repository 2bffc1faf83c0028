//! Reloading a running gateway with `warpline syncconf` (as root, in namespaces): an invalid
//! file and another interface's file are refused with nothing changed; a valid file adds,
//! updates and removes peers while the tunnel that stays keeps its session (no new handshake)
//! and keeps carrying traffic.

mod gateway_support;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use gateway_support::{TempDir, UdpEcho, Warpline, udp_echoes, warpline_up};
use warpline_control::keys::PrivateKey;
use warpline_dataplane::lab::{Host, Veth, require_root, unique_name};

const REMOVED_PEER: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const ADDED_PEER: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

fn syncconf(gateway: &Warpline, file: &std::path::Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warpline"))
        .args(["syncconf", &gateway.name])
        .arg(file)
        .arg("--control-socket")
        .arg(&gateway.socket)
        .output()
        .expect("run warpline syncconf")
}

/// The peers as `show --json` lists them, without the figures that move by themselves.
fn peers(gateway: &Warpline) -> Vec<serde_json::Value> {
    let mut peers: Vec<serde_json::Value> = gateway.show_json()["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|peer| {
            serde_json::json!({
                "public_key": peer["public_key"],
                "allowed_ips": peer["allowed_ips"],
                "persistent_keepalive_secs": peer["persistent_keepalive_secs"],
                "preshared_key": peer["preshared_key"],
                "latest_handshake_unix_secs": peer["latest_handshake_unix_secs"],
            })
        })
        .collect();
    peers.sort_by_key(|peer| peer["public_key"].to_string());
    peers
}

#[test]
fn syncconf_applies_a_valid_file_and_refuses_a_bad_one_without_touching_the_tunnel() {
    if let Err(reason) = require_root() {
        println!("skipping: {reason}");
        return;
    }
    let (gateway_host, client_host) = (Host::new("g").unwrap(), Host::new("c").unwrap());
    let veth = Veth::new(&gateway_host, &client_host, 1).unwrap();
    gateway_host
        .add_address(&veth.a, "10.206.0.1".parse().unwrap(), 24)
        .unwrap();
    client_host
        .add_address(&veth.b, "10.206.0.2".parse().unwrap(), 24)
        .unwrap();
    let (gateway_key, client_key) = (PrivateKey::generate(), PrivateKey::generate());
    let client_public = client_key.public_key().to_base64();
    let dir = TempDir::new();
    let gateway_name = format!("{}g", unique_name());
    let interface = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 10.93.0.1/32\n",
        gateway_key.to_base64()
    );
    let gateway = warpline_up(
        &gateway_host,
        &dir,
        &gateway_name,
        &format!(
            "{interface}[Peer]\nPublicKey = {client_public}\nAllowedIPs = 10.93.0.2/32\n\
             [Peer]\nPublicKey = {REMOVED_PEER}\nAllowedIPs = 10.93.0.99/32\n"
        ),
    );
    let client = warpline_up(
        &client_host,
        &dir,
        &format!("{}c", unique_name()),
        &format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.93.0.2/32\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.93.0.1/32\nEndpoint = 10.206.0.1:51820\n",
            client_key.to_base64(),
            gateway_key.public_key().to_base64()
        ),
    );
    let echo_address: SocketAddr = "10.93.0.1:9000".parse().unwrap();
    let _echo = UdpEcho::start(&gateway_host, echo_address);
    let echoes = |count| {
        udp_echoes(
            &client_host,
            "10.93.0.2:0".parse().unwrap(),
            echo_address,
            count,
            20,
            Duration::from_millis(250),
        )
    };
    assert_eq!(
        echoes(10),
        10,
        "no traffic through the tunnel before the reload"
    );
    let before = peers(&gateway);

    // A broken file: refused, naming the line; nothing changed.
    let broken = dir.write(
        "broken.conf",
        &format!("{interface}[Peer]\nPublicKey = not-a-key\nAllowedIPs = 10.93.0.2/32\n"),
    );
    let output = syncconf(&gateway, &broken);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a broken file was accepted");
    assert!(
        stderr.contains("broken.conf") && stderr.contains("PublicKey"),
        "the refusal does not say where: {stderr}"
    );
    assert_eq!(peers(&gateway), before, "a refused file changed the peers");

    // Another interface's file (another private key): refused, nothing changed.
    let foreign = dir.write(
        "foreign.conf",
        &format!(
            "[Interface]\nPrivateKey = {}\n[Peer]\nPublicKey = {ADDED_PEER}\n",
            PrivateKey::generate().to_base64()
        ),
    );
    let output = syncconf(&gateway, &foreign);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "another interface's file was accepted"
    );
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert_eq!(peers(&gateway), before, "a refused file changed the peers");

    // A valid file: the client gains a prefix and a keepalive, one peer goes, one comes.
    let valid = dir.write(
        "valid.conf",
        &format!(
            "{interface}[Peer]\nPublicKey = {client_public}\n\
             AllowedIPs = 10.93.0.2/32, 10.93.1.0/24\nPersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {ADDED_PEER}\nAllowedIPs = 10.93.0.50/32\n"
        ),
    );
    let output = syncconf(&gateway, &valid);
    assert!(
        output.status.success(),
        "a valid file was refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 peers added, 1 updated, 1 removed"),
        "{stdout}"
    );
    let after = peers(&gateway);
    let keys: Vec<&str> = after
        .iter()
        .map(|peer| peer["public_key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&ADDED_PEER) && !keys.contains(&REMOVED_PEER),
        "{after:#?}"
    );
    let client_after = after
        .iter()
        .find(|peer| peer["public_key"] == client_public.as_str())
        .expect("the client stays");
    assert_eq!(
        client_after["allowed_ips"],
        serde_json::json!(["10.93.0.2/32", "10.93.1.0/24"])
    );
    assert_eq!(client_after["persistent_keepalive_secs"], 25);
    let client_before = before
        .iter()
        .find(|peer| peer["public_key"] == client_public.as_str())
        .unwrap();
    assert_eq!(
        client_after["latest_handshake_unix_secs"], client_before["latest_handshake_unix_secs"],
        "the reload cost the client a handshake"
    );
    assert_eq!(echoes(10), 10, "traffic stopped after the reload");
    let client_now = peers(&gateway)
        .into_iter()
        .find(|peer| peer["public_key"] == client_public.as_str())
        .unwrap();
    assert_eq!(
        client_now["latest_handshake_unix_secs"], client_before["latest_handshake_unix_secs"],
        "the tunnel needed a new handshake after the reload"
    );
    drop(client);
    gateway.down();
}
