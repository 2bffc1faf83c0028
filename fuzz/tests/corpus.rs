//! Runs every checked-in corpus input through its target without libFuzzer, so a broken
//! seed or a regression shows up in a plain `cargo test` too:
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`.

use std::path::Path;

use warpline_fuzz::targets;

/// Runs every file in `fuzz/<kind>/<target>/`; returns how many there were.
fn replay_dir(kind: &str, target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut inputs = 0;
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).expect("readable input");
        println!("{}", path.display());
        run(&data);
        inputs += 1;
    }
    inputs
}

/// The seeds and regression inputs (`regression-*`: inputs that once found a bug).
fn replay(target: &str, run: fn(&[u8])) {
    let seeds = replay_dir("corpus", target, run);
    assert!(seeds > 0, "fuzz/corpus/{target} holds no inputs");
}

macro_rules! corpus_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), targets::$target::run);
            }
        )*
    };
}

corpus_tests!(
    wire_messages,
    wire_headers,
    decap_frames,
    encap_roundtrip,
    replay_window,
    handshake_responder,
    ha_sync,
    config_parse,
    ctl_request,
    ctl_response,
);
