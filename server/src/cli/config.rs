//! `haplane config check`: the settings a node would run with, each with where it came from
//! (command line, environment, config file, default), checked exactly as `launch` checks them.
//! Exit 0 when they are valid, 2 naming the setting when not.

use crate::config::{LaunchArgs, Settings};
use clap::parser::ValueSource;
use std::process::ExitCode;

/// Where each launch setting came from: `matches` are the parsed `config check` arguments.
fn sources(matches: &clap::ArgMatches, args: &LaunchArgs) -> Result<Vec<Row>, String> {
    let file: toml::Table = match &args.config {
        None => toml::Table::new(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("--config {}: {err}", path.display()))?
            .parse()
            .map_err(|err| format!("--config {}: {err}", path.display()))?,
    };
    let command = <LaunchArgs as clap::Args>::augment_args(clap::Command::new("launch"));
    let mut rows = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let secret = id.contains("password");
        let given = matches.get_raw(id).map(|values| {
            values
                .map(|value| value.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        let (source, value) = match (matches.value_source(id), file.get(id)) {
            (Some(ValueSource::CommandLine), _) => ("command line", given),
            (Some(ValueSource::EnvVariable), _) => ("environment", given),
            (_, Some(value)) => ("config file", Some(value.to_string())),
            _ => ("default", None),
        };
        let value = match value {
            Some(_) if secret => "***".to_owned(),
            Some(value) => value,
            None => "-".to_owned(),
        };
        rows.push(Row {
            setting: id.to_owned(),
            source,
            value,
        });
    }
    Ok(rows)
}

struct Row {
    setting: String,
    source: &'static str,
    value: String,
}

/// Prints the sources and the effective settings; exit 2 on a problem.
pub fn check(matches: &clap::ArgMatches, args: LaunchArgs) -> ExitCode {
    let rows = match sources(matches, &args) {
        Ok(rows) => rows,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    println!("{:<36} {:<13} given", "setting", "source");
    for row in rows.iter().filter(|row| row.source != "default") {
        println!("{:<36} {:<13} {}", row.setting, row.source, row.value);
    }
    let defaults: Vec<&str> = rows
        .iter()
        .filter(|row| row.source == "default")
        .map(|row| row.setting.as_str())
        .collect();
    println!("defaults: {}", defaults.join(", "));
    let settings = match Settings::load(args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    println!("effective:");
    let effective = [
        ("ha_mode", settings.ha_mode.to_string()),
        ("persist", format!("{:?}", settings.persist)),
        ("store", format!("{:?}", settings.store)),
        ("bind", settings.bind.to_string()),
        (
            "advertise_uri",
            settings
                .advertise_uri
                .clone()
                .unwrap_or_else(|| "(from the bound address)".to_owned()),
        ),
        (
            "node_id",
            settings
                .node_id
                .as_ref()
                .map_or_else(|| "(hostname-port)".to_owned(), ToString::to_string),
        ),
        ("priority", settings.priority.to_string()),
        ("poll_period", humantime(settings.poll_period)),
        ("heartbeat_timeout", humantime(settings.heartbeat_timeout)),
        ("safety_margin", humantime(settings.safety_margin)),
        ("record_retention", humantime(settings.record_retention)),
        ("state_snapshots", format!("{:?}", settings.state_snapshots)),
        ("auth", on_off(settings.auth.is_some())),
        ("tls", on_off(settings.tls.is_some())),
        ("limits", format!("{:?}", settings.limits)),
    ];
    for (name, value) in effective {
        println!("  {name:<20} {value}");
    }
    ExitCode::SUCCESS
}

fn humantime(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.to_owned()
}
