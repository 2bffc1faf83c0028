use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// RFC 7748 section 6.1 Alice's private key (unclamped as published) and public key.
const ALICE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
const ALICE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
/// RFC 7748 section 6.1 Bob's public key.
const BOB_PUBLIC: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";
const CAROL_PUBLIC: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A config as people write them: comments, odd spacing and case, IPv6, a PSK, hooks.
fn real_world_text() -> String {
    format!(
        "# wl0: site-to-site gateway\n\
         [Interface]\n\
         PrivateKey = {ALICE_PRIVATE}\n\
         listenport=51820   # lower case and no spaces, as wg accepts\n\
         Address = 10.10.0.1/24, fd10::1/64\n\
         Address = 192.168.77.1\n\
         MTU = 1420\n\
         DNS = 10.10.0.53, fd10::53, corp.example\n\
         Table = 1234\n\
         FwMark = 0xca6c\n\
         PostUp = iptables -A FORWARD -i %i -j ACCEPT; sysctl -w net.ipv4.ip_forward=1\n\
         PostDown = iptables -D FORWARD -i %i -j ACCEPT\n\
         \n\
         \t# laptop\n\
         [Peer]\n\
         PublicKey = {BOB_PUBLIC}\n\
         PresharedKey = {PSK}\n\
         AllowedIPs = 10.10.0.2/32, fd10::2/128\n\
         PersistentKeepalive = 25\n\
         \n\
         [peer]\n\
         PublicKey={CAROL_PUBLIC}\n\
         AllowedIPs = 10.20.0.7/16,\n\
         AllowedIPs = 2001:db8:20::/48\n\
         Endpoint = [2001:db8::1]:51820\n\
         Cipher = AES256GCM\n"
    )
}

fn parse_err(text: &str) -> String {
    match Config::parse(text, "wl0.conf") {
        Ok(config) => panic!("parsed but should not have: {config:?}"),
        Err(error) => error.to_string(),
    }
}

fn interface_only() -> String {
    format!("[Interface]\nPrivateKey = {ALICE_PRIVATE}\n")
}

#[test]
fn parses_a_real_world_config() {
    let config = Config::parse(&real_world_text(), "wl0.conf").unwrap();
    let interface = &config.interface;
    assert_eq!(interface.private_key.public_key().to_base64(), ALICE_PUBLIC);
    assert_eq!(interface.listen_port, Some(51820));
    let addresses: Vec<String> = interface.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addresses, ["10.10.0.1/24", "fd10::1/64", "192.168.77.1/32"]);
    assert_eq!(interface.mtu, Some(1420));
    let dns: Vec<IpAddr> = vec!["10.10.0.53".parse().unwrap(), "fd10::53".parse().unwrap()];
    assert_eq!(interface.dns_servers, dns);
    assert_eq!(interface.dns_search, ["corp.example"]);
    assert_eq!(interface.table, RoutingTable::Id(1234));
    assert_eq!(interface.fwmark, NonZeroU32::new(0xca6c));
    assert_eq!(
        interface.hooks.post_up,
        ["iptables -A FORWARD -i %i -j ACCEPT; sysctl -w net.ipv4.ip_forward=1"]
    );
    assert_eq!(
        interface.hooks.post_down,
        ["iptables -D FORWARD -i %i -j ACCEPT"]
    );
    assert!(interface.hooks.pre_up.is_empty() && !interface.save_config);

    let [bob, carol] = config.peers.as_slice() else {
        panic!("expected two peers, got {:?}", config.peers);
    };
    assert_eq!(bob.public_key.to_base64(), BOB_PUBLIC);
    assert_eq!(
        bob.preshared_key,
        Some(PresharedKey::from_base64(PSK).unwrap())
    );
    let bob_ips: Vec<String> = bob.allowed_ips.iter().map(|p| p.to_string()).collect();
    assert_eq!(bob_ips, ["10.10.0.2/32", "fd10::2/128"]);
    assert_eq!(bob.endpoint, None);
    assert_eq!(bob.persistent_keepalive, NonZeroU16::new(25));
    assert_eq!(bob.cipher, CipherSuite::ChaCha20Poly1305);

    assert_eq!(carol.public_key.to_base64(), CAROL_PUBLIC);
    assert_eq!(carol.preshared_key, None);
    let carol_ips: Vec<String> = carol.allowed_ips.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        carol_ips,
        ["10.20.0.0/16", "2001:db8:20::/48"],
        "host bits masked"
    );
    let endpoint: SocketAddr = "[2001:db8::1]:51820".parse().unwrap();
    assert_eq!(carol.endpoint, Some(Endpoint::Addr(endpoint)));
    assert_eq!(carol.persistent_keepalive, None);
    assert_eq!(carol.cipher, CipherSuite::Aes256Gcm);
}

#[test]
fn crlf_line_endings_and_a_byte_order_mark_are_accepted() {
    let text = format!("\u{feff}{}", real_world_text().replace('\n', "\r\n"));
    let config = Config::parse(&text, "wl0.conf").unwrap();
    assert_eq!(
        config,
        Config::parse(&real_world_text(), "wl0.conf").unwrap()
    );
}

