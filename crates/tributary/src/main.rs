//! The `tributary` command: a thin CLI over the library crates.

mod bootstrap;
mod config;
mod consumers;
mod export;
mod fds;
mod logging;
mod serve;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigArgs};

/// mimalloc: ingestion allocates and frees many small objects per point
/// (parsed lines, keys, batches) across threads, where it is markedly
/// faster than the system allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tributary: the IoT telemetry platform in one binary.
#[derive(Parser)]
#[command(name = "tributary", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the all-in-one server (embedded storage, no other service needed).
    Serve(ConfigArgs),
    /// Run a simulated fleet against Tributary, an MQTT broker or InfluxDB.
    Simulate(Box<simulate::SimulateArgs>),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file < environment < flags), secrets masked.
    Show(ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => Config::load(&args).and_then(serve::run),
        Command::Simulate(args) => simulate::run(*args),
        Command::Config {
            command: ConfigCommand::Show(args),
        } => Config::load(&args).and_then(|c| {
            print!("{}", c.show()?);
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
