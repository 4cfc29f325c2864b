#![no_main]
//! `cargo fuzz run mqtt_stream`: see `tributary_fuzzing::mqtt_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::mqtt_stream(data));
