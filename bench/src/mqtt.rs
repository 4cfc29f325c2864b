//! MQTT against Mosquitto: the same raw-socket publishers and subscriber
//! against both brokers, for throughput (closed loop) and publish→subscriber
//! latency (fixed rate) with 100 and 1,000 connections at QoS 0 and 1, and the
//! memory of many idle connections.
//!
//! On Tributary the publishers are devices on the device API (authentication,
//! the fsynced log, the store and the live hub all run) and the subscriber is
//! an API-key client on `$devices/+/telemetry`; on Mosquitto they publish to
//! `bench/{i}/telemetry` and the subscriber takes `bench/+/telemetry`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Login, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::api::{create_device, login};
use crate::procfs::{rss_kib, settle};
use crate::stats::percentiles;

#[derive(clap::Args)]
pub struct Args {
    /// Tributary base URL (for provisioning devices and a key).
    #[arg(long)]
    tributary: String,
    /// Tributary's MQTT address.
    #[arg(long)]
    tributary_mqtt: String,
    /// Tributary's process id (memory).
    #[arg(long)]
    tributary_pid: u32,
    /// Admin email.
    #[arg(long)]
    email: String,
    /// Admin password.
    #[arg(long)]
    password: String,
    /// Mosquitto's address (omit to measure Tributary alone).
    #[arg(long)]
    mosquitto: Option<String>,
    /// Mosquitto's process id.
    #[arg(long)]
    mosquitto_pid: Option<u32>,
    /// Publishing connections of each round.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    connections: Vec<usize>,
    /// Messages per second of the latency rounds (all connections together).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds per round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Idle connections of the memory round.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
}

/// One broker under test.
struct Broker {
    name: &'static str,
    addr: String,
    pid: u32,
    /// Per publishing connection: (client id, username, topic).
    publishers: Vec<(String, String, String)>,
    /// Username of the subscriber.
    subscriber: String,
    filter: String,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A connected MQTT 3.1.1 client on a raw socket.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
}

impl Conn {
    async fn open(
        addr: &str,
        client_id: &str,
        user: &str,
        keep_alive: u16,
    ) -> anyhow::Result<Conn> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let mut c = Conn {
            rd,
            wr,
            buf: BytesMut::with_capacity(4096),
        };
        let mut connect = Connect::new(client_id);
        connect.keep_alive = keep_alive;
        connect.login = Some(Login::new(user, ""));
        c.send(Packet::Connect(connect)).await?;
        match c.read().await? {
            Some(Packet::ConnAck(a))
                if a.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success =>
            {
                Ok(c)
            }
            other => bail!("{client_id}: connect refused: {other:?}"),
        }
    }

    async fn send(&mut self, p: Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::with_capacity(128);
        p.write(&mut out, 1 << 20)?;
        self.wr.write_all(&out).await?;
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<Option<Packet>> {
        read_packet(&mut self.rd, &mut self.buf).await
    }
}