#[test]
fn every_documented_key_is_accepted() {
    let interface_values = [
        ("PrivateKey", ALICE_PRIVATE),
        ("ListenPort", "0"),
        ("Address", "10.0.0.1/24"),
        ("MTU", "1280"),
        ("DNS", "1.1.1.1"),
        ("Table", "off"),
        ("FwMark", "off"),
        ("PreUp", "true"),
        ("PostUp", "true"),
        ("PreDown", "true"),
        ("PostDown", "true"),
        ("SaveConfig", "true"),
        ("MetricsAddress", "127.0.0.1:9586"),
        ("TestTimerScale", "60"),
        ("Attach", "eth0"),
        ("XdpMode", "native"),
        ("Inner", "tun"),
        ("Spread", "on"),
        ("Workers", "2"),
        ("Cores", "2-3"),
        ("Queues", "auto"),
        ("ZeroCopy", "off"),
        ("FrameSize", "2048"),
        ("RingSize", "4096"),
        ("BusyPoll", "on"),
        ("HaMode", "builtin"),
        ("HaNodeId", "3"),
        ("HaKey", PSK),
        ("HaListen", "10.0.0.1:51900"),
        ("HaPeer", "10.0.0.2:51900"),
        ("HaCheckpointMs", "100"),
        ("HaVirtualIp", "10.0.0.100/24 dev eth0"),
        ("HaPriority", "150"),
        ("HaPreempt", "off"),
        ("HaTrackInterface", "eth1"),
        ("HaPool", "10.99.1.0/24"),
    ];
    let peer_values = [
        ("PublicKey", BOB_PUBLIC),
        ("PresharedKey", PSK),
        ("AllowedIPs", "0.0.0.0/0, ::/0"),
        ("Endpoint", "vpn.example.com:51820"),
        ("PersistentKeepalive", "off"),
        ("Cipher", "chacha20poly1305"),
        ("EndpointPolicy", "ordered"),
        ("FailoverAfter", "5"),
        ("FailBack", "never"),
        ("EndpointPort", "51820"),
    ];
    fn keys_of<'a>(pairs: &[(&'a str, &str)]) -> Vec<&'a str> {
        pairs.iter().map(|(key, _)| *key).collect()
    }
    assert_eq!(keys_of(&interface_values), Section::Interface.valid_keys());
    assert_eq!(keys_of(&peer_values), Section::Peer.valid_keys());

    let mut text = String::from("[Interface]\n");
    // HaPool belongs to active-active, the builtin keys to builtin: parse the builtin set
    // here (HaPool parses in `ha_pools_are_active_active_prefixes`).
    for (key, value) in interface_values
        .into_iter()
        .filter(|(key, _)| *key != "HaPool")
    {
        text += &format!("{} = {value}\n", key.to_uppercase());
    }
    text += "[Peer]\n";
    for (key, value) in peer_values {
        text += &format!("{} = {value}\n", key.to_lowercase());
    }
    let config = Config::parse(&text, "all.conf").unwrap();
    assert!(config.interface.save_config);
    assert_eq!(
        config.interface.metrics_address,
        Some("127.0.0.1:9586".parse().unwrap())
    );
    assert_eq!(config.interface.table, RoutingTable::Off);
    assert_eq!(config.interface.hooks.pre_down, ["true"]);
    assert_eq!(config.peers[0].allowed_ips.len(), 2);
    assert!(
        config.peers[0]
            .allowed_ips
            .iter()
            .all(|prefix| prefix.prefix_len() == 0)
    );
}

#[test]
fn round_trips_through_wg_quick_text() {
    let config = Config::parse(&real_world_text(), "wl0.conf").unwrap();
    let text = config.to_wg_quick_string();
    assert_eq!(Config::parse(&text, "written").unwrap(), config);
    assert!(text.contains("Cipher = aes256gcm\n"));
    assert_eq!(
        text.matches("Cipher").count(),
        1,
        "default suite is not written"
    );
    assert!(text.contains("FwMark = 0xca6c\n"));
}

