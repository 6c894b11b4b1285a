//! HTTP Basic authentication (SPEC 7): one middleware over the whole port, so REST routes, gRPC
//! calls (`authorization: Basic …` metadata) and everything else share one check. Health checks
//! stay open for load balancers unless `--auth-health`.

use crate::config::{AuthSettings, Secret};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use haplane_sdk::Credentials;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Paths a load balancer probes; open unless the operator protects them.
const HEALTH_PATHS: [&str; 3] = [
    "/v1/server/ha/health",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Checks requests against the configured users.
#[derive(Debug)]
pub struct Authenticator {
    /// `user:password` of every user, as a Basic header decodes to.
    accepted: Vec<Secret>,
    /// The first user's header, presented to peers.
    peer_authorization: Option<HeaderValue>,
    protect_health: bool,
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
            peer_authorization: settings.users.first().and_then(|(user, password)| {
                Credentials::new(user, password.expose()).authorization()
            }),
            protect_health: settings.protect_health,
        }
    }

    /// Whether `path` may be called without credentials.
    pub fn is_open(&self, path: &str) -> bool {
        !self.protect_health && HEALTH_PATHS.contains(&path)
    }

    /// Checks the `authorization` header. Every user is compared in constant time.
    pub fn verify(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let encoded = value
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Basic "))
            .ok_or(Refusal::Invalid)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| Refusal::Invalid)?;
        let mut matched = subtle::Choice::from(0);
        for expected in &self.accepted {
            matched |= expected.expose().as_bytes().ct_eq(&decoded);
        }
        match bool::from(matched) {
            true => Ok(()),
            false => Err(Refusal::Invalid),
        }
    }

    /// The `authorization` value this node presents to its peers (the first user).
    pub fn peer_authorization(&self) -> Option<HeaderValue> {
        self.peer_authorization.clone()
    }
}

/// The middleware: 401 (REST) or UNAUTHENTICATED (gRPC) unless the request carries valid
/// credentials or asks for an open path.
pub async fn require_credentials(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.is_open(request.uri().path()) {
        return next.run(request).await;
    }
    match auth.verify(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refused(&request, refusal),
    }
}

fn refused(request: &Request, refusal: Refusal) -> Response {
    if crate::rest::is_grpc_request(request.headers()) {
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
        assert_eq!(auth.verify(&headers(admin.to_str().unwrap())), Ok(()));
        assert_eq!(auth.verify(&headers(ops.to_str().unwrap())), Ok(()));
        let wrong = basic("ops", "s3cret:x").unwrap();
        assert_eq!(
            auth.verify(&headers(wrong.to_str().unwrap())),
            Err(Refusal::Invalid)
        );
        assert_eq!(auth.verify(&HeaderMap::new()), Err(Refusal::Missing));
        for garbage in ["Bearer abc", "Basic !!!", "Basic ", "basic YWRtaW46"] {
            assert_eq!(
                auth.verify(&headers(garbage)),
                Err(Refusal::Invalid),
                "{garbage}"
            );
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
    fn the_peer_header_is_sensitive() {
        let value = authenticator(false).peer_authorization().unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("YWRtaW4"));
    }
}
