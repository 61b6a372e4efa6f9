#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acemux_core::fuzzing::segmenter(data));
