// Follow: the follower's decisions, free of I/O (rules 2 and 5 of docs/client-rules.md): the view
// filter, when to ask the other members (the node streamed from has shown no believed master for
// a poll period, or a call found the master it shows unreachable), and which member a probe's
// answers say to move the stream to. Times are milliseconds on any monotonic clock the caller
// chooses.

import { type MasterView, sameUri } from "./view.js";
import { ViewFilter } from "./view-filter.js";

/** The shortest time between two probes of the other members, whatever the poll period says. */
const MIN_PROBE_INTERVAL_MS = 10;

/** One member's answer to GetState during a probe. */
export interface ProbeAnswer {
  /** The URI the probe reached the member on. */
  readonly uri: string;
  readonly nodeId: string;
  /** Its view of the master (no members: GetState lists none). */
  readonly view: MasterView;
}

export class Follow {
  private readonly filter = new ViewFilter();
  private readonly pollPeriodMs: number;
  /**
   * When to probe; set while the node streamed from shows no master, or a view not believed, and
   * after a call found the believed master unreachable.
   */
  private probeDue: number | undefined;
  /**
   * Whether the node streamed from shows a master the client believes (the last view accepted
   * named one).
   */
  private showsMaster = false;

  constructor(pollPeriodMs: number) {
    this.pollPeriodMs = Math.max(pollPeriodMs, MIN_PROBE_INTERVAL_MS);
  }

  /** A stream to another node opened: nothing is known yet of what that node shows. */
  streamOpened(): void {
    this.probeDue = undefined;
    this.showsMaster = false;
  }

  /**
   * A view pushed by the node at `source`; answers whether to publish it. A view without a
   * master, or one not believed, arms a probe one poll period later unless one is armed.
   */
  onView(view: MasterView, source: string, now: number): boolean {
    const accepted = this.filter.accept(view, source);
    this.showsMaster = accepted && view.master !== undefined;
    if (this.showsMaster) {
      this.probeDue = undefined;
    } else if (this.probeDue === undefined) {
      this.probeDue = now + this.pollPeriodMs;
    }
    return accepted;
  }

  /**
   * A call to the believed master found it unreachable (rule 5): the other members are asked one
   * poll period from `now`, unless a probe is due already. A node that cannot read the store keeps
   * showing the master it last saw, so without this a crash of that master would go unnoticed by
   * the node's watchers.
   */
  masterUnreachable(now: number): void {
    this.probeDue ??= now + this.pollPeriodMs;
  }

  /** When the other members should be probed, if at all. */
  probeAt(): number | undefined {
    return this.probeDue;
  }

  /**
   * What a probe found while streaming from `current`: the URI to move the stream to, or
   * `undefined` to stay. Staying, the next probe is one poll period from `now` while the node
   * shows no master; while it shows one, only the next call that finds the master unreachable
   * asks again (no polling while calls succeed).
   */
  afterProbe(current: string, answers: readonly ProbeAnswer[], now: number): string | undefined {
    const target = this.chooseMove(current, answers);
    this.probeDue = target === undefined && !this.showsMaster ? now + this.pollPeriodMs : undefined;
    return target;
  }

  private chooseMove(current: string, answers: readonly ProbeAnswer[]): string | undefined {
    // A member reporting a master the filter would believe: open the stream on that master
    // (the master itself, not the node that answered), the newest epoch first.
    let best: { epoch: bigint; target: string } | undefined;
    for (const answer of answers) {
      const master = answer.view.master;
      if (master === undefined || !this.filter.clone().accept(answer.view, answer.uri)) {
        continue;
      }
      const target = master.uri === "" ? answer.uri : master.uri;
      if (sameUri(target, current)) {
        continue;
      }
      if (best === undefined || answer.view.epoch > best.epoch) {
        best = { epoch: answer.view.epoch, target };
      }
    }
    if (best !== undefined) {
      return best.target;
    }
    // No one reports a master, but the believed master answered: only it may say it let go.
    const masterId = this.filter.believedMasterId();
    if (masterId === undefined) {
      return undefined;
    }
    return answers.find((answer) => answer.nodeId === masterId && !sameUri(answer.uri, current))
      ?.uri;
  }
}
