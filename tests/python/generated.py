"""The Python client generated from proto/ with grpcio-tools, into a temporary folder, for the
scripts beside this one."""

import shutil
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
    try:
        from haplane.v1 import ha_pb2, ha_pb2_grpc  # generated just above
    finally:
        # Imported (or failed): the folder is not needed again, and a script killed at the end
        # of its test would leave it behind.
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)
    return ha_pb2, ha_pb2_grpc
