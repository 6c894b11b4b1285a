//! `LocalRole`: a sidecar's view of the one node beside it (not the master): whether that node
//! leads, in which epoch, and until when, followed over `WatchRole`. Leadership is believed only
//! while the node's last word about its lease lasts: a stream that breaks or falls silent ends it
//! by the lease, never later.

use crate::endpoint::endpoint;
use crate::error::Error;
use crate::options::{ConnectOptions, FollowerSettings};
use crate::transport::NodeChannel;
use haplane::NodeState;
use haplane::convert::node_state_from_wire;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamExt;

/// Taken off each lease the node reports: the time its event may have spent on the way here.
/// Beside the node (loopback) that is far less; the rest is covered by the plane's safety margin,
/// which keeps any other node from acting until after the lease's end.
const DELIVERY_ALLOWANCE: Duration = Duration::from_millis(50);

/// The node's role as last told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRole {
    /// The node's id.
    pub node_id: String,
    /// The state it reports.
    pub state: NodeState,
    /// The newest master epoch it knows; while it leads, the epoch of its term (a fencing token).
    pub epoch: u64,
    /// Whether it said it leads.
    pub leader: bool,
    /// While `leader`: the instant by which leadership must be taken as ended unless renewed
    /// (`None`: a node without a store, whose leadership no lease limits).
    pub valid_until: Option<Instant>,
}

impl NodeRole {
    /// Whether this role is leadership that still holds at `now`.
    pub fn leads_at(&self, now: Instant) -> bool {
        self.leader && self.valid_until.is_none_or(|until| now < until)
    }
}

