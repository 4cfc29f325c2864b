//! Runs a fleet against a target at the scenario's pace, with a live progress
//! line, and measures end-to-end latency on Tributary's live feed when asked.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::generator::{Fleet, Message};
use crate::replay::Recording;
use crate::report::{Latency, Report};
use crate::scenario::Scenario;
use crate::target::{Outcome, Target};

/// Where to watch the live feed for latency.
#[derive(Clone, Debug)]
pub struct LiveProbe {
    /// Tributary base URL.
    pub base: String,
    /// Bearer credential (API key or access token).
    pub bearer: String,
    /// Device ids in device order.
    pub device_ids: Vec<String>,
}

/// How to run.
pub struct RunOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// Seed of every random choice.
    pub seed: u64,
    /// Wall-clock time of simulated time 0 (ms); now when `None`.
    pub start_ms: Option<i64>,
    /// Send as fast as possible instead of in real time.
    pub fast: bool,
    /// Stop after this many wall-clock seconds.
    pub max_seconds: Option<f64>,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Messages in flight at most.
    pub concurrency: usize,
    /// Measure latency on the live feed.
    pub probe: Option<LiveProbe>,
}

#[derive(Default)]
struct Counts {
    report: Report,
    /// How long each acknowledged message took (send → acknowledgement).
    request_times: Vec<Duration>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type Arrivals = Arc<Mutex<HashMap<(String, i64), Instant>>>;

async fn watch(
    probe: &LiveProbe,
    arrivals: Arrivals,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let url = format!(
        "{}/api/v1/live?token={}",
        probe.base.replacen("http", "ws", 1),
        probe.bearer
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("live feed: {e}"))?;
    let sub = serde_json::json!({"type": "subscribe", "devices": probe.device_ids});
    ws.send(WsMessage::Text(sub.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(Ok(msg)) = ws.next().await {
        if let WsMessage::Text(t) = msg {
            if t.as_str().contains("\"subscribed\"") {
                break;
            }
            if t.as_str().contains("\"error\"") {
                return Err(format!("live feed: {t}"));
            }
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let at = Instant::now();
            let WsMessage::Text(t) = msg else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str()) else {
                continue;
            };
            let (Some(device), Some(points)) = (v["device"].as_str(), v["points"].as_object())
            else {
                continue;
            };
            let mut min_ts = i64::MAX;
            for list in points.values() {
                for p in list.as_array().into_iter().flatten() {
                    min_ts = min_ts.min(p["ts"].as_i64().unwrap_or(i64::MAX));
                }
            }
            if let Ok(mut a) = arrivals.lock() {
                a.entry((device.to_string(), min_ts)).or_insert(at);
            }
        }
    }))
}

/// Sends messages with bounded concurrency and keeps the counts and send times.
struct Sender {
    target: Arc<Target>,
    counts: Arc<Mutex<Counts>>,
    sent_at: Arrivals,
    gate: Arc<tokio::sync::Semaphore>,
    concurrency: usize,
    device_ids: Option<Vec<String>>,
    started: Instant,
    last_progress: Instant,
    progress: bool,
}

impl Sender {
    fn new(
        target: Arc<Target>,
        concurrency: usize,
        probe: Option<&LiveProbe>,
        progress: bool,
    ) -> Self {
        Self {
            target,
            counts: Arc::default(),
            sent_at: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            concurrency: concurrency.max(1),
            device_ids: probe.map(|p| p.device_ids.clone()),
            started: Instant::now(),
            last_progress: Instant::now(),
            progress,
        }
    }

    async fn send(&self, msg: Message) {
        let points: u64 = msg.readings.iter().map(|r| r.values.len() as u64).sum();
        let Ok(permit) = self.gate.clone().acquire_owned().await else {
            return;
        };
        let (target, counts, sent_at) = (
            self.target.clone(),
            self.counts.clone(),
            self.sent_at.clone(),
        );
        let key = self
            .device_ids
            .as_ref()
            .and_then(|ids| ids.get(msg.device).cloned())
            .map(|id| (id, msg.readings.first().map(|r| r.ts).unwrap_or(0)));
        tokio::spawn(async move {
            if let Some(k) = key {
                if let Ok(mut s) = sent_at.lock() {
                    s.insert(k, Instant::now());
                }
            }
            let t = Instant::now();
            let outcome = target.send(&msg).await;
            let took = t.elapsed();
            if let Ok(mut c) = counts.lock() {
                if outcome == Outcome::Acked {
                    c.request_times.push(took);
                }
                let r = &mut c.report;
                r.sent_messages += 1;
                r.sent_points += points;
                match outcome {
                    Outcome::Acked => {
                        r.acked_messages += 1;
                        r.acked_points += points;
                    }
                    Outcome::Rejected(why) => *r.rejected.entry(why).or_insert(0) += 1,
                    Outcome::Failed(why) => *r.failed.entry(why).or_insert(0) += 1,
                }
            }
            drop(permit);
        });
    }

