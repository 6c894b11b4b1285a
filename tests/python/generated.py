"""The Python client generated from proto/ with grpcio-tools, into a temporary folder, for the
scripts beside this one."""

import sys
import tempfile

from grpc_tools import protoc


def load(root: str):
    """Generates haplane/v1/ha.proto's modules and returns (ha_pb2, ha_pb2_grpc)."""
    out = tempfile.mkdtemp(prefix="haplane-py-")
    status = protoc.main([
        "protoc", f"-I{root}/proto", f"--python_out={out}", f"--grpc_python_out={out}",
        f"{root}/proto/haplane/v1/ha.proto",
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed with {status}")
    sys.path.insert(0, out)
    from haplane.v1 import ha_pb2, ha_pb2_grpc  # generated just above
    return ha_pb2, ha_pb2_grpc
