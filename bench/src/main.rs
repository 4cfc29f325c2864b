//! `tributary-bench`: load generators that run the same workload against
//! Tributary and a peer, and print the figures for `docs/benchmarks.md`.
//! `bench/run.sh` starts the servers and calls this.

mod api;
mod http_ingest;
mod live;
mod mqtt;
mod procfs;
mod stats;
mod tsdb;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tributary-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Durable HTTP ingest throughput and publish→live latency.
    HttpIngest(http_ingest::Args),
    /// The live feed: latency at fixed rates, a stalled client, 10,000 connections.
    Live(live::Args),
    /// MQTT against Mosquitto: throughput, latency, idle connections.
    Mqtt(mqtt::Args),
    /// The time-series engine against InfluxDB: writes, disk, queries.
    Tsdb(tsdb::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::HttpIngest(args) => http_ingest::run(args).await,
        Command::Live(args) => live::run(args).await,
        Command::Mqtt(args) => mqtt::run(args).await,
        Command::Tsdb(args) => tsdb::run(args).await,
    }
}
