// The master view a client follows, as the nodes push it on WatchMaster (MasterEvent), in plain
// TypeScript types: no generated message types leak into the public API.

import { NodeState } from "./gen/haplane/v1/ha_pb.js";
import type { MasterEvent } from "./gen/haplane/v1/ha_pb.js";

export { NodeState };

/** A master: its node id and the URI it advertises. */
export interface MasterRef {
  readonly id: string;
  readonly uri: string;
}

/** One member of the plane, as the node that pushed a view sees it. */
export interface Member {
  readonly nodeId: string;
  readonly nodeUri: string;
  readonly status: NodeState;
  readonly live: boolean;
}

/** One view of the plane's master. */
export interface MasterView {
  /** The epoch the view is about (one create-if-absent claim per epoch). */
  readonly epoch: bigint;
  /** `undefined` while the node that pushed the view knows of no active master. */
  readonly master: MasterRef | undefined;
  /** The plane's id; empty from a node that has not joined yet. */
  readonly planeId: string;
  /** Every member the pushing node knows (empty in a probe answer: GetState lists none). */
  readonly members: readonly Member[];
}

/** A master from the wire's two strings: an empty id means none. */
export function masterFromWire(id: string, uri: string): MasterRef | undefined {
  return id === "" ? undefined : { id, uri };
}

/** A pushed event as a view. */
export function viewFromEvent(event: MasterEvent): MasterView {
  return {
    epoch: event.epoch,
    master: masterFromWire(event.masterId, event.masterUri),
    planeId: event.planeId,
    members: event.members.map((member) => ({
      nodeId: member.nodeId,
      nodeUri: member.nodeUri,
      status: member.status,
      live: member.live,
    })),
  };
}

/** Whether two URIs name the same endpoint (trailing `/` do not count). */
export function sameUri(a: string, b: string): boolean {
  return trimUri(a) === trimUri(b);
}

/** `uri` without trailing `/`, the form the client keys its members and connections by. */
export function trimUri(uri: string): string {
  return uri.replace(/\/+$/, "");
}
