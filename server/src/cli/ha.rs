//! `haplane ha …`: the operator's client, built on the SDK. Reads go to the master; the
//! node-targeted changes (`priority --node`, `promote`, `switchover`, `demote`) reach the named
//! node itself. Every change asks for confirmation (`--yes` skips it). A table or text by
//! default, `--output json` (or `--json`) for scripts.

use clap::{Args, Subcommand};
use haplane::{HaMode, MasterRef};
use haplane_sdk::{
    ClaimInfo, Client, ConnectOptions, Credentials, MasterView, PlaneStates, StateInfo,
};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// `haplane ha` arguments.
#[derive(Debug, Args)]
pub struct HaArgs {
    /// Node URIs, comma-separated; any subset of the plane is enough.
    #[arg(long, value_delimiter = ',', required = true, env = "HAPLANE_ENDPOINT")]
    pub endpoint: Vec<String>,
    /// Print JSON instead of text (the same as `--output json`).
    #[arg(long)]
    pub json: bool,
    /// How to print answers.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Make changes without asking (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
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

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Text and tables for people.
    Table,
    /// One JSON document per answer.
    Json,
}

fn parse_mode(text: &str) -> Result<HaMode, String> {
    text.parse::<HaMode>().map_err(|e| e.reason)
}

/// A node id checked before anything is sent, so that a bad one is a usage error (status 2).
fn parse_node_id(text: &str) -> Result<String, String> {
    haplane::NodeId::parse(text)
        .map(|id| id.to_string())
        .map_err(|e| e.reason)
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// The master's state.
    State,
    /// Every node of the plane: status, priority, liveness, last seen.
    #[command(visible_alias = "list")]
    States,
    /// Change the master's HA mode (e.g. hot-standby to hand over).
    SetState {
        #[arg(value_parser = parse_mode)]
        mode: HaMode,
    },
    /// Show, or with N set, the priority of the master (or of the node given with --node).
    Priority {
        priority: Option<i64>,
        /// The node whose priority to set (default: the master).
        #[arg(long, requires = "priority", value_parser = parse_node_id)]
        node: Option<String>,
    },
    /// Make the named node master; the current master hands over without overlap.
    Promote {
        #[arg(value_parser = parse_node_id)]
        node_id: String,
    },
    /// Hand the master role to the named node (promote it), after checking it is not already
    /// master, and wait until the plane's master is that node.
    Switchover {
        #[arg(long, value_parser = parse_node_id)]
        to: String,
    },
    /// Change the named node's HA mode, hot-standby unless --to says otherwise (a master then
    /// hands over to the best other candidate).
    Demote {
        #[arg(value_parser = parse_node_id)]
        node_id: String,
        #[arg(long, default_value = "hot-standby", value_parser = parse_mode)]
        to: HaMode,
    },
    /// The plane's masters, newest first: epoch, master, when and why it claimed.
    History {
        /// How many epochs (0: 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Remove terminated and long-dead records, or the one named.
    RemoveTerminated {
        #[arg(value_parser = parse_node_id)]
        node_id: Option<String>,
    },
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
    // Lag: managed-state log entries behind the master's position.
    let master_seq = plane
        .nodes
        .iter()
        .find(|n| n.node_id == master_id)
        .map_or(0, |n| n.state_seq);
    let lag = |seq: u64| master_seq.saturating_sub(seq);
    if as_json {
        let nodes: Vec<_> = plane
            .nodes
            .iter()
            .map(|n| {
                json!({"nodeId": n.node_id, "nodeUri": n.node_uri, "status": n.status.as_str(),
                       "priority": n.priority, "live": n.live, "epochSeen": n.epoch_seen,
                       "lastSeenAgeMs": crate::clock::millis(n.last_seen_age),
                       "stateSeq": n.state_seq, "lagEntries": lag(n.state_seq)})
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
        "{:<24} {:<12} {:>8} {:>6} {:<5} {:>10} {:>6}  uri",
        "node", "status", "priority", "epoch", "live", "seen", "lag"
    );
    for n in &plane.nodes {
        println!(
            "{:<24} {:<12} {:>8} {:>6} {:<5} {:>9.1}s {:>6}  {}",
            n.node_id,
            n.status.as_str(),
            n.priority,
            n.epoch_seen,
            n.live,
            n.last_seen_age.as_secs_f64(),
            lag(n.state_seq),
            n.node_uri
        );
    }
}

fn print_history(claims: &[ClaimInfo], as_json: bool) {
    if as_json {
        let claims: Vec<_> = claims
            .iter()
            .map(|c| {
                json!({"epoch": c.epoch, "nodeId": c.node_id, "nodeUri": c.node_uri,
                       "claimedAtMs": c.claimed_at_ms, "reason": c.reason})
            })
            .collect();
        println!("{}", json!({ "claims": claims }));
        return;
    }
    println!(
        "{:>6}  {:<24} {:<24} reason",
        "epoch", "master", "claimed (UTC)"
    );
    for claim in claims {
        let at = u64::try_from(claim.claimed_at_ms)
            .map(|ms| {
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            })
            .unwrap_or_default();
        println!(
            "{:>6}  {:<24} {:<24} {}",
            claim.epoch, claim.node_id, at, claim.reason
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
    let mut options = ConnectOptions::default().with_failover_timeout(args.timeout);
    if let Some(user) = &args.auth_user {
        let password = args.auth_password.clone().unwrap_or_default();
        options = options.with_credentials(Credentials::new(user, password));
    }
    if let Some(pem) = ca_pem {
        options = options.with_ca_pem(pem);
    }
    Client::connect(args.endpoint.clone(), options).await
}

/// Why a command did not run or failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Sdk(#[from] haplane_sdk::Error),
    #[error("{0}")]
    NotConfirmed(String),
    #[error("{0}")]
    Failed(String),
}

/// Asks before `change` unless `--yes`; refuses when it cannot ask (no terminal).
fn confirm(args: &HaArgs, change: &str) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if args.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::NotConfirmed(format!(
            "{change}: not confirmed; pass --yes to confirm without a terminal"
        )));
    }
    eprint!("{change}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::NotConfirmed(format!("{change}: cancelled")))
    }
}

/// Waits until the plane's master is `node_id`, within the client's timeout.
async fn wait_for_master_named(
    client: &Client,
    node_id: &str,
    timeout: Duration,
) -> Result<MasterView, CliError> {
    let mut views = client.watch_master();
    let found = tokio::time::timeout(timeout, async {
        loop {
            if let Some(view) = views.borrow_and_update().as_ref()
                && view.master_id() == node_id
            {
                return Some(view.clone());
            }
            if views.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    found.ok().flatten().ok_or_else(|| {
        CliError::Failed(format!(
            "{node_id} did not become master within {timeout:?}"
        ))
    })
}

async fn run_command(args: HaArgs) -> Result<(), CliError> {
    let client = connect(&args).await?;
    let as_json = args.json || args.output == Output::Json;
    match &args.command {
        HaCommand::State => print_state(&client.get_state().await?, as_json),
        HaCommand::States => print_plane(&client.list_states().await?, as_json),
        HaCommand::SetState { mode } => {
            confirm(&args, &format!("set the master's mode to {mode}"))?;
            let previous = client.set_state(*mode).await?;
            print_either(
                as_json,
                json!({"previousState": previous.as_str()}),
                format!("previous state {previous}"),
            );
        }
        HaCommand::Priority { priority: None, .. } => {
            let state = client.get_state().await?;
            print_either(as_json, json!({"priority": state.priority}), state.priority);
        }
        HaCommand::Priority {
            priority: Some(priority),
            node,
        } => {
            let previous = match &node {
                Some(node) => {
                    confirm(&args, &format!("set {node}'s priority to {priority}"))?;
                    client.set_priority_of(node, *priority).await?
                }
                None => {
                    confirm(&args, &format!("set the master's priority to {priority}"))?;
                    client.set_priority(*priority).await?
                }
            };
            print_either(
                as_json,
                json!({"previousPriority": previous}),
                format!("previous priority {previous}"),
            );
        }
        HaCommand::History { limit } => print_history(&client.history(*limit).await?, as_json),
        HaCommand::Promote { node_id } => {
            confirm(&args, &format!("promote {node_id} to master"))?;
            let previous = client.set_state_of(node_id, HaMode::Master).await?;
            let view = wait_for_master_named(&client, node_id, args.timeout).await?;
            print_either(
                as_json,
                json!({"previousState": previous.as_str(), "epoch": view.epoch, "masterId": node_id}),
                format!(
                    "{node_id} (was {previous}) is master in epoch {}",
                    view.epoch
                ),
            );
        }
        HaCommand::Switchover { to } => {
            let current = client.wait_for_master(args.timeout).await?;
            if current.master_id() == to {
                return Err(CliError::Failed(format!("{to} is already master")));
            }
            confirm(
                &args,
                &format!("switch the master from {} to {to}", current.master_id()),
            )?;
            client.set_state_of(to, HaMode::Master).await?;
            let view = wait_for_master_named(&client, to, args.timeout).await?;
            print_either(
                as_json,
                json!({"from": current.master_id(), "to": to, "epoch": view.epoch}),
                format!(
                    "master moved from {} to {to} (epoch {})",
                    current.master_id(),
                    view.epoch
                ),
            );
        }
        HaCommand::Demote { node_id, to } => {
            confirm(&args, &format!("set {node_id}'s mode to {to}"))?;
            let previous = client.set_state_of(node_id, *to).await?;
            print_either(
                as_json,
                json!({"previousState": previous.as_str()}),
                format!("{node_id} was {previous}"),
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
