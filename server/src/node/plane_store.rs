//! The store layout (SPEC 4: `nodes/<id>.json`, `master/<epoch>.json`, JSON bodies) and the reads
//! and writes of records and claims that feed the election.

use super::handle::NodeCounters;
use super::runtime::Runtime;
use crate::clock::wall_clock_ms;
use crate::store::{Key, PutMode, StoreError, layout};
use haplane::{Epoch, MasterClaim, NodeId, NodeRecord, NodeState};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

impl Runtime {
    /// Reads the claim at `epoch` into the election. An unreadable claim still burns its epoch.
    pub(super) async fn read_claim(&mut self, epoch: Epoch) -> Result<(), StoreError> {
        let body = self.bounded(self.store.get(&layout::claim(epoch)?)).await?;
        let claim = match serde_json::from_slice::<MasterClaim>(&body) {
            Ok(claim) if claim.epoch == epoch => claim,
            parsed => {
                tracing::warn!(key = %layout::claim(epoch)?, error = ?parsed.err(), "unreadable master claim; treating its epoch as taken by nobody");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                MasterClaim {
                    epoch,
                    node_id: NodeId::parse("unreadable-claim").map_err(|e| {
                        StoreError::Generic {
                            message: e.to_string(),
                        }
                    })?,
                    node_uri: String::new(),
                    claimed_at: 0,
                    reason: "unreadable".to_owned(),
                }
            }
        };
        let was_master = self.election.state() == NodeState::Master;
        self.election.observe_claim(claim);
        if was_master && self.election.state() != NodeState::Master {
            tracing::warn!(epoch, "a newer master claim exists; stepping down");
            self.publish();
        }
        Ok(())
    }

    /// Probes `master/<known + 1>` until there is none (one GET at steady state). The read that
    /// finds none lets a master renew its lease (`Election::no_newer_claim`).
    pub(super) async fn probe_claims(&mut self) -> Result<(), StoreError> {
        loop {
            let next = self.election.epoch() + 1;
            let started = self.clock.now();
            match self.read_claim(next).await {
                Ok(()) => continue,
                Err(StoreError::NotFound { .. }) => {
                    self.election.no_newer_claim(started, self.clock.now());
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads the claim of the highest epoch a record has seen, when it is above every claim we
    /// know: the plane moved on while we did not look (or the store lost that claim).
    pub(super) async fn catch_up_claims(&mut self) -> Result<(), StoreError> {
        let seen = self.election.highest_epoch_seen();
        if seen <= self.election.epoch() {
            return Ok(());
        }
        match self.read_claim(seen).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    pub(super) async fn write_record(&mut self) -> Result<(), StoreError> {
        let started = self.clock.now();
        self.election
            .set_state_seq(self.state_seq.load(Ordering::Relaxed));
        let record = self.election.next_record(wall_clock_ms(), started);
        let result = match (layout::node(&record.node_id), layout::json_body(&record)) {
            (Ok(key), Ok(body)) => {
                self.bounded(self.store.put(&key, body, PutMode::Overwrite))
                    .await
            }
            (Err(err), _) | (_, Err(err)) => Err(err),
        };
        let finished = self.clock.now();
        self.election
            .own_write_finished(started, finished, result.is_ok());
        self.counters
            .heartbeat_write_seconds
            .observe(finished.duration_since(started).as_secs_f64());
        if result.is_ok() {
            NodeCounters::mark(&self.counters.last_heartbeat_written, finished);
        }
        result
    }

    pub(super) async fn write_terminated(&mut self) -> Result<(), StoreError> {
        self.election.terminate();
        self.write_record().await
    }

    pub(super) fn parse_record(&self, key: &Key, body: &[u8]) -> Option<NodeRecord> {
        match serde_json::from_slice::<NodeRecord>(body) {
            Ok(record) if key.file_name() == format!("{}.json", record.node_id) => Some(record),
            Ok(record) => {
                tracing::warn!(%key, node_id = %record.node_id, "record's node_id does not match its key; skipped");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(err) => {
                tracing::warn!(%key, error = %err, "unreadable node record; skipped");
                self.counters
                    .skipped_records
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Lists `nodes/` and reads every record (concurrently).
    pub(super) async fn scan_members(&mut self) -> Result<(), StoreError> {
        let started = self.clock.now();
        let keys = self.bounded(self.store.list(layout::NODES)).await?;
        let this = &*self;
        let reads = keys
            .iter()
            .filter(|key| key.as_str().ends_with(".json"))
            .map(|key| async move { (key, this.bounded(this.store.get(key)).await) });
        let results = futures::future::join_all(reads).await;
        let now = self.clock.now();
        let mut present = BTreeSet::new();
        let mut records = Vec::new();
        for (key, result) in results {
            match result {
                Ok(body) => {
                    if let Some(record) = self.parse_record(key, &body) {
                        present.insert(record.node_id.clone());
                        records.push(record);
                    }
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        for record in records {
            self.election.observe_record(record, started, now);
        }
        let claimant = self.election.claim().map(|claim| claim.node_id.clone());
        for id in self.election.peer_ids().into_iter().chain(claimant) {
            if !present.contains(&id) {
                self.election.observe_absent(&id, started, now);
            }
        }
        self.last_scan = Some(now);
        Ok(())
    }

    /// Reads the current claimant's record (one GET), if it is someone else.
    pub(super) async fn read_master_record(&mut self) -> Result<(), StoreError> {
        let Some(holder) = self.election.claim().map(|claim| claim.node_id.clone()) else {
            return Ok(());
        };
        if holder == self.options.election.node_id {
            return Ok(());
        }
        let key = layout::node(&holder)?;
        let started = self.clock.now();
        match self.bounded(self.store.get(&key)).await {
            Ok(body) => {
                if let Some(record) = self.parse_record(&key, &body) {
                    self.election
                        .observe_record(record, started, self.clock.now());
                }
                Ok(())
            }
            Err(StoreError::NotFound { .. }) => {
                self.election
                    .observe_absent(&holder, started, self.clock.now());
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Creates `master/<epoch>`; `Ok(false)` when another node got there first.
    /// `predecessor_stopped`: see `Election::claim_won`.
    pub(super) async fn claim(
        &mut self,
        epoch: Epoch,
        reason: &str,
        predecessor_stopped: bool,
    ) -> Result<bool, StoreError> {
        let claim = MasterClaim {
            epoch,
            node_id: self.options.election.node_id.clone(),
            node_uri: self.options.election.node_uri.clone(),
            claimed_at: wall_clock_ms(),
            reason: reason.to_owned(),
        };
        let key = layout::claim(epoch)?;
        match self
            .bounded(
                self.store
                    .put(&key, layout::json_body(&claim)?, PutMode::Create),
            )
            .await
        {
            Ok(()) => {
                self.election
                    .claim_won(claim, predecessor_stopped, self.clock.now());
                if self.election.state() == NodeState::Master {
                    tracing::info!(epoch, reason, predecessor_stopped, "became master");
                }
                // Publish before the record write: peers can read the claim from now on and
                // push it to clients, whose next call must find this node already MASTER.
                self.publish();
                if let Err(err) = self.write_record().await {
                    tracing::warn!(error = %err, "cannot publish the new claim in our record");
                }
                self.publish();
                self.nudge_peers();
                Ok(self.election.state() == NodeState::Master)
            }
            Err(StoreError::AlreadyExists { .. }) => {
                self.read_claim(epoch).await?;
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}
