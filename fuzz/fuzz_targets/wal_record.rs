#![no_main]
//! `cargo fuzz run wal_record`: see `tributary_fuzzing::wal_record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_fuzzing::wal_record(data));
