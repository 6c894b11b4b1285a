// Follow (rules 2 and 5 of docs/client-rules.md): when to probe the other members, and where a
// probe's answers move the stream. Times are plain numbers: no clock is involved.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Follow, type ProbeAnswer } from "../src/index.js";
import { bare, uri, view } from "./fixtures.js";

const POLL = 1_000;

/** `node`'s GetState answer: its view of the master in `epoch`. */
function answer(node: string, epoch: number, master: string, planeId?: string): ProbeAnswer {
  return { uri: uri(node), nodeId: node, view: bare(epoch, master, planeId) };
}

describe("Follow", () => {
  it("moves the stream to the master when its standby has shown no master for a poll", () => {
    const start = 10_000;
    const follow = new Follow(POLL);
    follow.streamOpened();
    assert.equal(follow.onView(view(1, "a"), uri("b"), start), true);
    assert.equal(follow.probeAt(), undefined, "no probing while b shows the master");

    // b's store is out: it cannot confirm a and says "no master" in epoch 1.
    assert.equal(follow.onView(view(1, ""), uri("b"), start), false);
    assert.equal(follow.probeAt(), start + POLL);
    assert.equal(follow.onView(view(1, ""), uri("b"), start + POLL / 2), false);
    assert.equal(follow.probeAt(), start + POLL, "the probe is not pushed back");

    const answers = [answer("a", 1, "a"), answer("c", 1, "a")];
    assert.equal(
      follow.afterProbe(uri("b"), answers, start + POLL),
      uri("a"),
      "to the master itself",
    );
    follow.streamOpened();
    assert.equal(follow.onView(view(1, "a"), uri("a"), start + POLL), true);
    assert.equal(follow.probeAt(), undefined);
  });

  it("stays and probes a poll later when the probe finds no master to believe", () => {
    const start = 0;
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(3, ""), uri("b"), start), true);
    assert.equal(follow.probeAt(), start + POLL, "no master at all arms a probe");
    const later = start + POLL;
    assert.equal(
      follow.afterProbe(uri("b"), [answer("c", 3, ""), answer("a", 2, "a")], later),
      undefined,
      "nobody reports a master of epoch 3 or later",
    );
    assert.equal(follow.probeAt(), later + POLL);
    assert.equal(follow.afterProbe(uri("b"), [answer("c", 4, "c")], later + POLL), uri("c"));
  });

  it("prefers the newest master and never moves to the node it streams from", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(2, "a"), uri("b"), 0), true);
    assert.equal(follow.onView(view(1, "c"), uri("b"), 0), false, "lagging");
    assert.notEqual(follow.probeAt(), undefined, "a view not believed arms a probe");
    const answers = [answer("a", 2, "a"), answer("c", 3, "c"), answer("d", 3, "b")];
    const target = follow.afterProbe(uri("b"), answers, 0);
    assert.equal(target, uri("c"), "epoch 3's master c, not b which the stream is on");
    assert.equal(follow.afterProbe(uri("b"), [answer("c", 3, "b")], 0), undefined);
  });

  it("streams from the believed master when nobody reports a master", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(4, "a"), uri("b"), 0), true);
    assert.equal(follow.onView(view(4, ""), uri("b"), 0), false);
    const answers = [answer("c", 4, ""), answer("a", 4, "")];
    assert.equal(follow.afterProbe(uri("b"), answers, POLL), uri("a"), "only a may say it let go");
    follow.streamOpened();
    assert.equal(follow.onView(view(4, ""), uri("a"), POLL), true, "a's own release is believed");
    assert.equal(follow.afterProbe(uri("a"), [answer("c", 4, "")], POLL * 2), undefined);
  });

  it("never moves to a master the filter would not believe", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(5, "a"), uri("a"), 0), true);
    assert.equal(follow.onView(view(5, ""), uri("a"), 0), true, "a released epoch 5");
    const answers = [answer("b", 5, "a"), answer("c", 4, "c")];
    assert.equal(
      follow.afterProbe(uri("a"), answers, POLL),
      undefined,
      "a of 5 is barred, c of 4 is old",
    );
  });

  it("moves to a member of a new plane that reports a master", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(9, "a"), uri("a"), 0), true);
    assert.equal(follow.onView(view(9, ""), uri("a"), 0), true);
    const answers = [answer("c", 8, "c"), answer("b", 1, "b", "plane-2")];
    assert.equal(follow.afterProbe(uri("a"), answers, 0), uri("b"));
  });

  it("an unreachable master that the node still shows moves the stream to a newer one", () => {
    const start = 10_000;
    const follow = new Follow(POLL);
    follow.streamOpened();
    assert.equal(follow.onView(view(1, "a"), uri("b"), start), true);
    assert.equal(follow.probeAt(), undefined);
    // A call to a failed with UNAVAILABLE: b's store is out, so b keeps showing a.
    follow.masterUnreachable(start);
    assert.equal(follow.probeAt(), start + POLL);
    follow.masterUnreachable(start + POLL / 2);
    assert.equal(follow.probeAt(), start + POLL, "not pushed back");

    assert.equal(follow.afterProbe(uri("b"), [], start + POLL), undefined, "nobody answered");
    assert.equal(
      follow.probeAt(),
      undefined,
      "b still shows the master: no polling until the next unreachable call",
    );
    assert.equal(
      follow.afterProbe(uri("b"), [answer("c", 1, "")], start + POLL * 2),
      undefined,
      "c has no master to name yet: nowhere to move",
    );
    assert.equal(follow.probeAt(), undefined);

    follow.masterUnreachable(start + POLL * 2);
    assert.equal(follow.probeAt(), start + POLL * 3);
    const newer = [answer("a", 1, "a"), answer("c", 2, "c")];
    assert.equal(
      follow.afterProbe(uri("b"), newer, start + POLL * 3),
      uri("c"),
      "a newer epoch's master is believed from any node",
    );
    assert.equal(follow.probeAt(), undefined);
    follow.streamOpened();
    assert.equal(follow.onView(view(2, "c"), uri("c"), start + POLL * 3), true);
    assert.equal(follow.probeAt(), undefined);
  });

  it("an unreachable call while the node shows no master keeps the probes of rule 2", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(1, "a"), uri("b"), 0), true);
    assert.equal(follow.onView(view(1, ""), uri("b"), 10), false, "b cannot confirm a");
    assert.equal(follow.probeAt(), 10 + POLL);
    follow.masterUnreachable(20);
    assert.equal(follow.probeAt(), 10 + POLL, "the armed probe stays");
    assert.equal(follow.afterProbe(uri("b"), [], 10 + POLL), undefined);
    assert.equal(follow.probeAt(), 10 + POLL * 2, "no master shown: probed again a poll later");
  });

  it("a view with the master again disarms the probe", () => {
    const follow = new Follow(POLL);
    assert.equal(follow.onView(view(1, "a"), uri("b"), 0), true);
    assert.equal(follow.onView(view(1, ""), uri("b"), 10), false);
    assert.equal(follow.probeAt(), 10 + POLL);
    assert.equal(follow.onView(view(1, "a"), uri("b"), 20), true);
    assert.equal(follow.probeAt(), undefined);
  });
});
