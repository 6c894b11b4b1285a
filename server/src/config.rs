//! Node settings: command-line flags over `HAPLANE_*` environment variables over a TOML file over
//! defaults, merged and validated once into `Settings`.

use clap::Args;
use haplane::{HaMode, NodeId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `--persist`: what to do with existing state at start-up (SPEC 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    Disabled,
    Auto,
    Rebind,
    Clean,
}

impl FromStr for PersistMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disabled" => Ok(Self::Disabled),
            "auto" => Ok(Self::Auto),
            "rebind" => Ok(Self::Rebind),
            "clean" => Ok(Self::Clean),
            _ => Err(format!(
                "{text:?} is not one of disabled, auto, rebind, clean"
            )),
        }
    }
}

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

/// `haplane launch` flags. Every one is optional so that the file and defaults can fill in.
#[derive(Debug, Clone, Default, Args)]
pub struct LaunchArgs {
    /// HA mode: disabled, auto, master, standby, hot-standby, hot-backup.
    #[arg(long, env = "HAPLANE_HA_MODE", value_parser = parse_mode)]
    pub ha_mode: Option<HaMode>,
    /// Persistence mode: disabled, auto, rebind, clean.
    #[arg(long, env = "HAPLANE_PERSIST")]
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
    pub accept_nfs_lookup_cache_risk: bool,
    /// Listening address for gRPC and REST. Default 127.0.0.1:8081.
    #[arg(long, env = "HAPLANE_BIND")]
    pub bind: Option<SocketAddr>,
    /// URI other nodes and clients are told. Default http://<bound address>.
    #[arg(long, env = "HAPLANE_ADVERTISE_URI")]
    pub advertise_uri: Option<String>,
    /// Node id, [A-Za-z0-9_-]{1,64}. Default <hostname>-<port>, stable across restarts.
    #[arg(long, env = "HAPLANE_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<NodeId>,
    /// Election priority (higher wins). Default 0.
    #[arg(long, env = "HAPLANE_PRIORITY", allow_hyphen_values = true)]
    pub priority: Option<i64>,
    /// Heartbeat period. Default 1s.
    #[arg(long, env = "HAPLANE_POLL_PERIOD", value_parser = parse_duration)]
    pub poll_period: Option<Duration>,
    /// A peer is dead after this long without a heartbeat. Default 10s.
    #[arg(long, env = "HAPLANE_HEARTBEAT_TIMEOUT", value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// A master stops acting this long before observers could time it out. Default
    /// min(2s, timeout/4).
    #[arg(long, env = "HAPLANE_SAFETY_MARGIN", value_parser = parse_duration)]
    pub safety_margin: Option<Duration>,
    /// TERMINATED and FAILED records older than this are deleted by the master. Default 24h.
    #[arg(long, env = "HAPLANE_RECORD_RETENTION", value_parser = parse_duration)]
    pub record_retention: Option<Duration>,
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
    pub auth_password: Option<String>,
    /// A file of `user:password` lines (mode 0600), instead of or besides --auth-user.
    #[arg(long, env = "HAPLANE_AUTH_USERS_FILE")]
    pub auth_users_file: Option<PathBuf>,
    /// Require credentials for the health checks too (open by default for load balancers).
    #[arg(long, env = "HAPLANE_AUTH_HEALTH")]
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
    pub handshake_timeout: Option<Duration>,
    /// An HTTP/1.1 request's head must arrive complete within this. Default 10s.
    #[arg(long, env = "HAPLANE_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub header_read_timeout: Option<Duration>,
    /// A request's body must arrive complete within this of its head (REST answers 408).
    /// Default 30s.
    #[arg(long, env = "HAPLANE_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub body_read_timeout: Option<Duration>,
    /// A connection with no request or stream open for this long is closed. Default 60s.
    #[arg(long, env = "HAPLANE_IDLE_TIMEOUT", value_parser = parse_duration)]
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
    pub allowed_hosts: Vec<String>,
    /// TOML file with any of the settings above (snake_case keys; no passwords).
    #[arg(long, env = "HAPLANE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The TOML config file: the same keys as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    ha_mode: Option<String>,
    persist: Option<String>,
    persistence_dir: Option<PathBuf>,
    persistence_location: Option<String>,
    s3_endpoint: Option<String>,
    s3_path_style: Option<bool>,
    accept_nfs_lookup_cache_risk: Option<bool>,
    bind: Option<SocketAddr>,
    advertise_uri: Option<String>,
    node_id: Option<String>,
    priority: Option<i64>,
    poll_period: Option<String>,
    heartbeat_timeout: Option<String>,
    safety_margin: Option<String>,
    record_retention: Option<String>,
    node_version: Option<String>,
    pid_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    auth_user: Option<String>,
    auth_users_file: Option<PathBuf>,
    auth_health: Option<bool>,
    peer_secret_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_streams_per_connection: Option<u32>,
    max_watchers: Option<usize>,
    allowed_hosts: Option<Vec<String>>,
}

