#![no_main]
//! `cargo fuzz run rollup`: see `tributary_fuzzing::rollup`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::rollup(data));
