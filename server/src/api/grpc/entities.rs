//! The gRPC face of the managed state: `haplane.v1.EntityService` over `StateService`.

use crate::clock::millis;
use crate::service::HaCore;
use crate::service::error::ServiceError;
use crate::state::service::{StateService, Write};
use crate::state::{Entity, EntityId, PageRequest};
use haplane::pb::{self, entity_service_server::EntityService};
use std::pin::Pin;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// `EntityService` over one `StateService`; its watches count under the node's watcher cap.
#[derive(Debug, Clone)]
pub struct GrpcEntities {
    pub state: StateService,
    pub core: HaCore,
}

fn to_wire(entity: &Entity) -> pb::Entity {
    pb::Entity {
        id: entity.id.as_str().to_owned(),
        attributes_json: serde_json::to_string(&entity.attributes).unwrap_or_default(),
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
            entity: Some(to_wire(&view.value)),
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
            entities: view.value.entities.iter().map(|e| to_wire(e)).collect(),
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
            entity: outcome.entity.as_ref().map(to_wire),
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
        let request = request.into_inner();
        let changes = self.state.watch(request.prefix, request.start_seq).await?;
        let events = changes.map(|change| {
            let change = change?;
            Ok(pb::WatchResponse {
                seq: change.seq,
                id: change.id.as_str().to_owned(),
                deleted: change.entity.is_none(),
                entity: change.entity.as_deref().map(to_wire),
            })
        });
        Ok(Response::new(Box::pin(place.hold(events))))
    }
}
