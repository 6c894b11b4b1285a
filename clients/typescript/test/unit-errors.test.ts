// Typed errors: how a server's status (code, message, google.rpc.ErrorInfo detail, metadata)
// becomes a HaplaneError subclass; endpoints and credentials checked before any call.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../src/gen/google/rpc/error_info_pb.js";
import {
  AccessDeniedError,
  Client,
  Code,
  finalErrorFrom,
  fromServer,
  HaplaneError,
  InvalidArgumentError,
  InvalidEndpointError,
  isFailoverSymptom,
  NoEndpointError,
  NotFoundError,
  NotMasterError,
  OutcomeUnknownError,
  Reason,
  RejectedError,
  rejectedFrom,
  VersionConflictError,
} from "../src/index.js";
import { basicAuthorization, checkEndpoint } from "../src/nodes.js";

/** A status as the server sends it: the detail arrives as bytes, the way the transport reads it. */
function refusal(
  code: Code,
  reason?: string,
  domain = "haplane.v1",
  metadata: Record<string, string> = {},
  headers: Record<string, string> = {},
): ConnectError {
  const err = new ConnectError(
    "refused",
    code,
    new Headers({ "grpc-status": String(code), ...headers }),
  );
  if (reason !== undefined) {
    err.details.push({
      type: "google.rpc.ErrorInfo",
      value: toBinary(ErrorInfoSchema, create(ErrorInfoSchema, { reason, domain, metadata })),
    });
  }
  return err;
}

describe("typed errors", () => {
  it("a refusal with a reason is typed by its ErrorInfo", () => {
    const conflict = rejectedFrom(refusal(Code.Aborted, Reason.VersionConflict));
    assert.ok(conflict instanceof VersionConflictError);
    assert.ok(conflict instanceof RejectedError);
    assert.ok(conflict instanceof HaplaneError);
    assert.ok(conflict instanceof Error);
    assert.equal(conflict.code, Code.Aborted);
    assert.equal(conflict.codeName, "ABORTED");
    assert.equal(conflict.reason, "VERSION_CONFLICT");
    assert.equal(conflict.message, "refused");
    assert.equal(conflict.name, "VersionConflictError");

    const notLoaded = rejectedFrom(refusal(Code.FailedPrecondition, Reason.StateNotLoaded));
    assert.equal(notLoaded.constructor, RejectedError);
    assert.equal(notLoaded.reason, "STATE_NOT_LOADED");
  });

  it("a not-master refusal names the master, from its ErrorInfo or its metadata", () => {
    const byInfo = rejectedFrom(
      refusal(Code.FailedPrecondition, Reason.NotMaster, "haplane.v1", {
        masterId: "b",
        masterUri: "http://b:1",
      }),
    );
    assert.ok(byInfo instanceof NotMasterError);
    assert.equal(byInfo.masterId, "b");
    assert.equal(byInfo.masterUri, "http://b:1");

    const byHeaders = rejectedFrom(
      refusal(
        Code.FailedPrecondition,
        undefined,
        undefined,
        {},
        {
          "haplane-master-id": "c",
          "haplane-master-uri": "http://c:1",
        },
      ),
    );
    assert.ok(byHeaders instanceof NotMasterError);
    assert.equal(byHeaders.reason, "NOT_MASTER");
    assert.equal(byHeaders.masterId, "c");

    const unknown = rejectedFrom(refusal(Code.FailedPrecondition, Reason.NotMaster));
    assert.ok(unknown instanceof NotMasterError);
    assert.equal(unknown.masterId, undefined);
  });

  it("an ErrorInfo of another domain, or none, gives no reason", () => {
    const foreign = rejectedFrom(
      refusal(Code.FailedPrecondition, "NOT_MASTER", "elsewhere.example"),
    );
    assert.equal(foreign.reason, undefined);
    assert.ok(!(foreign instanceof NotMasterError));
    const plain = rejectedFrom(refusal(Code.FailedPrecondition));
    assert.equal(plain.reason, undefined);
    assert.equal(plain.constructor, RejectedError);
  });

  it("codes without a reason map to their classes", () => {
    assert.ok(rejectedFrom(refusal(Code.InvalidArgument)) instanceof InvalidArgumentError);
    assert.ok(rejectedFrom(refusal(Code.NotFound)) instanceof NotFoundError);
    assert.ok(rejectedFrom(refusal(Code.Unauthenticated)) instanceof AccessDeniedError);
    assert.ok(rejectedFrom(refusal(Code.PermissionDenied)) instanceof AccessDeniedError);
  });

  it("a call that broke on the way is an unknown outcome, a refusal stays a refusal", () => {
    for (const code of [Code.Unavailable, Code.Unknown, Code.Canceled, Code.DeadlineExceeded]) {
      const err = finalErrorFrom(refusal(code));
      assert.ok(err instanceof OutcomeUnknownError, Code[code]);
      assert.equal(err.code, code);
      assert.equal(isFailoverSymptom(refusal(code)), true);
    }
    assert.ok(finalErrorFrom(refusal(Code.InvalidArgument)) instanceof InvalidArgumentError);
    assert.equal(isFailoverSymptom(refusal(Code.Aborted, Reason.VersionConflict)), false);
    assert.equal(isFailoverSymptom(refusal(Code.Internal)), false);
  });

  it("a connection reset, which connect-node reports as ABORTED, is not a version conflict", () => {
    // What connect-node makes of a socket reset mid-call: no grpc-status, code ABORTED.
    const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    const broken = new ConnectError("read ECONNRESET", Code.Aborted, undefined, undefined, reset);
    assert.equal(fromServer(broken), false);
    assert.equal(isFailoverSymptom(broken), true, "retried like UNAVAILABLE");
    const err = finalErrorFrom(broken);
    assert.ok(err instanceof OutcomeUnknownError);
    assert.ok(!(err instanceof VersionConflictError));
    const internal = new ConnectError("http/2 stream closed", Code.Internal);
    assert.equal(isFailoverSymptom(internal), true);
    assert.ok(finalErrorFrom(internal) instanceof OutcomeUnknownError);
  });
});

describe("endpoints and credentials", () => {
  it("only http and https URIs with a host are endpoints; trailing / are trimmed", () => {
    assert.equal(checkEndpoint("http://127.0.0.1:8081/"), "http://127.0.0.1:8081");
    assert.equal(checkEndpoint("https://a.example:8443"), "https://a.example:8443");
    for (const bad of ["not a uri", "ftp://a:1", "127.0.0.1:8081", "http://a:1/?x=1", ""]) {
      assert.throws(() => checkEndpoint(bad), InvalidEndpointError, bad);
    }
  });

  it("connect refuses a bad seed, and no seed at all, before any call", async () => {
    await assert.rejects(Client.connect(["http://127.0.0.1:1", "nope"]), (err: unknown) => {
      assert.ok(err instanceof InvalidEndpointError);
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(err.endpoint, "nope");
      return true;
    });
    await assert.rejects(Client.connect([]), NoEndpointError);
  });

  it("credentials are sent as HTTP Basic", () => {
    assert.equal(
      basicAuthorization({ user: "admin", password: "pa:ss" }),
      "Basic YWRtaW46cGE6c3M=",
    );
  });
});
