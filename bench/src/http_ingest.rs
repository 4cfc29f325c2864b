//! Closed-loop HTTP writers (one device each) against Tributary's device API,
//! the same load over Tributary's WebSocket ingest (one connection per
//! writer, one frame in flight each) and as InfluxDB line protocol against
//! InfluxDB 1.x, and the publish→WebSocket latency of Tributary's live feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use tributary_sim::scenario::Scenario;
use tributary_sim::target::provision;
use tributary_sim::target::{HttpTarget, LineTarget, Target, WsTarget};
use tributary_sim::{Report, RunOptions};

use crate::api::{login, now_ms};
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
    /// Skip the WebSocket ingest rounds (a server older than them).
    #[arg(long)]
    no_ws: bool,
    /// Requests in the latency round (one writer, one request at a time).
    #[arg(long, default_value_t = 1000)]
    latency_samples: usize,
}

/// The load of one round: `clients` devices, each sending `batch` readings of one key per message.
fn scenario(clients: usize, batch: usize) -> Scenario {
    let text = format!(
        "seed = 1\n[fleet]\ncount = {clients}\nname = \"bench-{{i}}\"\n[rate]\ninterval_ms = 1\nbatch = {batch}\n\n[[keys]]\nname = \"v\"\nsignal = \"sine\"\noffset = 0.0\namplitude = 100.0\nperiod_secs = 60.0\nnoise = 1.0\ndecimals = 3\n"
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("bench scenario: {e}"))
}

/// Closed loop through the simulator: `clients` messages in flight, as fast as the target acknowledges.
async fn round(
    target: Target,
    clients: usize,
    batch: usize,
    seconds: u64,
    start_ms: i64,
) -> anyhow::Result<Report> {
    tributary_sim::run(
        Arc::new(target),
        RunOptions {
            scenario: scenario(clients, batch),
            seed: 1,
            start_ms: Some(start_ms),
            fast: true,
            max_seconds: Some(seconds as f64),
            progress: false,
            concurrency: clients,
            probe: None,
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}

fn row(system: &str, batch: usize, r: &Report, ratio: &str) -> String {
    let ack = r.ack_ms.clone().unwrap_or_default();
    let errors = r.rejected.values().sum::<u64>() + r.failed.values().sum::<u64>();
    format!(
        "| {system} | {batch} | {:.0} | {:.0} | {:.2} | {:.2} | {errors} | {ratio} |",
        r.points_per_sec,
        r.acked_messages as f64 / r.seconds,
        ack.p50,
        ack.p99
    )
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
    let names: Vec<String> = (0..args.clients).map(|i| format!("bench-{i}")).collect();
    let provisioned =
        provision::devices(&http, &args.tributary, &token, &names, &Default::default())
            .await
            .map_err(anyhow::Error::msg)?;
    let tokens: Vec<String> = provisioned.iter().map(|p| p.token.clone()).collect();
    let devices: Vec<(String, String)> = provisioned
        .iter()
        .map(|p| (p.id.clone(), p.token.clone()))
        .collect();

    println!(
        "## Durable HTTP and WebSocket ingest: {} concurrent writers, {} s per round (load from tributary-sim)\n",
        args.clients, args.seconds
    );
    println!("| system | points/request | points/s | requests/s | p50 ms | p99 ms | errors | ratio vs InfluxDB |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, &batch) in args.batch.iter().enumerate() {
        // Each round writes its own time range, so rounds never overwrite each other.
        let start_ms = run_id - (n as i64 + 1) * 86_400_000;
        let t = round(
            Target::Http(HttpTarget::new(&args.tributary, tokens.clone())),
            args.clients,
            batch,
            args.seconds,
            start_ms,
        )
        .await?;
        let ws = if args.no_ws {
            None
        } else {
            Some(
                round(
                    Target::Ws(WsTarget::new(&args.tributary, tokens.clone())),
                    args.clients,
                    batch,
                    args.seconds,
                    start_ms + 43_200_000,
                )
                .await?,
            )
        };
        let influx = match &args.influx {
            Some(base) => Some(
                round(
                    Target::Line(LineTarget::new(base, "bench", "telemetry", names.clone())),
                    args.clients,
                    batch,
                    args.seconds,
                    start_ms,
                )
                .await?,
            ),
            None => None,
        };
        let ratio = |r: &Report| {
            influx
                .as_ref()
                .map(|i| format!("{:.2}×", r.points_per_sec / i.points_per_sec))
                .unwrap_or_else(|| "n/a".into())
        };
        println!("{}", row("Tributary (HTTP)", batch, &t, &ratio(&t)));
        if let Some(ws) = &ws {
            let ratio = ratio(ws);
            println!("{}", row("Tributary (WebSocket frames)", batch, ws, &ratio));
        }
        if let Some(i) = &influx {
            println!("{}", row("InfluxDB 1.x (line protocol)", batch, i, "1.00×"));
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
