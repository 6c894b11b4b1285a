//! Node settings: command-line flags over `HAPLANE_*` environment variables over a TOML file over
//! defaults, merged and validated once into `Settings`. `layer.rs` defines the settings as given
//! (one definition for flags and file); `limits.rs` and `secrets.rs` check their parts.

mod layer;
mod limits;
mod secrets;
#[cfg(test)]
mod tests;

pub use layer::{LaunchArgs, LogFormat};
pub use limits::ConnectionLimits;
pub use secrets::{AuthSettings, Secret, TlsSettings};

use crate::node::PersistMode;
use crate::state::compact::SnapshotPolicy;
use haplane::{HaMode, NodeId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the shared store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    None,
    Directory(PathBuf),
    S3 {
        location: String,
        endpoint: Option<String>,
        path_style: bool,
    },
}

/// Validated settings of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ha_mode: HaMode,
    pub persist: PersistMode,
    pub store: StoreLocation,
    /// Keep a directory store on an NFS mount with an unsafe lookup cache anyway.
    pub accept_nfs_lookup_cache_risk: bool,
    pub bind: SocketAddr,
    /// `None`: derived from the bound address once listening.
    pub advertise_uri: Option<String>,
    /// `None`: derived from hostname and bound port once listening.
    pub node_id: Option<NodeId>,
    pub priority: i64,
    pub poll_period: Duration,
    pub heartbeat_timeout: Duration,
    pub safety_margin: Duration,
    pub record_retention: Duration,
    /// Managed-state snapshots and compaction.
    pub state_snapshots: SnapshotPolicy,
    pub node_version: String,
    pub pid_file: PathBuf,
    pub log_format: LogFormat,
    /// `None`: no credentials needed.
    pub auth: Option<AuthSettings>,
    /// `None`: plain HTTP/2 and HTTP/1.1.
    pub tls: Option<TlsSettings>,
    pub limits: ConnectionLimits,
    /// Extra Host names (and origins) accepted; `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Files holding secrets (users file, TLS key), checked for group or world access at start.
    pub secret_files: Vec<PathBuf>,
}

/// A setting that is wrong; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

fn config_error(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

fn read_file(flag: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|err| config_error(flag, format!("{}: {err}", path.display())))
}

/// Where the store is: none when persistence is off, else S3 or a directory (the default).
/// The snapshot and compaction settings; at least one snapshot is kept.
fn state_snapshots(given: &LaunchArgs) -> Result<SnapshotPolicy, ConfigError> {
    let defaults = SnapshotPolicy::default();
    let every_entries = given.state_snapshot_every.unwrap_or(defaults.every_entries);
    if every_entries == 0 {
        return Err(config_error(
            "--state-snapshot-every",
            "must be at least 1 log entry",
        ));
    }
    let snapshots_kept = given
        .state_snapshots_kept
        .unwrap_or(defaults.snapshots_kept);
    if snapshots_kept == 0 {
        return Err(config_error(
            "--state-snapshots-kept",
            "must be at least 1 (the newest snapshot replaces the log before it)",
        ));
    }
    Ok(SnapshotPolicy {
        every_entries,
        snapshots_kept,
        min_age: given.state_retention_min_age.unwrap_or(defaults.min_age),
    })
}

fn store_location(persist: PersistMode, given: &LaunchArgs) -> Result<StoreLocation, ConfigError> {
    let location = given.persistence_location.clone();
    let directory = given.persistence_dir.clone();
    Ok(match (persist, location, directory) {
        (PersistMode::Disabled, _, _) => StoreLocation::None,
        (_, Some(_), Some(_)) => {
            return Err(config_error(
                "persistence-location",
                "give either --persistence-dir or --persistence-location, not both",
            ));
        }
        (_, Some(location), None) => {
            if !location.starts_with("s3://") {
                return Err(config_error(
                    "persistence-location",
                    format!("{location:?} must look like s3://BUCKET/PREFIX"),
                ));
            }
            StoreLocation::S3 {
                location,
                endpoint: given.s3_endpoint.clone(),
                path_style: given.s3_path_style.unwrap_or(true),
            }
        }
        (_, None, directory) => {
            StoreLocation::Directory(directory.unwrap_or_else(|| PathBuf::from("haplane-data")))
        }
    })
}

/// Whether `uri`'s port, if it names one, is a port a client can connect to (1-65535): `http::Uri`
/// accepts any text after the host's `:`.
fn has_usable_port(uri: &http::Uri) -> bool {
    let authority = uri.authority().map_or("", http::uri::Authority::as_str);
    // An IPv6 host is bracketed; a port comes after the bracket.
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    after_host
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_ok_and(|port| port != 0))
}

