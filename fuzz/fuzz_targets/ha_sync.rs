#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warpline_fuzz::targets::ha_sync::run(data));