/// The role of one node, followed in the background until dropped.
#[derive(Debug)]
pub struct LocalRole {
    roles: watch::Receiver<Option<NodeRole>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalRole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalRole {
    /// Follows the role of the node at `uri` (its own URI, not the plane's). Returns at once;
    /// `role()` is `None` until the node has answered. `options.poll_period` paces reconnects.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEndpoint`] when `uri` is not a valid URI.
    pub fn follow(uri: &str, options: &ConnectOptions) -> Result<Self, Error> {
        let settings = FollowerSettings::from_options(options);
        // Validates the URI now, so a typo fails here rather than in the background.
        endpoint(uri, &settings.endpoint)?;
        let (sender, roles) = watch::channel(None);
        let task = tokio::spawn(follow_role(uri.to_owned(), settings, sender));
        Ok(LocalRole { roles, task })
    }

    /// The role as last told, if the node has answered.
    pub fn role(&self) -> Option<NodeRole> {
        self.roles.borrow().clone()
    }

    /// Whether the node leads now (told so, and the lease it gave has not run out).
    pub fn is_leader(&self) -> bool {
        self.roles
            .borrow()
            .as_ref()
            .is_some_and(|role| role.leads_at(Instant::now()))
    }

    /// Every change of the role (a leader's renewals included).
    pub fn watch(&self) -> watch::Receiver<Option<NodeRole>> {
        self.roles.clone()
    }

    /// Resolves when the node leads, with its term.
    pub async fn leader(&self) -> LeaderTerm {
        let mut roles = self.roles.clone();
        loop {
            let role = roles.borrow_and_update().clone();
            if let Some(role) = role.filter(|role| role.leads_at(Instant::now())) {
                return LeaderTerm {
                    epoch: role.epoch,
                    roles,
                };
            }
            if roles.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One term of the node's leadership.
#[derive(Debug, Clone)]
pub struct LeaderTerm {
    epoch: u64,
    roles: watch::Receiver<Option<NodeRole>>,
}

impl LeaderTerm {
    /// The term's epoch, to pass downstream as a fencing token.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the term still holds now; check it before each piece of leader-only work.
    pub fn is_valid(&self) -> bool {
        self.roles
            .borrow()
            .as_ref()
            .is_some_and(|role| role.epoch == self.epoch && role.leads_at(Instant::now()))
    }

    /// Resolves when the term ends: the node says it stopped, moves to another epoch, its
    /// stream breaks, or the lease it last gave runs out, whichever comes first.
    pub async fn lost(&mut self) {
        loop {
            let role = self.roles.borrow_and_update().clone();
            let Some(role) = role.filter(|role| role.epoch == self.epoch) else {
                return;
            };
            if !role.leads_at(Instant::now()) {
                return;
            }
            tokio::select! {
                changed = self.roles.changed() => if changed.is_err() {
                    return;
                },
                () = async {
                    if let Some(until) = role.valid_until {
                        tokio::time::sleep_until(until).await;
                    }
                }, if role.valid_until.is_some() => return,
            }
        }
    }
}

/// The role an event gives, received at `received`.
fn role_from_event(event: pb::RoleEvent, received: Instant) -> Result<NodeRole, Error> {
    let state = node_state_from_wire(event.state).map_err(|e| Error::Protocol(e.to_string()))?;
    let valid_until = match (event.leader, event.lease_valid_for_ms) {
        (true, Some(ms)) => {
            Some(received + Duration::from_millis(ms).saturating_sub(DELIVERY_ALLOWANCE))
        }
        _ => None,
    };
    Ok(NodeRole {
        node_id: event.node_id,
        state,
        epoch: event.epoch,
        leader: event.leader,
        valid_until,
    })
}

/// Holds a `WatchRole` stream to `uri`, reopening it a poll period after it breaks, and
/// publishes each role; while the stream is down, a role that led is marked as leading no more.
async fn follow_role(
    uri: String,
    settings: FollowerSettings,
    roles: watch::Sender<Option<NodeRole>>,
) {
    loop {
        if let Err(err) = stream_roles(&uri, &settings, &roles).await {
            tracing::debug!(%uri, error = %err, "role stream ended");
        }
        // Without a stream there is no renewal to believe.
        roles.send_if_modified(|role| match role {
            Some(role) if role.leader => {
                role.leader = false;
                role.valid_until = None;
                true
            }
            _ => false,
        });
        if roles.is_closed() {
            return;
        }
        tokio::time::sleep(settings.poll_period).await;
    }
}

async fn stream_roles(
    uri: &str,
    settings: &FollowerSettings,
    roles: &watch::Sender<Option<NodeRole>>,
) -> Result<(), Error> {
    let channel = endpoint(uri, &settings.endpoint)?
        .connect()
        .await
        .map_err(|err| Error::NoEndpoint(format!("{uri}: {err}")))?;
    let mut client =
        HaServiceClient::new(NodeChannel::new(channel, settings.authorization.clone()));
    let mut stream = client
        .watch_role(pb::WatchRoleRequest {})
        .await
        .map_err(|status| Error::from_status(&status))?
        .into_inner();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|status| Error::from_status(&status))?;
        let role = role_from_event(event, Instant::now())?;
        roles.send_replace(Some(role));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(leader: bool, lease_ms: Option<u64>) -> pb::RoleEvent {
        pb::RoleEvent {
            node_id: "a".to_owned(),
            state: pb::NodeState::Master as i32,
            epoch: 3,
            leader,
            lease_valid_for_ms: lease_ms,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_believed_from_receipt_less_the_allowance_and_no_longer() {
        let received = Instant::now();
        let role = role_from_event(event(true, Some(1000)), received).unwrap();
        assert_eq!(
            role.valid_until,
            Some(received + Duration::from_millis(1000) - DELIVERY_ALLOWANCE)
        );
        assert!(role.leads_at(received));
        assert!(!role.leads_at(received + Duration::from_millis(960)));
        // Standalone: leadership no lease limits; a follower has no lease at all.
        assert!(
            role_from_event(event(true, None), received)
                .unwrap()
                .leads_at(received)
        );
        let follower = role_from_event(event(false, Some(1000)), received).unwrap();
        assert!(!follower.leads_at(received) && follower.valid_until.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_ends_when_its_lease_runs_out_without_a_renewal() {
        let (sender, roles) = watch::channel(Some(
            role_from_event(event(true, Some(1050)), Instant::now()).unwrap(),
        ));
        let mut term = LeaderTerm { epoch: 3, roles };
        assert!(term.is_valid());
        let started = Instant::now();
        term.lost().await;
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        assert!(!term.is_valid());
        // A renewal before the end keeps the term; another epoch ends it at once.
        sender.send_replace(Some(
            role_from_event(event(true, Some(1050)), Instant::now()).unwrap(),
        ));
        assert!(term.is_valid());
        let mut other = event(true, Some(1050));
        other.epoch = 4;
        sender.send_replace(Some(role_from_event(other, Instant::now()).unwrap()));
        assert!(!term.is_valid());
        term.lost().await;
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
    }
}
