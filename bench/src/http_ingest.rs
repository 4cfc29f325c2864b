//! Closed-loop HTTP writers (one device each) against Tributary's device API,
//! the same load as InfluxDB line protocol against InfluxDB 1.x, and the
//! publish→WebSocket latency of Tributary's live feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{create_device, login, now_ms};
use crate::stats::percentiles;

#[derive(clap::Args)]
pub struct Args {
    /// Tributary base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    tributary: String,
    /// Admin email.
    #[arg(long)]
    email: String,
    /// Admin password.
    #[arg(long)]
    password: String,
    /// InfluxDB 1.x base URL, to run the same load against it.
    #[arg(long)]
    influx: Option<String>,
    /// Concurrent writers (one device each).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Points per request; several values run several rounds.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    batch: Vec<usize>,
    /// Seconds per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in the latency round (one writer, one request at a time).
    #[arg(long, default_value_t = 1000)]
    latency_samples: usize,
}

struct Round {
    points: u64,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Round {
    fn points_per_sec(&self) -> f64 {
        self.points as f64 / self.elapsed.as_secs_f64()
    }
}

/// What a writer sends: the URL and body for (writer, sequence number).
trait Target: Send + Sync + 'static {
    fn request(
        &self,
        http: &reqwest::Client,
        writer: usize,
        seq: i64,
        batch: usize,
    ) -> reqwest::RequestBuilder;
}

struct TributaryTarget {
    base: String,
    tokens: Vec<String>,
}

impl Target for TributaryTarget {
    fn request(
        &self,
        http: &reqwest::Client,
        w: usize,
        seq: i64,
        batch: usize,
    ) -> reqwest::RequestBuilder {
        let ts0 = 1_600_000_000_000 + seq * batch as i64;
        let body: Vec<Value> = (0..batch as i64)
            .map(|i| json!({"ts": ts0 + i, "values": {"v": (ts0 + i) as f64 * 0.5}}))
            .collect();
        http.post(format!("{}/api/v1/{}/telemetry", self.base, self.tokens[w]))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

struct InfluxTarget {
    base: String,
}

impl Target for InfluxTarget {
    fn request(
        &self,
        http: &reqwest::Client,
        w: usize,
        seq: i64,
        batch: usize,
    ) -> reqwest::RequestBuilder {
        let ts0 = 1_600_000_000_000 + seq * batch as i64;
        let mut body = String::with_capacity(batch * 48);
        for i in 0..batch as i64 {
            body.push_str(&format!(
                "telemetry,device=d{w} v={} {}\n",
                (ts0 + i) as f64 * 0.5,
                ts0 + i
            ));
        }
        http.post(format!("{}/write?db=bench&precision=ms", self.base))
            .body(body)
    }
}

async fn closed_loop(target: Arc<dyn Target>, clients: usize, batch: usize, seconds: u64) -> Round {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let points = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (target, http, stop) = (target.clone(), http.clone(), stop.clone());
        let (points, requests, errors) = (points.clone(), requests.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            // Offset sequences per round so rounds never overwrite each other's timestamps.
            let mut seq = (now_ms() % 1_000_000) * 1000;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match target.request(&http, w, seq, batch).send().await {
                    Ok(r) if r.status().is_success() => {
                        lat.push(t.elapsed());
                        points.fetch_add(batch as u64, Ordering::Relaxed);
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    Round {
        points: points.load(Ordering::Relaxed),
        requests: requests.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// One writer, one request at a time; a WebSocket client subscribed to the
/// device records when each update arrives.
async fn live_latency(
    base: &str,
    token: &str,
    device: &(String, String),
    samples: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let ws_url = format!(
        "{}/api/v1/live?token={token}",
        base.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("live connect")?;
    ws.send(Message::Text(
        json!({"type": "subscribe", "device": device.0})
            .to_string()
            .into(),
    ))
    .await?;
    // Skip the snapshot.
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            if t.as_str().contains("\"snapshot\"") {
                break;
            }
        }
    }
    let arrivals: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let now = Instant::now();
                if let Message::Text(t) = msg {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        if let Some(ts) = v["points"]["v"][0]["ts"].as_i64() {
                            if let Ok(mut a) = arrivals.lock() {
                                a.insert(ts, now);
                            }
                        }
                    }
                }
            }
        })
    };
    let http = reqwest::Client::new();
    let mut sent = Vec::with_capacity(samples);
    let ts_base = now_ms();
    for i in 0..samples as i64 {
        let t = Instant::now();
        let res = http
            .post(format!("{base}/api/v1/{}/telemetry", device.1))
            .body(json!({"ts": ts_base + i, "values": {"v": i}}).to_string())
            .send()
            .await?;
        let acked = Instant::now();
        if !res.status().is_success() {
            bail!("telemetry failed: {}", res.status());
        }
        sent.push((ts_base + i, t, acked));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let mut publish_to_live = Vec::new();
    let mut ack_to_live = Vec::new();
    for (ts, t, acked) in sent {
        let Some(arrived) = arrivals.get(&ts) else {
            bail!("update for ts {ts} never arrived");
        };
        publish_to_live.push(arrived.saturating_duration_since(t));
        // The hub is fed before the HTTP answer is written, so this is often zero.
        ack_to_live.push(arrived.saturating_duration_since(acked));
    }
    Ok((publish_to_live, ack_to_live))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, &args.tributary, &args.email, &args.password).await?;
    let run_id = now_ms();
    let mut devices = Vec::new();
    for w in 0..args.clients {
        devices.push(
            create_device(
                &http,
                &args.tributary,
                &token,
                &format!("bench-{run_id}-{w}"),
            )
            .await?,
        );
    }
    if let Some(influx) = &args.influx {
        let res = http
            .post(format!("{influx}/query"))
            .form(&[("q", "CREATE DATABASE bench")])
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("influx create database failed: {}", res.text().await?);
        }
    }
    let tributary: Arc<dyn Target> = Arc::new(TributaryTarget {
        base: args.tributary.clone(),
        tokens: devices.iter().map(|d| d.1.clone()).collect(),
    });

