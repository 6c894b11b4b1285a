//! How the node reaches its peers: `Nudge` (poll now) and `StepDown` (switchover). The api
//! layer implements `Peers` (`api::grpc::PeerClient`), so the node core does not depend on it.

use super::runtime::Runtime;
use futures::future::BoxFuture;
use haplane::Epoch;
use std::sync::Arc;
use std::time::Duration;

/// Why a call to a peer failed.
pub type PeerError = Box<dyn std::error::Error + Send + Sync>;

/// A master's answer to a step-down request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDownAnswer {
    /// Whether it no longer acts as master in the epoch asked (false: it masters a newer one).
    pub stopped: bool,
    /// How much longer a lease it reported to its role watchers (sidecars) may be believed: the
    /// successor acts only a safety margin after that.
    pub promised: Duration,
}

/// Calls to other nodes of the plane, by the URI their record advertises.
pub trait Peers: std::fmt::Debug + Send + Sync {
    /// Asks the node at `uri` to poll now.
    fn nudge<'a>(
        &'a self,
        uri: &'a str,
        from_node_id: &'a str,
    ) -> BoxFuture<'a, Result<(), PeerError>>;

    /// Asks the master at `uri` to step down from `epoch` (switchover).
    fn step_down<'a>(
        &'a self,
        uri: &'a str,
        from_node_id: &'a str,
        epoch: Epoch,
    ) -> BoxFuture<'a, Result<StepDownAnswer, PeerError>>;
}

impl Runtime {
    /// URIs of the peers that are live now.
    pub(super) fn live_peer_uris(&self) -> Vec<String> {
        self.election
            .summaries(0, self.clock.now())
            .into_iter()
            .skip(1)
            .filter(|peer| peer.live && !peer.record.node_uri.is_empty())
            .map(|peer| peer.record.node_uri)
            .collect()
    }

    /// Tells every live peer to poll now, without waiting for the answers.
    pub(super) fn nudge_peers(&self) {
        let from = self.options.election.node_id.to_string();
        for uri in self.live_peer_uris() {
            let from = from.clone();
            let peers = Arc::clone(&self.options.peers);
            tokio::spawn(async move {
                if let Err(err) = peers.nudge(&uri, &from).await {
                    tracing::debug!(%uri, error = %err, "nudge not delivered");
                }
            });
        }
    }
}
