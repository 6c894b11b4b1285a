// ViewFilter: which pushed master views the client believes (rules 1, 3 and 4 of
// docs/client-rules.md). Pure: no I/O, no clock.

import { type MasterView, sameUri } from "./view.js";

interface Believed {
  readonly epoch: bigint;
  readonly id: string;
  readonly uri: string;
}

/**
 * Decides which views replace the current one:
 *
 * - never a lower epoch of the same plane (a lagging node cannot move the client back; rule 4);
 * - a view of another, non-empty plane id starts over (the store was replaced or reset), so the
 *   new plane's lower epochs are followed (rule 3);
 * - a release (no master) in the believed master's epoch only from that master itself: the
 *   stream's URI is the master's, or the view's members give that URI the master's id. A node
 *   that cannot see the master says "no master" too, and is not believed. A newer epoch, from any
 *   node, releases the old master (rule 1);
 * - never, within an epoch, a master that released it (rules 1 and 4).
 */
export class ViewFilter {
  private planeId = "";
  private highestEpoch = 0n;
  private master: Believed | undefined;
  /** The epoch and id of a master seen to let go of its claim. */
  private released: { readonly epoch: bigint; readonly id: string } | undefined;

  /**
   * Whether `view`, pushed by the node at `source` (the URI its stream was opened on), should be
   * shown; updates what the filter remembers.
   */
  accept(view: MasterView, source: string): boolean {
    if (view.planeId !== "" && view.planeId !== this.planeId) {
      if (this.planeId !== "") {
        // Another plane: its epochs have nothing to do with the ones seen so far.
        this.highestEpoch = 0n;
        this.master = undefined;
        this.released = undefined;
      }
      this.planeId = view.planeId;
    }
    if (view.epoch < this.highestEpoch) {
      return false;
    }
    const named = view.master;
    if (named === undefined) {
      const master = this.master;
      if (master !== undefined && master.epoch === view.epoch) {
        if (!ViewFilter.fromMaster(master, view, source)) {
          return false;
        }
        this.released = { epoch: master.epoch, id: master.id };
      }
      this.master = undefined;
      this.highestEpoch = view.epoch;
      return true;
    }
    if (
      this.released !== undefined &&
      this.released.epoch === view.epoch &&
      this.released.id === named.id
    ) {
      return false;
    }
    this.master = { epoch: view.epoch, id: named.id, uri: named.uri };
    this.highestEpoch = view.epoch;
    return true;
  }

  /** The id of the master believed in now, if any. */
  believedMasterId(): string | undefined {
    return this.master?.id;
  }

  /** The highest epoch accepted of the plane followed. */
  epoch(): bigint {
    return this.highestEpoch;
  }

  /** A copy, to ask "would this be believed?" without changing this filter. */
  clone(): ViewFilter {
    const copy = new ViewFilter();
    copy.planeId = this.planeId;
    copy.highestEpoch = this.highestEpoch;
    copy.master = this.master;
    copy.released = this.released;
    return copy;
  }

  /** Whether `view` was pushed by `master` itself. */
  private static fromMaster(master: Believed, view: MasterView, source: string): boolean {
    return (
      sameUri(master.uri, source) ||
      view.members.some((member) => member.nodeId === master.id && sameUri(member.nodeUri, source))
    );
  }
}
