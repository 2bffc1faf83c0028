#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warpline_fuzz::targets::ctl_response::run(data));
