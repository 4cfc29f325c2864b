//! The time-series engine against InfluxDB 1.x: the same line-protocol load
//! from the simulator (4 writers, 5,000 points per request) for smooth and
//! noisy signals; durable write throughput, bytes on disk per point once
//! sealed, an hourly-average query over 10 million points of one series, a
//! last-value query over 100,000 devices, peak memory, and a read-back of
//! every point written.
//!
//! The write rounds render the simulator's messages to request bodies before
//! the clock starts, so the figures are the servers' rather than the
//! generator's (which shares the machine's two cores); about 3 GB of them
//! per round at the default.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use tributary_sim::scenario::Scenario;
use tributary_sim::target::{lines, LineTarget, Target};
use tributary_sim::{Report, RunOptions};

use crate::api::login;
use crate::procfs::{peak_rss_kib, settle};

#[derive(clap::Args)]
pub struct Args {
    /// Tributary base URL.
    #[arg(long)]
    tributary: String,
    /// Tributary's process id (peak memory).
    #[arg(long)]
    tributary_pid: u32,
    /// Tributary's time-series directory (`<data_dir>/tsdb`).
    #[arg(long)]
    tributary_dir: PathBuf,
    /// Admin email.
    #[arg(long)]
    email: String,
    /// Admin password.
    #[arg(long)]
    password: String,
    /// InfluxDB 1.x base URL.
    #[arg(long)]
    influx: Option<String>,
    /// InfluxDB's data directory (TSM files).
    #[arg(long)]
    influx_dir: Option<PathBuf>,
    /// InfluxDB's process id (a write round waits until it is idle).
    #[arg(long)]
    influx_pid: Option<u32>,
    /// Seconds per write round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Points rendered per write round. A round ends early when they run
    /// out, so there are enough for the faster server to write the whole
    /// round too (in a round of 1-2 s its warm-up would weigh in).
    #[arg(long, default_value_t = 64_000_000)]
    render_points: u64,
    /// Points of the single series the aggregate query reads.
    #[arg(long, default_value_t = 10_000_000)]
    query_points: u64,
    /// Devices of the last-value query.
    #[arg(long, default_value_t = 100_000)]
    last_devices: u64,
    /// Series of the memory test (devices × 100 fields).
    #[arg(long, default_value_t = 1_000_000)]
    active_series: u64,
    /// Run the write rounds only (a quick check of write throughput).
    #[arg(long)]
    writes_only: bool,
}

/// Fields per device in the memory test.
const WIDE_FIELDS: u64 = 100;

const WRITERS: usize = 4;
const BATCH: usize = 5000;

/// `WRITERS` devices sending `BATCH` readings (one second apart) per request.
fn scenario(name: &str, signal: &str, count: usize) -> Scenario {
    let text = format!(
        "seed = 7\n[fleet]\ncount = {count}\nname = \"{name}-{{i}}\"\n[rate]\ninterval_ms = 1000\nbatch = {BATCH}\n\n[[keys]]\nname = \"v\"\n{signal}\n"
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("bench scenario: {e}"))
}

const SMOOTH: &str =
    "signal = \"sine\"\noffset = 20.0\namplitude = 5.0\nperiod_secs = 86400.0\ndecimals = 2";
