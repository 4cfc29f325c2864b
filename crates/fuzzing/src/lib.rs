//! The bodies of Tributary's fuzz targets, one function each, over every
//! decoder of outside input: device JSON, line protocol, write-ahead log
//! records and batches, chunks, rollups and block files, MQTT client streams.
//! Each takes any bytes and must return; a panic is the bug the fuzzer finds.
//! `fuzz/fuzz_targets/*.rs` call them under libFuzzer (`cargo fuzz run NAME`);
//! `tests/corpus.rs` replays the checked-in corpus through them on every run.

use std::sync::OnceLock;

use tributary_model::line_protocol::{self, Precision};
use tributary_model::ParseLimits;
use tributary_pipeline::wal::{self, Format};
use tributary_store::series::engine::decode;

/// A fuzz target: any bytes in, a panic when it finds a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets` and `fuzz/corpus` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("device_json", device_json),
    ("line_protocol", line_protocol),
    ("wal_record", wal_record),
    ("wal_batch", wal_batch),
    ("chunk", chunk),
    ("rollup", rollup),
    ("block", block),
    ("mqtt_stream", mqtt_stream),
];

/// A ThingsBoard telemetry payload; what parses holds to the limits.
pub fn device_json(data: &[u8]) {
    let limits = ParseLimits::default();
    if let Ok(points) = tributary_model::parse_telemetry(data, 1_700_000_000_000_000_000, &limits) {
        assert!(!points.is_empty() && points.len() <= limits.max_points);
        assert!(points.iter().all(|p| p.ts >= 0));
    }
}

/// An InfluxDB line-protocol body; every parsed point can be read back.
pub fn line_protocol(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = line_protocol::parse(
        text,
        Precision::Ns,
        1_700_000_000_000_000_000,
        &ParseLimits::default(),
    );
    for (_, points) in &parsed.groups {
        assert!(points.iter().all(|p| p.ts >= 0));
    }
}

/// A write-ahead log record, in both segment formats.
pub fn wal_record(data: &[u8]) {
    for format in [Format::Postcard, Format::Compact] {
        if let Ok((_, _, used)) = wal::decode_record(data, format) {
            assert!(used <= data.len());
        }
    }
}

/// A batch as the log encodes it; what decodes, encodes, and decodes back
/// to the same bytes (compared as bytes: a NaN is not equal to itself).
pub fn wal_batch(data: &[u8]) {
    if let Ok(batch) = wal::decode_batch(data) {
        let again = wal::encode_batch(&batch);
        let round = wal::decode_batch(&again).expect("an encoded batch decodes");
        assert_eq!(wal::encode_batch(&round), again);
    }
}

/// A compressed chunk.
pub fn chunk(data: &[u8]) {
    let _ = decode::chunk(data);
}

/// A chunk's rollup record.
pub fn rollup(data: &[u8]) {
    let _ = decode::rollup(data);
}

/// A whole block file.
pub fn block(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder"));
    let _ = decode::block(dir.path(), data);
}

/// What an MQTT client sends on a connection (3.1.1, then 5).
pub fn mqtt_stream(data: &[u8]) {
    for v5 in [false, true] {
        let _ = tributary_mqtt::decode_client_stream(data, v5, 1 << 20);
    }
}
