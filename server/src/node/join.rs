//! Joining the plane at start-up (`plane.json`, the claims, the first record, the members, the
//! start-up mode checks), and the periodic check that the store is still the one joined.

use super::runtime::Runtime;
use super::{PersistMode, Refusal, StartError};
use crate::clock::wall_clock_ms;
use crate::election::{Decision, StartupVerdict};
use crate::store::{PutMode, StoreError, layout};
use haplane::{HaMode, MasterClaim, NodeState, PlaneInfo};

/// The format of `plane.json` and the records this build writes.
const FORMAT_VERSION: u32 = 1;

impl Runtime {
    /// Start-up: plane.json, the claims, our first record, the members, the mode checks.
    pub(super) async fn join_plane(&mut self) -> Result<(), StartError> {
        if self.election.is_standalone() {
            self.plane_id = "standalone".to_owned();
            self.publish();
            return Ok(());
        }
        self.load_or_create_plane().await?;
        self.load_claims().await.map_err(|e| self.store_error(e))?;
        self.check_node_id_unused().await?;
        self.write_record().await.map_err(|e| self.store_error(e))?;
        self.scan_members().await.map_err(|e| self.store_error(e))?;
        // Proving a record silent takes a read begun a full timeout after it was first seen.
        let deadline = self.clock.now()
            + self.options.election.heartbeat_timeout
            + self.options.poll_period * 3;
        loop {
            let now = self.clock.now();
            let verdict = if self.options.persist == PersistMode::Clean {
                // Any live node may be a master (or about to be one) that serves this state: an
                // unexpired claim is not needed for that, mid-failover there is none.
                match self.election.any_peer_liveness(now) {
                    Some(true) => return self.refuse(Refusal::CleanWhileLive).await,
                    Some(false) => StartupVerdict::Wait,
                    None => self.election.startup_verdict(now),
                }
            } else {
                self.election.startup_verdict(now)
            };
            match verdict {
                StartupVerdict::Proceed => {
                    // Take up the follower state now, so the first answer is not INITIALIZING;
                    // any claim waits for the first poll (AUTO nodes are in their grace period).
                    self.election.decide(now);
                    break;
                }
                StartupVerdict::Refuse(refusal) => return self.refuse(refusal.into()).await,
                StartupVerdict::Wait if now >= deadline => {
                    return Err(StartError::Refused(Refusal::MasterLivenessUnknown));
                }
                StartupVerdict::Wait => {
                    tokio::time::sleep(self.options.poll_period).await;
                    self.poll_store().await;
                    if self.options.persist == PersistMode::Clean {
                        self.scan_members().await.map_err(|e| self.store_error(e))?;
                    }
                }
            }
        }
        if self.options.persist == PersistMode::Clean {
            self.delete_managed_state()
                .await
                .map_err(|e| self.store_error(e))?;
        }
        // From here on a lease may be at stake: store calls get the lease-derived bound.
        self.joining = false;
        if self.options.ha_mode == HaMode::Master
            && let Decision::Claim { epoch, reason } = self.election.startup_claim()
        {
            // The verdict found no master that may act: nothing to wait out.
            let won = self
                .claim(epoch, &reason, true)
                .await
                .map_err(|e| self.store_error(e))?;
            if !won {
                return Err(StartError::Refused(Refusal::ClaimLost(epoch)));
            }
        }
        self.publish();
        Ok(())
    }

    /// Refuses to start while another process runs under this node id: two processes under
    /// one id would each take the other's claims for their own (docs/behaviour.md §1). A record
    /// of ours that does not say TERMINATED was left by a process that did not stop gracefully,
    /// or by one still running: it is read again every poll until it has been silent for a
    /// heartbeat timeout, and a change means that process runs. A process of this host that is
    /// gone is known dead at once.
    async fn check_node_id_unused(&mut self) -> Result<(), StartError> {
        let Some(first) = self.read_own_record().await? else {
            return Ok(());
        };
        if first.status == NodeState::Terminated || self.ran_here_and_is_gone(&first) {
            return Ok(());
        }
        let deadline = self.clock.now() + self.options.election.heartbeat_timeout;
        tracing::info!(
            pid = first.pid,
            hostname = %first.hostname,
            "this node id's record was left running; waiting to see it silent before joining"
        );
        loop {
            tokio::time::sleep(self.options.poll_period).await;
            let began = self.clock.now();
            let Some(current) = self.read_own_record().await? else {
                return Ok(());
            };
            if current.status == NodeState::Terminated {
                return Ok(());
            }
            if current.heartbeat != first.heartbeat || current.started_at_ms != first.started_at_ms
            {
                // Not written by us: we have written nothing yet.
                return Err(StartError::Refused(Refusal::NodeIdInUse {
                    node_id: current.node_id.to_string(),
                    pid: current.pid,
                    hostname: current.hostname,
                }));
            }
            if began >= deadline {
                return Ok(());
            }
        }
    }

    /// This node id's record as the store holds it, if there is one (an unreadable one counts
    /// as none: it is skipped and counted, as a scan skips it).
    async fn read_own_record(&mut self) -> Result<Option<haplane::NodeRecord>, StartError> {
        let key = layout::node(&self.options.election.node_id).map_err(|e| self.store_error(e))?;
        match self.bounded(self.store.get(&key)).await {
            Ok(body) => Ok(self.parse_record(&key, &body)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.store_error(err)),
        }
    }

