//! The master follower: one background task that holds a `WatchMaster` stream to some member,
//! believes what it is told only as the client rules allow (`docs/client-rules.md`), moves to
//! the next member the moment the stream breaks, moves to a member that reports the master when
//! its own node has shown none for a poll period (or a call found the master it shows
//! unreachable), and publishes every accepted view. What to
//! believe and when to move is decided by `follow`; the other members are asked by `probe`.

use crate::endpoint::endpoint;
use crate::follow::{Follow, ProbeAnswer};
use crate::options::FollowerSettings;
use crate::probe::probe_members;
use crate::transport::NodeChannel;
use crate::view_filter::same_uri;
use futures::future::BoxFuture;
use haplane::MasterView;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamExt;

/// Why the follower stopped reading one stream.
enum StreamEnd {
    /// The stream ended or broke: go on to the next member.
    Broken,
    /// Another member reports a master this node does not show: stream from this URI instead.
    MoveTo(String),
}

/// Follows the master through `seeds` (and every member it learns of) until `views` has no
/// receivers left.
pub(crate) async fn follow(
    seeds: Vec<String>,
    settings: FollowerSettings,
    views: watch::Sender<Option<MasterView>>,
    refusals: watch::Sender<Option<tonic::Status>>,
    stream_opens: Arc<AtomicU64>,
    mut unreachable: watch::Receiver<u64>,
) {
    let mut members: BTreeSet<String> = seeds.into_iter().collect();
    let mut follow = Follow::new(settings.poll_period);
    let mut failed_rounds: u32 = 0;
    // The member that worked last, or the one a probe chose: tried first.
    let mut first: Option<String> = None;
    loop {
        let mut order: Vec<String> = members.iter().cloned().collect();
        if let Some(first) = &first {
            order.retain(|uri| uri != first);
            order.insert(0, first.clone());
        }
        let mut any_stream = false;
        for uri in order {
            if views.is_closed() {
                return;
            }
            let Ok(endpoint) = endpoint(&uri, &settings.endpoint) else {
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
            first = Some(uri.clone());
            let stream = response.into_inner();
            let streaming = Streaming {
                uri: &uri,
                members: &mut members,
                views: &views,
                settings: &settings,
                unreachable: &mut unreachable,
            };
            match read_stream(stream, &mut follow, streaming).await {
                StreamEnd::Broken => {
                    tracing::debug!(%uri, "master watch ended; moving to the next member");
                }
                StreamEnd::MoveTo(target) => {
                    tracing::info!(from = %uri, to = %target, "node shows no master; moving to one that does");
                    members.insert(target.clone());
                    first = Some(target);
                    break;
                }
            }
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

/// What one stream is read with: the node's URI, the members learnt, where accepted views are
/// published, the settings, and the count of calls that found the master unreachable.
struct Streaming<'a> {
    uri: &'a str,
    members: &'a mut BTreeSet<String>,
    views: &'a watch::Sender<Option<MasterView>>,
    settings: &'a FollowerSettings,
    unreachable: &'a mut watch::Receiver<u64>,
}

/// Publishes the accepted views of one stream; while the node shows no master, or after a call
/// found the believed master unreachable, probes the other members and says where to move when
/// one reports a master.
async fn read_stream(
    mut stream: tonic::Streaming<pb::MasterEvent>,
    follow: &mut Follow,
    streaming: Streaming<'_>,
) -> StreamEnd {
    let Streaming {
        uri,
        members,
        views,
        settings,
        unreachable,
    } = streaming;
    follow.stream_opened();
    let mut probe: Option<BoxFuture<'static, Vec<ProbeAnswer>>> = None;
    loop {
        let probe_due = follow.probe_at().filter(|_| probe.is_none());
        tokio::select! {
            event = stream.next() => {
                let Some(Ok(event)) = event else {
                    return StreamEnd::Broken;
                };
                let Ok(view) = MasterView::try_from(event) else {
                    continue;
                };
                for member in &view.members {
                    if !member.node_uri.is_empty() {
                        members.insert(member.node_uri.clone());
                    }
                }
                if follow.on_view(&view, uri, Instant::now()) {
                    views.send_replace(Some(view));
                }
                if follow.probe_at().is_none() {
                    // The node shows the master again: a probe under way is not needed.
                    probe = None;
                }
            }
            Ok(()) = unreachable.changed() => {
                follow.master_unreachable(Instant::now());
            }
            () = sleep_until_some(probe_due) => {
                let others: Vec<String> = members
                    .iter()
                    .filter(|member| !same_uri(member, uri))
                    .cloned()
                    .collect();
                probe = Some(Box::pin(probe_members(others, settings.clone())));
            }
            answers = run_probe(&mut probe) => {
                probe = None;
                if let Some(target) = follow.after_probe(uri, &answers, Instant::now()) {
                    return StreamEnd::MoveTo(target);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The answers of the probe under way, or never when none is.
async fn run_probe(probe: &mut Option<BoxFuture<'static, Vec<ProbeAnswer>>>) -> Vec<ProbeAnswer> {
    match probe {
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}
