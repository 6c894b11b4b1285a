// Client: follows the master (see follower.ts), answers typed HA and entity calls on the master,
// and during a failover waits for the next pushed master and retries what is safe to retry.

import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Entity as WireEntity } from "./gen/haplane/v1/entity_pb.js";
import {
  ClosedError,
  finalErrorFrom,
  fromServer,
  HaplaneError,
  InvalidArgumentError,
  isFailoverSymptom,
  isNotMasterRefusal,
  NoEndpointError,
  NoMasterError,
  ProtocolError,
  rejectedFrom,
} from "./errors.js";
import { Follower } from "./follower.js";
import { checkEndpoint, type NodeConnection, NodePool } from "./nodes.js";
import { type ConnectOptions, type Settings, settingsFrom } from "./options.js";
import { type MasterRef, type MasterView, masterFromWire, type NodeState } from "./view.js";

/** A JSON object, as entity attributes are. */
export type JsonObject = { [key: string]: JsonValue };
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** One node, as `getState` answers it. */
export interface StateInfo {
  readonly nodeId: string;
  readonly state: NodeState;
  readonly priority: bigint;
  /** The highest epoch the node knows of. */
  readonly epoch: bigint;
  /** The master the node knows of. */
  readonly master: MasterRef | undefined;
  readonly planeId: string;
  /** While the node acts as master: how long its lease lasts from when it answered. */
  readonly leaseValidForMs: bigint | undefined;
}

/** One node record, as `listStates` answers it. */
export interface NodeInfo {
  readonly nodeId: string;
  readonly nodeUri: string;
  /** The status the node last stored; `live` says whether it is still heartbeating. */
  readonly status: NodeState;
  readonly priority: bigint;
  readonly live: boolean;
  /** How long ago, by the answering node's monotonic clock, the record last changed. */
  readonly lastSeenAgeMs: bigint;
  readonly heartbeat: bigint;
  readonly version: string;
  readonly epochSeen: bigint;
  readonly stateSeq: bigint;
}

/** The plane, as the master sees it. */
export interface PlaneStates {
  readonly planeId: string;
  readonly ownId: string;
  readonly masterId: string | undefined;
  readonly epoch: bigint;
  readonly nodes: readonly NodeInfo[];
}

/** A managed-state entity. */
export interface Entity {
  readonly id: string;
  readonly attributes: JsonObject;
  /** 1 on creation, one higher on every change. */
  readonly version: bigint;
  /** The epoch of the master that wrote this version. */
  readonly updatedEpoch: bigint;
}

/** One epoch of the plane's history. */
export interface ClaimInfo {
  readonly epoch: bigint;
  readonly nodeId: string;
  readonly nodeUri: string;
  readonly claimedAtMs: bigint;
  readonly reason: string;
}

/** Options of an entity write. */
export interface WriteOptions {
  /** Write only if the entity is at this version (0: only if it does not exist). */
  expectedVersion?: bigint | number;
  /**
   * The idempotency key sent with every attempt of this write; default a fresh random key. Pass
   * your own to retry a write yourself (e.g. after `NoMasterError`) and still have it applied once.
   */
  idempotencyKey?: string;
}

/** What the client has done, for tests and dashboards. */
export interface Stats {
  /** Attempts of the client's calls on the master (not the follower's probes). */
  readonly unaryCalls: number;
  /** WatchMaster streams opened (one per member moved to). */
  readonly watchStreams: number;
}

/** Whether a failed call may be sent again. */
enum Retry {
  /** Reads and calls carrying an idempotency key: retry on any failover symptom. */
  Safe,
  /** Retry only when the server said it did not apply the call (a non-master refusing it). */
  IfRefused,
}

/** How long a call waits for a newer view before it tries the master again. */
const RETRY_PAUSE_MS = 200;

const now = (): number => performance.now();

interface ClientEvents {
  /** Every accepted view of the master (pushed by the nodes, never polled). */
  view: [view: MasterView];
  /** The client was closed. */
  close: [];
}

/**
 * A client of a haplane plane. `Client.connect` starts a background follower that holds a
 * WatchMaster stream and keeps `master()` current; calls go to the master and ride out a
 * failover. Emits `"view"` for every accepted view. Call `close()` when done.
 */
export class Client extends EventEmitter<ClientEvents> {
  private readonly settings: Settings;
  private readonly pool: NodePool;
  private readonly follower: Follower;
  private current: MasterView | undefined;
  private refusal: ConnectError | undefined;
  /** Why the last WatchMaster stream failed to open, for the error of a connect that finds none. */
  private lastStreamError: { uri: string; error: ConnectError } | undefined;
  /** Internal listeners: every accepted view, and `undefined` when a refusal or close happens. */
  private readonly waiters = new Set<(view: MasterView | undefined) => void>();
  private readonly closing = new AbortController();
  private unaryCalls = 0;
  private watchStreams = 0;