/// A password or private key: kept out of `Debug` output, so out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who may call the node (SPEC 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// `(user, password)` pairs; without a peer secret the first is also what this node
    /// presents to its peers.
    pub users: Vec<(String, Secret)>,
    /// Whether the health checks need credentials too.
    pub protect_health: bool,
    /// What nodes present to each other (as user `haplane-peer`) instead of the first user.
    pub peer_secret: Option<Secret>,
}

/// The node's TLS identity, read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_pem: String,
    pub key_pem: Secret,
    /// What the node trusts when it calls peers.
    pub peer_ca_pem: String,
}

/// How long a connection may sit in each state, and how many connections, streams and watches
/// may be open: no client can hold the node's descriptors or memory forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: derived from the file-descriptor limit at start-up.
    pub max_connections: Option<usize>,
    pub max_streams_per_connection: u32,
    pub max_watchers: usize,
}

impl ConnectionLimits {
    fn load(args: &LaunchArgs, file: &FileSettings) -> Result<Self, ConfigError> {
        let duration = |flag, given: Option<Duration>, in_file: &Option<String>, default| {
            let value = match given {
                Some(value) => value,
                None => from_file(flag, in_file.clone(), parse_duration)?.unwrap_or(default),
            };
            if value < Duration::from_millis(10) || value > Duration::from_secs(3600) {
                return Err(config_error(flag, "must be between 10ms and 1h"));
            }
            Ok(value)
        };
        let limits = Self {
            handshake_timeout: duration(
                "handshake-timeout",
                args.handshake_timeout,
                &file.handshake_timeout,
                Duration::from_secs(10),
            )?,
            header_read_timeout: duration(
                "header-read-timeout",
                args.header_read_timeout,
                &file.header_read_timeout,
                Duration::from_secs(10),
            )?,
            body_read_timeout: duration(
                "body-read-timeout",
                args.body_read_timeout,
                &file.body_read_timeout,
                Duration::from_secs(30),
            )?,
            idle_timeout: duration(
                "idle-timeout",
                args.idle_timeout,
                &file.idle_timeout,
                Duration::from_secs(60),
            )?,
            max_connections: args.max_connections.or(file.max_connections),
            max_streams_per_connection: args
                .max_streams_per_connection
                .or(file.max_streams_per_connection)
                .unwrap_or(256),
            max_watchers: args.max_watchers.or(file.max_watchers).unwrap_or(16_384),
        };
        if limits.max_connections == Some(0) {
            return Err(config_error("max-connections", "must be at least 1"));
        }
        if limits.max_streams_per_connection == 0 {
            return Err(config_error(
                "max-streams-per-connection",
                "must be at least 1",
            ));
        }
        if limits.max_watchers == 0 {
            return Err(config_error("max-watchers", "must be at least 1"));
        }
        Ok(limits)
    }
}

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

fn from_file<T>(
    flag: &'static str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    value
        .map(|text| {
            parse(&text).map_err(|msg| config_error(flag, format!("in config file: {msg}")))
        })
        .transpose()
}

fn read_file(flag: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|err| config_error(flag, format!("{}: {err}", path.display())))
}

