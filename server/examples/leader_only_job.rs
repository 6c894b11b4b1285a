//! A job of which exactly one replica works at a time: each replica embeds a haplane participant
//! and does leader-only work while its term holds. Every unit of work is appended to a file as
//! `<epoch> <wall-clock ms>`, taken before the term is checked, so a unit is only ever recorded
//! inside a valid term. SIGTERM resigns gracefully.
//!
//! ```text
//! cargo run -p haplane-server --example leader_only_job -- \
//!     --dir /shared/haplane --id replica-1 --units /tmp/replica-1.units
//! ```

use clap::Parser;
use haplane_server::participant::Participant;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// The plane's directory store.
    #[arg(long)]
    dir: PathBuf,
    /// This replica's node id.
    #[arg(long)]
    id: String,
    /// Where to append the units of work done.
    #[arg(long)]
    units: PathBuf,
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    priority: i64,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_period: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Duration,
    /// Serve the node's gRPC/REST port here, so that peers can nudge this replica and ask it to
    /// step down (a resign is then seen within milliseconds instead of a poll).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: std::net::SocketAddr,
    /// How often a leader does a unit of work.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    unit: Duration,
}

fn wall_clock_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let participant = Participant::builder(&args.id)
        .directory(&args.dir)
        .priority(args.priority)
        .timings(args.poll_period, args.heartbeat_timeout)
        .serve(args.bind)
        .start()
        .await?;
    let mut units = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.units)?;
    println!(
        "{} joined, serving {:?}",
        participant.node_id(),
        participant.address()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let term = tokio::select! {
            term = participant.leader() => term,
            _ = terminate.recv() => break,
        };
        println!("leading in epoch {}", term.epoch());
        loop {
            // The time first, the check second: a unit is recorded only if the term held at
            // (or after) the instant written down.
            let at = wall_clock_ms();
            if !term.is_valid() {
                break;
            }
            // One write per line, unbuffered: a kill -9 loses no recorded unit.
            units.write_all(format!("{} {at}\n", term.epoch()).as_bytes())?;
            tokio::select! {
                () = tokio::time::sleep(args.unit) => {}
                _ = terminate.recv() => {
                    participant.resign().await?;
                    return Ok(());
                }
            }
        }
        println!("term {} ended", term.epoch());
    }
    participant.resign().await?;
    Ok(())
}
