#![no_main]
//! `cargo fuzz run block`: see `tributary_fuzzing::block`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::block(data));
