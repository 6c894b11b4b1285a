"""End to end against real nodes: the client follows a crash failover (kill -9), a graceful one
(`haplane stop --pid-file`) and a crash while the node it streams from is frozen, and its calls
go to the new master."""

import asyncio
import time
import unittest
from typing import List

import haplane_client as hc

from _plane import DEADLINE, POLL, Plane, eventually


def options(**changes) -> hc.ConnectOptions:
    base = hc.ConnectOptions(
        failover_timeout=DEADLINE,
        connect_timeout=0.5,
        keep_alive=0.3,
        poll_period=POLL,
    )
    return base.with_(**changes)


class Recorder:
    """Records every view the client publishes, from the current one on."""

    def __init__(self, client: hc.Client) -> None:
        self.views: List[hc.MasterView] = []
        self._task = asyncio.ensure_future(self._run(client))

    async def _run(self, client: hc.Client) -> None:
        async for view in client.watch_master():
            self.views.append(view)

    async def new_master(self, old_id: str) -> hc.MasterView:
        async def check():
            for view in self.views:
                if view.master is not None and view.master_id != old_id:
                    return view
            return None

        return await eventually(f"a pushed master other than {old_id}", check)

    def close(self) -> None:
        self._task.cancel()


class FailoverTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.plane = Plane()
        self.addCleanup(self.plane.close)
        await self.plane.start(["a", "b", "c"])
        self.master = await self.plane.wait_for_master()
        self.epoch = (await self.master.state()).epoch

    async def connect(self, seeds, **changes) -> hc.Client:
        client = await hc.Client.connect(seeds, options(**changes))
        self.addAsyncCleanup(client.close)
        return client

    def check_history(self, views: List[hc.MasterView]) -> None:
        """What any client must never publish: a lower epoch after a higher one, or a master
        back in an epoch after a newer epoch was seen."""
        highest = 0
        for view in views:
            self.assertGreaterEqual(view.epoch, highest, f"an epoch went back: {views}")
            highest = view.epoch

    async def test_a_client_of_the_master_alone_follows_a_crash_to_the_new_master(self):
        client = await self.connect([self.master.uri])
        first = await client.wait_for_master(DEADLINE)
        self.assertEqual((first.master_id, first.epoch), (self.master.id, self.epoch))
        self.assertEqual(len(first.members), 3)
        self.assertEqual(len(client.members()), 3, "the other members were learnt from the stream")
        recorder = Recorder(client)
        self.addCleanup(recorder.close)
        before = client.stats()

        killed = time.monotonic()
        await self.master.kill9()
        view = await recorder.new_master(self.master.id)
        print(f"\n  crash: told of {view.master_id} (epoch {view.epoch}) {time.monotonic() - killed:.2f}s after kill -9", end="")
        self.assertGreater(view.epoch, self.epoch, "a new master claims a newer epoch")
        self.assertIn(view.master_id, ("b", "c"))
        after = client.stats()
        self.assertEqual(after.unary_calls, before.unary_calls, "no unary call was made to find the master")
        self.assertGreater(after.watch_streams, before.watch_streams, "the view came from a new stream")

        agreed = await self.plane.wait_for_master(other_than=self.master.id)
        self.assertEqual(agreed.id, view.master_id, "the client names the master the nodes agree on")
        state = await client.get_state()
        self.assertEqual((state.node_id, state.state, state.epoch), (view.master_id, hc.NodeState.MASTER, view.epoch))
        written = await client.put_entity("after/crash", {"by": "python"})
        self.assertEqual((written.version, written.updated_epoch), (1, view.epoch), "the write went to the new master")
        self.check_history(recorder.views)

    async def test_clients_of_the_master_and_of_a_standby_follow_a_graceful_stop(self):
        # Nodes of equal priority: the lower id wins, so the highest id is the standby that does
        # not take over (and may say "no master" in the old epoch before the new claim).
        others = sorted(node.id for node in self.plane.nodes.values() if node.id != self.master.id)
        loser = self.plane.nodes[others[-1]]
        of_master = await self.connect([self.master.uri])
        of_standby = await self.connect([loser.uri])
        for client in (of_master, of_standby):
            first = await client.wait_for_master(DEADLINE)
            self.assertEqual((first.master_id, first.epoch), (self.master.id, self.epoch))
        recorders = [Recorder(of_master), Recorder(of_standby)]
        for recorder in recorders:
            self.addCleanup(recorder.close)

        stopped = time.monotonic()
        await self.master.stop()
        self.assertFalse(self.master.running)
        views = [await recorder.new_master(self.master.id) for recorder in recorders]
        print(f"\n  graceful: told of {views[0].master_id} (epoch {views[0].epoch}) {time.monotonic() - stopped:.2f}s after stop", end="")
        agreed = await self.plane.wait_for_master(other_than=self.master.id)
        for view, recorder in zip(views, recorders):
            self.assertEqual((view.master_id, view.epoch), (agreed.id, self.epoch + 1))
            self.check_history(recorder.views)
        for seen in recorders[1].views:
            self.assertFalse(
                seen.epoch == self.epoch and seen.master is None,
                f"a standby's 'no master' in the master's epoch was believed: {recorders[1].views}",
            )
        for client in (of_master, of_standby):
            state = await client.get_state()
            self.assertEqual((state.node_id, state.state), (agreed.id, hc.NodeState.MASTER))
        self.assertEqual(await of_standby.set_priority(3), 0, "set_priority reached the new master")
        self.assertEqual((await of_master.get_state()).priority, 3)

    async def test_a_client_of_a_frozen_standby_moves_on_and_follows_a_crash(self):
        standby, other = [node for node in self.plane.nodes.values() if node.id != self.master.id]
        client = await self.connect([standby.uri])
        await client.wait_for_master(DEADLINE)
        self.assertEqual(len(client.members()), 3)
        recorder = Recorder(client)
        self.addCleanup(recorder.close)

        # The standby keeps its TCP connections but answers nothing (not even pings); then the
        # master crashes. Only the third node can take over, and only it can tell the client.
        standby.sigstop()
        self.addCleanup(standby.sigcont)
        await self.master.kill9()
        view = await recorder.new_master(self.master.id)
        self.assertEqual(view.master_id, other.id)
        self.assertGreater(view.epoch, self.epoch)
        state = await client.get_state()
        self.assertEqual((state.node_id, state.state), (other.id, hc.NodeState.MASTER))
        self.check_history(recorder.views)


if __name__ == "__main__":
    unittest.main()
