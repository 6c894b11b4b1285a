"""The gRPC stubs and messages generated from proto/ at build time (see setup.py), for calls the
client does not wrap: ``pb.ha_pb2``, ``pb.ha_pb2_grpc``, ``pb.entity_pb2``,
``pb.entity_pb2_grpc``."""

from ._gen.haplane.v1 import entity_pb2, entity_pb2_grpc, ha_pb2, ha_pb2_grpc

__all__ = ["entity_pb2", "entity_pb2_grpc", "ha_pb2", "ha_pb2_grpc"]
