// Typed errors from real nodes: bad input and conflicts are refused at once (not retried) with
// their code and reason, a standby's refusal names the master, and credentials are checked.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { EntityService } from "../src/gen/haplane/v1/entity_pb.js";
import {
  AccessDeniedError,
  Client,
  Code,
  HaplaneError,
  InvalidArgumentError,
  NotFoundError,
  NotMasterError,
  Reason,
  rejectedFrom,
  VersionConflictError,
} from "../src/index.js";
import { fastOptions } from "./options.js";
import { Plane, withRawClient } from "./plane.js";

describe("typed errors from real nodes", { timeout: 120_000 }, () => {
  let plane: Plane;
  let client: Client;

  before(async () => {
    plane = await Plane.start([{ id: "a", priority: 5 }, { id: "b" }]);
    await plane.agreedMaster();
    client = await Client.connect(plane.uris(), fastOptions());
  });
  after(async () => {
    await client?.close();
    await plane?.close();
  });

  /** Runs `call`, expecting a rejection after exactly one attempt; answers the error. */
  async function refusedOnce(call: () => Promise<unknown>): Promise<HaplaneError> {
    const before = client.stats().unaryCalls;
    const err = await call().then(
      () => assert.fail("expected a refusal"),
      (err: unknown) => err,
    );
    assert.ok(err instanceof HaplaneError, `a HaplaneError, not ${String(err)}`);
    assert.equal(client.stats().unaryCalls - before, 1, "refused at once, not retried");
    return err;
  }

  it("a bad entity id is an InvalidArgumentError", async () => {
    const err = await refusedOnce(() => client.putEntity("not a valid id!", { a: 1 }));
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.reason, undefined);
    assert.match(err.message, /invalid id/);
  });

  it("attributes that are not a JSON object are an InvalidArgumentError", async () => {
    const notAnObject = [1, 2] as unknown as Record<string, never>;
    const err = await refusedOnce(() => client.putEntity("ok/id", notAnObject));
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /attributes/);
  });

  it("a wrong expected version is a VersionConflictError with its reason", async () => {
    await client.putEntity("conflict/x", { v: 1 });
    const err = await refusedOnce(() =>
      client.putEntity("conflict/x", { v: 2 }, { expectedVersion: 7 }),
    );
    assert.ok(err instanceof VersionConflictError);
    assert.equal(err.code, Code.Aborted);
    assert.equal(err.reason, Reason.VersionConflict);
    assert.equal((await client.getEntity("conflict/x")).version, 1n, "nothing was written");
    const created = await client.putEntity("conflict/y", { v: 1 }, { expectedVersion: 0 });
    assert.equal(created.version, 1n, "expected version 0: only if absent");
  });

  it("a missing entity is a NotFoundError", async () => {
    const err = await refusedOnce(() => client.getEntity("missing/x"));
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.code, Code.NotFound);
    const deleted = await refusedOnce(() => client.deleteEntity("missing/x"));
    assert.ok(deleted instanceof NotFoundError);
  });

  it("a standby's refusal of a write is a NotMasterError naming the master", async () => {
    const raw = await withRawClient(plane.node("b").uri, EntityService, (standby) =>
      standby.put({ id: "x/y", attributesJson: "{}", idempotencyKey: "k" }).then(
        () => assert.fail("a standby must refuse a write"),
        (err: unknown) => ConnectError.from(err),
      ),
    );
    const err = rejectedFrom(raw);
    assert.ok(err instanceof NotMasterError);
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.reason, Reason.NotMaster);
    assert.equal(err.masterId, "a");
    assert.equal(err.masterUri, plane.node("a").uri);
  });
});

describe("credentials", { timeout: 120_000 }, () => {
  let plane: Plane;

  before(async () => {
    plane = await Plane.start([
      {
        id: "a",
        extraArgs: ["--auth-user", "admin"],
        env: { HAPLANE_AUTH_PASSWORD: "s3cret-pass" },
      },
    ]);
  });
  after(async () => {
    await plane?.close();
  });

  it("the right credentials are let in; wrong or missing ones are an AccessDeniedError", async () => {
    const good = await Client.connect(
      plane.node("a").uri,
      fastOptions({ credentials: { user: "admin", password: "s3cret-pass" } }),
    );
    try {
      await good.waitForMaster();
      const written = await good.putEntity("auth/x", { ok: true });
      assert.equal(written.version, 1n);
    } finally {
      await good.close();
    }
    for (const credentials of [{ user: "admin", password: "wrong" }, undefined]) {
      await assert.rejects(
        Client.connect(plane.node("a").uri, fastOptions(credentials ? { credentials } : {})),
        (err: unknown) => {
          assert.ok(err instanceof AccessDeniedError, `${String(err)}`);
          assert.equal(err.code, Code.Unauthenticated);
          return true;
        },
      );
    }
  });
});
