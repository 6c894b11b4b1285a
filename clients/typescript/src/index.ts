// @haplane/client: a TypeScript client of a haplane plane. It follows the master over gRPC
// (WatchMaster, with the rules of docs/client-rules.md) and sends calls to it through failovers.

export {
  Client,
  type ClaimInfo,
  type Entity,
  type JsonObject,
  type JsonValue,
  type NodeInfo,
  type PlaneStates,
  type StateInfo,
  type Stats,
  type WriteOptions,
} from "./client.js";
export {
  AccessDeniedError,
  ClosedError,
  Code,
  codeName,
  ERROR_DOMAIN,
  errorInfo,
  finalErrorFrom,
  fromServer,
  HaplaneError,
  InvalidArgumentError,
  InvalidEndpointError,
  isFailoverSymptom,
  MASTER_ID_METADATA,
  MASTER_URI_METADATA,
  NoEndpointError,
  NoMasterError,
  NotFoundError,
  NotMasterError,
  OutcomeUnknownError,
  ProtocolError,
  Reason,
  RejectedError,
  rejectedFrom,
  VersionConflictError,
} from "./errors.js";
export { Follow, type ProbeAnswer } from "./follow.js";
export type { ConnectOptions, Credentials } from "./options.js";
export { type MasterRef, type MasterView, type Member, NodeState, sameUri } from "./view.js";
export { ViewFilter } from "./view-filter.js";
