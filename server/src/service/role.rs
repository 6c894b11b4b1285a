//! This node's own role as the adapters serve it (`GetState`'s lease, `WatchRole`, REST
//! `/v1/server/ha/role`): the node's `Role`, stamped with how long its lease lasts when read.

use super::error::ServiceError;
use super::{HaCore, WatcherGuard};
use crate::node::Role;
use haplane::{Epoch, NodeState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::Stream;

/// This node's role as a leader-only worker beside it sees it, at the instant it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleView {
    pub node_id: String,
    pub state: NodeState,
    pub epoch: Epoch,
    pub leader: bool,
    /// As `StateView::lease_valid_for`.
    pub lease_valid_for: Option<Duration>,
}

impl RoleView {
    fn of(node_id: &str, role: Role, now: Instant) -> Self {
        RoleView {
            node_id: node_id.to_owned(),
            state: role.state,
            epoch: role.epoch,
            leader: role.leader,
            lease_valid_for: role.lease_left(now),
        }
    }
}

impl HaCore {
    /// This node's own role now (`WatchRole`'s first event, REST `/v1/server/ha/role`).
    pub fn role(&self) -> RoleView {
        let now = self.now();
        self.inner
            .node
            .read_snapshot(|snapshot| RoleView::of(&snapshot.node_id, snapshot.role(now), now))
    }

    /// This node's role and every change of it (`WatchRole`), each stamped when sent; ends with
    /// UNAVAILABLE when the node stops. Counted as a watcher while open.
    pub fn role_events(
        &self,
        watcher: WatcherGuard,
    ) -> impl Stream<Item = Result<RoleView, ServiceError>> + Send + use<> {
        use futures::StreamExt;
        let node_id = self.inner.node.read_snapshot(|s| s.node_id.clone());
        let clock = Arc::clone(&self.inner.node.clock);
        let mut stopped = self.stopped();
        let roles = self.inner.node.role_changes();
        let ended = async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        roles
            .map(move |role| {
                let _counted = &watcher;
                Ok(RoleView::of(&node_id, role, clock.now()))
            })
            .take_until(ended)
            .chain(futures::stream::once(async {
                Err(ServiceError::Unavailable(
                    "node is shutting down".to_owned(),
                ))
            }))
    }
}
