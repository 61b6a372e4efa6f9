#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acemux_core::fuzzing::engine_list(data));