    fn progress(&mut self) {
        if !self.progress || self.last_progress.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_progress = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        if let Ok(c) = self.counts.lock() {
            let r = &c.report;
            eprint!(
                "\r{:>6.0}s  sent {:>9} points  acked {:>9}  rejected {:>5}  failed {:>5}  {:>8.0} points/s   ",
                elapsed,
                r.sent_points,
                r.acked_points,
                r.rejected.values().sum::<u64>(),
                r.failed.values().sum::<u64>(),
                r.acked_points as f64 / elapsed.max(1e-3)
            );
            let _ = std::io::stderr().flush();
        }
    }

    async fn finish(
        self,
        watcher: Option<tokio::task::JoinHandle<()>>,
        arrivals: Arrivals,
    ) -> Report {
        let _ = self.gate.acquire_many(self.concurrency as u32).await;
        let unacked = self.target.finish().await;
        let seconds = self.started.elapsed().as_secs_f64();
        if self.progress {
            eprintln!();
        }
        let (mut report, mut times) = self
            .counts
            .lock()
            .map(|mut c| (c.report.clone(), std::mem::take(&mut c.request_times)))
            .unwrap_or_default();
        report.ack_ms = Latency::of(&mut times);
        if unacked > 0 {
            // MQTT QoS 1: publishes without a PUBACK are not acknowledged.
            let per_message = report.acked_points / report.acked_messages.max(1);
            report.acked_messages = report.acked_messages.saturating_sub(unacked);
            report.acked_points = report.acked_points.saturating_sub(unacked * per_message);
            *report.failed.entry("no PUBACK".into()).or_insert(0) += unacked;
        }
        report.seconds = seconds;
        report.points_per_sec = report.acked_points as f64 / seconds.max(1e-6);
        if let Some(w) = watcher {
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.abort();
            let sent = self.sent_at.lock().map(|s| s.clone()).unwrap_or_default();
            let arrived = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
            let mut samples: Vec<Duration> = sent
                .iter()
                .filter_map(|(k, t)| arrived.get(k).map(|a| a.saturating_duration_since(*t)))
                .collect();
            report.latency_ms = Latency::of(&mut samples);
        }
        report
    }
}

/// Runs the scenario against `target` and returns the report.
pub async fn run(target: Arc<Target>, opts: RunOptions) -> Result<Report, String> {
    let start_ms = opts.start_ms.unwrap_or_else(now_ms);
    let mut fleet = Fleet::new(&opts.scenario, opts.seed, start_ms);
    let arrivals: Arrivals = Arc::default();
    let watcher = match &opts.probe {
        Some(p) => Some(watch(p, arrivals.clone()).await?),
        None => None,
    };
    let mut sender = Sender::new(target, opts.concurrency, opts.probe.as_ref(), opts.progress);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    // As fast as possible: simulated time moves one message per device at a
    // time, and sending waits for a free slot, so the target sets the pace.
    let step = opts.scenario.interval_ms() * opts.scenario.rate.batch as f64;
    let mut virtual_ms = 0.0;
    loop {
        let elapsed = sender.started.elapsed().as_secs_f64();
        let over = opts.max_seconds.is_some_and(|m| elapsed >= m);
        let until = if opts.fast {
            virtual_ms += step;
            virtual_ms
        } else {
            elapsed * 1000.0
        };
        let finished_before = fleet.finished();
        for msg in fleet.advance(until, over || finished_before) {
            sender.send(msg).await;
        }
        sender.progress();
        if finished_before || over {
            break;
        }
        if opts.fast {
            tokio::select! {
                biased;
                _ = &mut stop => {
                    eprintln!("\ninterrupted; finishing what is in flight");
                    break;
                }
                _ = std::future::ready(()) => {}
            }
            continue;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => {
                eprintln!("\ninterrupted; finishing what is in flight");
                break;
            }
        }
    }
    Ok(sender.finish(watcher, arrivals).await)
}

/// Replays a recording against `target`, `speed` times faster than it was recorded.
pub async fn replay(
    target: Arc<Target>,
    recording: Recording,
    speed: f64,
    concurrency: usize,
    probe: Option<LiveProbe>,
    progress: bool,
) -> Result<Report, String> {
    let arrivals: Arrivals = Arc::default();
    let watcher = match &probe {
        Some(p) => Some(watch(p, arrivals.clone()).await?),
        None => None,
    };
    let mut sender = Sender::new(target, concurrency, probe.as_ref(), progress);
    for (offset, msg) in recording.messages {
        let due = Duration::from_secs_f64((offset as f64 / 1000.0 / speed.max(1e-9)).max(0.0));
        if let Some(wait) = due.checked_sub(sender.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        sender.send(msg).await;
        sender.progress();
    }
    Ok(sender.finish(watcher, arrivals).await)
}

/// Every point a scenario sends, by device number and key: (ts, value) lists.
pub fn expected_points(
    scenario: &Scenario,
    seed: u64,
    start_ms: i64,
) -> BTreeMap<usize, BTreeMap<String, Vec<(i64, serde_json::Value)>>> {
    let mut fleet = Fleet::new(scenario, seed, start_ms);
    let mut out: BTreeMap<usize, BTreeMap<String, Vec<(i64, serde_json::Value)>>> = BTreeMap::new();
    for msg in fleet.advance(f64::MAX, true) {
        for r in msg.readings {
            for (k, v) in r.values {
                out.entry(msg.device)
                    .or_default()
                    .entry(k)
                    .or_default()
                    .push((r.ts, v));
            }
        }
    }
    out
}