  private constructor(seeds: readonly string[], settings: Settings) {
    super();
    this.settings = settings;
    this.pool = new NodePool(settings);
    this.follower = new Follower(seeds, settings, this.pool, {
      view: (view) => this.publish(view),
      refused: (error) => {
        this.refusal = error;
        this.notify(undefined);
      },
      streamOpened: () => {
        this.watchStreams += 1;
      },
      streamFailed: (uri, error) => {
        this.lastStreamError = { uri, error };
      },
    });
  }

  /**
   * Connects to a plane through any of `seeds` (`http://host:port` or `https://...`; the other
   * members are learnt from the views the nodes push) and waits for the first view of the plane.
   *
   * Rejects with `InvalidEndpointError` for a bad seed, `AccessDeniedError` when a node refuses
   * the credentials, and `NoEndpointError` when no seed answers within the failover timeout.
   */
  static async connect(
    seeds: string | readonly string[],
    options: ConnectOptions = {},
  ): Promise<Client> {
    const list = typeof seeds === "string" ? [seeds] : [...seeds];
    if (list.length === 0) {
      throw new NoEndpointError("no endpoints given");
    }
    const uris = list.map(checkEndpoint);
    const client = new Client(uris, settingsFrom(options));
    client.follower.start();
    try {
      await client.firstView(uris);
      return client;
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  /** The latest accepted view (its master is `undefined` during a failover). */
  view(): MasterView | undefined {
    return this.current;
  }

  /** The current master's view, if the plane has a master now. */
  master(): MasterView | undefined {
    return this.current?.master === undefined ? undefined : this.current;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /** Counters of what the client has done. */
  stats(): Stats {
    return { unaryCalls: this.unaryCalls, watchStreams: this.watchStreams };
  }

  /**
   * The accepted views as an async iterator: the current one first (if any), then every accepted
   * view in order. Ends when the client closes, `signal` aborts, or the loop breaks.
   */
  watchMaster(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<MasterView> {
    const queue: MasterView[] = this.current === undefined ? [] : [this.current];
    let wake: (() => void) | undefined;
    let done = this.closed || options.signal?.aborted === true;
    const listener = (view: MasterView | undefined): void => {
      if (view !== undefined) {
        queue.push(view);
      } else if (this.closed) {
        done = true;
      }
      wake?.();
    };
    const finish = (): void => {
      done = true;
      this.waiters.delete(listener);
      options.signal?.removeEventListener("abort", finish);
      wake?.();
    };
    this.waiters.add(listener);
    options.signal?.addEventListener("abort", finish, { once: true });
    const iterator: AsyncIterableIterator<MasterView> = {
      next: async (): Promise<IteratorResult<MasterView>> => {
        for (;;) {
          const view = queue.shift();
          if (view !== undefined) {
            return { value: view, done: false };
          }
          if (done) {
            finish();
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      },
      return: async (): Promise<IteratorResult<MasterView>> => {
        finish();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /**
   * Waits until the plane has a master (at most `timeoutMs`, default the failover timeout);
   * rejects with `NoMasterError` after that, `ClosedError` when the client closes.
   */
  waitForMaster(timeoutMs: number = this.settings.failoverTimeoutMs): Promise<MasterView> {
    const found = this.master();
    if (found !== undefined) {
      return Promise.resolve(found);
    }
    return this.waitFor(
      (view) => view.master !== undefined,
      timeoutMs,
      () => new NoMasterError(`no master within ${timeoutMs} ms`),
    );
  }

  /** The master's own state. */
  async getState(): Promise<StateInfo> {
    const answer = await this.onMaster(Retry.Safe, (node, call) => node.ha.getState({}, call));
    return {
      nodeId: answer.nodeId,
      state: answer.state,
      priority: answer.priority,
      epoch: answer.epoch,
      master: masterFromWire(answer.masterId, answer.masterUri),
      planeId: answer.planeId,
      leaseValidForMs: answer.leaseValidForMs,
    };
  }

  /** Every node record, as the master sees them. */
  async listStates(): Promise<PlaneStates> {
    const answer = await this.onMaster(Retry.Safe, (node, call) => node.ha.listStates({}, call));
    return {
      planeId: answer.planeId,
      ownId: answer.ownId,
      masterId: answer.masterId === "" ? undefined : answer.masterId,
      epoch: answer.epoch,
      nodes: answer.nodes.map((node) => ({
        nodeId: node.nodeId,
        nodeUri: node.nodeUri,
        status: node.status,
        priority: node.priority,
        live: node.live,
        lastSeenAgeMs: node.lastSeenAgeMs,
        heartbeat: node.heartbeat,
        version: node.version,
        epochSeen: node.epochSeen,
        stateSeq: node.stateSeq,
      })),
    };
  }

  /** The plane's masters, newest first: the newest `limit` epochs (0: 100). */
  async history(limit = 0): Promise<ClaimInfo[]> {
    const answer = await this.onMaster(Retry.Safe, (node, call) =>
      node.ha.history({ limit }, call),
    );
    return answer.claims.map((claim) => ({
      epoch: claim.epoch,
      nodeId: claim.nodeId,
      nodeUri: claim.nodeUri,
      claimedAtMs: claim.claimedAtMs,
      reason: claim.reason,
    }));
  }

  /** Reads one entity from the master; `NotFoundError` when it does not exist. */
  async getEntity(id: string): Promise<Entity> {
    const answer = await this.onMaster(Retry.Safe, (node, call) => node.entities.get({ id }, call));
    return answeredEntity(answer.entity);
  }

  /** Entities whose id starts with `prefix`, from the master, every page of them. */
  async listEntities(prefix = ""): Promise<Entity[]> {
    const entities: Entity[] = [];
    let pageToken = "";
    for (;;) {
      const token = pageToken;
      const answer = await this.onMaster(Retry.Safe, (node, call) =>
        node.entities.list({ prefix, pageToken: token }, call),
      );
      entities.push(...answer.entities.map(entityFromWire));
      if (answer.nextPageToken === "") {
        return entities;
      }
      pageToken = answer.nextPageToken;
    }
  }

  /**
   * Creates or replaces an entity on the master. Every attempt carries the same idempotency key,
   * so the write is retried through a failover and applied once.
   */
  async putEntity(id: string, attributes: JsonObject, options: WriteOptions = {}): Promise<Entity> {
    let attributesJson: string;
    try {
      attributesJson = JSON.stringify(attributes);
    } catch (err) {
      throw new InvalidArgumentError(`attributes are not JSON: ${String(err)}`, {
        code: Code.InvalidArgument,
        cause: err,
      });
    }
    const request = {
      id,
      attributesJson,
      expectedVersion: optionalVersion(options.expectedVersion),
      idempotencyKey: options.idempotencyKey ?? newIdempotencyKey(),
    };
    const answer = await this.onMaster(Retry.Safe, (node, call) =>
      node.entities.put(request, call),
    );
    return answeredEntity(answer.entity);
  }

  /**
   * Deletes an entity on the master, idempotently like `putEntity`; answers the log position of
   * the delete. `NotFoundError` when it does not exist.
   */
  async deleteEntity(id: string, options: WriteOptions = {}): Promise<bigint> {
    const request = {
      id,
      expectedVersion: optionalVersion(options.expectedVersion),
      idempotencyKey: options.idempotencyKey ?? newIdempotencyKey(),
    };
    const answer = await this.onMaster(Retry.Safe, (node, call) =>
      node.entities.delete(request, call),
    );
    return answer.seq;
  }

  /** Stops following, closes every connection and fails the calls under way with `ClosedError`. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closing.abort();
    this.notify(undefined);
    await this.follower.stop();
    this.pool.close();
    this.emit("close");
  }

  private publish(view: MasterView): void {
    this.current = view;
    this.notify(view);
    this.emit("view", view);
  }

  private notify(view: MasterView | undefined): void {
    for (const listener of [...this.waiters]) {
      listener(view);
    }
  }

  /** The first view, or the first refusal of our credentials (no point waiting longer). */
  private async firstView(seeds: readonly string[]): Promise<void> {
    await this.waitFor(
      () => true,
      this.settings.failoverTimeoutMs,
      () => {
        const last = this.lastStreamError;
        const why = last === undefined ? "" : `; last error (${last.uri}): ${last.error.message}`;
        return new NoEndpointError(
          `no haplane endpoint answered: ${seeds.join(", ")}${why}`,
          last?.error,
        );
      },
    );
  }

  /**
   * Resolves with the first accepted view (the current one included) that `wanted` holds for;
   * rejects with `timeout()` after `timeoutMs`, with `ClosedError` on close and with the
   * refusal of our credentials when a node refuses them.
   */
  private waitFor(
    wanted: (view: MasterView) => boolean,
    timeoutMs: number,
    timeout: () => HaplaneError,
  ): Promise<MasterView> {
    return new Promise((resolve, reject) => {
      const settle = (view: MasterView | undefined): boolean => {
        if (view !== undefined && wanted(view)) {
          done();
          resolve(view);
        } else if (this.closed) {
          done();
          reject(new ClosedError());
        } else if (this.refusal !== undefined && this.current === undefined) {
          done();
          reject(rejectedFrom(this.refusal));
        } else {
          return false;
        }
        return true;
      };
      const timer = setTimeout(
        () => {
          done();
          reject(timeout());
        },
        Math.max(0, timeoutMs),
      );
      const listener = (view: MasterView | undefined): void => {
        settle(view);
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(listener);
      };
      this.waiters.add(listener);
      settle(this.current);
    });
  }

  /** The connection to the master `view` names. */
  private masterNode(view: MasterView): NodeConnection {
    const uri = view.master?.uri ?? "";
    try {
      return this.pool.get(checkEndpoint(uri));
    } catch (err) {
      throw new ProtocolError(
        `the master ${view.master?.id} has no usable URI ${JSON.stringify(uri)}`,
        err,
      );
    }
  }

  /** Resolves on the next accepted view, on close, or after `ms`. */
  private nextView(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const listener = (): void => done();
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(listener);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(listener);
    });
  }

  /**
   * Runs `call` against the master, waiting for the next pushed master and retrying as `retry`
   * allows, within the failover timeout.
   */
  private async onMaster<T>(
    retry: Retry,
    call: (node: NodeConnection, options: { timeoutMs: number; signal: AbortSignal }) => Promise<T>,
  ): Promise<T> {
    const deadline = now() + this.settings.failoverTimeoutMs;
    let last: ConnectError | undefined;
    for (;;) {
      if (this.closed) {
        throw new ClosedError();
      }
      let view: MasterView;
      try {
        view = await this.waitForMaster(Math.max(0, deadline - now()));
      } catch (err) {
        if (err instanceof NoMasterError && last !== undefined) {
          throw new NoMasterError(`${err.message}; last error: ${last.message}`, last);
        }
        throw err;
      }
      const node = this.masterNode(view);
      this.unaryCalls += 1;
      let error: ConnectError;
      try {
        return await call(node, {
          timeoutMs: Math.max(1, Math.ceil(deadline - now())),
          signal: this.closing.signal,
        });
      } catch (err) {
        if (this.closed) {
          throw new ClosedError();
        }
        if (err instanceof HaplaneError) {
          throw err;
        }
        error = ConnectError.from(err);
      }
      if (error.code === Code.Unavailable || !fromServer(error)) {
        // The master did not answer (refused, reset, dropped by the keep-alive): the follower
        // asks the other members, in case the node it streams from cannot see a new master
        // (client rule 5).
        this.follower.masterUnreachable();
      }
      const retriable =
        isNotMasterRefusal(error) || (retry === Retry.Safe && isFailoverSymptom(error));
      if (!retriable) {
        throw finalErrorFrom(error);
      }
      last = error;
      if (now() >= deadline) {
        throw new NoMasterError(
          `no master answered within ${this.settings.failoverTimeoutMs} ms; last error: ${error.message}`,
          error,
        );
      }
      // Wait briefly for a view newer than the one just tried (the push of the next master),
      // then try again.
      if (this.current === view) {
        await this.nextView(RETRY_PAUSE_MS);
      }
    }
  }
}

function newIdempotencyKey(): string {
  return `ts-${randomUUID()}`;
}

function optionalVersion(version: bigint | number | undefined): bigint | undefined {
  if (version === undefined) {
    return undefined;
  }
  if (typeof version === "number" && (!Number.isSafeInteger(version) || version < 0)) {
    throw new InvalidArgumentError(
      `expectedVersion must be a non-negative integer, not ${version}`,
      {
        code: Code.InvalidArgument,
      },
    );
  }
  const value = BigInt(version);
  if (value < 0n) {
    throw new InvalidArgumentError(`expectedVersion must not be negative, not ${value}`, {
      code: Code.InvalidArgument,
    });
  }
  return value;
}

/** The entity an answer must carry. */
function answeredEntity(entity: WireEntity | undefined): Entity {
  if (entity === undefined) {
    throw new ProtocolError("no entity in the answer");
  }
  return entityFromWire(entity);
}

function entityFromWire(entity: WireEntity): Entity {
  let attributes: unknown;
  try {
    attributes = JSON.parse(entity.attributesJson);
  } catch (err) {
    throw new ProtocolError(`entity ${entity.id} has unreadable attributes`, err);
  }
  if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) {
    throw new ProtocolError(`entity ${entity.id} has attributes that are not a JSON object`);
  }
  return {
    id: entity.id,
    attributes: attributes as JsonObject,
    version: entity.version,
    updatedEpoch: entity.updatedEpoch,
  };
}
