//! One series' points, compressed: timestamps as delta-of-delta in the
//! largest power-of-ten unit that divides them, floats as scaled decimals
//! or XOR'd (Chimp; chunks written before it used Gorilla, still read),
//! integers as delta-of-delta, booleans as bits, strings through a
//! per-chunk dictionary, and each point's log sequence number as a delta.
//! A value's kind is kept per point, so a key may change type.

use tributary_model::Value;

use super::bits::{
    read_signed, write_signed, BitReader, BitWriter, ChimpDecoder, ChimpEncoder, Corrupt,
    XorDecoder, XorEncoder,
};

/// A stored point: timestamp (ns), value, and the LSN of the batch that wrote it.
pub type Entry = (i64, Value, u64);

const FLOAT: u64 = 0;
const INT: u64 = 1;
const BOOL: u64 = 2;
const STR: u64 = 3;

/// How a chunk's floats are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Floats {
    /// As integers scaled by 10^e.
    Scaled(u8),
    /// XOR'd, Chimp.
    Chimp,
    /// XOR'd, Gorilla (chunks from before Chimp).
    Gorilla,
}

/// Chimp's code in the 3-bit scale field, past the largest scale (6).
const CHIMP: u64 = 7;

/// Encodes points sorted by timestamp (unique timestamps).
pub fn encode(points: &[Entry]) -> Vec<u8> {
    let floats = decimal_scale(points).map_or(Floats::Chimp, Floats::Scaled);
    encode_as(points, floats)
}

fn encode_as(points: &[Entry], floats: Floats) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.write(points.len() as u64, 32);
    let Some(first) = points.first() else {
        return w.finish();
    };
    // Timestamps: the unit, the first, then delta-of-delta in units.
    let unit_exp = unit_exponent(points);
    let unit = 10i64.pow(unit_exp);
    w.write(u64::from(unit_exp), 4);
    w.write(first.0 as u64, 64);
    let mut prev_delta = 0i64;
    let dods = points.windows(2).map(|p| {
        let (prev_ts, ts) = (p[0].0, p[1].0);
        // In i128 when extreme timestamps would overflow; the result wraps
        // consistently with the decoder's wrapping arithmetic.
        let delta = match ts.checked_sub(prev_ts) {
            Some(d) => div_pow10(d, unit_exp),
            None => ((i128::from(ts) - i128::from(prev_ts)) / i128::from(unit)) as i64,
        };
        let dod = delta.wrapping_sub(prev_delta);
        prev_delta = delta;
        dod
    });
    write_zero_runs(&mut w, dods);
    // LSNs: first, then signed deltas (a batch's points share one LSN).
    w.write(first.2, 64);
    let deltas = points
        .windows(2)
        .map(|p| (p[1].2 as i64).wrapping_sub(p[0].2 as i64));
    write_zero_runs(&mut w, deltas);
    // Kinds: runs of (kind, length - 1).
    let mut i = 0;
    while i < points.len() {
        let k = kind(&points[i].1);
        let run = points[i..].iter().take_while(|p| kind(&p.1) == k).count();
        w.write(k, 2);
        write_signed(&mut w, run as i64 - 1);
        i += run;
    }
    // Values, each kind its own stream. Floats that are decimals with few
    // places (most sensor readings) are stored as scaled integers, which
    // compress far better than XOR; others are XOR'd.
    match floats {
        Floats::Scaled(e) => {
            w.bit(true);
            w.write(u64::from(e), 3);
        }
        Floats::Chimp => {
            w.bit(true);
            w.write(CHIMP, 3);
        }
        Floats::Gorilla => w.bit(false),
    }
    let (mut prev_scaled, mut prev_scaled_delta) = (0i64, 0i64);
    let scale = match floats {
        Floats::Scaled(e) => 10f64.powi(i32::from(e)),
        _ => 1.0,
    };
    let mut gorilla = XorEncoder::default();
    let mut chimp = ChimpEncoder::default();
    let (mut prev_int, mut prev_int_delta) = (0i64, 0i64);
    let mut dict: Vec<&str> = Vec::new();
    for (_, v, _) in points {
        match v {
            Value::Float(f) => match floats {
                Floats::Scaled(_) => {
                    let scaled = round(f * scale);
                    let delta = scaled.wrapping_sub(prev_scaled);
                    write_signed(&mut w, delta.wrapping_sub(prev_scaled_delta));
                    prev_scaled = scaled;
                    prev_scaled_delta = delta;
                }
                Floats::Chimp => chimp.push(&mut w, *f),
                Floats::Gorilla => gorilla.push(&mut w, *f),
            },
            Value::Int(i) => {
                let delta = i.wrapping_sub(prev_int);
                write_signed(&mut w, delta.wrapping_sub(prev_int_delta));
                prev_int = *i;
                prev_int_delta = delta;
            }
            Value::Bool(b) => w.bit(*b),
            Value::Str(s) => match dict.iter().position(|d| *d == s.as_str()) {
                Some(i) => {
                    w.bit(true);
                    w.write(i as u64, 16);
                }
                None => {
                    w.bit(false);
                    w.write(s.len() as u64, 32);
                    for b in s.bytes() {
                        w.write(u64::from(b), 8);
                    }
                    if dict.len() < u16::MAX as usize {
                        dict.push(s);
                    }
                }
            },
        }
    }
    w.finish()
}

