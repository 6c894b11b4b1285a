//! How a channel to a haplane node is set up: connect timeout, HTTP/2 keep-alive, a bound on each
//! call, and TLS (the system roots plus an optional CA) for `https://` URIs. Written once here so
//! that the SDK and the server's peer client open their channels alike.

use crate::error::Error;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// How [`endpoint`] sets up a channel. Built with [`EndpointOptions::new`] and the `with_*`
/// methods, so that a later field is not a breaking change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// How long to wait for the connection (TCP, and TLS for `https://`) to be set up.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval, pinging also while no call is open; the connection is
    /// dropped when a ping is not answered within three intervals. `None`: no pings.
    pub keep_alive: Option<Duration>,
    /// How long each call on the channel may take before it fails with `DEADLINE_EXCEEDED`.
    /// `None`: calls are not bounded by the channel.
    pub call_timeout: Option<Duration>,
    /// A CA certificate trusted besides the system roots for `https://` URIs.
    pub ca_certificate: Option<Certificate>,
}

impl EndpointOptions {
    /// Options with `connect_timeout`, no keep-alive pings, no bound on calls and only the system
    /// roots trusted.
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            keep_alive: None,
            call_timeout: None,
            ca_certificate: None,
        }
    }

    /// Sets [`keep_alive`](Self::keep_alive).
    #[must_use]
    pub fn with_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets [`call_timeout`](Self::call_timeout).
    #[must_use]
    pub fn with_call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`ca_certificate`](Self::ca_certificate).
    #[must_use]
    pub fn with_ca_certificate(mut self, certificate: Option<Certificate>) -> Self {
        self.ca_certificate = certificate;
        self
    }
}

/// Whether `uri` names an `https` endpoint (the scheme is case-insensitive).
pub fn is_https(uri: &str) -> bool {
    uri.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// An endpoint for `uri` set up as `options` say, with TLS when `uri` is `https://`; not yet
/// connected. An invalid URI (or TLS set-up) is [`Error::InvalidEndpoint`] naming `uri`.
///
/// ```
/// use haplane_sdk::{EndpointOptions, endpoint};
/// use std::time::Duration;
/// let options = EndpointOptions::new(Duration::from_millis(300))
///     .with_call_timeout(Some(Duration::from_secs(2)));
/// let peer = endpoint("http://127.0.0.1:8081", &options)?;
/// assert_eq!(peer.uri().port_u16(), Some(8081));
/// // Inside a Tokio runtime, `peer.connect().await` (or `connect_lazy()`) opens the channel.
/// # Ok::<(), haplane_sdk::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidEndpoint`] naming `uri` when it is not a valid URI or its TLS cannot be set up.
pub fn endpoint(uri: &str, options: &EndpointOptions) -> Result<Endpoint, Error> {
    let invalid = |err: tonic::transport::Error| Error::InvalidEndpoint {
        endpoint: uri.to_owned(),
        message: err.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(invalid)?
        .connect_timeout(options.connect_timeout);
    if let Some(interval) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(interval * 3)
            .keep_alive_while_idle(true);
    }
    if let Some(limit) = options.call_timeout {
        endpoint = endpoint.timeout(limit);
    }
    if !is_https(uri) {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &options.ca_certificate {
        tls = tls.ca_certificate(ca.clone());
    }
    endpoint.tls_config(tls).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> EndpointOptions {
        EndpointOptions {
            connect_timeout: Duration::from_secs(1),
            keep_alive: Some(Duration::from_secs(1)),
            call_timeout: None,
            ca_certificate: None,
        }
    }

    #[test]
    fn https_is_recognised_in_any_case_and_nothing_else_is() {
        for uri in ["https://a:8081", "HTTPS://a:8081", "HttpS://a", "https://"] {
            assert!(is_https(uri), "{uri}");
        }
        for uri in [
            "http://a:8081",
            "https:/a",
            "https",
            "",
            "httpsx://a",
            "ftp://a",
            "é€https://",
        ] {
            assert!(!is_https(uri), "{uri}");
        }
    }

    #[test]
    fn an_invalid_uri_is_an_invalid_endpoint_naming_it() {
        let err = endpoint("not a uri", &options()).unwrap_err();
        let Error::InvalidEndpoint { endpoint, message } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(endpoint, "not a uri");
        assert!(!message.is_empty());
        assert!(err.to_string().contains("\"not a uri\""), "{err}");
    }

    #[test]
    fn a_plain_uri_gives_an_endpoint_for_that_uri() {
        let options = EndpointOptions {
            keep_alive: None,
            call_timeout: Some(Duration::from_millis(500)),
            ..options()
        };
        let endpoint = endpoint("http://127.0.0.1:8081", &options).unwrap();
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:8081/");
    }
}