/// `user:password` lines; blank lines and `#` comments are skipped. Errors name the line, never
/// its content (it holds a password).
fn parse_users_file(text: &str) -> Result<Vec<(String, Secret)>, String> {
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                users.push((user.to_owned(), Secret::new(password)));
            }
            _ => return Err(format!("line {} is not user:password", index + 1)),
        }
    }
    if users.is_empty() {
        return Err("no user:password lines".to_owned());
    }
    Ok(users)
}

/// The shortest peer secret accepted.
const MIN_PEER_SECRET: usize = 16;

fn load_auth(
    user: Option<String>,
    password: Option<Secret>,
    users_file: Option<PathBuf>,
    protect_health: bool,
    peer_secret_file: Option<PathBuf>,
) -> Result<Option<AuthSettings>, ConfigError> {
    let mut users = Vec::new();
    match (user, password) {
        (Some(user), Some(password)) => {
            if user.is_empty() || user.contains(':') {
                return Err(config_error(
                    "auth-user",
                    "must be non-empty and without ':'",
                ));
            }
            if password.expose().is_empty() {
                return Err(config_error("auth-password", "must not be empty"));
            }
            users.push((user, password));
        }
        (Some(_), None) => {
            return Err(config_error(
                "auth-password",
                "--auth-user needs --auth-password or HAPLANE_AUTH_PASSWORD",
            ));
        }
        (None, Some(_)) => {
            return Err(config_error(
                "auth-user",
                "--auth-password needs --auth-user",
            ));
        }
        (None, None) => {}
    }
    if let Some(path) = users_file {
        let text = read_file("auth-users-file", &path)?;
        let listed = parse_users_file(&text).map_err(|message| {
            config_error("auth-users-file", format!("{}: {message}", path.display()))
        })?;
        users.extend(listed);
    }
    if users.is_empty() {
        return match (protect_health, peer_secret_file) {
            (true, _) => Err(config_error(
                "auth-health",
                "needs --auth-user or --auth-users-file",
            )),
            (false, Some(_)) => Err(config_error(
                "peer-secret-file",
                "needs --auth-user or --auth-users-file",
            )),
            (false, None) => Ok(None),
        };
    }
    let peer_secret = match peer_secret_file {
        None => None,
        Some(path) => {
            let text = read_file("peer-secret-file", &path)?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.chars().count() < MIN_PEER_SECRET
                || secret.contains(['\r', '\n'])
                || secret.trim() != secret
            {
                return Err(config_error(
                    "peer-secret-file",
                    format!(
                        "{}: must hold one line of at least {MIN_PEER_SECRET} characters, without surrounding spaces",
                        path.display()
                    ),
                ));
            }
            if users
                .iter()
                .any(|(user, _)| user == haplane::wire::PEER_USER)
            {
                return Err(config_error(
                    "peer-secret-file",
                    format!(
                        "the user name {} is kept for peers when a peer secret is set",
                        haplane::wire::PEER_USER
                    ),
                ));
            }
            Some(Secret::new(secret))
        }
    };
    Ok(Some(AuthSettings {
        users,
        protect_health,
        peer_secret,
    }))
}

fn load_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsSettings>, ConfigError> {
    match (cert, key) {
        (None, None) if ca.is_none() => Ok(None),
        (None, None) => Err(config_error("tls-ca", "needs --tls-cert and --tls-key")),
        (Some(_), None) => Err(config_error("tls-key", "--tls-cert needs --tls-key")),
        (None, Some(_)) => Err(config_error("tls-cert", "--tls-key needs --tls-cert")),
        (Some(cert), Some(key)) => {
            let cert_pem = read_file("tls-cert", &cert)?;
            if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(config_error(
                    "tls-cert",
                    format!("{}: no PEM certificate in it", cert.display()),
                ));
            }
            let key_pem = read_file("tls-key", &key)?;
            if !key_pem.contains("PRIVATE KEY-----") {
                return Err(config_error(
                    "tls-key",
                    format!("{}: no PEM private key in it", key.display()),
                ));
            }
            let peer_ca_pem = match ca {
                Some(ca) => read_file("tls-ca", &ca)?,
                None => cert_pem.clone(),
            };
            Ok(Some(TlsSettings {
                cert_pem,
                key_pem: Secret::new(key_pem),
                peer_ca_pem,
            }))
        }
    }
}

