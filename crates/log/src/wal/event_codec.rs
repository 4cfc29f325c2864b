//! How an event is written in a log record (segments of format 3): its kind
//! number, then its body — a telemetry batch in [`batch_codec`]'s encoding,
//! every other kind in postcard's. The kind comes first so that a reader
//! meets a kind it does not know as [`Event::Unknown`] and passes over it:
//! kinds added later need no new format.
//!
//! ```text
//! event = kind[1] body
//! ```

use tributary_model::{AttributeChange, DeviceEvent, Event, TenantEvent};

use super::batch_codec;

/// Appends `event`'s encoding to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(event.kind());
    let body = match event {
        Event::Telemetry(batch) => return batch_codec::encode(batch, out),
        Event::Attributes(a) => postcard::to_allocvec(a),
        Event::Device(d) => postcard::to_allocvec(d),
        Event::Tenant(t) => postcard::to_allocvec(t),
        Event::Unknown { .. } => return,
    };
    // These types always serialize; an empty body would fail to decode, not misread.
    out.extend(body.unwrap_or_default());
}

/// Decodes a whole buffer from [`encode`]; what is wrong when it is not one.
pub fn decode(buf: &[u8]) -> Result<Event, String> {
    let (&kind, body) = buf.split_first().ok_or("empty event")?;
    let postcard_err = |e: postcard::Error| format!("event of kind {kind}: {e}");
    Ok(match kind {
        Event::TELEMETRY => Event::Telemetry(batch_codec::decode(body)?),
        Event::ATTRIBUTES => {
            Event::Attributes(postcard::from_bytes::<AttributeChange>(body).map_err(postcard_err)?)
        }
        Event::DEVICE => {
            Event::Device(postcard::from_bytes::<DeviceEvent>(body).map_err(postcard_err)?)
        }
        Event::TENANT => {
            Event::Tenant(postcard::from_bytes::<TenantEvent>(body).map_err(postcard_err)?)
        }
        kind => Event::Unknown { kind },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tributary_model::{
        AttributeScope, Batch, DeviceChange, DeviceId, Point, TenantChange, TenantId, Value,
    };

    /// One event of every kind.
    pub(crate) fn every_kind() -> Vec<Event> {
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        vec![
            Event::Telemetry(Batch {
                tenant,
                device,
                points: vec![Point {
                    key: "t".into(),
                    ts: 1,
                    value: Value::Float(1.5),
                }],
            }),
            Event::Attributes(AttributeChange {
                tenant,
                device,
                scope: AttributeScope::Shared,
                set: BTreeMap::from([("fw".to_string(), "\"1.2\"".to_string())]),
                deleted: vec!["old".into()],
                at_ms: 17,
            }),
            Event::Device(DeviceEvent {
                tenant,
                device,
                change: DeviceChange::Updated {
                    name: "pump".into(),
                    profile: Some("p".into()),
                },
            }),
            Event::Tenant(TenantEvent {
                tenant,
                change: TenantChange::Deleted,
            }),
            Event::Tenant(TenantEvent {
                tenant,
                change: TenantChange::ProfileChanged {
                    profile: "p".into(),
                },
            }),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for event in every_kind() {
            let mut buf = Vec::new();
            encode(&event, &mut buf);
            assert_eq!(buf[0], event.kind());
            assert_eq!(decode(&buf).unwrap(), event);
        }
    }

    /// A kind a later version adds is passed over, not an error.
    #[test]
    fn an_unknown_kind_decodes_as_unknown() {
        assert_eq!(
            decode(&[200, 1, 2, 3]).unwrap(),
            Event::Unknown { kind: 200 }
        );
        assert!(decode(&[]).is_err());
        assert!(decode(&[Event::DEVICE, 0xff]).is_err());
    }
}
