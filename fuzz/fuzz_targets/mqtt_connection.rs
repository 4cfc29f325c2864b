#![no_main]
//! `cargo fuzz run mqtt_connection`: see `tributary_fuzzing::mqtt_connection`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::mqtt_connection(data));