#[test]
fn invalid_allowed_ips_names_file_line_section_key_and_value() {
    let text = format!(
        "{}\n[Peer]\nPublicKey = {BOB_PUBLIC}\nAllowedIPs = 10.0.0.1/32, 10.0.0.300/32\n",
        interface_only()
    );
    let message = parse_err(&text);
    assert!(
        message
            .starts_with(r#"wl0.conf:6: [Peer] AllowedIPs: "10.0.0.300/32" is not an IP prefix"#),
        "{message}"
    );
    let message = parse_err(&text.replace("10.0.0.300/32", "10.0.0.0/33"));
    assert!(
        message.starts_with(r#"wl0.conf:6: [Peer] AllowedIPs: "10.0.0.0/33": the prefix length"#),
        "{message}"
    );
}

#[test]
fn invalid_scalar_values_name_the_key() {
    let cases = [
        (
            "ListenPort = 70000",
            "wl0.conf:3: [Interface] ListenPort: \"70000\" is not a UDP port",
        ),
        (
            "MTU = big",
            "wl0.conf:3: [Interface] MTU: \"big\" is not an MTU",
        ),
        (
            "SaveConfig = yes",
            "wl0.conf:3: [Interface] SaveConfig: \"yes\" is neither true nor false",
        ),
        (
            "ListenPort =",
            "wl0.conf:3: [Interface] ListenPort: \"\" is not a UDP port",
        ),
    ];
    for (line, expected) in cases {
        let message = parse_err(&format!("{}{line}\n", interface_only()));
        assert!(message.starts_with(expected), "{message}");
    }
    let peer = format!("{}[Peer]\nPublicKey = {BOB_PUBLIC}\n", interface_only());
    let cases = [
        (
            "Endpoint = 10.0.0.1",
            "wl0.conf:5: [Peer] Endpoint: \"10.0.0.1\" has no :PORT",
        ),
        (
            "PersistentKeepalive = -1",
            "wl0.conf:5: [Peer] PersistentKeepalive: \"-1\" is not",
        ),
        (
            "Cipher = aes128",
            "wl0.conf:5: [Peer] Cipher: \"aes128\" is not a cipher suite; valid: chacha20poly1305 (the default), aes256gcm",
        ),
        (
            "PublicKey2 = x",
            "wl0.conf:5: [Peer] unknown key \"PublicKey2\"",
        ),
    ];
    for (line, expected) in cases {
        let message = parse_err(&format!("{peer}{line}\n"));
        assert!(message.starts_with(expected), "{message}");
    }
    let message = parse_err(&format!("[Interface]\nPrivateKey = {ALICE_PRIVATE}x\n"));
    assert!(message.starts_with("wl0.conf:2: [Interface] PrivateKey: not a valid private key"));
    let message = parse_err(&format!("{}[Peer]\nPublicKey = AAAA\n", interface_only()));
    assert_eq!(
        message,
        "wl0.conf:4: [Peer] PublicKey: \"AAAA\" is not a public key: decodes to 3 bytes, a key is 32"
    );
}

#[test]
fn unknown_key_lists_the_valid_keys_of_its_section() {
    let message = parse_err(&format!("{}ListenPrt = 1\n", interface_only()));
    assert_eq!(
        message,
        "wl0.conf:3: [Interface] unknown key \"ListenPrt\"; valid keys are PrivateKey, \
         ListenPort, Address, MTU, DNS, Table, FwMark, PreUp, PostUp, PreDown, PostDown, \
         SaveConfig, MetricsAddress, TestTimerScale, Attach, XdpMode, Inner, Spread, Workers, \
         Cores, Queues, ZeroCopy, FrameSize, RingSize, BusyPoll, HaMode, HaNodeId, HaKey, \
         HaListen, HaPeer, HaCheckpointMs, HaVirtualIp, HaPriority, HaPreempt, \
         HaTrackInterface, HaPool"
    );
    let message = parse_err(&format!("{}[Peer]\nAddress = 10.0.0.1\n", interface_only()));
    assert_eq!(
        message,
        "wl0.conf:4: [Peer] unknown key \"Address\"; valid keys are PublicKey, PresharedKey, \
         AllowedIPs, Endpoint, PersistentKeepalive, Cipher, EndpointPolicy, FailoverAfter, FailBack, \
         EndpointPort"
    );
}

#[test]
fn structural_errors() {
    let cases = [
        (
            format!("{}[Peers]\n", interface_only()),
            "wl0.conf:3: unknown section [Peers]; valid sections are [Interface] and [Peer]",
        ),
        (
            format!("ListenPort = 1\n{}", interface_only()),
            "wl0.conf:1: key \"ListenPort\" is outside any section; put it under [Interface] or [Peer]",
        ),
        (
            format!("{}ListenPort = 1\nlistenport = 2\n", interface_only()),
            "wl0.conf:4: [Interface] ListenPort: set twice (first at line 3); it takes one value",
        ),
        (
            format!("{}[Interface]\n", interface_only()),
            "wl0.conf:3: [Interface] appears again (first at line 1); a config has one",
        ),
        (
            "[Interface]\nListenPort = 1\n".to_owned(),
            "wl0.conf:1: [Interface] PrivateKey: missing; every [Interface] section needs one",
        ),
        (
            format!("{}[Peer]\nAllowedIPs = 10.0.0.2\n", interface_only()),
            "wl0.conf:3: [Peer] PublicKey: missing; every [Peer] section needs one",
        ),
        (
            "# nothing here\n".to_owned(),
            "wl0.conf: no [Interface] section; a config needs one with a PrivateKey",
        ),
        (
            format!(
                "[Peer]\nPublicKey = {BOB_PUBLIC}\n[Peer]\n\nPublicKey = {BOB_PUBLIC}\n{}",
                interface_only()
            ),
            "wl0.conf:5: [Peer] PublicKey: peer 3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08= is \
             already defined at line 2",
        ),
        (
            format!("{}[Peer]\nPublicKey = {ALICE_PUBLIC}\n", interface_only()),
            "wl0.conf:4: [Peer] PublicKey: hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo= is this \
             interface's own public key (derived from its PrivateKey); a peer must be the other \
             end of the tunnel",
        ),
        (
            format!("{}[Peer\n", interface_only()),
            "wl0.conf:3: expected \"Key = Value\", a [Section] header, or a # comment",
        ),
        (
            format!("{}= 5\n", interface_only()),
            "wl0.conf:3: expected \"Key = Value\", a [Section] header, or a # comment",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_err(&text), expected, "for {text:?}");
    }
}

#[test]
fn error_kinds_are_matchable() {
    let error = Config::parse(&format!("{}MTU = 1\n", interface_only()), "x").unwrap_err();
    assert_eq!(error.line(), Some(3));
    assert_eq!(error.source_name(), "x");
    assert!(matches!(
        error.kind(),
        ConfigErrorKind::InvalidValue {
            section: Section::Interface,
            key: "MTU",
            ..
        }
    ));
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    // Well-formed base64 of the wrong length (34 bytes), so parsing gets as far as the key.
    let secret = "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFsLTEyMzQ1Ng==";
    let checks = [
        format!("[Interface]\nPrivateKey = {secret}\n"),
        format!("[Interface]\nPrivateKey = {secret}!\n"),
        format!("[Interface]\nPrivateKey : {secret}\n"),
        format!("[Interface]\n{secret}\n"),
        format!("[Interface]\n{ALICE_PRIVATE}\n"),
        format!("{secret}\n"),
        format!("[{secret}]\n"),
        format!(
            "{}[Peer]\nPublicKey = {BOB_PUBLIC}\nPresharedKey = {secret}\n",
            interface_only()
        ),
    ];
    for text in checks {
        let error = Config::parse(&text, "wl0.conf").unwrap_err();
        let message = format!("{error} {error:?}");
        assert!(
            !message.contains("c2VjcmV0") && !message.contains("dwdtCnMY"),
            "secret leaked: {message}"
        );
        assert!(message.starts_with("wl0.conf:"), "{message}");
    }

    let mut text = real_world_text();
    text += &format!("PresharedKey = {PSK}\n");
    let config = Config::parse(&text, "wl0.conf").unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(ALICE_PRIVATE) && !shown.contains(PSK),
        "{shown}"
    );
    let clamped_private = config.interface.private_key.to_base64();
    assert!(!shown.contains(&clamped_private));
    assert!(shown.contains(BOB_PUBLIC), "public keys are shown: {shown}");
}

/// A file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8], mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!(
            "warpline-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn load_warns_when_others_can_read_the_private_key() {
    let file = TempFile::new("open.conf", real_world_text().as_bytes(), 0o644);
    let (config, warnings) = Config::load(&file.0).unwrap();
    assert_eq!(config.peers.len(), 2);
    let path = file.0.display().to_string();
    assert_eq!(
        warnings,
        [ConfigWarning::AccessibleByOthers {
            path: file.0.clone(),
            mode: 0o100644
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        format!(
            "{path} is accessible by group or others (mode 0644) but holds a private key; run: \
             chmod 600 {path}"
        )
    );

    let file = TempFile::new("private.conf", real_world_text().as_bytes(), 0o600);
    let (_, warnings) = Config::load(&file.0).unwrap();
    assert_eq!(warnings, []);
}

#[test]
fn fix_command_is_safe_to_paste() {
    let warning = |path: &str| ConfigWarning::AccessibleByOthers {
        path: path.into(),
        mode: 0o644,
    };
    assert_eq!(
        warning("/etc/wl 0.conf").fix_command(),
        "chmod 600 '/etc/wl 0.conf'"
    );
    assert_eq!(
        warning("it's.conf").fix_command(),
        r"chmod 600 'it'\''s.conf'"
    );
    assert_eq!(warning("-rf.conf").fix_command(), "chmod 600 ./-rf.conf");
}

#[test]
fn load_errors_name_the_file() {
    let missing = std::env::temp_dir().join("warpline-config-test-does-not-exist.conf");
    let message = Config::load(&missing).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{message}"
    );

    let mut bytes = interface_only().into_bytes();
    bytes.extend_from_slice(b"[Peer]\nPublicKey = \xff\xfe\n");
    let file = TempFile::new("binary.conf", &bytes, 0o600);
    let message = Config::load(&file.0).unwrap_err().to_string();
    assert_eq!(message, format!("{}:4: not UTF-8 text", file.0.display()));

    let file = TempFile::new("parse-error.conf", b"[Interface]\n", 0o600);
    let message = Config::load(&file.0).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{}:1: [Interface] PrivateKey: missing",
            file.0.display()
        )),
        "{message}"
    );
}

