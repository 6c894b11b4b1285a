//! How the SDK reaches a node: TLS trust for `https://` endpoints and HTTP Basic credentials,
//! applied to every channel it opens (watch streams, typed calls, `master_channel`).

use base64::Engine;
use http::HeaderValue;
use std::task::{Context, Poll};
use tonic::transport::{Channel, channel::ResponseFuture};
use tower::Service;

/// A user and password for nodes started with `--auth-user`. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// The credentials of `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The `authorization: Basic …` value, marked sensitive (hidden from debug output).
    pub fn authorization(&self) -> Option<HeaderValue> {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// A channel to one node that adds the credentials, if any, to every request.
#[derive(Debug, Clone)]
pub struct NodeChannel {
    channel: Channel,
    authorization: Option<HeaderValue>,
}

impl NodeChannel {
    /// Sends over `channel`, adding `authorization` (when given) as the `authorization` header.
    pub fn new(channel: Channel, authorization: Option<HeaderValue>) -> Self {
        Self {
            channel,
            authorization,
        }
    }
}

impl Service<http::Request<tonic::body::Body>> for NodeChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        self.channel.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_encode_as_basic_and_hide_the_password() {
        let credentials = Credentials::new("admin", "pa:ss");
        let value = credentials.authorization().unwrap();
        assert_eq!(value.to_str().unwrap(), "Basic YWRtaW46cGE6c3M=");
        assert!(value.is_sensitive());
        assert!(!format!("{credentials:?}").contains("pa:ss"));
    }
}
