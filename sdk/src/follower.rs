//! The master follower: one background task that holds a `WatchMaster` stream to some member,
//! moves to the next member the moment the stream breaks, and publishes every accepted view.

use crate::error::Error;
use crate::transport::NodeChannel;
use haplane::MasterView;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use http::HeaderValue;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Decides which views replace the current one: never a lower epoch (a lagging node cannot move
/// the client back), and never, within an epoch, a master that already stepped down in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewFilter {
    highest_epoch: u64,
    /// `(epoch, master)` of a master seen to give up its claim.
    released: Option<(u64, String)>,
    current_master: Option<(u64, String)>,
}

impl ViewFilter {
    /// Whether `view` should be published; updates what the filter remembers.
    pub fn accept(&mut self, view: &MasterView) -> bool {
        if view.epoch < self.highest_epoch {
            return false;
        }
        let stepped_down = self
            .released
            .as_ref()
            .is_some_and(|(epoch, master)| *epoch == view.epoch && *master == view.master_id);
        if stepped_down {
            return false;
        }
        if view.master_id.is_empty() {
            if let Some((epoch, master)) = self.current_master.take()
                && epoch == view.epoch
            {
                self.released = Some((epoch, master));
            }
        } else {
            self.current_master = Some((view.epoch, view.master_id.clone()));
        }
        self.highest_epoch = view.epoch;
        true
    }
}

/// Settings of the follower task.
#[derive(Debug, Clone)]
pub(crate) struct FollowerSettings {
    pub connect_timeout: Duration,
    pub keep_alive: Duration,
    /// Trusted besides the system roots for `https://` endpoints.
    pub ca_certificate: Option<Certificate>,
    pub authorization: Option<HeaderValue>,
}

pub(crate) fn endpoint(uri: &str, settings: &FollowerSettings) -> Result<Endpoint, Error> {
    let invalid = |err: tonic::transport::Error| Error::InvalidEndpoint {
        endpoint: uri.to_owned(),
        message: err.to_string(),
    };
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(invalid)?
        .connect_timeout(settings.connect_timeout)
        .http2_keep_alive_interval(settings.keep_alive)
        .keep_alive_timeout(settings.keep_alive * 3)
        .keep_alive_while_idle(true);
    if !uri.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &settings.ca_certificate {
        tls = tls.ca_certificate(ca.clone());
    }
    endpoint.tls_config(tls).map_err(invalid)
}

/// Follows the master through `seeds` (and every member it learns of) until `views` has no
/// receivers left.
pub(crate) async fn follow(
    seeds: Vec<String>,
    settings: FollowerSettings,
    views: watch::Sender<Option<MasterView>>,
    refusals: watch::Sender<Option<tonic::Status>>,
    stream_opens: Arc<AtomicU64>,
) {
    let mut members: BTreeSet<String> = seeds.into_iter().collect();
    let mut filter = ViewFilter::default();
    let mut failed_rounds: u32 = 0;
    let mut last_good: Option<String> = None;
    loop {
        // Try the member that worked last, then the others in order.
        let mut order: Vec<String> = members.iter().cloned().collect();
        if let Some(good) = &last_good {
            order.retain(|uri| uri != good);
            order.insert(0, good.clone());
        }
        let mut any_stream = false;
        for uri in order {
            if views.is_closed() {
                return;
            }
            let Ok(endpoint) = endpoint(&uri, &settings) else {
                continue;
            };
            let Ok(channel) = endpoint.connect().await else {
                continue;
            };
            stream_opens.fetch_add(1, Ordering::Relaxed);
            let channel = NodeChannel::new(channel, settings.authorization.clone());
            let response = match HaServiceClient::new(channel)
                .watch_master(pb::WatchMasterRequest { min_epoch: None })
                .await
            {
                Ok(response) => response,
                Err(status) => {
                    if status.code() == tonic::Code::Unauthenticated {
                        refusals.send_replace(Some(status));
                    }
                    continue;
                }
            };
            any_stream = true;
            last_good = Some(uri.clone());
            let mut stream = response.into_inner();
            while let Some(Ok(event)) = stream.next().await {
                let Ok(view) = MasterView::try_from(event) else {
                    continue;
                };
                for member in &view.members {
                    if !member.node_uri.is_empty() {
                        members.insert(member.node_uri.clone());
                    }
                }
                if filter.accept(&view) {
                    views.send_replace(Some(view));
                }
            }
            // The stream ended or broke: move on to the next member at once.
            tracing::debug!(%uri, "master watch ended; moving to the next member");
        }
        if any_stream {
            failed_rounds = 0;
        } else {
            failed_rounds = failed_rounds.saturating_add(1);
            // Every member failed: back off, jittered, up to about two seconds.
            let base = Duration::from_millis(50) * 2u32.saturating_pow(failed_rounds.min(5));
            let jitter = Duration::from_millis(rand::random::<u64>() % 50);
            tokio::time::sleep(base.min(Duration::from_secs(2)) + jitter).await;
        }
    }
}

/// Opens a channel to `uri` for unary calls, lazily.
pub(crate) fn lazy_channel(uri: &str, settings: &FollowerSettings) -> Result<NodeChannel, Error> {
    Ok(NodeChannel::new(
        endpoint(uri, settings)?.connect_lazy(),
        settings.authorization.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(epoch: u64, master: &str) -> MasterView {
        MasterView {
            epoch,
            master_id: master.to_owned(),
            ..MasterView::default()
        }
    }

    #[test]
    fn a_lower_epoch_never_replaces_a_newer_view() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(5, "a")));
        assert!(
            !filter.accept(&view(4, "b")),
            "a lagging node's view is ignored"
        );
        assert!(!filter.accept(&view(0, "")));
        assert!(filter.accept(&view(6, "b")));
        assert!(!filter.accept(&view(5, "a")));
    }

    #[test]
    fn a_master_that_stepped_down_does_not_come_back_in_its_epoch() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(5, "a")));
        assert!(filter.accept(&view(5, "")), "the step-down is news");
        assert!(
            !filter.accept(&view(5, "a")),
            "a lagging node still naming a is ignored"
        );
        assert!(filter.accept(&view(6, "b")));
    }

    #[test]
    fn equal_epochs_from_other_members_are_accepted() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(3, "a")));
        assert!(filter.accept(&view(3, "a")));
    }
}
