// The master follower: one background loop that holds a WatchMaster stream to some member,
// believes what it is told only as the client rules allow (docs/client-rules.md), moves to the
// next member the moment the stream breaks, moves to a member that reports the master when its
// own node has shown none for a poll period (or a call found the master it shows unreachable:
// `masterUnreachable`), and publishes every accepted view. What to believe and when to move is
// decided by Follow; this file does the I/O.

import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import type { MasterEvent } from "./gen/haplane/v1/ha_pb.js";
import { Follow, type ProbeAnswer } from "./follow.js";
import type { NodePool } from "./nodes.js";
import type { Settings } from "./options.js";
import { type MasterView, masterFromWire, sameUri, trimUri, viewFromEvent } from "./view.js";

/** What the follower tells its client. */
export interface FollowerSink {
  /** An accepted view, to be shown. */
  view(view: MasterView): void;
  /** A node refused our credentials on WatchMaster. */
  refused(error: ConnectError): void;
  /** A WatchMaster stream opened (its first view arrived). */
  streamOpened(uri: string): void;
  /** A WatchMaster stream could not be opened on `uri`. */
  streamFailed(uri: string, error: ConnectError): void;
}

interface OpenStream {
  readonly iterator: AsyncIterator<MasterEvent>;
  readonly controller: AbortController;
  readonly first: MasterEvent;
  /** Aborts the stream and forgets it. */
  readonly close: () => void;
}

type Step =
  | { readonly kind: "event"; readonly event: MasterEvent }
  | { readonly kind: "end" }
  | { readonly kind: "due" }
  | { readonly kind: "unreachable" }
  | { readonly kind: "answers"; readonly answers: ProbeAnswer[]; readonly probe: Probe };

interface Probe {
  readonly controller: AbortController;
  readonly done: Promise<Step>;
}

type StreamEnd = { readonly kind: "broken" } | { readonly kind: "move"; readonly target: string };

const now = (): number => performance.now();

export class Follower {
  /** Every known member URI: the seeds, then each event's members, in the order learnt. */
  private readonly members: string[] = [];
  private readonly follow: Follow;
  /** The member that worked last, or the one a probe chose: tried first. */
  private first: string | undefined;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  /** Calls that found the master unreachable, and how many of them the stream reader has seen. */
  private unreachableCalls = 0;
  private unreachableSeen = 0;
  /** Wakes the stream reader when a call finds the master unreachable. */
  private wakeOnUnreachable: (() => void) | undefined;

  constructor(
    seeds: readonly string[],
    private readonly settings: Settings,
    private readonly pool: NodePool,
    private readonly sink: FollowerSink,
  ) {
    for (const seed of seeds) {
      this.learn(seed);
    }
    this.follow = new Follow(settings.pollPeriodMs);
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops following; resolves once the loop has ended. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
  }

  /**
   * A call to the master the client believes found it unreachable (client rule 5): the other
   * members are asked one poll period later, even though the node streamed from still shows that
   * master. Calls made while no stream is open are taken into account by the next stream.
   */
  masterUnreachable(): void {
    this.unreachableCalls += 1;
    this.wakeOnUnreachable?.();
  }

