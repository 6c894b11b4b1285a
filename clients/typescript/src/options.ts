// How a client connects and how long it rides out a failover.

import type { Interceptor } from "@connectrpc/connect";

/** A user and password for nodes started with `--auth-user` (sent as HTTP Basic). */
export interface Credentials {
  readonly user: string;
  readonly password: string;
}

export interface ConnectOptions {
  /** How long calls wait for a new master (and retry) during a failover. Default 30 000 ms. */
  failoverTimeoutMs?: number;
  /**
   * How long a node may take to answer: a WatchMaster stream must bring its first view within
   * this plus a poll period, a probe's GetState within the same. Default 1 000 ms.
   */
  connectTimeoutMs?: number;
  /**
   * HTTP/2 keep-alive ping interval; a connection that leaves a ping unanswered for three
   * intervals is dropped (a frozen node keeps its TCP connection). Default 1 000 ms.
   */
  keepAliveMs?: number;
  /**
   * The plane's poll period (the nodes' `--poll-period`). When the node streamed from has shown
   * no master, or a view the client does not believe, for this long, the client asks the other
   * members and moves its stream to the master they report. Default 1 000 ms.
   */
  pollPeriodMs?: number;
  /** For nodes started with `--auth-user`. */
  credentials?: Credentials;
  /** PEM CA certificate(s) trusted, besides the system roots, for `https://` endpoints. */
  caPem?: string | Buffer;
  /** Extra Connect interceptors, run on every call (after the credentials are added). */
  interceptors?: Interceptor[];
}

/** The options with every default filled in. */
export interface Settings {
  readonly failoverTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly pollPeriodMs: number;
  readonly credentials: Credentials | undefined;
  readonly caPem: string | Buffer | undefined;
  readonly interceptors: readonly Interceptor[];
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) {
    return fallback;
  }
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds, not ${value}`);
  }
  return value;
}

export function settingsFrom(options: ConnectOptions): Settings {
  return {
    failoverTimeoutMs: positive("failoverTimeoutMs", options.failoverTimeoutMs, 30_000),
    connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 1_000),
    keepAliveMs: positive("keepAliveMs", options.keepAliveMs, 1_000),
    pollPeriodMs: positive("pollPeriodMs", options.pollPeriodMs, 1_000),
    credentials: options.credentials,
    caPem: options.caPem,
    interceptors: options.interceptors ?? [],
  };
}
