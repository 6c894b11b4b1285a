//! How a client connects: the caller's `ConnectOptions`, and the `FollowerSettings` derived from
//! them once, with which the follower task and the client's channels are opened.

use crate::endpoint::EndpointOptions;
use crate::transport::Credentials;
use http::HeaderValue;
use std::time::Duration;
use tonic::transport::Certificate;

/// How a client connects and how long it rides out a failover. Built from `default()` with the
/// `with_*` methods, so that a later field is not a breaking change:
///
/// ```
/// use haplane_sdk::{ConnectOptions, Credentials};
/// use std::time::Duration;
/// let options = ConnectOptions::default()
///     .with_failover_timeout(Duration::from_secs(10))
///     .with_credentials(Credentials::new("ops", "secret"));
/// assert_eq!(options.failover_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// How long calls wait for a new master (and retry) during a failover. Default 30 s.
    pub failover_timeout: Duration,
    /// Per-endpoint connect timeout. Default 1 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a frozen node's stream is dropped after three missed
    /// pings. Default 1 s.
    pub keep_alive: Duration,
    /// The plane's poll period (the nodes' `--poll-period`). When the node the client streams
    /// from has shown no master (or a view the client does not believe) for this long, the
    /// client asks the other members for one and moves its stream to the master they report
    /// (`docs/client-rules.md`, rule 2). Default 1 s, the nodes' default.
    pub poll_period: Duration,
    /// For nodes started with `--auth-user`. Default none.
    pub credentials: Option<Credentials>,
    /// PEM CA certificate trusted (besides the system roots) for `https://` endpoints, e.g. read
    /// with `std::fs::read(ca_file)`. Default none.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            failover_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            poll_period: Duration::from_secs(1),
            credentials: None,
            ca_pem: None,
        }
    }
}

impl ConnectOptions {
    /// Sets [`failover_timeout`](Self::failover_timeout).
    #[must_use]
    pub fn with_failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`keep_alive`](Self::keep_alive).
    #[must_use]
    pub fn with_keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets [`poll_period`](Self::poll_period).
    #[must_use]
    pub fn with_poll_period(mut self, period: Duration) -> Self {
        self.poll_period = period;
        self
    }

    /// Sets [`credentials`](Self::credentials).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`ca_pem`](Self::ca_pem): a PEM CA certificate trusted for `https://` endpoints.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }
}

/// What the follower task and the client's channels are opened with.
#[derive(Debug, Clone)]
pub(crate) struct FollowerSettings {
    /// How every channel to a node is set up: timeouts, keep-alive and TLS trust.
    pub endpoint: EndpointOptions,
    /// The plane's poll period: how long a node may show no master before the others are asked.
    pub poll_period: Duration,
    /// The `authorization` header sent with every call, when the client has credentials.
    pub authorization: Option<HeaderValue>,
}

impl FollowerSettings {
    /// The settings `options` ask for. Channels are not bounded per call: a `WatchMaster` stream
    /// lasts as long as the node serves it, and a frozen node is found by the keep-alive pings.
    pub(crate) fn from_options(options: &ConnectOptions) -> Self {
        Self {
            endpoint: EndpointOptions {
                connect_timeout: options.connect_timeout,
                keep_alive: Some(options.keep_alive),
                call_timeout: None,
                ca_certificate: options.ca_pem.as_ref().map(Certificate::from_pem),
            },
            poll_period: options.poll_period,
            authorization: options
                .credentials
                .as_ref()
                .and_then(Credentials::authorization),
        }
    }
}