    println!(
        "## Durable HTTP ingest: {} concurrent writers, {} s per round\n",
        args.clients, args.seconds
    );
    println!("| system | points/request | points/s | requests/s | p50 ms | p99 ms | errors | ratio vs InfluxDB |");
    println!("|---|---|---|---|---|---|---|---|");
    for &batch in &args.batch {
        let mut t = closed_loop(tributary.clone(), args.clients, batch, args.seconds).await;
        let [t50, t99, _, _] = percentiles(&mut t.latencies);
        let influx_round = match &args.influx {
            Some(base) => Some(
                closed_loop(
                    Arc::new(InfluxTarget { base: base.clone() }),
                    args.clients,
                    batch,
                    args.seconds,
                )
                .await,
            ),
            None => None,
        };
        let ratio = influx_round
            .as_ref()
            .map(|i| format!("{:.2}×", t.points_per_sec() / i.points_per_sec()))
            .unwrap_or_else(|| "n/a".into());
        println!(
            "| Tributary | {batch} | {:.0} | {:.0} | {t50:.2} | {t99:.2} | {} | {ratio} |",
            t.points_per_sec(),
            t.requests as f64 / t.elapsed.as_secs_f64(),
            t.errors
        );
        if let Some(mut i) = influx_round {
            let [i50, i99, _, _] = percentiles(&mut i.latencies);
            println!(
                "| InfluxDB 1.x (line protocol) | {batch} | {:.0} | {:.0} | {i50:.2} | {i99:.2} | {} | 1.00× |",
                i.points_per_sec(),
                i.requests as f64 / i.elapsed.as_secs_f64(),
                i.errors
            );
        }
    }

    let (mut p2l, mut a2l) =
        live_latency(&args.tributary, &token, &devices[0], args.latency_samples).await?;
    let [p50, p99, p999, pmax] = percentiles(&mut p2l);
    let [a50, a99, a999, amax] = percentiles(&mut a2l);
    println!(
        "\n## Live latency: one writer, {} sequential requests\n",
        args.latency_samples
    );
    println!("| measure | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!("| request sent → WebSocket update received | {p50:.2} | {p99:.2} | {p999:.2} | {pmax:.2} |");
    println!("| HTTP 200 received → WebSocket update received | {a50:.2} | {a99:.2} | {a999:.2} | {amax:.2} |");
    Ok(())
}
