//! The gRPC face: `haplane.v1.HaService` over `HaCore`, gRPC health (with `haplane.v1.Master`
//! SERVING only on the master), reflection v1 and v1alpha, and the client side of `Nudge`.

pub mod entities;
mod peer_client;
mod watch_master;

pub use peer_client::PeerClient;

use crate::service::error::ServiceError;
use crate::service::{Access, HaCore, HealthClass};
use haplane::convert::ha_mode_from_wire;
use haplane::pb::{self, ha_service_server::HaService, ha_service_server::HaServiceServer};
use haplane::wire::{ALLOW_NON_MASTER_METADATA, MASTER_HEALTH_SERVICE};
use haplane::{MasterRef, NodeState};
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

fn access<T>(request: &Request<T>) -> Access {
    let allow = request
        .metadata()
        .get(ALLOW_NON_MASTER_METADATA)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
    Access {
        allow_non_master: allow,
    }
}

fn state_to_wire(state: NodeState) -> i32 {
    pb::NodeState::from(state) as i32
}

/// `HaService` over one `HaCore`.
#[derive(Debug, Clone)]
pub struct GrpcService {
    core: HaCore,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::MasterEvent, Status>> + Send>>;
type RoleStream = Pin<Box<dyn Stream<Item = Result<pb::RoleEvent, Status>> + Send>>;

#[tonic::async_trait]
impl HaService for GrpcService {
    async fn get_state(
        &self,
        _request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::GetStateResponse>, Status> {
        let view = self.core.state();
        let (master_id, master_uri) = MasterRef::into_wire(view.master);
        Ok(Response::new(pb::GetStateResponse {
            node_id: view.node_id,
            state: state_to_wire(view.state),
            priority: view.priority,
            epoch: view.epoch,
            master_id,
            master_uri,
            plane_id: view.plane_id,
            lease_valid_for_ms: view.lease_valid_for.map(crate::clock::millis),
        }))
    }

    async fn list_states(
        &self,
        _request: Request<pb::ListStatesRequest>,
    ) -> Result<Response<pb::ListStatesResponse>, Status> {
        let listing = self.core.list_states().await?;
        let nodes = listing
            .nodes
            .into_iter()
            .map(|node| pb::NodeStatus {
                node_id: node.record.node_id.to_string(),
                node_uri: node.record.node_uri,
                status: state_to_wire(node.record.status),
                priority: node.record.priority,
                local_timestamp_ms: node.record.local_timestamp_ms,
                last_seen_age_ms: crate::clock::millis(node.last_seen_age),
                heartbeat: node.record.heartbeat,
                version: node.record.version,
                live: node.live,
                epoch_seen: node.record.epoch_seen,
                state_seq: node.record.state_seq,
            })
            .collect();
        Ok(Response::new(pb::ListStatesResponse {
            plane_id: listing.plane_id,
            own_id: listing.own_id,
            master_id: MasterRef::into_wire(listing.master).0,
            epoch: listing.epoch,
            nodes,
        }))
    }

    async fn set_state(
        &self,
        request: Request<pb::SetStateRequest>,
    ) -> Result<Response<pb::SetStateResponse>, Status> {
        let access = access(&request);
        let mode = ha_mode_from_wire(request.into_inner().mode).map_err(ServiceError::from)?;
        let previous = self.core.set_state(mode, access).await?;
        Ok(Response::new(pb::SetStateResponse {
            previous_state: state_to_wire(previous),
        }))
    }

    async fn set_priority(
        &self,
        request: Request<pb::SetPriorityRequest>,
    ) -> Result<Response<pb::SetPriorityResponse>, Status> {
        let access = access(&request);
        let previous = self
            .core
            .set_priority(request.into_inner().priority, access)
            .await?;
        Ok(Response::new(pb::SetPriorityResponse {
            previous_priority: previous,
        }))
    }

    async fn remove_terminated(
        &self,
        request: Request<pb::RemoveTerminatedRequest>,
    ) -> Result<Response<pb::RemoveTerminatedResponse>, Status> {
        let node_id = request.into_inner().node_id;
        let removed = self.core.remove_terminated(node_id.as_deref()).await?;
        Ok(Response::new(pb::RemoveTerminatedResponse { removed }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let limit = usize::try_from(request.into_inner().limit).unwrap_or(usize::MAX);
        let claims = self.core.history(limit).await?;
        Ok(Response::new(pb::HistoryResponse {
            claims: claims
                .into_iter()
                .map(|claim| pb::Claim {
                    epoch: claim.epoch,
                    node_id: claim.node_id.to_string(),
                    node_uri: claim.node_uri,
                    claimed_at_ms: claim.claimed_at,
                    reason: claim.reason,
                })
                .collect(),
        }))
    }

    type WatchMasterStream = EventStream;
    type WatchRoleStream = RoleStream;

    async fn watch_role(
        &self,
        _request: Request<pb::WatchRoleRequest>,
    ) -> Result<Response<Self::WatchRoleStream>, Status> {
        let watcher = self.core.count_watcher()?;
        let events = self.core.role_events(watcher).map(|role| {
            role.map(|role| pb::RoleEvent {
                node_id: role.node_id,
                state: state_to_wire(role.state),
                epoch: role.epoch,
                leader: role.leader,
                lease_valid_for_ms: role.lease_valid_for.map(crate::clock::millis),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(events)))
    }

    /// Not reached: `routes` serves this path with `watch_master::serve`, which encodes each
    /// event once for every stream. The generated trait still asks for the method.
    async fn watch_master(
        &self,
        _request: Request<pb::WatchMasterRequest>,
    ) -> Result<Response<Self::WatchMasterStream>, Status> {
        Err(Status::internal(format!(
            "{} is served by its own route",
            watch_master::PATH
        )))
    }

    async fn nudge(
        &self,
        _request: Request<pb::NudgeRequest>,
    ) -> Result<Response<pb::NudgeResponse>, Status> {
        self.core.nudge();
        Ok(Response::new(pb::NudgeResponse {}))
    }

    async fn step_down(
        &self,
        request: Request<pb::StepDownRequest>,
    ) -> Result<Response<pb::StepDownResponse>, Status> {
        let request = request.into_inner();
        tracing::info!(from = %request.from_node_id, epoch = request.epoch, "switchover: asked to step down");
        let answer = self.core.step_down(request.epoch);
        Ok(Response::new(pb::StepDownResponse {
            stepped_down: answer.stopped,
            // Rounded up: a lease that ends within the millisecond still counts.
            promised_lease_ms: u64::try_from(answer.promised.as_nanos().div_ceil(1_000_000))
                .unwrap_or(u64::MAX),
        }))
    }
}

/// Builds the gRPC routes: HaService (its `WatchMaster` served by `watch_master`), health,
/// reflection v1 and v1alpha. Spawns the task that
/// keeps `haplane.v1.Master` health in step with the node's state.
pub fn routes(
    core: HaCore,
    entities: crate::api::grpc::entities::GrpcEntities,
    poll_period: Duration,
) -> Result<axum::Router, tonic_reflection::server::Error> {
    let reporter = tonic_health::server::HealthReporter::new();
    let health_service = HealthServer::new(MasterAwareHealth {
        statuses: tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        core: core.clone(),
    });
    tokio::spawn(track_master_health(core.clone(), reporter, poll_period));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let watch_core = core.clone();
    Ok(
        tonic::service::Routes::new(HaServiceServer::new(GrpcService { core }))
            .add_service(haplane::pb::entity_service_server::EntityServiceServer::new(entities))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .into_axum_router()
            .route(
                watch_master::PATH,
                axum::routing::post(watch_master::serve).with_state(watch_core),
            ),
    )
}

/// `grpc.health.v1.Health` whose `Check` of `haplane.v1.Master` is decided when asked, from the
/// lease at that instant: a reported status could lag a lease that ran out a moment ago, and
/// this check is one of the ways a node acts as master (docs/behaviour.md §9). Everything else,
/// `Watch` included, is tonic-health's, kept in step by `track_master_health`.
struct MasterAwareHealth {
    statuses: tonic_health::server::HealthService,
    core: HaCore,
}

#[tonic::async_trait]
impl Health for MasterAwareHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service != MASTER_HEALTH_SERVICE {
            return self.statuses.check(request).await;
        }
        let serving = self.core.is_up() && self.core.is_master();
        let status = if serving {
            tonic_health::pb::health_check_response::ServingStatus::Serving
        } else {
            tonic_health::pb::health_check_response::ServingStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    /// tonic-health's stream, counted under the health watchers' cap while it is open.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let place = self.core.count_health_watcher()?;
        let statuses = self.statuses.watch(request).await?.into_inner();
        Ok(Response::new(Box::pin(place.hold(statuses))))
    }
}

/// Keeps the reported `haplane.v1.Master` status (what `Watch` streams) in step with the node:
/// on every change of master view, at the instant the lease would run out, and every poll.
async fn track_master_health(
    core: HaCore,
    reporter: tonic_health::server::HealthReporter,
    poll_period: Duration,
) {
    use tonic_health::ServingStatus;
    let mut ticker = tokio::time::interval(poll_period);
    let mut views = core.watch_master();
    let mut last = None;
    loop {
        let serving = core.health() == HealthClass::Master;
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter
                .set_service_status(MASTER_HEALTH_SERVICE, status)
                .await;
            last = Some(serving);
        }
        if !core.is_up() {
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            return;
        }
        let lease_end = core.lease_end().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = ticker.tick() => {}
            changed = views.changed() => if changed.is_err() { return },
            _ = async { tokio::time::sleep_until(lease_end?).await; Some(()) }, if lease_end.is_some() => {}
        }
    }
}
