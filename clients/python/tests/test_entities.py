"""End to end against real nodes: a write whose acknowledgement is lost in a crash is retried on
the new master with the same idempotency key and applied once; bad input and refusals come back
as typed errors carrying the gRPC code and the server's ErrorInfo reason; credentials and TLS."""

import asyncio
import shutil
import subprocess
import time
import unittest

import grpc

import haplane_client as hc
from haplane_client import pb

from _plane import DEADLINE, HoldingProxy, Plane, eventually
from test_failover import options


async def entity_on(node, entity_id: str):
    """The entity as ``node`` itself has it (its own port, no client), or None."""
    async with grpc.aio.insecure_channel(node.address) as channel:
        try:
            answer = await pb.entity_pb2_grpc.EntityServiceStub(channel).Get(
                pb.entity_pb2.GetRequest(id=entity_id), timeout=1
            )
        except grpc.RpcError:
            return None
        return answer.entity


async def changes_until(node, prefix: str, start_seq: int, marker: str):
    """Every change to ids under ``prefix`` that ``node`` keeps from ``start_seq`` on, up to and
    including the change to ``marker`` (written last, so the history before it is complete)."""
    changes = []
    async with grpc.aio.insecure_channel(node.address) as channel:
        stream = pb.entity_pb2_grpc.EntityServiceStub(channel).Watch(
            pb.entity_pb2.WatchRequest(prefix=prefix, start_seq=start_seq), timeout=DEADLINE
        )
        async for change in stream:
            changes.append(change)
            if change.id == marker:
                stream.cancel()
                return changes
    raise AssertionError(f"the watch ended before {marker}: {changes}")


class AppliedOnceTest(unittest.IsolatedAsyncioTestCase):
    async def test_a_write_whose_answer_is_lost_in_a_crash_is_applied_once(self):
        plane = Plane()
        self.addCleanup(plane.close)
        # a is reached (by the client and by its peers) through a proxy that can lose its
        # answers; with the highest priority it is the first master.
        proxy = await HoldingProxy().start()
        self.addAsyncCleanup(proxy.close)
        a = plane.spawn("a", 5, ["--advertise-uri", proxy.uri])
        b = plane.spawn("b")
        c = plane.spawn("c")
        await asyncio.gather(*(node.wait_listening() for node in (a, b, c)))
        host, port = a.address.rsplit(":", 1)
        proxy.upstream = (host, int(port))
        self.assertEqual(a.uri, proxy.uri)
        master = await plane.wait_for_master()
        self.assertEqual(master.id, "a")
        epoch = (await a.state()).epoch

        client = await hc.Client.connect([a.uri, b.uri, c.uri], options())
        self.addAsyncCleanup(client.close)
        await client.put_entity("once/warm-up", {"n": 0})
        self.assertEqual(client.master().master_id, "a")
        before = client.stats().unary_calls

        # From now on a's answers are lost on the way back: the write reaches a, a applies it,
        # and the client never hears so.
        proxy.holding = True
        write = asyncio.ensure_future(client.put_entity("once/x", {"n": 1}))
        applied = await eventually("a to apply the write", lambda: entity_on(a, "once/x"))
        self.assertEqual((applied.version, applied.updated_epoch), (1, epoch))
        self.assertFalse(write.done(), "the client has not heard the acknowledgement")
        self.assertGreater(proxy.dropped_bytes, 0)

        # a crashes before its answer ever arrives.
        await a.kill9()
        proxy.cut()
        written = await asyncio.wait_for(write, DEADLINE)
        attempts = client.stats().unary_calls - before
        new = client.master()
        print(f"\n  applied once: answered after {attempts} attempts, by {new.master_id} (epoch {new.epoch})", end="")
        self.assertGreaterEqual(attempts, 2, "the write was retried")
        self.assertIn(new.master_id, ("b", "c"))
        self.assertGreater(new.epoch, epoch)
        self.assertEqual(
            (written.version, written.updated_epoch, written.attributes),
            (1, epoch, {"n": 1}),
            "the retry was answered with the outcome a recorded, not applied again",
        )
        stored = await client.get_entity("once/x")
        self.assertEqual((stored.version, stored.updated_epoch), (1, epoch))

        # The log's history of once/x, read from the new master: exactly one change.
        await client.put_entity("once/zz-marker", {})
        history = await changes_until(plane.nodes[new.master_id], "once/", 1, "once/zz-marker")
        of_x = [change for change in history if change.id == "once/x"]
        self.assertEqual(len(of_x), 1, f"once/x changed {len(of_x)} times: {of_x}")
        self.assertEqual(of_x[0].entity.version, 1)

    async def test_a_stream_of_writes_through_a_crash_is_applied_exactly_once(self):
        plane = Plane()
        self.addCleanup(plane.close)
        await plane.start(["a", "b", "c"])
        master = await plane.wait_for_master()
        client = await hc.Client.connect([node.uri for node in plane.nodes.values()], options())
        self.addAsyncCleanup(client.close)

        async def writer():
            acknowledged = []
            for i in range(80):
                entity = await client.put_entity(f"w/{i:04}", {"i": i})
                acknowledged.append((entity.id, entity.version))
            return acknowledged

        writing = asyncio.ensure_future(writer())
        await eventually("some writes", lambda: entity_on(master, "w/0010"))
        await master.kill9()
        acknowledged = await asyncio.wait_for(writing, DEADLINE * 2)
        self.assertEqual(len(acknowledged), 80)
        self.assertTrue(all(version == 1 for _, version in acknowledged), acknowledged)
        stored = {entity.id: entity.version for entity in await client.list_entities("w/")}
        self.assertEqual(stored, {f"w/{i:04}": 1 for i in range(80)}, "a write lost or applied twice")
        self.assertNotEqual(client.master().master_id, master.id)


class TypedErrorsTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.plane = Plane()
        self.addCleanup(self.plane.close)
        await self.plane.start(["a", "b"])
        self.master = await self.plane.wait_for_master()
        self.standby = next(node for node in self.plane.nodes.values() if node.id != self.master.id)
        self.client = await hc.Client.connect([self.standby.uri], options(failover_timeout=5.0))
        self.addAsyncCleanup(self.client.close)

    async def test_bad_input_is_an_invalid_argument_and_not_retried(self):
        before = self.client.stats().unary_calls
        with self.assertRaises(hc.InvalidArgument) as caught:
            await self.client.put_entity("bad id!", {"x": 1})
        err = caught.exception
        self.assertIsInstance(err, hc.HaplaneError)
        self.assertEqual(err.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("id", err.message)
        self.assertEqual(self.client.stats().unary_calls - before, 1, "a refusal is final: sent once")
        with self.assertRaises(hc.InvalidArgument):
            await self.client.put_entity("apps/x", "[1, 2]")  # not a JSON object

    async def test_a_version_mismatch_carries_its_reason(self):
        first = await self.client.put_entity("apps/web", {"replicas": 1}, if_match=0)
        self.assertEqual(first.version, 1)
        with self.assertRaises(hc.VersionMismatch) as caught:
            await self.client.put_entity("apps/web", {"replicas": 2}, if_match=0)
        err = caught.exception
        self.assertEqual((err.code, err.reason), (grpc.StatusCode.ABORTED, hc.Reason.VERSION_CONFLICT))
        second = await self.client.put_entity("apps/web", {"replicas": 2}, if_match=1)
        self.assertEqual(second.version, 2)
        with self.assertRaises(hc.VersionMismatch):
            await self.client.delete_entity("apps/web", if_match=1)
        self.assertGreater(await self.client.delete_entity("apps/web", if_match=2), 0)
        with self.assertRaises(hc.NotFound) as missing:
            await self.client.get_entity("apps/web")
        self.assertEqual(missing.exception.code, grpc.StatusCode.NOT_FOUND)

    async def test_a_non_master_refusal_is_typed_and_names_the_master(self):
        async with grpc.aio.insecure_channel(self.standby.address) as channel:
            with self.assertRaises(grpc.RpcError) as caught:
                await pb.entity_pb2_grpc.EntityServiceStub(channel).Put(
                    pb.entity_pb2.PutRequest(id="apps/x", attributes_json="{}"), timeout=5
                )
        err = hc.from_rpc_error(caught.exception)
        self.assertIsInstance(err, hc.NotMaster)
        self.assertEqual((err.code, err.reason), (grpc.StatusCode.FAILED_PRECONDITION, hc.Reason.NOT_MASTER))
        self.assertEqual(err.master, hc.MasterRef(self.master.id, self.master.uri))

    async def test_node_targeted_calls_reach_that_node(self):
        previous = await self.client.set_priority(4, node_id=self.standby.id)
        self.assertEqual(previous, 0)
        state = await self.client.get_state(node_id=self.standby.id)
        self.assertEqual((state.node_id, state.priority), (self.standby.id, 4))
        self.assertNotEqual(state.state, hc.NodeState.MASTER)
        self.assertEqual((await self.client.get_state()).node_id, self.master.id)
        with self.assertRaises(hc.NotFound):
            await self.client.get_state(node_id="nobody")


class CredentialsTest(unittest.IsolatedAsyncioTestCase):
    async def test_nodes_with_auth_need_the_clients_credentials(self):
        plane = Plane(metadata=(("authorization", hc.Credentials("alice", "s3cret-pw").authorization()),))
        self.addCleanup(plane.close)
        plane.spawn("a", extra=["--auth-user", "alice"], env={"HAPLANE_AUTH_PASSWORD": "s3cret-pw"})
        await plane.nodes["a"].wait_listening()
        uri = plane.nodes["a"].uri
        await plane.wait_for_master()

        for credentials, why in ((None, "none"), (("alice", "wrong"), "a wrong password")):
            started = time.monotonic()
            with self.assertRaises(hc.Unauthenticated, msg=why) as caught:
                await hc.Client.connect([uri], options(credentials=credentials))
            self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED)
            self.assertLess(time.monotonic() - started, DEADLINE, "refused, not timed out")

        async with hc.Client.connect([uri], options(credentials=("alice", "s3cret-pw"))) as client:
            view = await client.wait_for_master(DEADLINE)
            self.assertEqual(view.master_id, "a")
            written = await client.put_entity("auth/ok", {"user": "alice"})
            self.assertEqual(written.version, 1)
            self.assertEqual((await client.get_state()).state, hc.NodeState.MASTER)
        self.assertTrue(client.closed)

    async def test_https_nodes_are_reached_with_the_ca_given(self):
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("no openssl to make a certificate with")
        plane = Plane()
        self.addCleanup(plane.close)
        cert, key = plane.dir / "cert.pem", plane.dir / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        node = plane.spawn("a", extra=["--tls-cert", str(cert), "--tls-key", str(key)])
        await node.wait_listening()
        self.assertTrue(node.uri.startswith("https://"), node.uri)

        async with hc.Client.connect([node.uri], options(ca_pem=cert.read_bytes())) as client:
            view = await client.wait_for_master(DEADLINE)
            self.assertEqual((view.master_id, view.master_uri), ("a", node.uri))
            self.assertEqual((await client.put_entity("tls/ok", {})).version, 1)
        with self.assertRaises(hc.NoEndpoint, msg="a certificate no CA vouches for is refused"):
            await hc.Client.connect([node.uri], options(failover_timeout=1.0))


if __name__ == "__main__":
    unittest.main()
