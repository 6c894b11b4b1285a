//! `haplane ha …`: the operator's client, built on the SDK. Human-readable output by default,
//! `--json` for scripts.

use clap::{Args, Subcommand};
use haplane::{HaMode, MasterRef};
use haplane_sdk::{Client, ConnectOptions, Credentials, MasterView, PlaneStates, StateInfo};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// `haplane ha` arguments.
#[derive(Debug, Args)]
pub struct HaArgs {
    /// Node URIs, comma-separated; any subset of the plane is enough.
    #[arg(long, value_delimiter = ',', required = true, env = "HAPLANE_ENDPOINT")]
    pub endpoint: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for a master.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// User for nodes started with --auth-user.
    #[arg(long, env = "HAPLANE_AUTH_USER")]
    pub auth_user: Option<String>,
    /// Password of --auth-user (prefer the environment variable).
    #[arg(
        long,
        env = "HAPLANE_AUTH_PASSWORD",
        hide_env_values = true,
        requires = "auth_user"
    )]
    pub auth_password: Option<String>,
    /// PEM CA certificate to trust for https:// endpoints (besides the system roots).
    #[arg(long, env = "HAPLANE_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: HaCommand,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// The master's state.
    State,
    /// Every node of the plane.
    States,
    /// Change the master's HA mode (e.g. hot-standby to hand over).
    SetState {
        #[arg(value_parser = |text: &str| text.parse::<HaMode>().map_err(|e| e.reason))]
        mode: HaMode,
    },
    /// Show, or with N set, the master's priority.
    Priority { priority: Option<i64> },
    /// Remove terminated and long-dead records, or the one named.
    RemoveTerminated { node_id: Option<String> },
    /// Print each change of master until interrupted.
    Watch,
}

fn print_view(view: &MasterView, as_json: bool) {
    if as_json {
        println!("{}", crate::api::rest::view_json(view));
    } else if let Some(master) = &view.master {
        println!(
            "epoch {}: master {} at {}",
            view.epoch, master.id, master.uri
        );
    } else {
        println!("epoch {}: no master", view.epoch);
    }
}

fn print_state(state: &StateInfo, as_json: bool) {
    if as_json {
        let (master_id, master_uri) = MasterRef::to_wire(state.master.as_ref());
        println!(
            "{}",
            json!({"nodeId": state.node_id, "state": state.state.as_str(), "priority": state.priority,
                   "epoch": state.epoch, "masterId": master_id, "masterUri": master_uri,
                   "planeId": state.plane_id})
        );
    } else {
        println!(
            "{} is {} (priority {}, epoch {})",
            state.node_id, state.state, state.priority, state.epoch
        );
    }
}

fn print_plane(plane: &PlaneStates, as_json: bool) {
    let master_id = plane.master_id.as_deref().unwrap_or("");
    if as_json {
        let nodes: Vec<_> = plane
            .nodes
            .iter()
            .map(|n| {
                json!({"nodeId": n.node_id, "nodeUri": n.node_uri, "status": n.status.as_str(),
                            "priority": n.priority, "live": n.live,
                            "lastSeenAgeMs": crate::clock::millis(n.last_seen_age)})
            })
            .collect();
        println!(
            "{}",
            json!({"planeId": plane.plane_id, "masterId": master_id, "epoch": plane.epoch, "nodes": nodes})
        );
        return;
    }
    println!(
        "plane {} epoch {} master {}",
        plane.plane_id, plane.epoch, master_id
    );
    println!(
        "{:<24} {:<12} {:>8} {:<5} {:>10}  uri",
        "node", "status", "priority", "live", "seen"
    );
    for n in &plane.nodes {
        println!(
            "{:<24} {:<12} {:>8} {:<5} {:>9.1}s  {}",
            n.node_id,
            n.status.as_str(),
            n.priority,
            n.live,
            n.last_seen_age.as_secs_f64(),
            n.node_uri
        );
    }
}

/// Prints `text`, or `value` under `--json`.
fn print_either(as_json: bool, value: serde_json::Value, text: impl std::fmt::Display) {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

async fn connect(args: &HaArgs) -> Result<Client, haplane_sdk::Error> {
    let ca_pem = match &args.ca_file {
        Some(path) => {
            Some(
                std::fs::read(path).map_err(|err| haplane_sdk::Error::InvalidEndpoint {
                    endpoint: format!("--ca-file {}", path.display()),
                    message: err.to_string(),
                })?,
            )
        }
        None => None,
    };
    let options = ConnectOptions {
        failover_timeout: args.timeout,
        credentials: args
            .auth_user
            .as_ref()
            .map(|user| Credentials::new(user, args.auth_password.clone().unwrap_or_default())),
        ca_pem,
        ..ConnectOptions::default()
    };
    Client::connect(args.endpoint.clone(), options).await
}

async fn run_command(args: HaArgs) -> Result<(), haplane_sdk::Error> {
    let client = connect(&args).await?;
    let as_json = args.json;
    match args.command {
        HaCommand::State => print_state(&client.get_state().await?, as_json),
        HaCommand::States => print_plane(&client.list_states().await?, as_json),
        HaCommand::SetState { mode } => {
            let previous = client.set_state(mode).await?;
            print_either(
                as_json,
                json!({"previousState": previous.as_str()}),
                format!("previous state {previous}"),
            );
        }
        HaCommand::Priority { priority: None } => {
            let state = client.get_state().await?;
            print_either(as_json, json!({"priority": state.priority}), state.priority);
        }
        HaCommand::Priority {
            priority: Some(priority),
        } => {
            let previous = client.set_priority(priority).await?;
            print_either(
                as_json,
                json!({"previousPriority": previous}),
                format!("previous priority {previous}"),
            );
        }
        HaCommand::RemoveTerminated { node_id } => {
            let removed = client.remove_terminated(node_id.as_deref()).await?;
            let text = if removed.is_empty() {
                "nothing to remove".to_owned()
            } else {
                format!("removed {}", removed.join(", "))
            };
            print_either(as_json, json!({"removed": removed}), text);
        }
        HaCommand::Watch => {
            let mut views = client.watch_master();
            loop {
                if let Some(view) = views.borrow_and_update().as_ref() {
                    print_view(view, as_json);
                }
                if views.changed().await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Runs `haplane ha …`; exit code 1 with the error on stderr when it fails.
pub async fn run(args: HaArgs) -> ExitCode {
    match run_command(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