/// Plausible lines, to drive the parser deep into every key's value parser.
fn config_line() -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = Section::Interface
        .valid_keys()
        .iter()
        .chain(Section::Peer.valid_keys())
        .copied()
        .chain(["Bogus", ""])
        .collect();
    let values = prop_oneof![
        Just(ALICE_PRIVATE.to_owned()),
        Just(BOB_PUBLIC.to_owned()),
        Just(CAROL_PUBLIC.to_owned()),
        Just(ALICE_PUBLIC.to_owned()),
        "[0-9a-f:./%\\[\\], ]{0,40}",
        "[a-zA-Z0-9+/=]{0,50}",
        any::<String>(),
    ];
    prop_oneof![
        3 => (proptest::sample::select(keys), "[ \t=]{0,3}", values, "(#.*)?")
            .prop_map(|(key, sep, value, comment)| format!("{key}{sep}{value}{comment}")),
        1 => proptest::sample::select(vec!["[Interface]", "[Peer]", "[peer ]", "[Other]", "[", ""])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Per-endpoint settings as the parser leaves them: no trailing empty ones.
fn endpoint_settings(keepalives: &[Option<u16>]) -> Vec<EndpointSettings> {
    let mut settings: Vec<EndpointSettings> = (keepalives.iter())
        .map(|keepalive| EndpointSettings {
            keepalive: keepalive.map(NonZeroU16::new),
        })
        .collect();
    while settings.last().is_some_and(EndpointSettings::is_empty) {
        settings.pop();
    }
    settings
}

/// Valid configs built from parts, for the round-trip property.
fn valid_config() -> impl Strategy<Value = Config> {
    let prefix = (any::<[u8; 16]>(), 0u8..=128, any::<bool>()).prop_map(|(bytes, len, v4)| {
        if v4 {
            let addr = IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]);
            IpPrefix::new(addr, len % 33).map(IpPrefix::masked).ok()
        } else {
            IpPrefix::new(IpAddr::from(bytes), len)
                .map(IpPrefix::masked)
                .ok()
        }
    });
    let peer = (
        any::<[u8; 32]>(),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::collection::vec(prefix, 0..4),
        proptest::collection::btree_set((any::<[u8; 4]>(), 1u16..), 0..3),
        any::<u16>(),
        any::<bool>(),
        proptest::collection::vec(proptest::option::of(any::<u16>()), 3),
    )
        .prop_map(
            |(key, psk, ips, endpoints, keepalive, gcm, endpoint_keepalives)| PeerConfig {
                public_key: PublicKey(key),
                preshared_key: psk.map(PresharedKey::from_bytes),
                allowed_ips: ips.into_iter().flatten().collect(),
                endpoint: endpoints
                    .first()
                    .map(|&(ip, port)| Endpoint::Addr(SocketAddr::from((ip, port)))),
                more_endpoints: endpoints
                    .iter()
                    .skip(1)
                    .map(|&(ip, port)| Endpoint::Addr(SocketAddr::from((ip, port))))
                    .collect(),
                endpoint_settings: endpoint_settings(&endpoint_keepalives[..endpoints.len()]),
                failover: FailoverKeys {
                    policy: if keepalive % 2 == 0 {
                        EndpointPolicy::Random
                    } else {
                        EndpointPolicy::Ordered
                    },
                    after: Duration::from_secs(u64::from(keepalive % 3600) + 1),
                    fail_back: (keepalive % 5 == 0).then(|| Duration::from_secs(30)),
                },
                persistent_keepalive: NonZeroU16::new(keepalive),
                cipher: if gcm {
                    CipherSuite::Aes256Gcm
                } else {
                    CipherSuite::ChaCha20Poly1305
                },
            },
        );
    (
        any::<[u8; 32]>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(MIN_MTU..),
        any::<u32>(),
        proptest::collection::vec(peer, 0..4),
        valid_layout_keys(),
    )
        .prop_map(|(private, port, mtu, fwmark, peers, layout)| {
            let private_key = PrivateKey::from_bytes(private);
            let own = private_key.public_key();
            let mut seen = std::collections::HashSet::new();
            let peers = peers
                .into_iter()
                .filter(|p| p.public_key != own && seen.insert(p.public_key))
                .collect();
            let full_bypass = fwmark % 9 == 0;
            Config {
                interface: InterfaceConfig {
                    private_key,
                    listen_port: port,
                    addresses: vec!["10.0.0.1/24".parse().unwrap()],
                    mtu,
                    dns_servers: Vec::new(),
                    dns_search: vec!["corp.example".to_owned()],
                    table: RoutingTable::Name("vpn".to_owned()),
                    fwmark: NonZeroU32::new(fwmark),
                    hooks: Hooks {
                        post_up: vec!["echo up = %i".to_owned()],
                        ..Hooks::default()
                    },
                    save_config: fwmark % 2 == 0,
                    metrics_address: None,
                    test_timer_scale: None,
                    // Frames only bound the MTU in XDP mode, so only small MTUs attach.
                    attach: match (
                        fwmark % 3 == 0 && mtu.is_none_or(|mtu| mtu <= 1500),
                        full_bypass,
                    ) {
                        (false, _) => Vec::new(),
                        (true, false) => vec!["eth0".to_owned(), "eth1".to_owned()],
                        (true, true) => vec!["eth0".to_owned()],
                    },
                    xdp_mode: if fwmark % 2 == 0 {
                        XdpMode::Generic
                    } else {
                        XdpMode::Auto
                    },
                    spread: fwmark % 3 == 0 && fwmark % 2 == 1 && mtu.is_none_or(|mtu| mtu <= 1500),
                    inner: if full_bypass && fwmark % 3 == 0 && mtu.is_none_or(|mtu| mtu <= 1500) {
                        InnerSide::Nic("lan0".to_owned())
                    } else {
                        InnerSide::Tun
                    },
                    layout,
                    ha: (fwmark % 4 == 1).then(|| HaConfig {
                        mode: if fwmark % 8 == 1 {
                            HaMode::Keepalived
                        } else {
                            HaMode::ActiveActive
                        },
                        node_id: (fwmark % 16) as u8,
                        key: PresharedKey::from_bytes(private),
                        listen: "10.0.0.1:51900".parse().unwrap(),
                        partners: vec![
                            "10.0.0.2:51900".parse().unwrap(),
                            "[fd00::3]:51900".parse().unwrap(),
                        ],
                        checkpoint: Duration::from_millis(u64::from(fwmark % 9_990) + 10),
                        virtual_ips: Vec::new(),
                        priority: DEFAULT_PRIORITY,
                        preempt: true,
                        track_interfaces: Vec::new(),
                        pools: if fwmark % 8 == 1 {
                            Vec::new()
                        } else {
                            vec![
                                IpPrefix::new(IpAddr::from([10, 99, 1, 0]), 24).unwrap(),
                                IpPrefix::new("fd99:1::".parse().unwrap(), 64).unwrap(),
                            ]
                        },
                    }),
                },
                peers,
            }
        })
}

