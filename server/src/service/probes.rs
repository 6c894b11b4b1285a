//! The probes for Kubernetes and systemd (`/livez`, `/readyz`): each check named, with why it
//! fails, so the status code can be acted on and the body read.

use super::HaCore;
use crate::node::NodeCounters;
use haplane::NodeState;
use std::time::Duration;

/// One named check and, if it fails, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub problem: Option<String>,
}

impl Check {
    fn new(name: &'static str, problem: Option<String>) -> Self {
        Self { name, problem }
    }
}

impl HaCore {
    /// Live: not stopped, and the node loop began a poll within two heartbeat timeouts (its store
    /// calls are bounded, so a loop that stops polling is stuck). A standalone node (HA disabled,
    /// or no store) neither polls nor writes a record: those checks pass for it.
    pub fn liveness(&self) -> Vec<Check> {
        let bound = self.inner.heartbeat_timeout * 2 + self.inner.poll_period;
        let last_poll = NodeCounters::read(&self.inner.node.counters.last_poll);
        vec![
            Check::new(
                "running",
                (!self.is_up()).then(|| "the node is stopping".to_owned()),
            ),
            Check::new(
                "node loop",
                self.polls()
                    .then(|| self.stale("no poll", last_poll, bound))
                    .flatten(),
            ),
        ]
    }

    /// Whether this node polls the store (and writes its record): every node but a standalone one.
    fn polls(&self) -> bool {
        !self
            .inner
            .node
            .read_snapshot(|snapshot| snapshot.standalone)
    }

    /// Ready: live, joined a plane, its record written within the heartbeat timeout (the store is
    /// reachable), in a working state, and, where its role needs the managed state (master, hot
    /// copies), that state loaded (and fenced on a master) and readable.
    pub fn readiness(&self) -> Vec<Check> {
        let node = &self.inner.node;
        let snapshot = node.snapshot();
        let state = self.current_state();
        let written = NodeCounters::read(&node.counters.last_heartbeat_written);
        let mut checks = self.liveness();
        checks.push(Check::new(
            "plane",
            snapshot
                .plane_id
                .is_empty()
                .then(|| "not joined to a plane yet".to_owned()),
        ));
        checks.push(Check::new(
            "store",
            self.polls()
                .then(|| {
                    self.stale(
                        "no heartbeat written",
                        written,
                        self.inner.heartbeat_timeout,
                    )
                })
                .flatten(),
        ));
        checks.push(Check::new(
            "state",
            matches!(
                state,
                NodeState::Failed | NodeState::Terminated | NodeState::Initializing
            )
            .then(|| format!("the node is {state}")),
        ));
        let needs_state = matches!(
            state,
            NodeState::Master | NodeState::HotStandby | NodeState::HotBackup
        );
        let managed = match node.state_damage() {
            Some(damage) if needs_state => Some(format!("managed state damaged: {damage}")),
            _ if needs_state && !node.state_ready() => {
                Some("managed state not loaded yet".to_owned())
            }
            _ => None,
        };
        checks.push(Check::new("managed state", managed));
        checks
    }

    /// Why `at` is too old (or missing), if it is.
    fn stale(&self, what: &str, at: Option<std::time::Instant>, bound: Duration) -> Option<String> {
        match at {
            None => Some(format!("{what} yet")),
            Some(at) => {
                let age = self.now().saturating_duration_since(at);
                (age > bound).then(|| {
                    format!(
                        "{what} for {} (bound {})",
                        humantime::format_duration(Duration::from_millis(
                            u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
                        )),
                        humantime::format_duration(bound)
                    )
                })
            }
        }
    }
}
