//! The live feed under load: publish→WebSocket latency at fixed rates, the
//! effect of a stalled client, and the memory of 10,000 connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{create_device, login, now_ms};
use crate::procfs::rss_kib;
use crate::stats::percentiles;

#[derive(clap::Args)]
pub struct Args {
    /// Tributary base URL.
    #[arg(long)]
    tributary: String,
    /// Admin email.
    #[arg(long)]
    email: String,
    /// Admin password.
    #[arg(long)]
    password: String,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Points per second of the latency rounds.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000,100000")]
    rates: Vec<u64>,
    /// Seconds per latency round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent WebSocket clients of the connection round.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(base: &str, token: &str) -> String {
    format!(
        "{}/api/v1/live?token={token}",
        base.replacen("http://", "ws://", 1)
    )
}

/// Subscribes and waits for the acknowledgement.
async fn subscribe(ws: &mut Ws, request: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(request.to_string().into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            if t.as_str().contains("\"subscribed\"") {
                return Ok(());
            }
            if t.as_str().contains("\"error\"") {
                bail!("subscribe failed: {t}");
            }
        }
    }
    bail!("connection closed while subscribing")
}

struct RoundResult {
    sent_points: u64,
    publish_to_live: Vec<Duration>,
    missing: usize,
    elapsed: Duration,
}

