// The client's typed errors. Every error a Client call rejects with is a HaplaneError: a gRPC
// status code, the message, and, for a server's refusal, the machine-readable reason of its
// google.rpc.ErrorInfo detail in domain "haplane.v1" (src/wire.rs in the Rust workspace).

import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "./gen/google/rpc/error_info_pb.js";

export { Code };

/** The `google.rpc.ErrorInfo` domain of haplane's refusals. */
export const ERROR_DOMAIN = "haplane.v1";

/** `ErrorInfo.reason` values, so refusals can be told apart by machine. */
export const Reason = {
  /** The node is not the master; `masterId` / `masterUri` name the one it knows. */
  NotMaster: "NOT_MASTER",
  /** The node holds no managed state (a STANDBY, or a copy still loading). */
  StateNotLoaded: "STATE_NOT_LOADED",
  /** The managed-state log cannot be read past a position. */
  StateDamaged: "STATE_DAMAGED",
  /** A watch asked to resume from a position no longer kept. */
  Compacted: "COMPACTED",
  /** The entity is not at the expected version. */
  VersionConflict: "VERSION_CONFLICT",
} as const;

/** The gRPC metadata a non-master's refusal names the master in. */
export const MASTER_ID_METADATA = "haplane-master-id";
export const MASTER_URI_METADATA = "haplane-master-uri";

interface ErrorFields {
  code: Code;
  reason?: string | undefined;
  metadata?: Readonly<Record<string, string>> | undefined;
  cause?: unknown;
}

/** The base class of every error the client raises. */
export class HaplaneError extends Error {
  /** The gRPC status code (the server's, or the one that best says what went wrong). */
  readonly code: Code;
  /** The `ErrorInfo` reason of a haplane refusal (see `Reason`); `undefined` when none was given. */
  readonly reason: string | undefined;
  /** The `ErrorInfo` metadata of a haplane refusal (e.g. `masterId`, `masterUri`). */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(message: string, fields: ErrorFields) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.code = fields.code;
    this.reason = fields.reason;
    this.metadata = fields.metadata ?? {};
  }

  /** The name of `code` (`"INVALID_ARGUMENT"`, ...). */
  get codeName(): string {
    return codeName(this.code);
  }
}

/** The server answered with a refusal: it did not apply the call. */
export class RejectedError extends HaplaneError {}
/** The request was malformed (a bad entity id, attributes that are not a JSON object, ...). */
export class InvalidArgumentError extends RejectedError {}
/** No such entity (or node). */
export class NotFoundError extends RejectedError {}
/** The entity is not at the expected version (reason `VERSION_CONFLICT`). */
export class VersionConflictError extends RejectedError {}
/** The credentials were missing or wrong (UNAUTHENTICATED or PERMISSION_DENIED). */
export class AccessDeniedError extends RejectedError {}
/** A non-master refused a master-only call; it names the master it knows, if any. */
export class NotMasterError extends RejectedError {
  get masterId(): string | undefined {
    return this.metadata["masterId"] || undefined;
  }
  get masterUri(): string | undefined {
    return this.metadata["masterUri"] || undefined;
  }
}

/** No endpoint answered WatchMaster within the failover timeout (or at all). */
export class NoEndpointError extends HaplaneError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: Code.Unavailable, cause });
  }
}
/** No master was known (or reachable) within the wait. */
export class NoMasterError extends HaplaneError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: Code.Unavailable, cause });
  }
}
/** An endpoint is not an `http://` or `https://` URI. */
export class InvalidEndpointError extends HaplaneError {
  constructor(
    readonly endpoint: string,
    message: string,
  ) {
    super(`invalid endpoint ${JSON.stringify(endpoint)}: ${message}`, {
      code: Code.InvalidArgument,
    });
  }
}
/** The call broke on the way and was not retried (not idempotent): it may have been applied. */
export class OutcomeUnknownError extends HaplaneError {}
/** The server sent something the client cannot read. */
export class ProtocolError extends HaplaneError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: Code.Internal, cause });
  }
}
/** The client was closed. */
export class ClosedError extends HaplaneError {
  constructor() {
    super("the client is closed", { code: Code.Canceled });
  }
}