    /// Whether `record` was written by a process of this host that no longer runs.
    fn ran_here_and_is_gone(&self, record: &haplane::NodeRecord) -> bool {
        record.hostname == self.options.election.hostname
            && record.pid != 0
            && process_gone(record.pid)
    }

    /// Refuses to start, publishing TERMINATED first so that peers do not wait for this node.
    async fn refuse(&mut self, refusal: Refusal) -> Result<(), StartError> {
        let _ = self.write_terminated().await;
        Err(StartError::Refused(refusal))
    }

    pub(super) async fn load_or_create_plane(&mut self) -> Result<(), StartError> {
        let key = layout::plane().map_err(|e| self.store_error(e))?;
        let existing = match self.bounded(self.store.get(&key)).await {
            Ok(body) => Some(body),
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => return Err(self.store_error(err)),
        };
        let body = match existing {
            Some(body) => body,
            None if self.options.persist == PersistMode::Rebind => {
                return Err(StartError::Refused(Refusal::NothingToRebind {
                    store: self.store.describe(),
                }));
            }
            None => {
                let plane = PlaneInfo {
                    plane_id: format!("{:016x}", rand::random::<u64>()),
                    created_at: wall_clock_ms(),
                    format_version: FORMAT_VERSION,
                };
                let body = layout::json_body(&plane).map_err(|e| self.store_error(e))?;
                match self
                    .bounded(self.store.put(&key, body.clone(), PutMode::Create))
                    .await
                {
                    Ok(()) => body,
                    // Another node created it first: use theirs.
                    Err(StoreError::AlreadyExists { .. }) => self
                        .bounded(self.store.get(&key))
                        .await
                        .map_err(|e| self.store_error(e))?,
                    Err(err) => return Err(self.store_error(err)),
                }
            }
        };
        let plane: PlaneInfo =
            serde_json::from_slice(&body).map_err(|err| StartError::Corrupt {
                store: self.store.describe(),
                message: format!("plane.json cannot be read: {err}"),
            })?;
        self.plane_id = plane.plane_id;
        Ok(())
    }

    /// Lists `master/` once and reads the highest claim.
    pub(super) async fn load_claims(&mut self) -> Result<(), StoreError> {
        let keys = self.bounded(self.store.list(layout::CLAIMS)).await?;
        let highest = keys.iter().filter_map(layout::claim_epoch).max();
        if let Some(epoch) = highest {
            self.read_claim(epoch).await?;
        }
        // Claims made while we listed are found by the next probe.
        self.probe_claims().await
    }

    /// Every `STORE_CHECK_EVERY` polls: is this still the store we joined? `plane.json` must hold
    /// our plane id and, on a master, our claim must still be there. If not, the node stops
    /// acting and takes no further part until restarted.
    pub(super) async fn check_store_identity(&mut self) -> Result<(), StoreError> {
        let plane_key = layout::plane()?;
        let problem = match self.bounded(self.store.get(&plane_key)).await {
            Err(StoreError::NotFound { .. }) => Some("plane.json is gone".to_owned()),
            Err(err) => return Err(err),
            Ok(body) => match serde_json::from_slice::<PlaneInfo>(&body) {
                Ok(plane) if plane.plane_id == self.plane_id => None,
                Ok(plane) => Some(format!(
                    "plane id changed from {} to {}",
                    self.plane_id, plane.plane_id
                )),
                Err(err) => Some(format!("plane.json cannot be read: {err}")),
            },
        };
        let problem = match (problem, self.election.state() == NodeState::Master) {
            (None, true) => {
                let epoch = self.election.epoch();
                match self.bounded(self.store.get(&layout::claim(epoch)?)).await {
                    Err(StoreError::NotFound { .. }) => {
                        Some(format!("our claim {} is gone", layout::claim(epoch)?))
                    }
                    Err(err) => return Err(err),
                    Ok(body) => match serde_json::from_slice::<MasterClaim>(&body) {
                        Ok(claim) if claim.node_id == self.options.election.node_id => None,
                        _ => Some(format!(
                            "our claim {} now names another node",
                            layout::claim(epoch)?
                        )),
                    },
                }
            }
            (problem, _) => problem,
        };
        if let Some(problem) = problem {
            let why = format!(
                "store {} was replaced or rolled back ({problem}); this node stopped acting and takes no part until restarted",
                self.store.describe()
            );
            tracing::error!("{why}");
            self.election.store_replaced(why, self.clock.now());
            self.publish();
        }
        Ok(())
    }

    pub(super) async fn delete_managed_state(&mut self) -> Result<(), StoreError> {
        for key in self.bounded(self.store.list(layout::STATE)).await? {
            match self.bounded(self.store.delete(&key)).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Whether process `pid` of this host no longer runs: it does not exist, or it has exited and
/// waits to be reaped (a zombie, as a crashed node is until its supervisor collects it).
pub(super) fn process_gone(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    if unsafe { libc::kill(raw, 0) } == -1 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // The state follows the command name, which may hold spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X'))
    })
}
