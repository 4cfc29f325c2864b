//! Bit-level writing and reading, and the encodings built on them:
//! delta-of-delta for timestamps and integers, XOR for floats (Chimp for
//! new chunks, Gorilla still read from older ones).

/// Appends bits, most significant first; the last byte is padded with zeros.
#[derive(Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Bits not yet in `bytes`, in the low `filled` bits (fewer than 64).
    acc: u64,
    filled: u8,
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (n ≤ 64).
    #[inline]
    pub fn write(&mut self, v: u64, n: u8) {
        if n == 0 {
            return;
        }
        let v = if n >= 64 { v } else { v & ((1u64 << n) - 1) };
        let free = 64 - self.filled;
        if n < free {
            self.acc = (self.acc << n) | v;
            self.filled += n;
            return;
        }
        // The accumulator fills up: its bits and `v`'s top ones make eight bytes.
        let rest = n - free;
        let full = if free == 64 {
            v >> rest
        } else {
            (self.acc << free) | (v >> rest)
        };
        self.bytes.extend_from_slice(&full.to_be_bytes());
        self.acc = if rest == 0 {
            0
        } else {
            v & ((1u64 << rest) - 1)
        };
        self.filled = rest;
    }

    /// Writes one bit.
    #[inline]
    pub fn bit(&mut self, b: bool) {
        self.write(u64::from(b), 1);
    }

    /// The bytes written (the last one padded with zeros).
    pub fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            let aligned = self.acc << (64 - self.filled);
            let n = usize::from(self.filled).div_ceil(8);
            self.bytes.extend_from_slice(&aligned.to_be_bytes()[..n]);
        }
        self.bytes
    }
}

/// Reads bits written by [`BitWriter`]; reading past the end is an error.
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The encoded data ended early or is inconsistent.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct Corrupt(pub &'static str);

impl<'a> BitReader<'a> {
    /// Reads from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads `n` bits (n ≤ 64).
    pub fn read(&mut self, n: u8) -> Result<u64, Corrupt> {
        let n = usize::from(n);
        if self.pos + n > self.bytes.len() * 8 {
            return Err(Corrupt("truncated"));
        }
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let avail = 8 - self.pos % 8;
            let take = left.min(avail);
            let bits = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            v = (v << take) | u64::from(bits);
            self.pos += take;
            left -= take;
        }
        Ok(v)
    }

    /// Reads one bit.
    pub fn bit(&mut self) -> Result<bool, Corrupt> {
        Ok(self.read(1)? == 1)
    }
}

/// Zig-zag: small negative and positive numbers become small unsigned ones.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bucket sizes for a zig-zagged signed value: `0` costs one bit, then
/// prefixes `10`, `110`, `1110`, `1111` select 8, 16, 32 or 64 bits.
const BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 8),
    (0b110, 3, 16),
    (0b1110, 4, 32),
    (0b1111, 4, 64),
];

/// Writes a signed value in the fewest bucket bits.
pub fn write_signed(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.bit(false);
        return;
    }
    let z = zigzag(v);
    for (prefix, prefix_bits, bits) in BUCKETS {
        if bits == 64 || z < (1u64 << bits) {
            w.write(prefix, prefix_bits);
            w.write(z, bits);
            return;
        }
    }
}

/// Reads a value written by [`write_signed`].
pub fn read_signed(r: &mut BitReader<'_>) -> Result<i64, Corrupt> {
    if !r.bit()? {
        return Ok(0);
    }
    let bits = if !r.bit()? {
        8
    } else if !r.bit()? {
        16
    } else if !r.bit()? {
        32
    } else {
        64
    };
    Ok(unzigzag(r.read(bits)?))
}

/// Gorilla XOR encoding of a float sequence.
#[derive(Default)]
pub struct XorEncoder {
    prev: u64,
    leading: u8,
    trailing: u8,
    started: bool,
}

impl XorEncoder {
    /// Appends one float.
    pub fn push(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        if !self.started {
            self.started = true;
            self.prev = bits;
            self.leading = u8::MAX;
            w.write(bits, 64);
            return;
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
            // Fits in the previous window.
            w.bit(false);
            let meaningful = 64 - self.leading - self.trailing;
            w.write(x >> self.trailing, meaningful);
        } else {
            w.bit(true);
            let meaningful = 64 - leading - trailing;
            w.write(u64::from(leading), 5);
            // 64 meaningful bits are stored as 0 (6 bits hold 0..=63).
            w.write(u64::from(meaningful & 63), 6);
            w.write(x >> trailing, meaningful);
            self.leading = leading;
            self.trailing = trailing;
        }
    }
}

