//! Host and Origin checks (DNS rebinding, cross-site changes) for every request on the port.

use super::error_response;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::Value;

/// Which Host names a request may address, and which pages may send changing requests.
///
/// DNS rebinding: a page of `evil.example` whose name is re-pointed at this node's address makes
/// the browser send requests here with `Host: evil.example`. A rebinding name is always a dotted
/// name in public DNS, so the node accepts, on any port, IP addresses, names without a dot
/// (`localhost`, the host's short name), `*.localhost`, the `--advertise-uri` host and the
/// `--allowed-host` names, and answers anything else 421 (REST) or `PERMISSION_DENIED` (gRPC,
/// by `:authority`). A request without any Host (HTTP/1.0) is accepted: browsers always send one.
///
/// Cross-site requests: a changing request (POST, PUT, PATCH, DELETE) that carries an `Origin`
/// is accepted only from the page's own origin (the console), the advertised URI's origin or an
/// `--allowed-host` name (any port); others get 403, pages of other ports on the same host too.
/// `*` in the list turns both checks off.
#[derive(Debug, Clone)]
pub struct HostPolicy(std::sync::Arc<Allowed>);

/// What a [`HostPolicy`] accepts; shared by every serving thread and connection that checks it.
/// Names compare case-insensitively, so they are kept as given.
#[derive(Debug)]
struct Allowed {
    /// The `--allowed-host` names (host parts).
    names: Vec<String>,
    /// The advertised URI's authority.
    advertised: Option<String>,
    any: bool,
}

/// The host part of an authority (`name:port`, `[v6]:port`, `name`), without a trailing dot.
fn host_part(authority: &str) -> &str {
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once(']')
            .map_or(authority, |(inside, _)| inside),
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
            _ => authority,
        },
    };
    host.trim_end_matches('.')
}

impl HostPolicy {
    /// Accepts the built-in names, the host of `advertised_uri` and `extra` (`*`: anything).
    pub fn new(advertised_uri: &str, extra: &[String]) -> Self {
        let advertised = advertised_uri.parse::<http::Uri>().ok().and_then(|uri| {
            uri.authority()
                .map(|authority| authority.as_str().to_owned())
        });
        Self(std::sync::Arc::new(Allowed {
            any: extra.iter().any(|name| name == "*"),
            names: extra
                .iter()
                .map(|name| host_part(name).to_owned())
                .collect(),
            advertised,
        }))
    }

    /// Whether `host` is one of the `--allowed-host` names.
    fn is_allowed_name(&self, host: &str) -> bool {
        self.0
            .names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host))
    }

    fn allows_host(&self, authority: &str) -> bool {
        let host = host_part(authority);
        let allowed = &self.0;
        allowed.any
            || host.parse::<std::net::IpAddr>().is_ok()
            || !host.contains('.')
            || host
                .rsplit_once('.')
                .is_some_and(|(_, last)| last.eq_ignore_ascii_case("localhost"))
            || self.is_allowed_name(host)
            || allowed
                .advertised
                .as_deref()
                .is_some_and(|advertised| host_part(advertised).eq_ignore_ascii_case(host))
    }

    /// Whether a changing request from `origin` may act; `own` is the request's Host.
    fn allows_origin(&self, origin: &str, own: Option<&str>) -> bool {
        let allowed = &self.0;
        let Some((_, authority)) = origin.split_once("://") else {
            // `null` (sandboxed frames, file: pages) or garbage.
            return allowed.any;
        };
        allowed.any
            || own.is_some_and(|own| own.eq_ignore_ascii_case(authority))
            || allowed
                .advertised
                .as_deref()
                .is_some_and(|advertised| advertised.eq_ignore_ascii_case(authority))
            || self.is_allowed_name(host_part(authority))
    }

    /// The answer refusing a request for a foreign host or a cross-site change, if it is one.
    /// The server checks every request with it before routing (`serve`), so a refused request
    /// never reaches the credentials check and cannot count as a failed login.
    pub fn refusal(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        // gRPC: PERMISSION_DENIED; REST: `status` with the JSON error body.
        let refuse = |status: StatusCode, message: String| {
            Some(if haplane::wire::is_grpc_request(headers) {
                tonic::Status::permission_denied(message).into_http::<Body>()
            } else {
                error_response(status, &message, Value::Null)
            })
        };
        let host_header = headers
            .get(header::HOST)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"));
        let authority = uri.authority().map(|authority| authority.as_str());
        if let Some(refused) = [authority, host_header]
            .into_iter()
            .flatten()
            .find(|host| !self.allows_host(host))
        {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this node does not answer to the host {refused:?}; add it with --allowed-host"
                ),
            );
        }
        let changes = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if changes && let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("\u{fffd}");
            if !self.allows_origin(origin, host_header.or(authority)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "changes from pages of {origin:?} are refused; add its host with --allowed-host"
                    ),
                );
            }
        }
        None
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn hosts_a_rebinding_page_cannot_use_are_accepted_and_others_refused() {
        let policy = HostPolicy::new("https://node1.example.com:8443", &["ha.example.org".into()]);
        for host in [
            "127.0.0.1:8081",
            "10.1.2.3",
            "[::1]:8081",
            "localhost:9",
            "LOCALHOST.",
            "myhost:8081",
            "app.localhost",
            "node1.example.com:1",
            "HA.example.org",
        ] {
            assert!(policy.allows_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8081",
            "127.0.0.1.evil.example",
        ] {
            assert!(!policy.allows_host(host), "{host}");
        }
        assert!(HostPolicy::new("http://127.0.0.1:1", &["*".into()]).allows_host("evil.example"));
    }

    #[test]
    fn changes_come_only_from_the_own_origin_or_an_allowed_name() {
        let policy = HostPolicy::new("http://127.0.0.1:8081", &["ha.example.org".into()]);
        let own = Some("127.0.0.1:8081");
        assert!(policy.allows_origin("http://127.0.0.1:8081", own));
        assert!(policy.allows_origin("http://127.0.0.1:8081", Some("localhost:8081")));
        assert!(policy.allows_origin("https://ha.example.org", own));
        assert!(!policy.allows_origin("http://127.0.0.1:8082", own));
        assert!(!policy.allows_origin("http://evil.example", own));
        assert!(!policy.allows_origin("http://203.0.113.5:8081", own));
        assert!(!policy.allows_origin("null", own));
        assert!(!policy.allows_origin("http://localhost:8081", None));
        assert!(HostPolicy::new("http://127.0.0.1:1", &["*".into()]).allows_origin("null", own));
    }
}
