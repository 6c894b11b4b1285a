//! HTTP Basic authentication (SPEC 7): one middleware over the whole port, so REST routes, gRPC
//! calls (`authorization: Basic …` metadata) and everything else share one check. Health checks
//! stay open for load balancers unless `--auth-health`.
//!
//! Wrong credentials are logged (client address and user name, never the password), counted
//! (`haplane_auth_failures_total`) and throttled per client address: once an address has failed
//! [`FREE_FAILURES`] times, each failure less than [`FAILURE_WINDOW`] after the one before, it is
//! answered 429 / `RESOURCE_EXHAUSTED` with `Retry-After` without any check: for one second, then
//! twice as long after each further failure, up to [`MAX_BACKOFF`]. A success resets the address.
//! The address is the TCP peer's (`ConnectInfo<SocketAddr>`, which the server must put on each
//! request); without it failures are still logged and counted, but nothing is throttled, since
//! one shared back-off would let any client lock everyone out. Requests without any
//! credentials are neither counted nor throttled: a browser asks that way before it prompts.

#[cfg(test)]
mod tests;
mod throttle;

use throttle::Throttle;

use crate::config::{AuthSettings, Secret};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use haplane::wire::PEER_USER;
use haplane_sdk::Credentials;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Failures an address may make within [`FAILURE_WINDOW`] before it is throttled.
pub const FREE_FAILURES: u32 = 5;
/// How long a failure is remembered after the address's last failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Addresses remembered at once; past it, addresses whose back-off and window are over are
/// forgotten first, and new addresses are not tracked while every slot is still in use.
const MAX_TRACKED: usize = 10_000;
/// The longest user name a failure log line shows.
const MAX_LOGGED_USER: usize = 64;

/// Failed authentications since the process started, for `/metrics`.
static FAILURES_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Failed authentications since the process started (`haplane_auth_failures_total`).
pub fn failures_total() -> u64 {
    FAILURES_TOTAL.load(Ordering::Relaxed)
}

/// Paths a load balancer, Kubernetes or systemd probes; open unless the operator protects them.
const HEALTH_PATHS: [&str; 5] = [
    "/v1/server/ha/health",
    "/livez",
    "/readyz",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// What the peer secret opens: the calls one node makes to another.
const PEER_PATHS: [&str; 2] = [
    "/haplane.v1.HaService/Nudge",
    "/haplane.v1.HaService/StepDown",
];

/// Checks requests against the configured users.
#[derive(Debug)]
pub struct Authenticator {
    /// `user:password` of every user, as a Basic header decodes to.
    accepted: Vec<Secret>,
    /// `haplane-peer:<secret>` when a peer secret is set: valid on `PEER_PATHS` only.
    peer: Option<Secret>,
    /// What this node presents to its peers: the peer secret, else the first user.
    peer_authorization: Option<HeaderValue>,
    protect_health: bool,
    throttle: Throttle,
}

/// Why a request was refused (the message a client sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "credentials required (HTTP Basic)",
            Refusal::Invalid => "invalid credentials",
        }
    }
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            accepted: settings
                .users
                .iter()
                .map(|(user, password)| Secret::new(format!("{user}:{}", password.expose())))
                .collect(),
            peer: settings
                .peer_secret
                .as_ref()
                .map(|secret| Secret::new(format!("{PEER_USER}:{}", secret.expose()))),
            peer_authorization: match &settings.peer_secret {
                Some(secret) => Credentials::new(PEER_USER, secret.expose()).authorization(),
                None => settings.users.first().and_then(|(user, password)| {
                    Credentials::new(user, password.expose()).authorization()
                }),
            },
            protect_health: settings.protect_health,
            throttle: Throttle::default(),
        }
    }

    /// Whether `path` may be called without credentials.
    pub fn is_open(&self, path: &str) -> bool {
        !self.protect_health && HEALTH_PATHS.contains(&path)
    }

    /// Checks the `authorization` header of a request for `path`. Every user, and the peer
    /// secret, is compared in constant time; the peer secret counts only on a peer call's path.
    pub fn verify(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let decoded = decode_basic(value).ok_or(Refusal::Invalid)?;
        let mut matched = subtle::Choice::from(0);
        for expected in &self.accepted {
            matched |= expected.expose().as_bytes().ct_eq(&decoded);
        }
        if let Some(peer) = &self.peer {
            let on_peer_path = subtle::Choice::from(u8::from(PEER_PATHS.contains(&path)));
            matched |= peer.expose().as_bytes().ct_eq(&decoded) & on_peer_path;
        }
        match bool::from(matched) {
            true => Ok(()),
            false => Err(Refusal::Invalid),
        }
    }

    /// The `authorization` value this node presents to its peers.
    pub fn peer_authorization(&self) -> Option<HeaderValue> {
        self.peer_authorization.clone()
    }
}