  /** The member URIs known now. */
  knownMembers(): string[] {
    return [...this.members];
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private learn(uri: string): void {
    if (uri === "") {
      return;
    }
    const key = trimUri(uri);
    if (!this.members.includes(key)) {
      this.members.push(key);
    }
  }

  private async run(): Promise<void> {
    let failedRounds = 0;
    while (!this.stopped) {
      const order = [...this.members];
      const first = this.first;
      if (first !== undefined) {
        order.splice(order.indexOf(first), 1);
        order.unshift(first);
      }
      let anyStream = false;
      for (const uri of order) {
        if (this.stopped) {
          return;
        }
        const stream = await this.open(uri);
        if (stream === undefined) {
          continue;
        }
        anyStream = true;
        this.first = uri;
        const end = await this.read(uri, stream);
        if (end.kind === "move") {
          this.learn(end.target);
          this.first = trimUri(end.target);
          break;
        }
        // Broken: on to the next member at once.
      }
      if (anyStream) {
        failedRounds = 0;
      } else {
        // Every member failed: back off, jittered, up to about two seconds.
        failedRounds += 1;
        const base = Math.min(50 * 2 ** Math.min(failedRounds, 5), 2_000);
        await this.sleep(base + Math.random() * 50);
      }
    }
  }

  /** A WatchMaster stream on `uri` whose first view arrived, or `undefined`. */
  private async open(uri: string): Promise<OpenStream | undefined> {
    const controller = new AbortController();
    const onStop = (): void => controller.abort();
    this.stopping.signal.addEventListener("abort", onStop, { once: true });
    // The node sends its current view at once: one that does not is passed over.
    const timer = setTimeout(
      () => controller.abort(new ConnectError("no view in time", Code.DeadlineExceeded)),
      this.settings.connectTimeoutMs + this.settings.pollPeriodMs,
    );
    try {
      const iterator = this.pool
        .get(uri)
        .ha.watchMaster({}, { signal: controller.signal })
        [Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done === true) {
        throw new ConnectError("stream ended before its first view", Code.Unavailable);
      }
      this.sink.streamOpened(uri);
      const close = (): void => {
        controller.abort();
        this.stopping.signal.removeEventListener("abort", onStop);
      };
      return { iterator, controller, first: first.value, close };
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
        this.sink.refused(error);
      }
      this.sink.streamFailed(uri, error);
      controller.abort();
      this.stopping.signal.removeEventListener("abort", onStop);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Publishes the accepted views of one stream from `uri`; while the node shows no master, or
   * after a call found the believed master unreachable, probes the other members and says where
   * to move when one reports a master.
   */
  private async read(uri: string, stream: OpenStream): Promise<StreamEnd> {
    this.follow.streamOpened();
    let event: MasterEvent | undefined = stream.first;
    let next: Promise<Step> | undefined;
    let probe: Probe | undefined;
    try {
      for (;;) {
        if (event !== undefined) {
          this.onEvent(uri, event);
          event = undefined;
          if (probe !== undefined && this.follow.probeAt() === undefined) {
            // The node shows the master again: the probe under way is not needed.
            probe.controller.abort();
            probe = undefined;
          }
        }
        if (this.unreachableSeen !== this.unreachableCalls) {
          this.unreachableSeen = this.unreachableCalls;
          this.follow.masterUnreachable(now());
        }
        if (this.stopped) {
          return { kind: "broken" };
        }
        next ??= stream.iterator.next().then(
          (result): Step =>
            result.done === true ? { kind: "end" } : { kind: "event", event: result.value },
          (): Step => ({ kind: "end" }),
        );
        const racers: Promise<Step>[] = [
          next,
          new Promise<Step>((resolve) => {
            this.wakeOnUnreachable = () => resolve({ kind: "unreachable" });
          }),
        ];
        const due = probe === undefined ? this.follow.probeAt() : undefined;
        let timer: NodeJS.Timeout | undefined;
        if (due !== undefined) {
          racers.push(
            new Promise<Step>((resolve) => {
              timer = setTimeout(() => resolve({ kind: "due" }), Math.max(0, due - now()));
            }),
          );
        }
        if (probe !== undefined) {
          racers.push(probe.done);
        }
        const step = await Promise.race(racers);
        clearTimeout(timer);
        switch (step.kind) {
          case "event":
            event = step.event;
            next = undefined;
            break;
          case "end":
            return { kind: "broken" };
          case "due":
            probe = this.probe(uri);
            break;
          case "unreachable":
            // Taken into account at the top of the loop.
            break;
          case "answers": {
            if (step.probe !== probe) {
              break;
            }
            probe = undefined;
            const target = this.follow.afterProbe(uri, step.answers, now());
            if (target !== undefined) {
              return { kind: "move", target };
            }
            break;
          }
        }
      }
    } finally {
      this.wakeOnUnreachable = undefined;
      stream.close();
      probe?.controller.abort();
    }
  }

  private onEvent(uri: string, event: MasterEvent): void {
    const view = viewFromEvent(event);
    for (const member of view.members) {
      this.learn(member.nodeUri);
    }
    if (this.follow.onView(view, uri, now())) {
      this.sink.view(view);
    }
  }

  /** Asks every other known member for its state at once, each bounded. */
  private probe(current: string): Probe {
    const controller = new AbortController();
    const others = this.members.filter((member) => !sameUri(member, current));
    const probe: Probe = {
      controller,
      done: probeMembers(others, this.pool, this.settings, controller.signal).then(
        (answers): Step => ({ kind: "answers", answers, probe }),
      ),
    };
    return probe;
  }

  /** Waits `ms`, or less when the follower stops. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.stopping.signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stopping.signal.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * Asks every member in `uris` for its state (GetState) at once, each bounded by the connect
 * timeout plus a poll period; members that do not answer are left out. Never rejects.
 */
export async function probeMembers(
  uris: readonly string[],
  pool: NodePool,
  settings: Settings,
  signal: AbortSignal,
): Promise<ProbeAnswer[]> {
  const timeoutMs = settings.connectTimeoutMs + settings.pollPeriodMs;
  const answers = await Promise.all(
    uris.map(async (uri): Promise<ProbeAnswer | undefined> => {
      try {
        const state = await pool.get(uri).ha.getState({}, { timeoutMs, signal });
        return {
          uri,
          nodeId: state.nodeId,
          view: {
            epoch: state.epoch,
            master: masterFromWire(state.masterId, state.masterUri),
            planeId: state.planeId,
            members: [],
          },
        };
      } catch {
        return undefined;
      }
    }),
  );
  return answers.filter((answer): answer is ProbeAnswer => answer !== undefined);
}
