//! Probing the other members when the node the follower streams from shows no master: each is
//! asked for its state (`GetState`) at once, bounded, and the answers go to `Follow::after_probe`.

use crate::endpoint::endpoint;
use crate::follow::ProbeAnswer;
use crate::options::FollowerSettings;
use crate::transport::NodeChannel;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane::{MasterRef, MasterView};

/// Asks every member in `uris` for its state at once, each bounded by the connect timeout plus a
/// poll period; members that do not answer are left out.
pub(crate) async fn probe_members(
    uris: Vec<String>,
    settings: FollowerSettings,
) -> Vec<ProbeAnswer> {
    let bound = settings.endpoint.connect_timeout + settings.poll_period;
    let asks = uris.into_iter().map(|uri| {
        let settings = settings.clone();
        async move {
            let ask = async {
                let channel = NodeChannel::new(
                    endpoint(&uri, &settings.endpoint)
                        .ok()?
                        .connect()
                        .await
                        .ok()?,
                    settings.authorization.clone(),
                );
                let state = HaServiceClient::new(channel)
                    .get_state(pb::GetStateRequest {})
                    .await
                    .ok()?
                    .into_inner();
                Some(ProbeAnswer {
                    node_id: state.node_id,
                    view: MasterView {
                        epoch: state.epoch,
                        master: MasterRef::from_wire(state.master_id, state.master_uri),
                        plane_id: state.plane_id,
                        members: Vec::new(),
                    },
                    uri,
                })
            };
            tokio::time::timeout(bound, ask).await.ok().flatten()
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
