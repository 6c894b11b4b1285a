//! Entity reads beyond the master's own answers: a read from a hot copy that is current within a
//! maximum lag (the master stays free for writes), and a watch of entity changes that follows the
//! master and resumes at the last log position seen, so a failover loses no change.

use crate::answers::Entity;
use crate::client::{Client, Retry};
use crate::entities::{answered_entity, entity_from_wire};
use crate::error::{Error, Reason};
use futures::Stream;
use haplane::pb::{self, entity_service_client::EntityServiceClient};
use std::time::Duration;

/// How long one hot copy may take to answer a read before the next is tried.
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before a broken entity watch is opened again on the (possibly new) master.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(100);

/// An entity as one node's copy had it, and how current that copy was.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaRead {
    /// The entity.
    pub entity: Entity,
    /// The node that answered.
    pub node_id: String,
    /// The last log position that node had applied.
    pub as_of_seq: u64,
    /// How far behind the master's published position that node was (zero on the master).
    pub lag: Duration,
}

/// One change to an entity.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EntityChange {
    /// The log position of the entry that carried the change (several changes can share one).
    pub seq: u64,
    /// The entity's id.
    pub id: String,
    /// The entity after the change; `None` after a delete.
    pub entity: Option<Entity>,
}

impl Client {
    /// Reads one entity from a hot copy (a live HOT_STANDBY or HOT_BACKUP) whose lag is at most
    /// `max_lag`, else from the master. The copies come from the master's node list (asked again
    /// at most once a second) and are tried in its order; one that answers late, with more lag,
    /// or not at all is skipped, and so is a "not found" from a copy (it may not have the entity
    /// yet: the master decides).
    ///
    /// # Errors
    ///
    /// As [`Client::get_entity`] when the read falls back to the master.
    pub async fn get_entity_within(
        &self,
        id: &str,
        max_lag: Duration,
    ) -> Result<ReplicaRead, Error> {
        for (copy_id, copy_uri) in self.hot_copies().await? {
            let Ok(channel) = self.channel(&copy_uri) else {
                continue;
            };
            let mut reader = EntityServiceClient::new(channel);
            let read = reader.get(pb::GetRequest { id: id.to_owned() });
            if let Ok(Ok(answer)) = tokio::time::timeout(REPLICA_READ_TIMEOUT, read).await {
                let answer = answer.into_inner();
                if Duration::from_millis(answer.lag_ms) <= max_lag {
                    return replica_read(answer, &copy_id);
                }
            }
        }
        let answer = self.get_on_master(id).await?;
        let master = self.master().map(|view| view.master_id().to_owned());
        replica_read(answer, &master.unwrap_or_default())
    }

    /// The changes to entities whose id starts with `prefix`, from log position `start_seq` on
    /// (`None`: from now), as the master applies them. When the stream breaks or the master
    /// changes, it is opened again on the master with the last seq seen, so no change is missed;
    /// the changes at that seq come again (apply by version). Nothing is missed from the first
    /// change seen on; before it, a reconnect resumes from `start_seq` again.
    ///
    /// # Errors
    ///
    /// The stream ends with an error when no master can be reached within the failover timeout,
    /// or with [`Error::Rejected`] carrying `OutOfRange` when the position is no longer kept (list
    /// the entities again and watch from the list's position + 1).
    pub fn watch_entities(
        &self,
        prefix: &str,
        start_seq: Option<u64>,
    ) -> impl Stream<Item = Result<EntityChange, Error>> + Send + 'static {
        let watch = EntityWatch {
            client: self.clone(),
            prefix: prefix.to_owned(),
            resume: start_seq,
            stream: None,
            ended: false,
        };
        futures::stream::unfold(watch, |mut watch| async move {
            if watch.ended {
                return None;
            }
            let item = watch.next_change().await;
            watch.ended = item.is_err();
            Some((item, watch))
        })
    }
}

/// The state of one `watch_entities` stream.
struct EntityWatch {
    client: Client,
    prefix: String,
    /// Where the next subscription starts.
    resume: Option<u64>,
    stream: Option<tonic::Streaming<pb::WatchResponse>>,
    ended: bool,
}

impl EntityWatch {
    /// Opens the watch on the master. A master whose copy is still loading (just promoted from
    /// STANDBY, or reloading) is asked again until the failover timeout.
    async fn open(
        &self,
        request: &pb::WatchRequest,
    ) -> Result<tonic::Streaming<pb::WatchResponse>, Error> {
        let deadline = tokio::time::Instant::now() + self.client.failover_timeout();
        loop {
            let opened = self
                .client
                .on_master(Retry::Safe, |channel| {
                    let request = request.clone();
                    async move { EntityServiceClient::new(channel).watch(request).await }
                })
                .await;
            match opened {
                Ok(opened) => return Ok(opened.into_inner()),
                Err(err)
                    if matches!(err.reason(), Some(Reason::StateNotLoaded))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn next_change(&mut self) -> Result<EntityChange, Error> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let request = pb::WatchRequest {
                        prefix: self.prefix.clone(),
                        start_seq: self.resume,
                    };
                    let opened = self.open(&request).await?;
                    self.stream.insert(opened)
                }
            };
            match stream.message().await {
                Ok(Some(change)) => {
                    self.resume = Some(change.seq);
                    return Ok(EntityChange {
                        seq: change.seq,
                        id: change.id,
                        entity: change.entity.map(entity_from_wire).transpose()?,
                    });
                }
                Err(status) if status.code() == tonic::Code::OutOfRange => {
                    return Err(Error::from_status(&status));
                }
                // Ended or broken (the node stopped, lost its copy, or the watcher fell behind):
                // open it again on the master, from the last seq seen.
                Ok(None) | Err(_) => {
                    self.stream = None;
                    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                }
            }
        }
    }
}

fn replica_read(answer: pb::GetResponse, node_id: &str) -> Result<ReplicaRead, Error> {
    let entity = answered_entity(answer.entity)?;
    Ok(ReplicaRead {
        entity,
        node_id: node_id.to_owned(),
        as_of_seq: answer.as_of_seq,
        lag: Duration::from_millis(answer.lag_ms),
    })
}
