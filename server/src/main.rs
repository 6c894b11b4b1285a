//! The `haplane` binary: parses the command line, sets up logging, and runs `launch`, `stop`, or
//! an operator command (`ha`, `state`, `config check`).

use clap::{Parser, Subcommand};
use haplane_server::app;
use haplane_server::config::{LaunchArgs, LogFormat, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen times (hyper, axum, h2),
/// and mimalloc's thread-local free lists take about half the instructions (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "haplane",
    version,
    about = "High-availability management plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Launch(Box<LaunchArgs>),
    /// Stop the node whose PID is in the pid file, gracefully.
    Stop {
        #[arg(long, default_value = "pid.txt")]
        pid_file: PathBuf,
        /// How long to wait for the node to exit.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Operator client: state, states, set-state, priority, remove-terminated, watch.
    Ha(haplane_server::cli::ha::HaArgs),
    /// Managed-state repair on the store itself: void-entry.
    State(haplane_server::cli::state::StateArgs),
    /// Settings: check.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings `launch` would run with and where each came from; exit 2 naming the
    /// setting when one is invalid.
    Check(Box<LaunchArgs>),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

// One thread runs the node (election, store calls, accepting connections); `serve` runs the
// port's connections on serving threads of their own.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    match cli.command {
        Command::Config(ConfigCommand::Check(args)) => {
            let check = matches
                .subcommand_matches("config")
                .and_then(|config| config.subcommand_matches("check"));
            match check {
                Some(check) => haplane_server::cli::config::check(check, *args),
                None => ExitCode::from(2),
            }
        }
        Command::Launch(args) => {
            let settings = match Settings::load(*args) {
                Ok(settings) => settings,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(2);
                }
            };
            init_logging(settings.log_format);
            match app::launch(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err}");
                    tracing::error!(error = %err, "haplane stopped with an error");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ha(args) => haplane_server::cli::ha::run(args).await,
        Command::State(args) => haplane_server::cli::state::run(args).await,
        Command::Stop { pid_file, wait } => match app::stop(&pid_file, wait).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}
