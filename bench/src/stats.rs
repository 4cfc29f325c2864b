//! Percentiles of latency samples.

use std::time::Duration;

/// p50, p99, p99.9 and max of `samples` (sorted in place), in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> [f64; 4] {
    if samples.is_empty() {
        return [f64::NAN; 4];
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}
