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
