//! How the node calls its peers (nudges, step-down requests): the `Peers` implementation over
//! gRPC, which never sends this node's credentials in clear from a node that serves TLS.

use crate::node::{PeerError, Peers, StepDownAnswer};
use futures::future::BoxFuture;
use haplane::Epoch;
use haplane::pb;
use haplane_sdk::{EndpointOptions, NodeChannel, endpoint, is_https};
use http::HeaderValue;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Certificate;

/// How this node calls its peers (`Nudge`, `StepDown`): their TLS trust and our credentials.
///
/// Peer URIs come from the store, so whoever can write a record there chooses where this node
/// connects. A node with TLS therefore sends its credentials only to `https://` peers: a call to a
/// plain peer is skipped (and logged once per URI) rather than sent with the password in clear.
/// Without TLS configured everything travels in clear anyway, and calls go out as before.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    /// Trusted for `https://` peers besides the system roots; present exactly when this node
    /// serves TLS.
    peer_ca: Option<Certificate>,
    authorization: Option<HeaderValue>,
    /// Plain peer URIs already logged as refused.
    refused_plain: Arc<Mutex<HashSet<String>>>,
}

/// Plain peer URIs remembered as already logged.
const MAX_REMEMBERED_PLAIN_PEERS: usize = 1024;

impl PeerClient {
    /// `peer_ca_pem`: trusted for `https://` peers, and present exactly when this node serves
    /// TLS; `authorization`: sent with every call.
    pub fn new(peer_ca_pem: Option<&str>, authorization: Option<HeaderValue>) -> Self {
        Self {
            peer_ca: peer_ca_pem.map(Certificate::from_pem),
            authorization,
            refused_plain: Arc::default(),
        }
    }

    /// Refuses a call that would send credentials in clear from a TLS node, logging the first
    /// refusal for each URI.
    fn check_credentials_stay_encrypted(&self, uri: &str) -> Result<(), PeerError> {
        if self.peer_ca.is_none() || self.authorization.is_none() || is_https(uri) {
            return Ok(());
        }
        let first = self
            .refused_plain
            .lock()
            .map(|mut refused| {
                // Records written to flood this set cost a repeated warning, not memory.
                if refused.len() >= MAX_REMEMBERED_PLAIN_PEERS {
                    refused.clear();
                }
                refused.insert(uri.to_owned())
            })
            .unwrap_or(true);
        if first {
            tracing::warn!(%uri, "not calling a peer whose URI is not https: this node serves TLS and would send its credentials in clear (logged once per URI)");
        }
        Err(format!("not sending credentials to the plain peer {uri}").into())
    }

    /// A client of the peer at `uri`, every call bounded to `limit`.
    async fn client(
        &self,
        uri: &str,
        limit: Duration,
    ) -> Result<pb::ha_service_client::HaServiceClient<NodeChannel>, PeerError> {
        self.check_credentials_stay_encrypted(uri)?;
        let options = EndpointOptions::new(Duration::from_millis(300))
            .with_call_timeout(Some(limit))
            .with_ca_certificate(self.peer_ca.clone());
        let channel = NodeChannel::new(
            endpoint(uri, &options)?.connect().await?,
            self.authorization.clone(),
        );
        Ok(pb::ha_service_client::HaServiceClient::new(channel))
    }
}

impl Peers for PeerClient {
    /// Bounded to half a second.
    fn nudge<'a>(
        &'a self,
        uri: &'a str,
        from_node_id: &'a str,
    ) -> BoxFuture<'a, Result<(), PeerError>> {
        Box::pin(async move {
            self.client(uri, Duration::from_millis(500))
                .await?
                .nudge(pb::NudgeRequest {
                    from_node_id: from_node_id.to_owned(),
                })
                .await?;
            Ok(())
        })
    }

    /// Bounded to two seconds: the master answers after publishing, before any store call.
    fn step_down<'a>(
        &'a self,
        uri: &'a str,
        from_node_id: &'a str,
        epoch: Epoch,
    ) -> BoxFuture<'a, Result<StepDownAnswer, PeerError>> {
        Box::pin(async move {
            let answer = self
                .client(uri, Duration::from_secs(2))
                .await?
                .step_down(pb::StepDownRequest {
                    from_node_id: from_node_id.to_owned(),
                    epoch,
                })
                .await?;
            let answer = answer.into_inner();
            Ok(StepDownAnswer {
                stopped: answer.stepped_down,
                promised: Duration::from_millis(answer.promised_lease_ms),
            })
        })
    }
}
