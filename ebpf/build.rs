//! Compiles `steer.c` with clang for the BPF target into `$OUT_DIR/steer.o`,
//! which `src/lib.rs` embeds. clang is needed only here, at build time.

use std::{env, path::PathBuf, process::Command};

const INSTALL_HINT: &str = "install it with `apt-get install clang llvm libbpf-dev` \
     (only clang is strictly required), or point the CLANG environment variable at a clang \
     that has the BPF backend";

fn main() {
    let source =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("steer.c");
    let object = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("steer.o");
    println!("cargo::rerun-if-changed={}", source.display());
    println!("cargo::rerun-if-env-changed=CLANG");

    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .output();
    match output {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "warpline-ebpf: `{}` not found: building the XDP program needs clang; {INSTALL_HINT}",
            clang.to_string_lossy()
        ),
        Err(err) => panic!(
            "warpline-ebpf: could not run `{}`: {err}; {INSTALL_HINT}",
            clang.to_string_lossy()
        ),
        Ok(out) if !out.status.success() => panic!(
            "warpline-ebpf: clang failed to compile {} ({}):\n{}{}",
            source.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
}
