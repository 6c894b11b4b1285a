//! Leadership for a program's own work: embed a haplane node in a process (no signal handling,
//! no PID file, the port optional) and do leader-only work while it leads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use haplane_server::participant::Participant;
//! let participant = Participant::builder("replica-1")
//!     .directory("/shared/haplane")
//!     .start()
//!     .await?;
//! loop {
//!     let mut term = participant.leader().await;
//!     let epoch = term.epoch(); // pass it downstream as a fencing token
//!     tokio::select! {
//!         () = term.lost() => {} // fires before another replica can lead
//!         () = async { /* leader-only work, fenced by `epoch` */ } => {}
//!     }
//!     # let _ = epoch; break;
//! }
//! # Ok(()) }
//! ```
//!
//! What the lease guarantees: `LeaderTerm::lost` fires, and `is_valid` turns false, no later than
//! the lease's end; another participant starts leading only a safety margin after that end (its
//! heartbeat timeout runs from its own observation). What it cannot guarantee: a process paused
//! longer than that (GC, SIGSTOP, a swapped-out VM) resumes believing nothing happened until it
//! next checks. Work that outlives a check must carry the epoch to a downstream system that
//! refuses epochs older than the newest it has seen.

use crate::app::{self, LaunchError, RunningNode};
use crate::config::{LaunchArgs, Settings};
use crate::node::{NodeHandle, Role};
use haplane::{Epoch, HaMode, NodeId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// Settings of a participant; `start` validates them as `haplane launch` validates its flags.
#[derive(Debug, Clone)]
pub struct ParticipantBuilder {
    node_id: String,
    args: LaunchArgs,
    serve: bool,
}

impl ParticipantBuilder {
    /// A directory store (local disk or NFS) shared by every participant of the plane.
    pub fn directory(mut self, path: impl Into<PathBuf>) -> Self {
        self.args.persistence_dir = Some(path.into());
        self
    }

    /// An S3 store, `s3://BUCKET/PREFIX`, at `endpoint` (an S3-compatible server) or AWS.
    pub fn s3(mut self, location: impl Into<String>, endpoint: Option<String>) -> Self {
        self.args.persistence_location = Some(location.into());
        self.args.s3_endpoint = endpoint;
        self
    }

    /// Election priority (higher wins). Default 0.
    pub fn priority(mut self, priority: i64) -> Self {
        self.args.priority = Some(priority);
        self
    }

    /// Heartbeat period and the time after which a silent peer is dead. Defaults 1 s and 10 s.
    pub fn timings(mut self, poll_period: Duration, heartbeat_timeout: Duration) -> Self {
        self.args.poll_period = Some(poll_period);
        self.args.heartbeat_timeout = Some(heartbeat_timeout);
        self
    }

    /// The HA mode. Default AUTO; HOT_STANDBY or HOT_BACKUP for a replica that never leads
    /// unless promoted (or never at all).
    pub fn mode(mut self, mode: HaMode) -> Self {
        self.args.ha_mode = Some(mode);
        self
    }

    /// Also serve the gRPC and REST port on `address`, so that operators, clients and peers
    /// reach this participant as any node (peers can then ask it to step down at once).
    pub fn serve(mut self, address: SocketAddr) -> Self {
        self.args.bind = Some(address);
        self.serve = true;
        self
    }

    /// Any other setting, as `haplane launch` takes it (`LaunchArgs`).
    pub fn settings(mut self, change: impl FnOnce(&mut LaunchArgs)) -> Self {
        change(&mut self.args);
        self
    }

    /// Joins the plane. Fails on invalid settings, an unusable store or a refused start (the
    /// errors of `haplane launch`).
    pub async fn start(mut self) -> Result<Participant, ParticipantError> {
        self.args.node_id = Some(NodeId::parse(&self.node_id)?);
        let settings = Settings::load(self.args).map_err(ParticipantError::Settings)?;
        let (stop, stop_rx) = watch::channel(false);
        let running = app::start(&settings, self.serve, stop_rx).await?;
        let leadership = follow_role(&running);
        Ok(Participant {
            running,
            stop,
            leadership,
        })
    }
}

/// Why a participant could not start.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    #[error(transparent)]
    NodeId(#[from] haplane::InvalidValue),
    #[error("invalid setting {0}")]
    Settings(crate::config::ConfigError),
    #[error(transparent)]
    Start(#[from] LaunchError),
}

/// A node inside this process.
pub struct Participant {
    running: RunningNode,
    stop: watch::Sender<bool>,
    leadership: watch::Receiver<Role>,
}

/// Publishes the node's role changes until the node stops.
fn follow_role(running: &RunningNode) -> watch::Receiver<Role> {
    use futures::StreamExt;
    let mut roles = Box::pin(running.handle.role_changes());
    let (sender, receiver) = watch::channel(running.handle.role());
    tokio::spawn(async move {
        while let Some(role) = roles.next().await {
            sender.send_replace(role);
        }
        // The node stopped: whatever it was, it no longer leads.
        sender.send_modify(|role| {
            role.leader = false;
            role.valid_until = None;
        });
    });
    receiver
}

impl Participant {
    /// A participant named `node_id` ([A-Za-z0-9_-]{1,64}, unique in the plane, stable across
    /// restarts), to be given a store.
    pub fn builder(node_id: &str) -> ParticipantBuilder {
        ParticipantBuilder {
            node_id: node_id.to_owned(),
            args: LaunchArgs::default(),
            serve: false,
        }
    }

    /// Whether this participant leads now (read off the node at this instant, not off the
    /// relayed `leadership`, which a step-down reaches a task switch later).
    pub fn is_leader(&self) -> bool {
        self.running.handle.role().leader
    }

    /// This node's role (leader, epoch, lease end) now and every change of it, a leader's
    /// renewals included.
    pub fn leadership(&self) -> watch::Receiver<Role> {
        self.leadership.clone()
    }

    /// Resolves when this participant leads, with its term.
    pub async fn leader(&self) -> LeaderTerm {
        let mut leadership = self.leadership.clone();
        loop {
            // Marked seen before the role is read, so a change after the read wakes us.
            leadership.borrow_and_update();
            let role = self.running.handle.role();
            if role.leader {
                return LeaderTerm {
                    epoch: role.epoch,
                    leadership,
                    role_now: RoleNow::of(&self.running.handle),
                };
            }
            if leadership.changed().await.is_err() {
                // The participant stopped: it will never lead again.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The node's id in the plane.
    pub fn node_id(&self) -> &NodeId {
        &self.running.node_id
    }

    /// The port's address, when it serves one.
    pub fn address(&self) -> Option<SocketAddr> {
        self.running.address
    }

    /// Leaves the plane gracefully, as SIGTERM does for `haplane launch`: a leader stops leading
    /// first (its terms' `lost` fire), then publishes TERMINATED and nudges its peers, so the
    /// next leader starts within about a poll instead of a heartbeat timeout.
    pub async fn resign(self) -> Result<(), LaunchError> {
        let _ = self.stop.send(true);
        self.running.finished().await
    }
}

/// One term of leadership: its epoch, and the means to know when it ends. Each check reads the
/// node's role at that instant; the relayed `leadership` only wakes `lost`.
#[derive(Debug, Clone)]
pub struct LeaderTerm {
    epoch: Epoch,
    leadership: watch::Receiver<Role>,
    role_now: RoleNow,
}

/// Reads the node's role at the instant of the call.
#[derive(Clone)]
struct RoleNow(std::sync::Arc<dyn Fn() -> Role + Send + Sync>);

impl RoleNow {
    fn of(node: &NodeHandle) -> Self {
        let node = node.clone();
        Self(std::sync::Arc::new(move || node.role()))
    }
}

impl std::fmt::Debug for RoleNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoleNow")
    }
}

impl LeaderTerm {
    /// The term's epoch: strictly greater than every earlier term's in the plane. Pass it to
    /// downstream systems as a fencing token.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Whether the term still holds now: the participant leads in this epoch and its lease has
    /// not run out. Check it before each piece of leader-only work.
    pub fn is_valid(&self) -> bool {
        let role = (self.role_now.0)();
        role.epoch == self.epoch && role.leader
    }

    /// Resolves when the term ends: the participant stops leading, moves to another epoch, or
    /// its lease runs out unrenewed, whichever comes first, never after the lease's end.
    pub async fn lost(&mut self) {
        loop {
            self.leadership.borrow_and_update();
            if !self.is_valid() {
                return;
            }
            let expiry = (self.role_now.0)()
                .valid_until
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                changed = self.leadership.changed() => if changed.is_err() {
                    return;
                },
                () = async {
                    if let Some(at) = expiry {
                        tokio::time::sleep_until(at).await;
                    }
                }, if expiry.is_some() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haplane::NodeState;
    use std::time::Instant;

    fn leading_until(until: Instant) -> Role {
        Role {
            state: NodeState::Master,
            leader: true,
            epoch: 3,
            valid_until: Some(until),
        }
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// A term whose node's role is `node`'s (each check leads only within its lease, as
    /// `NodeHandle::role` reads it), woken by `leadership`.
    fn term(node: watch::Receiver<Role>, leadership: watch::Receiver<Role>) -> LeaderTerm {
        LeaderTerm {
            epoch: 3,
            leadership,
            role_now: RoleNow(std::sync::Arc::new(move || {
                let role = *node.borrow();
                Role {
                    leader: role.leads_at(now()),
                    ..role
                }
            })),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_ends_by_its_lease_even_while_the_leadership_says_leader() {
        let end = now() + Duration::from_millis(750);
        let (sender, leadership) = watch::channel(leading_until(end));
        let mut term = term(leadership.clone(), leadership);
        assert!(term.is_valid());
        term.lost().await;
        assert_eq!(now(), end);
        // Nothing was sent: the lease alone ended the term.
        assert!(!term.is_valid());
        // Word of a renewal in the same epoch (the node held it; only the word was late) holds the
        // term again: a node whose lease lapsed is fenced and never renews that epoch. A newer
        // epoch ends it.
        sender.send_replace(leading_until(now() + Duration::from_secs(1)));
        assert!(term.is_valid());
        sender.send_replace(Role {
            epoch: 4,
            ..leading_until(now() + Duration::from_secs(1))
        });
        assert!(!term.is_valid());
        term.lost().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_down_ends_the_term_before_the_relayed_leadership_hears_of_it() {
        let lease = leading_until(now() + Duration::from_secs(5));
        let (node, node_role) = watch::channel(lease);
        let (_relay, relayed) = watch::channel(lease);
        let mut term = term(node_role, relayed);
        assert!(term.is_valid());
        // The node stepped down for a switchover: a peer may lead as soon as it was answered.
        node.send_replace(Role {
            state: NodeState::HotStandby,
            leader: false,
            epoch: 3,
            valid_until: None,
        });
        assert!(
            !term.is_valid(),
            "valid while the relay lags behind the node"
        );
        let started = now();
        term.lost().await;
        assert_eq!(now(), started, "lost waits for the relay");
    }
}
