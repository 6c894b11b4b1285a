//! The REST face, compatible with Brooklyn's `/v1/server/ha/*` endpoints (JSON bodies, form
//! parameters, the non-master 403 guard), plus the SSE master watch; a thin adapter over `HaCore`.

pub mod entities;
mod host;
pub mod metrics;
mod role;
mod sse;

pub use host::HostPolicy;

use crate::clock::millis;
use crate::service::encoded::LastEncoded;
use crate::service::error::{NOT_MASTER_MESSAGE, ServiceError};
use crate::service::{Access, HaCore, HealthClass, master_events};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use haplane::wire::ALLOW_NON_MASTER_HEADERS;
use haplane::{HaMode, MasterRef, MasterView, NodeState};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;
use tower::ServiceExt;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON error body: `{"message": ..., "error": <status>}` plus any extra fields.
pub(crate) fn error_response(status: StatusCode, message: &str, extra: Value) -> Response {
    let mut body = json!({ "message": message, "error": status.as_u16() });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, Json(body)).into_response()
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match self {
            ServiceError::NotMaster { master } => {
                let (master_id, master_uri) = MasterRef::into_wire(master);
                error_response(
                    status,
                    NOT_MASTER_MESSAGE,
                    json!({ "masterId": master_id, "masterUri": master_uri }),
                )
            }
            ServiceError::InvalidArgument {
                ref field,
                ref message,
            } => {
                let parameter = rest_spelling(field);
                error_response(
                    status,
                    &format!("invalid parameter {parameter}: {message}"),
                    json!({ "parameter": parameter }),
                )
            }
            other => error_response(status, &other.to_string(), Value::Null),
        }
    }
}

/// A field as the REST shim spells its parameters (`node_id` → `nodeId`); the service names
/// fields as the proto does.
fn rest_spelling(field: &str) -> String {
    let mut words = field.split('_');
    let mut spelled = words.next().unwrap_or_default().to_owned();
    for word in words {
        let mut letters = word.chars();
        spelled.extend(letters.next().map(|first| first.to_ascii_uppercase()));
        spelled.push_str(letters.as_str());
    }
    spelled
}

fn bad_parameter(parameter: &str, message: &str) -> ServiceError {
    ServiceError::InvalidArgument {
        field: parameter.to_owned(),
        message: message.to_owned(),
    }
}

/// Form parameters from the body (`application/x-www-form-urlencoded`) and the query string.
fn form_parameters(
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<HashMap<String, String>, ServiceError> {
    let mut parameters: HashMap<String, String> = serde_urlencoded::from_bytes(body)
        .map_err(|err| bad_parameter("body", &format!("not a URL-encoded form: {err}")))?;
    for (key, value) in query {
        parameters
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    Ok(parameters)
}

fn required<'a>(
    parameters: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, ServiceError> {
    parameters
        .get(name)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| bad_parameter(name, "missing form parameter"))
}

fn allows_non_master(headers: &HeaderMap) -> bool {
    ALLOW_NON_MASTER_HEADERS.iter().any(|name| {
        headers
            .get(*name)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
    })
}

/// Wraps the changing methods of `routes` in Brooklyn's guard (on a non-master a change is
/// refused with 403 unless one of the allow headers says `true`) and the body limit (413).
/// Reads take no body and are never guarded, so they do not pay for either.
pub fn guard_changes<S>(core: &HaCore, routes: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .route_layer(middleware::from_fn_with_state(
            core.clone(),
            non_master_guard,
        ))
        .route_layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn non_master_guard(State(core): State<HaCore>, request: Request, next: Next) -> Response {
    if !allows_non_master(request.headers()) && !core.is_master() {
        return core.not_master().into_response();
    }
    next.run(request).await
}

/// Each state as its JSON string, rendered once, indexed by `NodeState as usize` (the order of
/// `NodeState::ALL`): load balancers poll `GET /v1/server/ha/state`.
static STATE_BODIES: LazyLock<Vec<&'static [u8]>> = LazyLock::new(|| {
    NodeState::ALL
        .iter()
        .map(|state| &*Vec::leak(json!(state.as_str()).to_string().into_bytes()))
        .collect()
});

/// The state as a JSON string (`application/json`, as `Json` would answer it).
async fn get_state(State(core): State<HaCore>) -> Response {
    let body = STATE_BODIES[core.current_state() as usize];
    (
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(body),
    )
        .into_response()
}

