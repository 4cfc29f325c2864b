#![no_main]
//! `cargo fuzz run device_json`: see `tributary_fuzzing::device_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::device_json(data));