/// Open loop: `rate` points/s for `seconds`, in batches sized so ~1,000 requests/s
/// go out over 8 connections; one WebSocket client subscribed to every device measures.
async fn round(
    base: &str,
    token: &str,
    devices: &[(String, String)],
    rate: u64,
    seconds: u64,
    stalled: bool,
) -> anyhow::Result<RoundResult> {
    let requests_per_sec = rate.min(1000);
    let batch = (rate / requests_per_sec).max(1);
    let ids: Vec<String> = devices.iter().map(|d| d.0.clone()).collect();

    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(base, token))
        .await
        .context("live connect")?;
    subscribe(
        &mut ws,
        json!({"type": "subscribe", "devices": ids, "keys": ["v"]}),
    )
    .await?;
    // A client that subscribes to the same devices and then never reads.
    let _stalled = if stalled {
        let (mut s, _) = tokio_tungstenite::connect_async(ws_url(base, token)).await?;
        subscribe(&mut s, json!({"type": "subscribe", "devices": ids})).await?;
        Some(s)
    } else {
        None
    };

    let sent: Arc<Mutex<HashMap<(String, i64), Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<(String, i64), Instant>>> = Arc::default();
    let reader = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let now = Instant::now();
                if let Message::Text(t) = msg {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        if let (Some(d), Some(ts)) =
                            (v["device"].as_str(), v["points"]["v"][0]["ts"].as_i64())
                        {
                            if let Ok(mut a) = arrived.lock() {
                                a.insert((d.to_string(), ts), now);
                            }
                        }
                    }
                }
            }
        })
    };

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent_points = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let period = Duration::from_secs_f64(8.0 / requests_per_sec as f64);
    let ts_base = now_ms();
    let mut writers = Vec::new();
    for w in 0..8usize {
        let (http, devices, sent, stop, sent_points, inflight) = (
            http.clone(),
            devices.to_vec(),
            sent.clone(),
            stop.clone(),
            sent_points.clone(),
            inflight.clone(),
        );
        let base = base.to_string();
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (id, dev_token) = devices[(w + n as usize * 8) % devices.len()].clone();
                let ts0 = ts_base + (w as i64) * 1_000_000_000 + n * batch as i64;
                n += 1;
                let body: Vec<Value> = (0..batch as i64)
                    .map(|i| json!({"ts": ts0 + i, "values": {"v": i}}))
                    .collect();
                let Ok(permit) = inflight.clone().acquire_owned().await else {
                    break;
                };
                let (http, base, sent, sent_points) = (
                    http.clone(),
                    base.clone(),
                    sent.clone(),
                    sent_points.clone(),
                );
                tokio::spawn(async move {
                    let t = Instant::now();
                    if let Ok(mut s) = sent.lock() {
                        s.insert((id.clone(), ts0), t);
                    }
                    let ok = http
                        .post(format!("{base}/api/v1/{dev_token}/telemetry"))
                        .body(serde_json::to_vec(&body).unwrap_or_default())
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    if ok {
                        sent_points.fetch_add(batch, Ordering::Relaxed);
                    } else if let Ok(mut s) = sent.lock() {
                        s.remove(&(id, ts0));
                    }
                    drop(permit);
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let _ = inflight.acquire_many(64).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let arrived = arrived.lock().map(|a| a.clone()).unwrap_or_default();
    let mut lat = Vec::with_capacity(sent.len());
    let mut missing = 0;
    for (k, t) in &sent {
        match arrived.get(k) {
            Some(a) => lat.push(a.saturating_duration_since(*t)),
            None => missing += 1,
        }
    }
    Ok(RoundResult {
        sent_points: sent_points.load(Ordering::Relaxed),
        publish_to_live: lat,
        missing,
        elapsed,
    })
}

/// `clients` connections, each subscribed to one of `devices`; memory per connection and delivery rate.
async fn connections(args: &Args, token: &str, devices: &[(String, String)]) -> anyhow::Result<()> {
    let before = rss_kib(args.server_pid);
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(args.clients);
    let started = Instant::now();
    let mut conns = futures_util::stream::iter(0..args.clients)
        .map(|i| {
            let url = ws_url(&args.tributary, token);
            let device = devices[i % devices.len()].0.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                subscribe(&mut ws, json!({"type": "subscribe", "device": device})).await?;
                anyhow::Ok(ws)
            }
        })
        .buffer_unordered(64);
    while let Some(ws) = conns.next().await {
        let mut ws = ws?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if matches!(msg, Message::Text(_)) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(args.server_pid);
    let per_client = (after.saturating_sub(before)) as f64 * 1024.0 / args.clients as f64;

    // Delivery: 20 batches to every device, as fast as 8 writers go.
    let http = reqwest::Client::new();
    let expected = (args.clients as u64) * 20;
    let t = Instant::now();
    futures_util::stream::iter(0..20 * devices.len())
        .map(|i| {
            let (http, base) = (http.clone(), args.tributary.clone());
            let dev = devices[i % devices.len()].1.clone();
            async move {
                let _ = http
                    .post(format!("{base}/api/v1/{dev}/telemetry"))
                    .body(format!("{{\"v\":{i}}}"))
                    .send()
                    .await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    while received.load(Ordering::Relaxed) < expected && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = received.load(Ordering::Relaxed);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\n## {} concurrent WebSocket clients, each subscribed to one of {} devices\n",
        args.clients,
        devices.len()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| connect + subscribe, all clients | {connect_secs:.1} s |");
    println!(
        "| server RSS before → after | {} MiB → {} MiB |",
        before / 1024,
        after / 1024
    );
    println!(
        "| server memory per client | {:.1} KiB |",
        per_client / 1024.0
    );
    println!("| updates delivered | {delivered} of {expected} |");
    println!(
        "| delivery rate | {:.0} messages/s |",
        delivered as f64 / secs
    );
    for r in readers {
        r.abort();
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, &args.tributary, &args.email, &args.password).await?;
    let run_id = now_ms();
    let mut devices = Vec::new();
    for i in 0..10 {
        devices.push(
            create_device(
                &http,
                &args.tributary,
                &token,
                &format!("live-{run_id}-{i}"),
            )
            .await?,
        );
    }
    println!("## Publish (HTTP) → WebSocket latency, open loop, one subscriber to 10 devices\n");
    println!(
        "| points/s | points/request | p50 ms | p99 ms | p99.9 ms | max ms | batches | missing |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &rate in &args.rates {
        let mut r = round(&args.tributary, &token, &devices, rate, args.seconds, false).await?;
        let [p50, p99, p999, max] = percentiles(&mut r.publish_to_live);
        let achieved = r.sent_points as f64 / r.elapsed.as_secs_f64();
        println!(
            "| {rate} (achieved {achieved:.0}) | {} | {p50:.2} | {p99:.2} | {p999:.2} | {max:.2} | {} | {} |",
            (rate / rate.min(1000)).max(1),
            r.publish_to_live.len(),
            r.missing
        );
    }

    println!("\n## A stalled client next to a reading one, 10,000 points/s\n");
    println!("| run | p50 ms | p99 ms | p99.9 ms |");
    println!("|---|---|---|---|");
    let mut base_p99 = 0.0;
    for stalled in [false, true] {
        let mut r = round(
            &args.tributary,
            &token,
            &devices,
            10_000,
            args.seconds,
            stalled,
        )
        .await?;
        let [p50, p99, p999, _] = percentiles(&mut r.publish_to_live);
        let note = if stalled {
            format!(" ({:+.0}% p99)", (p99 / base_p99 - 1.0) * 100.0)
        } else {
            String::new()
        };
        if !stalled {
            base_p99 = p99;
        }
        println!(
            "| {} | {p50:.2} | {p99:.2}{note} | {p999:.2} |",
            if stalled {
                "with a stalled client"
            } else {
                "alone"
            }
        );
    }

    let mut many = Vec::new();
    for i in 0..1000 {
        many.push(
            create_device(
                &http,
                &args.tributary,
                &token,
                &format!("conn-{run_id}-{i}"),
            )
            .await?,
        );
    }
    connections(&args, &token, &many).await
}