/// Decodes what [`XorEncoder`] wrote.
#[derive(Default)]
pub struct XorDecoder {
    prev: u64,
    leading: u8,
    trailing: u8,
    started: bool,
}

impl XorDecoder {
    /// The next float.
    pub fn next(&mut self, r: &mut BitReader<'_>) -> Result<f64, Corrupt> {
        if !self.started {
            self.started = true;
            self.prev = r.read(64)?;
            return Ok(f64::from_bits(self.prev));
        }
        if !r.bit()? {
            return Ok(f64::from_bits(self.prev));
        }
        if r.bit()? {
            self.leading = r.read(5)? as u8;
            let meaningful = match r.read(6)? as u8 {
                0 => 64,
                m => m,
            };
            if u32::from(self.leading) + u32::from(meaningful) > 64 {
                return Err(Corrupt("xor window"));
            }
            self.trailing = 64 - self.leading - meaningful;
        }
        let meaningful = 64 - self.leading - self.trailing;
        let x = r.read(meaningful)? << self.trailing;
        self.prev ^= x;
        Ok(f64::from_bits(self.prev))
    }
}

/// Leading-zero counts Chimp can state (3 bits); a count is rounded down to one.
const CHIMP_LEADING: [u8; 8] = [0, 8, 12, 16, 18, 20, 22, 24];

/// Chimp (Liakos et al., VLDB 2022) XOR encoding of a float sequence: like
/// Gorilla, but the leading zeros of the XOR are stated in 3 bits and reused
/// when unchanged, and only XORs with many trailing zeros pay for a window.
/// Noisy full-precision readings cost fewer bits than with Gorilla.
#[derive(Default)]
pub struct ChimpEncoder {
    prev: u64,
    /// Index into [`CHIMP_LEADING`] of the previous leading zeros (None: not reusable).
    leading: Option<u8>,
    started: bool,
}

fn chimp_leading(x: u64) -> u8 {
    let lz = x.leading_zeros() as u8;
    CHIMP_LEADING.iter().rposition(|l| *l <= lz).unwrap_or(0) as u8
}

impl ChimpEncoder {
    /// Appends one float.
    pub fn push(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        if !self.started {
            self.started = true;
            self.prev = bits;
            w.write(bits, 64);
            return;
        }
        let x = bits ^ self.prev;
        self.prev = bits;
        if x == 0 {
            w.write(0b00, 2);
            self.leading = None;
            return;
        }
        let idx = chimp_leading(x);
        let lead = CHIMP_LEADING[usize::from(idx)];
        let trail = x.trailing_zeros() as u8;
        if trail > 6 {
            let significant = 64 - lead - trail;
            w.write(0b01, 2);
            w.write(u64::from(idx), 3);
            w.write(u64::from(significant), 6);
            w.write(x >> trail, significant);
            self.leading = None;
        } else if self.leading == Some(idx) {
            w.write(0b10, 2);
            w.write(x, 64 - lead);
        } else {
            w.write(0b11, 2);
            w.write(u64::from(idx), 3);
            w.write(x, 64 - lead);
            self.leading = Some(idx);
        }
    }
}

/// Decodes what [`ChimpEncoder`] wrote.
#[derive(Default)]
pub struct ChimpDecoder {
    prev: u64,
    leading: Option<u8>,
    started: bool,
}