async fn read_packet(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> anyhow::Result<Option<Packet>> {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => bail!("bad packet: {e}"),
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// What the subscriber saw.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    samples: Mutex<Vec<Duration>>,
}

/// Subscribes and counts what arrives; records latency from the `t` in each payload.
async fn subscriber(
    b: &Broker,
    qos: QoS,
    seen: Arc<Received>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut c = Conn::open(
        &b.addr,
        &format!("bench-sub-{}", now_us()),
        &b.subscriber,
        0,
    )
    .await?;
    let mut s = Subscribe::new(b.filter.clone(), qos);
    s.pkid = 1;
    c.send(Packet::Subscribe(s)).await?;
    match c.read().await? {
        Some(Packet::SubAck(_)) => {}
        other => bail!("subscribe refused: {other:?}"),
    }
    let Conn {
        mut rd,
        wr,
        mut buf,
    } = c;
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    // Acknowledgements go out from their own task, batched, so reading never waits on writing.
    tokio::spawn(async move {
        let mut wr = wr;
        let mut out = BytesMut::new();
        while let Some(pkid) = acks_rx.recv().await {
            let _ = Packet::PubAck(PubAck::new(pkid)).write(&mut out, 1 << 20);
            while let Ok(pkid) = acks_rx.try_recv() {
                let _ = Packet::PubAck(PubAck::new(pkid)).write(&mut out, 1 << 20);
            }
            if wr.write_all(&out.split()).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(p)) = read_packet(&mut rd, &mut buf).await else {
                return;
            };
            if let Packet::Publish(p) = p {
                if p.qos != QoS::AtMostOnce {
                    let _ = acks_tx.send(p.pkid);
                }
                if let Some(t) = sent_at(&p.payload) {
                    let lat = (now_us() - t).max(0) as u64;
                    seen.samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Duration::from_micros(lat));
                }
                seen.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

/// The send time in a payload: `{"t":…}` as published, or Tributary's `[{"ts":…,"values":{"t":…}}]`.
fn sent_at(payload: &[u8]) -> Option<i64> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("t")
        .or_else(|| v.get(0)?.get("values")?.get("t"))
        .and_then(Value::as_i64)
}

/// Counters of the publishers.
#[derive(Default)]
struct Sent {
    published: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

/// One publishing connection: closed loop (a window of unacknowledged QoS 1
/// messages) when `interval` is None, else one message per interval.
async fn publisher(
    addr: String,
    (client_id, user, topic): (String, String, String),
    qos: QoS,
    interval: Option<Duration>,
    until: Instant,
    sent: Arc<Sent>,
) {
    let Ok(c) = Conn::open(&addr, &client_id, &user, 60).await else {
        sent.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Conn {
        mut rd,
        mut wr,
        mut buf,
    } = c;
    let window = Arc::new(Semaphore::new(if qos == QoS::AtMostOnce { 0 } else { 16 }));
    let (reader_window, reader_sent) = (window.clone(), sent.clone());
    let reader = tokio::spawn(async move {
        while let Ok(Some(p)) = read_packet(&mut rd, &mut buf).await {
            if let Packet::PubAck(_) = p {
                reader_sent.acked.fetch_add(1, Ordering::Relaxed);
                reader_window.add_permits(1);
            }
        }
    });
    // Spread the connections' first sends over one interval.
    if let Some(i) = interval {
        tokio::time::sleep(i.mul_f64(rand_fraction(&client_id))).await;
    }
    let mut next = Instant::now();
    let mut pkid: u16 = 0;
    let mut n: u64 = 0;
    let mut out = BytesMut::with_capacity(256);
    while Instant::now() < until {
        if qos != QoS::AtMostOnce {
            let Ok(permit) = tokio::time::timeout(Duration::from_secs(5), window.acquire()).await
            else {
                sent.errors.fetch_add(1, Ordering::Relaxed);
                break;
            };
            if let Ok(p) = permit {
                p.forget();
            }
        }
        if let Some(i) = interval {
            next += i;
            tokio::time::sleep_until(next.into()).await;
        }
        n += 1;
        let payload = json!({"t": now_us(), "v": n}).to_string();
        let mut p = Publish::new(topic.as_str(), qos, payload);
        if qos != QoS::AtMostOnce {
            pkid = pkid.wrapping_add(1).max(1);
            p.pkid = pkid;
        }
        let _ = Packet::Publish(p).write(&mut out, 1 << 20);
        if wr.write_all(&out.split()).await.is_err() {
            sent.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        sent.published.fetch_add(1, Ordering::Relaxed);
        if interval.is_none() && qos == QoS::AtMostOnce {
            // QoS 0 has no acknowledgement to pace on: yield so every connection gets its turn.
            tokio::task::yield_now().await;
        }
    }
    // Let the last acknowledgements arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = wr.write_all(&[0xE0, 0x00]).await;
    reader.abort();
}

/// A stable pseudo-random fraction in [0, 1) from a name.
fn rand_fraction(s: &str) -> f64 {
    let h = s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    (h % 10_000) as f64 / 10_000.0
}

struct Round {
    published: u64,
    acked: u64,
    received: u64,
    errors: u64,
    latency: [f64; 4],
}

async fn round(
    b: &Broker,
    conns: usize,
    qos: QoS,
    rate: Option<u64>,
    seconds: u64,
) -> anyhow::Result<Round> {
    let seen = Arc::new(Received::default());
    let stop = Arc::new(AtomicBool::new(false));
    subscriber(b, qos, seen.clone(), stop.clone()).await?;
    let sent = Arc::new(Sent::default());
    let until = Instant::now() + Duration::from_secs(seconds) + Duration::from_millis(500);
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r as f64));
    let tasks: Vec<_> = b.publishers[..conns]
        .iter()
        .map(|p| {
            tokio::spawn(publisher(
                b.addr.clone(),
                p.clone(),
                qos,
                interval,
                until,
                sent.clone(),
            ))
        })
        .collect();
    // Count what arrives during the measured seconds only (after a half-second warm-up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (p0, a0, r0) = (
        sent.published.load(Ordering::Relaxed),
        sent.acked.load(Ordering::Relaxed),
        seen.count.load(Ordering::Relaxed),
    );
    seen.samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (p1, a1, r1) = (
        sent.published.load(Ordering::Relaxed),
        sent.acked.load(Ordering::Relaxed),
        seen.count.load(Ordering::Relaxed),
    );
    let mut samples = std::mem::take(&mut *seen.samples.lock().unwrap_or_else(|e| e.into_inner()));
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    Ok(Round {
        published: (p1 - p0) / seconds,
        acked: (a1 - a0) / seconds,
        received: (r1 - r0) / seconds,
        errors: sent.errors.load(Ordering::Relaxed),
        latency: percentiles(&mut samples),
    })
}

/// Opens `n` idle connections; returns (KiB of server memory per connection, seconds to connect).
async fn idle(b: &Broker, n: usize, users: &[String]) -> anyhow::Result<(f64, f64, usize)> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(b.pid);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    for i in 0..n {
        let (addr, user) = (b.addr.clone(), users[i % users.len()].clone());
        pending.push(async move { Conn::open(&addr, &format!("idle-{i}"), &user, 0).await });
        if pending.len() >= 200 {
            match pending.next().await {
                Some(Ok(c)) => conns.push(c),
                _ => failed += 1,
            }
        }
    }
    while let Some(r) = pending.next().await {
        match r {
            Ok(c) => conns.push(c),
            Err(_) => failed += 1,
        }
    }
    let took = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(b.pid);
    let open = conns.len();
    drop(conns);
    if open == 0 {
        bail!(
            "{}: no idle connection could be opened ({failed} failed)",
            b.name
        );
    }
    Ok((
        after.saturating_sub(before) as f64 / open as f64,
        took,
        open,
    ))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, &args.tributary, &args.email, &args.password).await?;
    let most = args.connections.iter().copied().max().unwrap_or(0);
    eprintln!("provisioning {most} devices and an API key…");
    let key: Value = http
        .post(format!("{}/api/v1/api-keys", args.tributary))
        .bearer_auth(&token)
        .json(&json!({"name": "mqtt-bench", "scope": "read"}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"].as_str().context("API key")?.to_string();
    let mut devices = Vec::with_capacity(most);
    for i in 0..most {
        let (_, t) =
            create_device(&http, &args.tributary, &token, &format!("mqtt-bench-{i}")).await?;
        devices.push((
            format!("mqtt-bench-{i}"),
            t,
            "v1/devices/me/telemetry".to_string(),
        ));
    }
    let mut brokers = vec![Broker {
        name: "Tributary",
        addr: args.tributary_mqtt.clone(),
        pid: args.tributary_pid,
        publishers: devices.clone(),
        subscriber: key,
        filter: "$devices/+/telemetry".into(),
    }];
    if let (Some(addr), Some(pid)) = (&args.mosquitto, args.mosquitto_pid) {
        brokers.push(Broker {
            name: "Mosquitto",
            addr: addr.clone(),
            pid,
            publishers: (0..most)
                .map(|i| {
                    (
                        format!("c{i}"),
                        format!("bench-{i}"),
                        format!("bench/c{i}/telemetry"),
                    )
                })
                .collect(),
            subscriber: "bench-sub".into(),
            filter: "bench/+/telemetry".into(),
        });
    }

    // Every server idle before each round (draining what a round left
    // behind can take a broker many seconds).
    let pids: Vec<u32> = brokers.iter().map(|b| b.pid).collect();

    println!("## MQTT publish throughput (closed loop, QoS 1 window 16 per connection)");
    println!();
    println!("| connections | QoS | broker | published msg/s | acked msg/s | delivered to subscriber msg/s | errors | vs Mosquitto (QoS 1: acked, QoS 0: delivered) |");
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &args.connections {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut rows = Vec::new();
            for b in &brokers {
                rows.push(round(b, n, qos, None, args.seconds).await?);
                settle(&pids).await;
            }
            // What the broker took: acknowledged publishes at QoS 1; at QoS 0,
            // which has no acknowledgement, what reached the subscriber.
            let taken = |r: &Round| {
                if qos == QoS::AtMostOnce {
                    r.received
                } else {
                    r.acked
                }
            };
            let peer = rows.get(1).map(taken);
            for (b, r) in brokers.iter().zip(&rows) {
                let ratio = match peer {
                    Some(p) if p > 0 => format!("{:.2}×", taken(r) as f64 / p as f64),
                    _ => "—".into(),
                };
                println!(
                    "| {n} | {} | {} | {} | {} | {} | {} | {ratio} |",
                    qos as u8, b.name, r.published, r.acked, r.received, r.errors
                );
            }
        }
    }
    println!();
    println!(
        "## Publish → subscriber latency at {} messages/s",
        args.rate
    );
    println!();
    println!(
        "| connections | QoS | broker | delivered msg/s | p50 ms | p99 ms | p99.9 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &args.connections {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for b in &brokers {
                let r = round(b, n, qos, Some(args.rate), args.seconds).await?;
                let [p50, p99, p999, max] = r.latency;
                println!(
                    "| {n} | {} | {} | {} | {p50:.2} | {p99:.2} | {p999:.2} | {max:.2} |",
                    qos as u8, b.name, r.received
                );
                settle(&pids).await;
            }
        }
    }
    println!();
    println!("## {} idle connections", args.idle);
    println!();
    println!("| broker | connections open | server memory per connection | time to connect all |");
    println!("|---|---|---|---|");
    for b in &brokers {
        let users: Vec<String> = b.publishers.iter().map(|(_, u, _)| u.clone()).collect();
        let (kib, took, open) = idle(b, args.idle, &users).await?;
        println!("| {} | {open} | {kib:.1} KiB | {took:.1} s |", b.name);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(())
}
