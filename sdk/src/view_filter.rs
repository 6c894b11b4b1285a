//! `ViewFilter`: which pushed master views the client believes (rules 1, 3 and 4 of
//! `docs/client-rules.md`), and how two URIs are compared when deciding who pushed a view.

use haplane::MasterView;

/// Whether two URIs name the same endpoint (a trailing `/` does not count).
pub(crate) fn same_uri(a: &str, b: &str) -> bool {
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

    /// The id of the master believed in now, if any.
    pub(crate) fn believed_master_id(&self) -> Option<&str> {
        self.master.as_ref().map(|master| master.id.as_str())
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use haplane::{MasterRef, Member, NodeState};

    const PLANE: &str = "plane-1";

    pub(crate) fn uri(node: &str) -> String {
        format!("http://{node}:8081")
    }

    /// Epoch `epoch` of `PLANE` with `master` (empty: none), as any node of `a`, `b`, `c` pushes
    /// it: the members list every node by id and URI.
    pub(crate) fn view(epoch: u64, master: &str) -> MasterView {
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
}