/// Layout keys whose combination the config accepts: Workers and Queues agree when both are
/// set, and Cores lists enough CPUs for them.
fn valid_layout_keys() -> impl Strategy<Value = LayoutKeys> {
    let count = prop_oneof![
        Just(Count::Auto),
        (1..=MAX_COUNT).prop_map(|n| Count::Exactly(n.try_into().unwrap()))
    ];
    let cores = proptest::option::of(
        proptest::collection::hash_set(0..=MAX_CPU, 1..12)
            .prop_map(|cpus| CoreList::new(cpus.into_iter().collect()).unwrap()),
    );
    (
        count,
        any::<bool>(),
        cores,
        proptest::sample::select(vec![ZeroCopy::Auto, ZeroCopy::On, ZeroCopy::Off]),
        proptest::sample::select(FrameSize::VALID.to_vec()),
        6u32..=14,
        any::<bool>(),
    )
        .prop_map(
            |(count, count_is_workers, cores, zero_copy, frame, ring_log2, busy_poll)| {
                let count = match (count, &cores) {
                    (Count::Exactly(n), Some(cores)) if n.get() as usize > cores.cpus().len() => {
                        Count::Auto
                    }
                    _ => count,
                };
                let (workers, queues) = if count_is_workers {
                    (count, Count::Auto)
                } else {
                    (Count::Auto, count)
                };
                LayoutKeys {
                    workers,
                    cores,
                    queues,
                    zero_copy,
                    frame_size: FrameSize::new(frame).unwrap(),
                    ring_size: RingSize::new(1 << ring_log2).unwrap(),
                    busy_poll,
                }
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Config::parse(&text, "fuzz.conf");
    }

    #[test]
    fn plausible_line_soup_never_panics_and_errors_carry_the_source(
        lines in proptest::collection::vec(config_line(), 0..24)
    ) {
        let text = lines.join("\n");
        if let Err(error) = Config::parse(&text, "fuzz.conf") {
            prop_assert!(error.to_string().starts_with("fuzz.conf"));
            let line_count = text.lines().count();
            prop_assert!(error.line().is_none_or(|line| (1..=line_count).contains(&line)));
        }
    }

    #[test]
    fn written_configs_parse_back_unchanged(config in valid_config()) {
        let text = config.to_wg_quick_string();
        prop_assert_eq!(Config::parse(&text, "written").unwrap(), config);
    }
}

#[test]
fn attach_and_xdp_mode_are_parsed_and_checked() {
    let config = Config::parse(
        &format!(
            "{}Attach = eth0, eth1\nXdpMode = Generic\n",
            interface_only()
        ),
        "wl0.conf",
    )
    .unwrap();
    assert_eq!(config.interface.attach, ["eth0", "eth1"]);
    assert_eq!(config.interface.xdp_mode, XdpMode::Generic);
    let message = parse_err(&format!("{}XdpMode = fast\n", interface_only()));
    assert!(
        message.contains("not an XDP mode; valid: auto, native, generic"),
        "{message}"
    );
    let message = parse_err(&format!(
        "{}Attach = eth0\nAttach = eth0\n",
        interface_only()
    ));
    assert!(message.contains("eth0 is attached twice"), "{message}");
    let message = parse_err(&format!(
        "{}Attach = a-name-far-too-long\n",
        interface_only()
    ));
    assert!(
        message.contains("not a network interface name"),
        "{message}"
    );
}

#[test]
fn layout_keys_are_parsed_and_written_back() {
    let text = format!(
        "{}Attach = eth0\nworkers = 4\nCores = 2-5\nZeroCopy = On\nFrameSize = 2048\n\
         RingSize = 1024\nBusyPoll = on\n",
        interface_only()
    );
    let config = Config::parse(&text, "wl0.conf").unwrap();
    let layout = &config.interface.layout;
    assert_eq!(layout.workers.fixed(), Some(4));
    assert_eq!(layout.queues, Count::Auto);
    assert_eq!(layout.cores.as_ref().unwrap().cpus(), [2, 3, 4, 5]);
    assert_eq!(layout.zero_copy, ZeroCopy::On);
    assert_eq!(layout.frame_size.bytes(), 2048);
    assert_eq!(layout.ring_size.descriptors(), 1024);
    assert!(layout.busy_poll);
    let written = config.to_wg_quick_string();
    assert!(
        written.contains("Workers = 4\nCores = 2-5\nZeroCopy = on\nFrameSize = 2048\n"),
        "{written}"
    );
    assert_eq!(Config::parse(&written, "written").unwrap(), config);
    let plain = Config::parse(&interface_only(), "wl0.conf").unwrap();
    assert_eq!(plain.interface.layout, LayoutKeys::default());
    assert!(!plain.to_wg_quick_string().contains("Workers"));
}

#[test]
fn invalid_layout_values_name_the_key_and_line() {
    let cases = [
        (
            "Workers = 0",
            "wl0.conf:3: [Interface] Workers: \"0\" is neither auto nor a number",
        ),
        (
            "Queues = many",
            "wl0.conf:3: [Interface] Queues: \"many\" is neither auto",
        ),
        (
            "Cores = 4-2",
            "wl0.conf:3: [Interface] Cores: \"4-2\" is a range that runs backwards",
        ),
        (
            "Cores = 1,1",
            "wl0.conf:3: [Interface] Cores: \"1,1\" lists CPU 1 twice",
        ),
        (
            "ZeroCopy = maybe",
            "wl0.conf:3: [Interface] ZeroCopy: \"maybe\" is not a zero-copy",
        ),
        (
            "FrameSize = 3000",
            "wl0.conf:3: [Interface] FrameSize: 3000 is not a frame size",
        ),
        (
            "RingSize = 1000",
            "wl0.conf:3: [Interface] RingSize: 1000 is not a ring size",
        ),
        (
            "RingSize = 32",
            "wl0.conf:3: [Interface] RingSize: 32 is not a ring size",
        ),
        (
            "BusyPoll = yes",
            "wl0.conf:3: [Interface] BusyPoll: \"yes\" is neither on nor off",
        ),
    ];
    for (line, expected) in cases {
        let message = parse_err(&format!("{}{line}\n", interface_only()));
        assert!(message.starts_with(expected), "{line}: {message}");
    }
}

#[test]
fn contradictory_layout_keys_are_refused_at_the_named_key() {
    let cases = [
        (
            "Workers = 4\nQueues = 8\n",
            "wl0.conf:3: [Interface] Workers: Workers = 4 but Queues = 8",
        ),
        (
            "Workers = 4\nCores = 2-4\n",
            "wl0.conf:4: [Interface] Cores: Cores = 2-4 lists 3 CPUs but Workers = 4",
        ),
        (
            "Attach = eth0\nMTU = 2000\nFrameSize = 2048\n",
            "wl0.conf:5: [Interface] FrameSize: FrameSize = 2048 holds tunnel packets up to MTU \
             1679, but the MTU is 2000",
        ),
    ];
    for (lines, expected) in cases {
        let message = parse_err(&format!("{}{lines}", interface_only()));
        assert!(message.starts_with(expected), "{lines:?}: {message}");
    }
    // Frames only exist in XDP mode: the portable mode takes any MTU.
    let text = format!("{}MTU = 9000\n", interface_only());
    assert!(Config::parse(&text, "wl0.conf").is_ok());
    let message = parse_err(&format!("{}Attach = eth0\nMTU = 9000\n", interface_only()));
    assert!(
        message.starts_with("wl0.conf: [Interface] FrameSize: FrameSize = 4096"),
        "{message}"
    );
}

const HA_KEY: &str = "cGVyaW9kaWNhbGx5LXJvdGF0ZWQtaGEta2V5LTMyYiE=";

fn ha_config(keys: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("[Interface]\nPrivateKey = {ALICE_PRIVATE}\n{keys}"),
        "wl0.conf",
    )
}

