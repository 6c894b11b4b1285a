"""Typed errors from gRPC statuses: the class by code and ErrorInfo reason, the reason and its
metadata read from the grpc-status-details-bin trailer, and what is retried."""

import unittest

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import haplane_client as hc
from haplane_client.errors import from_status, outcome_unknown


def details(reason: str, domain: str = "haplane.v1", metadata=None, code: int = 9) -> bytes:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code, message="refused", details=[packed]).SerializeToString()


class ErrorsTest(unittest.TestCase):
    def test_a_not_master_refusal_names_the_master(self):
        trailers = (
            ("haplane-master-id", "b"),
            ("haplane-master-uri", "http://b:1"),
            ("grpc-status-details-bin", details("NOT_MASTER", metadata={"masterId": "b", "masterUri": "http://b:1"})),
        )
        err = from_status(grpc.StatusCode.FAILED_PRECONDITION, "not master", trailers)
        self.assertIsInstance(err, hc.NotMaster)
        self.assertIsInstance(err, hc.FailedPrecondition)
        self.assertIsInstance(err, hc.HaplaneError)
        self.assertEqual(err.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(err.reason, hc.Reason.NOT_MASTER)
        self.assertEqual(err.master, hc.MasterRef("b", "http://b:1"))
        self.assertEqual(err.message, "not master")
        self.assertIn("NOT_MASTER", str(err))

    def test_a_not_master_refusal_without_a_known_master(self):
        err = from_status(grpc.StatusCode.FAILED_PRECONDITION, "x", (("grpc-status-details-bin", details("NOT_MASTER")),))
        self.assertIsInstance(err, hc.NotMaster)
        self.assertIsNone(err.master)

    def test_the_master_metadata_alone_makes_a_not_master_refusal(self):
        err = from_status(grpc.StatusCode.FAILED_PRECONDITION, "x", (("haplane-master-id", "c"), ("haplane-master-uri", "http://c")))
        self.assertIsInstance(err, hc.NotMaster)
        self.assertEqual(err.master, hc.MasterRef("c", "http://c"))

    def test_reasons_pick_the_class(self):
        cases = [
            (grpc.StatusCode.FAILED_PRECONDITION, "STATE_NOT_LOADED", hc.StateNotLoaded),
            (grpc.StatusCode.ABORTED, "VERSION_CONFLICT", hc.VersionMismatch),
            (grpc.StatusCode.OUT_OF_RANGE, "COMPACTED", hc.Compacted),
            (grpc.StatusCode.DATA_LOSS, "STATE_DAMAGED", hc.DataLoss),
        ]
        for code, reason, cls in cases:
            err = from_status(code, "m", (("grpc-status-details-bin", details(reason)),))
            self.assertIs(type(err), cls, reason)
            self.assertEqual((err.code, err.reason), (code, reason))
        self.assertIs(hc.Conflict, hc.VersionMismatch)

    def test_codes_pick_the_class_without_details(self):
        cases = {
            grpc.StatusCode.INVALID_ARGUMENT: hc.InvalidArgument,
            grpc.StatusCode.NOT_FOUND: hc.NotFound,
            grpc.StatusCode.UNAVAILABLE: hc.Unavailable,
            grpc.StatusCode.UNAUTHENTICATED: hc.Unauthenticated,
            grpc.StatusCode.PERMISSION_DENIED: hc.PermissionDenied,
            grpc.StatusCode.RESOURCE_EXHAUSTED: hc.ResourceExhausted,
            grpc.StatusCode.FAILED_PRECONDITION: hc.FailedPrecondition,
            grpc.StatusCode.DEADLINE_EXCEEDED: hc.DeadlineExceeded,
            grpc.StatusCode.INTERNAL: hc.Internal,
        }
        for code, cls in cases.items():
            err = from_status(code, "m")
            self.assertIs(type(err), cls, code)
            self.assertIsNone(err.reason)
        self.assertIs(type(from_status(grpc.StatusCode.UNIMPLEMENTED, "m")), hc.HaplaneError)

    def test_a_foreign_or_unreadable_detail_is_no_reason(self):
        foreign = from_status(
            grpc.StatusCode.FAILED_PRECONDITION, "m", (("grpc-status-details-bin", details("NOT_MASTER", domain="elsewhere")),)
        )
        self.assertIs(type(foreign), hc.FailedPrecondition)
        self.assertIsNone(foreign.reason)
        garbage = from_status(grpc.StatusCode.ABORTED, "m", (("grpc-status-details-bin", b"\xff\xff\xff"),))
        self.assertIs(type(garbage), hc.VersionMismatch)
        self.assertIsNone(garbage.reason)

    def test_a_call_that_broke_on_the_way_is_an_unknown_outcome_and_a_refusal_stays(self):
        broke = outcome_unknown(from_status(grpc.StatusCode.UNAVAILABLE, "reset"))
        self.assertIsInstance(broke, hc.OutcomeUnknown)
        self.assertEqual(broke.code, grpc.StatusCode.UNAVAILABLE)
        refused = from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        self.assertIs(outcome_unknown(refused), refused)

    def test_failover_timeout_carries_the_last_error(self):
        last = from_status(grpc.StatusCode.UNAVAILABLE, "down")
        err = hc.FailoverTimeout("no master within 1s", last)
        self.assertIsInstance(err, hc.NoMaster)
        self.assertIs(err.last_error, last)
        self.assertEqual(err.code, grpc.StatusCode.UNAVAILABLE)


class OptionsTest(unittest.TestCase):
    def test_credentials_encode_as_basic_and_hide_the_password(self):
        creds = hc.Credentials("admin", "pa:ss")
        self.assertEqual(creds.authorization(), "Basic YWRtaW46cGE6c3M=")
        self.assertNotIn("pa:ss", repr(creds))
        options = hc.ConnectOptions(credentials=("admin", "pa:ss"))
        self.assertEqual(options.authorization_metadata(), (("authorization", "Basic YWRtaW46cGE6c3M="),))
        self.assertEqual(hc.ConnectOptions().authorization_metadata(), ())

    def test_timeouts_must_be_positive(self):
        with self.assertRaises(ValueError):
            hc.ConnectOptions(poll_period=0)
        self.assertEqual(hc.ConnectOptions().with_(failover_timeout=5).failover_timeout, 5)

    def test_endpoints_are_http_or_https_uris(self):
        from haplane_client._transport import target_of

        self.assertEqual(target_of("http://127.0.0.1:8081"), ("127.0.0.1:8081", False))
        self.assertEqual(target_of("https://node.example/"), ("node.example:443", True))
        self.assertEqual(target_of("HTTP://[::1]:9"), ("[::1]:9", False))
        for bad in ("127.0.0.1:8081", "ftp://a:1", "http://", "http://a:1/path", "http://a:notaport"):
            with self.assertRaises(hc.InvalidEndpoint, msg=bad):
                target_of(bad)


class ConnectTest(unittest.IsolatedAsyncioTestCase):
    async def test_connect_refuses_invalid_endpoints_at_once(self):
        with self.assertRaises(hc.InvalidEndpoint):
            await hc.Client.connect(["not a uri"])
        with self.assertRaises(hc.NoEndpoint):
            await hc.Client.connect([])

    async def test_connect_to_nothing_fails_after_the_failover_timeout(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # Nothing listens on the port now: every attempt is refused.
        with self.assertRaises(hc.NoEndpoint):
            await hc.Client.connect([f"http://127.0.0.1:{port}"], failover_timeout=0.5, connect_timeout=0.2)


if __name__ == "__main__":
    unittest.main()
