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

use crate::config::{AuthSettings, Secret};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use haplane::wire::PEER_USER;
use haplane_sdk::Credentials;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Paths a load balancer probes; open unless the operator protects them.
const HEALTH_PATHS: [&str; 3] = [
    "/v1/server/ha/health",
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
        let encoded = value
            .to_str()
            .ok()
            .and_then(basic_credentials)
            .ok_or(Refusal::Invalid)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| Refusal::Invalid)?;
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

/// The credentials of a `Basic` authorization value; the scheme is case-insensitive (RFC 7617).
fn basic_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then_some(credentials)
}

/// The user name a failed request gave, for the log: never the password, at most
/// [`MAX_LOGGED_USER`] characters.
fn claimed_user(headers: &HeaderMap) -> String {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(basic_credentials)
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        });
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

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures since the address last succeeded or its window ran out.
    count: u32,
    last: Instant,
    /// Refused without checking until then.
    blocked_until: Option<Instant>,
}

impl Failures {
    /// Whether the entry no longer affects anything at `now`.
    fn is_over(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= FAILURE_WINDOW
            && self.blocked_until.is_none_or(|until| until <= now)
    }
}

/// Failed authentications per client address, and the back-off they earn.
#[derive(Debug, Default)]
struct Throttle {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    /// How much longer `address` is refused, if it is.
    fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let addresses = self.addresses.lock().ok()?;
        let until = addresses.get(&address)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure of `address`; the back-off it starts, if any.
    fn failed(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut addresses = self.addresses.lock().ok()?;
        if addresses.len() >= MAX_TRACKED && !addresses.contains_key(&address) {
            addresses.retain(|_, failures| !failures.is_over(now));
        }
        if addresses.len() >= MAX_TRACKED && !addresses.contains_key(&address) {
            return None;
        }
        let failures = addresses.entry(address).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if failures.is_over(now) {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        let over = failures.count.checked_sub(FREE_FAILURES)?;
        let backoff = Duration::from_secs(1)
            .checked_mul(1 << over.min(16))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        failures.blocked_until = Some(now + backoff);
        Some(backoff)
    }

    /// Forgets the failures of `address` after it authenticated.
    fn succeeded(&self, address: IpAddr) {
        if let Ok(mut addresses) = self.addresses.lock() {
            addresses.remove(&address);
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
    if haplane::wire::is_grpc_request(request.headers()) {
        let mut response = tonic::Status::resource_exhausted(message).into_http::<Body>();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let body = serde_json::json!({ "message": message }).to_string();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, seconds.to_string()),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn refused(request: &Request, refusal: Refusal) -> Response {
    if haplane::wire::is_grpc_request(request.headers()) {
        return tonic::Status::unauthenticated(refusal.message()).into_http::<Body>();
    }
    let body = serde_json::json!({ "message": refusal.message() }).to_string();
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                r#"Basic realm="haplane", charset="UTF-8""#,
            ),
            (header::CONTENT_TYPE, "application/json"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(protect_health: bool) -> Authenticator {
        Authenticator::new(&AuthSettings {
            users: vec![
                ("admin".to_owned(), Secret::new("s3cret:x")),
                ("ops".to_owned(), Secret::new("other")),
            ],
            protect_health,
            peer_secret: None,
        })
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn every_configured_user_is_accepted_and_nothing_else() {
        let auth = authenticator(false);
        let basic = |user: &str, password: &str| Credentials::new(user, password).authorization();
        let admin = basic("admin", "s3cret:x").unwrap();
        let ops = basic("ops", "other").unwrap();
        assert_eq!(
            auth.verify("/v1/server/ha/state", &headers(admin.to_str().unwrap())),
            Ok(())
        );
        assert_eq!(
            auth.verify("/v1/server/ha/state", &headers(ops.to_str().unwrap())),
            Ok(())
        );
        let wrong = basic("ops", "s3cret:x").unwrap();
        assert_eq!(
            auth.verify("/v1/server/ha/state", &headers(wrong.to_str().unwrap())),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            auth.verify("/v1/server/ha/state", &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        for garbage in ["Bearer abc", "Basic !!!", "Basic ", "basic YWRtaW46"] {
            assert_eq!(
                auth.verify("/v1/server/ha/state", &headers(garbage)),
                Err(Refusal::Invalid),
                "{garbage}"
            );
        }
    }

    #[test]
    fn the_basic_scheme_is_case_insensitive() {
        let auth = authenticator(false);
        let admin = Credentials::new("admin", "s3cret:x")
            .authorization()
            .unwrap();
        let encoded = admin.to_str().unwrap().strip_prefix("Basic ").unwrap();
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let value = format!("{scheme} {encoded}");
            assert_eq!(
                auth.verify("/v1/server/ha/state", &headers(&value)),
                Ok(()),
                "{value}"
            );
        }
        assert_eq!(
            auth.verify(
                "/v1/server/ha/state",
                &headers(&format!("Basicx {encoded}"))
            ),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn the_logged_user_never_includes_the_password() {
        let value = Credentials::new("mallory", "hunter2:x")
            .authorization()
            .unwrap();
        assert_eq!(claimed_user(&headers(value.to_str().unwrap())), "mallory");
        assert_eq!(claimed_user(&headers("Bearer abc")), "(not Basic)");
        let long = Credentials::new("u".repeat(500), "pw")
            .authorization()
            .unwrap();
        assert_eq!(
            claimed_user(&headers(long.to_str().unwrap())).len(),
            MAX_LOGGED_USER
        );
    }

    #[test]
    fn failures_back_off_per_address_and_a_success_resets() {
        let throttle = Throttle::default();
        let (attacker, other) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        for n in 1..FREE_FAILURES {
            assert_eq!(throttle.failed(attacker, start), None, "failure {n}");
        }
        assert_eq!(throttle.blocked(attacker, start), None);
        assert_eq!(
            throttle.failed(attacker, start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            throttle.blocked(attacker, start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.blocked(other, start), None);
        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.blocked(attacker, later), None);
        assert_eq!(
            throttle.failed(attacker, later),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            throttle.failed(attacker, later),
            Some(Duration::from_secs(4))
        );
        for _ in 0..20 {
            throttle.failed(attacker, later);
        }
        assert_eq!(throttle.blocked(attacker, later), Some(MAX_BACKOFF));
        throttle.succeeded(attacker);
        assert_eq!(throttle.blocked(attacker, later), None);
        assert_eq!(throttle.failed(attacker, later), None);
    }

    #[test]
    fn failures_further_apart_than_the_window_are_forgotten() {
        let throttle = Throttle::default();
        let address = "2001:db8::1".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..3 * FREE_FAILURES {
            assert_eq!(throttle.failed(address, now), None);
            now += FAILURE_WINDOW;
        }
    }

    #[test]
    fn health_is_open_unless_protected() {
        assert!(authenticator(false).is_open("/v1/server/ha/health"));
        assert!(authenticator(false).is_open("/grpc.health.v1.Health/Check"));
        assert!(!authenticator(false).is_open("/v1/server/ha/state"));
        assert!(!authenticator(true).is_open("/v1/server/ha/health"));
    }

    #[test]
    fn the_peer_secret_opens_only_peer_calls_and_replaces_the_user_sent_to_peers() {
        let auth = Authenticator::new(&AuthSettings {
            users: vec![("admin".to_owned(), Secret::new("operator password"))],
            protect_health: false,
            peer_secret: Some(Secret::new("0123456789abcdef-peer")),
        });
        let peer = auth.peer_authorization().unwrap();
        assert_eq!(
            Some(peer.clone()),
            Credentials::new(PEER_USER, "0123456789abcdef-peer").authorization()
        );
        let presented = headers(peer.to_str().unwrap());
        for path in PEER_PATHS {
            assert_eq!(auth.verify(path, &presented), Ok(()), "{path}");
        }
        for path in [
            "/haplane.v1.HaService/SetState",
            "/haplane.v1.HaService/GetState",
            "/v1/server/ha/state",
            "/haplane.v1.HaService/Nudge/",
        ] {
            assert_eq!(
                auth.verify(path, &presented),
                Err(Refusal::Invalid),
                "{path}"
            );
        }
        let operator = Credentials::new("admin", "operator password")
            .authorization()
            .unwrap();
        let operator = headers(operator.to_str().unwrap());
        assert_eq!(
            auth.verify("/haplane.v1.HaService/StepDown", &operator),
            Ok(())
        );
        assert_eq!(auth.verify("/v1/server/ha/state", &operator), Ok(()));
    }

    #[test]
    fn the_peer_header_is_sensitive() {
        let value = authenticator(false).peer_authorization().unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("YWRtaW4"));
    }
}
