//! What a run did: counts, rejections by reason, throughput, latency.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The final report, printed for people or as JSON.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// Messages (requests or publishes) sent.
    pub sent_messages: u64,
    /// Points (key values) sent.
    pub sent_points: u64,
    /// Messages acknowledged.
    pub acked_messages: u64,
    /// Points in acknowledged messages.
    pub acked_points: u64,
    /// Rejected messages by the target's reason.
    pub rejected: BTreeMap<String, u64>,
    /// Messages not delivered, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Acknowledged points per second.
    pub points_per_sec: f64,
    /// Send → acknowledgement of each acknowledged message.
    pub ack_ms: Option<Latency>,
    /// End-to-end latency (send → live feed), when measured.
    pub latency_ms: Option<Latency>,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Messages matched on the live feed.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Percentiles of `samples` (sorted in place); `None` when empty.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| {
            samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
        };
        Some(Self {
            samples: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent          {} messages, {} points",
            self.sent_messages, self.sent_points
        )?;
        writeln!(
            f,
            "acknowledged  {} messages, {} points",
            self.acked_messages, self.acked_points
        )?;
        for (reason, n) in &self.rejected {
            writeln!(f, "rejected      {n} messages: {reason}")?;
        }
        for (reason, n) in &self.failed {
            writeln!(f, "failed        {n} messages: {reason}")?;
        }
        writeln!(
            f,
            "throughput    {:.0} points/s over {:.1} s",
            self.points_per_sec, self.seconds
        )?;
        if let Some(l) = &self.ack_ms {
            writeln!(
                f,
                "ack time      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (send → acknowledgement)",
                l.p50, l.p99, l.max
            )?;
        }
        if let Some(l) = &self.latency_ms {
            writeln!(f, "latency       p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} messages, send → live feed)", l.p50, l.p99, l.p999, l.max, l.samples)?;
        }
        Ok(())
    }
}
