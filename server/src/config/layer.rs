//! The one definition of the node's settings as given: `LaunchArgs`, read by clap from flags and
//! `HAPLANE_*` variables and by serde from the TOML file, and the merge of those two layers.
//! Defaults and validation come after, in `Settings::load`.

use crate::node::PersistMode;
use clap::Args;
use haplane::{HaMode, NodeId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_mode(text: &str) -> Result<HaMode, String> {
    text.parse::<HaMode>().map_err(|err| err.reason)
}

fn parse_node_id(text: &str) -> Result<NodeId, String> {
    NodeId::parse(text).map_err(|err| err.reason)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("{text:?}: {err} (e.g. 500ms, 10s)"))
}

/// The file's values are text parsed as the flags are, so a value means the same in both.
mod text {
    use serde::{Deserialize, Deserializer};

    fn parsed<'de, D: Deserializer<'de>, T>(
        deserializer: D,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }

    pub(super) fn duration<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        parsed(deserializer, super::parse_duration)
    }

    pub(super) fn mode<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<haplane::HaMode>, D::Error> {
        parsed(deserializer, super::parse_mode)
    }

    pub(super) fn node_id<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<haplane::NodeId>, D::Error> {
        parsed(deserializer, super::parse_node_id)
    }

    pub(super) fn persist<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<crate::node::PersistMode>, D::Error> {
        parsed(deserializer, str::parse)
    }
}

