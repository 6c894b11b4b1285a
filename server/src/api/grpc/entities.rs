//! The gRPC face of the managed state: `haplane.v1.EntityService` over `StateService`.

use crate::clock::millis;
use crate::service::HaCore;
use crate::service::error::ServiceError;
use crate::state::service::{StateService, Write};
use crate::state::{Entity, EntityId, PageRequest};
use haplane::pb::{self, entity_service_server::EntityService};
use std::pin::Pin;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

/// `EntityService` over one `StateService`; its watches count under the node's watcher cap.
#[derive(Debug, Clone)]
pub struct GrpcEntities {
    pub state: StateService,
    pub core: HaCore,
}

fn to_wire(entity: Entity) -> pb::Entity {
    pb::Entity {
        id: entity.id.into(),
        attributes_json: serde_json::Value::Object(entity.attributes).to_string(),
        version: entity.version,
        updated_epoch: entity.updated_epoch,
    }
}

fn attributes(json: &str) -> Result<serde_json::Map<String, serde_json::Value>, ServiceError> {
    Ok(haplane::json_object("attributes_json", json.as_bytes())?)
}

/// An empty key means "none".
fn key(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EntityService for GrpcEntities {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let id = EntityId::parse(&request.into_inner().id).map_err(ServiceError::from)?;
        let view = self.state.get(&id).await?;
        Ok(Response::new(pb::GetResponse {
            entity: Some(to_wire(view.value)),
            as_of_seq: view.as_of_seq,
            lag_ms: millis(view.lag),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let request = request.into_inner();
        let page = PageRequest::new(
            usize::try_from(request.page_size).unwrap_or(usize::MAX),
            &request.page_token,
        )
        .map_err(ServiceError::from)?;
        let view = self.state.list(&request.prefix, &page).await?;
        Ok(Response::new(pb::ListResponse {
            entities: view.value.entities.into_iter().map(to_wire).collect(),
            as_of_seq: view.as_of_seq,
            lag_ms: millis(view.lag),
            next_page_token: view.value.next_token.unwrap_or_default(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        let write = Write {
            id: EntityId::parse(&request.id).map_err(ServiceError::from)?,
            attributes: Some(attributes(&request.attributes_json)?),
            expected_version: request.expected_version,
            idempotency_key: key(request.idempotency_key),
        };
        let outcome = self.state.write(write).await?;
        Ok(Response::new(pb::PutResponse {
            entity: outcome.entity.map(to_wire),
            seq: outcome.seq,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let request = request.into_inner();
        let write = Write {
            id: EntityId::parse(&request.id).map_err(ServiceError::from)?,
            attributes: None,
            expected_version: request.expected_version,
            idempotency_key: key(request.idempotency_key),
        };
        let outcome = self.state.write(write).await?;
        Ok(Response::new(pb::DeleteResponse { seq: outcome.seq }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let place = self.core.count_watcher()?;
        let prefix = request.into_inner().prefix;
        let events =
            BroadcastStream::new(self.state.subscribe()).filter_map(move |event| match event {
                Ok(event) if event.id.as_str().starts_with(&prefix) => {
                    Some(Ok(pb::WatchResponse {
                        seq: event.seq,
                        id: event.id.into(),
                        deleted: event.entity.is_none(),
                        entity: event.entity.map(to_wire),
                    }))
                }
                Ok(_) => None,
                Err(_) => Some(Err(Status::data_loss(
                    "this watcher fell behind; resubscribe and re-list",
                ))),
            });
        Ok(Response::new(Box::pin(place.hold(events))))
    }
}
