//! `warpline-bench`: the numbers behind warpline's claims. Every suite measures warpline and a
//! baseline in the same run and reports ratios, because the machines this runs on are shared
//! and noisy; absolute figures are printed with the machine they came from.
//!
//! Run through `cargo xtask bench <suite>` (bench profile: LTO, one codegen unit). The in-process
//! suites (crypto, handshake, pipeline, scale) are self-contained (no external commands, no
//! files of the source tree), so the binary can also be copied to a bigger machine and run
//! there with `--out DIR`. The lab suites run real programs: soak needs the `warpline` binary
//! beside this one; tunnel needs it too, plus iperf3, boringtun-cli, wg, openvpn, openssl and
//! ip (`cargo xtask bench tunnel` installs what is missing).
//!
//! Dependencies used only here, and why: plotters (SVG charts, no C or font libraries),
//! hdrhistogram (the tunnel suite's latency percentiles), aws-lc-rs, RustCrypto `aes-gcm` /
//! `chacha20poly1305`, boringtun and snow (the baselines the suites compare against).

mod chart;
mod progress;
mod report;
mod suites;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: warpline-bench <suite> [options]

suites:
  crypto      one core sealing at 64..8192 B: ring ChaCha20-Poly1305 / AES-256-GCM against
              RustCrypto (the per-core ceiling)
  handshake   responder handshakes/s per core and cookie replies/s under a flood,
              against boringtun and snow in the same run
  pipeline    encap/decap batches vs raw AEAD and boringtun, UDP checksum, session lookup
  scale       encap/decap with 1..N pinned worker threads sharing one session table,
              many peers and one peer: total rate and scaling efficiency
  spread      (root) one tunnel's decryption over 1..N pinned workers (Spread = on): the
              receiving worker deals chunks out and takes them back in order; rate and
              scaling efficiency
  tunnel      (root) site to site through two gateways in namespaces: plain forwarding,
              warpline (portable and XDP, ChaCha20-Poly1305 and AES-256-GCM), boringtun-cli
              (1 and 4 threads), OpenVPN 2.6 (AES-256-GCM, ChaCha20-Poly1305): iperf3 TCP 1
              and 4 streams, UDP packets/s at 64 and 1400 B, probe latency p50/p99/p99.9
  hostile     (root) the tunnel lab's gw A flooded with the hostile-traffic test's packets
              (bad, replayed, forged, valid-MAC1 initiations) while a real peer's TCP flows:
              throughput under the flood / unloaded, gateway CPU per hostile packet
  soak        (root) an XDP gateway and many warpline clients for --minutes, rekeying every
              4 s and roaming: gateway memory, fds, drops, handshakes and echo loss over time
  list        this list

  failover    (root; `cargo xtask bench failover [--failovers N]`, not this binary) HA gap
              distribution, warpline's synced pair vs no sync, with the real keepalived: it
              runs the HA lab of control/tests/ha_gateway_pair.rs

options:
  --quick            shorter runs, for smoke tests
  --out DIR          write <suite>.json and <suite>.svg to DIR (default: target/bench)
  --workers 1,2,4    scale, spread: worker counts (default 1,2,4,8,12, clamped to the CPUs there are)
  --seconds S        scale, spread: seconds per point (default 1, 0.1 with --quick);
                     tunnel, hostile: whole seconds per iperf3 test (default 2, hostile 3; 1
                     with --quick)
  --runs N           scale, spread, tunnel, hostile: runs, the median is reported (default 3,
                     1 with --quick for tunnel and hostile)
  --variants a,b     tunnel, hostile: only these (hostile: default warpline-xdp-chacha,
                     warpline-chacha, boringtun-4) (plain, warpline-chacha, warpline-aes,
                     warpline-xdp-chacha, warpline-xdp-aes, warpline-full-bypass,
                     boringtun-1, boringtun-4, openvpn-aes, openvpn-chacha)
  --congestion CC    tunnel, hostile: the end hosts' TCP congestion control (default cubic,
                     Linux's default, whatever this host's sysctl says; e.g. bbr)
  --rate PPS         hostile: hostile packets per second (default 30000)
  --minutes M        soak: how long (default 10, 1 with --quick)
  --peers N          soak: warpline clients, one peer each (default 16)
  --failovers        soak: an active-active HA pair; the clients' path to gateway A is cut
                     for 3 s every --failover-every S seconds (default: a sixth of the run,
                     10 to 120 s); writes soak-failover.json and .svg";

