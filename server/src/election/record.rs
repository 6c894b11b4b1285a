//! What this node publishes about itself (its record, with the heartbeat counter) and the
//! listings of every node built from it and the peers' records (`ListStates`, members).

use super::Election;
use haplane::{Member, NodeRecord};
use std::time::{Duration, Instant};

/// One row of `ListStates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub record: NodeRecord,
    pub live: bool,
    pub last_seen_age: Duration,
}

impl Election {
    /// The record to write now; bumps the heartbeat counter.
    pub fn next_record(&mut self, wall_clock_ms: i64, now: Instant) -> NodeRecord {
        self.heartbeat += 1;
        self.record_snapshot(wall_clock_ms, now)
    }

    /// The record as it would be written, without bumping the counter.
    pub fn record_snapshot(&self, wall_clock_ms: i64, now: Instant) -> NodeRecord {
        NodeRecord {
            node_id: self.cfg.node_id.clone(),
            node_uri: self.cfg.node_uri.clone(),
            status: self.state,
            priority: self.priority,
            heartbeat: self.heartbeat,
            version: self.cfg.version.clone(),
            epoch_seen: self.epoch(),
            local_timestamp_ms: wall_clock_ms,
            started_at_ms: self.cfg.started_at_ms,
            pid: self.cfg.pid,
            hostname: self.cfg.hostname.clone(),
            electable: self.publishes_electable(now),
            state_seq: self.state_seq,
        }
    }

    /// Every known node, us first, with liveness by our clock.
    pub fn summaries(&self, wall_clock_ms: i64, now: Instant) -> Vec<NodeSummary> {
        let own = NodeSummary {
            record: self.record_snapshot(wall_clock_ms, now),
            live: true,
            last_seen_age: Duration::ZERO,
        };
        std::iter::once(own)
            .chain(self.peers.values().map(|peer| NodeSummary {
                record: peer.record.clone(),
                live: self.is_live(peer, now),
                last_seen_age: now.saturating_duration_since(peer.last_change),
            }))
            .collect()
    }

    /// Members as pushed to watchers.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        self.summaries(0, now)
            .into_iter()
            .map(|summary| Member {
                node_id: summary.record.node_id.to_string(),
                node_uri: summary.record.node_uri,
                status: summary.record.status,
                live: summary.live,
            })
            .collect()
    }
}
