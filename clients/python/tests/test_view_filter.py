"""The view filter, rule by rule (docs/client-rules.md rules 1, 3 and 4): each test feeds a
history of pushed views and checks which are believed, including histories that must be
rejected. Mirrors sdk/src/view_filter.rs's tests, plus a few more histories."""

import unittest

from haplane_client import MasterRef, MasterView, Member, NodeState, ViewFilter, same_uri

PLANE = "plane-1"


def uri(node: str) -> str:
    return f"http://{node}:8081"


def view(epoch: int, master: str, plane: str = PLANE, members=("a", "b", "c")) -> MasterView:
    """Epoch ``epoch`` of ``plane`` with ``master`` (empty: none), as any node of a, b, c pushes
    it: the members list every node by id and URI."""
    return MasterView(
        epoch=epoch,
        master=MasterRef.from_wire(master, uri(master) if master else ""),
        plane_id=plane,
        members=tuple(
            Member(
                node,
                uri(node),
                NodeState.MASTER if node == master else NodeState.HOT_STANDBY,
                True,
            )
            for node in members
        ),
    )


class SameUriTest(unittest.TestCase):
    def test_a_trailing_slash_does_not_count_and_nothing_else_is_equal(self):
        self.assertTrue(same_uri("http://a:8081", "http://a:8081/"))
        self.assertTrue(same_uri("http://a:8081/", "http://a:8081"))
        self.assertFalse(same_uri("http://a:8081", "http://a:8082"))
        self.assertFalse(same_uri("http://a:8081", "https://a:8081"))


