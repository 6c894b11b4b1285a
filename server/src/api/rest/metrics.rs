//! Prometheus `/metrics`: the node's state, epoch, failovers, heartbeat write latency, store
//! requests by operation and result, open watchers, skipped records and failed authentications,
//! in the text format.

use crate::service::{HaCore, MetricsView};
use haplane::NodeState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Renders every metric of `core` now. Values are read at scrape time; only the latency
/// histogram lives between scrapes.
pub fn render(core: &HaCore) -> Result<String, std::fmt::Error> {
    let view = core.metrics();
    let mut registry = Registry::with_prefix("haplane");
    let state = Family::<Labels, Gauge>::default();
    for candidate in NodeState::ALL {
        state
            .get_or_create(&vec![("state", candidate.as_str().to_owned())])
            .set(i64::from(*candidate == view.state));
    }
    registry.register(
        "node_state",
        "1 for the node's current state, 0 for the others",
        state,
    );
    let gauges = [
        (
            "epoch",
            "The highest master epoch this node knows",
            i64::try_from(view.epoch).unwrap_or(i64::MAX),
        ),
        ("priority", "This node's election priority", view.priority),
        (
            "watchers",
            "Open WatchMaster, SSE and entity Watch streams",
            view.watchers,
        ),
        (
            "state_damaged",
            "1 while the managed-state log cannot be read past this node's position (see the health body)",
            i64::from(view.state_damage.is_some()),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }
    let counters = [
        (
            "failovers",
            "Changes of master this node has seen (the first election it saw is not one)",
            view.failovers,
        ),
        ("polls", "Polls of the store this node has made", view.polls),
        (
            "skipped_records",
            "Store records skipped because they could not be read",
            view.skipped_records,
        ),
        (
            "auth_failures",
            "Requests refused for wrong credentials (not for missing ones)",
            crate::api::auth::failures_total(),
        ),
    ];
    for (name, help, value) in counters {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    register_store_figures(&mut registry, core, &view);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// Store requests by operation and result, and the time each heartbeat write took.
fn register_store_figures(registry: &mut Registry, core: &HaCore, view: &MetricsView) {
    let requests = Family::<Labels, Counter>::default();
    for ((operation, result), count) in &view.store_requests {
        requests
            .get_or_create(&vec![
                ("operation", (*operation).to_owned()),
                ("result", (*result).to_owned()),
            ])
            .inc_by(*count);
    }
    registry.register(
        "store_requests",
        "Store requests by operation and result",
        requests,
    );
    registry.register(
        "heartbeat_write_seconds",
        "Time taken by each write of this node's own record",
        core.heartbeat_write_seconds(),
    );
}
