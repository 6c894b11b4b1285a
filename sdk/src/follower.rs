//! The master follower: one background task that holds a `WatchMaster` stream to some member,
//! believes what it is told only as the client rules allow (`docs/client-rules.md`), moves to
//! the next member the moment the stream breaks, moves to a member that reports the master when
//! its own node has shown none for a poll period, and publishes every accepted view.

use crate::error::Error;
use crate::transport::NodeChannel;
use futures::future::BoxFuture;
use haplane::pb::{self, ha_service_client::HaServiceClient};
use haplane::{MasterRef, MasterView};
use http::HeaderValue;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The shortest time between two probes of the other members, whatever the poll period says.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Whether two URIs name the same endpoint (a trailing `/` does not count).
fn same_uri(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The master a filter believes in now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Believed {
    epoch: u64,
    id: String,
    uri: String,
}

/// Decides which views replace the current one (rules 1, 3 and 4 of `docs/client-rules.md`):
///
/// - never a lower epoch of the same plane (a lagging node cannot move the client back);
/// - a view of another, non-empty plane id starts over (the store was replaced or reset), so the
///   new plane's lower epochs are followed;
/// - a release (no master) in the believed master's epoch only from that master itself; a node
///   that cannot see the master says "no master" too, and is not believed. A newer epoch, from
///   any node, releases the old master;
/// - never, within an epoch, a master that released it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewFilter {
    plane_id: String,
    highest_epoch: u64,
    master: Option<Believed>,
    /// `(epoch, master)` of a master that gave up its claim.
    released: Option<(u64, String)>,
}

impl ViewFilter {
    /// Whether `view`, pushed by the node at `source` (the URI its stream was opened on), should
    /// be published; updates what the filter remembers.
    pub fn accept(&mut self, view: &MasterView, source: &str) -> bool {
        if !view.plane_id.is_empty() && view.plane_id != self.plane_id {
            if !self.plane_id.is_empty() {
                // Another plane: its epochs have nothing to do with the ones seen so far.
                *self = Self::default();
            }
            self.plane_id = view.plane_id.clone();
        }
        if view.epoch < self.highest_epoch {
            return false;
        }
        let Some(named) = &view.master else {
            if let Some(master) = &self.master
                && master.epoch == view.epoch
            {
                if !Self::from_master(master, view, source) {
                    return false;
                }
                self.released = Some((master.epoch, master.id.clone()));
            }
            self.master = None;
            self.highest_epoch = view.epoch;
            return true;
        };
        let released = self
            .released
            .as_ref()
            .is_some_and(|(epoch, master)| *epoch == view.epoch && *master == named.id);
        if released {
            return false;
        }
        self.master = Some(Believed {
            epoch: view.epoch,
            id: named.id.clone(),
            uri: named.uri.clone(),
        });
        self.highest_epoch = view.epoch;
        true
    }

    /// Whether `view` was pushed by `master` itself: the stream's URI is the master's, or the
    /// view's members give that URI the master's id.
    fn from_master(master: &Believed, view: &MasterView, source: &str) -> bool {
        same_uri(&master.uri, source)
            || view
                .members
                .iter()
                .any(|member| member.node_id == master.id && same_uri(&member.node_uri, source))
    }
}

/// One member's answer to `GetState` during a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeAnswer {
    /// The URI the probe reached the member on.
    pub uri: String,
    pub node_id: String,
    /// Its view of the master (no members: `GetState` does not list them).
    pub view: MasterView,
}

/// The follower's decisions, free of I/O: the view filter, and when the node streamed from has
/// shown no believed master for long enough to ask the other members (rule 2).
#[derive(Debug)]
pub(crate) struct Follow {
    filter: ViewFilter,
    poll_period: Duration,
    /// When to probe the other members; set only while the node streamed from shows no master,
    /// or shows a view the filter did not believe.
    probe_at: Option<Instant>,
}

impl Follow {
    pub fn new(poll_period: Duration) -> Self {
        Self {
            filter: ViewFilter::default(),
            poll_period: poll_period.max(MIN_PROBE_INTERVAL),
            probe_at: None,
        }
    }

    /// A stream to another node opened: nothing is known yet of what that node shows.
    pub fn stream_opened(&mut self) {
        self.probe_at = None;
    }

