//! REST for a node's own role: `GET /v1/server/ha/role` and its SSE stream
//! `/v1/server/ha/role/watch` (docs/behaviour.md §5.5).

use super::{sse, watchers_full};
use crate::clock::millis;
use crate::service::{HaCore, RoleView};
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

fn role_json(role: &RoleView) -> Value {
    json!({
        "nodeId": role.node_id,
        "state": role.state,
        "epoch": role.epoch,
        "leader": role.leader,
        "leaseValidForMs": role.lease_valid_for.map(millis),
    })
}

/// This node's own role: `{nodeId, state, epoch, leader, leaseValidForMs}` (the lease only while
/// leader; null for a standalone master).
pub(super) async fn get_role(State(core): State<HaCore>) -> Json<Value> {
    Json(role_json(&core.role()))
}

/// SSE of this node's role: `role` events (the current role, every change and every renewal of
/// a leader's lease), then `end` when the node stops.
pub(super) async fn watch_role_sse(State(core): State<HaCore>) -> Response {
    let watcher = match core.count_watcher() {
        Ok(watcher) => watcher,
        Err(full) => return watchers_full(&full),
    };
    sse::response(core.role_events(watcher), |role| {
        sse::render("role", &role_json(role).to_string(), None)
    })
}