/// The decoded `user:password` of a `Basic` authorization value; the scheme is
/// case-insensitive (RFC 7617).
fn decode_basic(value: &HeaderValue) -> Option<Vec<u8>> {
    let (scheme, encoded) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
}

/// The user name a failed request gave, for the log: never the password, at most
/// [`MAX_LOGGED_USER`] characters.
fn claimed_user(headers: &HeaderMap) -> String {
    let decoded = headers.get(header::AUTHORIZATION).and_then(decode_basic);
    match decoded {
        None => "(not Basic)".to_owned(),
        Some(bytes) => {
            let user = bytes.split(|byte| *byte == b':').next().unwrap_or_default();
            String::from_utf8_lossy(user)
                .chars()
                .take(MAX_LOGGED_USER)
                .collect()
        }
    }
}

/// The client's address, when the server recorded it on the request.
fn client_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The middleware: 401 (REST) or UNAUTHENTICATED (gRPC) unless the request carries valid
/// credentials or asks for an open path; 429 (REST) or RESOURCE_EXHAUSTED (gRPC) while the
/// client's address is backing off, without checking the credentials.
pub async fn require_credentials(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let address = client_address(&request);
    let now = Instant::now();
    if let Some(wait) = address.and_then(|address| auth.throttle.blocked(address, now)) {
        return throttled(&request, wait);
    }
    match auth.verify(request.uri().path(), request.headers()) {
        Ok(()) => {
            if let Some(address) = address {
                auth.throttle.succeeded(address);
            }
            next.run(request).await
        }
        Err(Refusal::Missing) => refused(&request, Refusal::Missing),
        Err(Refusal::Invalid) => {
            FAILURES_TOTAL.fetch_add(1, Ordering::Relaxed);
            let backoff = address.and_then(|address| auth.throttle.failed(address, now));
            let client =
                address.map_or_else(|| "unknown".to_owned(), |address| address.to_string());
            tracing::warn!(
                client = %client,
                user = ?claimed_user(request.headers()),
                path = request.uri().path(),
                backoff_s = backoff.map(|backoff| backoff.as_secs()),
                "authentication failed"
            );
            refused(&request, Refusal::Invalid)
        }
    }
}

/// The answer to a client that is backing off.
fn throttled(request: &Request, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!("too many failed authentications; retry in {seconds} s");
    let mut response = if haplane::wire::is_grpc_request(request.headers()) {
        tonic::Status::resource_exhausted(message).into_http::<Body>()
    } else {
        crate::api::rest::error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &message,
            serde_json::Value::Null,
        )
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn refused(request: &Request, refusal: Refusal) -> Response {
    if haplane::wire::is_grpc_request(request.headers()) {
        return tonic::Status::unauthenticated(refusal.message()).into_http::<Body>();
    }
    let mut response = crate::api::rest::error_response(
        StatusCode::UNAUTHORIZED,
        refusal.message(),
        serde_json::Value::Null,
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="haplane", charset="UTF-8""#),
    );
    response
}
