#![no_main]
//! `cargo fuzz run chunk`: see `tributary_fuzzing::chunk`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::chunk(data));
