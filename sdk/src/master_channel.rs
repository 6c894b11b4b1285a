//! `MasterChannel`: a tower service for generated gRPC clients that sends every request to the
//! master current at the time of the call, waiting (up to the failover timeout) when there is none.

use crate::client::Client;
use futures::future::BoxFuture;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// A channel that always targets the current master. Build it with `Client::master_channel`.
///
/// ```no_run
/// # async fn demo(client: haplane_sdk::Client) {
/// use haplane::pb::{ha_service_client::HaServiceClient, GetStateRequest};
/// let mut ha = HaServiceClient::new(client.master_channel());
/// let answer = ha.get_state(GetStateRequest {}).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MasterChannel {
    client: Client,
}

impl Client {
    /// A gRPC channel that always sends to the current master, so generated clients follow
    /// failover:
    ///
    /// ```no_run
    /// # async fn demo(client: haplane_sdk::Client) {
    /// let mut ha = haplane::pb::ha_service_client::HaServiceClient::new(client.master_channel());
    /// let state = ha.get_state(haplane::pb::GetStateRequest {}).await;
    /// # }
    /// ```
    pub fn master_channel(&self) -> MasterChannel {
        MasterChannel {
            client: self.clone(),
        }
    }
}

impl Service<http::Request<tonic::body::Body>> for MasterChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per call, once the master is known.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let master = client.wait_for_master(client.failover_timeout()).await?;
            let channel = client.channel(master.master_uri())?;
            Ok(channel.oneshot(request).await?)
        })
    }
}