impl Settings {
    /// Merges flags/env (`args`) over the config file over defaults, and validates.
    pub fn load(args: LaunchArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            None => FileSettings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| config_error("config", format!("{}: {err}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|err| config_error("config", format!("{}: {err}", path.display())))?
            }
        };
        let limits = ConnectionLimits::load(&args, &file)?;
        let ha_mode = args
            .ha_mode
            .or(from_file("ha-mode", file.ha_mode, parse_mode)?)
            .unwrap_or(HaMode::Auto);
        let persist = args
            .persist
            .or(from_file("persist", file.persist, |t| t.parse())?)
            .unwrap_or(PersistMode::Auto);
        let poll_period = args
            .poll_period
            .or(from_file("poll-period", file.poll_period, parse_duration)?)
            .unwrap_or(Duration::from_secs(1));
        let heartbeat_timeout = args
            .heartbeat_timeout
            .or(from_file(
                "heartbeat-timeout",
                file.heartbeat_timeout,
                parse_duration,
            )?)
            .unwrap_or(Duration::from_secs(10));
        let safety_margin = args
            .safety_margin
            .or(from_file(
                "safety-margin",
                file.safety_margin,
                parse_duration,
            )?)
            .unwrap_or_else(|| Duration::from_secs(2).min(heartbeat_timeout / 4));
        let record_retention = args
            .record_retention
            .or(from_file(
                "record-retention",
                file.record_retention,
                parse_duration,
            )?)
            .unwrap_or(Duration::from_secs(24 * 3600));
        let node_id = args
            .node_id
            .or(from_file("node-id", file.node_id, parse_node_id)?);
        let location = args.persistence_location.or(file.persistence_location);
        let directory = args.persistence_dir.or(file.persistence_dir);
        let store = match (persist, location, directory) {
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
                    endpoint: args.s3_endpoint.or(file.s3_endpoint),
                    path_style: args.s3_path_style.or(file.s3_path_style).unwrap_or(true),
                }
            }
            (_, None, directory) => {
                StoreLocation::Directory(directory.unwrap_or_else(|| PathBuf::from("haplane-data")))
            }
        };
        let users_file = args.auth_users_file.or(file.auth_users_file);
        let peer_secret_file = args.peer_secret_file.or(file.peer_secret_file);
        let tls_key = args.tls_key.or(file.tls_key);
        let secret_files = users_file
            .iter()
            .chain(&peer_secret_file)
            .chain(&tls_key)
            .cloned()
            .collect();
        let mut allowed_hosts = args.allowed_hosts;
        if allowed_hosts.is_empty() {
            allowed_hosts = file.allowed_hosts.unwrap_or_default();
        }
        let auth = load_auth(
            args.auth_user.or(file.auth_user),
            args.auth_password.map(Secret::new),
            users_file,
            args.auth_health || file.auth_health.unwrap_or(false),
            peer_secret_file,
        )?;
        let tls = load_tls(
            args.tls_cert.or(file.tls_cert),
            tls_key,
            args.tls_ca.or(file.tls_ca),
        )?;
        let settings = Settings {
            ha_mode,
            persist,
            store,
            accept_nfs_lookup_cache_risk: args.accept_nfs_lookup_cache_risk
                || file.accept_nfs_lookup_cache_risk.unwrap_or(false),
            bind: args
                .bind
                .or(file.bind)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
            advertise_uri: args.advertise_uri.or(file.advertise_uri),
            node_id,
            priority: args.priority.or(file.priority).unwrap_or(0),
            poll_period,
            heartbeat_timeout,
            safety_margin,
            record_retention,
            node_version: args
                .node_version
                .or(file.node_version)
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            pid_file: args
                .pid_file
                .or(file.pid_file)
                .unwrap_or_else(|| PathBuf::from("pid.txt")),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            auth,
            tls,
            limits,
            allowed_hosts,
            secret_files,
        };
        settings.validate()
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        launch: LaunchArgs,
    }

    fn load(args: &[&str]) -> Result<Settings, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("haplane").chain(args.iter().copied()))
            .map_err(|err| config_error("cli", err.to_string()))?;
        Settings::load(cli.launch)
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = load(&[]).unwrap();
        assert_eq!(s.ha_mode, HaMode::Auto);
        assert_eq!(s.persist, PersistMode::Auto);
        assert_eq!(
            s.store,
            StoreLocation::Directory(PathBuf::from("haplane-data"))
        );
        assert_eq!(s.bind, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(s.poll_period, Duration::from_secs(1));
        assert_eq!(s.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!(s.safety_margin, Duration::from_secs(2));
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haplane.toml");
        std::fs::write(
            &file,
            "priority = 4\npoll_period = \"200ms\"\nha_mode = \"hot-standby\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = load(&["--config", path, "--priority", "-7"]).unwrap();
        assert_eq!(s.priority, -7);
        assert_eq!(s.poll_period, Duration::from_millis(200));
        assert_eq!(s.ha_mode, HaMode::HotStandby);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haplane.toml");
        std::fs::write(&file, "pol_period = \"1s\"\n").unwrap();
        let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("pol_period"), "{err}");
        std::fs::write(&file, "poll_period = \"soon\"\n").unwrap();
        let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert_eq!(err.flag, "poll-period");
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--heartbeat-timeout", "1s", "--poll-period", "800ms"],
                "heartbeat-timeout",
            ),
            (
                &["--persist", "disabled", "--ha-mode", "standby"],
                "ha-mode",
            ),
            (
                &["--persist", "clean", "--ha-mode", "hot_backup"],
                "persist",
            ),
            (&["--safety-margin", "6s"], "safety-margin"),
            (&["--advertise-uri", "ftp://x"], "advertise-uri"),
            (
                &["--persistence-location", "gs://b/p"],
                "persistence-location",
            ),
        ];
        for (args, flag) in cases {
            assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
        }
        assert!(load(&["--ha-mode", "primary"]).is_err());
        assert!(load(&["--node-id", "../x"]).is_err());
    }

    #[test]
    fn auth_and_tls_settings_are_checked_and_secrets_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, "# ops\nadmin:hunter2\n\nops:pa:ss\n").unwrap();
        let users = users.to_str().unwrap();
        let s = load(&["--auth-users-file", users, "--auth-health"]).unwrap();
        let auth = s.auth.clone().unwrap();
        assert_eq!(auth.users[1].0, "ops");
        assert_eq!(auth.users[1].1.expose(), "pa:ss");
        assert!(auth.protect_health);
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("pa:ss"),
            "{printed}"
        );

        let bad = dir.path().join("bad");
        std::fs::write(&bad, "admin:hunter2\njust-a-secret\n").unwrap();
        let err = load(&["--auth-users-file", bad.to_str().unwrap()]).unwrap_err();
        assert_eq!(err.flag, "auth-users-file");
        assert!(err.message.contains("line 2") && !err.message.contains("just-a-secret"));

        let cases: &[(&[&str], &str)] = &[
            (&["--auth-user", "admin"], "auth-password"),
            (&["--auth-password", "x"], "auth-user"),
            (&["--auth-user", "a:b", "--auth-password", "x"], "auth-user"),
            (&["--auth-health"], "auth-health"),
            (&["--tls-cert", users], "tls-key"),
            (&["--tls-key", users], "tls-cert"),
            (
                &["--tls-cert", "/nonexistent", "--tls-key", users],
                "tls-cert",
            ),
            (&["--tls-cert", users, "--tls-key", users], "tls-cert"),
        ];
        for (args, flag) in cases {
            assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
        }
        assert!(load(&[]).unwrap().auth.is_none());
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let s = load(&[]).unwrap();
        assert_eq!(s.limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.limits.max_connections, None);
        assert_eq!(s.limits.max_streams_per_connection, 256);
        assert_eq!(s.limits.max_watchers, 16_384);
        let s = load(&["--idle-timeout", "500ms", "--max-connections", "100"]).unwrap();
        assert_eq!(s.limits.idle_timeout, Duration::from_millis(500));
        assert_eq!(s.limits.max_connections, Some(100));
        let cases: &[(&[&str], &str)] = &[
            (&["--handshake-timeout", "1ms"], "handshake-timeout"),
            (&["--header-read-timeout", "2h"], "header-read-timeout"),
            (&["--body-read-timeout", "1ms"], "body-read-timeout"),
            (&["--max-connections", "0"], "max-connections"),
            (
                &["--max-streams-per-connection", "0"],
                "max-streams-per-connection",
            ),
            (&["--max-watchers", "0"], "max-watchers"),
        ];
        for (args, flag) in cases {
            assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
        }
    }

    #[test]
    fn a_peer_secret_needs_auth_and_one_long_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let good = write("peer", "0123456789abcdef-peer\n");
        let users = write("users", "admin:pw\n");
        let s = load(&["--auth-users-file", &users, "--peer-secret-file", &good]).unwrap();
        let auth = s.auth.unwrap();
        assert_eq!(
            auth.peer_secret.as_ref().map(Secret::expose),
            Some("0123456789abcdef-peer")
        );
        assert!(s.secret_files.contains(&PathBuf::from(&good)));
        let short = write("short", "tooshort\n");
        let two_lines = write("two", "0123456789abcdef\nsecond line\n");
        let spaces = write("spaces", "                    \n");
        let peer_user = write("peer-user", "haplane-peer:pw\n");
        let cases: &[&[&str]] = &[
            &["--peer-secret-file", &good],
            &["--auth-users-file", &users, "--peer-secret-file", &short],
            &[
                "--auth-users-file",
                &users,
                "--peer-secret-file",
                &two_lines,
            ],
            &["--auth-users-file", &users, "--peer-secret-file", &spaces],
            &["--auth-users-file", &peer_user, "--peer-secret-file", &good],
            &[
                "--auth-users-file",
                &users,
                "--peer-secret-file",
                "/nonexistent",
            ],
        ];
        for args in cases {
            assert_eq!(load(args).unwrap_err().flag, "peer-secret-file", "{args:?}");
        }
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haplane.toml");
        let s = load(&["--config", path]).unwrap();
        assert_eq!(
            s.store,
            StoreLocation::Directory(PathBuf::from("/var/lib/haplane"))
        );
        assert_eq!(s.log_format, LogFormat::Json);
        // Every commented-out example is a key the file may hold, with a value of its type.
        let text = std::fs::read_to_string(path).unwrap();
        let examples: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                line.split_once(" = ")
                    .is_some_and(|(key, _)| !key.contains(' '))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(examples.contains("body_read_timeout"), "{examples}");
        toml::from_str::<FileSettings>(&examples).unwrap_or_else(|err| panic!("{err}\n{examples}"));
    }

    #[test]
    fn persist_disabled_downgrades_auto_and_small_timeouts_shrink_the_margin() {
        assert_eq!(
            load(&["--persist", "disabled"]).unwrap().ha_mode,
            HaMode::Disabled
        );
        let s = load(&["--heartbeat-timeout", "1s", "--poll-period", "100ms"]).unwrap();
        assert_eq!(s.safety_margin, Duration::from_millis(250));
    }

    #[test]
    fn allowed_hosts_are_normalised_and_checked_and_secret_files_listed() {
        let s = load(&[
            "--allowed-host",
            "HA.example.com.,b.example",
            "--allowed-host",
            "*",
        ])
        .unwrap();
        assert_eq!(s.allowed_hosts, ["ha.example.com", "b.example", "*"]);
        assert!(s.secret_files.is_empty());
        let err = load(&["--allowed-host", "http://x.example/"]).unwrap_err();
        assert_eq!(err.flag, "allowed-host");
        assert!(load(&["--allowed-host", ""]).is_err());
    }
}
