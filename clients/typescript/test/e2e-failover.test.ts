// Failover against real nodes: a crash (kill -9) of the master of three, followed by a client
// whose only seed was that master (it learnt the others from the members pushed), and a graceful
// stop (`haplane stop`) of the master the client streams from, a frozen master (SIGSTOP),
// found only by HTTP/2 keep-alive pings, and a crash of the master while the client streams from
// a standby without its store, which keeps showing the dead master (client rule 5).

import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { afterEach, describe, it } from "node:test";
import { Client, type MasterView, NodeState } from "../src/index.js";
import { epochsNeverDecrease, fastOptions } from "./options.js";
import { Plane, eventually, nextMatching } from "./plane.js";

describe("failover", { timeout: 120_000 }, () => {
  let plane: Plane | undefined;
  let client: Client | undefined;

  afterEach(async () => {
    await client?.close();
    await plane?.close();
    client = undefined;
    plane = undefined;
  });

  /** Waits for a view of a master other than `old` in a newer epoch; checks every view seen. */
  async function followsToNewMaster(
    views: AsyncIterator<MasterView>,
    old: MasterView,
  ): Promise<MasterView> {
    const seen: MasterView[] = [];
    const next = await nextMatching(
      views,
      `a master other than ${old.master?.id}`,
      (view) => view.master !== undefined && view.master.id !== old.master?.id,
      seen,
    );
    assert.ok(next.epoch > old.epoch, `a higher epoch: ${next.epoch} > ${old.epoch}`);
    assert.ok(epochsNeverDecrease(seen), `epochs never decrease: ${seen.map((v) => v.epoch)}`);
    assert.ok(
      seen.every((view) => view.master?.id !== old.master?.id || view.epoch === old.epoch),
      "the old master is never shown in a newer epoch",
    );
    return next;
  }

  it("a crash of the master: a client seeded with the master alone follows to the new one", async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
    const first = await plane.agreedMaster();
    assert.equal(first.id, "a");
    client = await Client.connect([plane.node("a").uri], fastOptions());
    const old = await client.waitForMaster();
    assert.equal(old.master?.id, "a");
    const views = client.watchMaster();

    await plane.node("a").kill9();

    // The client knew b and c only from the members a pushed.
    const next = await followsToNewMaster(views, old);
    assert.ok(["b", "c"].includes(next.master?.id ?? ""), `${next.master?.id}`);
    const state = await client.getState();
    assert.equal(state.nodeId, next.master?.id, "calls reach the new master");
    assert.equal(state.state, NodeState.MASTER);
    assert.ok(state.epoch >= next.epoch);
    assert.ok(client.stats().watchStreams >= 2, "the stream moved off the dead master");
  });

  it("a frozen master (SIGSTOP) keeps its connection: keep-alive pings drop it", async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
    assert.equal((await plane.agreedMaster()).id, "a");
    // The frozen master first: the stream is on a, which then pushes nothing and closes nothing.
    const seeds = ["a", "b", "c"].map((id) => plane!.node(id).uri);
    client = await Client.connect(seeds, fastOptions());
    const old = await client.waitForMaster();
    assert.equal(old.master?.id, "a");
    const views = client.watchMaster();

    plane.node("a").freeze();

    const next = await followsToNewMaster(views, old);
    assert.ok(["b", "c"].includes(next.master?.id ?? ""), `${next.master?.id}`);
    assert.ok(client.stats().watchStreams >= 2, "the stream moved off the frozen master");
    const state = await client.getState();
    assert.equal(state.nodeId, next.master?.id);
  });

  it("a graceful stop of the master: the client follows to the next master", async () => {
    plane = await Plane.start([{ id: "a" }, { id: "b", priority: 5 }, { id: "c" }]);
    const first = await plane.agreedMaster();
    assert.equal(first.id, "b");
    // The master first: the stream is on b when b stops, and must move at once.
    const seeds = ["b", "a", "c"].map((id) => plane!.node(id).uri);
    client = await Client.connect(seeds, fastOptions());
    const old = await client.waitForMaster();
    assert.equal(old.master?.id, "b");
    const views = client.watchMaster();

    await plane.node("b").stop();
    assert.deepEqual(await plane.node("b").exited, { code: 0, signal: null }, "b exited cleanly");

    const next = await followsToNewMaster(views, old);
    assert.equal(next.master?.id, "a", "a and c tie on priority; the lower id wins");
    assert.ok(client.stats().watchStreams >= 2, "the stream moved off the stopped master");
    const listed = await client.listStates();
    assert.equal(listed.masterId, "a");
    assert.equal(
      listed.nodes.find((node) => node.nodeId === "b")?.status,
      NodeState.TERMINATED,
      "b published TERMINATED",
    );
  });

  it("a crash of the master while the client streams from a standby without its store: a failed call makes it ask the others", async (t) => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }], {
      perNodeFaults: true,
    });
    const first = await plane.agreedMaster();
    assert.equal(first.id, "a");
    // Seeded with the standby b alone: the stream is on b (a and c are learnt from its members).
    client = await Client.connect([plane.node("b").uri], fastOptions());
    const old = await client.waitForMaster();
    assert.equal(old.master?.id, "a");

    // b loses its store, then the master dies: b cannot see the crash and keeps showing a.
    plane.setFaults("b", "outage = true\n");
    await plane.node("a").kill9();
    const killed = performance.now();
    // c has its store: it sees the crash and becomes master (b cannot claim without its store).
    const next = await eventually("c to become master", async () => {
      const state = await plane!.node("c").state();
      return state?.state === NodeState.MASTER && state.epoch > old.epoch ? state : undefined;
    });
    const stale = await plane.node("b").state();
    assert.equal(stale?.masterId, "a", "b, without its store, still shows the dead master");
    assert.equal(stale?.epoch, old.epoch);
    assert.equal(client.master()?.master?.id, "a", "b pushed nothing new");
    const streamsBefore = client.stats().watchStreams;

    // The call finds a unreachable; the follower asks the others and moves to c.
    const state = await client.getState();
    const tookMs = Math.round(performance.now() - killed);
    assert.equal(state.nodeId, "c", "the call went to the new master");
    assert.equal(state.epoch, next.epoch);
    assert.equal(client.master()?.master?.id, "c", "the client names the new master");
    assert.equal(client.master()?.epoch, next.epoch);
    assert.ok(client.stats().watchStreams > streamsBefore, "the stream moved off b");
    t.diagnostic(`the call reached c ${tookMs} ms after the kill`);
    plane.setFaults("b", "");
  });
});