/** The haplane `ErrorInfo` of `err`, if it carries one in haplane's domain. */
export function errorInfo(
  err: ConnectError,
): { reason: string; metadata: Record<string, string> } | undefined {
  for (const info of err.findDetails(ErrorInfoSchema)) {
    if (info.domain === ERROR_DOMAIN) {
      return { reason: info.reason, metadata: { ...info.metadata } };
    }
  }
  return undefined;
}

/**
 * Whether the server answered the call with this status (it carries `grpc-status`), rather than
 * the call breaking on the way. The distinction matters: connect-node reports a connection reset
 * (ECONNRESET, a destroyed stream) as ABORTED and other socket failures as INTERNAL, codes the
 * server itself uses for a version conflict and a fault; only the server's own answer says
 * whether the call was applied.
 */
export function fromServer(err: ConnectError): boolean {
  return err.metadata.has("grpc-status");
}

/** Whether `err` is a non-master's refusal (it did not apply the call). */
export function isNotMasterRefusal(err: ConnectError): boolean {
  return err.code === Code.FailedPrecondition && err.metadata.has(MASTER_ID_METADATA);
}

/** A server's refusal as a typed error. */
export function rejectedFrom(err: ConnectError): RejectedError {
  const info = errorInfo(err);
  const fields: ErrorFields = {
    code: err.code,
    reason: info?.reason,
    metadata: info?.metadata,
    cause: err,
  };
  const message = err.rawMessage;
  if (info?.reason === Reason.VersionConflict) {
    return new VersionConflictError(message, fields);
  }
  if (info?.reason === Reason.NotMaster || isNotMasterRefusal(err)) {
    const metadata = info?.metadata ?? {
      masterId: err.metadata.get(MASTER_ID_METADATA) ?? "",
      masterUri: err.metadata.get(MASTER_URI_METADATA) ?? "",
    };
    return new NotMasterError(message, { ...fields, reason: Reason.NotMaster, metadata });
  }
  switch (err.code) {
    case Code.InvalidArgument:
      return new InvalidArgumentError(message, fields);
    case Code.NotFound:
      return new NotFoundError(message, fields);
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new AccessDeniedError(message, fields);
    default:
      return new RejectedError(message, fields);
  }
}

/**
 * Whether a call that failed with `err` may have been applied and may work on another try: it
 * broke on the way (no status from the server), or the server said UNAVAILABLE, UNKNOWN,
 * CANCELLED or DEADLINE_EXCEEDED.
 */
export function isFailoverSymptom(err: ConnectError): boolean {
  return (
    !fromServer(err) ||
    [Code.Unavailable, Code.Unknown, Code.Canceled, Code.DeadlineExceeded].includes(err.code)
  );
}

/**
 * The error of a call that is not tried again: a refusal is the server's answer; a call that broke
 * on the way (no status from the server, or UNAVAILABLE, UNKNOWN, CANCELLED, DEADLINE_EXCEEDED)
 * may or may not have been applied.
 */
export function finalErrorFrom(err: ConnectError): HaplaneError {
  if (!fromServer(err)) {
    return new OutcomeUnknownError(`outcome unknown: ${err.rawMessage}`, {
      code: err.code,
      cause: err,
    });
  }
  switch (err.code) {
    case Code.Unavailable:
    case Code.Unknown:
    case Code.Canceled:
    case Code.DeadlineExceeded:
      return new OutcomeUnknownError(`outcome unknown: ${err.rawMessage}`, {
        code: err.code,
        cause: err,
      });
    default:
      return rejectedFrom(err);
  }
}

/** `CODE_NAME` of a gRPC status code. */
export function codeName(code: Code): string {
  const name = Code[code];
  return name === undefined
    ? String(code)
    : name
        .replace(/([a-z])([A-Z])/g, "$1_$2")
        .toUpperCase()
        .replace("CANCELED", "CANCELLED");
}
