//! Replays every input of the checked-in fuzz corpus (`fuzz/corpus/<target>/`)
//! through its target: fast, and it keeps every input a fuzzer once found
//! (and every seed) passing. `cargo fuzz run <target>` searches for more.

use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_corpus_input_passes_its_target() {
    for (name, target) in tributary_fuzzing::TARGETS {
        let dir = corpus_dir().join(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "no corpus for {name}");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            target(&data);
        }
    }
}

/// The connection harness reaches past CONNECT: the seed's telemetry is
/// accepted (CONNACK success, then a PUBACK).
#[test]
fn the_connection_harness_reaches_the_device_api() {
    let seed = std::fs::read(corpus_dir().join("mqtt_connection/seed-0")).unwrap();
    let out = tributary_fuzzing::mqtt_connection_output(&seed);
    assert!(out.starts_with(&[0x20, 0x02, 0x00, 0x00]), "{out:?}");
    assert!(
        out.windows(2).any(|w| w == [0x40, 0x02]),
        "no PUBACK in {out:?}"
    );
}

/// Seeds: valid inputs of each target, made from the encoders, so the
/// fuzzer starts from the formats' real shapes. Rewrites `fuzz/corpus/*/seed-*`:
/// `cargo test -p tributary-fuzzing -- --ignored write_seeds`.
#[test]
#[ignore]
fn write_seeds() {
    use tributary_model::{Batch, DeviceId, Point, TenantId, Value};
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    for (i, body) in [
        r#"{"temp":21.5,"on":true,"mode":"eco","n":3}"#,
        r#"{"ts":1700000000000,"values":{"temp":21.5}}"#,
        r#"[{"ts":1700000000000,"values":{"a":1}},{"ts":1700000001000,"values":{"a":2.5}}]"#,
        r#"{"big":18446744073709551616}"#,
        r#"[]"#,
    ]
    .iter()
    .enumerate()
    {
        write("device_json", &i.to_string(), body.as_bytes());
    }
    for (i, body) in [
        "weather,city=Zurich temp=21.5,hum=40i,ok=true,note=\"a b\" 1700000000000000000\n",
        "cpu,host=a usage_user=1.5,usage_system=2 1700000000000000000\ncpu,host=b usage_user=3 1700000000000000001\n",
        "m\\ x,t\\=1=a\\,b f=\"q\\\"\" -5\nbad line\n",
    ]
    .iter()
    .enumerate()
    {
        write("line_protocol", &i.to_string(), body.as_bytes());
    }
    let batch = Batch {
        tenant: TenantId::new(),
        device: DeviceId::new(),
        points: (0..20)
            .map(|i| Point {
                key: if i % 2 == 0 { "temp" } else { "state" }.into(),
                ts: 1_700_000_000_000_000_000 + i * 1_000_000_000,
                value: match i % 4 {
                    0 => Value::Float(21.5 + i as f64),
                    1 => Value::Int(i),
                    2 => Value::Bool(i % 3 == 0),
                    _ => Value::Str(format!("s{i}")),
                },
            })
            .collect(),
    };
    let event = tributary_model::Event::Telemetry(batch.clone());
    let encoded = tributary_log::wal::encode_event(&event);
    write("wal_batch", "0", &encoded);
    let attributes = tributary_model::Event::Attributes(tributary_model::AttributeChange {
        tenant: batch.tenant,
        device: batch.device,
        scope: tributary_model::AttributeScope::Client,
        set: [("fw".to_string(), "\"1.2\"".to_string())].into(),
        deleted: vec!["old".into()],
        at_ms: 1_700_000_000_000,
    });
    write(
        "wal_batch",
        "attributes",
        &tributary_log::wal::encode_event(&attributes),
    );
    // Found by the fuzzer: a NaN (which ingest never makes) decodes; the
    // target compares re-encoded bytes, since NaN != NaN.
    let mut nan = batch.clone();
    nan.points[0].value = Value::Float(f64::NAN);
    write(
        "wal_batch",
        "nan",
        &tributary_log::wal::encode_event(&tributary_model::Event::Telemetry(nan)),
    );
    let mut record = Vec::new();
    tributary_log::wal::encode_record(7, &event, &mut record).unwrap();
    write("wal_record", "0", &record);
    write("chunk", "0", &[0, 0, 0, 0]);
    write("rollup", "0", &[0]);
    write("block", "0", b"TRBBLK");
    // MQTT 3.1.1: CONNECT, SUBSCRIBE with a shared filter, PUBLISH QoS 1, DISCONNECT.
    let mut mqtt = vec![
        0x10, 0x12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x06,
    ];
    mqtt.extend_from_slice(b"client");
    let filter = b"$share/g/a/+";
    mqtt.extend_from_slice(&[
        0x82,
        (2 + 2 + filter.len() + 1) as u8,
        0x00,
        0x01,
        0x00,
        filter.len() as u8,
    ]);
    mqtt.extend_from_slice(filter);
    mqtt.push(0x01);
    let topic = b"v1/devices/me/telemetry";
    let payload = br#"{"t":1}"#;
    mqtt.extend(publish(topic, Some(2), payload));
    mqtt.extend_from_slice(&[0xe0, 0x00]);
    write("mqtt_stream", "0", &mqtt);
    // After the harness's CONNECT (first byte even): a device's QoS 1
    // telemetry, its client attributes (QoS 0, acknowledged after what is
    // pending), a ping, a disconnect.
    let mut conn = vec![0u8];
    let body = br#"{"temp":21.5}"#;
    conn.extend(publish(topic, Some(7), body));
    let req = b"v1/devices/me/attributes";
    let ask = br#"{"fw":"1.2"}"#;
    conn.extend(publish(req, None, ask));
    conn.extend_from_slice(&[0xc0, 0x00, 0xe0, 0x00]);
    write("mqtt_connection", "0", &conn);
}

/// An MQTT 3.1.1 PUBLISH of `payload` on `topic` (short: one length byte):
/// QoS 1 with packet id `pkid`, or QoS 0 without one.
fn publish(topic: &[u8], pkid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let id_len = if pkid.is_some() { 2 } else { 0 };
    let mut p = vec![
        if pkid.is_some() { 0x32 } else { 0x30 },
        (2 + topic.len() + id_len + payload.len()) as u8,
        0x00,
        topic.len() as u8,
    ];
    p.extend_from_slice(topic);
    if let Some(id) = pkid {
        p.extend_from_slice(&id.to_be_bytes());
    }
    p.extend_from_slice(payload);
    p
}
