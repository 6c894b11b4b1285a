// ViewFilter, one test per rule of docs/client-rules.md (1, 3, 4), with the histories it must
// reject as well as those it must accept.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ViewFilter } from "../src/index.js";
import { bare, uri, view } from "./fixtures.js";

describe("ViewFilter", () => {
  it("accepts the first view, with or without a master", () => {
    assert.equal(new ViewFilter().accept(view(0, ""), uri("a")), true);
    assert.equal(new ViewFilter().accept(view(3, "b"), uri("a")), true);
  });

  it("rule 4: never a lower epoch of the same plane", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(5, "a"), uri("a")), true);
    assert.equal(filter.accept(view(4, "b"), uri("b")), false, "a lagging node's view is ignored");
    assert.equal(filter.accept(view(0, ""), uri("b")), false);
    assert.equal(filter.accept(view(4, ""), uri("a")), false, "not even from the master itself");
    assert.equal(filter.accept(view(6, "b"), uri("b")), true);
    assert.equal(filter.accept(view(5, "a"), uri("a")), false);
    assert.equal(filter.epoch(), 6n);
  });

  it("accepts the same epoch and master from every member", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(3, "a"), uri("b")), true);
    assert.equal(filter.accept(view(3, "a"), uri("c")), true);
    assert.equal(filter.accept(view(3, "a"), uri("a")), true);
  });

  it("rule 1: a standby saying 'no master' in the current epoch is not believed", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(1, "a"), uri("b")), true);
    assert.equal(filter.accept(view(1, ""), uri("b")), false, "b only lost sight of a");
    assert.equal(filter.accept(view(1, ""), uri("c")), false, "nor c");
    assert.equal(filter.believedMasterId(), "a", "the rejected views changed nothing");
    assert.equal(filter.accept(view(1, "a"), uri("b")), true, "b sees a again: a never went away");
  });

  it("rule 1: the master's own release is believed, by its URI (a trailing / aside)", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(2, "a"), uri("b")), true);
    assert.equal(filter.accept(bare(2, ""), "http://a:8081/"), true);
    assert.equal(filter.believedMasterId(), undefined);
  });

  it("rule 1: the master's own release is believed by its member entry", () => {
    // a's claim names the URI it advertised before a restart; its record, the current one.
    const filter = new ViewFilter();
    const named = { ...view(2, "a"), master: { id: "a", uri: "http://old-a:8081" } };
    assert.equal(filter.accept(named, uri("b")), true);
    assert.equal(
      filter.accept(view(2, ""), uri("a")),
      true,
      "the members say the stream's node is a",
    );
  });

  it("rule 1: a release whose members give the stream's URI another id is not believed", () => {
    const filter = new ViewFilter();
    const named = { ...view(2, "a"), master: { id: "a", uri: "http://old-a:8081" } };
    assert.equal(filter.accept(named, uri("b")), true);
    // Streamed from b, whose members entry is b's: not a's release.
    assert.equal(filter.accept(view(2, ""), uri("b")), false);
    // A release with no members, from a URI that is not the master's: not believed either.
    assert.equal(
      filter.accept(bare(2, ""), uri("a")),
      false,
      "without members only the URI counts",
    );
    assert.equal(filter.believedMasterId(), "a");
  });

  it("rules 1 and 4: a master that released an epoch never comes back in it", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(5, "a"), uri("a")), true);
    assert.equal(filter.accept(view(5, ""), uri("a")), true, "the master's own step-down is news");
    assert.equal(filter.accept(view(5, "a"), uri("b")), false, "a lagging node still naming a");
    assert.equal(filter.accept(view(5, "a"), uri("a")), false, "not even a itself, in epoch 5");
    assert.equal(filter.accept(view(5, "c"), uri("c")), true, "another master of 5 is not barred");
    assert.equal(filter.accept(view(6, "a"), uri("a")), true, "a may come back with a new epoch");
  });

  it("rule 1: a newer epoch, from any node, releases the old master", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(1, "a"), uri("b")), true);
    assert.equal(filter.accept(view(2, ""), uri("b")), true, "a claim of epoch 2 exists");
    assert.equal(filter.accept(view(2, "c"), uri("b")), true);
    assert.equal(filter.believedMasterId(), "c");
  });

  it("rule 3: a new plane id resets the epoch filter; an empty one changes nothing", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(7, "a"), uri("a")), true);
    assert.equal(filter.accept(view(7, ""), uri("a")), true);
    assert.equal(
      filter.accept(view(1, "a", "plane-2"), uri("a")),
      true,
      "the new plane starts at 1",
    );
    assert.equal(filter.accept(view(0, "", "plane-2"), uri("b")), false);
    assert.equal(filter.accept(view(1, "a", ""), uri("b")), true, "no plane id: no reset");
    assert.equal(filter.accept(view(0, "b", ""), uri("b")), false, "and still no lower epoch");
    assert.equal(filter.accept(view(7, "a", "plane-1"), uri("a")), true, "back to the first plane");
    assert.equal(
      filter.accept(view(7, "a", "plane-1"), uri("a")),
      true,
      "its release was forgotten",
    );
  });

  it("a copy judges without changing the original", () => {
    const filter = new ViewFilter();
    assert.equal(filter.accept(view(3, "a"), uri("a")), true);
    assert.equal(filter.clone().accept(view(4, "b"), uri("b")), true);
    assert.equal(filter.epoch(), 3n);
    assert.equal(filter.believedMasterId(), "a");
  });
});
