//! This node's own role as the adapters serve it (`GetState`'s lease, `WatchRole`, REST
//! `/v1/server/ha/role`): the node's `Role`, stamped with how long its lease lasts when read.

use super::error::ServiceError;
use super::{HaCore, WatcherGuard};
use crate::node::Role;
use haplane::{Epoch, NodeState};
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
    /// This node's own role now (`WatchRole`'s events, REST `/v1/server/ha/role`). A leader's
    /// lease reported here is a promise a switchover's successor waits out
    /// (`NodeHandle::promise_role`).
    pub fn role(&self) -> RoleView {
        let (role, now) = self.inner.node.promise_role();
        self.inner
            .node
            .read_snapshot(|snapshot| RoleView::of(&snapshot.node_id, role, now))
    }

    /// This node's role and every change of it (`WatchRole`), each read again (`role`) when sent;
    /// ends with UNAVAILABLE when the node stops. Counted as a watcher while open.
    pub fn role_events(
        &self,
        watcher: WatcherGuard,
    ) -> impl Stream<Item = Result<RoleView, ServiceError>> + Send + use<> {
        use futures::StreamExt;
        let core = self.clone();
        let mut stopped = self.stopped();
        let roles = self.inner.node.role_changes();
        let ended = async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        roles
            .map(move |_changed| {
                let _counted = &watcher;
                Ok(core.role())
            })
            .take_until(ended)
            .chain(futures::stream::once(async {
                Err(ServiceError::Unavailable(
                    "node is shutting down".to_owned(),
                ))
            }))
    }
}
