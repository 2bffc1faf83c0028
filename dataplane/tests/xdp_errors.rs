//! The errors a user meets setting up XDP and AF_XDP, each checked for its
//! variant and printed, so their wording is visible in test logs. Needs root;
//! skips with a printed reason otherwise.

mod xdp_support;

use warpline_dataplane::{
    lab::{Host, Veth},
    xdp::{AttachMode, AttachedMode, Role, SteerError, Steering},
    xsk::{BindMode, SocketConfig, Umem, UmemConfig, XskError, XskSocket},
};
use xdp_support::can_run;

#[test]
fn xdp_setup_errors_say_what_failed() {
    if !can_run() {
        return;
    }
    let gw = Host::new("gw").expect("namespace");
    let peer = Host::new("pe").expect("namespace");
    let veth = Veth::new(&gw, &peer, 2).expect("veth");
    gw.run(|| {
        let missing = Steering::attach(9999, Role::Wan, AttachMode::Auto, 1).unwrap_err();
        println!("{missing}");
        assert!(matches!(
            missing,
            SteerError::InterfaceNotFound { if_index: 9999 }
        ));

        let too_many = Steering::attach(veth.a.index, Role::Wan, AttachMode::Auto, 3).unwrap_err();
        println!("{too_many}");
        assert!(matches!(
            too_many,
            SteerError::QueueCountMismatch {
                configured: 3,
                available: 2,
                ..
            }
        ));

        // Loopback has no driver XDP: native is refused, auto falls back.
        let native = Steering::attach(1, Role::Lan, AttachMode::Native, 1).unwrap_err();
        println!("{native}");
        assert!(matches!(native, SteerError::ModeUnsupported { .. }));
        let auto = Steering::attach(1, Role::Lan, AttachMode::Auto, 1).expect("auto on lo");
        assert_eq!(auto.attached_mode(), AttachedMode::Generic);
        drop(auto);

        let (umem, _frames) = Umem::new(UmemConfig {
            frame_size: 2048,
            frame_count: 64,
            headroom: 0,
        })
        .expect("UMEM");
        let mut config = SocketConfig::new(veth.a.index, 5);
        config.bind_mode = BindMode::Copy;
        let no_queue = XskSocket::bind(&umem, &config).unwrap_err();
        println!("{no_queue}");
        assert!(matches!(no_queue, XskError::BindRefused { queue: 5, .. }));

        let mut config = SocketConfig::new(veth.a.index, 0);
        let spent = XskSocket::bind(&umem, &config).unwrap_err();
        println!("{spent}");
        assert!(matches!(spent, XskError::UmemUnusable));

        let (umem, _frames) = Umem::new(UmemConfig {
            frame_size: 2048,
            frame_count: 64,
            headroom: 0,
        })
        .expect("UMEM");
        config.bind_mode = BindMode::ZeroCopy;
        let zero_copy = XskSocket::bind(&umem, &config).unwrap_err();
        println!("{zero_copy}");
        assert!(
            matches!(zero_copy, XskError::BindRefused { .. }),
            "veth has no zero-copy"
        );
    });

    let bad_frame = Umem::new(UmemConfig {
        frame_size: 3000,
        frame_count: 1,
        headroom: 0,
    })
    .unwrap_err();
    println!("{bad_frame}");
    assert!(matches!(bad_frame, XskError::InvalidConfig(_)));
}

/// Compiles `xdp_support/rejected_by_verifier.c` with clang (which building warpline needs
/// anyway) into a temporary object and returns its bytes.
fn object_the_verifier_rejects() -> Vec<u8> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/xdp_support/rejected_by_verifier.c");
    let object = std::env::temp_dir().join(format!(
        "warpline-rejected-{}.o",
        warpline_dataplane::lab::unique_name()
    ));
    let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let output = std::process::Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .output()
        .expect("clang (apt-get install clang) builds the BPF test object");
    assert!(output.status.success(), "clang failed: {output:?}");
    let bytes = std::fs::read(&object).expect("compiled object");
    let _ = std::fs::remove_file(&object);
    bytes
}

#[test]
fn a_program_the_verifier_refuses_is_reported_with_its_log() {
    if !can_run() {
        return;
    }
    let object = object_the_verifier_rejects();
    let gw = Host::new("gw").expect("namespace");
    let peer = Host::new("pe").expect("namespace");
    let veth = Veth::new(&gw, &peer, 1).expect("veth");
    let error = gw
        .run(|| {
            warpline_dataplane::xdp::ObjectProgram::attach(
                &object,
                "read_without_bounds_check",
                veth.a.index,
                AttachMode::Generic,
            )
        })
        .unwrap_err();
    println!("{error}");
    let SteerError::VerifierRejected { log, .. } = &error else {
        panic!("expected a verifier rejection, got {error:?}");
    };
    assert!(
        log.contains("invalid access to packet"),
        "the verifier's own reason is in the log: {log}"
    );
    assert!(error.to_string().contains("verifier log"), "{error}");
    let link = gw.link(veth.a.index).expect("link");
    assert_eq!(
        link.xdp_program_id, None,
        "a refused program leaves nothing attached"
    );
}
