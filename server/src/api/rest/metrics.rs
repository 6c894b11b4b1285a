//! `/metrics` in the OpenMetrics text format: build info, the node's state, epoch, lease
//! remaining, live members, failovers, heartbeat write latency, store requests by operation and
//! result and their latency by operation, open watchers, managed-state lag and damage, skipped
//! records and failed authentications.

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
    registry.register(
        "build",
        "The haplane build",
        prometheus_client::metrics::info::Info::new(vec![(
            "version",
            env!("CARGO_PKG_VERSION").to_owned(),
        )]),
    );
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
            "live_members",
            "Members whose heartbeat this node saw change, as of its last full scan of the records (itself included)",
            i64::try_from(view.live_members).unwrap_or(i64::MAX),
        ),
        (
            "state_lag_entries",
            "Managed-state log entries the master has published past this node's position",
            i64::try_from(view.state_lag_entries).unwrap_or(i64::MAX),
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
    let lease = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    lease.set(view.lease_remaining.map_or(0.0, |left| left.as_secs_f64()));
    registry.register_with_unit(
        "lease_remaining",
        "While this node acts as master, how long its lease lasts from now (0 otherwise)",
        prometheus_client::registry::Unit::Seconds,
        lease,
    );
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
    registry.register_with_unit(
        "store_request",
        "Time taken by each store request, by operation",
        prometheus_client::registry::Unit::Seconds,
        view.store_latency.clone(),
    );
    registry.register(
        "heartbeat_write_seconds",
        "Time taken by each write of this node's own record",
        core.heartbeat_write_seconds(),
    );
}
