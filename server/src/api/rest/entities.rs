//! The REST face of the managed state: `GET/PUT/DELETE /v1/entities/{id}` and `GET /v1/entities`,
//! with `If-Match` versions and `Idempotency-Key`; a thin adapter over `StateService`.

use crate::api::rest::guard_changes;
use crate::clock::millis;
use crate::service::HaCore;
use crate::service::error::ServiceError;
use crate::state::service::{ReadView, StateService, Write};
use crate::state::{Entity, EntityId, PageRequest};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;

fn entity_json(entity: &Entity) -> Value {
    json!({
        "id": entity.id.as_str(),
        "attributes": entity.attributes,
        "version": entity.version,
        "updatedEpoch": entity.updated_epoch,
    })
}

fn with_etag(body: Value, version: u64) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn entity_id(raw: &str) -> Result<EntityId, ServiceError> {
    Ok(EntityId::parse(raw)?)
}

/// `If-Match: "3"` or `If-Match: 3` → 3.
fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, ServiceError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|text| text.parse().ok())
        .map(Some)
        .ok_or_else(|| ServiceError::InvalidArgument {
            field: "If-Match".into(),
            message: "must be an entity version, e.g. \"3\"".into(),
        })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ServiceError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(text) if !text.is_empty() && text.len() <= 200 => Ok(Some(text.to_owned())),
            _ => Err(ServiceError::InvalidArgument {
                field: "Idempotency-Key".into(),
                message: "must be 1 to 200 visible ASCII characters".into(),
            }),
        },
    }
}

async fn get_entity(
    State(state): State<StateService>,
    Path(id): Path<String>,
) -> Result<Response, ServiceError> {
    let view = state.get(&entity_id(&id)?).await?;
    let mut body = entity_json(&view.value);
    body["asOfSeq"] = json!(view.as_of_seq);
    body["lagMs"] = json!(millis(view.lag));
    Ok(with_etag(body, view.value.version))
}

async fn list_entities(
    State(state): State<StateService>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ServiceError> {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let size = super::count_parameter(&query, "pageSize", "entities")?;
    let token = query.get("pageToken").map(String::as_str).unwrap_or("");
    let page = PageRequest::new(size, token)?;
    let ReadView {
        value,
        as_of_seq,
        lag,
    } = state.list(prefix, &page).await?;
    Ok(Json(json!({
        "entities": value.entities.iter().map(|e| entity_json(e)).collect::<Vec<_>>(),
        "asOfSeq": as_of_seq,
        "lagMs": millis(lag),
        "nextPageToken": value.next_token,
    })))
}

async fn put_entity(
    State(state): State<StateService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServiceError> {
    let attributes = haplane::json_object("body", &body)?;
    let write = Write {
        id: entity_id(&id)?,
        attributes: Some(attributes),
        expected_version: expected_version(&headers)?,
        idempotency_key: idempotency_key(&headers)?,
    };
    let outcome = state.write(write).await?;
    let entity = outcome
        .entity
        .ok_or_else(|| ServiceError::Internal("a put recorded no entity".into()))?;
    let mut body = entity_json(&entity);
    body["seq"] = json!(outcome.seq);
    Ok(with_etag(body, entity.version))
}

async fn delete_entity(
    State(state): State<StateService>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ServiceError> {
    let write = Write {
        id: entity_id(&id)?,
        attributes: None,
        expected_version: expected_version(&headers)?,
        idempotency_key: idempotency_key(&headers)?,
    };
    let outcome = state.write(write).await?;
    Ok(Json(
        json!({ "id": id, "deleted": true, "seq": outcome.seq }),
    ))
}

/// `GET /v1/entity-events?prefix=&startSeq=`: changes as Server-Sent Events, each with its seq
/// as the event id. A reconnecting `EventSource` sends `Last-Event-ID` and resumes there (the
/// changes at that seq come again); `410` when that position is no longer kept.
async fn watch_entities(
    State((state, core)): State<(StateService, HaCore)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    let watcher = match core.count_watcher() {
        Ok(watcher) => watcher,
        Err(full) => return Ok(super::watchers_full(&full)),
    };
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(("Last-Event-ID", value.to_str().unwrap_or_default())),
        None => query
            .get("startSeq")
            .map(|text| ("startSeq", text.as_str())),
    };
    let start_seq = match resume {
        None => None,
        Some((field, text)) => {
            Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| ServiceError::InvalidArgument {
                        field: field.into(),
                        message: format!("{text:?} is not a log position"),
                    })?,
            )
        }
    };
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let changes = state.watch(prefix, start_seq).await?;
    Ok(super::sse::response(watcher.hold(changes), |change| {
        let json = json!({
            "seq": change.seq,
            "id": change.id.as_str(),
            "deleted": change.entity.is_none(),
            "entity": change.entity.as_deref().map(entity_json),
        });
        super::sse::render("change", &json.to_string(), Some(&change.seq.to_string()))
    }))
}

/// The entity routes; writes pass Brooklyn's non-master guard of `core`.
pub fn router(state: StateService, core: &HaCore) -> Router {
    let events = Router::new()
        .route("/v1/entity-events", get(watch_entities))
        .with_state((state.clone(), core.clone()));
    Router::new()
        .route("/v1/entities", get(list_entities))
        .route(
            "/v1/entities/{*id}",
            get(get_entity).merge(guard_changes(core, put(put_entity).delete(delete_entity))),
        )
        .with_state(state)
        .merge(events)
}
