// Views as the nodes a, b, c of plane "plane-1" push them, for the unit tests.

import { type MasterView, NodeState } from "../src/index.js";

export const PLANE = "plane-1";

export function uri(node: string): string {
  return `http://${node}:8081`;
}

/**
 * Epoch `epoch` of `PLANE` with `master` (empty: none), as any node of a, b, c pushes it: the
 * members list every node by id and URI.
 */
export function view(epoch: number, master: string, planeId = PLANE): MasterView {
  return {
    epoch: BigInt(epoch),
    master: master === "" ? undefined : { id: master, uri: uri(master) },
    planeId,
    members: ["a", "b", "c"].map((id) => ({
      nodeId: id,
      nodeUri: uri(id),
      status: id === master ? NodeState.MASTER : NodeState.HOT_STANDBY,
      live: true,
    })),
  };
}

/** `view` without members, as a GetState answer gives it. */
export function bare(epoch: number, master: string, planeId = PLANE): MasterView {
  return { ...view(epoch, master, planeId), members: [] };
}
