//! `tributary simulate`: the device simulator and load generator.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tributary_sim::replay;
use tributary_sim::scenario::Scenario;
use tributary_sim::target::provision::{self, Credentials};
use tributary_sim::target::{HttpTarget, LineTarget, MqttOptions, MqttTarget, Target, WsTarget};
use tributary_sim::{LiveProbe, RunOptions};

/// How the simulated devices send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Tributary's device HTTP API.
    Http,
    /// MQTT (Tributary's device topics, or any broker with --topic).
    Mqtt,
    /// InfluxDB line protocol.
    Line,
    /// Tributary's WebSocket device ingest (one connection per device).
    Ws,
}

/// Flags of `tributary simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Scenario file (TOML); see examples/.
    #[arg(long, conflicts_with_all = ["demo", "replay"], required_unless_present_any = ["demo", "replay"])]
    scenario: Option<PathBuf>,
    /// Replay recorded data from a CSV file (`ts,device,key,value`, ts in ms).
    #[arg(long, conflicts_with = "demo")]
    replay: Option<PathBuf>,
    /// Replay speed: 1 is the original pace, 10 ten times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Run the built-in demo fleet (examples/demo.toml) until interrupted.
    #[arg(long)]
    demo: bool,
    /// How devices send.
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// Tributary server: devices are provisioned there through its REST API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// API key (write or admin scope) for provisioning.
    #[arg(long)]
    api_key: Option<String>,
    /// Email to log in with instead of an API key.
    #[arg(
        long,
        env = "TRIBUTARY_ADMIN_EMAIL",
        default_value = "admin@tributary.local"
    )]
    email: String,
    /// Password to log in with instead of an API key.
    #[arg(long, env = "TRIBUTARY_ADMIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// MQTT broker `host:port`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// MQTT QoS (0 or 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// MQTT topic; `{device}` becomes the device name. Default: Tributary's `v1/devices/me/telemetry`.
    #[arg(long)]
    topic: Option<String>,
    /// Plain MQTT broker or InfluxDB: do not provision devices on a Tributary server.
    #[arg(long)]
    no_provision: bool,
    /// One MQTT connection for the whole fleet instead of one per device.
    #[arg(long)]
    shared_connection: bool,
    /// InfluxDB (or compatible) base URL for --protocol line.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    influx: String,
    /// Database for --protocol line.
    #[arg(long, default_value = "tributary")]
    db: String,
    /// Measurement for --protocol line.
    #[arg(long, default_value = "telemetry")]
    measurement: String,
    /// Seed of every random choice (overrides the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Wall-clock time (ms) of the scenario's start; now by default.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Send as fast as possible instead of in real time.
    #[arg(long)]
    fast: bool,
    /// Messages in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measure end-to-end latency on Tributary's live feed.
    #[arg(long)]
    latency: bool,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').context("--mqtt must be host:port")?;
    Ok((
        host.to_string(),
        port.parse().context("--mqtt port must be a number")?,
    ))
}

/// Runs the simulator; returns the process exit status.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let input = match (&args.scenario, &args.replay) {
        (Some(path), _) => Input::Scenario(
            Scenario::parse(&read(path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        (None, Some(path)) => Input::Replay(
            replay::parse(&read(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        (None, None) => Input::Scenario(Scenario::demo()),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(simulate(args, input))
}

/// What to send: a generated fleet or a recording.
enum Input {
    Scenario(Scenario),
    Replay(replay::Recording),
}

async fn simulate(args: SimulateArgs, input: Input) -> anyhow::Result<()> {
    let (names, labels) = match &input {
        Input::Scenario(s) => (
            (0..s.fleet.count)
                .map(|i| s.device_name(i))
                .collect::<Vec<_>>(),
            s.fleet.labels.clone(),
        ),
        Input::Replay(r) => (r.devices.clone(), Default::default()),
    };
    let base = args.target.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let provisioned = if args.no_provision || args.protocol == Protocol::Line {
        None
    } else {
        let creds = match (&args.api_key, &args.password) {
            (Some(k), _) => Credentials::ApiKey(k.clone()),
            (None, Some(p)) => Credentials::Login {
                email: args.email.clone(),
                password: p.clone(),
            },
            (None, None) => bail!(
                "provisioning devices on {base} needs --api-key, or --password (with --email)"
            ),
        };
        let bearer = provision::bearer(&http, &base, &creds)
            .await
            .map_err(anyhow::Error::msg)?;
        let devices = provision::devices(&http, &base, &bearer, &names, &labels)
            .await
            .map_err(anyhow::Error::msg)?;
        if !args.quiet {
            eprintln!("provisioned {} devices on {base}", devices.len());
        }
        Some((bearer, devices))
    };
    let tokens = provisioned
        .as_ref()
        .map(|(_, d)| d.iter().map(|p| p.token.clone()).collect::<Vec<_>>());
    let target = match args.protocol {
        Protocol::Http => Target::Http(HttpTarget::new(
            &base,
            tokens
                .clone()
                .context("the HTTP device API needs provisioned devices")?,
        )),
        Protocol::Ws => Target::Ws(WsTarget::new(
            &base,
            tokens
                .clone()
                .context("WebSocket ingest needs provisioned devices")?,
        )),
        Protocol::Line => Target::Line(LineTarget::new(
            &args.influx,
            &args.db,
            &args.measurement,
            names.clone(),
        )),
        Protocol::Mqtt => {
            let (host, port) = host_port(&args.mqtt)?;
            let opts = MqttOptions {
                host,
                port,
                qos: args.qos,
                topic: args
                    .topic
                    .clone()
                    .unwrap_or_else(|| "v1/devices/me/telemetry".into()),
                per_device: !args.shared_connection,
            };
            Target::Mqtt(
                MqttTarget::connect(opts, names.clone(), tokens.clone())
                    .await
                    .map_err(anyhow::Error::msg)?,
            )
        }
    };
    let probe = match (&provisioned, args.latency) {
        (Some((bearer, devices)), true) => Some(LiveProbe {
            base: base.clone(),
            bearer: bearer.clone(),
            device_ids: devices.iter().map(|d| d.id.clone()).collect(),
        }),
        (None, true) => bail!("--latency needs a Tributary target with provisioned devices"),
        _ => None,
    };
    let progress = !args.quiet && !args.json;
    let report = match input {
        Input::Scenario(scenario) => {
            tributary_sim::run(
                Arc::new(target),
                RunOptions {
                    seed: args.seed.unwrap_or(scenario.seed),
                    scenario,
                    start_ms: args.start_ms,
                    fast: args.fast,
                    max_seconds: args.duration,
                    progress,
                    concurrency: args.concurrency,
                    probe,
                },
            )
            .await
        }
        Input::Replay(recording) => {
            if args.speed <= 0.0 {
                bail!("--speed must be positive");
            }
            let speed = if args.fast { f64::MAX } else { args.speed };
            tributary_sim::replay(
                Arc::new(target),
                recording,
                speed,
                args.concurrency,
                probe,
                progress,
            )
            .await
        }
    }
    .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