const NOISY: &str = "signal = \"random_walk\"\nmin = 0.0\nmax = 100.0\nstep = 3.0\nnoise = 10.0";

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            // Half-written files (a seal or compaction in progress) do not count.
            Ok(_) if e.path().extension().is_some_and(|x| x == "tmp") => 0,
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The directory's size once it stopped changing (compactions finished), up to 30 s.
async fn settled_bytes(dir: &Path) -> u64 {
    let mut last = dir_bytes(dir);
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = dir_bytes(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

async fn write(
    target: Target,
    scenario: Scenario,
    seconds: Option<u64>,
    start_ms: i64,
) -> anyhow::Result<Report> {
    let concurrency = scenario.fleet.count.min(WRITERS);
    tributary_sim::run(
        Arc::new(target),
        RunOptions {
            scenario,
            seed: 7,
            start_ms: Some(start_ms),
            fast: true,
            max_seconds: seconds.map(|s| s as f64),
            progress: false,
            concurrency,
            probe: None,
        },
    )
    .await
    .map_err(anyhow::Error::msg)
}

/// What a round of pre-rendered writes achieved.
struct Blast {
    points_per_sec: f64,
    acked_points: u64,
}

/// Per writer, its request bodies (and their point counts) in time order,
/// rendered from the simulator's messages.
fn render(label: &str, signal: &str, start_ms: i64, points: u64) -> Vec<Vec<(Bytes, u64)>> {
    let mut sc = scenario(label, signal, WRITERS);
    sc.rate.points = Some(points);
    let mut fleet = tributary_sim::Fleet::new(&sc, 7, start_ms);
    let mut per_writer = vec![Vec::new(); WRITERS];
    // Step through simulated time one batch at a time, so every device gets
    // its share of the point budget.
    let step = BATCH as f64 * 1000.0;
    let mut until = 0.0;
    loop {
        until += step;
        let finished = fleet.finished();
        for msg in fleet.advance(until, finished) {
            let name = format!("{label}-{}", msg.device);
            let n = msg.readings.len() as u64;
            per_writer[msg.device].push((Bytes::from(lines(label, &name, &msg)), n));
        }
        if finished {
            break;
        }
    }
    per_writer
}

/// Each writer posts its bodies one after another, for at most `seconds`.
async fn blast(
    url: &str,
    token: Option<&str>,
    bodies: &[Vec<(Bytes, u64)>],
    seconds: u64,
) -> anyhow::Result<Blast> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|mine| {
            let (http, url) = (http.clone(), url.to_string());
            let auth = token.map(|t| format!("Token {t}"));
            tokio::spawn(async move {
                let mut acked = 0u64;
                for (body, n) in mine {
                    if Instant::now() >= until {
                        break;
                    }
                    let mut req = http.post(&url).body(body);
                    if let Some(a) = &auth {
                        req = req.header("Authorization", a);
                    }
                    let res = req.send().await?;
                    if !res.status().is_success() {
                        bail!("write failed: {} {}", res.status(), res.text().await?);
                    }
                    acked += n;
                }
                Ok(acked)
            })
        })
        .collect();
    let mut acked = 0;
    for t in tasks {
        acked += t.await??;
    }
    Ok(Blast {
        points_per_sec: acked as f64 / started.elapsed().as_secs_f64(),
        acked_points: acked,
    })
}