    /// A view pushed by the node at `source`; answers whether to publish it. A view without a
    /// master, or one not believed, arms a probe one poll period later unless one is armed.
    pub fn on_view(&mut self, view: &MasterView, source: &str, now: Instant) -> bool {
        let accepted = self.filter.accept(view, source);
        if accepted && view.master.is_some() {
            self.probe_at = None;
        } else if self.probe_at.is_none() {
            self.probe_at = Some(now + self.poll_period);
        }
        accepted
    }

    /// When the other members should be probed, if the node streamed from shows no master.
    pub fn probe_at(&self) -> Option<Instant> {
        self.probe_at
    }

    /// What a probe found while streaming from `current`: the URI to move the stream to, or
    /// `None` to stay and probe again one poll period from `now`.
    pub fn after_probe(
        &mut self,
        current: &str,
        answers: &[ProbeAnswer],
        now: Instant,
    ) -> Option<String> {
        let target = self.choose_move(current, answers);
        if target.is_none() {
            self.probe_at = Some(now + self.poll_period);
        }
        target
    }

    fn choose_move(&self, current: &str, answers: &[ProbeAnswer]) -> Option<String> {
        // A member reporting a master the filter would believe: open the stream on that master.
        let reported = answers
            .iter()
            .filter(|answer| self.filter.clone().accept(&answer.view, &answer.uri))
            .filter_map(|answer| {
                let master = answer.view.master.as_ref()?;
                let target = if master.uri.is_empty() {
                    &answer.uri
                } else {
                    &master.uri
                };
                Some((answer.view.epoch, target))
            })
            .filter(|(_, target)| !same_uri(target, current))
            .max_by_key(|(epoch, _)| *epoch);
        if let Some((_, target)) = reported {
            return Some(target.clone());
        }
        // No one reports a master, but the believed master answered: only it may say it let go,
        // so stream from it.
        let master = self.filter.master.as_ref()?;
        answers
            .iter()
            .find(|answer| answer.node_id == master.id && !same_uri(&answer.uri, current))
            .map(|answer| answer.uri.clone())
    }
}

/// Settings of the follower task.
#[derive(Debug, Clone)]
pub(crate) struct FollowerSettings {
    pub connect_timeout: Duration,
    pub keep_alive: Duration,
    /// The plane's poll period: how long a node may show no master before the others are asked.
    pub poll_period: Duration,
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
            first = Some(uri.clone());
            let stream = response.into_inner();
            match read_stream(&uri, stream, &mut follow, &mut members, &views, &settings).await {
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

/// Publishes the accepted views of one stream from `uri`; while the node shows no master,
/// probes the other members once a poll period and says where to move when one reports a master.
async fn read_stream(
    uri: &str,
    mut stream: tonic::Streaming<pb::MasterEvent>,
    follow: &mut Follow,
    members: &mut BTreeSet<String>,
    views: &watch::Sender<Option<MasterView>>,
    settings: &FollowerSettings,
) -> StreamEnd {
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

/// Asks every member in `uris` for its state at once, each bounded by the connect timeout plus a
/// poll period; members that do not answer are left out.
async fn probe_members(uris: Vec<String>, settings: FollowerSettings) -> Vec<ProbeAnswer> {
    let bound = settings.connect_timeout + settings.poll_period;
    let asks = uris.into_iter().map(|uri| {
        let settings = settings.clone();
        async move {
            let ask = async {
                let channel = NodeChannel::new(
                    endpoint(&uri, &settings).ok()?.connect().await.ok()?,
                    settings.authorization.clone(),
                );
                let state = HaServiceClient::new(channel)
                    .get_state(pb::GetStateRequest {})
                    .await
                    .ok()?
                    .into_inner();
                Some(ProbeAnswer {
                    node_id: state.node_id,
                    view: MasterView {
                        epoch: state.epoch,
                        master: MasterRef::from_wire(state.master_id, state.master_uri),
                        plane_id: state.plane_id,
                        members: Vec::new(),
                    },
                    uri,
                })
            };
            tokio::time::timeout(bound, ask).await.ok().flatten()
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
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
    use haplane::{Member, NodeState};

    const PLANE: &str = "plane-1";
    const POLL: Duration = Duration::from_secs(1);

    fn uri(node: &str) -> String {
        format!("http://{node}:8081")
    }

    /// Epoch `epoch` of `PLANE` with `master` (empty: none), as any node of `a`, `b`, `c` pushes
    /// it: the members list every node by id and URI.
    fn view(epoch: u64, master: &str) -> MasterView {
        MasterView {
            epoch,
            master: MasterRef::from_wire(master.to_owned(), uri(master)),
            plane_id: PLANE.to_owned(),
            members: ["a", "b", "c"]
                .into_iter()
                .map(|id| Member {
                    node_id: id.to_owned(),
                    node_uri: uri(id),
                    status: if id == master {
                        NodeState::Master
                    } else {
                        NodeState::HotStandby
                    },
                    live: true,
                })
                .collect(),
        }
    }

    fn on_plane(plane: &str, view: MasterView) -> MasterView {
        MasterView {
            plane_id: plane.to_owned(),
            ..view
        }
    }

    /// `node`'s `GetState` answer: its view of the master in `epoch`.
    fn answer(node: &str, epoch: u64, master: &str) -> ProbeAnswer {
        ProbeAnswer {
            uri: uri(node),
            node_id: node.to_owned(),
            view: MasterView {
                members: Vec::new(),
                ..view(epoch, master)
            },
        }
    }

    #[test]
    fn a_lower_epoch_never_replaces_a_newer_view() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(5, "a"), &uri("a")));
        assert!(
            !filter.accept(&view(4, "b"), &uri("b")),
            "a lagging node's view is ignored"
        );
        assert!(!filter.accept(&view(0, ""), &uri("b")));
        assert!(filter.accept(&view(6, "b"), &uri("b")));
        assert!(!filter.accept(&view(5, "a"), &uri("a")));
    }

    #[test]
    fn a_master_that_stepped_down_does_not_come_back_in_its_epoch() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(5, "a"), &uri("a")));
        assert!(
            filter.accept(&view(5, ""), &uri("a")),
            "the master's own step-down is news"
        );
        assert!(
            !filter.accept(&view(5, "a"), &uri("b")),
            "a lagging node still naming a is ignored"
        );
        assert!(filter.accept(&view(6, "b"), &uri("b")));
    }

