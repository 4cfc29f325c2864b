//! One log record: `[len: u32 LE][crc32: u32 LE][payload]`, the payload
//! being the LSN as a varint and then the event in [`event_codec`]'s
//! encoding (format 3). Older segments hold telemetry batches only: in
//! [`batch_codec`]'s encoding (format 2) or postcard's (format 1; postcard
//! writes the LSN as the same varint). All three replay.

use tributary_model::{Batch, Event};

use super::{batch_codec, event_codec};

/// How the records of a segment encode their events; its header says which.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    /// postcard's encoding of (lsn, batch): segments of the first versions.
    Postcard,
    /// The LSN, then a batch in [`batch_codec`]: telemetry-only segments.
    Compact,
    /// The LSN, then an event in [`event_codec`]: what is written now.
    Events,
}

/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;

/// Largest payload a record may carry; a longer length field means corruption.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Why bytes are not a valid record.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    /// The buffer ends inside the record (a torn write at the tail).
    #[error("truncated record")]
    Truncated,
    /// The checksum does not match the payload.
    #[error("checksum mismatch")]
    Checksum,
    /// The length is impossible or the payload does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Appends the encoded record for (lsn, event) to `out`.
pub fn encode_record(lsn: u64, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
    append_record(lsn, &encode_event(event), out)
}

/// An event's part of a record, encoded before its LSN is known (by the
/// task submitting it rather than the single writer thread).
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    event_codec::encode(event, &mut out);
    out
}

/// Appends the record of `lsn` and an event from [`encode_event`] to `out`.
pub fn append_record(lsn: u64, event: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut varint = [0u8; 10];
    let lsn_bytes = postcard::to_slice(&lsn, &mut varint).map_err(|e| format!("postcard: {e}"))?;
    let payload_len = lsn_bytes.len() + event.len();
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|l| *l as usize <= MAX_PAYLOAD)
        .ok_or_else(|| format!("record of {payload_len} bytes is too large"))?;
    let start = out.len();
    out.reserve(HEADER_LEN + payload_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(lsn_bytes);
    out.extend_from_slice(event);
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes the record at the start of `buf`, of a segment in `format`:
/// (lsn, event, bytes consumed).
pub fn decode_record(buf: &[u8], format: Format) -> Result<(u64, Event, usize), RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(RecordError::Corrupt(format!("impossible length {len}")));
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(RecordError::Truncated);
    };
    if crc32fast::hash(payload) != crc {
        return Err(RecordError::Checksum);
    }
    let corrupt = |e: String| RecordError::Corrupt(e);
    let (lsn, event) = match format {
        Format::Postcard => {
            let (lsn, batch): (u64, Batch) =
                postcard::from_bytes(payload).map_err(|e| corrupt(e.to_string()))?;
            (lsn, Event::Telemetry(batch))
        }
        Format::Compact | Format::Events => {
            let (lsn, rest) = postcard::take_from_bytes::<u64>(payload)
                .map_err(|e| corrupt(format!("lsn: {e}")))?;
            let event = if format == Format::Compact {
                batch_codec::decode(rest).map(Event::Telemetry)
            } else {
                event_codec::decode(rest)
            };
            (lsn, event.map_err(corrupt)?)
        }
    };
    Ok((lsn, event, HEADER_LEN + len))
}

/// A record of format 2, as the telemetry-only versions wrote it.
#[cfg(test)]
pub(crate) fn compact_record(lsn: u64, batch: &Batch) -> Vec<u8> {
    let mut body = Vec::new();
    batch_codec::encode(batch, &mut body);
    let mut out = Vec::new();
    append_record(lsn, &body, &mut out).unwrap();
    out
}

/// A record of format 1, as earlier versions wrote it.
#[cfg(test)]
pub(crate) fn postcard_record(lsn: u64, batch: &Batch) -> Vec<u8> {
    let payload = postcard::to_extend(&(lsn, batch), Vec::new()).unwrap();
    let mut record = (payload.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::{DeviceId, Point, TenantId, Value};

    fn batch() -> Batch {
        Batch {
            tenant: TenantId::new(),
            device: DeviceId::new(),
            points: vec![
                Point {
                    key: "t".into(),
                    ts: 5,
                    value: Value::Float(1.5),
                },
                Point {
                    key: "s".into(),
                    ts: 6,
                    value: Value::Str("x".into()),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_damage_detection() {
        let b = Event::Telemetry(batch());
        let mut buf = Vec::new();
        encode_record(7, &b, &mut buf).unwrap();
        encode_record(8, &b, &mut buf).unwrap();
        let (lsn, got, used) = decode_record(&buf, Format::Events).unwrap();
        assert_eq!((lsn, &got), (7, &b));
        let (lsn2, _, used2) = decode_record(&buf[used..], Format::Events).unwrap();
        assert_eq!(lsn2, 8);
        assert_eq!(used + used2, buf.len());

        assert_eq!(
            decode_record(&buf[..used - 1], Format::Events),
            Err(RecordError::Truncated)
        );
        let mut flipped = buf.clone();
        flipped[HEADER_LEN + 3] ^= 0x40;
        assert_eq!(
            decode_record(&flipped, Format::Events),
            Err(RecordError::Checksum)
        );
        let zeros = vec![0u8; 32];
        assert!(matches!(
            decode_record(&zeros, Format::Events),
            Err(RecordError::Corrupt(_))
        ));
    }

    /// Segments written before events (telemetry only, in either older
    /// format) still replay, as telemetry events.
    #[test]
    fn records_of_older_segments_decode() {
        let b = batch();
        let record = postcard_record(7, &b);
        let (lsn, got, used) = decode_record(&record, Format::Postcard).unwrap();
        assert_eq!(
            (lsn, got, used),
            (7, Event::Telemetry(b.clone()), record.len())
        );
        let record = compact_record(8, &b);
        let (lsn, got, used) = decode_record(&record, Format::Compact).unwrap();
        assert_eq!((lsn, got, used), (8, Event::Telemetry(b), record.len()));
    }
}
