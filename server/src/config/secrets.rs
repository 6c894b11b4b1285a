//! Credentials and TLS identity: users (flags or a users file), the peer secret and the
//! certificate and key, read and checked at start-up; `Secret` keeps them out of logs.

use super::{ConfigError, config_error, read_file};
use std::path::{Path, PathBuf};

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

/// The user named by `--auth-user` / `--auth-password`, if any; both or neither must be given.
fn flag_user(
    user: Option<String>,
    password: Option<Secret>,
) -> Result<Option<(String, Secret)>, ConfigError> {
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
            Ok(Some((user, password)))
        }
        (Some(_), None) => Err(config_error(
            "auth-password",
            "--auth-user needs --auth-password or HAPLANE_AUTH_PASSWORD",
        )),
        (None, Some(_)) => Err(config_error(
            "auth-user",
            "--auth-password needs --auth-user",
        )),
        (None, None) => Ok(None),
    }
}

/// The peer secret in `path`: one line of at least `MIN_PEER_SECRET` characters, and no operator
/// user may be called `haplane-peer`.
fn read_peer_secret(path: &Path, users: &[(String, Secret)]) -> Result<Secret, ConfigError> {
    let text = read_file("peer-secret-file", path)?;
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
    Ok(Secret::new(secret))
}

/// Who may call the node: the flag user and the users file's, the health-check switch and the
/// peer secret; `None` when no user is configured (then neither switch may be set).
pub(super) fn load_auth(
    user: Option<String>,
    password: Option<Secret>,
    users_file: Option<PathBuf>,
    protect_health: bool,
    peer_secret_file: Option<PathBuf>,
) -> Result<Option<AuthSettings>, ConfigError> {
    let mut users: Vec<_> = flag_user(user, password)?.into_iter().collect();
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
    let peer_secret = peer_secret_file
        .map(|path| read_peer_secret(&path, &users))
        .transpose()?;
    Ok(Some(AuthSettings {
        users,
        protect_health,
        peer_secret,
    }))
}

pub(super) fn load_tls(
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
