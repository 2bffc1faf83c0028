#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warpline_fuzz::targets::encap_roundtrip::run(data));