/// Points stored for device `name` in Tributary (by a count aggregate over all time).
async fn tributary_count(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<u64> {
    let list: Value = http
        .get(format!(
            "{base}/api/v1/devices?limit=1000&name={}",
            urlencode(name)
        ))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let id = list["data"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .and_then(|d| d["id"].as_str())
        .with_context(|| format!("no device {name}"))?
        .to_string();
    let v: Value = http
        .get(format!(
            "{base}/api/v1/devices/{id}/telemetry?keys=v&agg=count&interval=315360000000&limit=100000"
        ))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["v"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["value"].as_u64()).sum())
        .unwrap_or(0))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn influx_query(http: &reqwest::Client, base: &str, q: &str) -> anyhow::Result<Value> {
    let res = http
        .get(format!("{base}/query"))
        .query(&[("db", "tsdb"), ("q", q), ("epoch", "ms")])
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("influx query failed: {}", res.text().await?);
    }
    Ok(res.json().await?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token = login(&http, &args.tributary, &args.email, &args.password).await?;
    let key: Value = http
        .post(format!("{}/api/v1/api-keys", args.tributary))
        .bearer_auth(&token)
        .json(&json!({"name": "tsdb-bench", "scope": "write"}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"].as_str().context("API key")?.to_string();
    if let Some(influx) = &args.influx {
        http.post(format!("{influx}/query"))
            .form(&[("q", "CREATE DATABASE tsdb")])
            .send()
            .await?;
    }
    let start_ms = 1_600_000_000_000;

    // Each write round starts with both servers idle.
    let servers: Vec<u32> = std::iter::once(args.tributary_pid)
        .chain(args.influx_pid)
        .collect();
    println!("## Durable line-protocol writes: {WRITERS} writers, {BATCH} points per request, {} s per round\n", args.seconds);
    println!("| signal | system | points/s | vs InfluxDB | bytes on disk per point (sealed) | vs InfluxDB | points read back |");
    println!("|---|---|---|---|---|---|---|");
    for (round, (label, signal)) in [("smooth", SMOOTH), ("noisy", NOISY)]
        .into_iter()
        .enumerate()
    {
        let names: Vec<String> = (0..WRITERS).map(|i| format!("{label}-{i}")).collect();
        let start = start_ms + round as i64 * 10_000_000_000;
        eprintln!("rendering {} {label} points…", args.render_points);
        let bodies = render(label, signal, start, args.render_points);
        settle(&servers).await;
        let t_before = dir_bytes(&args.tributary_dir);
        let t = blast(
            &format!("{}/write?db=tsdb&precision=ms", args.tributary),
            Some(&key),
            &bodies,
            args.seconds,
        )
        .await?;
        let i = match &args.influx {
            Some(base) => {
                // Not while Tributary still seals and compacts its round.
                settle(&servers).await;
                let before = args.influx_dir.as_deref().map(dir_bytes).unwrap_or(0);
                let r = blast(
                    &format!("{base}/write?db=tsdb&precision=ms"),
                    None,
                    &bodies,
                    args.seconds,
                )
                .await?;
                Some((r, before))
            }
            None => None,
        };
        drop(bodies);
        // Let both seal/snapshot what they hold (Tributary's seal interval and
        // InfluxDB's cold-cache snapshot are set short by bench/run.sh).
        tokio::time::sleep(Duration::from_secs(12)).await;
        let t_bytes = settled_bytes(&args.tributary_dir)
            .await
            .saturating_sub(t_before) as f64
            / t.acked_points.max(1) as f64;
        let mut stored = 0;
        for n in &names {
            stored += tributary_count(
                &http,
                &args.tributary,
                &token,
                &format!("{label},device={n}"),
            )
            .await?;
        }
        // InfluxDB's bytes per point, measured once.
        let i_bytes = i.as_ref().map(|(r, before)| {
            args.influx_dir
                .as_deref()
                .map(dir_bytes)
                .unwrap_or(0)
                .saturating_sub(*before) as f64
                / r.acked_points.max(1) as f64
        });
        let (ratio, bytes_ratio) = match (&i, i_bytes) {
            (Some((r, _)), Some(i_bytes)) => (
                format!("{:.2}×", t.points_per_sec / r.points_per_sec.max(1.0)),
                format!("{:.2}×", t_bytes / i_bytes.max(0.001)),
            ),
            _ => ("n/a".into(), "n/a".into()),
        };
        println!(
            "| {label} | Tributary | {:.0} | {ratio} | {t_bytes:.2} | {bytes_ratio} | {stored} of {} |",
            t.points_per_sec, t.acked_points
        );
        if let (Some((r, _)), Some(i_bytes)) = (&i, i_bytes) {
            let count = influx_query(
                &http,
                args.influx.as_deref().unwrap_or_default(),
                &format!("SELECT count(v) FROM \"{label}\""),
            )
            .await?;
            let n = count["results"][0]["series"][0]["values"][0][1]
                .as_u64()
                .unwrap_or(0);
            println!(
                "| {label} | InfluxDB 1.x | {:.0} | 1.00× | {i_bytes:.2} | 1.00× | {n} of {} |",
                r.points_per_sec, r.acked_points
            );
        }
        if stored != t.acked_points {
            bail!(
                "read-back mismatch: {stored} stored, {} acknowledged",
                t.acked_points
            );
        }
    }

    if args.writes_only {
        return Ok(());
    }

    // One series of `query_points` points, then an hourly average over all of it.
    let requests = args.query_points.div_ceil(BATCH as u64);
    let mut sc = scenario("long", SMOOTH, 1);
    sc.rate.points = Some(requests * BATCH as u64);
    eprintln!(
        "writing {} points of one series to each system…",
        requests * BATCH as u64
    );
    let t = write(
        Target::Line(
            LineTarget::new(&args.tributary, "tsdb", "long", vec!["long-0".into()])
                .with_token(&key),
        ),
        sc.clone(),
        None,
        start_ms,
    )
    .await?;
    if let Some(base) = &args.influx {
        write(
            Target::Line(LineTarget::new(base, "tsdb", "long", vec!["long-0".into()])),
            sc,
            None,
            start_ms,
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let list: Value = http
        .get(format!(
            "{}/api/v1/devices?limit=1000&name=long",
            args.tributary
        ))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let id = list["data"][0]["id"]
        .as_str()
        .context("long device")?
        .to_string();
    let url = format!(
        "{}/api/v1/devices/{id}/telemetry?keys=v&agg=avg&interval=3600000&limit=100000&order=asc",
        args.tributary
    );
    let mut t_times = Vec::new();
    let mut hours = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let v: Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        t_times.push(started.elapsed().as_secs_f64() * 1000.0);
        hours = v["v"].as_array().map(Vec::len).unwrap_or(0);
    }
    println!(
        "\n## Hourly average over {} points of one series\n",
        t.acked_points
    );
    println!("| system | median of 3, ms | hours returned | speed vs InfluxDB |");
    println!("|---|---|---|---|");
    let t_ms = median(t_times);
    match &args.influx {
        Some(base) => {
            let mut i_times = Vec::new();
            let mut i_hours = 0;
            for _ in 0..3 {
                let started = Instant::now();
                let v = influx_query(
                    &http,
                    base,
                    "SELECT mean(v) FROM \"long\" WHERE time >= 0 GROUP BY time(1h) fill(none)",
                )
                .await?;
                i_times.push(started.elapsed().as_secs_f64() * 1000.0);
                i_hours = v["results"][0]["series"][0]["values"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
            }
            let i_ms = median(i_times);
            println!("| Tributary | {t_ms:.1} | {hours} | {:.2}× |", i_ms / t_ms);
            println!("| InfluxDB 1.x | {i_ms:.1} | {i_hours} | 1.00× |");
        }
        None => println!("| Tributary | {t_ms:.1} | {hours} | n/a |"),
    }
    last_values(&http, &args, &token, &key, start_ms).await?;
    active_series(&http, &args, &token, &key, start_ms).await?;
    println!(
        "\nTributary peak RSS: {} MiB",
        peak_rss_kib(args.tributary_pid) / 1024
    );
    Ok(())
}

/// `active_series` series (devices of 100 fields, measurement `wide`), two
/// readings each: Tributary's memory once they are all in the head and once
/// sealed, and a check that every series' newest value is there.
async fn active_series(
    http: &reqwest::Client,
    args: &Args,
    token: &str,
    key: &str,
    start_ms: i64,
) -> anyhow::Result<()> {
    let devices = args.active_series.div_ceil(WIDE_FIELDS);
    let lines_per_body = (BATCH as u64 / WIDE_FIELDS).max(1);
    let mut bodies = vec![Vec::new(); WRITERS];
    let (mut body, mut in_body, mut n_bodies) = (String::new(), 0, 0usize);
    for r in 0..2i64 {
        for d in 0..devices {
            body.push_str(&format!("wide,device=w{d} "));
            for f in 0..WIDE_FIELDS {
                let sep = if f + 1 == WIDE_FIELDS { ' ' } else { ',' };
                body.push_str(&format!("f{f}={}.25{sep}", d + f + r as u64));
            }
            body.push_str(&format!("{}\n", start_ms + r * 1000));
            in_body += 1;
            if in_body == lines_per_body || d + 1 == devices {
                let points = in_body * WIDE_FIELDS;
                bodies[n_bodies % WRITERS].push((Bytes::from(std::mem::take(&mut body)), points));
                n_bodies += 1;
                in_body = 0;
            }
        }
    }
    eprintln!(
        "writing {} series ({devices} devices × {WIDE_FIELDS} fields), 2 readings each…",
        devices * WIDE_FIELDS
    );
    let before = crate::procfs::rss_kib(args.tributary_pid);
    let t = blast(
        &format!("{}/write?db=tsdb&precision=ms", args.tributary),
        Some(key),
        &bodies,
        3600,
    )
    .await?;
    drop(bodies);
    let in_head = crate::procfs::rss_kib(args.tributary_pid);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let sealed = crate::procfs::rss_kib(args.tributary_pid);
    let values: u64 = fleet_latest(http, &args.tributary, token, "label=measurement%3Dwide")
        .await?
        .iter()
        .map(|d| d["values"].as_object().map_or(0, |m| m.len() as u64))
        .sum();
    println!(
        "\n## {} active series ({devices} devices × {WIDE_FIELDS} fields, 2 readings each)\n",
        devices * WIDE_FIELDS
    );
    println!("| written at (points/s) | RSS before, MiB | RSS with all in the head, MiB | RSS once sealed, MiB | series with a latest value |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} | {} | {} | {} | {values} |",
        t.points_per_sec,
        before / 1024,
        in_head / 1024,
        sealed / 1024
    );
    if values != devices * WIDE_FIELDS {
        bail!(
            "{values} series have a latest value, {} written",
            devices * WIDE_FIELDS
        );
    }
    Ok(())
}

/// Every device entry of `GET /api/v1/latest?{query}`, page after page.
async fn fleet_latest(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
) -> anyhow::Result<Vec<Value>> {
    let (mut all, mut cursor) = (Vec::new(), String::new());
    loop {
        let v: Value = http
            .get(format!("{base}/api/v1/latest?{query}&limit=100000{cursor}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        all.extend(v["data"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return Ok(all),
        }
    }
}

/// Two readings for each of `last_devices` devices (measurement `last`, tag
/// `device`), then the newest value of every one of them, checked.
async fn last_values(
    http: &reqwest::Client,
    args: &Args,
    token: &str,
    key: &str,
    start_ms: i64,
) -> anyhow::Result<()> {
    let n = args.last_devices;
    let mut bodies = vec![Vec::new(); WRITERS];
    let mut body = String::new();
    let mut lines_in_body = 0;
    for i in 0..n {
        // The newer reading is i + 0.5: the answer is checkable.
        for (r, v) in [(0, i as f64), (1, i as f64 + 0.5)] {
            body.push_str(&format!("last,device=d{i} v={v} {}\n", start_ms + r * 1000));
        }
        lines_in_body += 2;
        if lines_in_body >= BATCH || i + 1 == n {
            let w = (i as usize / BATCH) % WRITERS;
            bodies[w].push((Bytes::from(std::mem::take(&mut body)), lines_in_body as u64));
            lines_in_body = 0;
        }
    }
    eprintln!("writing 2 readings for each of {n} devices to each system…");
    let t = blast(
        &format!("{}/write?db=tsdb&precision=ms", args.tributary),
        Some(key),
        &bodies,
        3600,
    )
    .await?;
    if let Some(base) = &args.influx {
        blast(
            &format!("{base}/write?db=tsdb&precision=ms"),
            None,
            &bodies,
            3600,
        )
        .await?;
    }
    let expected: f64 = (0..n).map(|i| i as f64 + 0.5).sum();
    println!("\n## Last value of {n} devices\n");
    println!(
        "| system | median of 3, ms | devices returned | values correct | speed vs InfluxDB |"
    );
    println!("|---|---|---|---|---|");
    let mut t_times = Vec::new();
    let mut t_check = (0, false);
    for _ in 0..3 {
        let started = Instant::now();
        let all = fleet_latest(
            http,
            &args.tributary,
            token,
            "keys=v&label=measurement%3Dlast",
        )
        .await?;
        let devices = all.len() as u64;
        let sum: f64 = all
            .iter()
            .map(|d| d["values"]["v"]["value"].as_f64().unwrap_or(f64::NAN))
            .sum();
        t_times.push(started.elapsed().as_secs_f64() * 1000.0);
        t_check = (
            devices,
            devices == n && (sum - expected).abs() < 1e-6 * expected.max(1.0),
        );
    }
    let t_ms = median(t_times);
    let yes = |ok: bool| if ok { "yes" } else { "NO" };
    match &args.influx {
        Some(base) => {
            let mut i_times = Vec::new();
            let mut i_check = (0, false);
            for _ in 0..3 {
                let started = Instant::now();
                let v = influx_query(
                    http,
                    base,
                    "SELECT last(v) FROM \"last\" GROUP BY \"device\"",
                )
                .await?;
                i_times.push(started.elapsed().as_secs_f64() * 1000.0);
                let series = v["results"][0]["series"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let sum: f64 = series
                    .iter()
                    .map(|s| s["values"][0][1].as_f64().unwrap_or(f64::NAN))
                    .sum();
                let count = series.len() as u64;
                i_check = (
                    count,
                    count == n && (sum - expected).abs() < 1e-6 * expected.max(1.0),
                );
            }
            let i_ms = median(i_times);
            println!(
                "| Tributary | {t_ms:.1} | {} | {} | {:.2}× |",
                t_check.0,
                yes(t_check.1),
                i_ms / t_ms
            );
            println!(
                "| InfluxDB 1.x | {i_ms:.1} | {} | {} | 1.00× |",
                i_check.0,
                yes(i_check.1)
            );
        }
        None => println!(
            "| Tributary | {t_ms:.1} | {} | {} | n/a |",
            t_check.0,
            yes(t_check.1)
        ),
    }
    if !t_check.1 {
        bail!(
            "last values wrong: {} devices of {n} ({} acked points)",
            t_check.0,
            t.acked_points
        );
    }
    Ok(())
}
