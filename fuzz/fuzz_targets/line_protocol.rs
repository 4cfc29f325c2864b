#![no_main]
//! `cargo fuzz run line_protocol`: see `tributary_fuzzing::line_protocol`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::line_protocol(data));
