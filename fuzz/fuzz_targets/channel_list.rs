#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acemux_core::fuzzing::channel_list(data));
