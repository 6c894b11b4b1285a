"""A sidecar in Python on the generated client: follows its own node's role with WatchRole and
works only while the node leads and the lease it reported lasts. Prints one line per role event
("role <leader> <epoch> <lease ms or none>") and one per unit of work ("work <epoch>"), for the
Rust test that drives it; exits once it has worked in an epoch of at least `min_epoch`."""

import queue
import sys
import threading
import time

import grpc

import generated

# Taken off each reported lease for the time the event spent on the way (as the Rust SDK does).
DELIVERY_ALLOWANCE = 0.05


def main(root: str, endpoint: str, min_epoch: int) -> int:
    ha_pb2, ha_pb2_grpc = generated.load(root)

    stub = ha_pb2_grpc.HaServiceStub(grpc.insecure_channel(endpoint))
    events = queue.Queue()

    def read_roles():
        for event in stub.WatchRole(ha_pb2.WatchRoleRequest(), timeout=120):
            events.put((event, time.monotonic()))
        events.put(None)

    threading.Thread(target=read_roles, daemon=True).start()
    role, valid_until = None, 0.0
    while True:
        try:
            item = events.get(timeout=0.01)
            if item is None:
                return 1
            role, received = item
            lease = role.lease_valid_for_ms if role.HasField("lease_valid_for_ms") else None
            valid_until = received + (lease / 1000.0 - DELIVERY_ALLOWANCE if lease else 0.0)
            print("role", role.leader, role.epoch, lease if lease is not None else "none", flush=True)
        except queue.Empty:
            pass
        if role is not None and role.leader and time.monotonic() < valid_until:
            print("work", role.epoch, flush=True)
            if role.epoch >= min_epoch:
                return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
