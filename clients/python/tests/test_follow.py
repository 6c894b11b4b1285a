"""The follower's decisions free of I/O (rules 2 and 5 of docs/client-rules.md): when to probe
the other members, and where a probe's answers move the stream. Mirrors sdk/src/follow.rs's tests."""

import unittest

from haplane_client import Follow, MasterView, ProbeAnswer

from test_view_filter import uri, view

POLL = 1.0


def answer(node: str, epoch: int, master: str, plane: str = "plane-1") -> ProbeAnswer:
    """``node``'s GetState answer: its view of the master in ``epoch`` (no members)."""
    named = view(epoch, master, plane=plane)
    return ProbeAnswer(uri(node), node, MasterView(named.epoch, named.master, named.plane_id, ()))


class FollowTest(unittest.TestCase):
    def test_a_standby_showing_no_master_for_a_poll_moves_the_stream_to_the_master(self):
        start = 100.0
        follow = Follow(POLL)
        follow.stream_opened()
        self.assertTrue(follow.on_view(view(1, "a"), uri("b"), start))
        self.assertIsNone(follow.probe_at, "no probing while b shows the master")

        # b's store is out: it cannot confirm a and says "no master" in epoch 1.
        self.assertFalse(follow.on_view(view(1, ""), uri("b"), start))
        self.assertEqual(follow.probe_at, start + POLL)
        self.assertFalse(follow.on_view(view(1, ""), uri("b"), start + POLL / 2), "still not believed")
        self.assertEqual(follow.probe_at, start + POLL, "the probe is not pushed back")

        answers = [answer("a", 1, "a"), answer("c", 1, "a")]
        self.assertEqual(
            follow.after_probe(uri("b"), answers, start + POLL), uri("a"), "the stream moves to the master itself"
        )
        follow.stream_opened()
        self.assertTrue(follow.on_view(view(1, "a"), uri("a"), start + POLL))
        self.assertIsNone(follow.probe_at)

    def test_a_probe_that_finds_no_master_keeps_the_stream_and_probes_a_poll_later(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(3, ""), uri("b"), start))
        self.assertEqual(follow.probe_at, start + POLL, "no master at all")
        later = start + POLL
        self.assertIsNone(
            follow.after_probe(uri("b"), [answer("c", 3, ""), answer("a", 2, "a")], later),
            "nobody reports a master of epoch 3 or later",
        )
        self.assertEqual(follow.probe_at, later + POLL)
        self.assertEqual(follow.after_probe(uri("b"), [answer("c", 4, "c")], later + POLL), uri("c"))

    def test_a_probe_prefers_the_newest_master_and_never_the_current_node(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(2, "a"), uri("b"), start))
        self.assertFalse(follow.on_view(view(1, "c"), uri("b"), start), "lagging")
        self.assertIsNotNone(follow.probe_at, "a view not believed arms a probe")
        answers = [answer("a", 2, "a"), answer("c", 3, "c"), answer("d", 3, "b")]
        self.assertIn(follow.after_probe(uri("b"), answers, start), (uri("c"),))
        self.assertIsNone(
            follow.after_probe(uri("b"), [answer("c", 3, "b")], start), "already streaming from the master named"
        )

    def test_a_probe_never_moves_to_a_master_the_filter_would_reject(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(5, "a"), uri("a"), start))
        self.assertTrue(follow.on_view(view(5, ""), uri("a"), start), "a released epoch 5")
        lagging = [answer("b", 4, "b"), answer("c", 5, "a")]
        self.assertIsNone(
            follow.after_probe(uri("a"), lagging, start + POLL),
            "an older epoch, and the master that released epoch 5, are not moved to",
        )
        self.assertEqual(follow.probe_at, start + 2 * POLL)

    def test_the_believed_master_is_streamed_from_when_nobody_reports_a_master(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(4, "a"), uri("b"), start))
        self.assertFalse(follow.on_view(view(4, ""), uri("b"), start))
        answers = [answer("c", 4, ""), answer("a", 4, "")]
        self.assertEqual(follow.after_probe(uri("b"), answers, start + POLL), uri("a"), "only a may say it let go")
        follow.stream_opened()
        self.assertTrue(follow.on_view(view(4, ""), uri("a"), start + POLL), "a's own release is believed")
        self.assertIsNone(follow.after_probe(uri("a"), [answer("c", 4, "")], start + 2 * POLL))

    def test_a_member_on_a_new_plane_with_a_master_is_moved_to(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(9, "a"), uri("a"), start))
        self.assertTrue(follow.on_view(view(9, ""), uri("a"), start))
        fresh = answer("b", 1, "b", plane="plane-2")
        self.assertEqual(follow.after_probe(uri("a"), [answer("c", 8, "c"), fresh], start), uri("b"))

    def test_a_probe_does_not_change_what_the_filter_believes(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(2, "a"), uri("b"), start))
        follow.after_probe(uri("b"), [answer("c", 7, "c")], start)
        self.assertEqual((follow.filter.highest_epoch, follow.filter.believed_master_id), (2, "a"))

    def test_a_believed_view_with_a_master_disarms_the_probe(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(1, ""), uri("b"), start))
        self.assertIsNotNone(follow.probe_at)
        self.assertTrue(follow.on_view(view(2, "c"), uri("b"), start + 0.1))
        self.assertIsNone(follow.probe_at)

    def test_an_unreachable_master_that_the_node_still_shows_moves_the_stream_to_a_newer_one(self):
        start = 100.0
        follow = Follow(POLL)
        follow.stream_opened()
        self.assertTrue(follow.on_view(view(1, "a"), uri("b"), start))
        self.assertIsNone(follow.probe_at)
        follow.master_unreachable(start)
        self.assertEqual(follow.probe_at, start + POLL, "a call found a unreachable: probe a poll later")
        follow.master_unreachable(start + POLL / 2)
        self.assertEqual(follow.probe_at, start + POLL, "not pushed back")

        self.assertIsNone(follow.after_probe(uri("b"), [], start + POLL), "nobody answered")
        self.assertIsNone(follow.probe_at, "b still shows the master: no polling until the next unreachable call")
        self.assertIsNone(
            follow.after_probe(uri("b"), [answer("c", 1, "")], start + POLL),
            "c shows no master in epoch 1 (not believed): nowhere to move",
        )
        self.assertIsNone(follow.probe_at, "still no polling")

        follow.master_unreachable(start + POLL * 2)
        self.assertEqual(follow.probe_at, start + POLL * 3)
        self.assertEqual(
            follow.after_probe(uri("b"), [answer("a", 1, "a")], start + POLL * 3),
            uri("a"),
            "the believed master itself answered: stream from it (only it may say it let go)",
        )
        follow.master_unreachable(start + POLL * 4)
        self.assertEqual(
            follow.after_probe(uri("b"), [answer("c", 2, "c")], start + POLL * 5),
            uri("c"),
            "a newer epoch's master is believed from any node",
        )
        self.assertIsNone(follow.probe_at)

    def test_an_unreachable_call_while_the_node_shows_no_master_keeps_the_probe_due(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(1, "a"), uri("b"), start))
        self.assertFalse(follow.on_view(view(1, ""), uri("b"), start), "b cannot see a")
        self.assertEqual(follow.probe_at, start + POLL)
        follow.master_unreachable(start + POLL / 2)
        self.assertEqual(follow.probe_at, start + POLL, "the probe already due is not pushed back")
        self.assertIsNone(follow.after_probe(uri("b"), [], start + POLL))
        self.assertEqual(follow.probe_at, start + 2 * POLL, "no master shown: probe again a poll later")

    def test_a_new_stream_forgets_that_the_node_showed_a_master(self):
        start = 100.0
        follow = Follow(POLL)
        self.assertTrue(follow.on_view(view(1, "a"), uri("b"), start))
        self.assertTrue(follow.shows_master)
        follow.stream_opened()
        self.assertFalse(follow.shows_master)

    def test_the_poll_period_has_a_floor(self):
        follow = Follow(0.0)
        follow.on_view(view(1, ""), uri("b"), 0.0)
        self.assertGreater(follow.probe_at, 0.0)


if __name__ == "__main__":
    unittest.main()