async fn post_state(
    State(core): State<HaCore>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<String>, ServiceError> {
    let parameters = form_parameters(&query, &body)?;
    let mode: HaMode = required(&parameters, "mode")?.parse()?;
    // The guard already applied Brooklyn's header rule.
    let access = Access {
        allow_non_master: true,
    };
    Ok(Json(core.set_state(mode, access).await?.to_string()))
}

async fn get_states(State(core): State<HaCore>) -> Result<Json<Value>, ServiceError> {
    let listing = core.list_states().await?;
    let now_ms = crate::clock::wall_clock_ms();
    let nodes: serde_json::Map<String, Value> = listing
        .nodes
        .into_iter()
        .map(|node| {
            let age_ms = i64::try_from(node.last_seen_age.as_millis()).unwrap_or(i64::MAX);
            let id = node.record.node_id.to_string();
            let row = json!({
                "nodeId": id,
                "nodeUri": node.record.node_uri,
                "status": node.record.status,
                "priority": node.record.priority,
                "localTimestamp": node.record.local_timestamp_ms,
                // When this node last saw the record change, on this node's wall clock.
                "remoteTimestamp": now_ms.saturating_sub(age_ms),
                "live": node.live,
                "lastSeenAgeMs": age_ms,
                "heartbeat": node.record.heartbeat,
                "version": node.record.version,
                "epochSeen": node.record.epoch_seen,
                "stateSeq": node.record.state_seq,
            });
            (id, row)
        })
        .collect();
    Ok(Json(json!({
        "planeId": listing.plane_id,
        "ownId": listing.own_id,
        "masterId": listing.master.as_ref().map_or("", |m| &m.id),
        "epoch": listing.epoch,
        "nodes": nodes,
        "links": {},
    })))
}

async fn clear_states(State(core): State<HaCore>) -> Result<Json<Vec<String>>, ServiceError> {
    Ok(Json(core.remove_terminated(None).await?))
}

async fn clear_node(
    State(core): State<HaCore>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Vec<String>>, ServiceError> {
    let parameters = form_parameters(&query, &body)?;
    let node_id = required(&parameters, "nodeId")?;
    Ok(Json(core.remove_terminated(Some(node_id)).await?))
}

async fn get_priority(State(core): State<HaCore>) -> Json<i64> {
    Json(core.priority())
}

async fn post_priority(
    State(core): State<HaCore>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<i64>, ServiceError> {
    let parameters = form_parameters(&query, &body)?;
    let priority = required(&parameters, "priority")?
        .parse::<i64>()
        .map_err(|err| bad_parameter("priority", &format!("not a 64-bit integer: {err}")))?;
    let access = Access {
        allow_non_master: true,
    };
    Ok(Json(core.set_priority(priority, access).await?))
}

async fn get_metrics(State(core): State<HaCore>) -> Json<Value> {
    let metrics = core.metrics();
    let history: Vec<Value> = metrics
        .history
        .iter()
        .map(|change| json!({ "state": change.state, "timestamp": change.at_ms }))
        .collect();
    Json(json!({
        "state": metrics.state,
        "uptimeMs": millis(metrics.uptime),
        "priority": metrics.priority,
        "epoch": metrics.epoch,
        "pollPeriodMs": millis(metrics.poll_period),
        "heartbeatTimeoutMs": millis(metrics.heartbeat_timeout),
        "failovers": metrics.failovers,
        "skippedRecords": metrics.skipped_records,
        "stateHistory": history,
    }))
}

async fn get_up(State(core): State<HaCore>) -> Json<bool> {
    Json(core.is_up())
}

async fn get_healthy(State(core): State<HaCore>) -> Json<bool> {
    Json(core.is_healthy())
}

/// `/livez` and `/readyz`: 200 when every check passes, else 503; the body names each check and
/// why it fails.
fn probe(checks: Vec<crate::service::probes::Check>) -> Response {
    let ready = checks.iter().all(|check| check.problem.is_none());
    let named: serde_json::Map<String, Value> = checks
        .into_iter()
        .map(|check| {
            let verdict = check.problem.unwrap_or_else(|| "ok".to_owned());
            (check.name.to_owned(), json!(verdict))
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ok": ready, "checks": named }))).into_response()
}

/// The count in query parameter `name` (0 when absent); a 400 naming it when not a count of
/// `what`.
pub(super) fn count_parameter(
    query: &HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<usize, ServiceError> {
    match query.get(name) {
        None => Ok(0),
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ServiceError::InvalidArgument {
                field: name.into(),
                message: format!("{text:?} is not a number of {what}"),
            }),
    }
}

/// `GET /v1/server/ha/history?limit=N`: the plane's masters, newest first.
async fn get_history(
    State(core): State<HaCore>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ServiceError> {
    let limit = count_parameter(&query, "limit", "epochs")?;
    let claims: Vec<Value> = core
        .history(limit)
        .await?
        .into_iter()
        .map(|claim| {
            json!({ "epoch": claim.epoch, "nodeId": claim.node_id.as_str(), "nodeUri": claim.node_uri,
                    "claimedAtMs": claim.claimed_at, "reason": claim.reason })
        })
        .collect();
    Ok(Json(json!({ "claims": claims })))
}

async fn get_livez(State(core): State<HaCore>) -> Response {
    probe(core.liveness())
}

async fn get_readyz(State(core): State<HaCore>) -> Response {
    probe(core.readiness())
}

/// Load-balancer check: 200 master, 429 hot standby / backup (200 with `?standbyok=true`),
/// 503 otherwise. The body is the state as a JSON string; while the managed state cannot be read
/// past this node's position it is `{"state": ..., "stateDamage": "<key>: <why>"}` instead.
async fn get_health(
    State(core): State<HaCore>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let standby_ok = query
        .get("standbyok")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let status = match core.health() {
        HealthClass::Master => StatusCode::OK,
        HealthClass::HotReplica if standby_ok => StatusCode::OK,
        HealthClass::HotReplica => StatusCode::TOO_MANY_REQUESTS,
        HealthClass::Other => StatusCode::SERVICE_UNAVAILABLE,
    };
    let state = core.current_state().to_string();
    let body = match core.state_damage() {
        None => json!(state),
        Some(damage) => json!({ "state": state, "stateDamage": damage }),
    };
    (status, Json(body)).into_response()
}

pub(crate) fn view_json(view: &MasterView) -> Value {
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|m| json!({ "nodeId": m.node_id, "nodeUri": m.node_uri, "status": m.status, "live": m.live }))
        .collect();
    json!({
        "epoch": view.epoch,
        "masterId": view.master_id(),
        "masterUri": view.master_uri(),
        "planeId": view.plane_id,
        "members": members,
    })
}

/// Past the node's cap on open watches: 503 with `Retry-After`, and everyone else keeps theirs.
pub(super) fn watchers_full(full: &crate::service::WatchersFull) -> Response {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &full.to_string(),
        Value::Null,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    response
}

/// Server-Sent Events: the WatchMaster stream for curl and browsers.
async fn watch_sse(State(core): State<HaCore>) -> Response {
    let watcher = match core.count_watcher() {
        Ok(watcher) => watcher,
        Err(full) => return watchers_full(&full),
    };
    // Each view's JSON is rendered once for every watcher of this process (the view's identity
    // is the key, see service::encoded).
    static RENDERED: LastEncoded<Bytes> = LastEncoded::new();
    sse::response(master_events(&core, 0, watcher), |view| {
        RENDERED.get(view, |view| {
            sse::render("master", &view_json(view).to_string(), None)
        })
    })
}

/// The web console, embedded in the binary.
async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}

/// The metrics in the OpenMetrics text format, labelled as such; a scraper that asks for the
/// Prometheus text format only (`Accept: text/plain` without OpenMetrics) gets the same text as
/// `text/plain; version=0.0.4`, which its parser reads.
async fn prometheus_metrics(State(core): State<HaCore>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let content_type = if accept.contains("text/plain") && !accept.contains("openmetrics") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    };
    match crate::api::rest::metrics::render(&core) {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(err) => ServiceError::Internal(format!("cannot encode metrics: {err}")).into_response(),
    }
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        Value::Null,
    )
}

/// The REST routes (the HA shim plus `extra`, e.g. the entity routes); anything else goes to
/// `grpc` when it is a gRPC request, else 404.
pub fn router(core: HaCore, extra: Router, grpc: Router) -> Router {
    let ha = Router::new()
        .route("/", get(console))
        .route("/metrics", get(prometheus_metrics))
        .route(
            "/v1/server/ha/state",
            get(get_state).merge(guard_changes(&core, post(post_state))),
        )
        .route("/v1/server/ha/states", get(get_states))
        .route(
            "/v1/server/ha/states/clear",
            guard_changes(&core, post(clear_states)),
        )
        .route(
            "/v1/server/ha/states/clear/node",
            guard_changes(&core, post(clear_node)),
        )
        .route(
            "/v1/server/ha/priority",
            get(get_priority).merge(guard_changes(&core, post(post_priority))),
        )
        .route("/v1/server/ha/metrics", get(get_metrics))
        .route("/v1/server/ha/health", get(get_health))
        .route("/v1/server/ha/watch", get(watch_sse))
        .route("/v1/server/ha/role", get(role::get_role))
        .route("/v1/server/ha/role/watch", get(role::watch_role_sse))
        .route("/v1/server/up", get(get_up))
        .route("/v1/server/healthy", get(get_healthy))
        .route("/livez", get(get_livez))
        .route("/v1/server/ha/history", get(get_history))
        .route("/readyz", get(get_readyz))
        .with_state(core)
        .merge(extra)
        .method_not_allowed_fallback(method_not_allowed);
    ha.fallback(move |request: Request<Body>| {
        let grpc = grpc.clone();
        async move {
            if haplane::wire::is_grpc_request(request.headers()) {
                match grpc.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            } else {
                error_response(
                    StatusCode::NOT_FOUND,
                    &format!("no such path: {}", request.uri().path()),
                    Value::Null,
                )
            }
        }
    })
}
