// Test harness: real `haplane` processes on 127.0.0.1 (each binds port 0 and prints the port it
// got), sharing a temporary directory store, with fast timings. Every process started is killed
// when its plane closes, and on any exit of the test process.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { type Client as RpcClient, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type GetStateResponse, HaService, NodeState } from "../src/gen/haplane/v1/ha_pb.js";

/** The repository root (this file runs as clients/typescript/dist/test/plane.js). */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
export const HAPLANE_BIN = process.env["HAPLANE_BIN"] ?? join(REPO, "target/debug/haplane");

export const POLL_PERIOD_MS = 100;
export const HEARTBEAT_TIMEOUT_MS = 1_000;
/** Generous: how long anything in these tests may take (no test asserts a timing). */
export const DEADLINE_MS = 20_000;

/** Every process started by this test process, killed on its exit whatever happens. */
const children = new Set<ChildProcess>();
function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  }
}
process.once("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

export interface NodeSpec {
  readonly id: string;
  readonly priority?: number;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export class PlaneNode {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly id: string,
    readonly uri: string,
    readonly pidFile: string,
    readonly child: ChildProcess,
    readonly stderr: () => string,
  ) {
    this.exited = new Promise((done) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        done({ code: child.exitCode, signal: child.signalCode });
      } else {
        child.once("exit", (code, signal) => done({ code, signal }));
      }
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** A crash: SIGKILL, then waits for the exit. */
  async kill9(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited;
  }

  /** Freezes the node (SIGSTOP): it keeps its sockets open but answers nothing. */
  freeze(): void {
    this.child.kill("SIGSTOP");
  }

  /** A graceful stop: `haplane stop --pid-file`, which waits for the node to exit. */
  async stop(): Promise<void> {
    await new Promise<void>((done, fail) => {
      execFile(
        HAPLANE_BIN,
        ["stop", "--pid-file", this.pidFile, "--wait", "20s"],
        (err, _out, stderr) =>
          err === null
            ? done()
            : fail(new Error(`haplane stop ${this.id}: ${err.message} ${stderr}`)),
      );
    });
    await this.exited;
  }

  /** This node's GetState, or `undefined` when it does not answer. */
  async state(): Promise<GetStateResponse | undefined> {
    return withRawClient(this.uri, HaService, async (ha) => {
      try {
        return await ha.getState({}, { timeoutMs: 1_000 });
      } catch {
        return undefined;
      }
    });
  }
}

export interface PlaneOptions {
  /**
   * Give every node its own store-fault control file (`Plane.faultFile`), so store faults can be
   * injected into one node alone. Needs a binary built with the server's `test-support` feature
   * (the Rust end-to-end tests build target/debug/haplane so); others ignore the file.
   */
  readonly perNodeFaults?: boolean;
}

/** Several nodes on one temporary directory store. */
export class Plane {
  readonly dir = mkdtempSync(join(tmpdir(), "haplane-ts-"));
  readonly nodes = new Map<string, PlaneNode>();

  private constructor(private readonly options: PlaneOptions) {}

  static async start(specs: readonly NodeSpec[], options: PlaneOptions = {}): Promise<Plane> {
    if (!existsSync(HAPLANE_BIN)) {
      throw new Error(
        `no haplane binary at ${HAPLANE_BIN}: run cargo build -p haplane-server --bin haplane or set HAPLANE_BIN`,
      );
    }
    const plane = new Plane(options);
    try {
      // Started together, so they all take part in the first election.
      await Promise.all(specs.map((spec) => plane.launch(spec)));
    } catch (err) {
      await plane.close();
      throw err;
    }
    return plane;
  }

  node(id: string): PlaneNode {
    const node = this.nodes.get(id);
    if (node === undefined) {
      throw new Error(`no node ${id}`);
    }
    return node;
  }

  uris(): string[] {
    return [...this.nodes.values()].map((node) => node.uri);
  }

  /**
   * Node `id`'s own store-fault control file (with `perNodeFaults`), named to the node by
   * `HAPLANE_TEST_STORE_FAULTS`; the node re-reads it at most every 100 ms. Its lines are those of
   * server/src/store/faulty.rs (`outage = true` cuts the store off).
   */
  faultFile(id: string): string {
    return join(this.dir, `${id}.faults`);
  }

  /** Replaces node `id`'s store faults with `lines` (an empty string clears them). */
  setFaults(id: string, lines: string): void {
    if (this.options.perNodeFaults !== true) {
      throw new Error("setFaults needs a plane started with perNodeFaults");
    }
    writeFileSync(this.faultFile(id), lines);
  }

  /** Starts one node and waits for its "listening on ADDRESS (advertised as URI)" line. */
  async launch(spec: NodeSpec): Promise<PlaneNode> {
    const pidFile = join(this.dir, `${spec.id}.pid`);
    const args = [
      "launch",
      "--node-id",
      spec.id,
      "--bind",
      "127.0.0.1:0",
      "--poll-period",
      `${POLL_PERIOD_MS}ms`,
      "--heartbeat-timeout",
      `${HEARTBEAT_TIMEOUT_MS}ms`,
      "--pid-file",
      pidFile,
      "--persistence-dir",
      join(this.dir, "store"),
      "--priority",
      String(spec.priority ?? 0),
      ...(spec.extraArgs ?? []),
    ];
    const log = join(this.dir, `${spec.id}.log`);
    const logFd = openSync(log, "a");
    const faults: Record<string, string> =
      this.options.perNodeFaults === true
        ? { HAPLANE_TEST_STORE_FAULTS: this.faultFile(spec.id) }
        : {};
    const child = spawn(HAPLANE_BIN, args, {
      cwd: this.dir,
      env: { ...process.env, NO_COLOR: "1", ...faults, ...spec.env },
      stdio: ["ignore", "pipe", logFd],
    });
    closeSync(logFd);
    children.add(child);
    child.once("exit", () => children.delete(child));
    const stderr = (): string => {
      try {
        return readFileSync(log, "utf8").slice(-4_000);
      } catch {
        return "";
      }
    };
    const lines = createInterface({ input: child.stdout! });
    const uri = await new Promise<string>((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`${spec.id} printed no address: ${stderr()}`)),
        60_000,
      );
      lines.once("line", (line) => {
        clearTimeout(timer);
        // "haplane a listening on 127.0.0.1:PORT (advertised as http://127.0.0.1:PORT), ..."
        const found = /\(advertised as (\S+?)\)/.exec(line)?.[1];
        found === undefined
          ? fail(new Error(`${spec.id}: unexpected first line ${line}`))
          : done(found);
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`${spec.id} exited with ${code} before listening: ${stderr()}`));
      });
    });
    lines.on("line", () => {});
    if (
      this.options.perNodeFaults === true &&
      stderr().includes("is ignored: this build has no test support")
    ) {
      child.kill("SIGKILL");
      throw new Error(
        `${HAPLANE_BIN} has no store fault injection: build it with the server's test-support feature (cargo build -p haplane-server --bin haplane --features test-support)`,
      );
    }
    const node = new PlaneNode(spec.id, uri, pidFile, child, stderr);
    this.nodes.set(spec.id, node);
    return node;
  }

  /** The id of the master every running node agrees on, polled until `DEADLINE_MS`. */
  async agreedMaster(except?: string): Promise<{ id: string; epoch: bigint }> {
    return eventually(
      `a master other than ${except ?? "none"} that every running node names`,
      async () => {
        const running = [...this.nodes.values()].filter((node) => node.running);
        const states = await Promise.all(running.map((node) => node.state()));
        const master = states.find((state) => state?.state === NodeState.MASTER);
        if (master === undefined || master.nodeId === except) {
          return undefined;
        }
        const agreed = states.every(
          (state) =>
            state !== undefined && state.masterId === master.nodeId && state.epoch === master.epoch,
        );
        return agreed ? { id: master.nodeId, epoch: master.epoch } : undefined;
      },
    );
  }

  /**
   * Kills every node still running and removes the store and the nodes' logs (kept, and named on
   * stderr, when HAPLANE_TS_KEEP_LOGS is set).
   */
  async close(): Promise<void> {
    const running = [...this.nodes.values()].filter((node) => node.running);
    await Promise.all(running.map((node) => node.kill9()));
    if (process.env["HAPLANE_TS_KEEP_LOGS"]) {
      process.stderr.write(`haplane logs kept in ${this.dir}\n`);
    } else {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** Polls `check` until it answers something (not `undefined`), failing after `DEADLINE_MS`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const found = await check();
    if (found !== undefined) {
      return found;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((done) => setTimeout(done, 50));
  }
}

/** The first value of `iterator` that `wanted` holds for, failing after `DEADLINE_MS`. */
export async function nextMatching<T>(
  iterator: AsyncIterator<T>,
  what: string,
  wanted: (value: T) => boolean,
  seen: T[] = [],
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}`)), DEADLINE_MS);
  });
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), timeout]);
      if (next.done === true) {
        throw new Error(`the iterator ended before ${what}`);
      }
      seen.push(next.value);
      if (wanted(next.value)) {
        return next.value;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `use` with a plain generated client of `service` on `uri` (not @haplane/client), then closes it. */
export async function withRawClient<S extends DescService, T>(
  uri: string,
  service: S,
  use: (client: RpcClient<S>) => Promise<T>,
): Promise<T> {
  const sessionManager = new Http2SessionManager(uri);
  try {
    return await use(createClient(service, createGrpcTransport({ baseUrl: uri, sessionManager })));
  } finally {
    sessionManager.abort();
  }
}