impl Settings {
    /// Merges flags/env (`args`) over the config file over defaults, and validates.
    pub fn load(args: LaunchArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            None => LaunchArgs::default(),
            Some(path) => {
                let text = read_file("config", path)?;
                toml::from_str(&text)
                    .map_err(|err| config_error("config", format!("{}: {err}", path.display())))?
            }
        };
        let given = args.over(file);
        let limits = ConnectionLimits::load(&given)?;
        let persist = given.persist.unwrap_or(PersistMode::Auto);
        let heartbeat_timeout = given.heartbeat_timeout.unwrap_or(Duration::from_secs(10));
        let secret_files = given
            .auth_users_file
            .iter()
            .chain(&given.peer_secret_file)
            .chain(&given.tls_key)
            .cloned()
            .collect();
        let state_snapshots = state_snapshots(&given)?;
        let settings = Settings {
            ha_mode: given.ha_mode.unwrap_or(HaMode::Auto),
            persist,
            store: store_location(persist, &given)?,
            accept_nfs_lookup_cache_risk: given.accept_nfs_lookup_cache_risk,
            bind: given
                .bind
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
            advertise_uri: given.advertise_uri,
            node_id: given.node_id,
            priority: given.priority.unwrap_or(0),
            poll_period: given.poll_period.unwrap_or(Duration::from_secs(1)),
            heartbeat_timeout,
            safety_margin: given
                .safety_margin
                .unwrap_or_else(|| Duration::from_secs(2).min(heartbeat_timeout / 4)),
            record_retention: given
                .record_retention
                .unwrap_or(Duration::from_secs(24 * 3600)),
            state_snapshots,
            node_version: given
                .node_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            pid_file: given.pid_file.unwrap_or_else(|| PathBuf::from("pid.txt")),
            log_format: given.log_format.unwrap_or(LogFormat::Text),
            auth: secrets::load_auth(
                given.auth_user,
                given.auth_password.map(Secret::new),
                given.auth_users_file,
                given.auth_health,
                given.peer_secret_file,
            )?,
            tls: secrets::load_tls(given.tls_cert, given.tls_key, given.tls_ca)?,
            limits,
            allowed_hosts: given.allowed_hosts,
            secret_files,
        };
        settings.validate()
    }

    /// Peers and clients are told the advertised URI, so it must name an address they can
    /// reach: an unspecified one (0.0.0.0, ::) would mean their own host. Binding one is fine,
    /// with an explicit `--advertise-uri`.
    fn check_advertised_address(&self) -> Result<(), ConfigError> {
        let advertised_host = match &self.advertise_uri {
            // `validate` has checked the scheme and trimmed trailing `/`.
            Some(uri) => match uri.parse::<http::Uri>() {
                Ok(parsed)
                    if parsed.path() == "/"
                        && parsed.query().is_none()
                        && has_usable_port(&parsed) =>
                {
                    parsed
                        .host()
                        .filter(|host| !host.is_empty())
                        .map(|host| host.trim_matches(['[', ']']).to_owned())
                        .ok_or_else(|| {
                            config_error("advertise-uri", format!("{uri:?} names no host"))
                        })?
                }
                _ => {
                    return Err(config_error(
                        "advertise-uri",
                        format!("{uri:?} is not of the form http(s)://host[:port]"),
                    ));
                }
            },
            None if self.bind.ip().is_unspecified() => {
                return Err(config_error(
                    "advertise-uri",
                    format!(
                        "--bind {} listens on every address, and peers and clients must be told \
                         one they can reach: set --advertise-uri (e.g. http://<this host's name>:{})",
                        self.bind,
                        self.bind.port()
                    ),
                ));
            }
            None => return Ok(()),
        };
        match advertised_host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => Err(config_error(
                "advertise-uri",
                format!(
                    "{advertised_host} is not an address peers and clients can reach; name this host"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn validate(mut self) -> Result<Self, ConfigError> {
        // Bounds first, so that the arithmetic below and in the node cannot overflow.
        if self.poll_period < Duration::from_millis(10)
            || self.poll_period > Duration::from_secs(3600)
        {
            return Err(config_error("poll-period", "must be between 10ms and 1h"));
        }
        if self.heartbeat_timeout > Duration::from_secs(24 * 3600) {
            return Err(config_error("heartbeat-timeout", "must be at most 24h"));
        }
        if self.heartbeat_timeout < self.poll_period * 2 {
            return Err(config_error(
                "heartbeat-timeout",
                format!(
                    "{} must be at least twice --poll-period ({})",
                    humantime::format_duration(self.heartbeat_timeout),
                    humantime::format_duration(self.poll_period)
                ),
            ));
        }
        if self.safety_margin >= self.heartbeat_timeout / 2 {
            return Err(config_error(
                "safety-margin",
                "must be less than half of --heartbeat-timeout",
            ));
        }
        if self.node_version.is_empty() || self.node_version.len() > 64 {
            return Err(config_error("node-version", "must be 1 to 64 characters"));
        }
        for name in &mut self.allowed_hosts {
            *name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() || name.contains(|c: char| c == '/' || c.is_whitespace()) {
                return Err(config_error(
                    "allowed-host",
                    "each entry must be a host name, an address or *",
                ));
            }
        }
        if let Some(uri) = &self.advertise_uri
            && !(uri.starts_with("http://") || uri.starts_with("https://"))
        {
            return Err(config_error(
                "advertise-uri",
                format!("{uri:?} must start with http:// or https://"),
            ));
        }
        // One spelling per endpoint: peers and clients key members by URI, and
        // `http://a:8081/` names the same node as `http://a:8081`.
        if let Some(uri) = &mut self.advertise_uri {
            uri.truncate(uri.trim_end_matches('/').len());
        }
        self.check_advertised_address()?;
        match (self.persist, self.ha_mode) {
            (PersistMode::Disabled, HaMode::Auto) => self.ha_mode = HaMode::Disabled,
            (PersistMode::Disabled, HaMode::Disabled) => {}
            (PersistMode::Disabled, mode) => {
                return Err(config_error(
                    "ha-mode",
                    format!("{mode} needs a store, but --persist is disabled"),
                ));
            }
            (PersistMode::Clean, HaMode::Standby | HaMode::HotStandby | HaMode::HotBackup) => {
                return Err(config_error(
                    "persist",
                    format!(
                        "clean would wipe the state that --ha-mode {} must follow",
                        self.ha_mode
                    ),
                ));
            }
            _ => {}
        }
        Ok(self)
    }
}
