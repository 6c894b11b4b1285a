//! The entity calls of `Client`: reads and idempotent writes of managed-state entities on the
//! master, through the same failover handling as the HA calls.

use crate::answers::Entity;
use crate::client::{Client, Retry};
use crate::error::Error;
use haplane::pb::{self, entity_service_client::EntityServiceClient};

impl Client {
    /// Reads one entity from the master.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`]; a missing entity is [`Error::Rejected`] with `NOT_FOUND`.
    pub async fn get_entity(&self, id: &str) -> Result<Entity, Error> {
        answered_entity(self.get_on_master(id).await?.entity)
    }

    /// The master's answer to a Get of `id`.
    pub(crate) async fn get_on_master(&self, id: &str) -> Result<pb::GetResponse, Error> {
        Ok(self
            .on_master(Retry::Safe, |channel| {
                let id = id.to_owned();
                async move {
                    EntityServiceClient::new(channel)
                        .get(pb::GetRequest { id })
                        .await
                }
            })
            .await?
            .into_inner())
    }

    /// Entities whose id starts with `prefix`, from the master, every page of them. Pages are
    /// read one after another, each as the master then has it.
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`].
    pub async fn list_entities(&self, prefix: &str) -> Result<Vec<Entity>, Error> {
        let mut entities = Vec::new();
        let mut page_token = String::new();
        loop {
            let answer = self
                .on_master(Retry::Safe, |channel| {
                    let request = pb::ListRequest {
                        prefix: prefix.to_owned(),
                        page_size: 0,
                        page_token: page_token.clone(),
                    };
                    async move { EntityServiceClient::new(channel).list(request).await }
                })
                .await?
                .into_inner();
            for entity in answer.entities {
                entities.push(entity_from_wire(entity)?);
            }
            if answer.next_page_token.is_empty() {
                return Ok(entities);
            }
            page_token = answer.next_page_token;
        }
    }

    /// Creates or replaces an entity on the master. The write carries a fresh idempotency key,
    /// so it is retried through a failover and applied once.
    ///
    /// ```no_run
    /// # async fn demo(client: haplane_sdk::Client) -> Result<(), haplane_sdk::Error> {
    /// let entity = client.put_entity("apps/web", serde_json::json!({"replicas": 3}), None).await?;
    /// assert_eq!(entity.attributes["replicas"], 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::get_state`]; a write whose `expected_version` does not match is
    /// [`Error::Rejected`] with [`Reason::VersionConflict`](crate::Reason::VersionConflict).
    pub async fn put_entity(
        &self,
        id: &str,
        attributes: serde_json::Value,
        expected_version: Option<u64>,
    ) -> Result<Entity, Error> {
        let key = new_idempotency_key();
        let attributes_json = attributes.to_string();
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let request = pb::PutRequest {
                    id: id.to_owned(),
                    attributes_json: attributes_json.clone(),
                    expected_version,
                    idempotency_key: key.clone(),
                };
                async move { EntityServiceClient::new(channel).put(request).await }
            })
            .await?
            .into_inner();
        answered_entity(answer.entity)
    }

    /// Deletes an entity on the master (idempotently, like `put_entity`); answers its log position.
    ///
    /// # Errors
    ///
    /// As [`Client::put_entity`].
    pub async fn delete_entity(
        &self,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<u64, Error> {
        let key = new_idempotency_key();
        let answer = self
            .on_master(Retry::Safe, |channel| {
                let request = pb::DeleteRequest {
                    id: id.to_owned(),
                    expected_version,
                    idempotency_key: key.clone(),
                };
                async move { EntityServiceClient::new(channel).delete(request).await }
            })
            .await?
            .into_inner();
        Ok(answer.seq)
    }
}

fn new_idempotency_key() -> String {
    format!(
        "sdk-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// The entity an answer must carry.
pub(crate) fn answered_entity(entity: Option<pb::Entity>) -> Result<Entity, Error> {
    entity
        .map(entity_from_wire)
        .ok_or_else(|| Error::Protocol("no entity in the answer".into()))?
}

pub(crate) fn entity_from_wire(entity: pb::Entity) -> Result<Entity, Error> {
    Ok(Entity {
        attributes: serde_json::from_str(&entity.attributes_json)
            .map_err(|e| Error::Protocol(e.to_string()))?,
        id: entity.id,
        version: entity.version,
        updated_epoch: entity.updated_epoch,
    })
}