/// The command line: a suite and options.
#[derive(Debug, Default)]
struct Args {
    suite: Option<String>,
    quick: bool,
    scale: suites::scale::Options,
    soak: suites::soak::Options,
    tunnel: suites::tunnel::Options,
    hostile: suites::hostile::Options,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or(format!("{word} needs a value"));
        match word.as_str() {
            "--quick" => {
                args.quick = true;
                args.scale.quick = true;
                args.soak.quick = true;
                args.tunnel.quick = true;
                args.hostile.quick = true;
            }
            "--out" => report::set_output_dir(PathBuf::from(value()?)),
            "--workers" => {
                let counts = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--workers: {e} (expected e.g. 1,2,4)"))?;
                args.scale.workers = Some(counts);
            }
            "--seconds" => {
                let seconds: f64 = value()?.parse().map_err(|e| format!("--seconds: {e}"))?;
                args.scale.seconds = Some(seconds);
                args.tunnel.seconds = Some(seconds);
                args.hostile.seconds = Some(seconds);
            }
            "--runs" => {
                let runs: usize = value()?.parse().map_err(|e| format!("--runs: {e}"))?;
                args.scale.runs = Some(runs);
                args.tunnel.runs = Some(runs);
                args.hostile.runs = Some(runs);
            }
            "--variants" => {
                let names: Vec<String> = value()?
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect();
                if names.is_empty() {
                    return Err(
                        "--variants: give a comma-separated list (`list` shows them)".into(),
                    );
                }
                args.hostile.variants = Some(names.clone());
                args.tunnel.variants = Some(names);
            }
            "--congestion" => {
                let name = congestion_name(value()?)?;
                args.tunnel.congestion = Some(name.clone());
                args.hostile.congestion = Some(name);
            }
            "--rate" => {
                args.hostile.rate = Some(value()?.parse().map_err(|e| format!("--rate: {e}"))?)
            }
            "--minutes" => {
                args.soak.minutes = Some(value()?.parse().map_err(|e| format!("--minutes: {e}"))?)
            }
            "--peers" => {
                args.soak.peers = Some(value()?.parse().map_err(|e| format!("--peers: {e}"))?)
            }
            "--failovers" => {
                args.soak.failover_every.get_or_insert(None);
            }
            "--failover-every" => {
                let seconds = value()?
                    .parse()
                    .map_err(|e| format!("--failover-every: {e}"))?;
                args.soak.failover_every = Some(Some(seconds));
            }
            "-h" | "--help" => args.suite = Some("list".into()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}\n{USAGE}")),
            suite if args.suite.is_none() => args.suite = Some(suite.to_owned()),
            extra => return Err(format!("unexpected argument '{extra}'\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Checks that `name` is spelled like a TCP congestion control (`cubic`, `bbr`, `dctcp`), so
/// that a slip gets a clear message here rather than an error from the lab's sysctl write.
fn congestion_name(name: String) -> Result<String, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name)
    } else {
        Err(format!(
            "--congestion: '{name}' is not an algorithm name (e.g. cubic, bbr)"
        ))
    }
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        let quick = args.quick;
        match args.suite.as_deref() {
            Some("crypto") => suites::crypto::run(quick),
            Some("handshake") => suites::handshake::run(quick),
            Some("hostile") => suites::hostile::run(&args.hostile),
            Some("pipeline") => suites::pipeline::run(quick),
            Some("scale") => suites::scale::run(&args.scale),
            Some("soak") => suites::soak::run(&args.soak),
            Some("spread") => suites::spread::run(&args.scale),
            Some("tunnel") => suites::tunnel::run(&args.tunnel),
            Some("list") | None => {
                println!("{USAGE}");
                Ok(())
            }
            Some(other) => Err(format!("unknown suite '{other}' (try `list`)")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("warpline-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::congestion_name;

    #[test]
    fn congestion_names_are_checked_before_they_reach_the_sysctl() {
        for good in ["cubic", "bbr", "dctcp", "htcp_2"] {
            assert_eq!(congestion_name(good.to_owned()).as_deref(), Ok(good));
        }
        for bad in ["", "bb r", "../x", "cubic\n", "bbr,cubic"] {
            let error = congestion_name(bad.to_owned()).unwrap_err();
            assert!(error.contains("not an algorithm name"), "{bad:?}: {error}");
        }
    }
}
