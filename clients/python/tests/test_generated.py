"""The stubs generated at build time: importable from the installed package, messages that know
their module, and service names and method paths as the proto declares them (the build hook
rewrites the generated imports and module names only)."""

import pickle
import unittest

from haplane_client import pb


class FakeServer:
    def __init__(self) -> None:
        self.names = []

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.names += [handler.service_name() for handler in handlers]

    def add_registered_method_handlers(self, name, handlers) -> None:
        self.names.append(name)


class GeneratedTest(unittest.TestCase):
    def test_messages_live_in_the_package_and_round_trip(self):
        self.assertEqual(pb.ha_pb2.MasterEvent.__module__, "haplane_client._gen.haplane.v1.ha_pb2")
        self.assertEqual(pb.entity_pb2.PutRequest.DESCRIPTOR.full_name, "haplane.v1.PutRequest")
        event = pb.ha_pb2.MasterEvent(epoch=3, master_id="a", members=[pb.ha_pb2.Member(node_id="a")])
        self.assertEqual(pb.ha_pb2.MasterEvent.FromString(event.SerializeToString()), event)
        self.assertEqual(pickle.loads(pickle.dumps(event)), event)

    def test_service_names_are_the_protos(self):
        server = FakeServer()
        pb.ha_pb2_grpc.add_HaServiceServicer_to_server(pb.ha_pb2_grpc.HaServiceServicer(), server)
        pb.entity_pb2_grpc.add_EntityServiceServicer_to_server(pb.entity_pb2_grpc.EntityServiceServicer(), server)
        self.assertEqual(set(server.names), {"haplane.v1.HaService", "haplane.v1.EntityService"})
        services = pb.ha_pb2.DESCRIPTOR.services_by_name
        self.assertEqual(services["HaService"].methods_by_name["WatchMaster"].full_name, "haplane.v1.HaService.WatchMaster")


if __name__ == "__main__":
    unittest.main()
