//! How a batch is written in a log record (segments of format 2): the tenant
//! and device ids, then the points in runs of one key — the key once, then
//! per point a kind byte, the timestamp as a delta of deltas and the value.
//! A float reading at a steady rate takes 10 bytes (format 1, postcard,
//! took about 20): the log writes, syncs and caches half as much.
//!
//! ```text
//! batch = tenant[16] device[16] run*
//! run   = varint(key len) key varint(points) point{points}
//! point = kind zigzag-varint(delta of deltas of ts) value
//! value = f64 LE (float) | zigzag-varint (int) | nothing (bool) | varint(len) bytes (string)
//! ```

use tributary_model::{Batch, DeviceId, Key, Point, TenantId, Value};
use uuid::Uuid;

const FLOAT: u8 = 0;
const INT: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const STR: u8 = 4;

/// Appends `batch`'s encoding to `out`.
pub fn encode(batch: &Batch, out: &mut Vec<u8>) {
    // A float point is 10 bytes at a steady rate; more room is found as needed.
    out.reserve(32 + batch.points.len() * 10);
    out.extend_from_slice(batch.tenant.0.as_bytes());
    out.extend_from_slice(batch.device.0.as_bytes());
    let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
    for run in batch.points.chunk_by(|a, b| a.key == b.key) {
        put_varint(out, run[0].key.len() as u64);
        out.extend_from_slice(run[0].key.as_bytes());
        put_varint(out, run.len() as u64);
        for p in run {
            let kind = match &p.value {
                Value::Float(_) => FLOAT,
                Value::Int(_) => INT,
                Value::Bool(false) => FALSE,
                Value::Bool(true) => TRUE,
                Value::Str(_) => STR,
            };
            out.push(kind);
            let delta = p.ts.wrapping_sub(prev_ts);
            put_varint(out, zigzag(delta.wrapping_sub(prev_delta)));
            (prev_ts, prev_delta) = (p.ts, delta);
            match &p.value {
                Value::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
                Value::Int(i) => put_varint(out, zigzag(*i)),
                Value::Bool(_) => {}
                Value::Str(s) => {
                    put_varint(out, s.len() as u64);
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
}

/// Decodes a whole buffer from [`encode`]; what is wrong when it is not one.
pub fn decode(buf: &[u8]) -> Result<Batch, String> {
    let mut r = Reader { buf, pos: 0 };
    let tenant = TenantId(Uuid::from_bytes(r.array()?));
    let device = DeviceId(Uuid::from_bytes(r.array()?));
    let mut points = Vec::new();
    let (mut prev_ts, mut prev_delta) = (0i64, 0i64);
    while r.pos < buf.len() {
        let len = r.len()?;
        let key = std::str::from_utf8(r.bytes(len)?).map_err(|_| "key is not UTF-8")?;
        let key = Key::from(key);
        // Every point takes at least two bytes: a count beyond that is damage.
        let count = r.len()?;
        if count > (buf.len() - r.pos) / 2 {
            return Err(format!(
                "run of {count} points in {} bytes",
                buf.len() - r.pos
            ));
        }
        points.reserve(count);
        for _ in 0..count {
            let kind = r.byte()?;
            let delta = prev_delta.wrapping_add(unzigzag(r.varint()?));
            let ts = prev_ts.wrapping_add(delta);
            (prev_ts, prev_delta) = (ts, delta);
            let value = match kind {
                FLOAT => Value::Float(f64::from_le_bytes(r.array()?)),
                INT => Value::Int(unzigzag(r.varint()?)),
                FALSE => Value::Bool(false),
                TRUE => Value::Bool(true),
                STR => {
                    let len = r.len()?;
                    let s =
                        std::str::from_utf8(r.bytes(len)?).map_err(|_| "string is not UTF-8")?;
                    Value::Str(s.to_string())
                }
                other => return Err(format!("unknown value kind {other}")),
            };
            points.push(Point {
                key: key.clone(),
                ts,
                value,
            });
        }
    }
    Ok(Batch {
        tenant,
        device,
        points,
    })
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as LEB128 (7 bits a byte, low first).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a buffer front to back; every read checks the bounds.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("{n} bytes wanted at byte {}", self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.pos))
    }

    /// A length or count: a varint that fits in memory.
    fn len(&mut self) -> Result<usize, String> {
        let v = self.varint()?;
        usize::try_from(v).map_err(|_| format!("length {v} too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(key: &str, ts: i64, value: Value) -> Point {
        Point {
            key: key.into(),
            ts,
            value,
        }
    }

    fn batch_of(points: Vec<Point>) -> Batch {
        Batch {
            tenant: TenantId::new(),
            device: DeviceId::new(),
            points,
        }
    }

    #[test]
    fn every_kind_of_point_round_trips() {
        let batch = batch_of(vec![
            point("t", 1_700_000_000_000_000_000, Value::Float(21.5)),
            point("t", 1_700_000_001_000_000_000, Value::Float(-0.0)),
            point("t", 1_700_000_002_000_000_000, Value::Float(f64::MAX)),
            point("n", i64::MIN, Value::Int(i64::MIN)),
            point("n", i64::MAX, Value::Int(i64::MAX)),
            point("on", 0, Value::Bool(true)),
            point("on", -5, Value::Bool(false)),
            point("msg", 7, Value::Str("héllo".into())),
            point("t", 8, Value::Float(1e-300)),
            point("", 9, Value::Str(String::new())),
        ]);
        let mut out = Vec::new();
        encode(&batch, &mut out);
        assert_eq!(decode(&out).unwrap(), batch);
        let empty = Batch {
            points: Vec::new(),
            ..batch.clone()
        };
        out.clear();
        encode(&empty, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(decode(&out).unwrap(), empty);
    }

    #[test]
    fn steady_float_readings_take_ten_bytes() {
        let points = (0..1000)
            .map(|i| {
                point(
                    "v",
                    1_700_000_000_000_000_000 + i * 1_000_000_000,
                    Value::Float(i as f64),
                )
            })
            .collect();
        let batch = batch_of(points);
        let mut out = Vec::new();
        encode(&batch, &mut out);
        // The ids, one run header, two points with wide deltas, the rest 10 bytes each.
        assert!(
            out.len() <= 32 + 4 + 2 * 18 + 998 * 10,
            "{} bytes",
            out.len()
        );
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let batch = batch_of(vec![
            point("temp", 5, Value::Float(1.0)),
            point("state", 6, Value::Str("open".into())),
            point("n", 7, Value::Int(-3)),
        ]);
        let mut out = Vec::new();
        encode(&batch, &mut out);
        for cut in 0..out.len() {
            let _ = decode(&out[..cut]);
        }
        for i in 32..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let _ = decode(&bad);
            }
        }
        assert!(decode(&out[..31]).is_err());
        let mut huge = out[..32].to_vec();
        huge.extend_from_slice(&[1, b'k', 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode(&huge).unwrap_err().contains("run of"));
    }
}