class ViewFilterTest(unittest.TestCase):
    def test_a_lower_epoch_never_replaces_a_newer_view(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(5, "a"), uri("a")))
        self.assertFalse(f.accept(view(4, "b"), uri("b")), "a lagging node's view is ignored")
        self.assertFalse(f.accept(view(0, ""), uri("b")))
        self.assertTrue(f.accept(view(6, "b"), uri("b")))
        self.assertFalse(f.accept(view(5, "a"), uri("a")), "not even from the old master itself")
        self.assertFalse(f.accept(view(5, ""), uri("a")))
        self.assertEqual(f.highest_epoch, 6)
        self.assertEqual(f.believed_master_id, "b")

    def test_a_master_that_stepped_down_does_not_come_back_in_its_epoch(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(5, "a"), uri("a")))
        self.assertTrue(f.accept(view(5, ""), uri("a")), "the master's own step-down is news")
        self.assertIsNone(f.believed_master_id)
        self.assertEqual(f.released, (5, "a"))
        self.assertFalse(f.accept(view(5, "a"), uri("b")), "a lagging node still naming a is ignored")
        self.assertFalse(f.accept(view(5, "a"), uri("a")), "nor a itself: a needs a new epoch")
        self.assertTrue(f.accept(view(5, ""), uri("c")), "no master, as believed already")
        self.assertTrue(f.accept(view(6, "a"), uri("a")), "a comes back through a new claim")

    def test_another_master_in_a_released_epoch_is_still_believed(self):
        # Only the master that released an epoch is barred from it.
        f = ViewFilter()
        self.assertTrue(f.accept(view(5, "a"), uri("a")))
        self.assertTrue(f.accept(view(5, ""), uri("a")))
        self.assertTrue(f.accept(view(5, "b"), uri("b")))

    def test_equal_epochs_from_other_members_are_accepted(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(3, "a"), uri("b")))
        self.assertTrue(f.accept(view(3, "a"), uri("c")))

    def test_a_standby_saying_no_master_in_the_current_epoch_is_not_believed(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(1, "a"), uri("b")))
        self.assertFalse(f.accept(view(1, ""), uri("b")), "b only lost sight of a")
        self.assertFalse(f.accept(view(1, ""), uri("c")), "nor c")
        self.assertEqual(f.believed_master_id, "a", "a is still believed")
        self.assertIsNone(f.released, "nobody released epoch 1")
        self.assertTrue(f.accept(view(1, "a"), uri("b")), "b sees a again: the master never went away")

    def test_a_standby_release_is_not_believed_even_when_the_members_list_it_elsewhere(self):
        # b's stream claims "no master"; its members name a at a's URI, so the stream (b) is not a.
        f = ViewFilter()
        self.assertTrue(f.accept(view(2, "a"), uri("a")))
        self.assertFalse(f.accept(view(2, ""), uri("b")))
        # A release without members from a URI that is not the master's is not believed either.
        release = MasterView(epoch=2, master=None, plane_id=PLANE, members=())
        self.assertFalse(f.accept(release, uri("c")))

    def test_the_masters_own_release_is_believed_by_uri_or_by_its_member_entry(self):
        by_uri = ViewFilter()
        self.assertTrue(by_uri.accept(view(2, "a"), uri("b")))
        release = MasterView(epoch=2, master=None, plane_id=PLANE, members=())
        self.assertTrue(by_uri.accept(release, "http://a:8081/"))

        # a's claim names the URI it advertised before a restart; its record, the current one.
        by_member = ViewFilter()
        named = MasterView(
            epoch=2,
            master=MasterRef("a", "http://old-a:8081"),
            plane_id=PLANE,
            members=view(2, "a").members,
        )
        self.assertTrue(by_member.accept(named, uri("b")))
        self.assertTrue(by_member.accept(view(2, ""), uri("a")), "the members say the stream's node is a")
        self.assertFalse(by_member.accept(view(2, "a"), uri("c")), "a released epoch 2")

    def test_a_newer_epoch_from_any_node_releases_the_old_master(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(1, "a"), uri("b")))
        self.assertTrue(f.accept(view(2, ""), uri("b")), "a claim of epoch 2 exists")
        self.assertTrue(f.accept(view(2, "c"), uri("b")))

    def test_a_new_plane_id_resets_the_epoch_filter(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(7, "a"), uri("a")))
        self.assertTrue(f.accept(view(7, ""), uri("a")))
        self.assertTrue(
            f.accept(view(1, "a", plane="plane-2"), uri("a")),
            "the replaced store's plane starts again at a low epoch",
        )
        self.assertEqual((f.plane_id, f.highest_epoch, f.released), ("plane-2", 1, None))
        self.assertFalse(f.accept(view(0, "", plane="plane-2"), uri("b")))
        self.assertTrue(f.accept(view(1, "a", plane=""), uri("b")), "a view without a plane id does not reset")
        self.assertFalse(f.accept(view(0, "b", plane=""), uri("b")))
        self.assertEqual(f.plane_id, "plane-2")

    def test_an_empty_plane_id_never_resets(self):
        # A node that has not joined yet says plane "" and epoch 0: that is not a new plane.
        f = ViewFilter()
        self.assertTrue(f.accept(view(4, "a"), uri("a")))
        self.assertFalse(f.accept(view(0, "", plane=""), uri("b")))
        self.assertFalse(f.accept(view(1, "b", plane=""), uri("b")))
        self.assertEqual((f.plane_id, f.highest_epoch, f.believed_master_id), (PLANE, 4, "a"))

    def test_going_back_to_the_old_plane_is_another_reset(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(9, "a"), uri("a")))
        self.assertTrue(f.accept(view(1, "b", plane="plane-2"), uri("b")))
        self.assertTrue(f.accept(view(9, "a"), uri("a")), "plane-1 again: its own epochs count")
        self.assertFalse(f.accept(view(8, "c"), uri("c")))

    def test_the_first_view_may_have_no_master(self):
        f = ViewFilter()
        self.assertTrue(f.accept(view(0, ""), uri("a")))
        self.assertIsNone(f.believed_master_id)
        self.assertTrue(f.accept(view(1, "a"), uri("a")))

    def test_rejected_views_change_nothing(self):
        f = ViewFilter()
        f.accept(view(3, "a"), uri("a"))
        before = (f.plane_id, f.highest_epoch, f.believed_master_id, f.released)
        for rejected in (view(2, "b"), view(3, "")):
            self.assertFalse(f.accept(rejected, uri("b")))
            self.assertEqual((f.plane_id, f.highest_epoch, f.believed_master_id, f.released), before)

    def test_copy_is_independent(self):
        f = ViewFilter()
        f.accept(view(3, "a"), uri("a"))
        trial = f.copy()
        self.assertTrue(trial.accept(view(4, "b"), uri("b")))
        self.assertEqual((f.highest_epoch, f.believed_master_id), (3, "a"))


if __name__ == "__main__":
    unittest.main()