#[test]
fn ha_keys_parse_and_incomplete_or_stray_ones_name_the_key() {
    let config = ha_config(&format!(
        "HaMode = keepalived\nHaNodeId = 1\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
         HaPeer = 10.0.0.2:51900, 10.0.0.3:51900\nHaPeer = 10.0.0.4:51900\nHaCheckpointMs = 50\n"
    ))
    .unwrap();
    let ha = config.interface.ha.expect("HA configured");
    assert_eq!(ha.mode, HaMode::Keepalived);
    assert_eq!(ha.node_id, 1);
    assert_eq!(ha.partners.len(), 3);
    assert_eq!(ha.checkpoint, Duration::from_millis(50));
    assert!(
        !format!("{ha:?}").contains(HA_KEY),
        "HaKey leaked into Debug"
    );

    for (keys, names) in [
        ("HaNodeId = 1\n", "HaNodeId"),
        ("HaMode = keepalived\nHaNodeId = 1\n", "HaListen"),
        ("HaMode = active-active\nHaNodeId = 16\n", "HaNodeId"),
        ("HaMode = both\n", "HaMode"),
        ("HaListen = 10.0.0.1\n", "HaListen"),
        ("HaCheckpointMs = 5\n", "HaCheckpointMs"),
    ] {
        let error = ha_config(keys).unwrap_err().to_string();
        assert!(error.contains(names), "{keys:?}: {error}");
    }
    let own = ha_config(&format!(
        "HaMode = keepalived\nHaNodeId = 1\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
         HaPeer = 10.0.0.1:51900\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(own.contains("own HaListen"), "{own}");

    let builtin = |extra: &str| {
        ha_config(&format!(
            "HaMode = builtin\nHaNodeId = 0\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
             HaPeer = 10.0.0.2:51900\n{extra}"
        ))
    };
    let ha = builtin("HaVirtualIp = 192.0.2.100/24 dev eth0\nHaVirtualIp = 2001:db8::100/64 dev eth1\nHaPriority = 150\nHaPreempt = off\n")
        .unwrap()
        .interface
        .ha
        .unwrap();
    assert_eq!(ha.virtual_ips.len(), 2);
    assert_eq!(ha.virtual_ips[1].to_string(), "2001:db8::100/64 dev eth1");
    assert_eq!((ha.priority, ha.preempt), (150, false));
    assert!(ha.track_interfaces.is_empty());
    let tracking = builtin(
        "HaVirtualIp = 192.0.2.100/24 dev eth0\nHaTrackInterface = eth0\nHaTrackInterface = eth1\n",
    )
    .unwrap();
    let ha = tracking.interface.ha.as_ref().unwrap();
    assert_eq!(ha.track_interfaces, ["eth0", "eth1"]);
    assert_eq!(
        Config::parse(&tracking.to_wg_quick_string(), "again").unwrap(),
        tracking
    );
    for (extra, key) in [
        ("", "HaVirtualIp"),
        ("HaVirtualIp = 192.0.2.100 dev eth0\n", "HaVirtualIp"),
        ("HaVirtualIp = 192.0.2.100/24 eth0\n", "HaVirtualIp"),
        (
            "HaVirtualIp = 192.0.2.100/24 dev eth0\nHaPriority = 0\n",
            "HaPriority",
        ),
        (
            "HaVirtualIp = 192.0.2.100/24 dev eth0\nHaPeer = 10.0.0.3:51900\n",
            "HaPeer",
        ),
        (
            "HaVirtualIp = 192.0.2.100/24 dev eth0\nHaTrackInterface = eth0\nHaTrackInterface = eth0\n",
            "wl0.conf:10: [Interface] HaTrackInterface: eth0 is listed twice",
        ),
        (
            "HaVirtualIp = 192.0.2.100/24 dev eth0\nHaTrackInterface = a/b\n",
            "wl0.conf:9: [Interface] HaTrackInterface",
        ),
    ] {
        let error = builtin(extra).unwrap_err().to_string();
        assert!(error.contains(key), "{extra:?}: {error}");
    }
    let tracked_by_keepalived = ha_config(&format!(
        "HaMode = keepalived\nHaNodeId = 0\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
         HaPeer = 10.0.0.2:51900\nHaTrackInterface = eth0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        tracked_by_keepalived.contains(
            "wl0.conf:8: [Interface] HaTrackInterface: is only used with HaMode = builtin"
        ),
        "{tracked_by_keepalived}"
    );
    let stray = ha_config(&format!(
        "HaMode = keepalived\nHaNodeId = 0\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
         HaPeer = 10.0.0.2:51900\nHaPriority = 5\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        stray.contains("HaPriority") && stray.contains("builtin"),
        "{stray}"
    );
}

#[test]
fn a_peer_may_list_several_endpoints_with_failover_keys() {
    let config = ha_config(&format!(
        "\n[Peer]\nPublicKey = {BOB_PUBLIC}\nEndpoint = gw1.example.com:51820, 192.0.2.7:51820\n\
         Endpoint = [2001:db8::9]:443\nEndpointPolicy = random\nFailoverAfter = 3\nFailBack = 60\n"
    ))
    .unwrap();
    let peer = &config.peers[0];
    assert_eq!(
        peer.endpoint.as_ref().unwrap().to_string(),
        "gw1.example.com:51820"
    );
    let more: Vec<String> = peer
        .more_endpoints
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(more, ["192.0.2.7:51820", "[2001:db8::9]:443"]);
    assert_eq!(peer.failover.policy, EndpointPolicy::Random);
    assert_eq!(peer.failover.after, Duration::from_secs(3));
    assert_eq!(peer.failover.fail_back, Some(Duration::from_secs(60)));
    let again = Config::parse(&config.to_wg_quick_string(), "again").unwrap();
    assert_eq!(again, config);

    for (keys, key) in [
        ("Endpoint = 192.0.2.7:1, 192.0.2.7:1\n", "Endpoint"),
        ("EndpointPolicy = sometimes\n", "EndpointPolicy"),
        ("FailoverAfter = 0\n", "FailoverAfter"),
        ("FailBack = soon\n", "FailBack"),
    ] {
        let error = ha_config(&format!("\n[Peer]\nPublicKey = {BOB_PUBLIC}\n{keys}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{keys:?}: {error}");
    }
}

#[test]
fn inner_names_the_lan_nic_beside_exactly_one_attach_nic() {
    let parse = |text: &str| Config::parse(text, "wl0.conf");
    let config = parse(&format!(
        "{}Attach = eth0\nInner = eth1\n",
        interface_only()
    ))
    .unwrap();
    assert_eq!(config.interface.inner, InnerSide::Nic("eth1".to_owned()));
    let config = parse(&format!("{}Inner = TUN\n", interface_only())).unwrap();
    assert_eq!(config.interface.inner, InnerSide::Tun);
    for (extra, expected) in [
        (
            "Inner = eth1\n",
            "needs exactly one Attach NIC, the WAN side; found 0",
        ),
        (
            "Attach = eth0, eth2\nInner = eth1\n",
            "needs exactly one Attach NIC, the WAN side; found 2",
        ),
        ("Attach = eth0\nInner = eth0\n", "eth0 is the Attach NIC"),
        (
            "Attach = eth0\nInner = a/b\n",
            "neither `tun` nor a network interface",
        ),
        ("Attach = eth0\nInner = eth1\nInner = eth2\n", "Inner"),
    ] {
        let message = parse_err(&format!("{}{extra}", interface_only()));
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(message.contains("Inner"), "{extra:?}: {message}");
    }
}

#[test]
fn endpoints_carry_their_own_keepalive_and_take_the_default_port() {
    let config = ha_config(&format!(
        "\n[Peer]\nPublicKey = {BOB_PUBLIC}\nPersistentKeepalive = 25\n\
         Endpoint = gw1.example.com keepalive=5, 192.0.2.7:443\n\
         Endpoint = [2001:db8::9] keepalive=off\nEndpointPort = 51820\n"
    ))
    .unwrap();
    let peer = &config.peers[0];
    let endpoints: Vec<String> = peer.endpoints().map(ToString::to_string).collect();
    assert_eq!(
        endpoints,
        [
            "gw1.example.com:51820",
            "192.0.2.7:443",
            "[2001:db8::9]:51820"
        ]
    );
    let keepalives: Vec<Option<u16>> = (0..4)
        .map(|index| peer.keepalive_at(index).map(NonZeroU16::get))
        .collect();
    assert_eq!(keepalives, [Some(5), Some(25), None, Some(25)]);
    let text = config.to_wg_quick_string();
    assert!(
        text.contains(
            "Endpoint = gw1.example.com:51820 keepalive=5, 192.0.2.7:443, \
             [2001:db8::9]:51820 keepalive=off\n"
        ),
        "{text}"
    );
    assert_eq!(Config::parse(&text, "again").unwrap(), config);
}

#[test]
fn bad_endpoint_settings_name_the_line_and_key() {
    // In `ha_config`'s text the [Peer] header is line 4, its first key after PublicKey line 6.
    let cases = [
        (
            "Endpoint = gw.example.com:1\nEndpoint = gw2.example.com\n",
            ":7: [Peer] Endpoint: \"gw2.example.com\" has no :PORT and the peer sets no \
             EndpointPort",
        ),
        (
            "Endpoint = gw.example.com:1 keepalive=often\n",
            ":6: [Peer] Endpoint: \"often\" is not a keepalive interval",
        ),
        (
            "Endpoint = gw.example.com:1 mtu=1400\n",
            ":6: [Peer] Endpoint: \"mtu\" is not an endpoint setting (valid: keepalive)",
        ),
        (
            "EndpointPort = 443\nEndpoint = 192.0.2.7:443, 192.0.2.7\n",
            ":7: [Peer] Endpoint: 192.0.2.7:443 is listed twice",
        ),
        (
            "EndpointPort = 0\n",
            ":6: [Peer] EndpointPort: \"0\" is not a UDP port",
        ),
        (
            "EndpointPort = 443\n",
            ":6: [Peer] EndpointPort: is set but the peer has no Endpoint",
        ),
        (
            "EndpointPort = 443\nEndpoint = gw:1\nEndpointPort = 444\n",
            ":8: [Peer] EndpointPort",
        ),
    ];
    for (keys, expected) in cases {
        let error = ha_config(&format!("\n[Peer]\nPublicKey = {BOB_PUBLIC}\n{keys}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{keys:?}: {error}");
    }
}

#[test]
fn spread_needs_an_attach_nic() {
    let config = Config::parse(
        &format!("{}Attach = eth0\nSpread = on\n", interface_only()),
        "wl0.conf",
    )
    .unwrap();
    assert!(config.interface.spread);
    let message = parse_err(&format!("{}Spread = on\n", interface_only()));
    assert!(
        message.contains("Spread") && message.contains("needs an Attach NIC"),
        "{message}"
    );
    let message = parse_err(&format!(
        "{}Attach = eth0\nSpread = maybe\n",
        interface_only()
    ));
    assert!(message.contains("Spread"), "{message}");
}

#[test]
fn ha_pools_are_active_active_prefixes() {
    let active_active = |extra: &str| {
        ha_config(&format!(
            "HaMode = active-active\nHaNodeId = 0\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
             HaPeer = 10.0.0.2:51900\n{extra}"
        ))
    };
    let config =
        active_active("HaPool = 10.99.1.7/24, fd99:1::/64\nHaPool = 10.98.0.0/16\n").unwrap();
    let pools: Vec<String> = (config.interface.ha.as_ref().unwrap().pools.iter())
        .map(ToString::to_string)
        .collect();
    assert_eq!(pools, ["10.99.1.0/24", "fd99:1::/64", "10.98.0.0/16"]);
    assert_eq!(
        Config::parse(&config.to_wg_quick_string(), "again").unwrap(),
        config
    );
    for (extra, expected) in [
        (
            "HaPool = 10.99.1.0/33\n",
            "wl0.conf:8: [Interface] HaPool: \"10.99.1.0/33\"",
        ),
        (
            "HaPool = 10.99.1.0/24\nHaPool = 10.99.1.0/24\n",
            "wl0.conf:9: [Interface] HaPool: 10.99.1.0/24 is listed twice",
        ),
    ] {
        let error = active_active(extra).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra:?}: {error}");
    }
    let pair = ha_config(&format!(
        "HaMode = keepalived\nHaNodeId = 0\nHaKey = {HA_KEY}\nHaListen = 10.0.0.1:51900\n\
         HaPeer = 10.0.0.2:51900\nHaPool = 10.99.1.0/24\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        pair.contains("wl0.conf:8: [Interface] HaPool: is only used with HaMode = active-active"),
        "{pair}"
    );
}
