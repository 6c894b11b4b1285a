//! `Follow`: the follower's decisions, free of I/O (rule 2 of `docs/client-rules.md`): the view
//! filter, when the node streamed from has shown no believed master for long enough to ask the
//! other members, and which member a probe's answers say to move the stream to.

use crate::view_filter::{ViewFilter, same_uri};
use haplane::MasterView;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two probes of the other members, whatever the poll period says.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);

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
    /// When to probe the other members; set while the node streamed from shows no master, or a
    /// view the filter did not believe, and after a call found the believed master unreachable.
    probe_at: Option<Instant>,
    /// Whether the node streamed from shows a master the client believes (the last view
    /// accepted named one).
    shows_master: bool,
}

impl Follow {
    pub fn new(poll_period: Duration) -> Self {
        Self {
            filter: ViewFilter::default(),
            poll_period: poll_period.max(MIN_PROBE_INTERVAL),
            probe_at: None,
            shows_master: false,
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
        self.shows_master = accepted && view.master.is_some();
        if self.shows_master {
            self.probe_at = None;
        } else if self.probe_at.is_none() {
            self.probe_at = Some(now + self.poll_period);
        }
        accepted
    }

    /// A call to the believed master found it unreachable (rule 5): the other members are asked
    /// one poll period from now, unless a probe is due already. A node that cannot read the store
    /// keeps showing the master it last saw, so without this a crash of that master would go
    /// unnoticed by the node's watchers.
    pub fn master_unreachable(&mut self, now: Instant) {
        if self.probe_at.is_none() {
            self.probe_at = Some(now + self.poll_period);
        }
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
        // Nowhere to move: ask again a poll later while the node shows no master; while it shows
        // one, only the next unreachable call asks again.
        self.probe_at = (target.is_none() && !self.shows_master).then_some(now + self.poll_period);
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
        let master_id = self.filter.believed_master_id()?;
        answers
            .iter()
            .find(|answer| answer.node_id == master_id && !same_uri(&answer.uri, current))
            .map(|answer| answer.uri.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view_filter::tests::{uri, view};

    const POLL: Duration = Duration::from_secs(1);

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

    #[test]
    fn an_unreachable_master_that_the_node_still_shows_moves_the_stream_to_a_newer_one() {
        let start = Instant::now();
        let mut follow = Follow::new(POLL);
        follow.stream_opened();
        assert!(follow.on_view(&view(1, "a"), &uri("b"), start));
        assert_eq!(follow.probe_at(), None);
        follow.master_unreachable(start);
        assert_eq!(follow.probe_at(), Some(start + POLL));
        follow.master_unreachable(start + POLL / 2);
        assert_eq!(follow.probe_at(), Some(start + POLL), "not pushed back");

        assert_eq!(
            follow.after_probe(&uri("b"), &[], start + POLL),
            None,
            "nobody answered"
        );
        assert_eq!(
            follow.probe_at(),
            None,
            "b still shows the master: no polling until the next unreachable call"
        );

        follow.master_unreachable(start + POLL * 2);
        let newer = [answer("c", 2, "c")];
        assert_eq!(
            follow.after_probe(&uri("b"), &newer, start + POLL * 3),
            Some(uri("c")),
            "a newer epoch's master is believed from any node"
        );
    }
}