impl ChimpDecoder {
    /// The next float.
    pub fn next(&mut self, r: &mut BitReader<'_>) -> Result<f64, Corrupt> {
        if !self.started {
            self.started = true;
            self.prev = r.read(64)?;
            return Ok(f64::from_bits(self.prev));
        }
        let x = match r.read(2)? {
            0b00 => {
                self.leading = None;
                0
            }
            0b01 => {
                let lead = CHIMP_LEADING[r.read(3)? as usize];
                let significant = r.read(6)? as u8;
                if significant == 0 || lead + significant > 57 {
                    return Err(Corrupt("chimp window"));
                }
                self.leading = None;
                r.read(significant)? << (64 - lead - significant)
            }
            0b10 => {
                let lead = self.leading.ok_or(Corrupt("chimp leading zeros"))?;
                r.read(64 - CHIMP_LEADING[usize::from(lead)])?
            }
            _ => {
                let idx = r.read(3)? as u8;
                self.leading = Some(idx);
                r.read(64 - CHIMP_LEADING[usize::from(idx)])?
            }
        };
        self.prev ^= x;
        Ok(f64::from_bits(self.prev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::default();
        let values: Vec<(u64, u8)> = vec![
            (1, 1),
            (0b101, 3),
            (u64::MAX, 64),
            (0, 7),
            (12345, 17),
            (1, 64),
        ];
        for (v, n) in &values {
            w.write(*v, *n);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for (v, n) in &values {
            assert_eq!(r.read(*n).unwrap(), *v, "{n} bits");
        }
        assert!(r.read(64).is_err(), "reading past the end fails");
    }

    /// The same bytes as writing one bit at a time into bytes, most
    /// significant first: the layout every stored chunk has.
    #[test]
    fn bits_are_laid_out_most_significant_first() {
        let mut w = BitWriter::default();
        let mut reference: Vec<u8> = Vec::new();
        let mut bits = 0usize;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 65) as u8;
            let v = x.rotate_left(i as u32);
            w.write(v, n);
            for k in (0..n).rev() {
                if bits.is_multiple_of(8) {
                    reference.push(0);
                }
                if (v >> k) & 1 == 1 {
                    let last = reference.len() - 1;
                    reference[last] |= 0x80 >> (bits % 8);
                }
                bits += 1;
            }
        }
        assert_eq!(w.finish(), reference);
    }

    #[test]
    fn signed_and_xor_round_trip() {
        let ints = [
            0i64,
            1,
            -1,
            127,
            -128,
            40_000,
            -1 << 40,
            i64::MAX,
            i64::MIN,
            3,
        ];
        let floats = [
            21.5,
            21.5,
            21.625,
            -0.0,
            f64::MAX,
            1e-300,
            3.0,
            3.0000001,
            0.1,
        ];
        let mut w = BitWriter::default();
        for i in ints {
            write_signed(&mut w, i);
        }
        let mut enc = XorEncoder::default();
        for f in floats {
            enc.push(&mut w, f);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for i in ints {
            assert_eq!(read_signed(&mut r).unwrap(), i);
        }
        let mut dec = XorDecoder::default();
        for f in floats {
            assert_eq!(dec.next(&mut r).unwrap().to_bits(), f.to_bits());
        }
    }

    #[test]
    fn smooth_floats_compress() {
        let mut w = BitWriter::default();
        let mut enc = XorEncoder::default();
        for i in 0..1000 {
            enc.push(&mut w, 20.0 + f64::from(i % 10) * 0.5);
        }
        assert!(w.finish().len() < 1000 * 3, "well under 8 bytes a value");
    }

    /// A random walk with full-precision noise, like the simulator's noisy signal.
    fn noisy(n: usize) -> Vec<f64> {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut walk = 50.0;
        (0..n)
            .map(|_| {
                walk = (walk + (next() - 0.5) * 6.0).clamp(0.0, 100.0);
                (walk + (next() - 0.5) * 20.0).clamp(0.0, 100.0)
            })
            .collect()
    }

    #[test]
    fn chimp_round_trips_and_beats_gorilla_on_noise() {
        let mut floats = noisy(10_000);
        floats.extend([
            21.5,
            21.5,
            21.625,
            -0.0,
            f64::MAX,
            1e-300,
            3.0,
            0.1,
            0.0,
            0.0,
        ]);
        let mut w = BitWriter::default();
        let mut enc = ChimpEncoder::default();
        for f in &floats {
            enc.push(&mut w, *f);
        }
        let chimp = w.finish();
        let mut r = BitReader::new(&chimp);
        let mut dec = ChimpDecoder::default();
        for f in &floats {
            assert_eq!(dec.next(&mut r).unwrap().to_bits(), f.to_bits());
        }
        let mut w = BitWriter::default();
        let mut enc = XorEncoder::default();
        for f in &floats {
            enc.push(&mut w, *f);
        }
        let gorilla = w.finish();
        assert!(
            chimp.len() < gorilla.len(),
            "chimp {} bytes, gorilla {}",
            chimp.len(),
            gorilla.len()
        );
        eprintln!(
            "noise: chimp {} bytes, gorilla {} bytes",
            chimp.len(),
            gorilla.len()
        );
    }
}