    #[test]
    fn equal_epochs_from_other_members_are_accepted() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(3, "a"), &uri("b")));
        assert!(filter.accept(&view(3, "a"), &uri("c")));
    }

    #[test]
    fn a_standby_saying_no_master_in_the_current_epoch_is_not_believed() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(1, "a"), &uri("b")));
        assert!(
            !filter.accept(&view(1, ""), &uri("b")),
            "b only lost sight of a"
        );
        assert!(
            filter.accept(&view(1, "a"), &uri("b")),
            "b sees a again: the master never went away"
        );
    }

    #[test]
    fn the_masters_own_release_is_believed_by_uri_or_by_its_member_entry() {
        let mut by_uri = ViewFilter::default();
        assert!(by_uri.accept(&view(2, "a"), &uri("b")));
        let release = MasterView {
            members: Vec::new(),
            ..view(2, "")
        };
        assert!(by_uri.accept(&release, "http://a:8081/"));

        // a's claim names the URI it advertised before a restart; its record, the current one.
        let mut by_member = ViewFilter::default();
        let named = MasterView {
            master: MasterRef::from_wire("a".to_owned(), "http://old-a:8081".to_owned()),
            ..view(2, "a")
        };
        assert!(by_member.accept(&named, &uri("b")));
        assert!(
            by_member.accept(&view(2, ""), &uri("a")),
            "the members say the stream's node is a"
        );
        assert!(
            !by_member.accept(&view(2, "a"), &uri("c")),
            "a released epoch 2"
        );
    }

    #[test]
    fn a_newer_epoch_from_any_node_releases_the_old_master() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(1, "a"), &uri("b")));
        assert!(
            filter.accept(&view(2, ""), &uri("b")),
            "a claim of epoch 2 exists"
        );
        assert!(filter.accept(&view(2, "c"), &uri("b")));
    }

    #[test]
    fn a_new_plane_id_resets_the_epoch_filter() {
        let mut filter = ViewFilter::default();
        assert!(filter.accept(&view(7, "a"), &uri("a")));
        assert!(filter.accept(&view(7, ""), &uri("a")));
        assert!(
            filter.accept(&on_plane("plane-2", view(1, "a")), &uri("a")),
            "the replaced store's plane starts again at a low epoch"
        );
        assert!(!filter.accept(&on_plane("plane-2", view(0, "")), &uri("b")));
        assert!(
            filter.accept(&on_plane("", view(1, "a")), &uri("b")),
            "a view without a plane id does not reset"
        );
        assert!(!filter.accept(&on_plane("", view(0, "b")), &uri("b")));
    }

    #[test]
    fn a_standby_showing_no_master_for_a_poll_moves_the_stream_to_the_master() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        follow.stream_opened();
        assert!(follow.on_view(&view(1, "a"), &uri("b"), start));
        assert_eq!(
            follow.probe_at(),
            None,
            "no probing while b shows the master"
        );

        // b's store is out: it cannot confirm a and says "no master" in epoch 1.
        assert!(!follow.on_view(&view(1, ""), &uri("b"), start));
        assert_eq!(follow.probe_at(), Some(start + POLL));
        assert!(
            !follow.on_view(&view(1, ""), &uri("b"), start + POLL / 2),
            "still not believed"
        );
        assert_eq!(
            follow.probe_at(),
            Some(start + POLL),
            "the probe is not pushed back"
        );

        let answers = [answer("a", 1, "a"), answer("c", 1, "a")];
        assert_eq!(
            follow.after_probe(&uri("b"), &answers, start + POLL),
            Some(uri("a")),
            "the stream moves to the master itself"
        );
        follow.stream_opened();
        assert!(follow.on_view(&view(1, "a"), &uri("a"), start + POLL));
        assert_eq!(follow.probe_at(), None);
    }

    #[test]
    fn a_probe_that_finds_no_master_keeps_the_stream_and_probes_a_poll_later() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        assert!(follow.on_view(&view(3, ""), &uri("b"), start));
        assert_eq!(follow.probe_at(), Some(start + POLL), "no master at all");
        let answers = [answer("c", 3, ""), answer("a", 2, "a")];
        let later = start + POLL;
        assert_eq!(
            follow.after_probe(&uri("b"), &answers, later),
            None,
            "nobody reports a master of epoch 3 or later"
        );
        assert_eq!(follow.probe_at(), Some(later + POLL));
        assert_eq!(
            follow.after_probe(&uri("b"), &[answer("c", 4, "c")], later + POLL),
            Some(uri("c"))
        );
    }

    #[test]
    fn a_probe_prefers_the_newest_master_and_never_the_current_node() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        assert!(follow.on_view(&view(2, "a"), &uri("b"), start));
        assert!(!follow.on_view(&view(1, "c"), &uri("b"), start), "lagging");
        assert!(
            follow.probe_at().is_some(),
            "a view not believed arms a probe"
        );
        let answers = [
            answer("a", 2, "a"),
            answer("c", 3, "c"),
            answer("d", 3, "b"),
        ];
        assert_eq!(
            follow.after_probe(&uri("b"), &answers, start),
            Some(uri("c"))
        );
        assert_eq!(
            follow.after_probe(&uri("b"), &[answer("c", 3, "b")], start),
            None,
            "already streaming from the master named"
        );
    }

    #[test]
    fn the_believed_master_is_streamed_from_when_nobody_reports_a_master() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        assert!(follow.on_view(&view(4, "a"), &uri("b"), start));
        assert!(!follow.on_view(&view(4, ""), &uri("b"), start));
        let answers = [answer("c", 4, ""), answer("a", 4, "")];
        assert_eq!(
            follow.after_probe(&uri("b"), &answers, start + POLL),
            Some(uri("a")),
            "only a may say it let go"
        );
        follow.stream_opened();
        assert!(
            follow.on_view(&view(4, ""), &uri("a"), start + POLL),
            "a's own release is believed"
        );
        assert_eq!(
            follow.after_probe(&uri("a"), &[answer("c", 4, "")], start + POLL * 2),
            None
        );
    }

    #[test]
    fn a_member_on_a_new_plane_with_a_master_is_moved_to() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        assert!(follow.on_view(&view(9, "a"), &uri("a"), start));
        assert!(follow.on_view(&view(9, ""), &uri("a"), start));
        let mut fresh = answer("b", 1, "b");
        fresh.view.plane_id = "plane-2".to_owned();
        assert_eq!(
            follow.after_probe(&uri("a"), &[answer("c", 8, "c"), fresh], start),
            Some(uri("b"))
        );
    }
}
