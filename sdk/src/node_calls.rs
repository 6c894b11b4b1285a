//! Calls aimed at one named node rather than the master: what an operator does to a standby
//! (set its priority, promote it) or to a given node (demote it). The node's URI comes from the
//! master's node list; the call carries the "allow non-master" marker that operators' tools use.

use crate::client::Client;
use crate::error::Error;
use haplane::convert::node_state_from_wire;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane::wire::ALLOW_NON_MASTER_METADATA;
use haplane::{HaMode, NodeState};

impl Client {
    /// Sets the HA mode of the node `node_id` (for example `Master` to promote a standby, which
    /// the current master hands over to without overlap); answers that node's previous state.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with `NotFound` when no node of the plane has that id, or the node's
    /// own refusal; [`Error::Unknown`] when the call broke on the way (it is not repeated).
    pub async fn set_state_of(&self, node_id: &str, mode: HaMode) -> Result<NodeState, Error> {
        let mut node = self.node_client(node_id).await?;
        let request = pb::SetStateRequest {
            mode: pb::HaMode::from(mode) as i32,
        };
        let answer = node
            .set_state(marked(request)?)
            .await
            .map_err(|status| Error::from_final_status(&status))?
            .into_inner();
        node_state_from_wire(answer.previous_state).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Sets the election priority of the node `node_id`; answers its previous priority.
    ///
    /// # Errors
    ///
    /// As [`Client::set_state_of`].
    pub async fn set_priority_of(&self, node_id: &str, priority: i64) -> Result<i64, Error> {
        let mut node = self.node_client(node_id).await?;
        let request = pb::SetPriorityRequest { priority };
        Ok(node
            .set_priority(marked(request)?)
            .await
            .map_err(|status| Error::from_final_status(&status))?
            .into_inner()
            .previous_priority)
    }

    /// A gRPC client of the node `node_id`, found in the master's node list.
    async fn node_client(
        &self,
        node_id: &str,
    ) -> Result<HaServiceClient<crate::NodeChannel>, Error> {
        let plane = self.list_states().await?;
        let node = plane
            .nodes
            .iter()
            .find(|node| node.node_id == node_id)
            .ok_or_else(|| Error::Rejected {
                code: tonic::Code::NotFound,
                message: format!("no node {node_id:?} in plane {}", plane.plane_id),
                reason: None,
            })?;
        Ok(HaServiceClient::new(self.channel(&node.node_uri)?))
    }
}

/// `message` as a request that a node which is not the master accepts.
fn marked<T>(message: T) -> Result<tonic::Request<T>, Error> {
    let mut request = tonic::Request::new(message);
    let value = "true"
        .parse()
        .map_err(|_| Error::Protocol("metadata value".into()))?;
    request
        .metadata_mut()
        .insert(ALLOW_NON_MASTER_METADATA, value);
    Ok(request)
}
