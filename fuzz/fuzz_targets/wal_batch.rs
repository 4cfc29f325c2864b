#![no_main]
//! `cargo fuzz run wal_batch`: see `tributary_fuzzing::wal_batch`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::wal_batch(data));
