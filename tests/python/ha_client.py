"""A Python client generated from proto/ with grpcio-tools: GetState, ListStates, then WatchMaster
until the master changes. Prints one line per step for the Rust test that drives it."""

import sys

import grpc

import generated


def main(root: str, endpoint: str) -> int:
    ha_pb2, ha_pb2_grpc = generated.load(root)

    stub = ha_pb2_grpc.HaServiceStub(grpc.insecure_channel(endpoint))
    state = stub.GetState(ha_pb2.GetStateRequest(), timeout=10)
    print("state", state.node_id, ha_pb2.NodeState.Name(state.state), state.master_id, flush=True)
    listing = stub.ListStates(ha_pb2.ListStatesRequest(), timeout=10)
    print("nodes", ",".join(sorted(node.node_id for node in listing.nodes)), flush=True)
    first = None
    for event in stub.WatchMaster(ha_pb2.WatchMasterRequest(), timeout=120):
        if first is None:
            first = event
            print("watch", event.epoch, event.master_id, flush=True)
        elif event.master_id and event.master_id != first.master_id:
            print("changed", event.epoch, event.master_id, flush=True)
            return 0
    print("stream ended without a change", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