/// Decodes a chunk written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, Corrupt> {
    let mut r = BitReader::new(bytes);
    let n = r.read(32)? as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    // Every point costs at least a couple of bits: a count beyond that is corruption.
    if n > bytes.len() * 8 {
        return Err(Corrupt("count"));
    }
    let unit_exp = r.read(4)? as u32;
    if unit_exp > 18 {
        return Err(Corrupt("unit"));
    }
    let unit = 10i64.pow(unit_exp);
    // The points are built in place: timestamps first, then LSNs, then values.
    let mut out: Vec<Entry> = Vec::with_capacity(n);
    let mut prev = r.read(64)? as i64;
    out.push((prev, Value::Bool(false), 0));
    let mut delta = 0i64;
    read_zero_runs(&mut r, n - 1, |dod| {
        delta = delta.wrapping_add(dod);
        prev = prev.wrapping_add(delta.wrapping_mul(unit));
        out.push((prev, Value::Bool(false), 0));
    })?;
    let mut lsn = r.read(64)? as i64;
    let mut lsns = out.iter_mut().map(|p| &mut p.2);
    if let Some(first) = lsns.next() {
        *first = lsn as u64;
    }
    read_zero_runs(&mut r, n - 1, |d| {
        lsn = lsn.wrapping_add(d);
        if let Some(l) = lsns.next() {
            *l = lsn as u64;
        }
    })?;
    // Kinds, as runs of (kind, length).
    let mut kinds = Vec::new();
    let mut kinded = 0;
    while kinded < n {
        let k = r.read(2)?;
        let run = read_signed(&mut r)?;
        if run < 0 || run as u64 >= (n - kinded) as u64 {
            return Err(Corrupt("kind run"));
        }
        kinds.push((k, run as usize + 1));
        kinded += run as usize + 1;
    }
    let floats = if r.bit()? {
        match r.read(3)? {
            CHIMP => Floats::Chimp,
            e => Floats::Scaled(e as u8),
        }
    } else {
        Floats::Gorilla
    };
    let (mut prev_scaled, mut prev_scaled_delta) = (0i64, 0i64);
    let mut gorilla = XorDecoder::default();
    let mut chimp = ChimpDecoder::default();
    let (mut prev_int, mut prev_int_delta) = (0i64, 0i64);
    let mut dict: Vec<String> = Vec::new();
    let kind_of = kinds
        .iter()
        .flat_map(|&(k, len)| std::iter::repeat_n(k, len));
    for (point, kind) in out.iter_mut().zip(kind_of) {
        point.1 = match kind {
            FLOAT => match floats {
                Floats::Scaled(e) => {
                    prev_scaled_delta = prev_scaled_delta.wrapping_add(read_signed(&mut r)?);
                    prev_scaled = prev_scaled.wrapping_add(prev_scaled_delta);
                    Value::Float(prev_scaled as f64 / 10f64.powi(i32::from(e)))
                }
                Floats::Chimp => Value::Float(chimp.next(&mut r)?),
                Floats::Gorilla => Value::Float(gorilla.next(&mut r)?),
            },
            INT => {
                prev_int_delta = prev_int_delta.wrapping_add(read_signed(&mut r)?);
                prev_int = prev_int.wrapping_add(prev_int_delta);
                Value::Int(prev_int)
            }
            BOOL => Value::Bool(r.bit()?),
            _ => {
                if r.bit()? {
                    let idx = r.read(16)? as usize;
                    Value::Str(dict.get(idx).ok_or(Corrupt("dictionary"))?.clone())
                } else {
                    let len = r.read(32)? as usize;
                    if len > bytes.len() {
                        return Err(Corrupt("string length"));
                    }
                    let mut s = Vec::with_capacity(len);
                    for _ in 0..len {
                        s.push(r.read(8)? as u8);
                    }
                    let s = String::from_utf8(s).map_err(|_| Corrupt("utf-8"))?;
                    if dict.len() < u16::MAX as usize {
                        dict.push(s.clone());
                    }
                    Value::Str(s)
                }
            }
        };
    }
    Ok(out)
}

