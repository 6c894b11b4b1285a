"""End to end against real nodes with per-node store faults (client rule 5): a standby without its
store keeps showing the master it last saw, so when that master crashes the standby never pushes
the change. A client streaming from that standby must still reach the new master: a call that
finds the master unreachable makes it ask the other members. Mirrors the last test of
tests/tests/follow.rs."""

import time
import unittest

import haplane_client as hc

from _plane import DEADLINE, POLL, Plane, eventually


def options() -> hc.ConnectOptions:
    return hc.ConnectOptions(failover_timeout=DEADLINE, connect_timeout=0.5, keep_alive=0.3, poll_period=POLL)


class UnreachableMasterTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.plane = Plane(per_node_faults=True)
        self.addCleanup(self.plane.close)
        await self.plane.start(["a", "b", "c"])
        self.master = await self.plane.wait_for_master()
        self.epoch = (await self.master.state()).epoch

        async def faults_on():
            logs = [node.log.read_text(errors="replace") for node in self.plane.nodes.values()]
            return True if all("store fault injection is on" in log for log in logs) else None

        try:
            await eventually("the nodes to log that store fault injection is on", faults_on, deadline=5)
        except AssertionError:
            self.fail(
                "the nodes do not inject store faults: build the haplane binary with the "
                f"`test-support` feature (the workspace debug build has it); logs in {self.plane.dir}"
            )

    async def test_a_client_of_a_standby_without_its_store_finds_the_new_master_when_the_old_one_dies(self):
        standby, third = [node for node in self.plane.nodes.values() if node.id != self.master.id]
        client = await hc.Client.connect([standby.uri], options())
        self.addAsyncCleanup(client.close)
        first = await client.wait_for_master(DEADLINE)
        self.assertEqual((first.master_id, first.epoch), (self.master.id, self.epoch))
        self.assertEqual(len(client.members()), 3, "the other members were learnt from the stream")

        self.plane.set_faults(standby.id, "outage = true\n")
        self.addCleanup(self.plane.set_faults, standby.id, "")
        await self.master.kill9()
        killed = time.monotonic()
        before = client.stats()

        # The third node has its store: it sees the crash and becomes master.
        async def new_master():
            state = await third.state()
            if state is not None and state.master_id and state.master_id != self.master.id:
                return state
            return None

        named = await eventually("the third node to name a new master", new_master)
        self.assertEqual(named.master_id, third.id, "only the third node can claim")
        new_state = await third.state()
        self.assertGreater(new_state.epoch, self.epoch)
        stale = await standby.state()
        print(
            f"\n  {standby.id} without its store shows master {stale.master_id!r} in epoch {stale.epoch};"
            f" {third.id} is master of epoch {new_state.epoch}",
            end="",
        )
        self.assertEqual(client.master().master_id, self.master.id, "the client still names the dead master")

        asked = await client.get_state()
        print(f"; the call reached {asked.node_id} {time.monotonic() - killed:.2f}s after the kill", end="")
        self.assertEqual((asked.node_id, asked.state, asked.epoch), (third.id, hc.NodeState.MASTER, new_state.epoch))
        named_now = client.master()
        self.assertIsNotNone(named_now)
        self.assertEqual((named_now.master_id, named_now.epoch), (third.id, new_state.epoch), "the client names the new master")
        self.assertGreater(client.stats().probes, before.probes, "the failed calls made the client probe")


if __name__ == "__main__":
    unittest.main()
