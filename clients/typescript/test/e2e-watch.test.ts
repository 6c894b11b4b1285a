// WatchMaster push against real nodes: the first view arrives through a standby seed and names
// the master, and a change of master (an operator switchover) is pushed to the client.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Client, type MasterView } from "../src/index.js";
import { epochsNeverDecrease, fastOptions } from "./options.js";
import { HAPLANE_BIN, Plane, nextMatching } from "./plane.js";

describe("WatchMaster push", { timeout: 120_000 }, () => {
  let plane: Plane;
  let client: Client | undefined;

  before(async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }, { id: "c" }]);
  });
  after(async () => {
    await client?.close();
    await plane?.close();
  });

  it("the first view arrives from a standby seed and names the master", async () => {
    const master = await plane.agreedMaster();
    assert.equal(master.id, "a", "a has the highest priority");
    client = await Client.connect(plane.node("b").uri, fastOptions());
    const view = client.view();
    assert.ok(view !== undefined, "connect resolves with a view");
    assert.equal(view.master?.id, "a");
    assert.equal(view.master?.uri, plane.node("a").uri);
    assert.equal(view.epoch, master.epoch);
    assert.deepEqual(
      view.members.map((member) => [member.nodeId, member.nodeUri]).sort(),
      ["a", "b", "c"].map((id) => [id, plane.node(id).uri]),
      "the view lists every member",
    );
    assert.deepEqual(client.master(), view);
    assert.deepEqual(await client.waitForMaster(), view);
    const first = await client.watchMaster().next();
    assert.deepEqual(first.value, view, "the iterator starts with the current view");
  });

  it("a change of master is pushed to the iterator and to 'view' listeners", async () => {
    assert.ok(client !== undefined);
    const old = client.master();
    assert.ok(old?.master !== undefined);
    const views = client.watchMaster();
    const emitted: MasterView[] = [];
    client.on("view", (view) => emitted.push(view));
    const callsBefore = client.stats().unaryCalls;

    await new Promise<void>((done, fail) => {
      execFile(
        HAPLANE_BIN,
        ["ha", "--endpoint", plane.uris().join(","), "--yes", "switchover", "--to", "c"],
        (err, _out, stderr) => (err === null ? done() : fail(new Error(`switchover: ${stderr}`))),
      );
    });

    const seen: MasterView[] = [];
    const pushed = await nextMatching(views, "a view naming c", (v) => v.master?.id === "c", seen);
    await views.return?.();
    assert.ok(pushed.epoch > old.epoch, `c claimed a newer epoch (${pushed.epoch} > ${old.epoch})`);
    assert.equal(pushed.master?.uri, plane.node("c").uri);
    assert.ok(epochsNeverDecrease(seen), `epochs never decrease: ${seen.map((v) => v.epoch)}`);
    assert.ok(
      seen.every((v) => v.master?.id !== "a" || v.epoch === old.epoch),
      "a is never shown master of a newer epoch",
    );
    assert.ok(
      emitted.some((v) => v.master?.id === "c"),
      "'view' listeners heard of c too",
    );
    assert.equal(client.stats().unaryCalls, callsBefore, "the client made no call: it was pushed");
    assert.equal(client.master()?.master?.id, "c");
  });
});
