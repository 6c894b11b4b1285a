// Entity writes across a crash failover against real nodes. The deterministic cases make the
// first attempt reach the master and be applied, then crash that master before the client sees
// the answer (an interceptor kills it and reports UNAVAILABLE, as a lost answer looks): the
// retry on the new master must carry the same idempotency key and so be applied once.

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Client, NotFoundError } from "../src/index.js";
import { fastOptions } from "./options.js";
import { Plane } from "./plane.js";

describe("entity writes across a failover", { timeout: 120_000 }, () => {
  let plane: Plane | undefined;
  let client: Client | undefined;

  afterEach(async () => {
    await client?.close();
    await plane?.close();
    client = undefined;
    plane = undefined;
  });

  /**
   * An interceptor that, once armed, lets the next call of `method` reach the server and be
   * applied, then kills the master (kill -9) and fails the call with UNAVAILABLE. Records the
   * idempotency key of every attempt of `method`.
   */
  function loseAnswerOnce(method: string) {
    const state = { armed: false, keys: [] as string[], killed: undefined as string | undefined };
    const interceptor: Interceptor = (next) => async (request) => {
      if (request.method.name !== method) {
        return next(request);
      }
      assert.equal(request.stream, false);
      state.keys.push((request.message as unknown as { idempotencyKey: string }).idempotencyKey);
      const response = await next(request);
      if (state.armed) {
        state.armed = false;
        const master = client?.master()?.master?.id;
        assert.ok(master !== undefined && plane !== undefined);
        state.killed = master;
        await plane.node(master).kill9();
        throw new ConnectError("the answer was lost in a crash", Code.Unavailable);
      }
      return response;
    };
    return { state, interceptor };
  }

  it("a put applied by a master that crashed before answering is applied once", async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
    await plane.agreedMaster();
    const lost = loseAnswerOnce("Put");
    client = await Client.connect(plane.uris(), fastOptions({ interceptors: [lost.interceptor] }));
    const old = await client.waitForMaster();

    lost.state.armed = true;
    const written = await client.putEntity("apps/web", { replicas: 3 });

    assert.equal(lost.state.killed, old.master?.id);
    const now = client.master();
    assert.ok(now !== undefined && now.epoch > old.epoch, "answered after the failover");
    assert.notEqual(now.master?.id, old.master?.id);
    assert.equal(written.version, 1n, "applied once, not twice");
    assert.equal(
      written.updatedEpoch,
      old.epoch,
      "the crashed master's write was kept, not redone",
    );
    assert.deepEqual(written.attributes, { replicas: 3 });
    const read = await client.getEntity("apps/web");
    assert.equal(read.version, 1n);
    assert.equal(read.updatedEpoch, old.epoch);
    assert.ok(lost.state.keys.length >= 2, "the put was retried");
    assert.equal(new Set(lost.state.keys).size, 1, "every attempt carried the same key");
  });

  it("a delete applied by a master that crashed before answering is applied once", async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
    await plane.agreedMaster();
    const lost = loseAnswerOnce("Delete");
    client = await Client.connect(plane.uris(), fastOptions({ interceptors: [lost.interceptor] }));
    const old = await client.waitForMaster();
    const created = await client.putEntity("apps/db", { size: 1 });
    assert.equal(created.version, 1n);

    lost.state.armed = true;
    // A second application would find no entity and fail with NOT_FOUND.
    const seq = await client.deleteEntity("apps/db");

    assert.equal(lost.state.killed, old.master?.id);
    assert.ok(seq > 0n);
    assert.ok((client.master()?.epoch ?? 0n) > old.epoch);
    await assert.rejects(client.getEntity("apps/db"), NotFoundError);
    assert.ok(lost.state.keys.length >= 2, "the delete was retried");
    assert.equal(new Set(lost.state.keys).size, 1, "every attempt carried the same key");
  });

  it("a run of writes through a crash of the master: every one acknowledged, each applied once", async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
    await plane.agreedMaster();
    client = await Client.connect(plane.uris(), fastOptions());
    const old = await client.waitForMaster();
    const writer = client;
    const count = 80;
    let acknowledged = 0;
    let failure: unknown;
    const writing = (async () => {
      for (let i = 0; i < count; i++) {
        await writer.putEntity(`run/${String(i).padStart(4, "0")}`, { i });
        acknowledged += 1;
      }
    })().catch((err: unknown) => {
      failure = err ?? new Error("the writer failed");
    });
    while (acknowledged < 20 && failure === undefined) {
      await new Promise((done) => setTimeout(done, 5));
    }
    await plane.node(old.master?.id ?? "").kill9();
    await writing;
    if (failure !== undefined) {
      throw failure;
    }
    assert.equal(acknowledged, count, "every write acknowledged");

    assert.ok((client.master()?.epoch ?? 0n) > old.epoch, "the run went through a failover");
    const stored = await client.listEntities("run/");
    assert.equal(stored.length, count, "no write lost, none duplicated");
    for (const entity of stored) {
      assert.equal(entity.version, 1n, `${entity.id} applied once`);
    }
    assert.ok(
      stored.some((entity) => entity.updatedEpoch > old.epoch),
      "some written by the new master",
    );
  });
});
