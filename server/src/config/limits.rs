//! Connection limits: how long a connection may sit in each state and how many connections,
//! streams and watches may be open, with their defaults and bounds.

use super::{ConfigError, LaunchArgs, config_error};
use std::time::Duration;

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
    /// The limits in `given`, or their defaults, checked.
    pub(super) fn load(given: &LaunchArgs) -> Result<Self, ConfigError> {
        let duration = |flag, given: Option<Duration>, default| {
            let value = given.unwrap_or(default);
            if value < Duration::from_millis(10) || value > Duration::from_secs(3600) {
                return Err(config_error(flag, "must be between 10ms and 1h"));
            }
            Ok(value)
        };
        let limits = Self {
            handshake_timeout: duration(
                "handshake-timeout",
                given.handshake_timeout,
                Duration::from_secs(10),
            )?,
            header_read_timeout: duration(
                "header-read-timeout",
                given.header_read_timeout,
                Duration::from_secs(10),
            )?,
            body_read_timeout: duration(
                "body-read-timeout",
                given.body_read_timeout,
                Duration::from_secs(30),
            )?,
            idle_timeout: duration("idle-timeout", given.idle_timeout, Duration::from_secs(60))?,
            max_connections: given.max_connections,
            max_streams_per_connection: given.max_streams_per_connection.unwrap_or(256),
            max_watchers: given.max_watchers.unwrap_or(16_384),
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