/// The fewest decimal places (0 to 6) that represent every float exactly, if any.
fn decimal_scale(points: &[Entry]) -> Option<u8> {
    let floats = || {
        points.iter().filter_map(|(_, v, _)| match v {
            Value::Float(f) => Some(*f),
            _ => None,
        })
    };
    floats().next()?;
    (0u8..=6).find(|e| {
        let p = 10f64.powi(i32::from(*e));
        floats().all(|f| {
            let scaled = f * p;
            scaled.abs() < 9.0e15 && (round(scaled) as f64 / p).to_bits() == f.to_bits()
        })
    })
}

/// `x` rounded half away from zero, as [`f64::round`] rounds it when
/// |x| < 2^53 (which callers check), but without a call into libm: the
/// truncation is one instruction and the fraction left is exact.
fn round(x: f64) -> i64 {
    let t = x as i64;
    let frac = x - t as f64;
    t + i64::from(frac >= 0.5) - i64::from(frac <= -0.5)
}

/// `d` divided by 10^`exp`: by a constant (a multiplication) for the units
/// a chunk's timestamps use.
fn div_pow10(d: i64, exp: u32) -> i64 {
    match exp {
        0 => d,
        3 => d / 1_000,
        6 => d / 1_000_000,
        9 => d / 1_000_000_000,
        _ => d / 10i64.pow(exp),
    }
}

/// Whether 10^`exp` divides `d`: by constants, as [`div_pow10`].
fn divides(d: i64, exp: u32) -> bool {
    match exp {
        0 => true,
        3 => d % 1_000 == 0,
        6 => d % 1_000_000 == 0,
        9 => d % 1_000_000_000 == 0,
        _ => d % 10i64.pow(exp) == 0,
    }
}

/// Writes signed values; a zero is followed by how many more zeros come
/// (regular timestamps and a batch's shared LSN cost a few bits per run).
fn write_zero_runs(w: &mut BitWriter, values: impl IntoIterator<Item = i64>) {
    let mut zeros = 0i64;
    let flush = |w: &mut BitWriter, zeros: &mut i64| {
        if *zeros > 0 {
            write_signed(w, 0);
            write_signed(w, *zeros - 1);
            *zeros = 0;
        }
    };
    for v in values {
        if v == 0 {
            zeros += 1;
        } else {
            flush(w, &mut zeros);
            write_signed(w, v);
        }
    }
    flush(w, &mut zeros);
}

/// Reads `count` values written by [`write_zero_runs`], handing each to `f`.
fn read_zero_runs(
    r: &mut BitReader<'_>,
    count: usize,
    mut f: impl FnMut(i64),
) -> Result<(), Corrupt> {
    let mut read = 0;
    while read < count {
        let v = read_signed(r)?;
        if v != 0 {
            f(v);
            read += 1;
            continue;
        }
        let more = read_signed(r)?;
        if more < 0 || more as u64 >= (count - read) as u64 {
            return Err(Corrupt("zero run"));
        }
        for _ in 0..=more {
            f(0);
        }
        read += more as usize + 1;
    }
    Ok(())
}

fn kind(v: &Value) -> u64 {
    match v {
        Value::Float(_) => FLOAT,
        Value::Int(_) => INT,
        Value::Bool(_) => BOOL,
        Value::Str(_) => STR,
    }
}

