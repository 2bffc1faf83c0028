//! The XDP attachment dies with its owner: dropping [`Steering`] detaches
//! the program, and so does `kill -9` of the process holding it (the BPF
//! link is closed by the kernel with the process's descriptors). Needs root;
//! skips with a printed reason otherwise.

mod xdp_support;

use std::{
    io::{BufRead, BufReader},
    os::fd::{AsFd, AsRawFd},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use warpline_dataplane::{
    lab::{Host, NetNs, Veth},
    xdp::{AttachMode, Role, Steering},
};
use xdp_support::can_run;

const CHILD_ENV: &str = "WARPLINE_XDP_DETACH_CHILD";

fn attached_program(host: &Host, if_index: u32) -> Option<u32> {
    host.link(if_index).expect("link facts").xdp_program_id
}

fn wait_until_detached(host: &Host, if_index: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attached = attached_program(host, if_index);
        if attached.is_none() || Instant::now() > deadline {
            return attached;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn xdp_drop_detaches() {
    if !can_run() {
        return;
    }
    let gw = Host::new("gw").expect("namespace");
    let peer = Host::new("pe").expect("namespace");
    let veth = Veth::new(&gw, &peer, 1).expect("veth");
    for mode in [AttachMode::Native, AttachMode::Generic] {
        let steering = gw
            .run(|| Steering::attach(veth.a.index, Role::Wan, mode, 1))
            .expect("attach");
        assert!(
            attached_program(&gw, veth.a.index).is_some(),
            "{mode:?} attached"
        );
        drop(steering);
        assert_eq!(
            wait_until_detached(&gw, veth.a.index),
            None,
            "{mode:?} detached on drop"
        );
    }
}

fn killed_process_leaves_no_xdp(mode_name: &str) {
    let gw = Host::new("gw").expect("namespace");
    let peer = Host::new("pe").expect("namespace");
    let veth = Veth::new(&gw, &peer, 1).expect("veth");
    // The child joins the gateway namespace through our descriptor for it.
    let netns_path = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        gw.netns().as_fd().as_raw_fd()
    );
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "xdp_detach_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{netns_path} {} {mode_name}", veth.a.index),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(remaining) {
            Ok(line) if line.contains("child attached") => break,
            Ok(_) => continue,
            Err(error) => {
                let _ = child.kill();
                panic!("child never attached: {error}");
            }
        }
    }
    let program = attached_program(&gw, veth.a.index);
    assert!(program.is_some(), "child's program is attached");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap child");
    assert!(!status.success());
    assert_eq!(
        wait_until_detached(&gw, veth.a.index),
        None,
        "program {program:?} still attached after kill -9"
    );
}

#[test]
fn xdp_kill_9_leaves_no_program_native() {
    if can_run() {
        killed_process_leaves_no_xdp("native");
    }
}

#[test]
fn xdp_kill_9_leaves_no_program_generic() {
    if can_run() {
        killed_process_leaves_no_xdp("generic");
    }
}

/// Not a test on its own: the body of the child process the kill -9 tests
/// spawn. Without the environment variable it returns at once.
#[test]
fn xdp_detach_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split_whitespace();
    let (Some(netns_path), Some(if_index), Some(mode)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_ENV}: {spec:?}");
    };
    let mode = match mode {
        "native" => AttachMode::Native,
        _ => AttachMode::Generic,
    };
    NetNs::open(netns_path)
        .and_then(|netns| netns.enter_current_thread())
        .expect("join the parent's namespace");
    let if_index: u32 = if_index.parse().expect("interface index");
    let steering = Steering::attach(if_index, Role::Wan, mode, 1).expect("attach in child");
    println!("child attached {:?}", steering.attached_mode());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