/// Every node setting, once: `haplane launch` flags (and their `HAPLANE_*` variables) and the
/// TOML file's keys (the same names in snake_case). Every one is optional so that the file and the
/// defaults can fill in; `over` merges the two layers.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchArgs {
    /// HA mode: disabled, auto, master, standby, hot-standby, hot-backup.
    #[arg(long, env = "HAPLANE_HA_MODE", value_parser = parse_mode)]
    #[serde(default, deserialize_with = "text::mode")]
    pub ha_mode: Option<HaMode>,
    /// Persistence mode: disabled, auto, rebind, clean.
    #[arg(long, env = "HAPLANE_PERSIST")]
    #[serde(default, deserialize_with = "text::persist")]
    pub persist: Option<PersistMode>,
    /// Directory store (local disk or NFS). Default ./haplane-data.
    #[arg(
        long,
        env = "HAPLANE_PERSISTENCE_DIR",
        conflicts_with = "persistence_location"
    )]
    pub persistence_dir: Option<PathBuf>,
    /// S3 store: s3://BUCKET/PREFIX.
    #[arg(long, env = "HAPLANE_PERSISTENCE_LOCATION")]
    pub persistence_location: Option<String>,
    /// S3-compatible endpoint (else AWS_ENDPOINT_URL, else AWS).
    #[arg(long, env = "HAPLANE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (most S3-compatible servers need it).
    #[arg(long, env = "HAPLANE_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// Start a directory store on an NFS mount whose lookup cache may hide new claims
    /// (lookupcache=all, the default) anyway. Unsafe: two nodes may act as master.
    #[arg(long, env = "HAPLANE_ACCEPT_NFS_LOOKUP_CACHE_RISK")]
    #[serde(default)]
    pub accept_nfs_lookup_cache_risk: bool,
    /// Listening address for gRPC and REST. Default 127.0.0.1:8081.
    #[arg(long, env = "HAPLANE_BIND")]
    pub bind: Option<SocketAddr>,
    /// URI other nodes and clients are told. Default http://<bound address>.
    #[arg(long, env = "HAPLANE_ADVERTISE_URI")]
    pub advertise_uri: Option<String>,
    /// Node id, [A-Za-z0-9_-]{1,64}. Default <hostname>-<port>, stable across restarts.
    #[arg(long, env = "HAPLANE_NODE_ID", value_parser = parse_node_id)]
    #[serde(default, deserialize_with = "text::node_id")]
    pub node_id: Option<NodeId>,
    /// Election priority (higher wins). Default 0.
    #[arg(long, env = "HAPLANE_PRIORITY", allow_hyphen_values = true)]
    pub priority: Option<i64>,
    /// Heartbeat period. Default 1s.
    #[arg(long, env = "HAPLANE_POLL_PERIOD", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub poll_period: Option<Duration>,
    /// A peer is dead after this long without a heartbeat. Default 10s.
    #[arg(long, env = "HAPLANE_HEARTBEAT_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub heartbeat_timeout: Option<Duration>,
    /// A master stops acting this long before observers could time it out. Default
    /// min(2s, timeout/4).
    #[arg(long, env = "HAPLANE_SAFETY_MARGIN", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub safety_margin: Option<Duration>,
    /// TERMINATED and FAILED records older than this are deleted by the master. Default 24h.
    #[arg(long, env = "HAPLANE_RECORD_RETENTION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub record_retention: Option<Duration>,
    /// The master writes a managed-state snapshot after at most this many log entries (sooner
    /// when the log since the last one reaches half its size, and 4 MiB). Default 10000.
    #[arg(long, env = "HAPLANE_STATE_SNAPSHOT_EVERY")]
    pub state_snapshot_every: Option<u64>,
    /// Managed-state snapshots kept by compaction (the newest ones). Default 1.
    #[arg(long, env = "HAPLANE_STATE_SNAPSHOTS_KEPT")]
    pub state_snapshots_kept: Option<usize>,
    /// Compaction deletes no snapshot younger than this, and no log entry until a snapshot
    /// covering it is this old: readers still loading an older snapshot have this long.
    /// Default 10s.
    #[arg(long, env = "HAPLANE_STATE_RETENTION_MIN_AGE", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub state_retention_min_age: Option<Duration>,
    /// The version this node reports (used by the election). Default the build's version.
    #[arg(long, env = "HAPLANE_NODE_VERSION")]
    pub node_version: Option<String>,
    /// Where to write the PID. Default ./pid.txt.
    #[arg(long, env = "HAPLANE_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "HAPLANE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Require HTTP Basic credentials (REST) / `authorization` metadata (gRPC) for this user.
    #[arg(long, env = "HAPLANE_AUTH_USER")]
    pub auth_user: Option<String>,
    /// The password of --auth-user (prefer HAPLANE_AUTH_PASSWORD: flags show in `ps`).
    #[arg(long, env = "HAPLANE_AUTH_PASSWORD", hide_env_values = true)]
    #[serde(skip)]
    pub auth_password: Option<String>,
    /// A file of `user:password` lines (mode 0600), instead of or besides --auth-user.
    #[arg(long, env = "HAPLANE_AUTH_USERS_FILE")]
    pub auth_users_file: Option<PathBuf>,
    /// Require credentials for the health checks too (open by default for load balancers).
    #[arg(long, env = "HAPLANE_AUTH_HEALTH")]
    #[serde(default)]
    pub auth_health: bool,
    /// A file (mode 0600) holding the secret nodes present to each other (user `haplane-peer`)
    /// instead of the first operator user; it opens only `Nudge` and `StepDown`. The same file on
    /// every node. Needs --auth-user or --auth-users-file.
    #[arg(long, env = "HAPLANE_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS and gRPC over TLS (needs --tls-key).
    #[arg(long, env = "HAPLANE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HAPLANE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA this node trusts when it calls its peers. Default the --tls-cert file.
    #[arg(long, env = "HAPLANE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A TLS handshake, or a plain connection's first bytes (the whole HTTP/2 preface), must
    /// arrive within this. Default 10s.
    #[arg(long, env = "HAPLANE_HANDSHAKE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub handshake_timeout: Option<Duration>,
    /// An HTTP/1.1 request's head must arrive complete within this. Default 10s.
    #[arg(long, env = "HAPLANE_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub header_read_timeout: Option<Duration>,
    /// A request's body must arrive complete within this of its head (REST answers 408).
    /// Default 30s.
    #[arg(long, env = "HAPLANE_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub body_read_timeout: Option<Duration>,
    /// A connection with no request or stream open for this long is closed. Default 60s.
    #[arg(long, env = "HAPLANE_IDLE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "text::duration")]
    pub idle_timeout: Option<Duration>,
    /// Open connections past this are closed at once. Default the file-descriptor limit less
    /// a reserve for the store, peers and logs.
    #[arg(long, env = "HAPLANE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// HTTP/2 streams one connection may have open at once. Default 256.
    #[arg(long, env = "HAPLANE_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Open WatchMaster, SSE and entity Watch streams past this are refused (health watches get
    /// a sixteenth of it). Default 16384.
    #[arg(long, env = "HAPLANE_MAX_WATCHERS")]
    pub max_watchers: Option<usize>,
    /// Also accept requests addressed (Host / :authority) to this name, and changes from pages
    /// of this origin; repeatable or comma-separated. `*` turns the Host and Origin checks off
    /// (only behind a proxy that checks Host itself). IP addresses, names without a dot and the
    /// --advertise-uri host are always accepted.
    #[arg(
        long = "allowed-host",
        env = "HAPLANE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// TOML file with any of the settings above (snake_case keys; no passwords).
    #[arg(long, env = "HAPLANE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl LaunchArgs {
    /// These settings (flags and variables) over `file`'s: a setting given here wins; a switch is
    /// on if either turns it on; a list given here replaces the file's.
    pub fn over(self, file: LaunchArgs) -> LaunchArgs {
        LaunchArgs {
            ha_mode: self.ha_mode.or(file.ha_mode),
            persist: self.persist.or(file.persist),
            persistence_dir: self.persistence_dir.or(file.persistence_dir),
            persistence_location: self.persistence_location.or(file.persistence_location),
            s3_endpoint: self.s3_endpoint.or(file.s3_endpoint),
            s3_path_style: self.s3_path_style.or(file.s3_path_style),
            accept_nfs_lookup_cache_risk: self.accept_nfs_lookup_cache_risk
                || file.accept_nfs_lookup_cache_risk,
            bind: self.bind.or(file.bind),
            advertise_uri: self.advertise_uri.or(file.advertise_uri),
            node_id: self.node_id.or(file.node_id),
            priority: self.priority.or(file.priority),
            poll_period: self.poll_period.or(file.poll_period),
            heartbeat_timeout: self.heartbeat_timeout.or(file.heartbeat_timeout),
            safety_margin: self.safety_margin.or(file.safety_margin),
            record_retention: self.record_retention.or(file.record_retention),
            state_snapshot_every: self.state_snapshot_every.or(file.state_snapshot_every),
            state_snapshots_kept: self.state_snapshots_kept.or(file.state_snapshots_kept),
            state_retention_min_age: self
                .state_retention_min_age
                .or(file.state_retention_min_age),
            node_version: self.node_version.or(file.node_version),
            pid_file: self.pid_file.or(file.pid_file),
            log_format: self.log_format.or(file.log_format),
            auth_user: self.auth_user.or(file.auth_user),
            auth_password: self.auth_password.or(file.auth_password),
            auth_users_file: self.auth_users_file.or(file.auth_users_file),
            auth_health: self.auth_health || file.auth_health,
            peer_secret_file: self.peer_secret_file.or(file.peer_secret_file),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: self.tls_ca.or(file.tls_ca),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout),
            header_read_timeout: self.header_read_timeout.or(file.header_read_timeout),
            body_read_timeout: self.body_read_timeout.or(file.body_read_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            max_connections: self.max_connections.or(file.max_connections),
            max_streams_per_connection: self
                .max_streams_per_connection
                .or(file.max_streams_per_connection),
            max_watchers: self.max_watchers.or(file.max_watchers),
            allowed_hosts: if self.allowed_hosts.is_empty() {
                file.allowed_hosts
            } else {
                self.allowed_hosts
            },
            // The file cannot name another file.
            config: self.config,
        }
    }
}