/// The largest power of ten (up to 10^9) dividing every timestamp's offset from the first.
fn unit_exponent(points: &[Entry]) -> u32 {
    let first = points[0].0;
    let mut exp = 9u32;
    for (ts, _, _) in &points[1..] {
        // In i128 only when the offset overflows.
        let offset_divisible = |exp: u32| match ts.checked_sub(first) {
            Some(d) => divides(d, exp),
            None => (i128::from(*ts) - i128::from(first)) % 10i128.pow(exp) == 0,
        };
        while exp > 0 && !offset_divisible(exp) {
            exp -= 1;
        }
        if exp == 0 {
            break;
        }
    }
    exp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(points: &[Entry]) -> usize {
        let bytes = encode(points);
        assert_eq!(decode(&bytes).unwrap(), points);
        bytes.len()
    }

    #[test]
    fn round_is_f64_round_below_2_pow_53() {
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4503599627370495.5,
            -4503599627370495.5,
            9.0e15 - 1.0,
            2049.999999,
            12.345e3,
        ];
        let mut x = 7u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Up to 2^53, with up to 40 binary places.
            let f = (x >> 11) as f64 / (1u64 << (x % 41)) as f64;
            if f.abs() < 9.0e15 {
                cases.push(f);
                cases.push(-f);
                cases.push(f.trunc() + 0.5);
            }
        }
        for f in cases {
            assert_eq!(round(f), f.round() as i64, "{f:e}");
        }
        assert_eq!((div_pow10(-3_000_000, 6), div_pow10(70, 1)), (-3, 7));
        assert!(divides(-5_000, 3) && !divides(5_001, 3) && divides(120, 1));
    }

    #[test]
    fn mixed_kinds_round_trip() {
        let t0 = 1_700_000_000_000_000_000i64;
        let points: Vec<Entry> = vec![
            (t0, Value::Float(21.5), 7),
            (t0 + 1_000_000, Value::Int(21), 7),
            (t0 + 2_000_000, Value::Int(-5), 9),
            (t0 + 2_000_001, Value::Bool(true), 8),
            (t0 + 3_000_000, Value::Str("on".into()), 10),
            (t0 + 4_000_000, Value::Str("off".into()), 11),
            (t0 + 5_000_000, Value::Str("on".into()), 11),
            (t0 + 6_000_000, Value::Float(f64::MIN_POSITIVE), u64::MAX),
            (i64::MAX, Value::Int(i64::MIN), 0),
        ];
        round_trip(&points);
        round_trip(&[]);
        round_trip(&[(-5, Value::Bool(false), 1)]);
    }

    #[test]
    fn regular_smooth_series_take_about_two_bytes_a_point() {
        let t0 = 1_700_000_000_000_000_000i64;
        let points: Vec<Entry> = (0..10_000)
            .map(|i| {
                let v = 20.0 + ((i as f64) / 100.0).sin();
                (
                    t0 + i * 1_000_000_000,
                    Value::Float((v * 100.0).round() / 100.0),
                    1 + i as u64 / 10,
                )
            })
            .collect();
        let bytes = round_trip(&points);
        assert!(bytes < 10_000 * 5 / 2, "{bytes} bytes for 10,000 points");
    }

    #[test]
    fn noisy_and_scaled_floats_round_trip_exactly() {
        let noisy: Vec<Entry> = (0..1000)
            .map(|i| (i * 7, Value::Float((i as f64).sqrt() * 1.000_000_1), 1))
            .collect();
        round_trip(&noisy);
        let decimals: Vec<Entry> = [0.1, 0.2, 0.30000000000000004, -0.0, 1e15, 21.53, -3.5]
            .iter()
            .enumerate()
            .map(|(i, f)| (i as i64, Value::Float(*f), 1))
            .collect();
        round_trip(&decimals);
    }

    /// Chunks written before Chimp (Gorilla floats) still decode.
    #[test]
    fn gorilla_chunks_still_decode() {
        let noisy: Vec<Entry> = (0..1000)
            .map(|i| (i * 7, Value::Float((i as f64).sqrt() * 1.000_000_1), 1))
            .collect();
        let old = encode_as(&noisy, Floats::Gorilla);
        assert_eq!(decode(&old).unwrap(), noisy);
        assert!(encode(&noisy).len() < old.len(), "Chimp is smaller");
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let points: Vec<Entry> = (0..100)
            .map(|i| {
                (
                    i * 1000,
                    if i % 3 == 0 {
                        Value::Str(format!("s{i}"))
                    } else {
                        Value::Float(i as f64)
                    },
                    i as u64,
                )
            })
            .collect();
        let bytes = encode(&points);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = decode(&b);
            }
            let _ = decode(&bytes[..i]);
        }
    }
}
